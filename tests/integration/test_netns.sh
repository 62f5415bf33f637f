#!/usr/bin/env bash
# test_netns.sh - the loopback multi-host test bed (tests/netns/netns_lib.sh)
# tests itself:
#   bed:   two hosts reach each other, each from its own 127.0.0.X; a cut
#          between them drops (a connect times out, it is not refused)
#          while both still reach a third; a cut of one port leaves the
#          others; healing restores everything;
#   then, from outside: a run that fails and a run killed by SIGTERM both
#   leave no namespace and no process behind.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../netns/netns_lib.sh"
MODE=${1:-main}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
note() {
    echo "# $*"
}

# A TCP service on ADDR:PORT that answers every connection with the
# address it came from; and a client that says "peer=<addr>", "timeout" or
# "refused".
PEER_SERVER='import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
while True:
    c, a = s.accept()
    c.sendall(a[0].encode())
    c.close()'
PEER_CLIENT='import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    print("peer=" + c.recv(64).decode())
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")'

# ask HOST ADDR PORT [SECS] - what HOST's connect to ADDR:PORT gives.
ask() {
    on "$1" /usr/bin/python3 -c "$PEER_CLIENT" "$2" "$3" "${4:-1.5}"
}
ask_self() {
    python3 -c "$PEER_CLIENT" "$1" "$2" "${3:-1.5}"
}

bed() {
    netns_enter bed
    BED_PIDS=()
    trap '{ for p in "${BED_PIDS[@]}"; do kill -KILL "$p"; done; wait; } 2>/dev/null' EXIT
    netns_host a 2
    netns_host b 3
    netns_host c 4
    # Only this namespace's loopback, and nothing outside 127.0.0.0/8.
    [ "$(ip -o link show | grep -c .)" -eq 1 ] || fail "the namespace has more than lo: $(ip -o link)"
    ip -o addr show | awk '$3 == "inet" { print $4 }' | grep -v '^127\.' &&
        fail "an address outside 127.0.0.0/8"
    on_bg b /usr/bin/python3 -c "$PEER_SERVER" 127.0.0.3 7000
    BED_PIDS+=("$!")
    on_bg b /usr/bin/python3 -c "$PEER_SERVER" 127.0.0.3 7001
    BED_PIDS+=("$!")
    on_bg c /usr/bin/python3 -c "$PEER_SERVER" 127.0.0.4 7000
    BED_PIDS+=("$!")
    local i out
    for i in $(seq 1 100); do
        [ "$(ask_self 127.0.0.3 7000)" = peer=127.0.0.1 ] &&
            [ "$(ask_self 127.0.0.3 7001)" = peer=127.0.0.1 ] &&
            [ "$(ask_self 127.0.0.4 7000)" = peer=127.0.0.1 ] && break
        sleep 0.1
    done
    out=$(ask a 127.0.0.3 7000)
    [ "$out" = peer=127.0.0.2 ] || fail "a -> b: $out (want peer=127.0.0.2)"
    out=$(ask c 127.0.0.3 7000)
    [ "$out" = peer=127.0.0.4 ] || fail "c -> b: $out (want peer=127.0.0.4)"
    # Nothing listens on b's port 7999: refused, as without the bed.
    out=$(ask a 127.0.0.3 7999)
    [ "$out" = refused ] || fail "a -> b:7999 (nothing there): $out"
    note "hosts reach each other, each from its own address (a=127.0.0.2, c=127.0.0.4)"

    netns_cut a b
    local t0 t1
    t0=$(date +%s%N)
    out=$(ask a 127.0.0.3 7000 1.5)
    t1=$(date +%s%N)
    [ "$out" = timeout ] || fail "a -> b across the cut: $out (want timeout)"
    [ $(((t1 - t0) / 1000000)) -ge 1000 ] || fail "the cut answered fast: not a drop"
    out=$(ask a 127.0.0.3 7999 1.5)
    [ "$out" = timeout ] || fail "a -> b:7999 across the cut: $out (want timeout, not refused)"
    out=$(ask a 127.0.0.4 7000)
    [ "$out" = peer=127.0.0.2 ] || fail "a -> c during the a|b cut: $out"
    out=$(ask c 127.0.0.3 7000)
    [ "$out" = peer=127.0.0.4 ] || fail "c -> b during the a|b cut: $out"
    out=$(ask_self 127.0.0.3 7000)
    [ "$out" = peer=127.0.0.1 ] || fail "self -> b during the a|b cut: $out"
    note "cut a|b: a's connect to b times out (also to a closed port); a-c, c-b, self-b work"

    netns_heal a b
    out=$(ask a 127.0.0.3 7000)
    [ "$out" = peer=127.0.0.2 ] || fail "a -> b after healing: $out"

    netns_cut a b 7000
    out=$(ask a 127.0.0.3 7000 1.5)
    [ "$out" = timeout ] || fail "a -> b:7000 with the port cut: $out"
    out=$(ask a 127.0.0.3 7001)
    [ "$out" = peer=127.0.0.2 ] || fail "a -> b:7001 with only 7000 cut: $out"
    out=$(ask c 127.0.0.3 7000)
    [ "$out" = peer=127.0.0.4 ] || fail "c -> b:7000 with a's cut: $out"
    netns_cut a c
    netns_heal
    out=$(ask a 127.0.0.3 7000)
    [ "$out" = peer=127.0.0.2 ] || fail "a -> b:7000 after healing all: $out"
    out=$(ask a 127.0.0.4 7000)
    [ "$out" = peer=127.0.0.2 ] || fail "a -> c after healing all: $out"
    note "port cut drops that port only; heal restores"
    # Bad hosts are refused.
    netns_host bad 1 2>/dev/null && fail "host 127.0.0.1 accepted"
    netns_host bad 255 2>/dev/null && fail "host 127.0.0.255 accepted"
    netns_host bad x 2>/dev/null && fail "host 127.0.0.x accepted"
    echo "bed ok"
}

