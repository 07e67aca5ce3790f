#!/usr/bin/env bash
# bench-peers.sh [WORKROOT] [CONFIGS...] -- snap beside restic (and others) on the shared 2 GiB corpus,
# same run, cold cache, highest priority. Results in WORKROOT/peers/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
SHARED=${SHARED:-$(cd .. && pwd)/shared}
ROOT=${1:-/work/bench}; shift || true
CONFIGS=${*:-snap restic}
command -v restic >/dev/null || apt-get install -y -qq restic >/dev/null
command -v b3sum >/dev/null || apt-get install -y -qq b3sum >/dev/null
cargo build --release --locked
mkdir -p "$ROOT"
[ -d "$ROOT/corpus" ] || "$SHARED/bench/make-corpus.sh" "$ROOT/corpus" --size 2G --seed 1
rm -rf "$ROOT/peers"
echo -20 > /proc/self/autogroup 2>/dev/null || true
SNAP_BIN=$SNAP_BIN nice -n -20 "$SHARED/bench/peers.sh" "$ROOT/corpus" "$ROOT/peers" $CONFIGS
cat "$ROOT/peers/results.md"
