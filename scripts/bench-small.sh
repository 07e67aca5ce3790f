#!/usr/bin/env bash
# bench-small.sh [WORKROOT] [COUNTS] -- many small files: snap and restic (and rustic when on PATH)
# on trees of COUNTS files (default "100000 1000000"), 64-400 bytes each, 1,000 per directory,
# same run, same machine: backup1, a no-change backup, restore, `ls -r`; wall time and peak RSS of
# each, and a single-threaded cold `find -printf` of the same tree as the floor of a no-change
# run. Results in WORKROOT/small/results.md. Run it as root on a quiet machine
# (`echo -20 > /proc/self/autogroup; nice -n -20 scripts/bench-small.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ROOT=${1:-/var/tmp/bench}
COUNTS=${2:-100000 1000000}
W=$ROOT/small
mkdir -p "$W"
command -v restic >/dev/null || apt-get install -y -qq restic >/dev/null
[ -x "$SNAP_BIN" ] || cargo build --release --locked
export SNAP_PASSWORD=bench RESTIC_PASSWORD=bench RUSTIC_PASSWORD=bench
PEERS="snap restic"
command -v rustic >/dev/null && PEERS="$PEERS rustic"

# tree N: N files of 64-400 bytes (seeded), 1,000 per directory, built once.
tree() {
  local n=$1 dir=$W/tree-$1
  [ -f "$dir.done" ] && { echo "$dir"; return; }
  rm -rf "$dir"
  python3 - "$dir" "$n" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(n)
words = [b"alpha", b"beta", b"gamma", b"delta", b"config", b"value", b"=", b"\n", b"true", b"42"]
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:05d}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    size = rnd.randint(64, 400)
    body = bytearray(f"file {i}\n".encode())
    while len(body) < size:
        body += rnd.choice(words) if rnd.random() < 0.7 else os.urandom(4).hex().encode()
    with open(os.path.join(d, f"f{i:07d}.txt"), "wb") as f:
        f.write(body[:size])
PY
  touch "$dir.done"
  echo "$dir"
}

: > "$W/runs"
# run NAME CMD...: wall seconds and peak RSS (KiB), cold cache
run() {
  local name=$1; shift
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  /usr/bin/time -f "%e %M %U %S" -o "$W/time" "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; exit 1; }
  read -r t m u s < "$W/time"
  echo "$name $t $m $u $s" | tee -a "$W/runs"
}

for n in $COUNTS; do
  src=$(tree "$n")
  run "find-$n" find "$src" -printf '%s %T@ %i\n'
  for p in $PEERS; do
    repo=$W/repo-$p-$n target=$W/restore-$p-$n
    rm -rf "$repo" "$target" "$W/cache-$p"
    case $p in
      snap)
        export SNAP_CACHE_DIR=$W/cache-snap
        "$SNAP_BIN" -r "$repo" init --kdf-memory-kib 65536 >/dev/null
        run "snap-backup1-$n" "$SNAP_BIN" -q -r "$repo" backup "$src"
        run "snap-nochange-$n" "$SNAP_BIN" -q -r "$repo" backup "$src"
        run "snap-ls-$n" "$SNAP_BIN" -r "$repo" ls --recursive latest
        run "snap-restore-$n" "$SNAP_BIN" -q -r "$repo" restore latest --target "$target" ;;
      restic)
        export RESTIC_CACHE_DIR=$W/cache-restic
        restic -q -r "$repo" init >/dev/null
        run "restic-backup1-$n" restic -q -r "$repo" backup "$src"
        run "restic-nochange-$n" restic -q -r "$repo" backup "$src"
        run "restic-ls-$n" restic -r "$repo" ls latest
        run "restic-restore-$n" restic -q -r "$repo" restore latest --target "$target" ;;
      rustic)
        rustic -r "$repo" --cache-dir "$W/cache-rustic" init >/dev/null 2>&1
        run "rustic-backup1-$n" rustic -r "$repo" --cache-dir "$W/cache-rustic" backup "$src"
        run "rustic-nochange-$n" rustic -r "$repo" --cache-dir "$W/cache-rustic" backup "$src"
        run "rustic-ls-$n" rustic -r "$repo" --cache-dir "$W/cache-rustic" ls latest
        run "rustic-restore-$n" rustic -r "$repo" --cache-dir "$W/cache-rustic" restore latest "$target" ;;
    esac
    # every restore is compared with the source by an independent manifest (untimed)
    python3 scripts/manifest.py "$src" > "$W/m-src"
    got=$target$src; [ -d "$got" ] || got=$target
    python3 scripts/manifest.py "$got" > "$W/m-$p"
    cmp -s "$W/m-src" "$W/m-$p" || { echo "$p restore of $n files differs from the source" >&2; exit 1; }
    rm -rf "$target" "$repo"
  done
done
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|vaes|sha_ni)$' | xargs)
python3 - "$W/runs" "$COUNTS" "$PEERS" "$cpu" "$flags" <<'PY' | tee "$W/results.md"
import os, sys
runs = {}
for l in open(sys.argv[1]):
    n, t, m, u, s = l.split()
    runs[n] = (float(t), int(m) // 1024, float(u), float(s))
counts, peers = sys.argv[2].split(), sys.argv[3].split()
print(f"CPU: {sys.argv[4]} ({sys.argv[5]}), {os.cpu_count()} cores; files of 64-400 bytes, 1,000 per directory, cold cache\n")
print("| files | phase | " + " | ".join(f"{p} s (user+sys) / RSS MiB" for p in peers) + " | restic/snap |")
print("|---|---|" + "---|" * len(peers) + "---|")
for n in counts:
    for ph in ("backup1", "nochange", "ls", "restore"):
        cells = []
        for p in peers:
            t, m, u, s = runs[f"{p}-{ph}-{n}"]
            cells.append(f"{t:.2f} ({u:.1f}+{s:.1f}) / {m}")
        ratio = runs[f"restic-{ph}-{n}"][0] / runs[f"snap-{ph}-{n}"][0]
        print(f"| {n} | {ph} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    f = runs[f"find-{n}"]
    print(f"| {n} | find -printf (floor of no change) | {f[0]:.2f} |" + " |" * len(peers))
PY
