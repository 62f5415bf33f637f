#!/usr/bin/env bash
# test_etcd_garbage.sh - malformed or unexpected answers from the registry
# endpoint give a clear error and never a crash or a hang.  The endpoint is
# a tiny HTTP server written here that answers every POST with one kind of
# garbage (it tests bad input, so it is not a stand-in for etcd):
#   text   200 with a body that is not JSON
#   types  200 with JSON of the wrong shapes and types
#   kvs    a well-formed range answer whose key-values are all broken
#   huge   200 with a 17 MiB body
#   close  the connection closed without an answer
#   hang   no answer at all
#   404    the plain-text "404 page not found" of a wrong path
# `tether list` must fail with a registry error (kvs: list nothing), a
# server must start, serve and stop promptly, and a watch must keep going.
source "$(dirname "$0")/etcd_lib.sh"

cat >"$TMP/fake.py" <<'EOF'
import socket, sys, time, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, mode = int(sys.argv[1]), sys.argv[2]
BAD_KVS = (b'{"header":{"revision":"5"},"kvs":[{"key":"!!!"},{"key":5},'
           b'{"key":"L3NlcnZpY2VzL2NhbGN1bGF0b3IveA==","value":"e30="},'
           b'{"key":"L3NlcnZpY2VzL2NhbGN1bGF0b3IveA==","value":"bm90IGFuIGFkZHJlc3M="},7],'
           b'"count":"5"}')
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def answer(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        if mode == "text":
            self.answer(200, b"<html>hello</html>")
        elif mode == "types":
            if self.path == "/v3/watch":
                self.answer(200, b'{"result":{"created":true,"events":{"kv":1}}}\n'
                                 b'{"result":{"events":[{"type":"BOGUS"},{"kv":{"key":7}}]}}\n'
                                 b'[1,2,3]\n{"result":\n')
            else:
                self.answer(200, b'{"header":"x","kvs":{"a":1},"ID":[1],"TTL":{},'
                                 b'"result":"no"}')
        elif mode == "kvs":
            self.answer(200, BAD_KVS)
        elif mode == "huge":
            self.answer(200, b"[" + b"1," * (17 * 512 * 1024) + b"1]")
        elif mode == "close":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        elif mode == "hang":
            time.sleep(3600)
        elif mode == "404":
            self.answer(404, b"404 page not found\n", "text/plain")
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF

fake_start() {
    FPORT=$(free_port)
    python3 "$TMP/fake.py" "$FPORT" "$1" >>"$TMP/fake.log" 2>&1 &
    FAKE=$!
    PIDS+=("$FAKE")
    wait_until 30 "the fake endpoint ($1)" accepting "$FPORT"
}
fake_stop() {
    kill -KILL "$FAKE"
    wait "$FAKE" 2>/dev/null
}

for mode in text types kvs huge close hang 404; do
    fake_start "$mode"
    URL="etcd://127.0.0.1:$FPORT?timeout_ms=300"
    t0=$(now_ms)
    "$BIN/tether" list calculator --registry "$URL" >"$TMP/list.out" 2>"$TMP/list.err"
    rc=$?
    dt=$(($(now_ms) - t0))
    if [ "$mode" = kvs ]; then
        [ $rc -eq 0 ] || fail "$mode: tether list exited $rc: $(cat "$TMP/list.err")"
        [ ! -s "$TMP/list.out" ] || fail "$mode: broken entries listed: $(cat "$TMP/list.out")"
        [ "$(grep -c skipping "$TMP/list.err")" -ge 4 ] || fail "$mode: skips not logged"
    else
        [ $rc -eq 1 ] || fail "$mode: tether list exited $rc (want 1): $(cat "$TMP/list.err")"
        grep -q "registry error" "$TMP/list.err" || fail "$mode: unclear error: $(cat "$TMP/list.err")"
    fi
    [ $dt -lt 10000 ] || fail "$mode: tether list took ${dt} ms"
    note "$mode: list -> exit $rc in ${dt} ms: $(grep -v '^$' "$TMP/list.err" | head -n 1)"
    fake_stop
done

# A server whose registry answers garbage (or nothing) still serves, and
# still stops promptly: deregistering is bounded by short timeouts.
for mode in types hang; do
    fake_start "$mode"
    P=$(free_port)
    server_start "g-$mode" "$P" "etcd://127.0.0.1:$FPORT?timeout_ms=300"
    wait_until 30 "the server ($mode) to accept" accepting "$P"
    call_ok "$P" || fail "$mode: the server does not serve"
    sleep 1
    alive "${SPID[g-$mode]}" || fail "$mode: the server died"
    t0=$(now_ms)
    kill -TERM "${SPID[g-$mode]}"
    wait "${SPID[g-$mode]}"
    rc=$?
    dt=$(($(now_ms) - t0))
    [ $rc -eq 0 ] || fail "$mode: server exited with $rc"
    [ $dt -lt 10000 ] || fail "$mode: the server took ${dt} ms to stop"
    note "$mode: server served, stopped in ${dt} ms"
    fake_stop
done

# A watch fed garbage keeps retrying, and stops cleanly.
fake_start types
"$BIN/tether" watch calculator --registry "etcd://127.0.0.1:$FPORT?timeout_ms=300" \
    >"$TMP/w.out" 2>"$TMP/watch.log" &
WPID=$!
PIDS+=("$WPID")
sleep 2
alive "$WPID" || fail "tether watch died on garbage"
kill -TERM "$WPID"
wait "$WPID"
rc=$?
[ $rc -eq 0 ] || fail "tether watch exited with $rc"
[ ! -s "$TMP/w.out" ] || fail "garbage reported as instances: $(cat "$TMP/w.out")"
note "watch: garbage logged ($(grep -c . "$TMP/watch.log") lines), no event, clean stop"
echo "ok"
