#!/usr/bin/env bash
# test_etcd_watchdog.sh - the serving watchdog against a real etcd: the
# registry cases of test_watchdog.c run again with an etcd:// registry.
# A handler blocking the I/O thread takes the instance's key out of etcd
# within stall_ms and a little (the lease stays: etcdctl lease list), a
# watcher sees the DELETE and the PUT when it comes back, and
# _tether.Health.Check answers on every codec.
source "$(dirname "$0")/etcd_lib.sh"

[ -x "$BIN/it_test_watchdog" ] || fail "$BIN/it_test_watchdog is missing (build first)"
etcd_single e1 "$TMP/data"
TETHER_TEST_ETCD_PORT=$CPORT "$BIN/it_test_watchdog" || fail "test_watchdog against etcd"
note "watchdog against etcd: ok"
