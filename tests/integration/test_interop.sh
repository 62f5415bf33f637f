#!/usr/bin/env bash
# Go interop: Go's own net/rpc clients (gob and jsonrpc) against a tether
# server, tether's client against Go's net/rpc servers, bad input, and
# `tether call` over every codec.  Needs Debian's golang-go (standard
# library only); built with GO111MODULE=off into the build tree, once per
# build (the Go cache lives there too), so no network is needed.
set -euo pipefail

if ! command -v go >/dev/null 2>&1; then
    # A missing peer is a failure: scripts/setup.sh installs golang-go.
    echo "FAIL: go not installed (scripts/setup.sh installs golang-go)"
    exit 1
fi
source "$(dirname "$0")/interop_lib.sh"

LIMIT=4194304
"$BIN/interop-server" --max-frame $LIMIT >"$TMP/srv.out" 2>"$TMP/srv.err" &
PIDS+=($!)
SRV_PID=$!
wait_line "$TMP/srv.out" "listening on"
ADDR=$(sed -n 's/^listening on //p' "$TMP/srv.out")

echo "== Go clients -> tether server ($ADDR)"
for codec in gob jsonrpc; do
    echo "-- $codec"
    "$GODIR/goclient" -addr "$ADDR" -codec "$codec" -big $LIMIT
done
echo "-- garbage and wrong codecs"
"$GODIR/goclient" -addr "$ADDR" -bad

echo "== tether client -> tether server, every codec"
for codec in native gob jsonrpc; do
    echo "-- $codec"
    "$BIN/interop-client" "$ADDR" "$codec"
done

"$GODIR/goserver" >"$TMP/go.out" 2>&1 &
PIDS+=($!)
wait_line "$TMP/go.out" "^jsonrpc "
GOB=$(awk '/^gob /{print $2}' "$TMP/go.out")
JSON=$(awk '/^jsonrpc /{print $2}' "$TMP/go.out")
echo "== tether client -> Go net/rpc server"
echo "-- gob ($GOB)"
"$BIN/interop-client" "$GOB" gob
echo "-- jsonrpc ($JSON)"
"$BIN/interop-client" "$JSON" jsonrpc

echo "== tether call"
expect_out() { # want args...
    local want=$1
    shift
    local got
    got=$("$BIN/tether" call "$@")
    if [ "$got" != "$want" ]; then
        echo "FAIL: tether call $*: want '$want', got '$got'" >&2
        exit 1
    fi
    echo "ok: tether call $* -> $got"
}
expect_err() { # text args...
    local want=$1
    shift
    if "$BIN/tether" call "$@" >"$TMP/out" 2>"$TMP/err"; then
        echo "FAIL: tether call $* succeeded: $(cat "$TMP/out")" >&2
        exit 1
    fi
    if ! grep -qF "$want" "$TMP/err"; then
        echo "FAIL: tether call $*: want '$want' in: $(cat "$TMP/err")" >&2
        exit 1
    fi
    echo "ok: tether call $* -> error: $(cat "$TMP/err")"
}
for codec in native gob jsonrpc; do
    expect_out 3 "$ADDR" Calculator.Add '{"A":1,"B":2}' --codec $codec
    expect_err "divide by zero" "$ADDR" Calculator.Div '{"A":1,"B":0}' --codec $codec
    expect_err "rpc: can't find method Calculator.Nope" "$ADDR" Calculator.Nope '{}' --codec $codec
    expect_out 7 "$ADDR" Calculator.Mul '{"A":-7,"B":-1}' --codec $codec
done
expect_out '{"Name":"x","Values":[1,2],"Scores":{"a":1},"Child":{"Name":"k","Count":3},"Tags":[],"Data":"AQI=","Ratio":0.5,"Ok":true,"Big":18446744073709551615,"Small":0,"USmall":0,"F":0,"Color":0,"Items":[],"Labels":{},"Opt":7,"S":0,"Ratios":[]}' \
    "$ADDR" Codec.Echo '{"Name":"x","Values":[1,2],"Scores":{"a":1},"Child":{"Name":"k","Count":3},"Data":"AQI=","Ratio":0.5,"Ok":true,"Big":18446744073709551615,"Opt":7}' --codec gob
expect_err "cannot unmarshal string" "$ADDR" Calculator.Add '{"A":"x"}'
expect_out 3 "$JSON" Calculator.Add '{"A":1,"B":2}' --codec jsonrpc
expect_err "divide by zero" "$JSON" Calculator.Div '{"A":1,"B":0}' --codec jsonrpc
expect_err "does not describe" "$GOB" Calculator.Add '{"A":1,"B":2}' --codec gob

# The server is still healthy after all of the above.
kill -0 "$SRV_PID"
echo "PASS"
