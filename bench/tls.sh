#!/usr/bin/env bash
# bench/tls.sh - what TLS costs, plaintext and TLS side by side in one run.
#
#   ./bench/tls.sh
#
# Two calculator-servers with the same settings, one plaintext and one
# with a TLS certificate (ECDSA P-256, made here with openssl; TLS 1.3),
# measured in alternation, RUNS times each, by tether-bench-client and
# tether-bench-conns.  Prints medians with min-max and the TLS/plaintext
# ratio:
#   sequential p50        one call at a time, one connection (goal: TLS <= 1.3 x)
#   floor sequential p50  the same exchange with no tether at all
#                         (tether-bench-tls-floor: blocking OpenSSL against
#                         blocking TCP), so what TLS itself adds is seen
#                         beside what tether's TLS adds
#   1 conn x 64           64 calls in flight on one connection (goal: TLS >= 0.5 x)
#   new connections/s     tether_client_create + one call + destroy, one after another
#   RSS per idle conn     server RSS growth over IDLE_CONNS idle connections
#                         (TLS goal: <= 48 KB)
# Like bench/run.sh it never judges: it prints figures.
#
# Settings (environment): BUILD_DIR (default <repo>/build), RUNS (5),
# SEQ_CALLS (20000), PIPE_SECONDS (2), CONNECT_SECONDS (2), IDLE_CONNS
# (2000), NO_BUILD=1.
set -u

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$REPO/build}
# A relative BUILD_DIR is taken from where the script was started.
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
BIN=$BUILD/bin
RUNS=${RUNS:-5}
SEQ_CALLS=${SEQ_CALLS:-20000}
PIPE_SECONDS=${PIPE_SECONDS:-2}
CONNECT_SECONDS=${CONNECT_SECONDS:-2}
IDLE_CONNS=${IDLE_CONNS:-2000}

say() { printf '%s\n' "$*" >&2; }

if [ "${NO_BUILD:-0}" != 1 ]; then
    if [ ! -f "$BUILD/CMakeCache.txt" ]; then
        cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null ||
            { say "bench: cmake configure failed"; exit 1; }
    fi
    cmake --build "$BUILD" -j "$(nproc)" --target bench-programs >"$BUILD/bench-tls-build.log" 2>&1 ||
        { say "bench: build failed, see $BUILD/bench-tls-build.log"; exit 1; }
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

(
    cd "$TMP"
    ec() { openssl req "$@" -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes 2>/dev/null; }
    ec -x509 -keyout ca.key -out ca.crt -days 2 -subj "/CN=bench CA"
    ec -keyout srv.key -out srv.csr -subj "/CN=localhost"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext
    openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile san.ext -out srv.crt 2>/dev/null
) || { say "bench: openssl could not make the certificates"; exit 1; }

start() { # name program args...: sets <name>_PID and <name>_ADDR
    local name=$1
    shift
    "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PIDS+=($!)
    eval "${name}_PID=$!"
    for _ in $(seq 1 100); do
        grep -q "listening on" "$TMP/$name.out" && break
        sleep 0.05
    done
    eval "${name}_ADDR=$(sed -n 's/^listening on //p' "$TMP/$name.out")"
}
start_server() { # name args...
    local name=$1
    shift
    start "$name" "$BIN/calculator-server" --listen 127.0.0.1:0 "$@"
}
start_server plain
start_server tls --tls-cert "$TMP/srv.crt" --tls-key "$TMP/srv.key"
start fplain "$BIN/tether-bench-tls-floor" server --listen 127.0.0.1:0
start ftls "$BIN/tether-bench-tls-floor" server --listen 127.0.0.1:0 \
    --cert "$TMP/srv.crt" --key "$TMP/srv.key"
# shellcheck disable=SC2154
if [ -z "$plain_ADDR" ] || [ -z "$tls_ADDR" ] || [ -z "$fplain_ADDR" ] || [ -z "$ftls_ADDR" ]; then
    say "bench: a server did not start"
    cat "$TMP"/*.err >&2
    exit 1
fi

# record KEY VALUE: one sample.
record() { echo "$2" >>"$TMP/s.$1"; }
result() { # key=... from a RESULT line
    sed -n "s/.*RESULT.* $1=\([0-9.]*\).*/\1/p; s/^RESULT $1=\([0-9.]*\).*/\1/p" | head -1
}
client() { # kind args...
    local kind=$1
    shift
    local addr tls=()
    if [ "$kind" = tls ]; then
        addr=$tls_ADDR
        tls=(--tls-ca "$TMP/ca.crt")
    else
        addr=$plain_ADDR
    fi
    timeout 120 "$BIN/tether-bench-client" --addr "$addr" "$@" "${tls[@]}" 2>>"$TMP/client.err"
}
floor_client() { # kind
    local addr=$fplain_ADDR tls=()
    if [ "$1" = tls ]; then
        addr=$ftls_ADDR
        tls=(--tls-ca "$TMP/ca.crt")
    fi
    timeout 120 "$BIN/tether-bench-tls-floor" client --addr "$addr" "${tls[@]}" \
        --calls "$SEQ_CALLS" --warmup 2000 2>>"$TMP/client.err"
}
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }

