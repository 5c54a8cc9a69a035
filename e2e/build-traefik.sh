#!/usr/bin/env bash
# Builds Traefik (the pinned TRAEFIK_VERSION) from its Go module into the binaries' cache, for
# the opt-in test of requests through a real gateway (make gateway-e2e). Not part of CI.
#
# `go install module@version` refuses Traefik: its go.mod has replace directives. So the module
# source is downloaded, copied out of the read-only module cache, and built there.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"
log() { printf '[build-traefik] %s\n' "$*" >&2; }

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod"
bin=${QMO_BIN_DIR:-$HOME/.cache/qmo/bin/k8s-$KUBERNETES_VERSION}
mkdir -p "$bin"
out=$bin/traefik
if [ -x "$out" ] && "$out" version 2>/dev/null | grep -q "Version: *v$TRAEFIK_VERSION\$"; then
  log "traefik v$TRAEFIK_VERSION present in $bin"; echo "$out"; exit 0
fi

start=$(date +%s)
log "downloading github.com/traefik/traefik/v3@v$TRAEFIK_VERSION"
src=$(go mod download -json "github.com/traefik/traefik/v3@v$TRAEFIK_VERSION" \
  | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
work=$(mktemp -d)
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -r "$src/." "$work/" && chmod -R u+w "$work"
log "building (minutes with a warm Go cache, much longer with a cold one)"
(cd "$work" && go build -ldflags="-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=v$TRAEFIK_VERSION" \
  -o "$out.tmp" ./cmd/traefik)
mv "$out.tmp" "$out"
log "built $out in $(( $(date +%s) - start ))s"
echo "$out"
