#!/usr/bin/env bash
# test_install_deb.sh - `cpack -G DEB` makes libtether0, libtether-dev and
# tether-tools with the right Depends; unpacked with `dpkg -x` into a
# scratch root they give a working find_package(tether CONFIG) for an
# outside project, and a bin/tether that runs from there.
# Skipped (exit 77, ctest SKIP_RETURN_CODE) in sanitizer builds: packages
# are made from the normal build, and test_install.sh covers the install
# itself in both.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=install_lib.sh
. "$here/install_lib.sh"
if [ -n "${TETHER_SANITIZE:-}" ]; then
    echo "SKIP: no .deb packages from a sanitizer build"
    exit 77
fi
for t in cpack dpkg-deb dpkg-shlibdeps; do
    command -v "$t" >/dev/null || fail "$t is required (scripts/setup.sh installs it)"
done
BUILD=$(cd "${TETHER_BIN_DIR:?}/.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$TMP/pkg" >"$TMP/cpack.log" 2>&1 ||
    { cat "$TMP/cpack.log" >&2; fail "cpack -G DEB"; }
VERSION=$(sed -n 's/^CMAKE_PROJECT_VERSION:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
[ -n "$VERSION" ] || fail "no project version in CMakeCache.txt"

# deb PACKAGE: the one package file of that name.
deb() {
    local f
    f=$(find "$TMP/pkg" -maxdepth 1 -name "$1_*.deb")
    [ -n "$f" ] && [ "$(echo "$f" | wc -l)" -eq 1 ] || fail "no single $1 package in: $(ls "$TMP/pkg")"
    echo "$f"
}
# depends PACKAGE NAME...: its Depends field lists each package NAME
# (with or without a version); "libtether0=" stands for
# "libtether0 (= <this version>-<release>)".
depends() {
    local pkg=$1 d w re
    shift
    d=$(dpkg-deb -f "$(deb "$pkg")" Depends | sed 's/, */\n/g')
    for w in "$@"; do
        case $w in
        libtether0=) re="^libtether0 \\(= ${VERSION//./\\.}-[0-9]+\\)\$" ;;
        *) re="^${w//./\\.}( |\$)" ;;
        esac
        echo "$d" | grep -Eq "$re" || fail "$pkg Depends lacks $w: $(echo "$d" | paste -sd,)"
    done
}
depends libtether0 libc6 libprotobuf-c1 libjansson4
depends libtether-dev libtether0= libprotobuf-c-dev libjansson-dev protobuf-c-compiler pkg-config
depends tether-tools libtether0=
# (Listings are read whole before grep -q looks at them: grep stopping
# early would kill dpkg-deb with SIGPIPE, which pipefail reports.)
lib_depends=$(dpkg-deb -f "$(deb libtether0)" Depends)
if grep -q libcurl <<<"$lib_depends"; then
    fail "libtether0 depends on libcurl (it is loaded at run time only)"
fi
lib_files=$(dpkg-deb -c "$(deb libtether0)")
grep -q '/libtether\.so\.0\( \|$\)' <<<"$lib_files" || fail "libtether0 lacks libtether.so.0"
if grep -q '\.h$\|\.a$\|/libtether\.so\( \|$\)' <<<"$lib_files"; then
    fail "libtether0 holds development files"
fi
echo "packages: ok ($(cd "$TMP/pkg" && echo ./*.deb | sed 's|\./||g'))"

ROOT=$TMP/root
for p in libtether0 libtether-dev tether-tools; do
    dpkg -x "$(deb "$p")" "$ROOT"
done
build_outside "$ROOT/usr" "$TMP/outside"
env -u LD_LIBRARY_PATH "$ROOT/usr/bin/tether" --help >"$TMP/help" 2>&1 ||
    { cat "$TMP/help" >&2; fail "bin/tether from the packages does not run"; }
grep -q '^usage: tether' "$TMP/help" || fail "bin/tether --help printed no usage"
echo "install_deb: ok (find_package and bin/tether from the unpacked packages)"
