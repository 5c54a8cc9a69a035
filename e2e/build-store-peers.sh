#!/usr/bin/env bash
# Builds s5cmd (the pinned S5CMD_VERSION) into the binaries' cache, for the store benchmark
# (benchmarks/store_clients.py), which holds qmo's fetch to s5cmd's time. Not part of CI.
#
# `go install github.com/peak/s5cmd/v2@v2.3.0` is refused here (the proxy will not list the
# module's versions for its deprecation check), so the module is downloaded and built in a copy.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"
log() { printf '[build-store-peers] %s\n' "$*" >&2; }

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod"
bin=${QMO_BIN_DIR:-$HOME/.cache/qmo/bin/k8s-$KUBERNETES_VERSION}
mkdir -p "$bin"
out=$bin/s5cmd
if [ -x "$out" ] && [ "$(cat "$out.version" 2>/dev/null)" = "$S5CMD_VERSION" ]; then
  log "s5cmd $S5CMD_VERSION present in $bin"; echo "$out"; exit 0
fi
start=$(date +%s)
src=$(go mod download -json "github.com/peak/s5cmd/v2@v$S5CMD_VERSION" \
  | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
work=$(mktemp -d)
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -r "$src/." "$work/" && chmod -R u+w "$work"
(cd "$work" && go build -ldflags="-s -w" -o "$out.tmp" .)
mv "$out.tmp" "$out"
echo "$S5CMD_VERSION" >"$out.version"
log "built $out in $(( $(date +%s) - start ))s"
echo "$out"
