#!/usr/bin/env bash
# Installs the Debian packages breakfix needs to build, to run its sandbox and to run its
# tests on a fresh Debian bookworm machine (run as root). Safe to re-run.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
  # build: etcd-client's gRPC code generation
  protobuf-compiler libprotobuf-dev
  # sandbox: node image, nodes, network, loop-mounted etcd data dir
  debootstrap systemd-container iproute2 e2fsprogs util-linux mount kmod
  # sandbox build: the pause binary is compiled from Kubernetes' C source (static glibc)
  gcc libc6-dev
  # real clients used by tests and benchmarks
  openssh-client openssh-server etcd-server etcd-client
  # tests: black-holing a sandbox node's address on the host (nodes that go away)
  nftables
  # sandbox with several control planes: the API servers' load balancer on the host bridge
  haproxy
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq || echo "warning: apt-get update reported errors; trying to install anyway" >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The sandbox builds Kubernetes, etcd and crictl from their Go modules with the machine's Go
# toolchain (`breakfix sandbox build`; the tests use the kubectl it builds).
command -v go >/dev/null || { echo "go is missing: the sandbox builds Kubernetes and etcd from source with the machine's Go toolchain" >&2; exit 1; }
# Debian's etcd-server package starts a host etcd on 2379 after install; breakfix's tests
# start their own etcd processes, so keep the host one out of the way if it runs.
if [ -x /usr/bin/systemctl ] && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi
# Likewise Debian's haproxy service: the sandbox starts its own HAProxy with its own
# configuration on the bridge address (src/sandbox/lb.rs).
if [ -x /usr/bin/systemctl ] && systemctl is-active --quiet haproxy 2>/dev/null; then
  systemctl stop haproxy || true
fi
command -v cargo >/dev/null || { echo "cargo is missing: install a Rust toolchain (rustup) first" >&2; exit 1; }
