#!/usr/bin/env bash
# test.sh - install what is missing, build, and run every test twice:
# a normal -Werror build (clang, with the fuzz targets) in build-test/ and
# an ASan+UBSan build in build-asan/.  Exit non-zero on any failure.
# Its trees are its own: build/ belongs to demo.sh and the benchmarks,
# so the two commands run in either order, each with its own options
# (a compiler change on a shared cache would make CMake drop the rest).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

JOBS=$(nproc)
run_suite() {
    local dir=$1
    shift
    cmake -S . -B "$dir" -DTETHER_WERROR=ON "$@" >/dev/null
    # Every option must have reached the cache (CMake drops them all when
    # a configured tree is given another compiler).
    local opt
    for opt in -DTETHER_WERROR=ON "$@"; do
        case $opt in
        -DCMAKE_C_COMPILER=*) ;;
        -D*=*)
            opt=${opt#-D}
            grep -q "^${opt%%=*}:[A-Z]*=${opt#*=}\$" "$dir/CMakeCache.txt" || {
                echo "test.sh: $dir/CMakeCache.txt lost -D$opt (remove $dir and rerun)" >&2
                exit 1
            }
            ;;
        esac
    done
    cmake --build "$dir" -j "$JOBS"
    (cd "$dir" && ctest --output-on-failure -j "$JOBS" --timeout 300)
}

echo "== build and test (release, -Werror)"
run_suite build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTETHER_FUZZ=ON -DCMAKE_C_COMPILER=clang

echo "== build and test (ASan+UBSan)"
# A sanitizer report exits with 86, a code no program here uses, so a test
# that expects a failure (exit 1 and a message) cannot mistake one for it.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=86 \
    run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DTETHER_SANITIZE=ON -DCMAKE_C_COMPILER=clang
echo "== all tests passed"
