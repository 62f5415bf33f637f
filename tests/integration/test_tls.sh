#!/usr/bin/env bash
# TLS and mTLS on the RPC port, with certificates made here by the openssl
# command: Go's crypto/tls clients (tls.Dial + rpc.NewClient and
# jsonrpc.NewClient) against a tether server, tether's client against Go
# net/rpc servers behind tls.Listen, every codec over TLS, plaintext and
# TLS on one port (--allow-plaintext), and what the user sees for each
# mistake: wrong CA, expired certificate, wrong host name, no client
# certificate where one is required, plaintext to a TLS port and TLS to a
# plaintext one.
set -euo pipefail

for tool in go openssl; do
    if ! command -v $tool >/dev/null 2>&1; then
        echo "FAIL: $tool not installed (scripts/setup.sh installs it)"
        exit 1
    fi
done
source "$(dirname "$0")/interop_lib.sh"

echo "== certificates"
C=$TMP/certs
mkdir -p "$C"
(
    cd "$C"
    ossl() { openssl "$@" 2>/dev/null; }
    ossl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=Test CA"
    ossl req -x509 -newkey rsa:2048 -nodes -keyout ca2.key -out ca2.crt -days 30 -subj "/CN=Other CA"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >good.ext
    printf 'subjectAltName=DNS:other.example\n' >other.ext
    ossl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj "/CN=localhost"
    sign() { # csr ca days ext out
        ossl x509 -req -in "$1" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -days "$3" \
            ${4:+-extfile "$4"} -out "$5"
    }
    sign srv.csr ca 30 good.ext srv.crt
    sign srv.csr ca -1 good.ext expired.crt # notAfter a day before notBefore: expired
    sign srv.csr ca 30 other.ext wronghost.crt
    ossl req -newkey rsa:2048 -nodes -keyout cli.key -out cli.csr -subj "/O=tether-test/CN=client-one"
    sign cli.csr ca 30 "" cli.crt
    sign cli.csr ca2 30 "" cli-other.crt
    ossl req -newkey rsa:2048 -nodes -keyout clib.key -out clib.csr -subj "/O=tether-test/CN=client-two"
    sign clib.csr ca 30 "" clib.crt
)
openssl x509 -in "$C/expired.crt" -noout -checkend 0 >/dev/null && {
    echo "FAIL: expired.crt is not expired"
    exit 1
}

start() { # name program args... : prints the address line's file
    local name=$1
    shift
    "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PIDS+=($!)
}
addr_of() { # name
    wait_line "$TMP/$1.out" "listening on"
    sed -n 's/^listening on //p' "$TMP/$1.out"
}

echo "== Go crypto/tls clients -> tether server (mTLS)"
start mtls "$BIN/interop-server" --tls-cert "$C/srv.crt" --tls-key "$C/srv.key" \
    --tls-client-ca "$C/ca.crt"
MTLS=$(addr_of mtls)
for codec in gob jsonrpc; do
    echo "-- $codec"
    "$GODIR/goclient" -addr "$MTLS" -codec "$codec" -tls-ca "$C/ca.crt" -tls-cert "$C/cli.crt" \
        -tls-key "$C/cli.key"
done
echo "== tether client -> tether server over mTLS, every codec"
for codec in native gob jsonrpc; do
    echo "-- $codec"
    "$BIN/interop-client" "$MTLS" "$codec" "$C/ca.crt" "$C/cli.crt" "$C/cli.key"
done

echo "== Go net/rpc servers behind tls.Listen"
"$GODIR/goserver" -tls-cert "$C/srv.crt" -tls-key "$C/srv.key" >"$TMP/go.out" 2>&1 &
PIDS+=($!)
wait_line "$TMP/go.out" "^jsonrpc "
"$BIN/interop-client" "$(awk '/^gob /{print $2}' "$TMP/go.out")" gob "$C/ca.crt"
"$BIN/interop-client" "$(awk '/^jsonrpc /{print $2}' "$TMP/go.out")" jsonrpc "$C/ca.crt"
echo "-- with a required client certificate"
"$GODIR/goserver" -tls-cert "$C/srv.crt" -tls-key "$C/srv.key" -tls-client-ca "$C/ca.crt" \
    >"$TMP/gom.out" 2>&1 &
