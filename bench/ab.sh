#!/usr/bin/env bash
# bench/ab.sh - what one feature costs, measured against the noise between
# two identical runs.
#
#   ./bench/ab.sh [metrics|meta|byname]   (after a build into build/)
#
#   metrics  server B runs with `--metrics 127.0.0.1:0` (the default)
#   meta     B's client sends three small metadata pairs per call (--meta 3)
#   byname   B's client calls by service name, over static:ADDR (--by-name 1)
#
# Every round starts three calculator-servers: A, A' and B, the same but
# for the feature (metrics), or all three alike with the feature in B's
# client (meta, byname).  The benchmark client runs against each of them
# in turn, in an order that rotates from round to round (so load that
# drifts during a round falls on all three): 1 connection x 64 calls in
# flight for SECONDS_PER_RUN, then SEQ_CALLS sequential calls (p50).
# It prints each round, then the medians and the median of the per-round
# ratios B / mean(A, A') (the cost) beside A' / A (the control: how far
# two identical runs differ on this machine).  A cost inside the
# control's spread is not resolved by the run; more rounds narrow both.
# Like run.sh it prints figures and never judges them.
#
# Settings (environment):
#   BUILD_DIR        build tree with bin/ (default: <repo>/build)
#   ROUNDS           rounds (default: 15)
#   SECONDS_PER_RUN  measured seconds of each pipelined run (default: 2)
#   SEQ_CALLS        sequential calls per run (default: 20000)
#   PIN=1            run servers and clients on CPU 0 only (taskset), where
#                    every instruction shows in the figures
set -u

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$REPO/build}
# A relative BUILD_DIR is taken from where the script was started.
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
BIN=$BUILD/bin
ROUNDS=${ROUNDS:-15}
SECS=${SECONDS_PER_RUN:-2}
SEQ_CALLS=${SEQ_CALLS:-20000}
PINCMD=()
[ "${PIN:-0}" = 1 ] && PINCMD=(taskset -c 0)
WHAT=${1:-metrics}
SRV_B=()
CLI_B=()
case $WHAT in
metrics) SRV_B=(--metrics 127.0.0.1:0) LABEL="metrics on (B) against off" ;;
meta) CLI_B=(--meta 3) LABEL="3 metadata pairs per call (B) against none" ;;
byname) CLI_B=(--by-name 1) LABEL="calls by name (B) against direct" ;;
*)
    echo "usage: bench/ab.sh [metrics|meta|byname]" >&2
    exit 2
    ;;
esac
for p in calculator-server tether-bench-client; do
    [ -x "$BIN/$p" ] || {
        echo "ab.sh: no $BIN/$p (build first: cmake -S . -B build && cmake --build build)" >&2
        exit 1
    }
done
command -v python3 >/dev/null || {
    echo "ab.sh: needs python3 for the summary" >&2
    exit 1
}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

# start NAME ARGS... - a server on a free port; sets ADDR_<NAME>.
start() {
    local name=$1
    shift
    "${PINCMD[@]}" "$BIN/calculator-server" --listen 127.0.0.1:0 "$@" >"$TMP/$name.out" 2>&1 &
    PIDS+=($!)
    local addr=""
    for _ in $(seq 1 100); do
        addr=$(sed -n 's/^listening on //p' "$TMP/$name.out")
        [ -n "$addr" ] && break
        sleep 0.05
    done
    [ -n "$addr" ] || {
        echo "ab.sh: server $name did not start:" >&2
        cat "$TMP/$name.out" >&2
        exit 1
    }
    printf -v "ADDR_$name" '%s' "$addr"
}

pipe() { # ADDR [CLIENT ARGS...] -> calls/s
    "${PINCMD[@]}" "$BIN/tether-bench-client" --addr "$@" --mode pipe --conns 1 --depth 64 \
        --seconds "$SECS" --warmup-ms 500 2>/dev/null | sed -n 's/.*calls_per_s=\([0-9]*\).*/\1/p'
}
seqp50() { # ADDR [CLIENT ARGS...] -> p50 in us
    "${PINCMD[@]}" "$BIN/tether-bench-client" --addr "$@" --mode seq --calls "$SEQ_CALLS" \
        --warmup 2000 2>/dev/null | sed -n 's/.*p50_us=\([0-9.]*\).*/\1/p'
}

echo "$LABEL (A) and again (A'); $ROUNDS rounds${PINCMD[*]:+, on CPU 0}"
printf "%-6s %12s %12s %12s %10s %10s %10s\n" round "A 1x64/s" "A' 1x64/s" "B 1x64/s" \
    "A p50us" "A' p50us" "B p50us"
for r in $(seq 1 "$ROUNDS"); do
    PIDS=()
    start A
    start C
    start B "${SRV_B[@]}"
    case $((r % 3)) in
    0) order="A C B" ;;
    1) order="C B A" ;;
    *) order="B A C" ;;
    esac
    declare -A P S
    for w in $order; do
        a=ADDR_$w
        extra=()
        [ "$w" = B ] && extra=("${CLI_B[@]}")
        P[$w]=$(pipe "${!a}" "${extra[@]}")
    done
    for w in $order; do
        a=ADDR_$w
        extra=()
        [ "$w" = B ] && extra=("${CLI_B[@]}")
        S[$w]=$(seqp50 "${!a}" "${extra[@]}")
    done
    kill "${PIDS[@]}" 2>/dev/null
    wait 2>/dev/null
    printf "%-6s %12s %12s %12s %10s %10s %10s\n" "$r" "${P[A]:-0}" "${P[C]:-0}" "${P[B]:-0}" \
        "${S[A]:-0}" "${S[C]:-0}" "${S[B]:-0}" | tee -a "$TMP/rounds"
done
PIDS=()

python3 - "$TMP/rounds" <<'EOF'
import statistics as st
import sys

rows = [[float(x) for x in line.split()[1:]] for line in open(sys.argv[1]) if line.strip()]
rows = [r for r in rows if all(v > 0 for v in r)]
if not rows:
    sys.exit("ab.sh: no round gave all six figures")


def show(label, a, c, b, higher_is_better):
    cost = [y / ((x + z) / 2) for x, z, y in zip(a, c, b)]
    ctrl = [z / x for x, z in zip(a, c)]
    word = "calls/s, B/A (below 1: fewer)" if higher_is_better else "p50, B/A (above 1: slower)"
    print(f"{label}: medians A {st.median(a):.6g}  A' {st.median(c):.6g}  B {st.median(b):.6g}")
    print(f"  cost    {word}: median of ratios {st.median(cost):.3f} "
          f"({min(cost):.3f}-{max(cost):.3f}), ratio of medians "
          f"{st.median(b) / st.median([(x + z) / 2 for x, z in zip(a, c)]):.3f}")
    print(f"  control A'/A: median of ratios {st.median(ctrl):.3f} ({min(ctrl):.3f}-{max(ctrl):.3f})")


print(f"{len(rows)} rounds with every figure")
show("1 conn x 64", [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], True)
show("seq p50", [r[3] for r in rows], [r[4] for r in rows], [r[5] for r in rows], False)
EOF
