#!/usr/bin/env bash
# bench/run.sh - tether's benchmark in one command.
#
#   ./bench/run.sh
#
# Builds what it needs (cmake into build/, Go's reference into
# build/bench-go/), then measures, on loopback, a raw C TCP floor, tether
# (bin/calculator-server + tether-bench-client) and Go's net/rpc, and
# prints one table: medians of RUNS runs with min-max, the ratios
# tether/floor and Go/tether, the CPU placement of every row, then the
# memory and allocation rows.  bench/README.md explains every number.
#
# It is not a test: it prints figures and never judges them.  It exits
# non-zero only when it cannot build or start anything at all.
#
# Settings (environment):
#   BUILD_DIR     build tree to use or create      (default: <repo>/build)
#   RUNS          runs per figure                  (default: 5)
#   SEQ_CALLS     measured calls per latency run   (default: 20000, after 2000 warm-up)
#   PIPE_SECONDS  measured seconds per throughput run (default: 2, after 0.5 s warm-up)
#   IDLE_CONNS    idle connections for the RSS row (default: 10000)
#   SKIP_GO=1     leave out Go's net/rpc
#   NO_BUILD=1    do not run cmake; use the programs already in BUILD_DIR
#   KEEP_TMP=1    keep the raw samples, logs and allocation reports
#
# A full run takes about 3-4 minutes on a 2-core machine.

set -u

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$REPO/build}
# A relative BUILD_DIR is taken from where the script was started.
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
BIN=$BUILD/bin
RUNS=${RUNS:-5}
SEQ_CALLS=${SEQ_CALLS:-20000}
SEQ_WARMUP=2000
PIPE_SECONDS=${PIPE_SECONDS:-2}
PIPE_WARMUP_MS=500
IDLE_CONNS=${IDLE_CONNS:-10000}
MEM_RUNS=3
CLIENT_TIMEOUT=120

say() { printf '%s\n' "$*" >&2; }

# ---- build ---------------------------------------------------------------

if [ "${NO_BUILD:-0}" = 1 ]; then
    say "NO_BUILD=1: using the programs already in $BUILD"
elif [ ! -f "$BUILD/CMakeCache.txt" ]; then
    say "configuring $BUILD (RelWithDebInfo)"
    cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || {
        say "bench: cmake configure failed"; exit 1; }
fi
if [ "${NO_BUILD:-0}" != 1 ]; then
    say "building benchmark programs in $BUILD"
    cmake --build "$BUILD" -j "$(nproc)" --target bench-programs >"$BUILD/bench-build.log" 2>&1 || {
        say "bench: build failed, see $BUILD/bench-build.log"
        tail -20 "$BUILD/bench-build.log" >&2
        exit 1
    }
fi
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
SANITIZE=$(sed -n 's/^TETHER_SANITIZE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
ALLOCLIB=$BUILD/bench/libtether_alloccount.so

# Go's reference: standard library only, GOPATH mode, caches inside the
# build tree, no network (GOPROXY=off), so it builds the same offline.
GOBIN=""
if [ "${SKIP_GO:-0}" != 1 ] && command -v go >/dev/null 2>&1; then
    GODIR=$BUILD/bench-go
    mkdir -p "$GODIR"
    if (cd "$REPO/bench/go" && GO111MODULE=off GOPATH="$GODIR/gopath" GOCACHE="$GODIR/cache" \
            GOPROXY=off GOFLAGS= go build -o "$GODIR/gorpc-bench" .) >"$GODIR/build.log" 2>&1; then
        GOBIN=$GODIR/gorpc-bench
        GOVERSION=$(go version | awk '{print $3}')
    else
        say "bench: Go build failed (see $GODIR/build.log); Go columns left out"
    fi
else
    say "bench: go not found or SKIP_GO=1; Go columns left out"
fi
IMPLS="floor tether"
[ -n "$GOBIN" ] && IMPLS="$IMPLS go"

# ---- process handling ----------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tether-bench.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null
    done
    if [ "${KEEP_TMP:-0}" = 1 ] || [ -s "$TMP/failed-runs" ] || [ -s "$TMP/missing" ]; then
        say "raw samples, logs and allocation reports kept in $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The idle-connection row needs 10,000+ descriptors in the server (which
# inherits this shell's limit) and in the connection holder.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((IDLE_CONNS + 64)) ]; then
    IDLE_CONNS=$((NOFILE - 64))
    say "bench: RLIMIT_NOFILE hard limit is $NOFILE; using $IDLE_CONNS idle connections"
fi

# placement_prefix PLACEMENT - the command prefix that applies it.
placement_prefix() {
    case $1 in
        pinned) echo "taskset -c 0" ;;
        *) echo "" ;;
    esac
}