# A run that leaves a process in the namespace: it fails (exit 3) or waits
# to be killed; $2 is where it writes its namespace and the process's PID.
leaky() {
    netns_enter "$@"
    netns_host a 2
    on_bg a sleep 1000
    echo "$TT_NETNS $!" >"$2.tmp"
    mv "$2.tmp" "$2"
    [ "$1" = fail ] && exit 3
    sleep 1000
}

gone_clean() {
    local ns=$1 pid=$2
    ip netns list | grep -qw "$ns" && fail "namespace $ns left behind"
    # Dead is enough: a zombie waits for whoever reaps orphans here.
    if [ -e "/proc/$pid" ] && [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
        fail "process $pid of $ns left behind"
    fi
    return 0
}

case "$MODE" in
bed) bed ;;
fail | wait) leaky "$@" ;;
main)
    [ "$(id -u)" -eq 0 ] || fail "needs root (network namespaces, setpriv)"
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/tt-netns-XXXXXX")
    trap 'rm -rf "$TMP"' EXIT
    bash "$0" bed || fail "the test bed"

    rc=0
    bash "$0" fail "$TMP/f.info" || rc=$?
    [ $rc -eq 3 ] || fail "the failing run exited $rc, want 3"
    read -r ns pid <"$TMP/f.info"
    gone_clean "$ns" "$pid"
    note "a failing run: namespace $ns and process $pid gone"

    bash "$0" wait "$TMP/w.info" &
    W=$!
    for _ in $(seq 1 200); do
        [ -s "$TMP/w.info" ] && break
        sleep 0.05
    done
    [ -s "$TMP/w.info" ] || { kill -KILL "$W"; fail "the waiting run did not start"; }
    read -r ns pid <"$TMP/w.info"
    ip netns list | grep -qw "$ns" || fail "namespace $ns not there while its run is"
    kill -TERM "$W"
    wait "$W"
    gone_clean "$ns" "$pid"
    note "a run killed by SIGTERM: namespace $ns and process $pid gone"
    echo "ok"
    ;;
*) fail "unknown mode $MODE" ;;
esac
