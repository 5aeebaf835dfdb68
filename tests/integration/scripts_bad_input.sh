#!/usr/bin/env bash
# The rig's scripts fail fast with a one-line error that says what to do: an unwritable certificate
# directory, a port in use, no Java, no Maven, a broker that cannot start. Needs the fixture broker
# (for a port that is in use) and its cached jars.
set -u
src=${PB_SOURCE_DIR:?}
. "${PB_LOCAL_DIR:?}/broker.env"
pass=0 fail=0
tmp=$(mktemp -d)
trap 'PB_LOCAL_DIR="$tmp/local" "$src/scripts/kafka-local.sh" stop >/dev/null 2>&1; rm -rf "$tmp"' EXIT

# check NAME EXPECTED_SUBSTRING CMD...: CMD must exit non-zero within 120 s and print the substring.
check() {
  local name=$1 want=$2; shift 2
  local out rc
  out=$(timeout 120 "$@" 2>&1); rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -qF -- "$want" <<<"$out"; then
    echo "ok   $name"; pass=$((pass + 1))
  else
    echo "FAIL $name (exit $rc; wanted '$want')"; printf '%s\n' "$out" | tail -n 5 | sed 's/^/     /'
    fail=$((fail + 1))
  fi
}

# A PATH with the tools the scripts use, minus the ones named.
path_without() {
  local d="$tmp/bin-$1" t
  mkdir -p "$d"
  for t in bash cc gcc ld as collect2 pkg-config openssl ss mvn java setsid head base64 tr sed cat tail grep seq \
           mkdir rm chmod touch dirname mktemp id kill timeout; do
    case " $* " in *" $t "*) continue ;; esac
    command -v "$t" >/dev/null && ln -sf "$(command -v "$t")" "$d/$t"
  done
  echo "$d"
}

mkdir -p "$tmp/ro"; chmod 0500 "$tmp/ro"
if [ "$(id -u)" -eq 0 ]; then
  # root ignores mode bits: use a path below a regular file instead.
  touch "$tmp/file"
  check gen-certs.unwritable-dir "cannot write to" "$src/scripts/gen-certs.sh" "$tmp/file/certs"
else
  check gen-certs.unwritable-dir "cannot write to" "$src/scripts/gen-certs.sh" "$tmp/ro/certs"
fi

port=${PB_BOOTSTRAP##*:}
check kafka-local.port-in-use "port $port (PB_KAFKA_PORT) is in use" \
  env PB_LOCAL_DIR="$tmp/local" PB_KAFKA_PORT="$port" "$src/scripts/kafka-local.sh" start

check kafka-local.no-java "Java not found: run scripts/setup.sh" \
  env PATH="$(path_without nojava java)" PB_LOCAL_DIR="$tmp/local" "$src/scripts/kafka-local.sh" start

check kafka-local.no-maven "Maven (mvn) not found: run scripts/setup.sh" \
  env PATH="$(path_without nomvn mvn)" PB_LOCAL_DIR="$tmp/local" PB_KAFKA_CACHE="$tmp/empty-cache" \
  "$src/scripts/kafka-local.sh" start

check kafka-local.broker-does-not-come-up "did not listen on port" \
  env PB_LOCAL_DIR="$tmp/local" PB_KAFKA_START_TIMEOUT=1 "$src/scripts/kafka-local.sh" start

# gen-certs: RSA option, private key modes, idempotence and --force.
expect() { # expect NAME CONDITION...
  local name=$1; shift
  if "$@"; then echo "ok   $name"; pass=$((pass + 1)); else echo "FAIL $name"; fail=$((fail + 1)); fi
}
"$src/scripts/gen-certs.sh" --rsa "$tmp/rsa" >/dev/null
expect gen-certs.rsa-keys bash -c "openssl pkey -in '$tmp/rsa/predbridged.key' -noout -text | grep -q 'Private-Key: (3072 bit'"
expect gen-certs.keys-0600 bash -c "[ -z \"\$(find '$tmp/rsa' -maxdepth 1 \( -name '*.key' -o -name '*.pem' \) ! -perm 0600)\" ]"
serial=$(openssl x509 -in "$tmp/rsa/predbridged.crt" -noout -serial)
"$src/scripts/gen-certs.sh" --rsa "$tmp/rsa" >/dev/null
expect gen-certs.idempotent [ "$serial" = "$(openssl x509 -in "$tmp/rsa/predbridged.crt" -noout -serial)" ]
"$src/scripts/gen-certs.sh" --force "$tmp/rsa" >/dev/null
expect gen-certs.force-regenerates [ "$serial" != "$(openssl x509 -in "$tmp/rsa/predbridged.crt" -noout -serial)" ]
expect gen-certs.broker-sans bash -c "openssl x509 -in '$tmp/rsa/broker.crt' -noout -ext subjectAltName | grep -q 'DNS:localhost, IP Address:127.0.0.1, DNS:kafka'"

# gen-certs: the revocation set. revoked.crl revokes revoked-broker.crt (a broker certificate like
# broker.crt) and nothing else; empty.crl revokes nothing; material from before the set gets it added.
crl_verify() { # crl_verify DIR CRL CERT: OpenSSL's verdict on CERT with CRL checking
  openssl verify -crl_check -CAfile "$1/ca.crt" -CRLfile "$1/$2" "$1/$3" 2>&1
}
expect gen-certs.revoked-broker-sans bash -c "openssl x509 -in '$tmp/rsa/revoked-broker.crt' -noout -ext subjectAltName | grep -q 'DNS:localhost, IP Address:127.0.0.1, DNS:kafka'"
expect gen-certs.crl-revokes-revoked-broker grep -q 'certificate revoked' <<<"$(crl_verify "$tmp/rsa" revoked.crl revoked-broker.crt)"
expect gen-certs.crl-keeps-broker grep -q 'broker.crt: OK$' <<<"$(crl_verify "$tmp/rsa" revoked.crl broker.crt)"
expect gen-certs.empty-crl-revokes-nothing grep -q 'revoked-broker.crt: OK$' <<<"$(crl_verify "$tmp/rsa" empty.crl revoked-broker.crt)"
cp -a "$tmp/rsa" "$tmp/old" && rm -f "$tmp/old"/revoked-broker.* "$tmp/old"/*.crl
serial=$(openssl x509 -in "$tmp/old/predbridged.crt" -noout -serial)
"$src/scripts/gen-certs.sh" "$tmp/old" >/dev/null
expect gen-certs.adds-revocation-set-keeping-the-rest [ "$serial" = "$(openssl x509 -in "$tmp/old/predbridged.crt" -noout -serial)" ]
expect gen-certs.added-crl-revokes-revoked-broker grep -q 'certificate revoked' <<<"$(crl_verify "$tmp/old" revoked.crl revoked-broker.crt)"

echo "scripts: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
