#!/usr/bin/env bash
# setup.sh [DIR] -- install what a fresh Debian 12 machine lacks, build snap (release), put it on
# PATH as /usr/local/bin/snap, then (if DIR is given) back DIR up into a new demo repository.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
install_deps
cargo build --release --locked
ln -sf "$SNAP_BIN" /usr/local/bin/snap 2>/dev/null || echo "note: could not link /usr/local/bin/snap; use $SNAP_BIN" >&2
echo "built $SNAP_BIN"
if [ $# -gt 0 ]; then
  export SNAP_REPOSITORY=${SNAP_REPOSITORY:-/tmp/snap-demo-repo} SNAP_PASSWORD=${SNAP_PASSWORD:-demo-password}
  [ -e "$SNAP_REPOSITORY/config" ] || "$SNAP_BIN" init
  "$SNAP_BIN" backup "$@"
  "$SNAP_BIN" snapshots
  echo "demo repository: $SNAP_REPOSITORY (password: $SNAP_PASSWORD)"
fi
