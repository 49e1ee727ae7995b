#!/bin/sh
# Generate throwaway keys and certificates for the test registries, valid for one day.
#
#   make_certs.sh token DIR           DIR/token.key and DIR/token.pem: a self-signed RSA
#                                     certificate that signs bearer tokens
#   make_certs.sh tls DIR HOSTNAME    DIR/ca.pem (the certificate clients trust), and DIR/tls.pem
#                                     with DIR/tls.key for the registry, issued by that CA for
#                                     DNS:HOSTNAME and IP:127.0.0.1
#
# The TLS certificate comes from a separate CA because some TLS stacks (rustls with webpki, for
# one) reject a CA certificate presented as a server certificate.
set -eu

usage() {
    echo "usage: make_certs.sh token DIR | make_certs.sh tls DIR HOSTNAME" >&2
    exit 2
}

[ $# -ge 2 ] || usage
kind=$1
dir=$2
[ -d "$dir" ] || { echo "make_certs.sh: error: $dir is not a folder" >&2; exit 1; }

case $kind in
token)
    [ $# -eq 2 ] || usage
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=token-issuer \
        -keyout "$dir/token.key" -out "$dir/token.pem"
    ;;
tls)
    [ $# -eq 3 ] || usage
    hostname=$3
    # Letters, digits, dots and hyphens only, because the name goes into an OpenSSL config line.
    case $hostname in
    '' | *[!A-Za-z0-9.-]*)
        echo "make_certs.sh: error: invalid hostname '$hostname'" >&2
        exit 1
        ;;
    esac
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=lambda-image-test-ca \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
        -keyout "$dir/ca.key" -out "$dir/ca.pem"
    openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$hostname" \
        -keyout "$dir/tls.key" -out "$dir/tls.csr"
    printf '%s\n' \
        "basicConstraints = critical, CA:FALSE" \
        "keyUsage = critical, digitalSignature, keyEncipherment" \
        "extendedKeyUsage = serverAuth" \
        "subjectAltName = DNS:$hostname, IP:127.0.0.1" >"$dir/tls.ext"
    openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 1 -extfile "$dir/tls.ext" -out "$dir/tls.pem"
    ;;
*)
    usage
    ;;
esac
