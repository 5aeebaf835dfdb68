#!/usr/bin/env bash
# Generates the test PKI for predbridge: a CA, broker and client certificates, and the
# deliberately broken material the negative tests need. Test material only; never commit it.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: gen-certs.sh [--force] [--rsa] DIR

Creates in DIR (mode 0700; private keys 0600):
  ca.crt ca.key                     test CA
  broker.crt broker.key broker.pem  broker (SAN localhost, 127.0.0.1, kafka; server+client auth);
                                    broker.pem = PKCS#8 key + chain, a Kafka PEM keystore
  predbridged.* predbridge-consumer.* admin.*   client certificates (CN = principal)
  untrusted-ca.crt untrusted-client.*           a client cert from a second, untrusted CA
  expired-client.*  notyet-client.*             validity in the past / in the future
  badhost-broker.* badhost-broker.pem           a broker cert for the wrong host name
  mismatch-client.crt mismatch-client.key       a cert whose key does not match it
  untrusted-broker.* untrusted-broker.pem       a broker cert from the untrusted CA
  revoked-broker.* revoked-broker.pem           a broker cert like broker.crt that the CA has revoked
  revoked.crl empty.crl             PEM CRLs of the CA: one listing revoked-broker.crt, one listing nothing
Existing material is kept unless --force; material from before the revocation set gets it added,
signed by its own CA. Keys are EC P-256 unless --rsa (RSA 3072).
USAGE
}

force=0 rsa=0 dir=
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --rsa) rsa=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "gen-certs: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) [ -z "$dir" ] || { echo "gen-certs: one DIR only (see --help)" >&2; exit 2; }; dir=$1 ;;
  esac
  shift
done
[ -n "$dir" ] || { usage >&2; exit 2; }
command -v openssl >/dev/null || { echo "gen-certs: openssl not found: run scripts/setup.sh" >&2; exit 1; }

if ! mkdir -p "$dir" 2>/dev/null || [ ! -w "$dir" ]; then
  echo "gen-certs: cannot write to '$dir': choose a writable directory or fix its permissions" >&2
  exit 1
fi
chmod 0700 "$dir"
cd "$dir"

# add_revocation=1: the rest is there (from an older version of this script); add only the revocation set.
add_revocation=0
if [ -f .complete ] && [ "$force" -eq 0 ]; then
  if [ -f revoked.crl ] && [ -f empty.crl ]; then
    echo "gen-certs: keeping existing material in $dir (use --force to regenerate)"
    exit 0
  fi
  [ -f .ca-ca/ca.cnf ] && add_revocation=1
