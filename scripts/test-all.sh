#!/usr/bin/env bash
# The full suite (pure tier + system tier) as five cargo test processes at once, one per
# sandbox instance (tests/integration/scenarios.rs, `matrix_part!`):
#   instance 0 (external): everything not listed below, i.e. the tests that need no sandbox,
#              the external topology's tests and part 3 of the external self-test matrix;
#   instance 3 (external): parts 1 and 2 of the external self-test matrix, one after the other;
#   instance 1 (stacked):  `stacked::` and part 1 of the stacked self-test matrix;
#   instance 2 (stacked):  part 2 of the stacked self-test matrix and the stacked crash
#              matrix's sample (tests/integration/journal.rs); in the same process, on
#              instance 5, the three-control-plane sandbox on the external topology
#              (tests/integration/ha.rs);
#   instance 4 (stacked):  part 3 of the stacked self-test matrix and the Killercoda-run test
#              of the stacked export; in the same process, on instance 6, the
#              three-control-plane sandbox on the stacked topology.
# Within one `cargo test` the sandbox tests of one instance wait for each other; side by side
# the whole suite takes about as long as its longest part (BENCHMARKS.md). Most of a matrix
# row is waiting (the kubelet's 20 s rescan, crash-loop back-offs, probes' `within`), so the
# parts overlap well on two cores.
#
# Usage: scripts/test-all.sh [extra cargo test arguments, e.g. --locked]
# Exit status: 0 when every part passes. The other parts' output follows instance 0's.
set -uo pipefail
cd "$(dirname "$0")/.."
m=scenarios::
# The Killercoda-run test of the default (stacked) export takes instance 4 (tests/integration/export.rs).
stacked_export=export::exported_step1_breaks_and_grades_on_a_stacked_controlplane
# The stacked crash matrix's sample takes instance 2 (tests/integration/journal.rs).
stacked_crash=journal::stacked_scenarios_survive_a_crash_at_every_step_sample
# The three-control-plane sandboxes take instances 5 (external) and 6 (stacked), each its own
# `up --control-planes 3`, then down.
ha=ha::three_control_planes_keep_the_api_and_etcd_through_the_loss_of_one
parts=(
  "stacked:: ${m}stacked_scenarios_pass_the_selftest_matrix_part_1_of_3"
  "${m}stacked_scenarios_pass_the_selftest_matrix_part_2_of_3 ${stacked_crash} ${ha}_external --exact"
  "${m}stacked_scenarios_pass_the_selftest_matrix_part_3_of_3 ${stacked_export} ${ha}_stacked --exact"
  "${m}external_scenarios_pass_the_selftest_matrix_part_2_of_3 ${m}external_scenarios_pass_the_selftest_matrix_part_1_of_3 --exact"
)
cargo test "$@" --features system-tests --no-run || exit $?
logs=() pids=()
for p in "${parts[@]}"; do
  log=$(mktemp /tmp/breakfix-tests-part.XXXXXX.log)
  # shellcheck disable=SC2086 # a part is a list of test filters
  cargo test "$@" --features system-tests --test integration -- $p >"$log" 2>&1 &
  pids+=("$!") logs+=("$log")
done
cargo test "$@" --features system-tests -- --skip stacked:: \
  --skip stacked_scenarios_pass_the_selftest_matrix \
  --skip external_scenarios_pass_the_selftest_matrix_part_1_of_3 \
  --skip external_scenarios_pass_the_selftest_matrix_part_2_of_3 \
  --skip "$stacked_export" --skip "$stacked_crash" --skip "$ha"
status=$?
for i in "${!parts[@]}"; do
  wait "${pids[$i]}"
  code=$?
  echo "==> ${parts[$i]%% --exact}: exit $code"
  cat "${logs[$i]}"
  rm -f "${logs[$i]}"
  [ "$code" -eq 0 ] || status=1
done
exit "$status"
