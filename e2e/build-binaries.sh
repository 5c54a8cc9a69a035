#!/usr/bin/env bash
# Builds the pinned upstream binaries of the local control plane from the Go module
# proxy: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok,
# kwokctl, helm, promtool and versitygw (the engine-store tests' S3 server), and fetches the
# Gateway API's CRDs. Output goes to a cache
# outside the repo:
#   ${QMO_BIN_DIR:-~/.cache/qmo/bin/k8s-<version>}
# Binaries already built at the pinned version are skipped, so a warm run takes seconds.
#
#   e2e/build-binaries.sh            build what is missing, print the bin dir last
#   e2e/build-binaries.sh --regen    rewrite the wrapper go.mod/go.sum files, then build
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"

regen=0
[ "${1:-}" = "--regen" ] && regen=1

log() { printf '[build-binaries] %s\n' "$*" >&2; }
die() { printf '[build-binaries] error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not installed or not on PATH; install Go >= 1.26 (the module proxy must be reachable)."
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod"
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
[ "$go_minor" -ge 26 ] || die "Go $(go env GOVERSION) is too old: Kubernetes $KUBERNETES_VERSION and kwok v$KWOK_VERSION need Go >= 1.26."

bin=${QMO_BIN_DIR:-$HOME/.cache/qmo/bin/k8s-$KUBERNETES_VERSION}
mkdir -p "$bin"
k8s_minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
staging=v0.${KUBERNETES_VERSION#1.}

# "$bin/$1" reports the pinned version (a grep pattern on its --version output)?
# The output is read in full first: piped into `grep -q`, a binary that prints several lines
# (etcd, kubectl, promtool) could die of SIGPIPE, and pipefail would call it not built.
is_built() {
  local out
  [ -x "$bin/$1" ] && out=$("$bin/$1" "${@:3}" 2>/dev/null) && grep -q -- "$2" <<<"$out"
}

check_proxy() {
  go list -m "k8s.io/kubernetes@v$KUBERNETES_VERSION" >/dev/null 2>&1 \
    || die "cannot reach the Go module proxy ($(go env GOPROXY)) for k8s.io/kubernetes@v$KUBERNETES_VERSION."
}

regen_kubernetes() {
  local dir=$here/toolchain/kubernetes gomod
  log "regenerating $dir/go.mod for Kubernetes v$KUBERNETES_VERSION"
  gomod=$(go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  (cd "$dir" && rm -f go.sum && printf 'module qmo.local/e2e/toolchain/kubernetes\n\ngo 1.26\n' >go.mod \
    && go mod edit -require="k8s.io/kubernetes@v$KUBERNETES_VERSION" \
    && for m in $(awk '$1 ~ /^k8s\.io\// && $2=="v0.0.0" {print $1}' "$gomod"); do go mod edit -replace="$m=$m@$staging"; done \
    && go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$KUBERNETES_VERSION" \
         "k8s.io/kubernetes/cmd/kube-controller-manager@v$KUBERNETES_VERSION" \
         "k8s.io/kubernetes/cmd/kube-scheduler@v$KUBERNETES_VERSION" \
         "k8s.io/kubernetes/cmd/kubectl@v$KUBERNETES_VERSION")
}

regen_etcd() {
  local dir=$here/toolchain/etcd
  log "regenerating $dir/go.mod for etcd v$ETCD_VERSION"
  (cd "$dir" && rm -f go.sum && printf 'module qmo.local/e2e/toolchain/etcd\n\ngo 1.26\n' >go.mod \
    && go get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION")
}

build_kubernetes() {
  local ldflags="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $p.gitVersion=v$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor -X $p.gitTreeState=clean"
  done
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl v$KUBERNETES_VERSION (cold: about 9 minutes on 2 cores, once)"
  (cd "$here/toolchain/kubernetes" && go build -tags=selinux,notest,grpcnotrace -ldflags="$ldflags" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
}

build_etcd() {
  log "building etcd v$ETCD_VERSION"
  (cd "$here/toolchain/etcd" && go build -ldflags="-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
  log "building kwok and kwokctl v$KWOK_VERSION"
  GOBIN=$bin go install -ldflags="-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@v$KWOK_VERSION"
}

build_helm() {
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
  ldflags="$ldflags -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor"
  ldflags="$ldflags -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
  log "building helm v$HELM_VERSION"
  GOBIN=$bin go install -ldflags="$ldflags" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
}

build_promtool() {
  # Prometheus 3.x tags are module versions v0.3xx.y (3.16.0 -> v0.316.0).
  local major minor patch module
  IFS=. read -r major minor patch <<<"$PROMETHEUS_VERSION"
  module=v0.$((major * 100 + minor)).$patch
  log "building promtool v$PROMETHEUS_VERSION (module $module)"
  # remove_all_sd leaves out the service-discovery plugins: promtool only checks and tests rules.
  GOBIN=$bin go install -tags=remove_all_sd -ldflags="-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$module"
}

build_versitygw() {
  # The S3-compatible server of the engine-store tests (tests/support/store_server.py).
  log "building versitygw v$VERSITYGW_VERSION"
  GOBIN=$bin go install -ldflags="-s -w -X main.Version=v$VERSITYGW_VERSION" \
    "github.com/versity/versitygw/cmd/versitygw@v$VERSITYGW_VERSION"
  echo "$VERSITYGW_VERSION" >"$bin/versitygw.version"
}

fetch_gateway_api_crds() {
  # The Gateway API's standard-channel CRDs, as its Go module ships them (no build): the local
  # control plane installs them for the routing tests. The validating admission policy file is
  # left out (an upgrade guard for clusters, not a CRD).
  local dir=$bin/gateway-api-v$GATEWAY_API_VERSION src
  log "fetching the Gateway API v$GATEWAY_API_VERSION CRDs"
  src=$(go mod download -json "sigs.k8s.io/gateway-api@v$GATEWAY_API_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$dir.tmp"
  find "$src/config/crd/standard" -name 'gateway.networking.k8s.io_*.yaml' ! -name '*vap*' -exec cp {} "$dir.tmp/" \;
  chmod -R u+w "$dir.tmp" && rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

fetch_keda_crds() {
  # KEDA's ScaledObject CRD, as its Go module ships it (no build): the autoscaling tests check
  # that the ScaledObjects qmo writes are accepted by it.
  local dir=$bin/keda-v$KEDA_VERSION src
  log "fetching the KEDA v$KEDA_VERSION CRDs"
  src=$(go mod download -json "github.com/kedacore/keda/v2@v$KEDA_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$dir.tmp"
  cp "$src/config/crd/bases/keda.sh_scaledobjects.yaml" "$dir.tmp/"
  chmod -R u+w "$dir.tmp" && rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

start=$(date +%s)
if [ $regen -eq 1 ]; then check_proxy; regen_kubernetes; regen_etcd; fi

todo=0
is_built kube-apiserver "v$KUBERNETES_VERSION" --version && is_built kube-controller-manager "v$KUBERNETES_VERSION" --version \
  && is_built kube-scheduler "v$KUBERNETES_VERSION" --version && is_built kubectl "v$KUBERNETES_VERSION" version --client \
  || { todo=1; check_proxy; build_kubernetes; }
is_built etcd "$ETCD_VERSION" --version || { todo=1; build_etcd; }
is_built kwok "$KWOK_VERSION" --version && is_built kwokctl "$KWOK_VERSION" --version || { todo=1; build_kwok; }
is_built helm "v$HELM_VERSION" version --short || { todo=1; build_helm; }
is_built promtool "version $PROMETHEUS_VERSION " --version || { todo=1; build_promtool; }
[ -x "$bin/versitygw" ] && [ "$(cat "$bin/versitygw.version" 2>/dev/null)" = "$VERSITYGW_VERSION" ] \
  || { todo=1; build_versitygw; }
[ -s "$bin/gateway-api-v$GATEWAY_API_VERSION/gateway.networking.k8s.io_httproutes.yaml" ] \
  || { todo=1; fetch_gateway_api_crds; }
[ -s "$bin/keda-v$KEDA_VERSION/keda.sh_scaledobjects.yaml" ] || { todo=1; fetch_keda_crds; }

if [ $todo -eq 0 ]; then log "all binaries present in $bin"; else log "built into $bin in $(( $(date +%s) - start ))s"; fi
echo "$bin"
