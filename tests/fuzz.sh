#!/usr/bin/env bash
# Fuzzes the webhook path: builds tools/fuzz (lc-fuzz) with the `fuzz` profile (optimized, with
# debug assertions, overflow checks and unwinding panics) and runs EXECS executions (default
# 200000) on every core. Inputs that panic, pass unsigned or lose a signed body are saved under
# target/fuzz-crashes/ (cleared first). The last line is the fuzzer's:
#   fuzz execs=<n> panics=0 unsigned_accepted=0 signed_lost=0
# and the exit status is non-zero when any count but execs is not zero.
# Extra arguments go to lc-fuzz (e.g. `tests/fuzz.sh 1000000 --seed 7`).
set -euo pipefail
cd "$(dirname "$0")/.."
execs=${1:-200000}
shift || true
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --quiet --profile fuzz -p lc-fuzz
rm -rf "$target/fuzz-crashes"
exec "$target/fuzz/lc-fuzz" --execs "$execs" --crash-dir "$target/fuzz-crashes" "$@"