PIDS+=($!)
wait_line "$TMP/gom.out" "^jsonrpc "
GOM=$(awk '/^gob /{print $2}' "$TMP/gom.out")
"$BIN/interop-client" "$GOM" gob "$C/ca.crt" "$C/cli.crt" "$C/cli.key"

FAILS=0
# expect_err NAME PATTERN cmd...: the command fails and its output has PATTERN.
expect_err() {
    local name=$1 pat=$2
    shift 2
    if "$@" >"$TMP/e.out" 2>&1; then
        echo "FAIL: $name: succeeded"
        cat "$TMP/e.out"
        FAILS=$((FAILS + 1))
    elif ! grep -Eq -- "$pat" "$TMP/e.out"; then
        echo "FAIL: $name: no /$pat/ in:"
        cat "$TMP/e.out"
        FAILS=$((FAILS + 1))
    else
        echo "ok: $name:"
        sed 's/^/      /' "$TMP/e.out"
    fi
}
fails() { ! "$@"; } # goclient -expect-fail exits 0 when its call failed
expect_out() { # name want cmd...
    local name=$1 want=$2
    shift 2
    local got
    if ! got=$("$@" 2>"$TMP/o.err") || [ "$got" != "$want" ]; then
        echo "FAIL: $name: got '$got', want '$want'"
        cat "$TMP/o.err"
        FAILS=$((FAILS + 1))
    else
        echo "ok: $name -> $got"
    fi
}

