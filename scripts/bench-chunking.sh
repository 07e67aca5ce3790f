#!/usr/bin/env bash
# bench-chunking.sh [WORKROOT] -- choose FastCDC parameters by measurement: for each MIN,AVG,MAX
# (KiB), back up the shared 2 GiB corpus, apply make-corpus.sh --mutate 5, back up again, and
# report throughput of the first backup and bytes added by the second. Bytes touched by the
# mutation come from comparing the two corpus states block by block (scripts/touched.py).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
SHARED=${SHARED:-$(cd .. && pwd)/shared}
ROOT=${1:-/work/bench}
cargo build --release --locked
mkdir -p "$ROOT"
[ -d "$ROOT/corpus" ] || "$SHARED/bench/make-corpus.sh" "$ROOT/corpus" --size 2G --seed 1
export SNAP_PASSWORD=bench
echo "| min,avg,max KiB | backup1 s | MiB/s | repo MiB | added by 5% mutation MiB | touched MiB | added/touched |"
echo "|---|---|---|---|---|---|---|"
for p in ${PARAMS:-"128,512,2048" "256,1024,4096" "512,2048,8192" "64,256,1024"}; do
  W=$ROOT/chunk-$p; rm -rf "$W"; mkdir -p "$W"
  cp -a "$ROOT/corpus" "$W/c"
  export SNAP_REPOSITORY=$W/repo SNAP_CACHE_DIR=$W/cache
  "$SNAP_BIN" init --chunker-kib "$p" -q
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  t0=$(date +%s.%N)
  (cd "$W/c" && "$SNAP_BIN" -q backup --host b .)
  t1=$(date +%s.%N)
  repo1=$(du -sb "$W/repo" | cut -f1)
  cp -a "$W/c" "$W/before"
  "$SHARED/bench/make-corpus.sh" "$W/c" --mutate 5 --seed 1 --round 1 >/dev/null
  added=$(cd "$W/c" && "$SNAP_BIN" --json backup --host b . | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshot"]["summary"]["bytes_added"])')
  touched=$(python3 scripts/touched.py "$W/before" "$W/c")
  size=$(du -sb "$ROOT/corpus" | cut -f1)
  python3 - "$p" "$t0" "$t1" "$repo1" "$added" "$touched" "$size" <<'PY'
import sys
p, t0, t1, repo, added, touched, size = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), *map(int, sys.argv[4:])
M = 1 << 20
print(f"| {p} | {t1-t0:.2f} | {size/M/(t1-t0):.0f} | {repo/M:.0f} | {added/M:.1f} | {touched/M:.1f} | {added/touched:.2f} |")
PY
  rm -rf "$W"
done
