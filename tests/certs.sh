#!/bin/sh
# Throwaway certificates for the TLS tests: tests/certs.sh DIR
#
# Makes, in DIR (created if needed), with GnuTLS's certtool ($CERTTOOL, default certtool):
#   ca.pem / ca.key           a test CA (the trust anchor the tests pass to the library)
#   good.pem / good.key       signed by the CA, for IP 127.0.0.1, IP ::1 and DNS localhost
#   other.pem / other.key     signed by the CA, for DNS mail.example.com only (name mismatch)
#   expired.pem / expired.key signed by the CA, for the same names as good.pem, valid 2001-2002
#   self.pem / self.key       self-signed (not from the CA), for 127.0.0.1 and localhost
#   client.pem / client.key   signed by the CA, a TLS client certificate, CN "relay-client"
#
# ECDSA P-256 keys, so the whole run takes well under a second. Every run makes a fresh set
# (files are replaced, never appended to): running it twice is harmless. Any failure stops the
# script with a message on stderr and a non-zero status; the files are moved into DIR only when
# all of them were made, so DIR never holds a half-made set.
set -eu

die() {
    echo "certs.sh: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: certs.sh DIR"
dir=$1
certtool=${CERTTOOL:-certtool}
command -v "$certtool" >/dev/null 2>&1 ||
    die "certtool not found (\"$certtool\"): install gnutls-bin or set CERTTOOL"

mkdir -p "$dir" || die "cannot create $dir"
work=$(mktemp -d "$dir/.certs.XXXXXX") || die "cannot create a temporary folder in $dir"
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM

# run LABEL COMMAND...: runs certtool quietly, shows its output only when it fails.
run() {
    label=$1
    shift
    if ! "$@" >"$work/out.txt" 2>&1; then
        cat "$work/out.txt" >&2
        die "certtool failed making $label"
    fi
}

key() {
    run "$1.key" "$certtool" --generate-privkey --key-type=ecdsa --curve=secp256r1 --no-text \
        --outfile "$work/$1.key"
}

# CA: valid from long before the expired certificate to long after the tests.
cat >"$work/ca.tmpl" <<'EOF'
organization = "emailsession tests"
cn = "emailsession test CA"
ca
cert_signing_key
crl_signing_key
activation_date = "2000-01-01 00:00:00"
expiration_date = "2099-12-31 23:59:59"
EOF

cat >"$work/good.tmpl" <<'EOF'
organization = "emailsession tests"
cn = "localhost"
dns_name = "localhost"
ip_address = "127.0.0.1"
ip_address = "::1"
tls_www_server
signing_key
expiration_days = 3650
EOF

cat >"$work/other.tmpl" <<'EOF'
organization = "emailsession tests"
cn = "mail.example.com"
dns_name = "mail.example.com"
tls_www_server
signing_key
expiration_days = 3650
EOF

cat >"$work/expired.tmpl" <<'EOF'
organization = "emailsession tests"
cn = "localhost"
dns_name = "localhost"
ip_address = "127.0.0.1"
ip_address = "::1"
tls_www_server
signing_key
activation_date = "2001-01-01 00:00:00"
expiration_date = "2002-01-01 00:00:00"
EOF

cat >"$work/self.tmpl" <<'EOF'
organization = "emailsession tests (self-signed)"
cn = "localhost"
dns_name = "localhost"
ip_address = "127.0.0.1"
tls_www_server
signing_key
expiration_days = 3650
EOF

cat >"$work/client.tmpl" <<'EOF'
organization = "emailsession tests"
cn = "relay-client"
tls_www_client
signing_key
expiration_days = 3650
EOF

key ca
run ca.pem "$certtool" --generate-self-signed --no-text --load-privkey "$work/ca.key" \
    --template "$work/ca.tmpl" --outfile "$work/ca.pem"

for name in good other expired client; do
    key "$name"
    run "$name.pem" "$certtool" --generate-certificate --no-text \
        --load-privkey "$work/$name.key" --load-ca-certificate "$work/ca.pem" \
        --load-ca-privkey "$work/ca.key" --template "$work/$name.tmpl" \
        --outfile "$work/$name.pem"
done

key self
run self.pem "$certtool" --generate-self-signed --no-text --load-privkey "$work/self.key" \
    --template "$work/self.tmpl" --outfile "$work/self.pem"

for name in ca good other expired self client; do
    for ext in pem key; do
        [ -s "$work/$name.$ext" ] || die "$name.$ext was not made"
        grep -q -- "-----BEGIN" "$work/$name.$ext" || die "$name.$ext is not PEM"
    done
done
for name in ca good other expired self client; do
    for ext in pem key; do
        mv -f "$work/$name.$ext" "$dir/$name.$ext" || die "cannot move $name.$ext into $dir"
    done
done
chmod 600 "$dir"/*.key
