#!/usr/bin/env bash
# Runs predbridge's main job end to end on this machine: installs dependencies, builds, starts a
# real Kafka broker with mTLS on loopback, and sends predictions through it.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build=${PB_BUILD_DIR:-$repo/build/release}
step() { printf '\nquickstart: %s\n' "$*"; }

step "installing dependencies"
"$repo/scripts/setup.sh"

step "building (release) in $build"
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPB_INTEGRATION=OFF >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null

step "starting the local Kafka broker (mTLS, TLS 1.3 only, ACLs by certificate)"
"$repo/scripts/kafka-local.sh" start
# shellcheck disable=SC1091
. "$repo/.local/broker.env"

step "TLS round trip: produce as 'predbridged', consume as 'predbridge-consumer'"
kc() {
  local who=$1; shift
  kcat -b "$PB_BOOTSTRAP" -X security.protocol=ssl -X ssl.ca.location="$PB_CERT_DIR/ca.crt" \
    -X ssl.certificate.location="$PB_CERT_DIR/$who.crt" -X ssl.key.location="$PB_CERT_DIR/$who.key" \
    -X ssl.endpoint.identification.algorithm=https "$@"
}
marker="quickstart-$(date +%s)-$$"
printf '{"model_version":"quickstart","prediction":0.93,"id":"%s"}\n' "$marker" | kc predbridged -P -t "$PB_TOPIC" -p 0
if kc predbridge-consumer -C -t "$PB_TOPIC" -p 0 -o -1 -e -q | grep -q "$marker"; then
  echo "quickstart: OK: the prediction went to Kafka over mutual TLS and came back"
else
  echo "quickstart: FAILED: the prediction did not come back" >&2
  exit 1
fi
echo "quickstart: the broker keeps running; stop it with scripts/kafka-local.sh stop"
