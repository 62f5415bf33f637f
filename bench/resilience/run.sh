#!/usr/bin/env bash
# bench/resilience/run.sh - how fast a crashed server leaves etcd: SIGKILL
# of a registered calculator-server -> a watcher sees the DELETE (the crash
# guardian's revoke, docs/etcd.md), and the same with guardian=0 for
# comparison (once: that one is the TTL).  Starts its own etcd on 127.0.0.1
# (free ports, temporary data directory) and stops it by PID.  Prints
# figures; never fails on them.
#
# Environment: BUILD_DIR (default build), RUNS (20), TTL (10).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build}
# A relative BUILD_DIR is taken from where the script was started.
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
for t in etcd etcdctl python3; do
    command -v "$t" >/dev/null || { echo "bench/resilience: $t is missing (scripts/setup.sh)" >&2; exit 1; }
done
[ -x "$BUILD/bin/calculator-server" ] ||
    { echo "bench/resilience: build first (cmake --build $BUILD)" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tt-resilience-XXXXXX")
EPID=""
cleanup() {
    [ -n "$EPID" ] && kill -TERM "$EPID" 2>/dev/null && wait "$EPID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
CPORT=$(port)
PPORT=$(port)
etcd --name r1 --data-dir "$TMP/data" \
    --listen-client-urls "http://127.0.0.1:$CPORT" --advertise-client-urls "http://127.0.0.1:$CPORT" \
    --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
    --initial-cluster "r1=http://127.0.0.1:$PPORT" --log-level error >"$TMP/etcd.log" 2>&1 &
EPID=$!
for _ in $(seq 1 300); do
    ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$CPORT" endpoint health >/dev/null 2>&1 && break
    sleep 0.1
done
echo "# etcd $(etcd --version | sed -n 's/^etcd Version: //p') on 127.0.0.1:$CPORT, $(nproc) cores"
python3 "$ROOT/bench/resilience/crash.py" "$BUILD/bin" "$CPORT"
