#!/usr/bin/env bash
# test_etcd_cluster.sh - a 3-member etcd cluster on loopback loses the
# member the service talks to (the first in its URL, killed with SIGKILL):
# keep-alive goes on through another member, and a watch on a surviving
# member never sees the key go.  Then a watch through `tether watch` with
# all three endpoints keeps reporting changes after the loss.
source "$(dirname "$0")/etcd_lib.sh"

TTL=2
declare -a C PP
CLUSTER=""
for i in 1 2 3; do
    C[$i]=$(free_port)
    PP[$i]=$(free_port)
    CLUSTER="$CLUSTER${CLUSTER:+,}m$i=http://127.0.0.1:${PP[$i]}"
done
for i in 1 2 3; do
    etcd_start "m$i" "$TMP/data-m$i" "${C[$i]}" "${PP[$i]}" "$CLUSTER"
done
for i in 1 2 3; do
    wait_until 60 "member m$i to serve" etcd_healthy "${C[$i]}"
done
note "3-member cluster up"

URL="etcd://127.0.0.1:${C[1]},127.0.0.1:${C[2]},127.0.0.1:${C[3]}?ttl=$TTL&timeout_ms=500"
P=$(free_port)
KEY="/services/calculator/127.0.0.1:$P"
server_start s1 "$P" "$URL"
wait_until 30 "the server's key" key_present "${C[2]}" "$KEY"

# A watch on member 2 that must never see the key deleted.
ectl_bg "${C[2]}" watch --prefix /services/calculator/ >"$TMP/watch.log" 2>&1
PIDS+=("$!")
# And a tether watch that knows all three members.
"$BIN/tether" watch calculator --registry "$URL" >"$TMP/twatch.out" 2>"$TMP/twatch.log" &
PIDS+=("$!")
wait_until 30 "tether watch to report the server" grep -q "added 127.0.0.1:$P" "$TMP/twatch.out"
# The watch may not be established yet: put the marker until it shows.
marker_seen() {
    ectl "${C[2]}" put /services/calculator/marker 127.0.0.1:7 >/dev/null
    grep -q marker "$TMP/watch.log"
}
wait_until 30 "the etcdctl watch to run" marker_seen

etcd_stop m1 KILL
note "member 1 killed"
# Several TTLs: the lease must be kept alive through member 2 or 3.
end=$(($(now_ms) + TTL * 4000))
while [ "$(now_ms)" -lt "$end" ]; do
    key_present "${C[2]}" "$KEY" || key_present "${C[3]}" "$KEY" ||
        fail "the key disappeared after member 1 died"
    sleep 0.2
done
grep -A1 '^DELETE$' "$TMP/watch.log" | grep -q "127.0.0.1:$P" &&
    fail "the watch on member 2 saw the key deleted"
note "key alive for $((TTL * 4)) s after member 1 died; no DELETE seen"

# The tether watch moved to a surviving member: a new instance shows up.
ectl "${C[3]}" put /services/calculator/127.0.0.1:8 127.0.0.1:8 >/dev/null
wait_until 30 "tether watch to report a change after the loss" \
    grep -q "added 127.0.0.1:8" "$TMP/twatch.out"
grep -q "removed 127.0.0.1:$P" "$TMP/twatch.out" && fail "tether watch reported the server gone"
alive "${SPID[s1]}" || fail "the server died"
echo "ok"
