#!/usr/bin/env bash
# test_outlier_netns.sh - instances whose packets are dropped, in a private
# network namespace (tests/netns/netns_lib.sh): three calculator-servers on
# 127.0.0.2, .3 and .4, clients by name on 127.0.0.1, the local: registry
# on the file system.
#   b. blackholed: nftables drops every packet to and from one server's
#      port (no reset, no ICMP) while a sync and an async client call; same
#      expectations as test_outlier.sh (the frozen server): at most one
#      failed call each without hedging, none with it, the instance
#      ejected, and called again once the drop rules are gone;
#   d. reachable by the registry but not by clients: the cut server stays
#      registered (its entry is untouched), and with the default probe
#      settings the clients eject it within 1 s of the cut.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../netns/netns_lib.sh"
netns_enter "$@"
source "$HERE/outlier_lib.sh"

netns_host srv1 2
netns_host srv2 3
netns_host srv3 4
for i in 1 2 3; do
    ol_start "$i" "$(netns_ip "srv$i"):0"
done
PORT2=${SRV_ADDR[2]##*:}
IP2=$(netns_ip srv2)
# The cut: this host's traffic to server 2's port and its answers.
CUT="nft add rule inet tt_netns out ip daddr $IP2 tcp dport $PORT2 drop; \
nft add rule inet tt_netns out ip saddr $IP2 tcp sport $PORT2 drop"
HEAL="nft flush chain inet tt_netns out"

RATE=2000
[ -n "${TETHER_SANITIZE:-}" ] && RATE=500
FAULT_AT=2000
HEAL_AT=4500
HEAL_AFTER=$((HEAL_AT - FAULT_AT))
COMMON=(--duration-ms 9000 --rate "$RATE" --inflight 64 --timeout-ms 10000
    --fault-at-ms "$FAULT_AT" --fault "$CUT" --heal-at-ms "$HEAL_AT" --heal "$HEAL")
SLOW=(--probe-ms 200 --probe-timeout-ms 1000)

# b. Blackholed.
ol_load plain "${COMMON[@]}" "${SLOW[@]}" --async-idempotent
ol_expect plain sync 1
ol_expect plain async 1
ol_load hedged "${COMMON[@]}" "${SLOW[@]}" --idempotent --backup-ms 50
ol_expect hedged sync 0
ol_expect hedged async 0

# d. Default probe settings: ejected within 1 s; still registered.
ol_load defaults "${COMMON[@]}" --idempotent --backup-ms 50
for cl in sync async; do
    ej=$(ol_field defaults "$cl" ejected_ms)
    [ "$ej" -ge 0 ] && [ "$ej" -le 1000 ] ||
        fail "defaults $cl: ejected $ej ms after the cut (want within 1000)"
done
ol_expect defaults sync 0
ol_expect defaults async 0
[ "$(find "$OL_DIR/reg" -type f | grep -c .)" -eq 3 ] ||
    fail "the cut server's registration went: $(find "$OL_DIR/reg" -type f)"
echo "PASS"