say "measuring $RUNS runs, plaintext and TLS in turn"
for run in $(seq 1 "$RUNS"); do
    for kind in plain tls; do
        record "seq.$kind" "$(client $kind --mode seq --calls "$SEQ_CALLS" --warmup 2000 | result p50_us)"
        record "floor.$kind" "$(floor_client $kind | result p50_us)"
        record "pipe.$kind" "$(client $kind --mode pipe --conns 1 --depth 64 \
            --seconds "$PIPE_SECONDS" --warmup-ms 500 | result calls_per_s)"
        record "conn.$kind" "$(client $kind --mode connect --seconds "$CONNECT_SECONDS" |
            result conns_per_s)"
    done
    say "  run $run done"
done

say "measuring the RSS of $IDLE_CONNS idle connections (3 runs each, a fresh server each)"
# A fresh server per sample: one that served before has freed memory to
# reuse, and its growth would understate what a connection costs.
for run in 1 2 3; do
    for kind in plain tls; do
        tlsarg=() srvarg=()
        if [ "$kind" = tls ]; then
            tlsarg=(--tls-ca "$TMP/ca.crt")
            srvarg=(--tls-cert "$TMP/srv.crt" --tls-key "$TMP/srv.key")
        fi
        start_server mem --threads 1 "${srvarg[@]}"
        # shellcheck disable=SC2154
        pid=$mem_PID addr=$mem_ADDR
        r0=$(rss_kb "$pid")
        "$BIN/tether-bench-conns" --addr "$addr" --count "$IDLE_CONNS" "${tlsarg[@]}" \
            >"$TMP/holder.out" 2>>"$TMP/client.err" &
        h=$!
        for _ in $(seq 1 600); do
            grep -q RESULT "$TMP/holder.out" 2>/dev/null && break
            kill -0 $h 2>/dev/null || break
            sleep 0.1
        done
        sleep 0.5 # the server takes the last connections in
        r1=$(rss_kb "$pid")
        if grep -q RESULT "$TMP/holder.out"; then
            record "rss.$kind" "$(awk -v a="$r0" -v b="$r1" -v n="$IDLE_CONNS" \
                'BEGIN { printf "%.1f", (b - a) / n }')"
        fi
        kill $h "$pid" 2>/dev/null
        wait $h "$pid" 2>/dev/null
    done
done

stat() { # key -> "median (min-max)" or "-"
    local f=$TMP/s.$1
    if [ ! -s "$f" ] || ! grep -q '[0-9]' "$f"; then
        echo "-"
        return
    fi
    grep '[0-9]' "$f" | sort -g | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        f = (v[NR] >= 1000) ? "%.0f (%.0f-%.0f)" : "%.3g (%.3g-%.3g)"
        printf f, m, v[1], v[NR] }'
}
median() {
    grep '[0-9]' "$TMP/s.$1" 2>/dev/null | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
tls_vs_plain() { # key awk-expression-of-a-and-b -> it, from the TLS (a) and plaintext (b) medians
    local a b
    a=$(median "$1.tls")
    b=$(median "$1.plain")
    if [ -n "$a" ] && [ -n "$b" ]; then
        awk -v a="$a" -v b="$b" "BEGIN { $2 }"
    else
        echo "-"
    fi
}
ratio() { tls_vs_plain "$1" 'if (b > 0) printf "%.2f", a / b; else print "-"'; }
added() { tls_vs_plain "$1" 'printf "%.1f", a - b'; }
row() { printf '%-30s %-26s %-26s %-7s %s\n' "$@"; }
echo
echo "TLS vs plaintext, $(nproc) cores, $RUNS runs (median (min-max)); TLS 1.3, ECDSA P-256"
row "figure" "plaintext" "TLS" "TLS/pl" "goal"
row "sequential p50 (us)" "$(stat seq.plain)" "$(stat seq.tls)" "$(ratio seq)" "<= 1.3"
row "floor sequential p50 (us)" "$(stat floor.plain)" "$(stat floor.tls)" "$(ratio floor)" ""
row "1 conn x 64 (calls/s)" "$(stat pipe.plain)" "$(stat pipe.tls)" "$(ratio pipe)" ">= 0.5"
row "new connections/s" "$(stat conn.plain)" "$(stat conn.tls)" "$(ratio conn)" ""
row "RSS per idle conn (KB)" "$(stat rss.plain)" "$(stat rss.tls)" "" "TLS <= 48 KB"
echo
echo "TLS adds to a sequential call: $(added seq) us through tether, $(added floor) us with OpenSSL alone"
if [ -s "$TMP/client.err" ]; then
    echo
    echo "client errors:"
    sort "$TMP/client.err" | uniq -c | head -20
fi
