#!/usr/bin/env bash
# test_health_go.sh - Go's own net/rpc clients (gob and jsonrpc, standard
# library only: tests/integration/gohealth) call the built-in
# _tether.Health.Check of calculator-server: SERVING for the server and
# for Calculator, UNKNOWN for a service it does not serve, NOT_SERVING
# while the worker pool is stalled (jobs wait with every worker busy; the
# I/O threads still answer), SERVING again after, DRAINING during a
# graceful stop.  Needs Debian's golang-go.
set -euo pipefail

BIN=${TETHER_BIN_DIR:?}
SRC=${TETHER_SOURCE_DIR:?}
if ! command -v go >/dev/null 2>&1; then
    echo "FAIL: go not installed (scripts/setup.sh installs golang-go)"
    exit 1
fi
GODIR=$BIN/../health-go
mkdir -p "$GODIR/gopath"
export GO111MODULE=off GOPATH=$GODIR/gopath GOCACHE=$GODIR/cache GOFLAGS=
(cd "$SRC/tests/integration/gohealth" && go build -o "$GODIR/gohealth" .)

TMP=$(mktemp -d)
SPID=
cleanup() {
    [ -n "$SPID" ] && kill -KILL "$SPID" 2>/dev/null || true
    [ -n "${COPROC_PID:-}" ] && kill -KILL "$COPROC_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    tail -n 20 "$TMP/server.log" >&2 || true
    exit 1
}

# Handlers take 8 s on the worker pool (4 workers), long enough for a
# loaded machine; the watchdog looks for 500 ms stalls.
"$BIN/calculator-server" --listen 127.0.0.1:0 --delay-ms 8000 --stall-ms 500 --threads 2 \
    --drain-ms 20000 >"$TMP/server.log" 2>&1 &
SPID=$!
for _ in $(seq 1 200); do
    grep -q "listening on" "$TMP/server.log" && break
    sleep 0.05
done
ADDR=$(sed -n 's/^listening on //p' "$TMP/server.log" | head -n 1)
[ -n "$ADDR" ] || fail "calculator-server did not start"

# ask CMD - send one command to the Go client, read its answer line.
ask() {
    echo "$1" >&"${COPROC[1]}"
    local line
    IFS= read -r -t 60 line <&"${COPROC[0]}" || fail "no answer from gohealth to '$1'"
    echo "$line"
}
# until_status CMD WANT - repeat CMD until it answers WANT (generous).
until_status() {
    local got
    for _ in $(seq 1 600); do
        got=$(ask "$1")
        [ "$got" = "$2" ] && return 0
        sleep 0.05
    done
    fail "'$1' answered '$got', want '$2'"
}

for codec in gob jsonrpc; do
    coproc "$GODIR/gohealth" "$ADDR" "$codec"
    [ "$(ask check)" = SERVING ] || fail "$codec: check"
    [ "$(ask 'check Calculator')" = SERVING ] || fail "$codec: check Calculator"
    [ "$(ask 'check Nope')" = UNKNOWN ] || fail "$codec: check Nope"
    # Six slow calls on four workers: two wait, the pool is stalled.
    [ "$(ask 'slow 6')" = started ] || fail "$codec: slow"
    until_status check NOT_SERVING
    [ "$(ask wait)" = "done 0" ] || fail "$codec: the slow calls failed"
    until_status check SERVING
    echo "ok: $codec: SERVING, UNKNOWN, NOT_SERVING (pool stalled), SERVING again"
    if [ "$codec" = jsonrpc ]; then
        # A graceful stop with a call in flight: still answered, DRAINING.
        [ "$(ask 'slow 1')" = started ] || fail "$codec: slow 1"
        sleep 0.3
        kill -TERM "$SPID"
        until_status check DRAINING
        [ "$(ask wait)" = "done 0" ] || fail "$codec: the call in flight failed"
        echo "ok: $codec: DRAINING during the graceful stop"
    fi
    exec {COPROC[1]}>&-
    wait "$COPROC_PID" 2>/dev/null || true
done
wait "$SPID" || fail "calculator-server exited with $?"
SPID=
grep -q "watchdog: not serving: worker pool" "$TMP/server.log" ||
    fail "the server did not log why it stalled"
echo "ok: the server logged the stall"
