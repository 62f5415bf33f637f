#!/usr/bin/env bash
# test_etcd_watch.sh - `tether watch` on an etcd registry when its
# connection breaks:
#   1. the watch goes through a small TCP relay; the relay is killed (the
#      watch's connection drops), changes are made straight in etcd, the
#      relay comes back: every change is reported once, in order, none
#      missed (an instance added and removed while disconnected included,
#      which a mere re-list would miss);
#   2. the same, but etcd compacts past the watch's revision meanwhile:
#      the watch lists again and reports the difference;
#   3. etcd itself restarts under the watch (data kept): changes after the
#      restart are reported.
source "$(dirname "$0")/etcd_lib.sh"

etcd_single e1 "$TMP/data"
PX=$(free_port)
PFX=/services/calculator/

# A plain TCP relay 127.0.0.1:PX -> etcd (not a fake etcd: every byte is
# etcd's).  Killing it cuts every connection through it at once.
cat >"$TMP/relay.py" <<'EOF'
import socket, sys, threading
listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen_port))
srv.listen(16)
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = srv.accept()
    u = socket.create_connection(("127.0.0.1", target_port))
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
EOF
relay_start() {
    python3 "$TMP/relay.py" "$PX" "$CPORT" >>"$TMP/relay.log" 2>&1 &
    RELAY=$!
    PIDS+=("$RELAY")
    wait_until 30 "the relay to listen" accepting "$PX"
}
relay_kill() {
    kill -KILL "$RELAY"
    wait "$RELAY" 2>/dev/null
}

relay_start
"$BIN/tether" watch calculator --registry "etcd://127.0.0.1:$PX" >"$TMP/w.out" 2>"$TMP/watch.log" &
PIDS+=("$!")
WPID=$!

seen() {
    grep -q " $1 $2 " "$TMP/w.out"
}
# events - the watch's events as "EVENT ADDRESS" lines, in order.
events() {
    awk '{ print $2, $3 }' "$TMP/w.out"
}

ectl "$CPORT" put "${PFX}127.0.0.1:1001" "127.0.0.1:1001" >/dev/null
wait_until 30 "added 1001" seen added 127.0.0.1:1001

# ---- 1. dropped connection -----------------------------------------------
relay_kill
ectl "$CPORT" put "${PFX}127.0.0.1:1002" "127.0.0.1:1002" >/dev/null
ectl "$CPORT" del "${PFX}127.0.0.1:1001" >/dev/null
ectl "$CPORT" put "${PFX}127.0.0.1:1003" "127.0.0.1:1003" >/dev/null
ectl "$CPORT" del "${PFX}127.0.0.1:1003" >/dev/null
ectl "$CPORT" put "${PFX}127.0.0.1:1002" \
    '{"Op":0,"Addr":"127.0.0.1:1002","Metadata":{"weight":2}}' >/dev/null
relay_start
wait_until 30 "changed 1002" seen changed 127.0.0.1:1002
want="added 127.0.0.1:1001
added 127.0.0.1:1002
removed 127.0.0.1:1001
added 127.0.0.1:1003
removed 127.0.0.1:1003
changed 127.0.0.1:1002"
[ "$(events)" = "$want" ] || fail "events after a dropped connection:
$(events)
want:
$want"
grep -q "weight=2" "$TMP/w.out" || fail "the change was not reported with its new weight"
note "dropped watch connection: resumed, every event once and in order"

# ---- 2. compacted while disconnected --------------------------------------
relay_kill
ectl "$CPORT" put "${PFX}127.0.0.1:1004" "127.0.0.1:1004" >/dev/null
ectl "$CPORT" del "${PFX}127.0.0.1:1002" >/dev/null
REV=$(ectl "$CPORT" get / -w json | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
ectl "$CPORT" compact "$REV" >/dev/null || fail "etcdctl compact"
relay_start
wait_until 30 "removed 1002 after the compaction" seen removed 127.0.0.1:1002
wait_until 30 "added 1004 after the compaction" seen added 127.0.0.1:1004
[ "$(events | grep -c .)" -eq 8 ] || fail "events after a compaction:
$(events)"
note "compaction: listed again, difference reported"

# ---- 3. etcd restarts under the watch -------------------------------------
etcd_stop e1 TERM
etcd_restart e1 "$TMP/data"
ectl "$CPORT" put "${PFX}127.0.0.1:1005" "127.0.0.1:1005" >/dev/null
wait_until 30 "added 1005 after the etcd restart" seen added 127.0.0.1:1005
[ "$(events | grep -c .)" -eq 9 ] || fail "events after the etcd restart:
$(events)"
alive "$WPID" || fail "tether watch died"
note "etcd restart: the watch resumed"
echo "ok"
