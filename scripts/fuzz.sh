#!/usr/bin/env bash
# fuzz.sh SECONDS [TARGET...] -- run each cargo-fuzz target for SECONDS; prints executions per target.
# Needs cargo-fuzz (cargo install cargo-fuzz) and RUSTC_BOOTSTRAP=1 on a stable toolchain.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${1:?usage: fuzz.sh SECONDS [TARGET...]}; shift
TARGETS=${*:-keyfile config pack_header blob tree snapshot}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in $TARGETS; do
  mkdir -p corpus/$t
  log=$(mktemp)
  cargo fuzz run "$t" corpus/$t -- -max_total_time="$SECS" -rss_limit_mb=2048 2>&1 | tee "$log" | grep -E "^(==|INFO: fuzzer|SUMMARY)" || true
  execs=$(grep -oE "^Done [0-9]+ runs" "$log" | grep -oE "[0-9]+" | tail -1 || true)
  if grep -qE "^==[0-9]+==ERROR|panicked" "$log"; then echo "fuzz $t: CRASH, see fuzz/artifacts/$t" >&2; fi
  echo "fuzz $t: ${execs:-?} executions in ${SECS}s"
  rm -f "$log"
done
