#!/usr/bin/env bash
# Development certificates for TLS and mutual TLS (`make certs`), made with openssl:
#   ca.pem, ca-key.pem          a CA that signs the two below; clients trust ca.pem
#   server.pem, server-key.pem  for localhost, 127.0.0.1, ::1 and the docker-compose services
#                               (encoder, search), plus any EXTRA_DNS_NAME given
#   client.pem, client-key.pem  a client certificate, for servers that require mutual TLS
# Usage: tools/make_certs.sh [DIR [EXTRA_DNS_NAME...]]   (DIR defaults to certs)
# An existing DIR/ca.pem is kept, since clients may trust it already: delete DIR to start over.
# For development only: production certificates come from your own PKI or ACME.
set -euo pipefail

dir=${1:-certs}
shift || true
if [[ -e "$dir/ca.pem" ]]; then
    echo "$dir/ca.pem exists: keeping the certificates in $dir (delete $dir to make new ones)"
    exit 0
fi
mkdir -p "$dir"
cd "$dir"
umask 077  # private keys readable by their owner only; certificates are opened up below

names="DNS:localhost,IP:127.0.0.1,IP:::1,DNS:encoder,DNS:search"
for name in "$@"; do names="$names,DNS:$name"; done
key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

openssl req -x509 "${key[@]}" -days 3650 -subj "/CN=Lookalike development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout ca-key.pem -out ca.pem

# sign NAME SUBJECT EXTENSIONS: NAME-key.pem and NAME.pem, signed by the CA (825 days: what
# browsers and Apple's TLS stack accept at most for a leaf certificate).
sign() {
    openssl req -new "${key[@]}" -subj "$2" -keyout "$1-key.pem" -out "$1.csr"
    # $3 unquoted on purpose: one extension a word, one a line.
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" $3 > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -set_serial "0x$(openssl rand -hex 16)" \
        -days 825 -extfile "$1.ext" -out "$1.pem"
    rm "$1.csr" "$1.ext"
}
sign server "/CN=localhost" "extendedKeyUsage=serverAuth subjectAltName=$names"
sign client "/CN=lookalike-client" "extendedKeyUsage=clientAuth"
chmod 644 ca.pem server.pem client.pem
echo "wrote $dir: ca.pem, server.pem + server-key.pem ($names), client.pem + client-key.pem"
