#!/usr/bin/env bash
# test_etcd_outage.sh - registry trouble never stops serving, and the
# registration comes back by itself:
#   1. etcd stopped (SIGTERM) for longer than the TTL, restarted with its
#      data: the key is back within 2 s of etcd serving again;
#   2. the same with the data wiped (a new, empty data directory): the
#      lease is gone, so a new one is granted and the key put again;
#   3. etcd paused with SIGSTOP past the TTL, then SIGCONT: the key is
#      back (and stays, the lease being kept alive again);
# with calls made straight to the server every 100 ms throughout, none of
# which may fail.  Last, a graceful stop while etcd is paused finishes
# promptly (every request has a short timeout).
source "$(dirname "$0")/etcd_lib.sh"

TTL=2
etcd_single e1 "$TMP/data1"
URL="etcd://127.0.0.1:$CPORT?ttl=$TTL&timeout_ms=500"
P=$(free_port)
KEY="/services/calculator/127.0.0.1:$P"
server_start s1 "$P" "$URL"
wait_until 30 "the server's key" key_present "$CPORT" "$KEY"
calls_start "$P"

# back_within NAME MS - after etcd serves again, the key must be back
# within MS milliseconds; then it must survive two more TTLs.
back_within() {
    local what=$1 limit=$2 t0 dt
    t0=$(now_ms)
    wait_until 30 "the key after $what" key_present "$CPORT" "$KEY"
    dt=$(($(now_ms) - t0))
    note "$what: key back ${dt} ms after etcd served again"
    [ "$dt" -le "$limit" ] || fail "$what: key back only after ${dt} ms"
    sleep $((TTL * 2))
    key_present "$CPORT" "$KEY" || fail "$what: key lost again (no keep-alive)"
    alive "${SPID[s1]}" || fail "the server died"
}

# ---- 1. stopped, data kept ------------------------------------------------
etcd_stop e1 TERM
sleep $((TTL + 2))
etcd_restart e1 "$TMP/data1"
back_within "restart with data kept" 2000

# ---- 2. stopped, data wiped ----------------------------------------------
etcd_stop e1 TERM
sleep $((TTL + 1))
etcd_restart e1 "$TMP/data2"
back_within "restart with data wiped" 2000
grep -q "new lease" "$TMP/server-s1.log" || fail "the lost lease was not logged"

# ---- 3. paused past the TTL ----------------------------------------------
kill -STOP "${EPID[e1]}"
sleep $((TTL + 2))
kill -CONT "${EPID[e1]}"
wait_until 30 "etcd to serve after SIGCONT" etcd_healthy "$CPORT"
back_within "SIGSTOP past the TTL" 2000

calls_stop

# ---- a hung etcd never hangs a graceful stop --------------------------------
kill -STOP "${EPID[e1]}"
t0=$(now_ms)
kill -TERM "${SPID[s1]}"
wait "${SPID[s1]}"
rc=$?
dt=$(($(now_ms) - t0))
kill -CONT "${EPID[e1]}"
[ $rc -eq 0 ] || fail "the server exited with $rc"
[ $dt -lt 5000 ] || fail "stopping with etcd paused took ${dt} ms"
note "SIGTERM with etcd paused: stopped in ${dt} ms"
echo "ok"
