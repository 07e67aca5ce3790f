#!/usr/bin/env bash
# bench-prune.sh [WORKROOT] [SIZE] [ROUNDS] -- snap prune beside restic forget --prune on the same
# history, same run: the shared corpus (default 2G) backed up once and after each of ROUNDS
# (default 10) mutation rounds (`make-corpus.sh --mutate 5 --round N`), then the oldest 5
# snapshots forgotten and the repository pruned. Wall time and peak RSS of the prune, bytes
# before/after, and how long snap held the exclusive lock. Results in WORKROOT/prune/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
SHARED=${SHARED:-$(cd .. && pwd)/shared}
ROOT=${1:-/work/bench}
SIZE=${2:-2G}
ROUNDS=${3:-10}
command -v restic >/dev/null || apt-get install -y -qq restic >/dev/null
[ -x "$SNAP_BIN" ] || cargo build --release --locked
W=$ROOT/prune
rm -rf "$W"; mkdir -p "$W"
CORPUS=$W/corpus
"$SHARED/bench/make-corpus.sh" "$CORPUS" --size "$SIZE" --seed 1 >/dev/null
export SNAP_PASSWORD=bench RESTIC_PASSWORD=bench SNAP_CACHE_DIR=$W/snap-cache RESTIC_CACHE_DIR=$W/restic-cache
"$SNAP_BIN" init -r "$W/snap" >/dev/null
restic init -q -r "$W/restic" >/dev/null
for r in $(seq 0 "$ROUNDS"); do
  if [ "$r" -gt 0 ]; then "$SHARED/bench/make-corpus.sh" "$CORPUS" --mutate 5 --round "$r" --seed 1 >/dev/null; fi
  "$SNAP_BIN" backup -q -r "$W/snap" "$CORPUS"
  restic backup -q -r "$W/restic" "$CORPUS" >/dev/null
done
# Forget the oldest 5 in both, by id.
ids=$("$SNAP_BIN" --json snapshots -r "$W/snap" | python3 -c '
import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)[:5]))')
# shellcheck disable=SC2086
"$SNAP_BIN" forget -q -r "$W/snap" $ids
old=$(restic snapshots -q -r "$W/restic" --json | python3 -c '
import json,sys; print(" ".join(s["id"] for s in sorted(json.load(sys.stdin), key=lambda s: s["time"])[:5]))')
# shellcheck disable=SC2086
restic forget -q -r "$W/restic" $old >/dev/null
du_b() { du -sb "$1" | cut -f1; }
sb=$(du_b "$W/snap"); rb=$(du_b "$W/restic")
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
/usr/bin/time -f "%e %M" -o "$W/snap.time" "$SNAP_BIN" --json prune -r "$W/snap" --grace 0 > "$W/snap.json"
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
/usr/bin/time -f "%e %M" -o "$W/restic.time" restic prune -q -r "$W/restic" >/dev/null
sa=$(du_b "$W/snap"); ra=$(du_b "$W/restic")
"$SNAP_BIN" check -q -r "$W/snap" --read-data-subset 10%
read -r st sm < "$W/snap.time"; read -r rt rm < "$W/restic.time"
excl=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["exclusive_lock_ms"], r["mark_ms"])' "$W/snap.json")
{
  echo "corpus $SIZE, $ROUNDS mutation rounds of 5%, oldest 5 of $((ROUNDS + 1)) snapshots forgotten"
  echo
  echo "| tool | prune s | peak RSS MiB | repo before MiB | after MiB | freed MiB | exclusive lock |"
  echo "|---|---|---|---|---|---|---|"
  echo "| snap | $st | $((sm / 1024)) | $((sb >> 20)) | $((sa >> 20)) | $(((sb - sa) >> 20)) | ${excl% *} ms (mark ${excl#* } ms) |"
  echo "| restic | $rt | $((rm / 1024)) | $((rb >> 20)) | $((ra >> 20)) | $(((rb - ra) >> 20)) | whole run |"
} | tee "$W/results.md"