echo "== mistakes, as the user sees them"
T="$BIN/tether"
ADD=(Calculator.Add '{"A":1,"B":2}')
start tls "$BIN/calculator-server" --listen 127.0.0.1:0 --tls-cert "$C/srv.crt" --tls-key "$C/srv.key"
TLS=$(addr_of tls)
PORT=${TLS##*:}
for codec in native gob jsonrpc; do
    expect_out "tether call --tls ($codec)" 3 "$T" call "$TLS" "${ADD[@]}" --codec $codec --tls \
        --cacert "$C/ca.crt"
done
expect_out "by host name" 3 "$T" call "localhost:$PORT" "${ADD[@]}" --tls --cacert "$C/ca.crt"
expect_out "--server-name" 3 "$T" call "$TLS" "${ADD[@]}" --tls --cacert "$C/ca.crt" \
    --server-name localhost
expect_err "wrong CA" "certificate verify failed: unable to get local issuer certificate" \
    "$T" call "$TLS" "${ADD[@]}" --tls --cacert "$C/ca2.crt"
expect_err "wrong CA (Go)" "x509: certificate signed by unknown authority" \
    fails "$GODIR/goclient" -addr "$TLS" -codec gob -tls-ca "$C/ca2.crt" -expect-fail
expect_err "wrong server name" "certificate verify failed: hostname mismatch" \
    "$T" call "$TLS" "${ADD[@]}" --tls --cacert "$C/ca.crt" --server-name other.example
expect_err "plaintext to a TLS port" \
    "server closed the connection: rpc: this server requires TLS: plaintext connections are refused" \
    "$T" call "$TLS" "${ADD[@]}"
grep -q "plaintext connection refused: this server requires TLS" "$TMP/tls.err" ||
    { echo "FAIL: the server did not log the refused plaintext connection"; FAILS=$((FAILS + 1)); }
expect_err "Go plaintext to a TLS port (closed)" "error: (unexpected EOF|EOF|.*connection reset by peer)$" \
    fails "$GODIR/goclient" -addr "$TLS" -codec jsonrpc -expect-fail

start exp "$BIN/calculator-server" --listen 127.0.0.1:0 --tls-cert "$C/expired.crt" \
    --tls-key "$C/srv.key"
EXP=$(addr_of exp)
expect_err "expired server certificate" "certificate verify failed: certificate has expired" \
    "$T" call "$EXP" "${ADD[@]}" --tls --cacert "$C/ca.crt"
expect_err "expired server certificate (Go)" "x509: certificate has expired" \
    fails "$GODIR/goclient" -addr "$EXP" -codec gob -tls-ca "$C/ca.crt" -expect-fail

start wh "$BIN/calculator-server" --listen 127.0.0.1:0 --tls-cert "$C/wronghost.crt" \
    --tls-key "$C/srv.key"
WH=$(addr_of wh)
expect_err "certificate for another host (by IP)" "certificate verify failed: IP address mismatch" \
    "$T" call "$WH" "${ADD[@]}" --tls --cacert "$C/ca.crt"
expect_err "certificate for another host (by name)" "certificate verify failed: hostname mismatch" \
    "$T" call "localhost:${WH##*:}" "${ADD[@]}" --tls --cacert "$C/ca.crt"
expect_err "certificate for another host (Go)" "x509: certificate is valid for other.example" \
    fails "$GODIR/goclient" -addr "localhost:${WH##*:}" -codec gob -tls-ca "$C/ca.crt" -expect-fail

# TLS 1.3: the client's handshake is done before the server has judged
# its certificate, so the refusal arrives as an alert on the first read.
expect_err "no client certificate where one is required" "alert certificate required" \
    "$T" call "$MTLS" "${ADD[@]}" --tls --cacert "$C/ca.crt"
expect_err "no client certificate (Go)" "remote error: tls: certificate required" \
    fails "$GODIR/goclient" -addr "$MTLS" -codec gob -tls-ca "$C/ca.crt" -expect-fail
expect_err "client certificate from another CA" "alert unknown ca" \
    "$T" call "$MTLS" "${ADD[@]}" --tls --cacert "$C/ca.crt" --cert "$C/cli-other.crt" \
    --key "$C/cli.key"
grep -q "peer did not return a certificate" "$TMP/mtls.err" ||
    { echo "FAIL: the server did not log the missing certificate"; FAILS=$((FAILS + 1)); }

start plain "$BIN/calculator-server" --listen 127.0.0.1:0
PLAIN=$(addr_of plain)
expect_err "TLS to a plaintext port" "tls: handshake failed" \
    "$T" call "$PLAIN" "${ADD[@]}" --tls --cacert "$C/ca.crt"

echo "== by service name (local: registry): every instance verified by its IP"
mkdir -p "$TMP/reg"
start named "$BIN/calculator-server" --listen 127.0.0.1:0 --registry "local:$TMP/reg" \
    --name tcalc --tls-cert "$C/srv.crt" --tls-key "$C/srv.key"
addr_of named >/dev/null
expect_out "by name over TLS" 3 "$T" call tcalc "${ADD[@]}" --registry "local:$TMP/reg" --tls \
    --cacert "$C/ca.crt"
expect_err "by name, wrong CA (retried until the deadline)" \
    "certificate verify failed: unable to get local issuer certificate" \
    "$T" call tcalc "${ADD[@]}" --registry "local:$TMP/reg" --tls --cacert "$C/ca2.crt" \
    --timeout 1500

echo "== plaintext and TLS on one port (--allow-plaintext)"
start both "$BIN/calculator-server" --listen 127.0.0.1:0 --tls-cert "$C/srv.crt" \
    --tls-key "$C/srv.key" --allow-plaintext
BOTH=$(addr_of both)
for codec in native gob jsonrpc; do
    expect_out "plaintext ($codec)" 3 "$T" call "$BOTH" "${ADD[@]}" --codec $codec
    expect_out "TLS ($codec)" 3 "$T" call "$BOTH" "${ADD[@]}" --codec $codec --tls \
        --cacert "$C/ca.crt"
done
start both2 "$BIN/interop-server" --tls-cert "$C/srv.crt" --tls-key "$C/srv.key" --allow-plaintext
BOTH2=$(addr_of both2)
"$GODIR/goclient" -addr "$BOTH2" -codec gob -tls-ca "$C/ca.crt" | tail -1
"$GODIR/goclient" -addr "$BOTH2" -codec jsonrpc | tail -1

echo "== auth: bearer tokens and certificate subjects"
SECRET=tok-$RANDOM-$RANDOM-secret
printf '%s\nanother-token\n' "$SECRET" >"$TMP/tokens"
printf '%s\n' "$SECRET" >"$TMP/mytoken"
start auth "$BIN/calculator-server" --listen 127.0.0.1:0 --auth-token-file "$TMP/tokens"
AUTH=$(addr_of auth)
expect_err "no token" "EPERM: rpc: permission denied: no bearer token" \
    "$T" call "$AUTH" "${ADD[@]}"
expect_err "wrong token" "EPERM: rpc: permission denied: the bearer token is not accepted" \
    env TETHER_TOKEN=wrong-token "$T" call "$AUTH" "${ADD[@]}"
expect_out "token from --token-file" 3 "$T" call "$AUTH" "${ADD[@]}" --token-file "$TMP/mytoken"
expect_out "token from \$TETHER_TOKEN" 3 env TETHER_TOKEN="$SECRET" "$T" call "$AUTH" "${ADD[@]}" -v
expect_err "jsonrpc carries no metadata, so no token" "permission denied" \
    "$T" call "$AUTH" "${ADD[@]}" --codec jsonrpc --token-file "$TMP/mytoken"
start mauth "$BIN/calculator-server" --listen 127.0.0.1:0 --tls-cert "$C/srv.crt" \
    --tls-key "$C/srv.key" --tls-client-ca "$C/ca.crt" --allow-subject "CN=client-one,O=tether-test"
MAUTH=$(addr_of mauth)
for codec in native jsonrpc; do
    expect_out "allowed certificate subject ($codec)" 3 "$T" call "$MAUTH" "${ADD[@]}" \
        --codec $codec --tls --cacert "$C/ca.crt" --cert "$C/cli.crt" --key "$C/cli.key"
done
expect_err "another certificate subject" \
    "EPERM: rpc: permission denied: the client certificate is not authorised" \
    "$T" call "$MAUTH" "${ADD[@]}" --tls --cacert "$C/ca.crt" --cert "$C/clib.crt" --key "$C/clib.key"
"$GODIR/goclient" -addr "$MAUTH" -codec jsonrpc -tls-ca "$C/ca.crt" -tls-cert "$C/cli.crt" \
    -tls-key "$C/cli.key" -only-add
for f in "$TMP"/*.out "$TMP"/*.err "$TMP"/e.out "$TMP"/o.err; do
    if grep -q -- "$SECRET" "$f" 2>/dev/null; then
        echo "FAIL: the token appears in $f"
        FAILS=$((FAILS + 1))
    fi
done

echo "== bad files are reported when the server starts"
expect_err "missing certificate file" "tls: cannot load certificate $C/nope.crt" \
    "$BIN/calculator-server" --listen 127.0.0.1:0 --tls-cert "$C/nope.crt" --tls-key "$C/srv.key"
expect_err "key of another certificate" "cannot load key .*cli.key: key values mismatch" \
    "$BIN/calculator-server" --listen 127.0.0.1:0 --tls-cert "$C/srv.crt" --tls-key "$C/cli.key"

for f in "$TMP"/*.err; do
    if grep -q "ERROR: AddressSanitizer\|runtime error:" "$f"; then
        echo "FAIL: sanitizer report in $f"
        cat "$f"
        FAILS=$((FAILS + 1))
    fi
done
if [ $FAILS -ne 0 ]; then
    echo "$FAILS checks failed"
    exit 1
fi
echo "all TLS checks passed"
