#!/usr/bin/env bash
# bench/gocompat/run.sh - Go's own net/rpc clients against tether's server
# and against Go's own net/rpc server, in the same run.
#
#   ./bench/gocompat/run.sh
#
# For each codec (gob, jsonrpc) and connection count (1, 4; DEPTH calls in
# flight per connection) it measures calls/s seen by Go's client and the
# server's CPU time per call (utime+stime from /proc/PID/stat over the
# measured window, divided by the calls), for examples' calculator-server
# (tether: one port, codec recognised per connection) and for Go's
# net/rpc calculator (bench/gocompat/main.go).  Then the other way round:
# tether's C client (tether-bench-client --codec gob|jsonrpc) and Go's own
# client against Go's net/rpc server.  Prints medians of RUNS runs and the
# ratios tether/Go.  Not a test: it never judges.
#
# Settings (environment):
#   BUILD_DIR  build tree (default: <repo>/build-gocompat; built if needed)
#   RUNS       runs per figure (default 3)
#   SECONDS_PER_RUN  measured seconds per run (default 2, after 0.3 s warm-up)
#   DEPTH      calls in flight per connection (default 64)
#   NO_BUILD=1 use the programs already in BUILD_DIR
set -u

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD_DIR:-$REPO/build-gocompat}
# A relative BUILD_DIR is taken from where the script was started.
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
RUNS=${RUNS:-3}
SECS=${SECONDS_PER_RUN:-2}
DEPTH=${DEPTH:-64}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

if [ -z "${NO_BUILD:-}" ]; then
    cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
        cmake --build "$BUILD" -j2 --target calculator-server tether-bench-client >/dev/null || {
        echo "build failed" >&2
        exit 1
    }
fi
GODIR=$BUILD/gocompat-go
mkdir -p "$GODIR/gopath"
(cd "$REPO/bench/gocompat" && GO111MODULE=off GOPATH=$GODIR/gopath GOCACHE=$GODIR/cache \
    go build -o "$GODIR/gocompat" .) || {
    echo "go build failed" >&2
    exit 1
}

wait_line() {
    for _ in $(seq 1 100); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "no '$2' in $1" >&2
    exit 1
}

"$BUILD/bin/calculator-server" --listen 127.0.0.1:0 >"$TMP/tt.out" 2>&1 &
TT_PID=$!
PIDS+=($TT_PID)
"$GODIR/gocompat" server >"$TMP/go.out" 2>&1 &
GO_PID=$!
PIDS+=($GO_PID)
wait_line "$TMP/tt.out" "listening on"
wait_line "$TMP/go.out" "^jsonrpc "
TT_ADDR=$(sed -n 's/^listening on //p' "$TMP/tt.out")
GO_GOB=$(awk '/^gob /{print $2}' "$TMP/go.out")
GO_JSON=$(awk '/^jsonrpc /{print $2}' "$TMP/go.out")
TICK=$(getconf CLK_TCK)

cpu_ticks() { # pid -> utime+stime
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# one_run pid addr codec conns -> "calls_per_s cpu_us_per_call"
one_run() {
    local pid=$1 addr=$2 codec=$3 conns=$4 t0=0 t1=0 line res=""
    while read -r line; do
        case $line in
        "MARK start") t0=$(cpu_ticks "$pid") ;;
        "MARK stop") t1=$(cpu_ticks "$pid") ;;
        RESULT*) res=$line ;;
        esac
    done < <("$GODIR/gocompat" client -addr "$addr" -codec "$codec" -conns "$conns" \
        -depth "$DEPTH" -seconds "$SECS" 2>&1)
    if [ -z "$res" ]; then
        echo "0 0"
        return
    fi
    local calls rate
    calls=$(sed -n 's/.*calls=\([0-9]*\) .*/\1/p' <<<"$res")
    rate=$(sed -n 's/.*calls_per_s=\([0-9]*\).*/\1/p' <<<"$res")
    awk -v c="$calls" -v r="$rate" -v t=$((t1 - t0)) -v hz="$TICK" \
        'BEGIN { printf "%s %.2f\n", r, (c > 0 ? t / hz * 1e6 / c : 0) }'
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "Go clients (net/rpc, $DEPTH calls in flight per connection) -> server; medians of $RUNS runs"
echo "(machine: $(nproc) CPUs shared by client and server; loopback)"
printf "%-8s %5s | %12s %12s %7s | %13s %13s %7s\n" codec conns "tether c/s" "Go c/s" ratio \
    "tether us/call" "Go us/call" ratio
for codec in gob jsonrpc; do
    for conns in 1 4; do
        : >"$TMP/tt" && : >"$TMP/go"
        go_addr=$GO_GOB
        [ "$codec" = jsonrpc ] && go_addr=$GO_JSON
        for _ in $(seq 1 "$RUNS"); do
            one_run "$TT_PID" "$TT_ADDR" "$codec" "$conns" >>"$TMP/tt"
            one_run "$GO_PID" "$go_addr" "$codec" "$conns" >>"$TMP/go"
        done
        tr=$(awk '{print $1}' "$TMP/tt" | median)
        gr=$(awk '{print $1}' "$TMP/go" | median)
        tc=$(awk '{print $2}' "$TMP/tt" | median)
        gc=$(awk '{print $2}' "$TMP/go" | median)
        awk -v codec="$codec" -v conns="$conns" -v tr="$tr" -v gr="$gr" -v tc="$tc" -v gc="$gc" \
            'BEGIN { printf "%-8s %5d | %12.0f %12.0f %7.2f | %13.2f %13.2f %7.2f\n",
                codec, conns, tr, gr, (gr > 0 ? tr / gr : 0), tc, gc, (gc > 0 ? tc / gc : 0) }'
    done
done

# The C client against Go's server: calls/s of tether-bench-client (one
# engine per connection, DEPTH calls in flight) and of Go's own client.
c_run() { # addr codec conns -> calls_per_s
    "$BUILD/bin/tether-bench-client" --addr "$1" --codec "$2" --mode pipe --conns "$3" \
        --depth "$DEPTH" --seconds "$SECS" --warmup-ms 300 2>/dev/null |
        sed -n 's/.*calls_per_s=\([0-9]*\).*/\1/p'
}
echo
echo "clients -> Go's net/rpc server ($DEPTH calls in flight per connection); medians of $RUNS runs"
printf "%-8s %5s | %12s %12s %7s | %s\n" codec conns "C client c/s" "Go c/s" ratio target
for codec in gob jsonrpc; do
    for conns in 1 4; do
        : >"$TMP/cc" && : >"$TMP/gc"
        go_addr=$GO_GOB
        [ "$codec" = jsonrpc ] && go_addr=$GO_JSON
        for _ in $(seq 1 "$RUNS"); do
            c_run "$go_addr" "$codec" "$conns" >>"$TMP/cc"
            one_run "$GO_PID" "$go_addr" "$codec" "$conns" | awk '{print $1}' >>"$TMP/gc"
        done
        cr=$(median <"$TMP/cc")
        gr=$(median <"$TMP/gc")
        target=""
        [ "$codec" = gob ] && [ "$conns" = 1 ] && target=">=1.50"
        awk -v codec="$codec" -v conns="$conns" -v cr="${cr:-0}" -v gr="${gr:-0}" -v t="$target" \
            'BEGIN { printf "%-8s %5d | %12.0f %12.0f %7.2f | %s\n", codec, conns, cr, gr,
                (gr > 0 ? cr / gr : 0), t }'
    done
done
