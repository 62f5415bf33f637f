# ops_lib.sh - shared helpers for the metrics and status page tests
# (tests/integration/test_metrics_*.sh; sourced, not run).  Each test
# starts its own calculator-server with a metrics listener on 127.0.0.1,
# on free ports, with its files in a private temporary directory, and
# stops everything it started by PID on exit (the EXIT trap).

set -u

BIN=${TETHER_BIN_DIR:?TETHER_BIN_DIR must name the build bin directory}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tt-ops-XXXXXX")
PIDS=()

source "$(dirname "${BASH_SOURCE[0]}")/common_lib.sh"

# fail MSG - as common_lib.sh's, with the summary line the ops tests end on.
fail() {
    echo "FAIL: $*" >&2
    for f in "$TMP"/*.log; do
        [ -f "$f" ] || continue
        echo "---- $(basename "$f") (last 15 lines)" >&2
        tail -n 15 "$f" >&2
    done
    echo "0 passed, 1 failed"
    exit 1
}


cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        # Process groups (setsid) take their children with them.
        kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

command -v python3 >/dev/null || fail "python3 is not installed (run scripts/setup.sh)"
for tool in calculator-server calculator-client; do
    [ -x "$BIN/$tool" ] || fail "$BIN/$tool is missing (build first)"
done


# http_get URL [OUT] - GET URL (python3: no curl needed); the body to OUT
# (default stdout), the status code to $TMP/status.  Fails on no answer.
http_get() {
    python3 - "$1" "${2:-/dev/stdout}" "$TMP/status" <<'PY'
import sys, urllib.request, urllib.error
url, out, st = sys.argv[1:4]
try:
    with urllib.request.urlopen(url, timeout=10) as r:
        code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
open(st, "w").write(str(code))
open(out, "wb").write(body)
PY
}

# start_server NAME ARGS... - start calculator-server in its own process
# group with a metrics listener on a free port; sets ADDR (calls) and
# MADDR (metrics) once it serves.
start_server() {
    local name=$1
    shift
    setsid "$BIN/calculator-server" --listen 127.0.0.1:0 --metrics 127.0.0.1:0 "$@" \
        >"$TMP/$name.out" 2>"$TMP/$name.log" &
    SPID=$!
    PIDS+=("$SPID")
    wait_until 30 "$name to print its addresses" grep -q '^metrics on ' "$TMP/$name.out"
    ADDR=$(sed -n 's/^listening on //p' "$TMP/$name.out")
    MADDR=$(sed -n 's/^metrics on //p' "$TMP/$name.out")
}

# calls N OP A B - N calls of the calculator's OP through calculator-client;
# errors (div by 0) are expected by the caller and not checked here.
calls() {
    local n=$1 i
    shift
    for ((i = 0; i < n; i++)); do
        "$BIN/calculator-client" --addr "$ADDR" "$@" >>"$TMP/client.log" 2>&1 || true
    done
}
