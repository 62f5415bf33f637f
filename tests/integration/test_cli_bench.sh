#!/usr/bin/env bash
# The tether tool's bench command against a real calculator server (by
# address in every codec, and by name), and its error reports: a service
# with no instance fails at once (or waits when asked), a registry error
# names its reason, and no message shows a password.
set -euo pipefail

BIN=${TETHER_BIN_DIR:?}
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
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
now_ms() { date +%s%3N; }

REG="local:$TMP/reg"
wait_line() { # file pattern
    for _ in $(seq 1 200); do
        if grep -q "$2" "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    cat "$1" >&2
    fail "no '$2' in $1"
}

"$BIN/calculator-server" --listen 127.0.0.1:0 --registry "$REG" >"$TMP/srv.out" 2>"$TMP/srv.err" &
PIDS+=($!)
wait_line "$TMP/srv.out" "listening on"
ADDR=$(sed -n 's/^listening on //p' "$TMP/srv.out")
for _ in $(seq 1 200); do
    "$BIN/tether" list calculator --registry "$REG" | grep -q serving && break
    sleep 0.05
done

# check_report FILE - the summary has a nonzero call count, no errors,
# the four quantiles and a histogram with rows.
check_report() {
    local f=$1
    grep -Eq '^calls: +[1-9][0-9]* ok, [0-9]+ calls/s$' "$f" || fail "no call count in: $(cat "$f")"
    grep -Eq '^errors: +0$' "$f" || fail "errors in: $(cat "$f")"
    for q in p50 p90 p99 p99.9; do
        grep -Eq "^  $q +[0-9]+\.[0-9]{3} ms$" "$f" || fail "no $q in: $(cat "$f")"
    done
    grep -q '^histogram:$' "$f" || fail "no histogram in: $(cat "$f")"
    [ "$(grep -Ec '^ +[0-9]+\.[0-9]{3} ms \[ *[0-9]+\] \|' "$f")" -ge 1 ] ||
        fail "no histogram rows in: $(cat "$f")"
}

echo "== bench by address, every codec"
for codec in native gob jsonrpc; do
    "$BIN/tether" bench "$ADDR" Calculator.Add '{"A":1,"B":2}' -c 8 --conns 2 -d 1s \
        --codec $codec >"$TMP/b.out" 2>"$TMP/b.err" || fail "bench $codec: $(cat "$TMP/b.err")"
    check_report "$TMP/b.out"
    grep -q "^target: .*($codec, 8 calls in flight over 2 connections)" "$TMP/b.out" ||
        fail "bench $codec: no target line in: $(cat "$TMP/b.out")"
    echo "ok: $codec: $(grep '^calls:' "$TMP/b.out")"
done
# The progress line comes once a second on stderr (how many fit in the
# run depends on how busy the machine is: at least one).
"$BIN/tether" bench "$ADDR" Calculator.Add '{"A":1,"B":2}' -d 3s >"$TMP/b.out" 2>"$TMP/b.err"
check_report "$TMP/b.out"
grep -Eq '^ +[0-9]+\.[0-9]s +[0-9]+ calls/s +[0-9]+ calls +0 errors$' "$TMP/b.err" ||
    fail "no progress line in: $(cat "$TMP/b.err")"
echo "ok: progress lines"

echo "== bench by name"
"$BIN/tether" bench calculator Calculator.Add '{"A":1,"B":2}' --registry "$REG" -d 1s \
    >"$TMP/b.out" 2>"$TMP/b.err" || fail "bench by name: $(cat "$TMP/b.err")"
check_report "$TMP/b.out"

echo "== bench errors are counted by code"
if "$BIN/tether" bench "$ADDR" Calculator.Div '{"A":1,"B":0}' -d 1s >"$TMP/b.out" 2>"$TMP/b.err"; then
    fail "a bench where every call fails exits 0"
fi
grep -Eq '^errors: +[1-9]' "$TMP/b.out" || fail "no error count in: $(cat "$TMP/b.out")"
grep -Eq '^  TETHER_EREMOTE +[1-9][0-9]* \(.*divide by zero' "$TMP/b.out" ||
    fail "no EREMOTE line in: $(cat "$TMP/b.out")"
if "$BIN/tether" bench "$ADDR" Calculator.Add '{"A":"x"}' -d 300ms >"$TMP/b.out" 2>"$TMP/b.err"; then
    fail "bench with a bad request exits 0"
fi
grep -q "cannot unmarshal" "$TMP/b.err" || fail "bad request: $(cat "$TMP/b.err")"
for bad in "-c 0" "-d 10x" "--conns abc" "--codec nope"; do
    # shellcheck disable=SC2086
    if "$BIN/tether" bench "$ADDR" Calculator.Add '{}' $bad 2>"$TMP/b.err"; then
        fail "bench $bad exits 0"
    fi
    [ -s "$TMP/b.err" ] || fail "bench $bad: no message"
done
echo "ok: errors"

