#!/usr/bin/env bash
# test_etcd_partition.sh - partitions on the loopback test bed
# (tests/netns/netns_lib.sh: a private network namespace, one 127.0.0.X
# per host, nftables cuts):
#   c. a server cut off from etcd but not from its clients: its key goes
#      when the lease expires (ttl=2), it keeps serving every call; when
#      the cut heals it is registered again within a couple of seconds
#      (figure printed);
#   e. a three-member etcd on three hosts; the member the server talks to
#      (the first in its URL) is cut off from the server: the keep-alive
#      goes on through another member and the key never disappears.
source "$(dirname "$0")/../netns/netns_lib.sh"
netns_enter "$@"
source "$(dirname "$0")/etcd_lib.sh"

# The hosts; this script is 127.0.0.1 (it reads etcd and makes the calls).
netns_host e1 2
netns_host e2 3
netns_host e3 4
netns_host srv 10
chmod 755 "$TMP"
# Everything is private to the namespace: fixed ports cannot collide.
CP=2379
PP=2380
SPORT=7000
SADDR=$(netns_ip srv):$SPORT
KEY=/services/calculator/$SADDR

# start_member NAME CLUSTER - an etcd member on host NAME.
start_member() {
    local name=$1 cluster=$2 ip
    ip=$(netns_ip "$name")
    netns_own "$name" "$TMP/$name"
    on_bg "$name" etcd --name "$name" --data-dir "$TMP/$name/data" \
        --listen-client-urls "http://$ip:$CP" --advertise-client-urls "http://$ip:$CP" \
        --listen-peer-urls "http://$ip:$PP" --initial-advertise-peer-urls "http://$ip:$PP" \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --initial-cluster-token "tt-$(basename "$TMP")" \
        --log-level error >>"$TMP/etcd-$name.log" 2>&1
    EPID[$name]=$!
}

# ectl_at HOST ARGS... - etcdctl from this script to the member on HOST.
ectl_at() {
    local host=$1
    shift
    etcdctl --endpoints "$(netns_ip "$host"):$CP" "${ECTL_FLAGS[@]}" "$@"
}
healthy_at() {
    ectl_at "$1" endpoint health >/dev/null 2>&1
}
key_at() {
    [ "$(ectl_at "$1" get --prefix --keys-only "$KEY" 2>/dev/null | grep -c .)" -ge 1 ]
}
# Absent only when a read succeeds and finds nothing.
nokey_at() {
    local out
    out=$(ectl_at "$1" get --prefix --keys-only "$KEY" 2>/dev/null) && [ -z "$out" ]
}

# start_server URL - calculator-server on host srv.
start_server() {
    on_bg srv "$BIN/calculator-server" --listen "$SADDR" --registry "$1" \
        >>"$TMP/server-srv.log" 2>&1
    SPID[srv]=$!
}
call_srv() {
    local out
    out=$(timeout 10 "$BIN/calculator-client" --addr "$SADDR" add 2 3 2>&1) && [ "$out" = "5" ]
}
# calls in the background every 100 ms, as in etcd_lib's calls_start.
calls_begin() {
    rm -f "$TMP/calls-failed.log" "$TMP/calls-done"
    (
        while :; do
            call_srv || echo "call failed at $(now_ms)" >>"$TMP/calls-failed.log"
            echo x >>"$TMP/calls-done"
            sleep 0.1
        done
    ) &
    CALLS_PID=$!
    PIDS+=("$!")
}
calls_end() {
    kill "$CALLS_PID" 2>/dev/null
    wait "$CALLS_PID" 2>/dev/null
    [ -s "$TMP/calls-failed.log" ] && fail "calls failed: $(head -n 3 "$TMP/calls-failed.log")"
    note "$(wc -l <"$TMP/calls-done") calls served, none failed"
}

# ---- c. server cut off from etcd, not from its clients ------------------------
start_member e1 "e1=http://$(netns_ip e1):$PP"
wait_until 30 "etcd e1 to serve" healthy_at e1
TTL=2
start_server "etcd://$(netns_ip e1):$CP?ttl=$TTL"
wait_until 30 "the server's key" key_at e1
# Its connections to etcd come from its own address.
ectl_at e1 get "$KEY" --print-value-only | grep -q "\"Addr\":\"$SADDR\"" || fail "value"
calls_begin
netns_cut srv e1
t_cut=$(now_ms)
wait_until $((TTL + 20)) "the key to go after the lease expired" nokey_at e1
note "cut srv|e1: key gone after $(($(now_ms) - t_cut)) ms (ttl ${TTL}s)"
# Well cut off: still no key a while later (no keep-alive got through).
sleep 1
nokey_at e1 || fail "the key came back during the cut"
call_srv || fail "the server does not answer during the cut"
netns_heal srv e1
t_heal=$(now_ms)
wait_until 30 "the key back after healing" key_at e1
dt=$(($(now_ms) - t_heal))
note "healed: registered again after ${dt} ms"
[ "$dt" -le 4000 ] || fail "registered again only ${dt} ms after healing"
calls_end
alive "${SPID[srv]}" || fail "the server died"
kill -TERM "${SPID[srv]}"
wait "${SPID[srv]}" || fail "server exit status after SIGTERM"
wait_until 10 "the key to go on SIGTERM" nokey_at e1
etcd_stop e1 KILL

# ---- e. three members; the server's member cut off from the server ------------
rm -rf "$TMP/e1"
CL="e1=http://$(netns_ip e1):$PP,e2=http://$(netns_ip e2):$PP,e3=http://$(netns_ip e3):$PP"
for m in e1 e2 e3; do
    start_member "$m" "$CL"
done
for m in e1 e2 e3; do
    wait_until 60 "etcd $m to serve in the cluster" healthy_at "$m"
done
URL="etcd://$(netns_ip e1):$CP,$(netns_ip e2):$CP,$(netns_ip e3):$CP?ttl=$TTL&timeout_ms=500"
: >"$TMP/server-srv.log"
start_server "$URL"
wait_until 30 "the server's key (cluster)" key_at e2
# A watcher on e3 sees every change of the key.
# (etcdctl itself in the background, not a function's subshell: $! must
# be its PID for the cleanup.)
etcdctl --endpoints "$(netns_ip e3):$CP" "${ECTL_FLAGS[@]}" watch --prefix "$KEY" \
    >"$TMP/watch.log" 2>&1 &
PIDS+=("$!")
sleep 1
calls_begin
netns_cut srv e1
t_cut=$(now_ms)
# Past several TTLs: the key must be there all along.
end=$((t_cut + TTL * 3000 + 1000))
while [ "$(now_ms)" -lt "$end" ]; do
    key_at e2 || fail "the key disappeared while e1 was cut off from the server"
    sleep 0.2
done
grep -q '^DELETE' "$TMP/watch.log" && fail "a DELETE of the key: $(cat "$TMP/watch.log")"
call_srv || fail "the server does not answer"
note "cut srv|e1 for $(($(now_ms) - t_cut)) ms (ttl ${TTL}s): key never gone, no DELETE"
netns_heal
calls_end
kill -TERM "${SPID[srv]}"
wait "${SPID[srv]}" || fail "server exit status after SIGTERM"
wait_until 10 "the key to go on SIGTERM" nokey_at e2
for f in "$TMP"/server-*.log; do
    grep -q 'runtime error:\|ERROR: [A-Za-z]*Sanitizer' "$f" && fail "sanitizer report in $f"
done
echo "ok"