placement_label() {
    case $1 in
        pinned) echo "both on CPU 0" ;;
        *) echo "unpinned ($(nproc) CPUs)" ;;
    esac
}

# port_ready PORT PID - true once something accepts on 127.0.0.1:PORT
# (5 s max); false at once if process PID has exited.
port_ready() {
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# start_server IMPL PLACEMENT [ENV=VALUE...] - start a server on a free
# port; sets SERVER_PID and SERVER_ADDR.  Returns non-zero if it never
# started listening.
start_server() {
    local impl=$1 placement=$2
    shift 2
    local port
    port=$("$BIN/tether-bench-floor" freeport) || return 1
    SERVER_ADDR=127.0.0.1:$port
    local cmd
    case $impl in
        floor) cmd=("$BIN/tether-bench-floor" server --listen "$SERVER_ADDR") ;;
        # The floor server waiting in epoll_wait() before every read.
        floor-epoll) cmd=("$BIN/tether-bench-floor" server --listen "$SERVER_ADDR" --wait epoll) ;;
        tether) cmd=("$BIN/calculator-server" --listen "$SERVER_ADDR") ;;
        # The same server with metrics on (a listener on a free port).
        tether-metrics) cmd=("$BIN/calculator-server" --listen "$SERVER_ADDR" --metrics 127.0.0.1:0) ;;
        # The same server without its serving watchdog (on by default).
        tether-nolive) cmd=("$BIN/calculator-server" --listen "$SERVER_ADDR" --stall-ms 0) ;;
        go) cmd=("$GOBIN" server --listen "$SERVER_ADDR") ;;
    esac
    # shellcheck disable=SC2046
    env "$@" $(placement_prefix "$placement") "${cmd[@]}" >"$TMP/server-$impl.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    if ! port_ready "$port" "$SERVER_PID"; then
        say "bench: $impl server did not start (see below)"
        tail -5 "$TMP/server-$impl.log" >&2
        stop_server
        return 1
    fi
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}

# run_client IMPL PLACEMENT ARGS... - run IMPL's client against
# SERVER_ADDR and print its RESULT line (empty on failure).
run_client() {
    local impl=$1 placement=$2
    shift 2
    local cmd
    case $impl in
        floor | floor-epoll) cmd=("$BIN/tether-bench-floor" client) ;;
        tether) cmd=("$BIN/tether-bench-client") ;;
        go) cmd=("$GOBIN" client) ;;
    esac
    # shellcheck disable=SC2046
    local out
    out=$(timeout "$CLIENT_TIMEOUT" $(placement_prefix "$placement") "${cmd[@]}" \
        --addr "$SERVER_ADDR" "$@" 2>>"$TMP/client-$impl.log" | grep '^RESULT' | tail -1)
    if [ -z "$out" ]; then
        # A failed sample is never dropped silently: counted, its client's
        # stderr kept (client-IMPL.log, and $TMP is kept).
        echo "$impl $placement $*" >>"$TMP/failed-runs"
    fi
    printf '%s\n' "$out"
}

