#!/usr/bin/env bash
# outlier.sh - figures for "alive but not serving" (one command):
#   bench/resilience/outlier.sh     (BUILD_DIR=build, RUNS=5 by default)
# Three calculator-servers (127.0.0.2-4) in a private network namespace
# (tests/netns/netns_lib.sh; needs root), a client by name on 127.0.0.1,
# and one instance made useless for 3 s of a 6 s run (as in the issue's
# measurement: frozen with SIGSTOP, or blackholed by nftables drop rules),
# from 1.5 s on.  Two clients, each run alone: "sync" makes one call every
# 2 ms, "async" starts 5000 calls/s with at most 64 in flight; each with
# its calls not marked idempotent (plain) and idempotent with hedging
# after the recent p95 (hedged).  Default client settings otherwise.
# Per row, over RUNS runs: median (min-max) of the failed calls, calls made
# against a healthy run of the same settings and length (goal >= 0.8), the
# time from the fault until throughput is back to >= 80 % of the healthy
# rate (goal <= 500 ms), and the p99 latency of the calls started in the
# first second after the fault.  Then the probes' cost: tether-bench-client
# on 1 connection with 64 calls in flight, probes on (default) and off,
# alternating, the client's CPU time per call (goal: <= 2 % apart).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${BUILD_DIR:-$ROOT/build}" && pwd)
export TETHER_BIN_DIR=$BUILD/bin
source "$ROOT/tests/netns/netns_lib.sh"
netns_enter "$@"
RUNS=${RUNS:-5}
source "$ROOT/tests/integration/outlier_lib.sh"

netns_host srv1 2
netns_host srv2 3
netns_host srv3 4
for i in 1 2 3; do
    ol_start "$i" "$(netns_ip "srv$i"):0"
done
P2=${SRV_PID[2]}
IP2=$(netns_ip srv2)
PORT2=${SRV_ADDR[2]##*:}
FROZEN=(--fault "kill -STOP $P2" --heal "kill -CONT $P2")
BLACKHOLE=(--fault "nft add rule inet tt_netns out ip daddr $IP2 tcp dport $PORT2 drop; \
nft add rule inet tt_netns out ip saddr $IP2 tcp sport $PORT2 drop"
    --heal "nft flush chain inet tt_netns out")
TIMES=(--duration-ms 6000 --fault-at-ms 1500 --heal-at-ms 4500)

# stats FILE - "median (min-max)" of the numbers in FILE, one a line.
stats() {
    sort -g "$1" | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%g (%g-%g)\n", m, v[1], v[NR] }'
}

# row FAULT CLIENT VARIANT - RUNS faulty and RUNS healthy runs, one line.
row() {
    local fault=$1 cl=$2 variant=$3 r args=(--only "$2")
    [ "$cl" = async ] && args+=(--rate 5000 --inflight 64)
    [ "$variant" = hedged ] && args+=(--idempotent --backup-ms p95)
    [ "$variant" = rr ] && args+=(--balance rr)
    local fargs=("${FROZEN[@]}")
    [ "$fault" = blackholed ] && fargs=("${BLACKHOLE[@]}")
    local t=$OL_DIR/row
    rm -f "$t".*
    for r in $(seq "$RUNS"); do
        ol_load healthy "${args[@]}" --duration-ms 6000 >/dev/null
        ol_load faulty "${args[@]}" "${TIMES[@]}" "${fargs[@]}" >/dev/null
        local hc fc
        hc=$(ol_field healthy "$cl" calls)
        fc=$(ol_field faulty "$cl" calls)
        ol_field faulty "$cl" failed >>"$t.failed"
        awk -v f="$fc" -v h="$hc" 'BEGIN { printf "%.3f\n", f / h }' >>"$t.ratio"
        ol_field faulty "$cl" recovery_ms >>"$t.recovery"
        awk -v p="$(ol_field faulty "$cl" p99_us)" 'BEGIN { printf "%.1f\n", p / 1000 }' >>"$t.p99"
    done
    printf "| %-10s | %-5s | %-6s | %-14s | %-20s | %-18s | %-20s |\n" "$fault" "$cl" "$variant" \
        "$(stats "$t.failed")" "$(stats "$t.ratio")" "$(stats "$t.recovery")" "$(stats "$t.p99")"
}

echo "outlier figures: $RUNS runs per row, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| fault      | client| calls  | failed calls   | calls vs healthy     | back to 80 % (ms)  | p99 first second (ms)|"
echo "|------------|-------|--------|----------------|----------------------|--------------------|----------------------|"
# ROWS: a pattern for "fault/client/variant" (e.g. '*/hedged'), PROBE_COST=0 skips
# the last part.
for fault in frozen blackholed; do
    for cl in sync async; do
        variants=(plain hedged)
        # rr: plain calls in turn instead of the default two choices.
        [ "$cl" = async ] && variants+=(rr)
        for variant in "${variants[@]}"; do
            # shellcheck disable=SC2053
            [[ "$fault/$cl/$variant" == ${ROWS:-*} ]] && row "$fault" "$cl" "$variant"
        done
    done
done
[ "${PROBE_COST:-1}" = 0 ] && exit 0

# The probes' cost on a busy connection: the client's CPU time per call
# (user + system, from the kernel's accounting of the child), which a
# shared machine disturbs less than the rate does; runs alternate.
cpu_per_call() {
    python3 - "$BUILD/bin/tether-bench-client" "${SRV_ADDR[1]}" "$1" <<'PY'
import re, resource, subprocess, sys
exe, addr, pm = sys.argv[1:4]
out = subprocess.run([exe, "--addr", addr, "--mode", "pipe", "--conns", "1", "--depth", "64",
                      "--seconds", "2", "--probe-ms", pm], capture_output=True, text=True).stdout
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
calls = int(re.search(r"window_calls=(\d+)", out).group(1))
print("%.1f" % ((ru.ru_utime + ru.ru_stime) * 1e9 / calls))
PY
}
echo
for r in $(seq $((RUNS * 2))); do
    cpu_per_call 100 >>"$OL_DIR/on"
    cpu_per_call off >>"$OL_DIR/off"
done
med() {
    sort -g "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo "probe cost, 1 conn x 64 in flight, client CPU per call: probes on $(stats "$OL_DIR/on") ns," \
    "off $(stats "$OL_DIR/off") ns: medians $(awk -v a="$(med "$OL_DIR/on")" -v b="$(med "$OL_DIR/off")" \
        'BEGIN { printf "%+.1f %%", (a - b) / b * 100 }'), minimums $(awk \
        -v a="$(sort -g "$OL_DIR/on" | head -1)" -v b="$(sort -g "$OL_DIR/off" | head -1)" \
        'BEGIN { printf "%+.1f %%", (a - b) / b * 100 }')"
