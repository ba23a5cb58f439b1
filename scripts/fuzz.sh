#!/usr/bin/env bash
# Fuzzing (cargo-fuzz + libFuzzer, nightly toolchain): seeds every target's corpus from the
# repository's own files, then runs each target for a budget.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   scripts/fuzz.sh all 20          # every target, 20 s each (CI's short budget)
#   scripts/fuzz.sh load 3600       # one target for an hour
#   RUNS=10000000 scripts/fuzz.sh   # every target for a fixed number of executions
#   FUZZ_QUIET=1 scripts/fuzz.sh    # without libFuzzer's per-input NEW/REDUCE/pulse lines
#   FUZZ_SANITIZER=none scripts/fuzz.sh load   # no AddressSanitizer: ~2-3x the executions
#                                   # per second; the fuzzed code has no `unsafe` (only the
#                                   # sandbox's pre_exec hooks do), so a panic, a
#                                   # timeout or an allocation over the limit is what is found
#
# Builds go to $FUZZ_TARGET_DIR (default /var/cache/breakfix/fuzz-target: a cache like the
# other cargo builds, outside the clone; deleting it is safe).
#
# Limits per input: 2 s (-timeout) and no single allocation over 512 MiB (-malloc_limit_mb);
# the whole process (AddressSanitizer's shadow memory and quarantine included) may use 2 GiB.
# A crash is saved under fuzz/artifacts/<target>/ and fails the script; turn it into a
# regression test before fixing it. Needs: rustup's nightly toolchain and `cargo install
# cargo-fuzz` (both from their registries).
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(load inventory journal matcher)
if [ $# -ge 1 ] && [ "$1" != all ]; then targets=("$1"); fi
target_dir="${FUZZ_TARGET_DIR:-/var/cache/breakfix/fuzz-target}"
budget="${2:-60}"
corpus=fuzz/corpus
mkdir -p "$corpus"/{load,inventory,journal,matcher}
# load: one selector byte (0 scenario, 1 grader, 2 lab), then the file.
for f in tests/fixtures/valid/*.yaml tests/fixtures/invalid/*.yaml tests/fixtures/kinds/*.yaml scenarios/*.yaml; do
  { printf '\000'; cat "$f"; } > "$corpus/load/s-$(basename "$f")"
done
for f in tests/fixtures/graders/*.yaml graders/*.yaml; do
  { printf '\001'; cat "$f"; } > "$corpus/load/g-$(basename "$f")"
done
for f in labs/*.yaml; do
  { printf '\002'; cat "$f"; } > "$corpus/load/l-$(basename "$f")"
done
# inventory: the shape docs/inventory.md documents.
cat > "$corpus/inventory/two-nodes.yaml" <<'YAML'
apiVersion: breakfix/v1
kind: Inventory
cluster: { name: sandbox, topology: external, etcd: { endpoints: [https://127.0.0.1:2379], ca_file: /etc/kubernetes/pki/etcd/ca.crt, cert_file: /etc/kubernetes/pki/apiserver-etcd-client.crt, key_file: /etc/kubernetes/pki/apiserver-etcd-client.key } }
nodes:
  - { name: controlplane, address: 198.18.0.11, identity_file: ssh/id_ed25519, known_hosts: ssh/known_hosts, roles: [control-plane, etcd] }
  - { name: local, address: 127.0.0.1, transport: local, roles: [etcd] }
YAML
# journal: one entry per undo kind, as the unit tests write them, and a lock file.
cat > "$corpus/journal/entry.json" <<'JSON'
{"id":"00000001733100000000","node":"controlplane","scenario":"s","fault":"f","recorded_at":1,
 "identity":{"machine_id":"3d1219c7c4c5404aaa1f6d2a48adfda4","host_key":"SHA256:x"},
 "undo":{"kind":"systemd","unit":"etcd","was_active":true,"was_enabled":"enabled"}}
{"id":"00000001733100000001","node":"controlplane","scenario":"s","fault":"g","recorded_at":2,
 "undo":{"kind":"command","run":"true"}}
JSON
printf 'token=abc\ncommand=breakfix drill x\npid=42\npid_start=7\nhost_id=m\nhostname=h\nsince=1\nexpires=2\n' > "$corpus/journal/lock.txt"
# matcher: YAML, NUL, JSON fact.
printf '{ contains: healthy }\000"is healthy"' > "$corpus/matcher/contains"
printf '{ all: [ { gt: 1 }, { lt: 100000 } ] }\000123' > "$corpus/matcher/all"
printf "{ matches: 'took = [0-9.]+m?s' }\000\"took = 3ms\"" > "$corpus/matcher/regex"
printf '{ not: { equals: [] } }\000["NOSPACE"]' > "$corpus/matcher/list"

# libFuzzer checks single allocations (-malloc_limit_mb) through the sanitizer's malloc hooks;
# without a sanitizer the whole process is held to 512 MiB instead, which bounds every
# allocation as well.
memory=(-rss_limit_mb=2048 -malloc_limit_mb=512)
if [ "${FUZZ_SANITIZER:-address}" = none ]; then memory=(-rss_limit_mb=512); fi
status=0
for t in "${targets[@]}"; do
  limit=(-max_total_time="$budget")
  if [ -n "${RUNS:-}" ]; then limit=(-runs="$RUNS"); fi
  echo "==> fuzz $t (${RUNS:+$RUNS runs}${RUNS:-$budget s})"
  run=(cargo +nightly fuzz run --sanitizer "${FUZZ_SANITIZER:-address}" --target-dir "$target_dir" "$t" "$corpus/$t" -- "${limit[@]}"
    -timeout=2 "${memory[@]}" -print_final_stats=1)
  if [ -n "${FUZZ_QUIET:-}" ]; then
    # libFuzzer's per-input progress lines (NEW, REDUCE, pulse: thousands in 20 s) left out,
    # and the functions newly covered not printed (-print_funcs=0, which also spares the
    # symbolizer); its start, crash reports and final stats stay. awk exits 0, so pipefail
    # keeps the fuzzer's own status.
    "${run[@]}" -print_funcs=0 2>&1 |
      awk '!/^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)[[:space:]]/' || status=1
  else
    "${run[@]}" || status=1
  fi
done
exit $status
