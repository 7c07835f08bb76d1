#!/usr/bin/env bash
# Build a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler) from Go modules, for tests only. Idempotent: a binary already in the cache
# is not rebuilt. Binaries go OUTSIDE the repo:
#   ${H2O_AIRFLOW_CACHE:-$HOME/.cache/h2o-airflow}/testbed/k8s-<ver>/bin/
#   ${H2O_AIRFLOW_CACHE:-$HOME/.cache/h2o-airflow}/testbed/etcd-<ver>/bin/
# Needs: go (the version the modules' go.mod asks for; GOTOOLCHAIN=local, no toolchain download)
# and the Go module proxy.
# Usage: testbed/build.sh [--print-bindirs] [etcd|kube-apiserver|kube-controller-manager|kube-scheduler ...]
#   (no component: all four). K8S_VERSION / ETCD_VERSION override testbed/versions.env.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_k8s_env="${K8S_VERSION:-}"; _etcd_env="${ETCD_VERSION:-}"
# shellcheck source=versions.env
source "$HERE/versions.env"
K8S_VERSION="${_k8s_env:-$K8S_VERSION}"
ETCD_VERSION="${_etcd_env:-$ETCD_VERSION}"

CACHE="${H2O_AIRFLOW_CACHE:-$HOME/.cache/h2o-airflow}/testbed"
K8S_BIN="$CACHE/k8s-$K8S_VERSION/bin"
ETCD_BIN="$CACHE/etcd-$ETCD_VERSION/bin"

if [[ "${1:-}" == "--print-bindirs" ]]; then
  echo "K8S_BIN=$K8S_BIN"; echo "ETCD_BIN=$ETCD_BIN"; exit 0
fi

ALL=(etcd kube-apiserver kube-controller-manager kube-scheduler)
WANT=("$@"); [[ ${#WANT[@]} -gt 0 ]] || WANT=("${ALL[@]}")
for w in "${WANT[@]}"; do
  [[ " ${ALL[*]} " == *" $w "* ]] || { echo "build.sh: unknown component '$w' (one of: ${ALL[*]})" >&2; exit 2; }
done
wanted() { [[ " ${WANT[*]} " == *" $1 "* ]]; }

export GOTOOLCHAIN=local CGO_ENABLED=0
command -v go >/dev/null || { echo "build.sh: go not found in PATH" >&2; exit 2; }
echo "build.sh: $(go version); k8s $K8S_VERSION, etcd $ETCD_VERSION; cache $CACHE"

# `go build` under /usr/bin/time -v when available: prints wall time and the peak RSS of the
# largest single process of the build (usually the linker or the biggest compile).
timed() {
  local name="$1"; shift
  local t0=$SECONDS
  if [[ -x /usr/bin/time ]]; then
    local tf; tf="$(mktemp)"
    local rc=0
    /usr/bin/time -v -o "$tf" "$@" || rc=$?
    local wall rss
    wall="$(sed -n 's/^\s*Elapsed (wall clock) time.*: //p' "$tf")"
    rss="$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$tf")"
    echo "build.sh: $name: rc=$rc wall=$wall peak_rss=$((rss / 1024))MiB"
    rm -f "$tf"
    return $rc
  else
    local rc=0
    time "$@" || rc=$?
    echo "build.sh: $name: rc=$rc wall=$((SECONDS - t0))s"
    return $rc
  fi
}

need_build() {  # dir bin...
  local dir="$1"; shift
  local b
  for b in "$@"; do [[ -x "$dir/$b" ]] || return 0; done
  return 1
}

SCRATCH_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/h2o-testbed-build.XXXXXX")"
trap 'rm -rf "$SCRATCH_ROOT"' EXIT

# ---------------------------------------------------------------- etcd
# The etcd server's main package is the root of module go.etcd.io/etcd/server/v3 (server/main.go).
build_etcd() {
  if ! need_build "$ETCD_BIN" etcd; then echo "build.sh: etcd $ETCD_VERSION cached: $ETCD_BIN/etcd"; return 0; fi
  local d="$SCRATCH_ROOT/etcd"; mkdir -p "$d" "$ETCD_BIN"
  cat >"$d/go.mod" <<GOMOD
module h2o-testbed/etcdbuild

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat >"$d/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$d" && timed "etcd: go mod tidy" go mod tidy)
  (cd "$d" && timed "etcd $ETCD_VERSION: go build" \
    go build -trimpath -ldflags='-s -w' -o "$ETCD_BIN/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$ETCD_BIN/etcd.tmp" "$ETCD_BIN/etcd"
  "$ETCD_BIN/etcd" --version
}

# ---------------------------------------------------------------- kubernetes
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, apimachinery, client-go, ...) with
# ./staging/src/...; a module that requires it must map each of them to the published v0.X.Y.
K8S_CMDS=()
for c in kube-apiserver kube-controller-manager kube-scheduler; do wanted "$c" && K8S_CMDS+=("$c"); done
build_k8s() {
  [[ ${#K8S_CMDS[@]} -gt 0 ]] || return 0
  if ! need_build "$K8S_BIN" "${K8S_CMDS[@]}"; then echo "build.sh: kubernetes $K8S_VERSION cached: $K8S_BIN"; return 0; fi
  local d="$SCRATCH_ROOT/k8s"; mkdir -p "$d" "$K8S_BIN"
  local staging_ver="v0.${K8S_VERSION#v1.}"
  local dl modfile
  dl="$(cd "$d" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" 2>&1)" || true
  modfile="$(sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p' <<<"$dl")"
  if [[ ! -f "$modfile" ]]; then
    echo "build.sh: cannot download k8s.io/kubernetes@$K8S_VERSION:" >&2; echo "$dl" >&2; return 1
  fi
  local staging
  staging="$(grep -E '^\s*k8s\.io/[^ ]+ => \./staging/' "$modfile" | awk '{print $1}')"
  {
    echo "module h2o-testbed/k8sbuild"; echo; echo "go 1.26.0"; echo
    echo "require k8s.io/kubernetes $K8S_VERSION"; echo
    echo "replace ("
    local m; for m in $staging; do echo "	$m => $m $staging_ver"; done
    echo ")"
  } >"$d/go.mod"
  {
    echo "//go:build tools"; echo; echo "package tools"; echo; echo "import ("
    local c; for c in "${K8S_CMDS[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
    echo ")"
  } >"$d/tools.go"
  echo "build.sh: replace block maps $(echo "$staging" | wc -w) staging modules to $staging_ver"
  (cd "$d" && timed "kubernetes: go mod tidy" go mod tidy)
  # What hack/lib/version.sh stamps, so /version and the components report the real version.
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  local c
  for c in "${K8S_CMDS[@]}"; do
    if [[ -x "$K8S_BIN/$c" ]]; then echo "build.sh: $c cached"; continue; fi
    (cd "$d" && timed "$c $K8S_VERSION: go build" \
      go build -trimpath -ldflags="$ld" -o "$K8S_BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c")
    mv "$K8S_BIN/$c.tmp" "$K8S_BIN/$c"
    "$K8S_BIN/$c" --version
  done
}

if wanted etcd; then build_etcd; fi
build_k8s
echo "build.sh: done"
echo "K8S_BIN=$K8S_BIN"
echo "ETCD_BIN=$ETCD_BIN"
