#!/usr/bin/env bash
# fuzz.sh - run every libFuzzer target for a set time each (the test run
# gives each a bounded number of runs only).  Builds the fuzzers with clang
# into build-fuzz/, fuzzes each from a scratch copy of its seed corpus
# (tests/fuzz/corpus/<target>/, left as it is), and prints executions and
# findings per target.  Exit 1 if any target crashed, leaked, timed out or
# ran out of memory; its reproducer is in build-fuzz/findings/.
#
#   ./scripts/fuzz.sh                 # every target, FUZZ_SECONDS (60) each
#   FUZZ_SECONDS=600 ./scripts/fuzz.sh fuzz_gob fuzz_registry
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
SECONDS_EACH=${FUZZ_SECONDS:-60}
B=build-fuzz
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTETHER_FUZZ=ON \
    -DCMAKE_C_COMPILER=clang >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do
        targets+=("$(basename "$f" .c)")
    done
fi
cmake --build "$B" -j "$(nproc)" --target "${targets[@]}"
mkdir -p "$B/findings"
status=0
printf '%-16s %12s %10s  %s\n' target executions exec/s result
for t in "${targets[@]}"; do
    work="$B/fuzz-work/$t"
    rm -rf "$work"
    mkdir -p "$work"
    cp -r "tests/fuzz/corpus/$t/." "$work/" 2>/dev/null || true
    log="$B/findings/$t.log"
    rc=0
    "$B/bin/$t" -max_total_time="$SECONDS_EACH" -max_len=4096 -rss_limit_mb=1024 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="$B/findings/$t-" "$work" \
        >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        result=ok
    else
        result="FOUND (exit $rc): see $log"
        status=1
    fi
    printf '%-16s %12s %10s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$result"
done
exit $status