echo "== no instance fails at once"
for cmd in call bench; do
    t0=$(now_ms)
    st=0
    "$BIN/tether" $cmd nosuch Calculator.Add '{}' --registry "$REG" >"$TMP/o" 2>"$TMP/e" || st=$?
    t1=$(now_ms)
    [ "$st" = 1 ] || fail "$cmd to no instance: exit $st, $(cat "$TMP/e")"
    grep -qF "tether $cmd: no instance of 'nosuch' in $REG ('tether list nosuch --registry $REG' shows none" "$TMP/e" ||
        fail "$cmd to no instance: $(cat "$TMP/e")"
    [ $((t1 - t0)) -lt 5000 ] || fail "$cmd to no instance took $((t1 - t0)) ms"
    echo "ok: $cmd: $(cat "$TMP/e") ($((t1 - t0)) ms)"
done
# The default registry shows its directory.
mkdir -m 700 "$TMP/xdg"
st=0
XDG_RUNTIME_DIR=$TMP/xdg TETHER_REGISTRY='' "$BIN/tether" call nosuch Calculator.Add '{}' 2>"$TMP/e" || st=$?
[ "$st" = 1 ] || fail "call on local: exit $st"
grep -qF "no instance of 'nosuch' in local:$TMP/xdg/tether ('tether list nosuch' shows none" "$TMP/e" ||
    fail "call on local: $(cat "$TMP/e")"
# --wait waits that long, then fails the same way.
t0=$(now_ms)
st=0
"$BIN/tether" call nosuch Calculator.Add '{}' --registry "$REG" --wait 400ms 2>"$TMP/e" || st=$?
t1=$(now_ms)
[ "$st" = 1 ] || fail "--wait: exit $st"
grep -q "after waiting 0.4 s" "$TMP/e" || fail "--wait: $(cat "$TMP/e")"
[ $((t1 - t0)) -ge 400 ] || fail "--wait 400ms returned after $((t1 - t0)) ms"
# ... and succeeds when an instance comes within it.
"$BIN/tether" call late Calculator.Add '{"A":2,"B":3}' --registry "$REG" --wait 60s \
    >"$TMP/late.out" 2>"$TMP/late.err" &
CALL=$!
PIDS+=($CALL)
sleep 0.3
"$BIN/calculator-server" --listen 127.0.0.1:0 --registry "$REG" --name late >/dev/null 2>&1 &
PIDS+=($!)
wait $CALL || fail "--wait with a late instance: $(cat "$TMP/late.err")"
[ "$(cat "$TMP/late.out")" = 5 ] || fail "--wait with a late instance: $(cat "$TMP/late.out")"
echo "ok: --wait"

echo "== registry errors carry their reason, never a password"
# Nothing listens on port 1 of the loopback.
URL='etcd://127.0.0.1:1?user=u&password=hunter2'
# (watch keeps retrying through an outage by design, so it is not here.)
for cmd in "list x" "call x Calculator.Add {}" "bench x Calculator.Add {}"; do
    st=0
    # shellcheck disable=SC2086
    timeout 60 "$BIN/tether" $cmd --registry "$URL" >"$TMP/o" 2>"$TMP/e" || st=$?
    [ "$st" = 1 ] || fail "tether $cmd on a dead etcd: exit $st, $(cat "$TMP/e")"
    if grep -q hunter2 "$TMP/e"; then
        fail "tether $cmd shows the password: $(cat "$TMP/e")"
    fi
    if ! grep -q "no etcd backend" "$TMP/e"; then
        grep -q "registry error: etcd at http://127.0.0.1:1: .*connection refused" "$TMP/e" ||
            fail "tether $cmd on a dead etcd: $(cat "$TMP/e")"
        grep -qF 'password=***' "$TMP/e" || fail "tether $cmd: no redacted URL in $(cat "$TMP/e")"
    fi
    echo "ok: tether $cmd: $(head -c 300 "$TMP/e")"
done
st=0
"$BIN/tether" list x --registry 'etcd://root:hunter2@127.0.0.1:1' 2>"$TMP/e" || st=$?
[ "$st" = 1 ] || fail "user:password@ URL: exit $st"
! grep -q hunter2 "$TMP/e" || fail "user:password@ URL shows the password: $(cat "$TMP/e")"
touch "$TMP/file"
st=0
"$BIN/tether" list x --registry "local:$TMP/file/sub" 2>"$TMP/e" || st=$?
[ "$st" = 1 ] || fail "bad local dir: exit $st"
grep -q "cannot open registry 'local:$TMP/file/sub': registry error: cannot use directory $TMP/file/sub: " "$TMP/e" ||
    fail "bad local dir: $(cat "$TMP/e")"
# The example client logs the library's reasons too.
st=0
"$BIN/calculator-client" --registry "local:$TMP/file/sub" --service x add 1 2 2>"$TMP/e" || st=$?
[ "$st" = 1 ] || fail "calculator-client on a bad registry: exit $st"
grep -q "cannot use directory $TMP/file/sub" "$TMP/e" || fail "calculator-client: $(cat "$TMP/e")"
echo "ok: reasons"
echo "PASS"
