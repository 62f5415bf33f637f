# interop_lib.sh - shared by the tests with Go peers (test_interop.sh,
# test_tls.sh; sourced, not run): build Go's peers from tests/interop/
# (Debian's golang-go, standard library only, GO111MODULE=off, the Go
# cache in the build tree so no network is needed) into this test's own
# temporary directory, so two such tests running at once never write the
# same binary; clean up every process started, by PID.

BIN=${TETHER_BIN_DIR:?}
SRC=${TETHER_SOURCE_DIR:?}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

GOCACHEDIR=$BIN/../interop-go
mkdir -p "$GOCACHEDIR/gopath"
export GO111MODULE=off GOPATH=$GOCACHEDIR/gopath GOCACHE=$GOCACHEDIR/cache GOFLAGS=
GODIR=$TMP/go
mkdir -p "$GODIR"
for p in goclient goserver; do
    (cd "$SRC/tests/interop/$p" && go build -o "$GODIR/$p" .)
done

# wait_line FILE PATTERN - until FILE has a line matching PATTERN (5 s).
wait_line() {
    for _ in $(seq 1 100); do
        if grep -q "$2" "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "FAIL: no '$2' in $1" >&2
    cat "$1" >&2
    exit 1
}
