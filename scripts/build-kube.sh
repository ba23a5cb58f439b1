#!/usr/bin/env bash
# Builds the sandbox's Kubernetes, etcd and CRI programs from their Go modules, at the
# versions pinned in scripts/versions.env, with the machine's Go toolchain. No prebuilt
# binary is fetched: Go modules come from the Go module proxy the machine's `go env GOPROXY`
# names; the pause binary is compiled from the Kubernetes module's C source with gcc.
#
# Usage: scripts/build-kube.sh OUT_DIR
#   OUT_DIR/bin/      kubeadm kubelet kube-apiserver kube-controller-manager kube-scheduler
#                     kubectl etcd etcdctl etcdutl crictl pause
#   OUT_DIR/SHA256SUMS  sha256 of every binary (sha256sum format)
#   OUT_DIR/versions.env  the pins this build used
# breakfix calls it (`breakfix sandbox build`, or `sandbox up` when its cache is missing)
# with OUT_DIR = a temporary directory it renames into the cache when this script succeeds.
#
# Each step prints one line `step N/M: what` first (breakfix shows them as progress). On
# failure it prints which module and which command failed and the last lines of Go's output,
# and exits non-zero.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build-kube.sh OUT_DIR}"
# shellcheck source=versions.env
. "$here/versions.env"

mkdir -p "$out/bin" "$out/work"
out="$(cd "$out" && pwd)"
bin="$out/bin"
work="$out/work"
log="$out/build.log"
: >"$log"

steps=6
step() { echo "step $1/$steps: $2"; echo "== step $1/$steps: $2" >>"$log"; }

# fail MODULE COMMAND...: runs COMMAND, appending its output to the log; on failure names the
# module and the command and quotes the last lines of the output.
run() {
  local module="$1"; shift
  if ! "$@" >>"$log" 2>&1; then
    {
      echo "build failed: module $module"
      echo "  command: $*"
      echo "  in: $(pwd)"
      echo "  last lines of its output ($log):"
      tail -n 25 "$log" | sed 's/^/    /'
    } >&2
    exit 1
  fi
}

command -v go >/dev/null || { echo "build failed: no Go toolchain (go) on PATH" >&2; exit 1; }
command -v gcc >/dev/null || { echo "build failed: no C compiler (gcc) on PATH, needed for pause" >&2; exit 1; }
echo "go: $(go version)" >>"$log"

export CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOFLAGS=-buildvcs=false

k8s="${KUBERNETES_VERSION}"
k8s_minor="$(echo "$k8s" | cut -d. -f2)"
k8s_staging="v0.${k8s#v1.}"

# --- Kubernetes: a wrapper module that requires k8s.io/kubernetes and replaces each of its
# staging modules (go.mod: `k8s.io/api => ./staging/src/k8s.io/api`, ...) with the published
# module of the same release (kubernetes/kubernetes#79384 explains why `go install` cannot).
step 1 "Kubernetes $k8s: resolving k8s.io/kubernetes and its staging modules"
mkdir -p "$work/kubernetes"
cd "$work/kubernetes"
run k8s.io/kubernetes@"$k8s" go mod download -json k8s.io/kubernetes@"$k8s"
kmod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$k8s.mod"
[ -s "$kmod" ] || { echo "build failed: module k8s.io/kubernetes@$k8s: no go.mod at $kmod" >&2; exit 1; }
{
  echo "module breakfix.local/build/kubernetes"
  echo
  echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$kmod" | head -1)"
  echo
  echo "require k8s.io/kubernetes $k8s"
  echo
  echo "replace ("
  sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#\t\1 => \1 '"$k8s_staging"'#p' "$kmod"
  echo ")"
} >go.mod
cat >tools.go <<'EOF'
//go:build tools

// Package tools names the commands this wrapper module builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
EOF
run "k8s.io/kubernetes@$k8s (staging modules at $k8s_staging)" go mod tidy

step 2 "Kubernetes $k8s: building kubeadm kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl"
# The version the programs report (`kubelet --version`, kubeadm's default image tags) is set
# the way Kubernetes' own build sets it (hack/lib/version.sh); the build date is fixed so the
# same pins give the same binaries.
ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld="$ld -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
run "k8s.io/kubernetes@$k8s" go build -trimpath -ldflags "$ld" -o "$bin/" \
  k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl

# --- etcd: its modules carry no local replaces that matter to a dependent module, so a
# wrapper that requires the three command modules builds them at their own dependency versions.
step 3 "etcd $ETCD_VERSION: building etcd etcdctl etcdutl"
mkdir -p "$work/etcd"
cd "$work/etcd"
cat >go.mod <<EOF
module breakfix.local/build/etcd

go 1.26.0

require (
	go.etcd.io/etcd/etcdctl/v3 $ETCD_VERSION
	go.etcd.io/etcd/etcdutl/v3 $ETCD_VERSION
	go.etcd.io/etcd/server/v3 $ETCD_VERSION
)
EOF
cat >tools.go <<'EOF'
//go:build tools

// Package tools names the commands this wrapper module builds.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
EOF
run "go.etcd.io/etcd/*/v3@$ETCD_VERSION" go mod tidy
run "go.etcd.io/etcd/server/v3@$ETCD_VERSION" go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3
run "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION" go build -trimpath -ldflags "-s -w" -o "$bin/etcdctl" go.etcd.io/etcd/etcdctl/v3
run "go.etcd.io/etcd/etcdutl/v3@$ETCD_VERSION" go build -trimpath -ldflags "-s -w" -o "$bin/etcdutl" go.etcd.io/etcd/etcdutl/v3

step 4 "cri-tools $CRI_TOOLS_VERSION: building crictl"
mkdir -p "$work/cri-tools"
cd "$work/cri-tools"
cat >go.mod <<EOF
module breakfix.local/build/cri-tools

go 1.26.0

require sigs.k8s.io/cri-tools $CRI_TOOLS_VERSION
EOF
cat >tools.go <<'EOF'
//go:build tools

// Package tools names the command this wrapper module builds.
package tools

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
EOF
run "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" go mod tidy
run "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" go build -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" \
  -o "$bin/crictl" sigs.k8s.io/cri-tools/cmd/crictl

step 5 "pause $PAUSE_VERSION: compiling build/pause/linux/pause.c of k8s.io/kubernetes@$k8s"
src="$(go env GOMODCACHE)/k8s.io/kubernetes@$k8s/build/pause/linux/pause.c"
[ -f "$src" ] || { echo "build failed: module k8s.io/kubernetes@$k8s has no $src" >&2; exit 1; }
run "k8s.io/kubernetes@$k8s (pause.c)" gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION" -o "$bin/pause" "$src"
run "k8s.io/kubernetes@$k8s (pause.c)" strip "$bin/pause"

step 6 "checksums"
cd "$bin"
sha256sum kubeadm kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl \
  etcd etcdctl etcdutl crictl pause >"$out/SHA256SUMS"
cp "$here/versions.env" "$out/versions.env"
# The wrapper modules (go.mod, go.sum) stay in work/: they record every dependency version.
echo "built: $(wc -l <"$out/SHA256SUMS") programs in $bin"
