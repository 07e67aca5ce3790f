#!/usr/bin/env bash
# fuzz.sh SECONDS [TARGET...] -- run each cargo-fuzz target for SECONDS; prints executions per target
# and exits 1 if any target found a crash (its input is left in fuzz/artifacts/TARGET/).
# Needs cargo-fuzz (installed here when missing) and RUSTC_BOOTSTRAP=1 on a stable toolchain.
# Fuzz builds (sanitizer flags) get their own per-machine target directory, so they never disturb
# the release build shared by tests and benches, and a fresh clone does not rebuild them.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${1:?usage: fuzz.sh SECONDS [TARGET...]}; shift
TARGETS=${*:-keyfile config pack_header blob tree snapshot lock prune_record audit_record}
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${SNAP_FUZZ_TARGET_DIR:-$HOME/.cache/snap-fuzz-target}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
crashed=()
for t in $TARGETS; do
  mkdir -p corpus/$t
  log=$(mktemp)
  cargo fuzz run "$t" corpus/$t -- -max_total_time="$SECS" -rss_limit_mb=2048 2>&1 | tee "$log" | grep --line-buffered -E "^(==|INFO: fuzzer|SUMMARY)" || true
  execs=$(grep -oE "^Done [0-9]+ runs" "$log" | grep -oE "[0-9]+" | tail -1 || true)
  if grep -qE "^==[0-9]+==ERROR|panicked|^SUMMARY: libFuzzer" "$log" || [ -z "$execs" ]; then
    echo "fuzz $t: CRASH or failed run, see fuzz/artifacts/$t" >&2
    crashed+=("$t")
  fi
  echo "fuzz $t: ${execs:-?} executions in ${SECS}s"
  rm -f "$log"
done
if [ ${#crashed[@]} -gt 0 ]; then echo "fuzz: failures in ${crashed[*]}" >&2; exit 1; fi
