#!/usr/bin/env bash
# test.sh -- the whole test suite: formatting, lints, unit + integration tests (release profile,
# shared with benches, so RocksDB is compiled once per machine).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
install_deps
install_remote_deps
cargo fmt --check
cargo clippy --release --all-targets --locked -- -D warnings
cargo test --release --locked -- --test-threads 2 "$@"
# Every fuzz target briefly, so a decoder that panics on simple input fails CI (the long runs are
# `scripts/fuzz.sh 600`). Skipped with a note where cargo-fuzz is absent (.ci/run installs it).
if cargo fuzz --version >/dev/null 2>&1; then
  bash scripts/fuzz.sh "${SNAP_FUZZ_SECONDS:-5}"
else
  echo "test.sh: cargo-fuzz not installed; fuzz smoke skipped" >&2
fi
