#!/usr/bin/env bash
# Runs predbridge's main job end to end on this machine: installs dependencies, builds, starts a
# real Kafka broker with mTLS on loopback, runs predbridged, sends predictions through it with
# acknowledgements, and reads them back through libpredbridge (predbridge tail) as the consumer.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build=${PB_BUILD_DIR:-$repo/build/release}
step() { printf '\nquickstart: %s\n' "$*"; }

step "installing dependencies"
"$repo/scripts/setup.sh"

step "building (release) in $build"
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPB_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null

step "starting the local Kafka broker (mTLS, TLS 1.3 only, ACLs by certificate)"
"$repo/scripts/kafka-local.sh" start
# shellcheck disable=SC1091
. "$repo/.local/broker.env"
# A fresh topic for this run (the ACLs cover every topic named predictions*), so what comes back
# is exactly what this run sent.
PB_TOPIC="predictions-quickstart-$(date +%s)"
"$PB_RIG_ADMIN" --bootstrap "$PB_BOOTSTRAP" --ca "$PB_CERT_DIR/ca.crt" --cert "$PB_CERT_DIR/admin.crt" \
  --key "$PB_CERT_DIR/admin.key" topic "$PB_TOPIC"
export PB_BOOTSTRAP PB_CERT_DIR PB_TOPIC

run="$repo/.local/quickstart"
mkdir -p "$run"
export PB_SOCKET="$run/predbridged.sock" PB_SPOOL_DIR="$run/spool"
daemon_pid=
cleanup() { [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true; }
trap cleanup EXIT

step "checking the configuration and TLS material (config/predbridged.conf)"
"$build/src/daemon/predbridged" --config "$repo/config/predbridged.conf" --check-config

step "starting predbridged on $PB_SOCKET"
"$build/src/daemon/predbridged" --config "$repo/config/predbridged.conf" 2>"$run/predbridged.log" &
daemon_pid=$!
for _ in $(seq 1 100); do
  [ -S "$PB_SOCKET" ] && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$run/predbridged.log" >&2; echo "quickstart: predbridged exited" >&2; exit 1; }
  read -r -t 0.1 <> <(:) || true
done
[ -S "$PB_SOCKET" ] || { cat "$run/predbridged.log" >&2; echo "quickstart: predbridged did not create its socket" >&2; exit 1; }

step "sending 5 predictions (one of them invalid) with 'predbridge send --ack delivered'"
marker="quickstart-$(date +%s)-$$"
{
  for i in 1 2 3 4; do
    printf '{"model_version":"fraud-v7","prediction":{"score":0.9%d},"request":"%s-%d"}\n' "$i" "$marker" "$i"
  done
  printf '{"model_version":"fraud-v7","request":"%s-bad"}\n' "$marker"   # no "prediction": rejected
} >"$run/predictions.ndjson"
set +e
"$build/src/cli/predbridge" send --socket "$PB_SOCKET" --ack delivered "$run/predictions.ndjson"
send_rc=$?
set -e
[ "$send_rc" -eq 1 ] || { echo "quickstart: expected 'send' to report the invalid line (exit 1), got $send_rc" >&2; exit 1; }

step "reading them back with 'predbridge tail' (libpredbridge, as 'predbridge-consumer', config/consumer.conf)"
timeout 60 "$build/src/cli/predbridge" tail --config "$repo/config/consumer.conf" \
  --group "quickstart-$$" --from-beginning --max 4 --metadata >"$run/tail.out" 2>"$run/tail.err" || true
got=$(grep -cF "$marker" "$run/tail.out" || true)
sed 's/^/  /' "$run/tail.out"
echo "quickstart: $got of 4 valid predictions read back, verified, with their metadata"

step "stopping predbridged (SIGTERM: delivers what is queued, then exits 0)"
kill -TERM "$daemon_pid"
wait "$daemon_pid" && daemon_rc=0 || daemon_rc=$?
daemon_pid=
grep -E 'shutdown|rejected' "$run/predbridged.log" | sed 's/^/  /'
if [ "$got" -eq 4 ] && [ "$daemon_rc" -eq 0 ]; then
  echo "quickstart: OK: predictions went from the socket through predbridged to Kafka over mutual TLS 1.3, and back through libpredbridge"
else
  echo "quickstart: FAILED (found $got of 4, predbridged exited $daemon_rc); log: $run/predbridged.log" >&2
  exit 1
fi
echo "quickstart: the broker keeps running; stop it with scripts/kafka-local.sh stop"
