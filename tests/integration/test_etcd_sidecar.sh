#!/usr/bin/env bash
# test_etcd_sidecar.sh - `tether register` against a real etcd, running
# python3 -m http.server (a program that knows nothing of tether):
#   - the key appears once the HTTP check passes and `tether list` reads
#     it, with the --meta pairs;
#   - the library keeps the lease alive past its TTL;
#   - SIGSTOP: the key goes after the failed checks, SIGCONT: it is back;
#   - SIGTERM: the key is gone when the sidecar exits (143: python died of
#     the forwarded SIGTERM);
#   - kill -9 of python: the key goes at once (deleted, not left to the
#     lease) and the sidecar exits 137.
source "$(dirname "$0")/etcd_lib.sh"

TTL=3
etcd_single e1 "$TMP/data"
URL="etcd://127.0.0.1:$CPORT?ttl=$TTL"
PFX=/services/web/
mkdir -p "$TMP/www"

# web_start PORT LOG - the sidecar around python's http.server; PID in SC.
web_start() {
    "$BIN/tether" register --registry "$URL" --name web --addr "127.0.0.1:$1" \
        --health http:/ --health-interval 200ms --health-timeout 2s --health-fails 2 --meta zone=c -- \
        python3 -m http.server "$1" --bind 127.0.0.1 --directory "$TMP/www" \
        >>"$TMP/$2.log" 2>&1 &
    SC=$!
    PIDS+=("$SC")
}

listed_web() {
    "$BIN/tether" list web --registry "$URL" 2>>"$TMP/list.log" | grep -q "^127.0.0.1:$1 serving"
}

P=$(free_port)
web_start "$P" sidecar1
wait_until 60 "the key in etcd" key_present "$CPORT" "${PFX}127.0.0.1:$P"
grep -q "GET / " "$TMP/sidecar1.log" || fail "key written before a GET / reached the server"
"$BIN/tether" list web --registry "$URL" | grep -q "^127.0.0.1:$P serving weight=1 zone=c" ||
    fail "tether list: $("$BIN/tether" list web --registry "$URL")"
note "key written after the HTTP check passed, listed with its metadata"

sleep $((TTL + 2))
key_present "$CPORT" "${PFX}127.0.0.1:$P" || fail "the key expired: no keep-alive"
note "key alive after $((TTL + 2))s with a ${TTL}s lease"

PY=$(pgrep -P "$SC" -f http.server | head -n 1) && [ -n "$PY" ] || fail "no child of the sidecar"
PIDS+=("$PY")
kill -STOP "$PY"
wait_until 60 "the key to go while python is stopped" key_absent "$CPORT" "$PFX"
alive "$SC" || fail "the sidecar exited while its server was stopped"
kill -CONT "$PY"
wait_until 60 "the key back after SIGCONT" key_present "$CPORT" "${PFX}127.0.0.1:$P"
note "SIGSTOP: key removed after failed checks; SIGCONT: written again"

kill -TERM "$SC"
wait "$SC"
rc=$?
[ $rc -eq 143 ] || fail "the sidecar exited with $rc after SIGTERM, not 143"
key_absent "$CPORT" "$PFX" || fail "key still there after the sidecar exited"
note "SIGTERM: key gone on exit, exit 143"

P=$(free_port)
web_start "$P" sidecar2
wait_until 60 "the second key in etcd" key_present "$CPORT" "${PFX}127.0.0.1:$P"
PY=$(pgrep -P "$SC" -f http.server | head -n 1) && [ -n "$PY" ] || fail "no child of the second sidecar"
PIDS+=("$PY")
t0=$(now_ms)
kill -KILL "$PY"
wait "$SC"
rc=$?
[ $rc -eq 137 ] || fail "after kill -9 of python the sidecar exited with $rc, not 137"
key_absent "$CPORT" "$PFX" || fail "key still there after python was killed"
dt=$(($(now_ms) - t0))
note "kill -9 of python: key deleted and exit 137 within ${dt} ms (lease TTL ${TTL}s)"
echo "ok"
