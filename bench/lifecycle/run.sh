#!/usr/bin/env bash
# bench/lifecycle/run.sh - how fast a server's departure is seen, and what a
# rolling restart costs a client.  One command; prints medians (min-max)
# of repeated runs.  See README.md.
#
#   bench/lifecycle/run.sh [REPS] [ROLLS]      defaults: 25 removals, 3 rolls
#
# Uses the build in $TETHER_BUILD_DIR (default: build/), building the
# library and calculator-server there if they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${1:-25}
ROLLS=${2:-3}
BUILD=${TETHER_BUILD_DIR:-build}
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
if [ ! -e "$BUILD/src/libtether.so" ] || [ ! -x "$BUILD/bin/calculator-server" ]; then
    cmake -S . -B "$BUILD" >/dev/null
    cmake --build "$BUILD" -j2 --target tether calculator-server >/dev/null
fi
OUT=$BUILD/bench-lifecycle
mkdir -p "$OUT"
cc -std=c11 -O2 -Wall -Wextra -Iinclude bench/lifecycle/lifebench.c -o "$OUT/lifebench" \
    -L"$BUILD/src" -Wl,-rpath,"$BUILD/src" -ltether -lpthread

# stats V... -> "median (min-max)" with one decimal
stats() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
              printf "%.1f (%.1f-%.1f)", m, v[1], v[NR] }'
}
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "tether lifecycle benchmark: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "== time from the signal to a watcher's \"removed\" (local: registry, $REPS runs each)"
"$OUT/lifebench" removal "$BUILD/bin" "$REPS" > "$OUT/removal.txt"
while read -r _ sig vals; do
    # shellcheck disable=SC2086
    set -- $vals
    med=$(median "$@")
    case $sig in
    SIGTERM) goal=1000 ;;
    *) goal=5000 ;;
    esac
    verdict=$(awk -v m="$med" -v g="$goal" 'BEGIN { print (m <= g) ? "met" : "MISSED" }')
    printf '%-8s -> removed: median %s us   goal <= %d us: %s\n' "$sig" "$(stats "$@")" \
        "$goal" "$verdict"
done < "$OUT/removal.txt"

# roll TITLE MODE: ROLLS rolling restarts; prints each run and the summary.
roll() {
    local title=$1 mode=$2 fails=() pb=() pd=() ratio=() line f b d
    echo
    echo "== $title (2 threads of sync calls, $ROLLS runs)"
    for _ in $(seq "$ROLLS"); do
        line=$("$OUT/lifebench" rolling "$BUILD/bin" 2 "$mode")
        echo "   $line"
        f=$(sed 's/.*failed=\([0-9]*\).*/\1/' <<<"$line")
        b=$(sed 's/.*p99_before_us=\([0-9]*\).*/\1/' <<<"$line")
        d=$(sed 's/.*p99_during_us=\([0-9]*\).*/\1/' <<<"$line")
        fails+=("$f")
        pb+=("$b")
        pd+=("$d")
        ratio+=("$(awk -v b="$b" -v d="$d" 'BEGIN { printf "%.2f", (b > 0) ? d / b : 0 }')")
    done
    local total_failed=0
    for f in "${fails[@]}"; do total_failed=$((total_failed + f)); done
    printf 'failed calls: %d in %d runs   goal 0: %s\n' "$total_failed" "$ROLLS" \
        "$([ "$total_failed" -eq 0 ] && echo met || echo MISSED)"
    printf 'p99 before:  %s us\n' "$(stats "${pb[@]}")"
    printf 'p99 during:  %s us\n' "$(stats "${pd[@]}")"
    local rmed
    rmed=$(median "${ratio[@]}")
    printf 'p99 during / before: %s   goal <= 3x: %s\n' "$(stats "${ratio[@]}")" \
        "$(awk -v r="$rmed" 'BEGIN { print (r <= 3) ? "met" : "MISSED" }')"
}

roll "rolling restart of 3 instances under load: start new, stop old, one by one" full
# The same restart with the new processes started before the window: what
# the stop itself costs the client, without process start-up competing for
# the same cores.
roll "stop phase only: new instances started first, then the old ones stopped" prestart
