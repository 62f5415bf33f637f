#!/usr/bin/env bash
# test.sh - install what is missing, build, and run every test twice:
# a normal -Werror build and an ASan+UBSan build.  Exit non-zero on any
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

JOBS=$(nproc)
run_suite() {
    local dir=$1
    shift
    cmake -S . -B "$dir" -DTETHER_WERROR=ON "$@" >/dev/null
    cmake --build "$dir" -j "$JOBS"
    (cd "$dir" && ctest --output-on-failure -j "$JOBS" --timeout 300)
}

echo "== build and test (release, -Werror)"
run_suite build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTETHER_FUZZ=ON -DCMAKE_C_COMPILER=clang

echo "== build and test (ASan+UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DTETHER_SANITIZE=ON -DCMAKE_C_COMPILER=clang
echo "== all tests passed"
