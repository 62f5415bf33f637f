#!/usr/bin/env bash
# test_exports.sh - ABI meta-test (like jansson's check-exports and curl's
# test1477): libtether.so exports only tether_* symbols, exactly the
# functions the public headers declare with TETHER_API, and every error
# code of TETHER_ERRNO_MAP is documented.
set -euo pipefail

src=${TETHER_SOURCE_DIR:?TETHER_SOURCE_DIR is not set (run through ctest)}
bin=${TETHER_BIN_DIR:?TETHER_BIN_DIR is not set (run through ctest)}
lib=$bin/../src/libtether.so
fail=0

command -v nm >/dev/null || { echo "FAIL: nm (binutils) is required" >&2; exit 1; }
[ -f "$lib" ] || { echo "FAIL: $lib not found" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Defined dynamic symbols, names only (symbol versions stripped).
nm -D --defined-only "$lib" | awk 'NF >= 3 { sub(/@.*/, "", $3); print $3 }' | sort -u \
    >"$tmp/exports"
[ -s "$tmp/exports" ] || { echo "FAIL: $lib exports nothing" >&2; exit 1; }

bad=$(grep -v '^tether_' "$tmp/exports" || true)
if [ -n "$bad" ]; then
    echo "FAIL: exported symbols without the tether_ prefix:" >&2
    echo "$bad" | sed 's/^/  /' >&2
    fail=1
fi

# Functions the public headers declare: "TETHER_API <type> <name>(".
# Declarations may wrap, so join each header into one line (preprocessor
# lines, such as the definition of TETHER_API itself, left out).
for h in "$src"/include/tether/*.h; do
    # (a header may declare no function: include/tether/tls.h)
    { grep -v '^[[:space:]]*#' "$h" | tr '\n' ' ' | grep -o 'TETHER_API[^;(]*(' || true; } | sed -E 's/.*[ *]([A-Za-z_0-9]+)[ ]*\($/\1/'
done | sort -u >"$tmp/declared"

undeclared=$(comm -23 "$tmp/exports" "$tmp/declared")
if [ -n "$undeclared" ]; then
    echo "FAIL: exported but not declared TETHER_API in include/tether/:" >&2
    echo "$undeclared" | sed 's/^/  /' >&2
    fail=1
fi
missing=$(comm -13 "$tmp/exports" "$tmp/declared")
if [ -n "$missing" ]; then
    echo "FAIL: declared TETHER_API in include/tether/ but not exported by libtether.so:" >&2
    echo "$missing" | sed 's/^/  /' >&2
    fail=1
fi

# Error codes: the X(NAME, num, "text") entries of TETHER_ERRNO_MAP.
hdr=$src/include/tether/tether.h
sed -n '/#define TETHER_ERRNO_MAP/,/^$/p' "$hdr" \
    | grep -oE 'X\([A-Z0-9_]+, *[0-9]+, *"[^"]*"\)' >"$tmp/map" || true
[ -s "$tmp/map" ] || { echo "FAIL: no TETHER_ERRNO_MAP entries found in $hdr" >&2; exit 1; }
sed -E 's/X\(([A-Z0-9_]+),.*/TETHER_\1/' "$tmp/map" >"$tmp/names"
echo TETHER_ESYSERR >>"$tmp/names"

if grep -qE ', *""\)$' "$tmp/map"; then
    echo "FAIL: error codes with an empty description in TETHER_ERRNO_MAP:" >&2
    grep -E ', *""\)$' "$tmp/map" | sed 's/^/  /' >&2
    fail=1
fi

doc=$src/docs/errors.md
if [ -f "$doc" ]; then
    while read -r name; do
        if ! grep -qw -- "$name" "$doc"; then
            echo "FAIL: $name is not documented in docs/errors.md" >&2
            fail=1
        fi
    done <"$tmp/names"
    # And nothing documented that does not exist (the list's own macro
    # name aside).
    for name in $(grep -oE 'TETHER_E[A-Z0-9_]+' "$doc" | grep -vx TETHER_ERRNO_MAP | sort -u); do
        if ! grep -qx -- "$name" "$tmp/names"; then
            echo "FAIL: docs/errors.md documents $name, which TETHER_ERRNO_MAP lacks" >&2
            fail=1
        fi
    done
else
    # Until docs/errors.md exists, the header's own comments are the error
    # documentation: each code needs its text in the map (checked above)
    # and ESYSERR its comment.
    echo "NOTE: docs/errors.md not found; checked the error list in tether.h only"
    grep -q 'TETHER_ESYSERR' "$hdr" || { echo "FAIL: TETHER_ESYSERR undocumented" >&2; fail=1; }
fi

if [ "$fail" -ne 0 ]; then
    exit 1
fi
echo "ok: $(wc -l <"$tmp/exports") exports, $(wc -l <"$tmp/names") error codes"
