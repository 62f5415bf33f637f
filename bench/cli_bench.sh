#!/usr/bin/env bash
# bench/cli_bench.sh - `tether bench` against tether's own benchmark
# client on the same workload, side by side.
#
#   ./bench/cli_bench.sh            (after a build into build/)
#
# One calculator-server; then RUNS pairs of runs, the two programs in
# alternating order (so load that drifts during the pairs falls on both):
#   tether-bench-client --mode pipe --conns CONNS --depth CALLS/CONNS
#   tether bench ADDR Calculator.Add '{"A":1,"B":2}' -c CALLS --conns CONNS
# Prints per pair calls/s and the client's CPU time per call (user+sys),
# and at the end the medians and the median of the per-pair ratios
# tether-bench / bench-client.  Like run.sh it prints figures and never
# judges them; other load on the machine shows as a wide spread.
#
# Settings (environment):
#   BUILD_DIR  build tree with bin/ (default: <repo>/build)
#   RUNS       pairs (default: 10)
#   SECONDS_PER_RUN  (default: 5)
#   CALLS      calls in flight in total (default: 64)
#   CONNS      connections (default: 4)
set -u

REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BUILD_DIR:-$REPO/build}/bin
RUNS=${RUNS:-10}
SECS=${SECONDS_PER_RUN:-5}
CALLS=${CALLS:-64}
CONNS=${CONNS:-4}
for p in calculator-server tether-bench-client tether; do
    [ -x "$BIN/$p" ] || {
        echo "cli_bench.sh: no $BIN/$p (build first: cmake -S . -B build && cmake --build build)" >&2
        exit 1
    }
done
TMP=$(mktemp -d)
SPID=
cleanup() {
    [ -n "$SPID" ] && kill "$SPID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

"$BIN/calculator-server" --listen 127.0.0.1:0 >"$TMP/srv.out" 2>&1 &
SPID=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$TMP/srv.out" && break
    sleep 0.05
done
ADDR=$(sed -n 's/^listening on //p' "$TMP/srv.out")
[ -n "$ADDR" ] || {
    echo "cli_bench.sh: the server did not start" >&2
    exit 1
}

TIMEFORMAT='%U %S'
# Each prints "calls/s cpu_ns_per_call".
run_client() {
    { time "$BIN/tether-bench-client" --addr "$ADDR" --mode pipe --conns "$CONNS" \
        --depth $((CALLS / CONNS)) --seconds "$SECS" --warmup-ms 0 >"$TMP/a.out"; } 2>"$TMP/a.t"
    local r n
    r=$(sed -n 's/.*calls_per_s=\([0-9]*\).*/\1/p' "$TMP/a.out")
    n=$(sed -n 's/.* calls=\([0-9]*\).*/\1/p' "$TMP/a.out")
    echo "${r:-0} $(awk -v n="${n:-0}" '{printf "%.0f", (n > 0 ? ($1 + $2) * 1e9 / n : 0)}' "$TMP/a.t")"
}
run_tool() {
    { time "$BIN/tether" bench "$ADDR" Calculator.Add '{"A":1,"B":2}' -c "$CALLS" \
        --conns "$CONNS" -d "${SECS}s" >"$TMP/t.out" 2>/dev/null; } 2>"$TMP/t.t"
    local r n
    r=$(sed -n 's/^calls: .* ok, \([0-9]*\) calls\/s$/\1/p' "$TMP/t.out")
    n=$(sed -n 's/^calls: *\([0-9]*\) ok.*/\1/p' "$TMP/t.out")
    echo "${r:-0} $(awk -v n="${n:-0}" '{printf "%.0f", (n > 0 ? ($1 + $2) * 1e9 / n : 0)}' "$TMP/t.t")"
}

echo "server $ADDR; $CALLS calls in flight over $CONNS connections; $RUNS pairs of ${SECS} s"
printf "%-5s %14s %10s %14s %10s %7s\n" pair "client call/s" "ns/call" "tool call/s" "ns/call" ratio
for i in $(seq 1 "$RUNS"); do
    if [ $((i % 2)) = 1 ]; then
        a=$(run_client)
        b=$(run_tool)
    else
        b=$(run_tool)
        a=$(run_client)
    fi
    set -- $a $b
    ratio=$(awk -v a="$1" -v b="$3" 'BEGIN{printf "%.3f", (a > 0 ? b / a : 0)}')
    printf "%-5s %14s %10s %14s %10s %7s\n" "$i" "$1" "$2" "$3" "$4" "$ratio"
    echo "$1 $2 $3 $4 $ratio" >>"$TMP/pairs"
done
median() {
    sort -n | awk '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                                     printf(m >= 100 ? "%.0f\n" : "%.3f\n", m)}'
}
printf "%-5s %14s %10s %14s %10s %7s\n" median \
    "$(cut -d' ' -f1 "$TMP/pairs" | median)" "$(cut -d' ' -f2 "$TMP/pairs" | median)" \
    "$(cut -d' ' -f3 "$TMP/pairs" | median)" "$(cut -d' ' -f4 "$TMP/pairs" | median)" \
    "$(cut -d' ' -f5 "$TMP/pairs" | median)"
