# install_lib.sh - helpers shared by test_install.sh and test_install_deb.sh
# (sourced, not run).

# fail MESSAGE...: print and exit non-zero.
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# build_outside PREFIX DIR: configure and build install_project/ (an
# application outside tether's tree) in DIR against the tether installed
# under PREFIX, with the compiler and sanitizer flags the library was built
# with, then run both of its programs (shared and static tether) and check
# that the static one does not need libtether.so.
build_outside() {
    local prefix=$1 dir=$2 src exe out
    src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/install_project
    cmake -S "$src" -B "$dir" -DCMAKE_PREFIX_PATH="$prefix" \
        -DCMAKE_C_COMPILER="${TETHER_CC:-cc}" -DCMAKE_C_FLAGS="${TETHER_CC_FLAGS:-}" \
        >"$dir.log" 2>&1 || { cat "$dir.log" >&2; fail "outside project: configure"; }
    cmake --build "$dir" -j2 >>"$dir.log" 2>&1 || { cat "$dir.log" >&2; fail "outside project: build"; }
    for exe in twice_shared twice_static; do
        out=$(env -u LD_LIBRARY_PATH "$dir/$exe") || fail "$exe exited with $?"
        [ "$out" = "Twice.Of(21) = 42" ] || fail "$exe printed '$out'"
    done
    readelf -d "$dir/twice_shared" | grep -q 'NEEDED.*libtether\.so' ||
        fail "twice_shared does not link libtether.so"
    if readelf -d "$dir/twice_static" | grep -q 'NEEDED.*libtether\.so'; then
        fail "twice_static links libtether.so, not libtether.a"
    fi
}
