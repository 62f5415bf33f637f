#!/usr/bin/env bash
# test_layers.sh - the layers of src/ depend downwards only (STYLE.md 2.1):
#
#   core      nothing
#   net       core
#   codec     core                (no codec includes another: native, gob and
#                                  jsonrpc share only codec.h and pbjson/)
#   balance   core
#   registry  core                (local/ and etcd/ never include each other)
#   ops       core                (metrics, their HTTP listener, status page)
#   rpc       core net codec balance registry ops
#
# tools/ and examples/ use the public headers only.  Each line printed is an
# include that breaks a rule; any breaks the test.
set -euo pipefail
SRC=${TETHER_SOURCE_DIR:?}/src
allowed() { # layer -> the layers it may include
    case $1 in
    core) echo "core" ;;
    net) echo "core net" ;;
    codec) echo "core codec" ;;
    balance) echo "core balance" ;;
    registry) echo "core registry" ;;
    ops) echo "core ops" ;;
    rpc) echo "core net codec balance registry ops rpc" ;;
    *) echo "" ;;
    esac
}
bad=0
while IFS= read -r f; do
    rel=${f#"$SRC"/}
    layer=${rel%%/*}
    sub=$(echo "$rel" | cut -d/ -f2)
    ok=" $(allowed "$layer") "
    while IFS= read -r inc; do
        target=${inc%%/*}
        if [[ $ok != *" $target "* ]]; then
            echo "$rel includes $inc: $layer may not depend on $target"
            bad=1
            continue
        fi
        # Sideways inside a layer.
        tsub=$(echo "$inc" | cut -d/ -f2)
        if [ "$layer" = codec ] && [ "$target" = codec ] && [ -d "$SRC/codec/$sub" ] &&
            [ -d "$SRC/codec/$tsub" ] && [ "$tsub" != "$sub" ] && [ "$tsub" != pbjson ]; then
            echo "$rel includes $inc: codecs do not reach into each other"
            bad=1
        fi
        if [ "$layer" = registry ] && [ "$target" = registry ] && [ -d "$SRC/registry/$sub" ] &&
            [ -d "$SRC/registry/$tsub" ] && [ "$tsub" != "$sub" ]; then
            echo "$rel includes $inc: registry backends do not include each other"
            bad=1
        fi
    done < <(grep -oE '^#include "[a-z_]+/[a-z_/]+\.h"' "$f" | sed -E 's/#include "(.*)"/\1/' |
        grep -E '^(core|net|codec|balance|registry|ops|rpc)/' || true)
done < <(find "$SRC" -name '*.[ch]' | sort)
for d in tools examples; do
    if grep -rnE '#include "(core|net|codec|balance|registry|ops|rpc)/' "${TETHER_SOURCE_DIR}/$d" \
        --include='*.[ch]'; then
        echo "$d includes library internals"
        bad=1
    fi
done
if [ $bad -ne 0 ]; then
    echo "0 passed, 1 failed"
    exit 1
fi
echo "layer check: every include points down"
