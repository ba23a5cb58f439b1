#!/usr/bin/env bash
# The full suite (pure tier + system tier) as two cargo test processes at once, one per sandbox
# instance: the stacked topology's tests (instance 1: `stacked::` and the stacked self-test
# matrix) beside everything else (instance 0, the external topology, plus the tests that need
# no sandbox). Within one `cargo test` the stacked tests sort last and run after the external
# ones; side by side the whole suite takes about as long as its longer half.
#
# Usage: scripts/test-all.sh [extra cargo test arguments, e.g. --locked]
# Exit status: 0 when both halves pass. The stacked half's output follows the other's.
set -uo pipefail
cd "$(dirname "$0")/.."
stacked=(stacked:: every_stacked_scenario_passes_the_selftest_matrix)
cargo test "$@" --features system-tests --no-run || exit $?
log=$(mktemp /tmp/breakfix-stacked-tests.XXXXXX.log)
cargo test "$@" --features system-tests --test integration -- "${stacked[@]}" >"$log" 2>&1 &
pid=$!
cargo test "$@" --features system-tests -- --skip stacked:: \
  --skip every_stacked_scenario_passes_the_selftest_matrix
rest=$?
wait "$pid"
half=$?
echo "==> the stacked half (sandbox instance 1), exit $half:"
cat "$log"
rm -f "$log"
[ "$rest" -eq 0 ] && [ "$half" -eq 0 ]
