#!/usr/bin/env bash
# test_banned.sh - the library, tools and examples use none of the banned
# functions (STYLE.md 2.7): strcpy strcat sprintf strtok atoi gets strerror
# localtime signal.  Safer alternatives: snprintf, strtol, strtok_r is also
# banned (parse by hand), localtime_r/gmtime_r, sigaction.
set -euo pipefail
SRC=${TETHER_SOURCE_DIR:?}
pattern='\b(strcpy|strcat|sprintf|vsprintf|strtok|strtok_r|atoi|atol|gets|strerror|localtime|signal)[[:space:]]*\('
# Comments are not code: drop // and /* ... */ single-line comments first.
hits=$(grep -rnE --include='*.c' --include='*.h' "$pattern" \
    "$SRC/src" "$SRC/tools" "$SRC/examples" "$SRC/include" |
    grep -vE '^[^:]+:[0-9]+:[[:space:]]*(\*|/\*|//)' || true)
if [ -n "$hits" ]; then
    echo "banned functions used:"
    echo "$hits"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "banned-function check: clean"
