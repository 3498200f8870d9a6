#!/bin/sh
# Makes the test certificates in this folder (committed; run again only to
# replace them): a test CA, and two server certificates for localhost and
# 127.0.0.1 signed by it, `one` and `two` (their CN tells them apart when
# SIGHUP swaps them). Valid for 100 years. Needs openssl.
set -eu
cd "$(dirname "$0")"
days=36500
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout ca.key -out ca.pem -days $days -subj "/CN=fiddler_crab test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign"
for name in one two; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$name.key" -out "$name.csr" -subj "/CN=$name"
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -out "$name.pem" -days $days -extfile "$name.ext"
  rm "$name.csr" "$name.ext"
done
rm -f ca.key ca.srl
