#!/usr/bin/env bash
# test_install.sh - `cmake --install` into a temporary prefix gives what an
# application needs, from any prefix:
#   - the library (shared and static), the public headers only, tether.pc,
#     and the CMake package (tetherConfig.cmake, the protoc-c rule); the
#     example programs are not installed by default;
#   - an outside CMake project finds it with find_package(tether CONFIG),
#     generates code with tether_protobuf_c() and links tether::tether and
#     tether::tether_static (install_project/);
#   - bin/tether runs from the prefix, and from a copy of it elsewhere,
#     without LD_LIBRARY_PATH (RUNPATH $ORIGIN/../lib);
#   - `pkg-config --cflags --libs tether` links a program against the
#     shared library, and `pkg-config --static` a static one.
# The .deb packages are tested by test_install_deb.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=install_lib.sh
. "$here/install_lib.sh"
BUILD=$(cd "${TETHER_BIN_DIR:?}/.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PREFIX=$TMP/prefix
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
LIBDIR=$(dirname "$(find "$PREFIX" -name 'libtether.so' | head -1)")
LIBREL=${LIBDIR#"$PREFIX"/}
for f in include/tether/tether.h include/tether/server.h include/tether/client.h \
    include/tether/service.h include/tether/registry.h bin/tether; do
    [ -f "$PREFIX/$f" ] || fail "missing $f"
done
for f in libtether.a pkgconfig/tether.pc cmake/tether/tetherConfig.cmake \
    cmake/tether/tetherConfigVersion.cmake cmake/tether/tetherTargets.cmake \
    cmake/tether/TetherProtobufC.cmake; do
    [ -f "$LIBDIR/$f" ] || fail "missing $f in the library directory"
done
if find "$PREFIX" -path '*include*' -name '*.h' | grep -v '/tether/' | grep -q .; then
    fail "private headers installed"
fi
if grep -q '^TETHER_INSTALL_EXAMPLES:BOOL=OFF' "$BUILD/CMakeCache.txt"; then
    for f in calculator-server calculator-client; do
        [ ! -e "$PREFIX/bin/$f" ] || fail "$f installed without TETHER_INSTALL_EXAMPLES"
    done
fi

# find_package(tether CONFIG) from an outside project.
build_outside "$PREFIX" "$TMP/outside"
echo "find_package: ok (shared and static targets, protoc-c rule)"

# The installed tool runs from its prefix and from a moved copy of it.
cp -a "$PREFIX" "$TMP/moved"
for p in "$PREFIX" "$TMP/moved"; do
    env -u LD_LIBRARY_PATH "$p/bin/tether" --help >"$TMP/help" 2>&1 ||
        { cat "$TMP/help" >&2; fail "$p/bin/tether --help exited with an error"; }
    grep -q '^usage: tether' "$TMP/help" || fail "$p/bin/tether --help printed no usage"
done
# The copy must use its own library, not the original prefix's.
rm -rf "$PREFIX"
env -u LD_LIBRARY_PATH "$TMP/moved/bin/tether" --help >/dev/null ||
    fail "a moved prefix's bin/tether does not run"
PREFIX=$TMP/moved
LIBDIR=$PREFIX/$LIBREL
echo "bin/tether: ok (runs from the prefix without LD_LIBRARY_PATH)"

# pkg-config, with the compiler (and sanitizer flags) of the library.
cat >"$TMP/t.c" <<'C'
#include <stdio.h>
#include <tether/client.h>
#include <tether/server.h>
int
main(void)
{
    tether_server *s;
    if (tether_server_create(NULL, &s) != TETHER_OK ||
        tether_server_listen(s, "127.0.0.1:0") != TETHER_OK) {
        return 1;
    }
    char addr[128];
    tether_server_get_address(s, 0, addr, sizeof addr);
    tether_server_destroy(s);
    printf("%s %s\n", tether_strerror(TETHER_ETIMEDOUT), addr);
    return 0;
}
C
export PKG_CONFIG_PATH="$LIBDIR/pkgconfig"
CC=${TETHER_CC:-cc}
check_out() { # program
    local out
    out=$("$@") || fail "$* exited with $?"
    case "$out" in
    "timed out 127.0.0.1:"*) ;;
    *) fail "$*: unexpected output: $out" ;;
    esac
}
# shellcheck disable=SC2046,SC2086
"$CC" ${TETHER_CC_FLAGS:-} -o "$TMP/t" "$TMP/t.c" $(pkg-config --cflags --libs tether)
check_out env LD_LIBRARY_PATH="$LIBDIR" "$TMP/t"
libs=$(pkg-config --static --libs tether)
if [ -z "${TETHER_CC_FLAGS:-}" ]; then
    # A fully static program: every library libtether.a needs must be in
    # tether.pc (glibc warns about getaddrinfo and dlopen in static
    # programs; the log shows them on failure only).
    # shellcheck disable=SC2046,SC2086
    "$CC" -static -o "$TMP/ts" "$TMP/t.c" $(pkg-config --static --cflags tether) $libs \
        >"$TMP/static.log" 2>&1 || { cat "$TMP/static.log" >&2; fail "static link"; }
    file "$TMP/ts" | grep -q 'statically linked' || fail "t is not statically linked"
    how="fully static"
else
    # The sanitizers cannot link -static: take libtether.a (-l:libtether.a)
    # and the rest of the --static list as they are.
    # shellcheck disable=SC2046,SC2086
    "$CC" $TETHER_CC_FLAGS -o "$TMP/ts" "$TMP/t.c" $(pkg-config --static --cflags tether) \
        ${libs/-ltether/-l:libtether.a} >"$TMP/static.log" 2>&1 ||
        { cat "$TMP/static.log" >&2; fail "link with libtether.a"; }
    how="libtether.a, sanitized"
fi
if readelf -d "$TMP/ts" | grep -q 'NEEDED.*libtether'; then
    fail "the static program needs libtether.so"
fi
check_out env -u LD_LIBRARY_PATH "$TMP/ts"
echo "pkg-config: ok (shared; --static: $how)"
echo "install: ok"
