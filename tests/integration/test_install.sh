#!/usr/bin/env bash
# test_install.sh - `cmake --install` puts the library, the public headers,
# tether.pc and the protoc-c CMake helper under a prefix, and a program
# built with `pkg-config --cflags --libs tether` alone links and runs.
set -euo pipefail
BUILD=$(cd "${TETHER_BIN_DIR:?}/.." && pwd)
PREFIX=$(mktemp -d)
trap 'rm -rf "$PREFIX"' EXIT
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
LIBDIR=$(dirname "$(find "$PREFIX" -name 'libtether.so' | head -1)")
for f in include/tether/tether.h include/tether/server.h include/tether/client.h \
    include/tether/service.h include/tether/registry.h; do
    [ -f "$PREFIX/$f" ] || { echo "missing $f"; exit 1; }
done
[ -f "$LIBDIR/libtether.a" ] || { echo "missing static library"; exit 1; }
[ -f "$LIBDIR/pkgconfig/tether.pc" ] || { echo "missing tether.pc"; exit 1; }
[ -f "$LIBDIR/cmake/tether/TetherProtobufC.cmake" ] || { echo "missing cmake helper"; exit 1; }
if find "$PREFIX" -path '*include*' -name '*.h' | grep -v '/tether/' | grep -q .; then
    echo "private headers installed"; exit 1
fi
cat > "$PREFIX/t.c" <<'C'
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
    tether_server_address(s, 0, addr, sizeof addr);
    tether_server_destroy(s);
    printf("%s %s\n", tether_strerror(TETHER_ETIMEDOUT), addr);
    return 0;
}
C
export PKG_CONFIG_PATH="$LIBDIR/pkgconfig"
# shellcheck disable=SC2046
# The compiler (and sanitizer flags) the library was built with.
# shellcheck disable=SC2086
"${TETHER_CC:-cc}" ${TETHER_CC_FLAGS:-} -o "$PREFIX/t" "$PREFIX/t.c" $(pkg-config --cflags --libs tether)
out=$(LD_LIBRARY_PATH="$LIBDIR" "$PREFIX/t")
case "$out" in
"timed out 127.0.0.1:"*) echo "install: ok ($out)" ;;
*) echo "unexpected output: $out"; exit 1 ;;
esac
