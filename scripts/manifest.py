#!/usr/bin/env python3
"""manifest.py DIR -- an independent description of a tree, for comparing a restore with its source.

One line per entry below DIR (DIR itself excluded), sorted by path bytes: path (escaped), type,
permission bits, uid, gid, mtime in ns, and per type: size + SHA-256 + sparse flag for files,
target for symlinks, major/minor for devices; all extended attributes; and for files with several
links, the first path of their hard-link group. Uses only os.lstat and hashlib: nothing of snap.
ctime and atime are left out (a restore cannot set ctime).
"""
import hashlib, os, stat, sys


def esc(b):
    return repr(b)[2:-1]


def main(root):
    root = os.fsencode(root)
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames + filenames:
            entries.append(os.path.join(dirpath, name))
    entries.sort()
    links = {}
    out = []
    for p in entries:
        rel = os.path.relpath(p, root)
        st = os.lstat(p)
        m = st.st_mode
        kind = ("dir" if stat.S_ISDIR(m) else "file" if stat.S_ISREG(m) else "symlink" if stat.S_ISLNK(m)
                else "fifo" if stat.S_ISFIFO(m) else "chr" if stat.S_ISCHR(m) else "blk" if stat.S_ISBLK(m)
                else "sock" if stat.S_ISSOCK(m) else "other")
        fields = [esc(rel), kind, "%04o" % stat.S_IMODE(m), str(st.st_uid), str(st.st_gid)]
        if kind != "symlink":
            fields.append("mtime=%d" % st.st_mtime_ns)
        if kind == "file":
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while True:
                    b = f.read(1 << 20)
                    if not b:
                        break
                    h.update(b)
            sparse = st.st_blocks * 512 < st.st_size
            fields += ["size=%d" % st.st_size, "sha256=" + h.hexdigest(), "sparse=%d" % sparse]
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                links.setdefault(key, rel)
                fields.append("link=" + esc(links[key]))
        elif kind == "symlink":
            fields.append("target=" + esc(os.readlink(p)))
        elif kind in ("chr", "blk"):
            fields.append("dev=%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)))
        try:
            names = sorted(os.listxattr(p, follow_symlinks=False))
        except OSError:
            names = []
        for n in names:
            v = os.getxattr(p, n, follow_symlinks=False)
            fields.append("xattr:%s=%s" % (n, esc(v)))
        out.append("\t".join(fields))
    sys.stdout.write("\n".join(out) + ("\n" if out else ""))


if __name__ == "__main__":
    main(sys.argv[1])
