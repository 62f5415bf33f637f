#!/usr/bin/env bash
# test_etcd_register.sh - the etcd backend against a real etcd:
#   - calculator-server --registry etcd://... puts its key in etcd's
#     naming/endpoints shape (read back with etcdctl) and `tether list`
#     reads it;
#   - the lease is kept alive past its TTL;
#   - values written by the Go pattern (plain host:port) are read, garbage
#     is skipped;
#   - SIGTERM with a call in flight: a watcher sees the DELETE while the
#     server still drains (before it exits), and the call is answered;
#   - SIGKILL without the crash guardian (guardian=0): the key goes after
#     about the TTL (with it: test_etcd_guardian.sh).
source "$(dirname "$0")/etcd_lib.sh"

TTL=3
etcd_single e1 "$TMP/data"
URL="etcd://127.0.0.1:$CPORT?ttl=$TTL"
PFX=/services/calculator/

# ---- registration shape ---------------------------------------------------
P1=$(free_port)
server_start s1 "$P1" "$URL" --delay-ms 1500 --drain-ms 10000
wait_until 30 "the server's key in etcd" key_present "$CPORT" "$PFX"
ectl "$CPORT" get "$PFX" --prefix >"$TMP/get.out" || fail "etcdctl get"
python3 - "$TMP/get.out" "$P1" <<'EOF' || fail "the value is not in the naming/endpoints shape"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
port = sys.argv[2]
assert lines[0] == "/services/calculator/127.0.0.1:" + port, lines
v = json.loads(lines[1])
assert v["Op"] == 0 and v["Addr"] == "127.0.0.1:" + port, v
md = v["Metadata"]
assert md["state"] == "serving" and md["weight"] == 1 and md["pid"] > 0 and md["id"], md
EOF
"$BIN/tether" list calculator --registry "$URL" >"$TMP/list.out" 2>"$TMP/list.log" ||
    fail "tether list"
grep -q "^127.0.0.1:$P1 serving" "$TMP/list.out" || fail "tether list: $(cat "$TMP/list.out")"
note "key in naming/endpoints shape, listed"

# The key has a lease of the asked TTL.
LEASE=$(ectl "$CPORT" get "$PFX" --prefix -w json | python3 -c \
    'import json,sys; print("%x" % json.load(sys.stdin)["kvs"][0]["lease"])')
ectl "$CPORT" lease timetolive "$LEASE" | grep -q "granted with TTL(${TTL}s)" ||
    fail "lease $LEASE: $(ectl "$CPORT" lease timetolive "$LEASE")"

# ---- keep-alive: still there well past the TTL ------------------------------
sleep $((TTL + 2))
key_present "$CPORT" "$PFX" || fail "the key expired: no keep-alive"
note "key alive after $((TTL + 2))s with a ${TTL}s lease"

# ---- foreign values -------------------------------------------------------
ectl "$CPORT" put "${PFX}127.0.0.1:9" "127.0.0.1:9" >/dev/null || fail "etcdctl put"
ectl "$CPORT" put "${PFX}junk" '{"Op":0,"Addr":' >/dev/null || fail "etcdctl put"
ectl "$CPORT" put "/services/calculatorXYZ/127.0.0.1:10" "127.0.0.1:10" >/dev/null
"$BIN/tether" list calculator --registry "$URL" >"$TMP/list.out" 2>"$TMP/list.log" ||
    fail "tether list with foreign values"
grep -q "^127.0.0.1:9 serving" "$TMP/list.out" || fail "plain host:port value not read"
grep -q "127.0.0.1:10" "$TMP/list.out" && fail "a key of another service was listed"
[ "$(grep -c . "$TMP/list.out")" -eq 2 ] || fail "list: $(cat "$TMP/list.out")"
ectl "$CPORT" del "${PFX}127.0.0.1:9" >/dev/null
ectl "$CPORT" del "${PFX}junk" >/dev/null
note "plain host:port read, garbage skipped, prefix is exact"

# ---- SIGTERM: DELETE before the listener closes --------------------------
ectl_bg "$CPORT" watch --prefix "$PFX" >"$TMP/watch.log" 2>&1
WPID=$!
PIDS+=("$WPID")
# etcdctl prints nothing until an event; make one and wait for it, so the
# watch is known to be running.
# The watch may not be established yet: put the marker until it shows.
marker_seen() {
    ectl "$CPORT" put "${PFX}marker" "127.0.0.1:11" >/dev/null
    grep -q marker "$TMP/watch.log"
}
wait_until 30 "etcdctl watch to run" marker_seen
ectl "$CPORT" del "${PFX}marker" >/dev/null
accepting "$P1" || fail "server 1 does not accept"
deleted_seen() {
    grep -q "^/services/calculator/127.0.0.1:$P1\$" <(sed -n '/^DELETE$/{n;p}' "$TMP/watch.log")
}
# A call in flight keeps the process draining for a while after SIGTERM.
"$BIN/calculator-client" --addr "127.0.0.1:$P1" add 20 22 >"$TMP/inflight.out" 2>&1 &
CPID=$!
PIDS+=("$CPID")
# In flight once a connection to the server is established (then the call
# follows at once; the 1.5 s the call takes covers the rest).
connected() {
    local hex
    hex=$(printf '%04X' "$P1")
    awk -v h=":$hex" '$3 ~ h"$" && $4 == "01" { f = 1 } END { exit !f }' /proc/net/tcp
}
wait_until 30 "the call to connect" connected
sleep 0.2
kill -TERM "${SPID[s1]}"
# Each round looks at the process first and at the watch second: a DELETE
# seen in a round that began with the process alive came before its exit.
order=""
end=$(($(now_ms) + 30000))
while [ "$(now_ms)" -lt "$end" ]; do
    a=0
    alive "${SPID[s1]}" && a=1
    if deleted_seen; then
        order="alive=$a"
        break
    fi
    [ $a = 1 ] || fail "the server exited before its DELETE reached the watcher"
done
[ "$order" = "alive=1" ] || fail "no DELETE while the server was alive ($order)"
wait "$CPID" || fail "the call in flight failed: $(cat "$TMP/inflight.out")"
[ "$(cat "$TMP/inflight.out")" = "42" ] || fail "in-flight call: $(cat "$TMP/inflight.out")"
wait "${SPID[s1]}"
rc=$?
[ $rc -eq 0 ] || fail "server exited with $rc after SIGTERM"
wait_until 10 "the DELETE in the watch" deleted_seen
key_absent "$CPORT" "$PFX" || fail "key still there after SIGTERM"
note "SIGTERM: DELETE seen while the server was still draining, call in flight answered"

# ---- SIGKILL: gone after about the TTL -----------------------------------
P2=$(free_port)
server_start s2 "$P2" "$URL&guardian=0"
wait_until 30 "server 2's key" key_present "$CPORT" "${PFX}127.0.0.1:$P2"
kill -KILL "${SPID[s2]}"
wait "${SPID[s2]}" 2>/dev/null
t0=$(now_ms)
sleep 1
key_present "$CPORT" "${PFX}127.0.0.1:$P2" || fail "key gone at once after SIGKILL (no lease?)"
wait_until $((TTL + 30)) "server 2's key to expire" key_absent "$CPORT" "${PFX}127.0.0.1:$P2"
dt=$(($(now_ms) - t0))
note "SIGKILL: key gone ${dt} ms after the kill (TTL ${TTL}s)"
[ "$dt" -le $((TTL * 1000 + 3000)) ] || fail "key outlived the TTL by far: ${dt} ms"
echo "ok"
