#!/usr/bin/env bash
# test_outlier.sh - a client by service name and an instance that is alive
# but not serving: one of three calculator-servers is frozen (SIGSTOP)
# while a sync client (a call every 2 ms) and an async client (64 calls in
# flight at most) call by name, and thawed (SIGCONT) later.
#   no hedging: the sync client's calls are not idempotent: at most the one
#     in flight when the server froze fails; the async client's calls are
#     idempotent, so the ones stuck on the frozen instance are retried
#     elsewhere once its ping goes unanswered: at most one fails;
#   hedging (backup_ms 50, idempotent calls): none fails;
# and in both the frozen instance is ejected, probed, and gets calls again
# after SIGCONT (the "calls resume" that follows its PONG).  Timing bounds
# are generous: pings wait a second for their PONG.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/outlier_lib.sh"

RATE=2000
[ -n "${TETHER_SANITIZE:-}" ] && RATE=500
for i in 1 2 3; do
    ol_start "$i" 127.0.0.1:0
done
FAULT_AT=2000
HEAL_AT=4500
HEAL_AFTER=$((HEAL_AT - FAULT_AT))
COMMON=(--duration-ms 9000 --rate "$RATE" --inflight 64 --timeout-ms 10000
    --probe-ms 200 --probe-timeout-ms 1000
    --fault-at-ms "$FAULT_AT" --fault "kill -STOP ${SRV_PID[2]}"
    --heal-at-ms "$HEAL_AT" --heal "kill -CONT ${SRV_PID[2]}")

ol_load plain "${COMMON[@]}" --async-idempotent
ol_expect plain sync 1
ol_expect plain async 1

ol_load hedged "${COMMON[@]}" --idempotent --backup-ms 50
ol_expect hedged sync 0
ol_expect hedged async 0

# The frozen server was continued and still serves.
kill -0 "${SRV_PID[2]}" || fail "server 2 died"
echo "PASS"
