#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of predbridge and resolves the Kafka jars.
# Idempotent; run as root on a fresh Debian machine.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf 'setup: %s\n' "$*"; }

pkgs=(
  build-essential cmake ninja-build pkg-config
  librdkafka-dev libssl-dev openssl libjansson-dev libcmocka-dev libmicrohttpd-dev
  clang libclang-rt-14-dev valgrind
  kcat openjdk-17-jre-headless maven
  socat procps psmisc
  prometheus # promtool: it_metrics checks predbridged's /metrics output with it
)

missing=()
for p in "${pkgs[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages (${missing[*]}) and not root: run 'sudo $0'" >&2
    exit 1
  fi
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "all ${#pkgs[@]} Debian packages present"
fi

log "resolving Kafka broker jars"
"$here/kafka-local.sh" jars
log "done"
