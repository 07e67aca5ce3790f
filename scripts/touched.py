#!/usr/bin/env python3
"""touched.py BEFORE AFTER -- bytes a mutation touched: for files in both trees, the bytes in 4 KiB
blocks that differ (plus any length change); plus the full size of new files. Deleted files count 0
(a backup adds nothing for them)."""
import os, sys

B = 4096


def files(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = p
    return out


def main(a, b):
    fa, fb = files(a), files(b)
    total = 0
    for rel, pb in fb.items():
        pa = fa.get(rel)
        sb = os.path.getsize(pb)
        if pa is None:
            total += sb
            continue
        sa = os.path.getsize(pa)
        with open(pa, "rb") as x, open(pb, "rb") as y:
            while True:
                ba, bb = x.read(1 << 20), y.read(1 << 20)
                if not ba and not bb:
                    break
                for i in range(0, max(len(ba), len(bb)), B):
                    if ba[i:i + B] != bb[i:i + B]:
                        total += max(len(bb[i:i + B]), 0)
    print(total)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
