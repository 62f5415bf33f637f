# outlier_lib.sh - shared by test_outlier.sh and test_outlier_netns.sh
# (sourced, not run): three calculator-servers registered in a private
# local: registry, and tether-outlier-load (bench/resilience/outlier_load.c)
# calling them by name while a fault is injected.  Every process started
# here is killed by PID on exit (a stopped one is continued first).

BIN=${TETHER_BIN_DIR:?TETHER_BIN_DIR is not set (run the tests through ctest)}
for b in calculator-server tether-outlier-load; do
    [ -x "$BIN/$b" ] || {
        echo "FAIL: $BIN/$b is missing" >&2
        exit 1
    }
done
OL_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tether-outlier-XXXXXX")
OL_PIDS=()
ol_cleanup() {
    local p
    for p in "${OL_PIDS[@]}"; do
        kill -CONT "$p" 2>/dev/null
        kill -KILL "$p" 2>/dev/null
    done
    wait 2>/dev/null
    [ -n "${OL_KEEP:-}" ] || rm -rf "$OL_DIR"
}
trap ol_cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
note() {
    echo "# $*"
}

# ol_start I LISTEN - start server I (1..3) listening on LISTEN, registered
# as "outl" in the test registry; sets SRV_PID[I], SRV_ADDR[I].
declare -A SRV_PID SRV_ADDR
ol_start() {
    local i=$1 out=$OL_DIR/srv$1.out
    mkdir -p "$OL_DIR/reg"
    "$BIN/calculator-server" --listen "$2" --registry "local:$OL_DIR/reg" --name outl >"$out" 2>&1 &
    SRV_PID[$i]=$!
    OL_PIDS+=("$!")
    local end=$((SECONDS + 60))
    until grep -q '^listening on ' "$out"; do
        [ $SECONDS -lt $end ] || fail "server $i did not start: $(cat "$out")"
        kill -0 "${SRV_PID[$i]}" 2>/dev/null || fail "server $i exited: $(cat "$out")"
        sleep 0.05
    done
    SRV_ADDR[$i]=$(sed -n 's/^listening on //p' "$out" | head -1)
    # Registered right after it listens: wait for its entry.
    until [ "$(find "$OL_DIR/reg" -type f 2>/dev/null | grep -c .)" -ge "$i" ]; do
        [ $SECONDS -lt $end ] || fail "server $i did not register"
        sleep 0.05
    done
}

# ol_load NAME ARGS... - run the load; its report lines go to
# $OL_DIR/NAME.out (and the log to NAME.log).
ol_load() {
    local name=$1
    shift
    OUTLIER_LOG=1 timeout 120 "$BIN/tether-outlier-load" --registry "local:$OL_DIR/reg" \
        --name outl "$@" >"$OL_DIR/$name.out" 2>"$OL_DIR/$name.log" ||
        fail "load $name failed: $(tail -5 "$OL_DIR/$name.log")"
    ! grep -q 'runtime error:\|ERROR: [A-Za-z]*Sanitizer' "$OL_DIR/$name.log" "$OL_DIR"/srv*.out ||
        fail "a sanitizer report: $(grep -l 'runtime error:\|Sanitizer' "$OL_DIR/$name.log" "$OL_DIR"/srv*.out)"
    note "$name: $(tr '\n' ' ' <"$OL_DIR/$name.out")"
}

# ol_field NAME CLIENT KEY - a value of a report line.
ol_field() {
    grep "^client=$2 " "$OL_DIR/$1.out" | tr ' ' '\n' | sed -n "s/^$3=//p"
}

# ol_expect NAME CLIENT MAXFAILED - at most MAXFAILED failed calls, the
# instance ejected after the fault, and calls resumed on it after the heal
# (HEAL_AFTER ms after the fault) following a probe it answered.
ol_expect() {
    local name=$1 cl=$2 max=$3 failed ej rs calls
    calls=$(ol_field "$name" "$cl" calls)
    failed=$(ol_field "$name" "$cl" failed)
    ej=$(ol_field "$name" "$cl" ejected_ms)
    rs=$(ol_field "$name" "$cl" resumed_ms)
    [ -n "$calls" ] && [ "$calls" -gt 0 ] || fail "$name $cl: no calls made"
    [ "$failed" -le "$max" ] ||
        fail "$name $cl: $failed failed calls (at most $max): $(ol_field "$name" "$cl" errors)"
    [ "$ej" -ge 0 ] || fail "$name $cl: the faulty instance was never ejected"
    [ "$rs" -ge "$HEAL_AFTER" ] ||
        fail "$name $cl: the instance did not get calls again after the heal (resumed_ms=$rs)"
}
