#!/usr/bin/env bash
# bench-db-chunking.sh [WORK] [SIZE_MIB] [MIN,AVG,MAX KiB ...] -- database-stream chunking by
# measurement: one private MariaDB with make-db.sh's database, a repository per parameter set, a
# full backup of each, one day of churn (make-db.sh --churn 1), a second backup of each; reports
# time, repository size and bytes added by day 2. Results in WORK/db-chunking.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
SHARED=${SHARED:-$(cd .. && pwd)/shared}
WORK=${1:-/work/bench/dbchunk}; SIZE=${2:-1024}; shift 2 || true
SETS=${*:-"8,32,128 16,64,256 32,128,512 128,512,2048"}
cargo build --release --locked
mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
eval "$(bash "$SHARED/scripts/mariadb-sandbox.sh" start "$WORK/db" 13398)"
URL=$SNAP_TEST_MYSQL_URL
export SNAP_PASSWORD=bench
bash "$SHARED/bench/make-db.sh" "$SIZE" >&2
mb() { du -sm "$1" | cut -f1; }
declare -A FULL DAY1T
for s in $SETS; do
  r=$WORK/repo-${s//,/-}; rm -rf "$r" "$r.cache"
  SNAP_REPOSITORY=$r SNAP_CACHE_DIR=$r.cache "$SNAP_BIN" init --db-chunker-kib "$s" --quiet
  t0=$(date +%s.%N)
  SNAP_REPOSITORY=$r SNAP_CACHE_DIR=$r.cache "$SNAP_BIN" backup --quiet --mysql "$URL"
  DAY1T[$s]=$(echo "$(date +%s.%N) - $t0" | bc); FULL[$s]=$(mb "$r")
done
bash "$SHARED/bench/make-db.sh" "$SIZE" --churn 1 >&2
{
  echo "| db chunker KiB (min,avg,max) | full s | full MiB | day-2 s | day-2 added MiB | added / full |"
  echo "|---|---|---|---|---|---|"
  for s in $SETS; do
    r=$WORK/repo-${s//,/-}
    t0=$(date +%s.%N)
    SNAP_REPOSITORY=$r SNAP_CACHE_DIR=$r.cache "$SNAP_BIN" backup --quiet --mysql "$URL"
    t=$(echo "$(date +%s.%N) - $t0" | bc); add=$(( $(mb "$r") - ${FULL[$s]} ))
    printf '| %s | %.2f | %s | %.2f | %s | %.0f%% |\n' "$s" "${DAY1T[$s]}" "${FULL[$s]}" "$t" "$add" \
      "$(echo "100 * $add / ${FULL[$s]}" | bc -l)"
  done
} | tee "$WORK/db-chunking.md"
