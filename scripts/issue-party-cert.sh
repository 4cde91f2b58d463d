#!/usr/bin/env bash
# Issues a certificate for one party (bank), signed by the federation CA.
#
#   scripts/issue-party-cert.sh PARTY_ID CA_DIR OUT_DIR [extra tessera-certs issue flags]
#
# CA_DIR is the federation PKI made by `tessera-certs init`; it must exist (a missing or wrong
# directory is refused: this script never creates a CA). OUT_DIR receives tls.crt (leaf + intermediate), tls.key (mode 0600), ca.crt
# (root) and crl.pem: point the party's `tls_dir` at it. The identity
# spiffe://<federation>/party/PARTY_ID is written into a URI SAN. See docs/CERTIFICATES.md.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 PARTY_ID CA_DIR OUT_DIR [--days N] [--key-type ecdsa-p256|ed25519] [--force]" >&2
  exit 2
fi
party=$1 ca=$2 out=$3
shift 3
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${TESSERA_CERTS:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet -p tessera-certs --manifest-path "$root/Cargo.toml"
  bin="${CARGO_TARGET_DIR:-$root/target}/release/tessera-certs"
fi
exec "$bin" issue --ca "$ca" --out "$out" --party "$party" "$@"
