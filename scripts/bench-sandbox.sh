#!/usr/bin/env bash
# Sandbox benchmark (not a test): times `sandbox up` from the caches (node image, Kubernetes
# build, images) for 1 and 2 nodes of each topology, and `sandbox down`, each as a whole
# command, and the memory the nodes use. Run as root on an otherwise idle machine; numbers go
# to BENCHMARKS.md ("Sandbox").
#
#   scripts/bench-sandbox.sh [RUNS]        # default 5 runs of each warm measurement
#   BENCH_COLD=1 scripts/bench-sandbox.sh  # also a cold node-image build (~1.5 min, needs the mirror)
#
# It takes the integration tests' sandbox lock, so it never pulls the sandbox away from a
# running test. A sandbox that was up before is brought up again (2 nodes) at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
BIN="${BREAKFIX_BIN:-target/debug/breakfix}"
[ -x "$BIN" ] || { echo "build breakfix first (cargo build), or set BREAKFIX_BIN" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }

exec 9>/tmp/breakfix-tests-sandbox.lock
flock 9

was_up=0
"$BIN" sandbox status --output json | grep -q '"state": "up"' && was_up=1

now() { date +%s.%N; }
# median of the numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
timed() {
  local t0 t1; t0=$(now)
  "$@" >/tmp/breakfix-bench.log 2>&1 || { echo "failed: $* (see /tmp/breakfix-bench.log)" >&2; exit 1; }
  t1=$(now); awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'
}

"$BIN" sandbox down >/dev/null 2>&1

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
echo "date:    $(date -u +%Y-%m-%dT%H:%MZ)"

if [ "${BENCH_COLD:-0}" = 1 ]; then
  img=$(mktemp -d /var/tmp/breakfix-bench-images.XXXXXX)
  # Only the Debian image is cold: the Kubernetes build is copied from the warm cache.
  cp -a /var/lib/breakfix/images/kube-* "$img"/
  t=$(BREAKFIX_IMAGE_DIR="$img" timed "$BIN" sandbox up --nodes 1)
  "$BIN" sandbox down >/dev/null 2>&1
  rm -rf "$img"
  printf 'cold image build + up (1 node): %.1f s\n' "$t"
fi

for topo in stacked external; do
  for nodes in 1 2; do
    ups=(); downs=()
    for _ in $(seq "$RUNS"); do
      ups+=("$(timed "$BIN" sandbox up --nodes "$nodes" --topology "$topo")")
      if [ "$nodes" = 2 ] && [ "${#ups[@]}" = 1 ]; then
        # Memory of a 2-node cluster once up: each node's memory cgroup (RSS and page cache).
        for m in /sys/fs/cgroup/memory/*/breakfix-sandbox /sys/fs/cgroup/memory/*/*/breakfix-sandbox /sys/fs/cgroup/memory/breakfix-sandbox; do
          [ -d "$m" ] || continue
          for n in "$m"/*/; do
            printf '%s %s: rss %d MiB, cache %d MiB\n' "$topo" "$(basename "$n")" \
              "$(( $(awk '/^total_rss /{print $2}' "$n/memory.stat") / 1048576 ))" \
              "$(( $(awk '/^total_cache /{print $2}' "$n/memory.stat") / 1048576 ))"
          done
        done
      fi
      downs+=("$(timed "$BIN" sandbox down)")
    done
    printf 'up   (%s, %d node(s), cached): median %.2f s of %s runs (%s)\n' "$topo" "$nodes" \
      "$(printf '%s\n' "${ups[@]}" | median)" "$RUNS" "$(printf '%.2f ' "${ups[@]}")"
    printf 'down (%s, %d node(s)):         median %.2f s of %s runs (%s)\n' "$topo" "$nodes" \
      "$(printf '%s\n' "${downs[@]}" | median)" "$RUNS" "$(printf '%.2f ' "${downs[@]}")"
  done
done

if [ "$was_up" = 1 ]; then "$BIN" sandbox up >/dev/null 2>&1; fi
