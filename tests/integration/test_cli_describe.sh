#!/usr/bin/env bash
# `tether describe` against the calculator example: by address (every
# codec), by service name through a local registry, one service, one
# method, and the errors (unknown service names what exists, unknown
# method, a port nobody serves, bad usage).
set -euo pipefail

BIN=${TETHER_BIN_DIR:?}
TMP=$(mktemp -d)
PID=
cleanup() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

REG="local:$TMP/reg"
mkdir -p "$TMP/reg"
"$BIN/calculator-server" --listen 127.0.0.1:0 --registry "$REG" --name calc-describe \
    >"$TMP/srv.out" 2>"$TMP/srv.err" &
PID=$!
for _ in $(seq 1 200); do
    grep -q "listening on" "$TMP/srv.out" 2>/dev/null && break
    sleep 0.05
done
ADDR=$(sed -n 's/^listening on //p' "$TMP/srv.out")
[ -n "$ADDR" ] || { echo "FAIL: the server did not start: $(cat "$TMP/srv.err")" >&2; exit 1; }

FULL='service Calculator {
  rpc Add(Args) returns (google.protobuf.Int64Value);
  rpc Div(Args) returns (google.protobuf.Int64Value);
  rpc Mul(Args) returns (google.protobuf.Int64Value);
  rpc Sub(Args) returns (google.protobuf.Int64Value);
}
service _tether {
  rpc Describe(google.protobuf.StringValue) returns (google.protobuf.StringValue);
}
service _tether.Health {
  rpc Check(google.protobuf.StringValue) returns (google.protobuf.StringValue);
}

message Args {
  int64 A = 1;
  int64 B = 2;
}

message google.protobuf.Int64Value {
  int64 value = 1;
}

message google.protobuf.StringValue {
  string value = 1;
}'

ONE='service Calculator {
  rpc Div(Args) returns (google.protobuf.Int64Value);
}

message Args {
  int64 A = 1;
  int64 B = 2;
}

message google.protobuf.Int64Value {
  int64 value = 1;
}'

expect_out() { # want args...
    local want=$1
    shift
    local got
    if ! got=$("$BIN/tether" describe "$@" 2>"$TMP/err"); then
        echo "FAIL: tether describe $* failed: $(cat "$TMP/err")" >&2
        exit 1
    fi
    if [ "$got" != "$want" ]; then
        echo "FAIL: tether describe $*: want:" >&2
        echo "$want" >&2
        echo "got:" >&2
        echo "$got" >&2
        exit 1
    fi
    echo "ok: tether describe $*"
}
expect_err() { # status text args...
    local want_rc=$1 want=$2
    shift 2
    local rc=0
    "$BIN/tether" describe "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
    if [ "$rc" != "$want_rc" ] || ! grep -qF "$want" "$TMP/err"; then
        echo "FAIL: tether describe $*: want status $want_rc and '$want', got $rc: $(cat "$TMP/err")" >&2
        exit 1
    fi
    echo "ok: tether describe $* -> $rc: $(head -1 "$TMP/err")"
}

for codec in native gob jsonrpc; do
    expect_out "$FULL" "$ADDR" --codec $codec
    expect_out "$ONE" "$ADDR" Calculator.Div --codec $codec
done
expect_out "$FULL" calc-describe --registry "$REG"
CALC='service Calculator {
  rpc Add(Args) returns (google.protobuf.Int64Value);
  rpc Div(Args) returns (google.protobuf.Int64Value);
  rpc Mul(Args) returns (google.protobuf.Int64Value);
  rpc Sub(Args) returns (google.protobuf.Int64Value);
}

message Args {
  int64 A = 1;
  int64 B = 2;
}

message google.protobuf.Int64Value {
  int64 value = 1;
}'
expect_out "$CALC" "$ADDR" Calculator
expect_out "$ONE" calc-describe Calculator.Div --registry "$REG"

expect_err 1 "the server has no service Nope; it has: Calculator, _tether, _tether.Health" "$ADDR" Nope
expect_err 1 "TETHER_ENOMETHOD: rpc: can't find method Calculator.Nope" "$ADDR" Calculator.Nope
expect_err 1 "TETHER_ENOSERVICE: rpc: can't find service Nope.X" "$ADDR" Nope.X
expect_err 2 "usage: tether describe"
expect_err 2 "unknown option --bogus" "$ADDR" --bogus
expect_err 2 "neither Service nor Service.Method" "$ADDR" Calculator.
expect_err 2 "unknown codec" "$ADDR" --codec xml
expect_err 1 "tether describe: no instance of 'calc-missing' in " calc-missing --registry "$REG" --timeout 2000

# A port nobody serves: a clear error, no hang.
"$BIN/tether" describe 127.0.0.1:1 --timeout 5000 >"$TMP/out" 2>"$TMP/err" && {
    echo "FAIL: describe of a closed port succeeded" >&2
    exit 1
}
grep -q "^tether describe: " "$TMP/err" || { echo "FAIL: no error text: $(cat "$TMP/err")" >&2; exit 1; }
echo "ok: closed port -> $(cat "$TMP/err")"

kill -0 "$PID"
echo "PASS"
