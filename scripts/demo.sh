#!/usr/bin/env bash
# The main job on the embedded default, from a fresh clone: install what is needed, build,
# bring the sandbox up, run the etcd-service-stopped incident with its reference solution
# and print the graded report. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --locked --release
bin=target/release/breakfix
"$bin" sandbox up
"$bin" run scenarios/etcd-service-stopped.yaml --solution
