#!/usr/bin/env bash
# test.sh -- the whole test suite: formatting, lints, unit + integration tests (release profile,
# shared with benches, so RocksDB is compiled once per machine).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
install_deps
cargo fmt --check
cargo clippy --release --all-targets --locked -- -D warnings
cargo test --release --locked -- --test-threads 2 "$@"
