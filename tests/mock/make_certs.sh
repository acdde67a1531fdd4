#!/bin/sh
# make_certs.sh OUTDIR: test PKI for the mock Pipwave server and the TLS-failure tests.
#
#   ca.pem / ca.key                 test CA
#   server.pem / server.key         leaf signed by ca.pem, SAN DNS:localhost, IP:127.0.0.1, IP:::1
#   wrong-host.pem / wrong-host.key leaf signed by ca.pem, SAN DNS:wrong.example only
#   other-ca.pem / other-ca.key     a second, unrelated CA (a client trusting only it must fail)
#   other-server.pem / .key         leaf for localhost signed by other-ca.pem
#
# EC P-256, valid 30 days. Idempotent: a file set that already exists is kept. Quiet unless
# openssl fails, in which case its output is shown and the script exits non-zero.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
out=$1
mkdir -p "$out"
cd "$out"

DAYS=30
log=$(mktemp)
trap 'rm -f "$log" ./*.csr ./*.ext.tmp' EXIT

run() {
    if ! "$@" >"$log" 2>&1; then
        echo "make_certs.sh: failed: $*" >&2
        cat "$log" >&2
        exit 1
    fi
}

serial() {
    # Positive 127-bit serial, so re-signing never reuses one.
    echo "0x7$(openssl rand -hex 15)"
}

# make_ca NAME CN
make_ca() {
    [ -s "$1.pem" ] && [ -s "$1.key" ] && return 0
    run openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1.key" -out "$1.pem" -days "$DAYS" -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash"
    chmod 600 "$1.key"
}

# make_leaf NAME CA CN SAN
make_leaf() {
    [ -s "$1.pem" ] && [ -s "$1.key" ] && return 0
    cat >"$1.ext.tmp" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$4
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
    run openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1.key" -out "$1.csr" -subj "/CN=$3"
    chmod 600 "$1.key"
    run openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "$(serial)" \
        -days "$DAYS" -sha256 -extfile "$1.ext.tmp" -out "$1.pem"
    rm -f "$1.csr" "$1.ext.tmp"
}

make_ca ca "pvgate test CA"
make_ca other-ca "pvgate other test CA"
make_leaf server ca localhost "DNS:localhost,IP:127.0.0.1,IP:::1"
make_leaf wrong-host ca wrong.example "DNS:wrong.example"
make_leaf other-server other-ca localhost "DNS:localhost,IP:127.0.0.1,IP:::1"
