# etcd_lib.sh - shared helpers for tests/integration/test_etcd_*.sh (sourced,
# not run).  Every test starts its own etcd members on 127.0.0.1, on free
# ports, with data in a private temporary directory, and stops everything
# it started by PID on exit (the EXIT trap), however the test ends.
#
# A missing etcd fails the test: scripts/setup.sh installs etcd-server and
# etcd-client.

set -u

BIN=${TETHER_BIN_DIR:?TETHER_BIN_DIR must name the build bin directory}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tt-etcd-XXXXXX")
PIDS=()

source "$(dirname "${BASH_SOURCE[0]}")/common_lib.sh"

cleanup() {
    local rc=$? p g i
    # Crash guardians (docs/etcd.md) first, by PID: they would revoke
    # leases while etcd is stopping too, and outlive the test.
    for p in "${PIDS[@]}"; do
        for g in $(pgrep -P "$p" -x tether-guard 2>/dev/null); do
            kill -KILL "$g" 2>/dev/null
        done
    done
    # Then each process gracefully, the last started first (servers before
    # the etcd they talk to), so that LeakSanitizer and the other
    # sanitizers report what they found; killed only if it does not stop.
    local end=$(($(date +%s) + 20))
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        p=${PIDS[$i]}
        kill -CONT "$p" 2>/dev/null # a SIGSTOPped process must run to stop
        kill -TERM "$p" 2>/dev/null
        while kill -0 "$p" 2>/dev/null && [ "$(date +%s)" -lt $end ]; do
            sleep 0.05
        done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    # Text files only (-I): programs a test builds carry these strings.
    if grep -rqI --exclude-dir=data -e 'ERROR: AddressSanitizer' -e 'ERROR: LeakSanitizer' \
        -e 'runtime error:' "$TMP" 2>/dev/null; then
        echo "FAIL: a sanitizer report in the programs' logs:" >&2
        grep -rI --exclude-dir=data -A12 -e 'ERROR: AddressSanitizer' -e 'ERROR: LeakSanitizer' \
            -e 'runtime error:' "$TMP" | head -n 60 >&2
        rc=1
    fi
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT

for tool in etcd etcdctl python3; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (run scripts/setup.sh)"
done
for tool in calculator-server calculator-client tether; do
    [ -x "$BIN/$tool" ] || fail "$BIN/$tool is missing (build first)"
done


# etcd_start NAME DATADIR CLIENT_PORT PEER_PORT CLUSTER STATE - start one
# member in the background; its PID goes into EPID[NAME].  CLUSTER is the
# --initial-cluster list, STATE "new" (or "existing").
declare -A EPID
etcd_start() {
    local name=$1 dir=$2 cport=$3 pport=$4 cluster=$5 state=${6:-new}
    etcd --name "$name" --data-dir "$dir" \
        --listen-client-urls "http://127.0.0.1:$cport" \
        --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "http://127.0.0.1:$pport" \
        --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "$cluster" --initial-cluster-state "$state" \
        --initial-cluster-token "tt-$(basename "$TMP")" \
        --log-level error >>"$TMP/etcd-$name.log" 2>&1 &
    EPID[$name]=$!
    PIDS+=("$!")
}

# etcd_stop NAME [SIGNAL] - stop a member by PID and reap it.
etcd_stop() {
    local name=$1 sig=${2:-TERM}
    kill -"$sig" "${EPID[$name]}" 2>/dev/null
    wait "${EPID[$name]}" 2>/dev/null
}

# What every etcdctl of the tests is given (short timeouts: a dead member
# must fail a check, not hang it).
ECTL_FLAGS=(--command-timeout=3s --dial-timeout=2s)
export ETCDCTL_API=3

# ectl PORT ARGS... - etcdctl against one member.
ectl() {
    local port=$1
    shift
    etcdctl --endpoints "127.0.0.1:$port" "${ECTL_FLAGS[@]}" "$@"
}

# ectl_bg PORT ARGS... - the same in the background, started by this
# shell itself so that $! afterwards is etcdctl's own PID (`ectl ... &`
# forks a subshell whose etcdctl outlived the cleanup's kill of $!).
ectl_bg() {
    local port=$1
    shift
    etcdctl --endpoints "127.0.0.1:$port" "${ECTL_FLAGS[@]}" "$@" &
}

etcd_healthy() {
    ectl "$1" endpoint health >/dev/null 2>&1
}

# etcd_single NAME DATADIR - start a one-member etcd on free ports and wait
# until it serves; sets CPORT (client port) and PPORT.
etcd_single() {
    local name=$1 dir=$2
    CPORT=$(free_port)
    PPORT=$(free_port)
    etcd_start "$name" "$dir" "$CPORT" "$PPORT" "$name=http://127.0.0.1:$PPORT"
    wait_until 30 "etcd $name to serve on $CPORT" etcd_healthy "$CPORT"
}

# etcd_restart NAME DATADIR - start the one-member etcd again on the same
# ports (after etcd_stop), with DATADIR (the old one, or a new, empty one).
etcd_restart() {
    local name=$1 dir=$2
    etcd_start "$name" "$dir" "$CPORT" "$PPORT" "$name=http://127.0.0.1:$PPORT"
    wait_until 30 "etcd $name to serve again on $CPORT" etcd_healthy "$CPORT"
}

# key_count PORT PREFIX - how many keys start with PREFIX.
key_count() {
    ectl "$1" get --prefix --keys-only "$2" 2>/dev/null | grep -c .
}

key_present() {
    [ "$(key_count "$1" "$2")" -ge 1 ]
}

key_absent() {
    local n
    n=$(ectl "$1" get --prefix --keys-only "$2" 2>/dev/null | grep -c .) || true
    # Only a successful read that found nothing counts.
    ectl "$1" endpoint health >/dev/null 2>&1 && [ "$n" -eq 0 ]
}

# server_start NAME PORT URL [ARGS...] - calculator-server listening on
# 127.0.0.1:PORT, registered in URL; its PID goes into SPID[NAME].
declare -A SPID
server_start() {
    local name=$1 port=$2 url=$3
    shift 3
    "$BIN/calculator-server" --listen "127.0.0.1:$port" --registry "$url" "$@" \
        >>"$TMP/server-$name.log" 2>&1 &
    SPID[$name]=$!
    PIDS+=("$!")
}

alive() {
    kill -0 "$1" 2>/dev/null
}

# accepting PORT - whether something accepts TCP connections on PORT.
accepting() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# call_ok PORT - one Calculator.Add straight to the address.
call_ok() {
    local out
    out=$("$BIN/calculator-client" --addr "127.0.0.1:$1" add 2 3 2>&1) && [ "$out" = "5" ]
}

# calls_start PORT - call the server every 100 ms in the background until
# calls_stop; every failed call is written to $TMP/calls-failed.log.
calls_start() {
    rm -f "$TMP/calls-stop" "$TMP/calls-done" "$TMP/calls-failed.log"
    CALLS_T0=$(now_ms)
    (
        while [ ! -e "$TMP/calls-stop" ]; do
            if ! call_ok "$1"; then
                echo "call failed at $(now_ms)" >>"$TMP/calls-failed.log"
            fi
            echo x >>"$TMP/calls-done"
            sleep 0.1
        done
    ) &
    CALLS_PID=$!
    PIDS+=("$!")
}

# calls_stop - end the loop after its current call.  A call that does not
# come back within 15 s (a hang) fails the test, like a failed one, and so
# does a loop that made far fewer calls than it had time for.
calls_stop() {
    touch "$TMP/calls-stop"
    local end=$(($(now_ms) + 15000))
    while alive "$CALLS_PID" && [ "$(now_ms)" -lt $end ]; do
        sleep 0.05
    done
    alive "$CALLS_PID" && fail "a call hung: the call loop did not finish its last call in 15 s"
    wait "$CALLS_PID" 2>/dev/null
    local n ms
    n=$(wc -l <"$TMP/calls-done" 2>/dev/null || echo 0)
    ms=$(($(now_ms) - CALLS_T0))
    [ -s "$TMP/calls-failed.log" ] && fail "calls failed while the registry was in trouble"
    # A call takes well under a second; a fifth of the 10 calls a second
    # the loop aims at is the least a working server gives.
    [ "$n" -ge $((ms / 500 > 1 ? ms / 500 : 1)) ] || fail "only $n calls in $ms ms"
    note "$n calls served in $ms ms, none failed"
    rm -f "$TMP/calls-done"
}