fi
if [ "$add_revocation" -eq 0 ]; then
  rm -rf -- ./*.crt ./*.key ./*.pem ./*.crl ./*.csr ./*.srl .ca-* .crl-* .complete
fi

umask 077

newkey() { # newkey FILE
  if [ "$rsa" -eq 1 ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$1" 2>/dev/null
  else
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
  fi
  chmod 0600 "$1"
}

# A CA database for `openssl ca`, which lets us set exact validity windows.
mkca() { # mkca NAME CN
  local name=$1 cn=$2 d=".ca-$1"
  mkdir -p "$d/new"
  : >"$d/index.txt"
  openssl rand -hex 16 >"$d/serial"
  cat >"$d/ca.cnf" <<CNF
[ ca ]
default_ca = this
[ this ]
dir = $d
database = $d/index.txt
new_certs_dir = $d/new
serial = $d/serial
certificate = $name.crt
private_key = $name.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[ anything ]
commonName = supplied
organizationName = optional
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = $cn
O = predbridge test
[ v3_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ server ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = \$ENV::PB_SAN
authorityKeyIdentifier = keyid
[ client ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
CNF
  newkey "$name.key"
  openssl req -new -x509 -config "$d/ca.cnf" -extensions v3_ca -key "$name.key" \
    -days 3650 -out "$name.crt"
}

# sign CA NAME CN PROFILE START END [KEYFILE]; START/END as YYYYMMDDHHMMSSZ or "now"/"+DAYS"
sign() {
  local ca=$1 name=$2 cn=$3 profile=$4 start=$5 end=$6 key=${7:-$2.key}
  local d=".ca-$ca" args=()
  [ -f "$key" ] || newkey "$key"
  openssl req -new -key "$key" -subj "/O=predbridge test/CN=$cn" -out "$name.csr"
  if [ "$start" != now ]; then args+=(-startdate "$start"); fi
  case "$end" in
    +*) args+=(-days "${end#+}") ;;
    *) args+=(-enddate "$end") ;;
  esac
  openssl ca -batch -notext -config "$d/ca.cnf" \
    -extensions "$profile" -in "$name.csr" -out "$name.crt" "${args[@]}" 2>/dev/null \
    || { echo "gen-certs: signing $name failed" >&2; exit 1; }
  rm -f "$name.csr"
}

# keystore NAME CA: a Kafka PEM keystore (unencrypted PKCS#8 key followed by the chain)
keystore() {
  { openssl pkcs8 -topk8 -nocrypt -in "$1.key"; cat "$1.crt" "$2.crt"; } >"$1.pem"
  chmod 0600 "$1.pem"
}

# revoke CA CERT OUT_EMPTY OUT_REVOKED: two CRLs of CA, one revoking nothing and one revoking CERT. They
# come from a database of their own, made afresh each time, so the empty one stays empty and the CA's
# database of issued certificates is left as it is.
revoke() {
  local ca=$1 cert=$2 d=".crl-$1"
  rm -rf "$d"
  mkdir -p "$d"
  : >"$d/index.txt"
  echo 01 >"$d/crlnumber"
  cat >"$d/ca.cnf" <<CNF
[ ca ]
default_ca = this
[ this ]
database = $d/index.txt
crlnumber = $d/crlnumber
certificate = $ca.crt
private_key = $ca.key
default_md = sha256
default_crl_days = 825
CNF
  { openssl ca -batch -config "$d/ca.cnf" -gencrl -out "$3" &&
    openssl ca -batch -config "$d/ca.cnf" -revoke "$cert" -crl_reason keyCompromise &&
    openssl ca -batch -config "$d/ca.cnf" -gencrl -out "$4"; } 2>/dev/null \
    || { echo "gen-certs: revoking $cert failed" >&2; exit 1; }
  rm -rf "$d"
}

export PB_SAN="DNS:localhost"  # every config load needs it defined
if [ "$add_revocation" -eq 0 ]; then
  mkca ca "predbridge test CA"
  mkca untrusted-ca "untrusted test CA"

  export PB_SAN="DNS:localhost,IP:127.0.0.1,DNS:kafka"
  sign ca broker kafka-broker server now +825
  keystore broker ca
  sign untrusted-ca untrusted-broker kafka-broker server now +825
  keystore untrusted-broker untrusted-ca
  export PB_SAN="DNS:wrong.example.invalid"
  sign ca badhost-broker kafka-broker server now +825
  keystore badhost-broker ca
  export PB_SAN="DNS:localhost"

  for cn in predbridged predbridge-consumer admin; do
    sign ca "$cn" "$cn" client now +825
  done
  sign untrusted-ca untrusted-client predbridged client now +825
  sign ca expired-client predbridged client 20200101000000Z 20200201000000Z
  sign ca notyet-client predbridged client 20990101000000Z 20990201000000Z
  newkey mismatch-client.key
  sign ca mismatch-client predbridged client now +825 .mismatch-signing.key
  rm -f .mismatch-signing.key
fi

export PB_SAN="DNS:localhost,IP:127.0.0.1,DNS:kafka"
sign ca revoked-broker kafka-broker server now +825
keystore revoked-broker ca
revoke ca revoked-broker.crt empty.crl revoked.crl

chmod 0600 ./*.key ./*.pem
chmod 0644 ./*.crt ./*.crl
touch .complete
if [ "$add_revocation" -eq 1 ]; then
  echo "gen-certs: added revoked-broker.* and the CRLs to the existing test PKI in $(pwd)"
else
  echo "gen-certs: wrote test PKI to $(pwd) ($([ "$rsa" -eq 1 ] && echo 'RSA 3072' || echo 'EC P-256'))"
fi
