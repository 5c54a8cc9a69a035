#!/usr/bin/env bash
# Builds the real peers of the opt-in autoscaling run (make autoscaling-e2e) into the binaries'
# cache: KEDA's operator and metrics adapter (the pinned KEDA_VERSION) and the Prometheus
# server (PROMETHEUS_VERSION, the module promtool comes from). Not part of CI: KEDA pulls every
# cloud SDK its scalers use, so a cold build takes tens of minutes on two cores.
#
# KEDA's go.mod has replace directives, which `go install module@version` refuses: its source
# is copied out of the read-only module cache and built there, as Traefik's is.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"
log() { printf '[build-autoscaling-peers] %s\n' "$*" >&2; }

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod"
bin=${QMO_BIN_DIR:-$HOME/.cache/qmo/bin/k8s-$KUBERNETES_VERSION}
mkdir -p "$bin"
stamp() { cat "$1.version" 2>/dev/null || true; }

build_prometheus() {
  local out=$bin/prometheus
  if [ -x "$out" ] && [ "$(stamp "$out")" = "$PROMETHEUS_VERSION" ]; then
    log "prometheus $PROMETHEUS_VERSION present"; return
  fi
  local start module
  start=$(date +%s)
  module="v0.$(echo "$PROMETHEUS_VERSION" | awk -F. '{printf "%d%02d.%d", $1, $2, $3}')"
  log "building prometheus $PROMETHEUS_VERSION (module $module), Kubernetes discovery only"
  # The run discovers the serving pods through the API server; no other discovery plugin.
  GOBIN=$bin go install -tags=remove_all_sd,enable_kubernetes_sd \
    -ldflags="-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/prometheus@$module"
  echo "$PROMETHEUS_VERSION" >"$out.version"
  log "built $out in $(( $(date +%s) - start ))s"
}

build_keda() {
  if [ -x "$bin/keda-operator" ] && [ -x "$bin/keda-adapter" ] \
    && [ "$(stamp "$bin/keda-operator")" = "$KEDA_VERSION" ]; then
    log "keda $KEDA_VERSION present"; return
  fi
  local start src work
  start=$(date +%s)
  log "downloading github.com/kedacore/keda/v2@v$KEDA_VERSION"
  src=$(go mod download -json "github.com/kedacore/keda/v2@v$KEDA_VERSION" \
    | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
  work=$(mktemp -d)
  trap 'chmod -R u+w "$work"; rm -rf "$work"' RETURN
  cp -r "$src/." "$work/" && chmod -R u+w "$work"
  log "building the KEDA operator and metrics adapter (tens of minutes with a cold Go cache)"
  local version_flag="-X github.com/kedacore/keda/v2/version.Version=$KEDA_VERSION"
  (cd "$work" && go build -ldflags="-s -w $version_flag" -o "$bin/keda-operator.tmp" ./cmd/operator)
  (cd "$work" && go build -ldflags="-s -w $version_flag" -o "$bin/keda-adapter.tmp" ./cmd/adapter)
  mv "$bin/keda-operator.tmp" "$bin/keda-operator"
  mv "$bin/keda-adapter.tmp" "$bin/keda-adapter"
  echo "$KEDA_VERSION" >"$bin/keda-operator.version"
  log "built keda-operator and keda-adapter in $(( $(date +%s) - start ))s"
}

# The operator watches all six of its kinds: every CRD of the release, not only ScaledObject's.
copy_keda_crds() {
  local dir=$bin/keda-crds-v$KEDA_VERSION src
  [ -s "$dir/keda.sh_scaledobjects.yaml" ] && return
  src=$(go mod download -json "github.com/kedacore/keda/v2@v$KEDA_VERSION" \
    | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  cp "$src"/config/crd/bases/*.yaml "$dir.tmp/"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

build_prometheus
build_keda
copy_keda_crds
echo "$bin"
