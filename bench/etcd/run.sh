#!/usr/bin/env bash
# bench/etcd/run.sh - the etcd registry's figures (see README.md): SIGTERM ->
# DELETE latency, registrations per second, and the background cost of
# keep-alive in a server.  Starts its own etcd on 127.0.0.1 (free ports,
# temporary data directory) and stops it by PID.  Prints figures; never
# fails on them.
#
# Environment: BUILD_DIR (default build, must hold a built tree), RUNS (15),
# REGS (500), IDLE_SECONDS (30), TTL (10).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build}
# A relative BUILD_DIR is taken from where the script was started.
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
for t in etcd etcdctl python3 cc; do
    command -v "$t" >/dev/null || { echo "bench/etcd: $t is missing (scripts/setup.sh)" >&2; exit 1; }
done
[ -x "$BUILD/bin/calculator-server" ] && [ -e "$BUILD/src/libtether.so" ] ||
    { echo "bench/etcd: build first (cmake --build $BUILD)" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tt-etcd-bench-XXXXXX")
EPID=""
cleanup() {
    [ -n "$EPID" ] && kill -TERM "$EPID" 2>/dev/null && wait "$EPID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -o "$TMP/regbench" "$ROOT/bench/etcd/regbench.c" -I"$ROOT/include" \
    -L"$BUILD/src" -ltether -Wl,-rpath,"$BUILD/src"

port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
CP=$(port)
PP=$(port)
etcd --name bench --data-dir "$TMP/data" --listen-client-urls "http://127.0.0.1:$CP" \
    --advertise-client-urls "http://127.0.0.1:$CP" --listen-peer-urls "http://127.0.0.1:$PP" \
    --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
    --initial-cluster "bench=http://127.0.0.1:$PP" --log-level error >"$TMP/etcd.log" 2>&1 &
EPID=$!
for _ in $(seq 300); do
    ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$CP" endpoint health >/dev/null 2>&1 && break
    sleep 0.1
done
echo "etcd $(etcd --version | head -n 1 | awk '{print $3}') on 127.0.0.1:$CP, $(nproc) cores"
python3 "$ROOT/bench/etcd/bench.py" "$BUILD/bin" "$TMP/regbench" "$CP"