# field LINE KEY - the value of KEY=VALUE in a RESULT line.
field() {
    printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# record KEY VALUE - add one sample (ignored when empty).
record() {
    [ -n "$2" ] && echo "$2" >>"$TMP/m.$1"
}

proc_status() { # PID FIELD -> value (kB for VmRSS)
    awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null
}

# ---- latency and throughput ----------------------------------------------

say "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "running $RUNS runs; each run: sequential latency unpinned and pinned, 1x64 and 4x64 throughput"
for run in $(seq 1 "$RUNS"); do
    for placement in unpinned pinned; do
        for impl in $IMPLS; do
            start_server "$impl" "$placement" || continue
            if [ "$placement" = unpinned ] && [ "$impl" != floor ]; then
                sleep 0.3
                record "idle_rss.$impl" "$(proc_status "$SERVER_PID" VmRSS)"
                record "idle_threads.$impl" "$(proc_status "$SERVER_PID" Threads)"
            fi
            r=$(run_client "$impl" "$placement" --mode seq --calls "$SEQ_CALLS" \
                --warmup "$SEQ_WARMUP")
            record "seq_p50_$placement.$impl" "$(field "$r" p50_us)"
            record "seq_p99_$placement.$impl" "$(field "$r" p99_us)"
            if [ "$placement" = unpinned ]; then
                for conns in 1 4; do
                    r=$(run_client "$impl" "$placement" --mode pipe --conns "$conns" --depth 64 \
                        --seconds "$PIPE_SECONDS" --warmup-ms "$PIPE_WARMUP_MS")
                    v=$(field "$r" calls_per_s)
                    [ -n "$v" ] && v=$(awk -v v="$v" 'BEGIN { printf "%.1f", v / 1000 }')
                    record "pipe_$conns.$impl" "$v"
                done
                if [ "$impl" = tether ]; then
                    # The call context's price: three small metadata pairs.
                    r=$(run_client tether "$placement" --mode seq --calls "$SEQ_CALLS" \
                        --warmup "$SEQ_WARMUP" --meta 3)
                    record "seq_p50_meta.tether" "$(field "$r" p50_us)"
                    r=$(run_client tether "$placement" --mode pipe --conns 1 --depth 64 \
                        --seconds "$PIPE_SECONDS" --warmup-ms "$PIPE_WARMUP_MS" --meta 3)
                    v=$(field "$r" calls_per_s)
                    [ -n "$v" ] && v=$(awk -v v="$v" 'BEGIN { printf "%.1f", v / 1000 }')
                    record "pipe_1_meta.tether" "$v"
                    # The by-name layer's price: the same server as the one
                    # instance of a client by service name.
                    r=$(run_client tether "$placement" --mode seq --calls "$SEQ_CALLS" \
                        --warmup "$SEQ_WARMUP" --by-name 1)
                    record "seq_p50_byname.tether" "$(field "$r" p50_us)"
                    r=$(run_client tether "$placement" --mode pipe --conns 1 --depth 64 \
                        --seconds "$PIPE_SECONDS" --warmup-ms "$PIPE_WARMUP_MS" --by-name 1)
                    v=$(field "$r" calls_per_s)
                    [ -n "$v" ] && v=$(awk -v v="$v" 'BEGIN { printf "%.1f", v / 1000 }')
                    record "pipe_1_byname.tether" "$v"
                fi
                if [ "$impl" != floor ]; then
                    # After the load: does the server give its buffers back?
                    sleep 0.5
                    record "loaded_rss.$impl" "$(proc_status "$SERVER_PID" VmRSS)"
                fi
                if [ "$impl" = tether ]; then
                    # Metrics' price: the same server with metrics on, in
                    # the same run, right after the bare one.
                    stop_server
                    if start_server tether-metrics "$placement"; then
                        r=$(run_client tether "$placement" --mode seq --calls "$SEQ_CALLS" \
                            --warmup "$SEQ_WARMUP")
                        record "seq_p50_metrics.tether" "$(field "$r" p50_us)"
                        r=$(run_client tether "$placement" --mode pipe --conns 1 --depth 64 \
                            --seconds "$PIPE_SECONDS" --warmup-ms "$PIPE_WARMUP_MS")
                        v=$(field "$r" calls_per_s)
                        [ -n "$v" ] && v=$(awk -v v="$v" 'BEGIN { printf "%.1f", v / 1000 }')
                        record "pipe_1_metrics.tether" "$v"
                    fi
                    # Liveness' price: the serving watchdog and the
                    # client's connection probes, both on by default,
                    # against both off.
                    stop_server
                    if start_server tether-nolive "$placement"; then
                        r=$(run_client tether "$placement" --mode seq --calls "$SEQ_CALLS" \
                            --warmup "$SEQ_WARMUP" --probe-ms off)
                        record "seq_p50_nolive.tether" "$(field "$r" p50_us)"
                        r=$(run_client tether "$placement" --mode pipe --conns 1 --depth 64 \
                            --seconds "$PIPE_SECONDS" --warmup-ms "$PIPE_WARMUP_MS" --probe-ms off)
                        v=$(field "$r" calls_per_s)
                        [ -n "$v" ] && v=$(awk -v v="$v" 'BEGIN { printf "%.1f", v / 1000 }')
                        record "pipe_1_nolive.tether" "$v"
                    fi
                fi
            fi
            if [ "$impl" = floor ]; then
                # What an event loop alone adds: the same floor server, but
                # waiting in epoll_wait() before every read.
                stop_server
                if start_server floor-epoll "$placement"; then
                    r=$(run_client floor-epoll "$placement" --mode seq --calls "$SEQ_CALLS" \
                        --warmup "$SEQ_WARMUP")
                    record "seq_p50_$placement.floorep" "$(field "$r" p50_us)"
                fi
            fi
            stop_server
        done
    done
    say "  run $run/$RUNS done"
done

# ---- large messages --------------------------------------------------------

# echo_run MODE SIZE - MB/s of one echo client (tether or the raw floor)
# against its own server, started here.
echo_run() {
    local srvmode=$1 climode=$2 size=$3 port pid r
    port=$("$BIN/tether-bench-floor" freeport) || return
    "$BIN/tether-bench-echo" "$srvmode" --listen "127.0.0.1:$port" >/dev/null 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if port_ready "$port" "$pid"; then
        r=$(timeout "$CLIENT_TIMEOUT" "$BIN/tether-bench-echo" "$climode" \
            --addr "127.0.0.1:$port" --size "$size" --seconds "$PIPE_SECONDS" 2>>"$TMP/echo.log" |
            grep '^RESULT')
        field "$r" mb_per_s
    fi
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

say "large messages: Echo of 64 KiB and 1 MiB against a raw TCP echo"
for run in $(seq 1 "$RUNS"); do
    for size in 65536 1048576; do
        record "echo_$size.floor" "$(echo_run floor-server floor-client "$size")"
        record "echo_$size.tether" "$(echo_run server client "$size")"
    done
done

# ---- idle connections ----------------------------------------------------

# idle_conn_cost IMPL - server RSS growth per idle connection, in bytes.
idle_conn_cost() {
    local impl=$1 preface=1 holder rss0 rss1 i nfd nfd0
    [ "$impl" = go ] && preface=0 # Go's gob codec would reject tether's preface
    start_server "$impl" unpinned || return
    sleep 0.3
    rss0=$(proc_status "$SERVER_PID" VmRSS)
    nfd0=$(ls "/proc/$SERVER_PID/fd" 2>/dev/null | wc -l)
    "$BIN/tether-bench-conns" --addr "$SERVER_ADDR" --count "$IDLE_CONNS" --preface "$preface" \
        >"$TMP/conns.out" 2>>"$TMP/conns.log" &
    holder=$!
    PIDS+=("$holder")
    # Wait until the holder has opened every connection and the server has
    # accepted them all (its descriptor count), then let it read the
    # prefaces and settle.
    for i in $(seq 1 600); do
        grep -q '^RESULT' "$TMP/conns.out" 2>/dev/null && break
        kill -0 "$holder" 2>/dev/null || break
        sleep 0.1
    done
    for i in $(seq 1 300); do
        nfd=$(ls "/proc/$SERVER_PID/fd" 2>/dev/null | wc -l)
        [ "$nfd" -ge $((nfd0 + IDLE_CONNS)) ] && break
        sleep 0.1
    done
    sleep 1
    rss1=$(proc_status "$SERVER_PID" VmRSS)
    if grep -q '^RESULT' "$TMP/conns.out" && [ "$nfd" -ge $((nfd0 + IDLE_CONNS)) ]; then
        record "conn_cost.$impl" "$(awk -v a="$rss0" -v b="$rss1" -v n="$IDLE_CONNS" \
            'BEGIN {printf "%.2f", (b - a) / n}')"
    else
        say "bench: $impl: idle connections not all open (server has $nfd descriptors)"
    fi
    kill "$holder" 2>/dev/null
    wait "$holder" 2>/dev/null
    stop_server
}

say "measuring the RSS of $IDLE_CONNS idle connections ($MEM_RUNS runs)"
for run in $(seq 1 "$MEM_RUNS"); do
    for impl in $IMPLS; do
        [ "$impl" = floor ] && continue
        idle_conn_cost "$impl"
    done
done

# ---- allocations per call on the server ----------------------------------

# alloc_window MODE ARGS... - run tether-bench-client with the server (and
# itself) preloaded with the allocation counter; leaves the reports in
# $TMP/alloc-{server,client}.MODE and prints the client's RESULT line.
alloc_window() {
    local mode=$1
    shift
    rm -f "$TMP/srv.ctl" "$TMP/cli.ctl" "$TMP/alloc-server.$mode" "$TMP/alloc-client.$mode"
    mkfifo "$TMP/srv.ctl" "$TMP/cli.ctl"
    start_server tether unpinned LD_PRELOAD="$ALLOCLIB" ALLOCCOUNT_CTL="$TMP/srv.ctl" \
        ALLOCCOUNT_OUT="$TMP/alloc-server.$mode" || return
    # timeout first: only the client itself may load the counter, or two
    # processes would read the same control FIFO.
    timeout "$CLIENT_TIMEOUT" env LD_PRELOAD="$ALLOCLIB" ALLOCCOUNT_CTL="$TMP/cli.ctl" \
        ALLOCCOUNT_OUT="$TMP/alloc-client.$mode" \
        "$BIN/tether-bench-client" --addr "$SERVER_ADDR" --mode "$mode" \
        --ctl "$TMP/srv.ctl" --ctl "$TMP/cli.ctl" "$@" 2>>"$TMP/client-tether.log" |
        grep '^RESULT' | tail -1
    # The reports are written by the counters' own threads: wait for "end".
    local i
    for i in $(seq 1 50); do
        grep -q '^end' "$TMP/alloc-server.$mode" 2>/dev/null && break
        sleep 0.1
    done
    stop_server
}

# per_call REPORT CALLS - allocations per call from a report.
per_call() {
    if [ -f "$1" ] && [ -n "$2" ]; then
        awk -v n="$2" '$1 == "allocs" { split($2, t, "="); printf "%.3f", t[2] / n }' "$1"
    else
        echo "n/a"
    fi
}

# unpack_per_call REPORT CALLS - allocations made inside protobuf-c's unpack.
unpack_per_call() {
    if [ -f "$1" ] && [ -n "$2" ]; then
        awk -v n="$2" '$1 == "stack" && /protobuf_c_message_unpack/ { s += $2 }
            END { printf "%.3f", s / n }' "$1"
    else
        echo "n/a"
    fi
}

declare -A SYMCACHE
# frame_name FRAME - a function name for "path+0xOFF(sym)".
frame_name() {
    local f=$1 path off sym name
    path=${f%%+0x*}
    off=${f#*+}
    off=${off%%(*}
    sym=${f##*(}
    sym=${sym%)}
    if [ -n "${SYMCACHE[$f]:-}" ]; then
        echo "${SYMCACHE[$f]}"
        return
    fi
    name=$(addr2line -f -e "$path" "$off" 2>/dev/null | head -1)
    if [ -z "$name" ] || [ "$name" = "??" ]; then
        if [ "$sym" != "-" ]; then name=$sym; else name="$(basename "$path")+$off"; fi
    fi
    SYMCACHE[$f]=$name
    echo "$name"
}

# show_stacks REPORT CALLS - the distinct allocation stacks, per call.
show_stacks() {
    local line count frames name chain n
    [ -f "$1" ] || return
    grep '^stack' "$1" | sort -k2,2nr | while read -r line; do
        count=$(echo "$line" | awk '{print $2}')
        frames=$(echo "$line" | cut -d' ' -f3-)
        chain=""
        n=0
        for f in $frames; do
            name=$(frame_name "$f")
            chain="$chain${chain:+ <- }$name"
            n=$((n + 1))
            [ $n -ge 6 ] && break
        done
        printf '    %8.3f/call  %s\n' "$(awk -v c="$count" -v n="$2" 'BEGIN { print c / n }')" \
            "$chain"
    done
}

say "counting allocations (LD_PRELOAD counter)"
ALLOC_CALLS=5000
SEQ_ALLOC=$(alloc_window seq --calls "$ALLOC_CALLS" --warmup "$ALLOC_CALLS")
SEQ_WIN=$(field "$SEQ_ALLOC" window_calls)
PIPE_ALLOC=$(alloc_window pipe --conns 1 --depth 64 --seconds 1 --warmup-ms 500)
PIPE_WIN=$(field "$PIPE_ALLOC" window_calls)

# ---- report --------------------------------------------------------------

# stat KEY [int] - "median (min-max)" of the samples, or "n/a".  Three
# significant digits or so, whole numbers for counts ("int").
# A cell with fewer samples than runs says how many it holds ("[3/5]");
# a figure without any is "n/a", listed at the end, and the run exits 1.
# STAT_RUNS (default RUNS) is how many samples a cell should hold.
stat() {
    local f=$TMP/m.$1
    [ -s "$f" ] || { echo "$1" >>"$TMP/missing"; echo "n/a"; return; }
    sort -g "$f" | awk -v whole="${2:-}" -v runs="${STAT_RUNS:-$RUNS}" '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        fmt = (v[NR] >= 1000 || whole != "") ? "%.0f" : (v[NR] >= 100 ? "%.1f" : "%.2f")
        printf fmt " (" fmt "-" fmt ")", m, v[1], v[NR]
        if (NR < runs) printf " [%d/%d]", NR, runs }'
}

median() {
    local f=$TMP/m.$1
    [ -s "$f" ] || return
    sort -g "$f" | awk '{ v[NR] = $1 } END {
        print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio A B - median(A)/median(B), or "n/a".
ratio() {
    local a b
    a=$(median "$1")
    b=$(median "$2")
    if [ -z "$a" ] || [ -z "$b" ]; then
        echo "n/a"
    else
        awk -v a="$a" -v b="$b" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'
    fi
}

row() { # LABEL PLACEMENT KEY TARGET
    local label=$1 placement=$2 key=$3 target=$4 gocol="" gor=""
    if [ -n "$GOBIN" ]; then
        gocol=$(stat "$key.go")
        gor=$(ratio "$key.go" "$key.tether")
    fi
    printf '%-24s %-18s %-22s %-22s %-22s %-8s %-8s %-8s\n' "$label" "$placement" \
        "$(stat "$key.floor")" "$(stat "$key.tether")" "$gocol" \
        "$(ratio "$key.tether" "$key.floor")" "$target" "$gor"
}

echo
echo "tether benchmark: Calculator.Add(1, 2) over loopback TCP"
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "  machine   $(nproc) CPUs ($CPU_MODEL), kernel $(uname -r)"
echo "  load      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min load average at the end)"
echo "  build     $BUILD_TYPE${SANITIZE:+, TETHER_SANITIZE=$SANITIZE}; Go ${GOVERSION:-not run}"
echo "  bytes     request frame 49 B, reply frame 22 B per call (tether's frames; the floor"
echo "            sends the same sizes)"
echo "  runs      $RUNS; latency: $SEQ_CALLS calls after $SEQ_WARMUP warm-up;"
echo "            throughput: ${PIPE_SECONDS} s after ${PIPE_WARMUP_MS} ms warm-up"
echo "  cells     median (min-max) over the runs ([k/N]: only k of the N runs gave a sample);"
echo "            ratios are of the medians; a figure with no sample fails the run (exit 1)"
echo
printf '%-24s %-18s %-22s %-22s %-22s %-8s %-8s %-8s\n' \
    "figure" "CPU placement" "raw TCP floor" "tether" "Go net/rpc" "t/floor" "target" "Go/t"
PIN=$(placement_label pinned)
UNP=$(placement_label unpinned)
row "seq p50 (us)" "$UNP" seq_p50_unpinned "<=1.05"
row "seq p99 (us)" "$UNP" seq_p99_unpinned "<=1.50"
row "seq p50 (us)" "$PIN" seq_p50_pinned "<=1.05"
row "seq p99 (us)" "$PIN" seq_p99_pinned "<=1.50"
row "1 conn x 64 (k calls/s)" "$UNP" pipe_1 ">=0.80"
row "4 conns x 64 (k calls/s)" "$UNP" pipe_4 ">=0.60"
echo
echo "event loop: the floor server waiting in epoll_wait() before each read, as any event-loop"
echo "  server does (one system call more per call than the blocking floor)"
printf '  %-26s %-18s %-22s %-22s %-10s %-10s\n' "figure" "CPU placement" "floor + epoll_wait" \
    "tether" "ep/floor" "t/ep"
for placement in unpinned pinned; do
    printf '  %-26s %-18s %-22s %-22s %-10s %-10s\n' "seq p50 (us)" \
        "$(placement_label "$placement")" "$(stat "seq_p50_$placement.floorep")" \
        "$(stat "seq_p50_$placement.tether")" \
        "$(ratio "seq_p50_$placement.floorep" "seq_p50_$placement.floor")" \
        "$(ratio "seq_p50_$placement.tether" "seq_p50_$placement.floorep")"
done
echo
echo "call context: tether with 3 small metadata pairs per call against tether bare ($UNP)"
printf '  %-26s %-22s %-22s %-8s %-8s
' "figure" "bare" "3 metadata pairs" "ratio" "target"
printf '  %-26s %-22s %-22s %-8s %-8s
' "seq p50 (us)" "$(stat seq_p50_unpinned.tether)" \
    "$(stat seq_p50_meta.tether)" "$(ratio seq_p50_meta.tether seq_p50_unpinned.tether)" "<=1.10"
printf '  %-26s %-22s %-22s %-8s %-8s
' "1 conn x 64 (k calls/s)" "$(stat pipe_1.tether)" \
    "$(stat pipe_1_meta.tether)" "$(ratio pipe_1.tether pipe_1_meta.tether)" "<=1.10"
echo
echo "large messages: one call in flight, MB/s of payload ($UNP)"
printf '  %-26s %-22s %-22s %-8s %-8s\n' "figure" "raw TCP echo" "tether Echo" "t/floor" "target"
for size in 65536 1048576; do
    printf '  %-26s %-22s %-22s %-8s %-8s\n' "echo $((size / 1024)) KiB (MB/s)" \
        "$(stat "echo_$size.floor")" "$(stat "echo_$size.tether")" \
        "$(ratio "echo_$size.tether" "echo_$size.floor")" ">=0.60"
done
echo
echo "by name: a client by service name (static registry, one instance) against a direct client"
printf '  %-26s %-22s %-22s %-8s %-8s\n' "figure" "direct" "by name" "ratio" "target"
printf '  %-26s %-22s %-22s %-8s %-8s\n' "seq p50 (us)" "$(stat seq_p50_unpinned.tether)" \
    "$(stat seq_p50_byname.tether)" "$(ratio seq_p50_byname.tether seq_p50_unpinned.tether)" \
    "<=1.05"
printf '  %-26s %-22s %-22s %-8s %-8s\n' "1 conn x 64 (k calls/s)" "$(stat pipe_1.tether)" \
    "$(stat pipe_1_byname.tether)" "$(ratio pipe_1.tether pipe_1_byname.tether)" ""
echo
echo "metrics: calculator-server --metrics against the same server without ($UNP, same runs)"
printf '  %-26s %-22s %-22s %-8s %-8s\n' "figure" "metrics off" "metrics on" "ratio" "target"
printf '  %-26s %-22s %-22s %-8s %-8s\n' "seq p50 (us)" "$(stat seq_p50_unpinned.tether)" \
    "$(stat seq_p50_metrics.tether)" "$(ratio seq_p50_metrics.tether seq_p50_unpinned.tether)" \
    "<=1.02"
printf '  %-26s %-22s %-22s %-8s %-8s\n' "1 conn x 64 (k calls/s)" "$(stat pipe_1.tether)" \
    "$(stat pipe_1_metrics.tether)" "$(ratio pipe_1.tether pipe_1_metrics.tether)" "<=1.02"
echo
echo "liveness: the serving watchdog (stall_ms) and the client's probes (probe_ms), on by default,"
echo "  against both off ($UNP, same runs)"
printf '  %-26s %-22s %-22s %-8s %-8s\n' "figure" "both off" "both on" "ratio" "target"
printf '  %-26s %-22s %-22s %-8s %-8s\n' "seq p50 (us)" "$(stat seq_p50_nolive.tether)" \
    "$(stat seq_p50_unpinned.tether)" "$(ratio seq_p50_unpinned.tether seq_p50_nolive.tether)" ""
printf '  %-26s %-22s %-22s %-8s %-8s\n' "1 conn x 64 (k calls/s)" "$(stat pipe_1_nolive.tether)" \
    "$(stat pipe_1.tether)" "$(ratio pipe_1_nolive.tether pipe_1.tether)" "<=1.02"
echo
printf '%-44s %-22s %-22s %-10s\n' "memory (server, $UNP)" "tether" "Go net/rpc" "target"
mrow() { # LABEL KEY TARGET [int]
    local t g=""
    t=$(stat "$2.tether" "${4:-}")
    [ -n "$GOBIN" ] && g=$(stat "$2.go" "${4:-}")
    printf '%-44s %-22s %-22s %-10s\n' "$1" "$t" "$g" "$3"
}
# RSS samples are in kB; show MB for whole-process rows.
for k in idle_rss loaded_rss; do
    for impl in tether go; do
        [ -s "$TMP/m.$k.$impl" ] && awk '{ printf "%.2f\n", $1 / 1024 }' "$TMP/m.$k.$impl" \
            >"$TMP/m.$k.mb.$impl"
    done
done
mrow "idle RSS after start (MB)" idle_rss.mb "<=3 MB"
mrow "threads when idle" idle_threads "" int
mrow "idle RSS after the load above (MB)" loaded_rss.mb ""
STAT_RUNS=$MEM_RUNS mrow "RSS per idle connection (KB, $IDLE_CONNS conns)" conn_cost "<=2 KB"
echo
echo "allocations per call (glibc malloc/calloc/realloc/memalign, counted by an LD_PRELOAD shim)"
printf '  %-40s %-10s %-26s %-10s\n' "" "server" "server in protobuf-c unpack" "client"
printf '  %-40s %-10s %-26s %-10s\n' "sequential, $ALLOC_CALLS calls" \
    "$(per_call "$TMP/alloc-server.seq" "$SEQ_WIN")" \
    "$(unpack_per_call "$TMP/alloc-server.seq" "$SEQ_WIN")" \
    "$(per_call "$TMP/alloc-client.seq" "$SEQ_WIN")"
printf '  %-40s %-10s %-26s %-10s\n' "1 conn x 64, ${PIPE_WIN:-?} calls (+-64)" \
    "$(per_call "$TMP/alloc-server.pipe" "$PIPE_WIN")" \
    "$(unpack_per_call "$TMP/alloc-server.pipe" "$PIPE_WIN")" \
    "$(per_call "$TMP/alloc-client.pipe" "$PIPE_WIN")"
if [ -n "$SEQ_WIN" ]; then
    echo "  server allocation sites, sequential run (allocating function first, then its callers):"
    show_stacks "$TMP/alloc-server.seq" "$SEQ_WIN"
    echo "  client allocation sites, sequential run:"
    show_stacks "$TMP/alloc-client.seq" "$SEQ_WIN"
fi
status=0
if [ -s "$TMP/failed-runs" ]; then
    echo
    echo "$(wc -l <"$TMP/failed-runs") client runs gave no result (their stderr: $TMP/client-*.log):"
    sed 's/^/  /' "$TMP/failed-runs" | sort | uniq -c | head -20
fi
if [ -s "$TMP/missing" ]; then
    echo
    echo "figures without a single sample: $(sort -u "$TMP/missing" | paste -sd' ')"
    status=1
fi
exit $status
