#!/usr/bin/env bash
# test_sidecar.sh - `tether register`, the sidecar, with programs that know
# nothing of tether, in a local: registry:
#   - a Go net/rpc server (standard library, gob; tests/interop/gosidecar):
#     listed only once its port is up; a C tether client finds it by name
#     and calls it over gob; SIGTERM to the sidecar removes the entry
#     before the Go server gets its SIGTERM (the server runs `tether list`
#     when the signal arrives and finds nothing), and its exit status comes
#     back; --grace delays the signal, a second SIGTERM skips the grace;
#     kill -9 of the Go server deregisters at once and exits 137;
#     --health rpc:gob registers it too;
#   - python3 -m http.server with --health http:/: listed once it answers,
#     removed after --health-fails failed checks while SIGSTOPped, back
#     after SIGCONT;
#   - --health exec:'test -f FILE': removed when the file goes, back when
#     it returns; --meta pairs are listed;
#   - SIGINT stops like SIGTERM, SIGHUP is passed on;
#   - usage errors and a command that cannot run.
# Needs Debian's golang-go (GO111MODULE=off, cache in the build tree, no
# network) and python3.
set -u

BIN=${TETHER_BIN_DIR:?TETHER_BIN_DIR must name the build bin directory}
SRC=${TETHER_SOURCE_DIR:?}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tt-sidecar-XXXXXX")
PIDS=()

source "$(dirname "${BASH_SOURCE[0]}")/common_lib.sh"

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        # Children of the sidecars first (a stopped one must be continued).
        for c in $(pgrep -P "$p" 2>/dev/null); do
            kill -CONT "$c" 2>/dev/null
            kill -KILL "$c" 2>/dev/null
        done
        kill -KILL "$p" 2>/dev/null
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

for tool in go python3; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (run scripts/setup.sh)"
done
for tool in tether sidecar-client; do
    [ -x "$BIN/$tool" ] || fail "$BIN/$tool is missing (build first)"
done

GODIR=$BIN/../sidecar-go
mkdir -p "$GODIR/gopath"
(cd "$SRC/tests/interop/gosidecar" &&
    GO111MODULE=off GOPATH=$GODIR/gopath GOCACHE=$GODIR/cache GOFLAGS= \
        go build -o "$GODIR/gosidecar" .) || fail "go build gosidecar"
GOSRV=$GODIR/gosidecar


REG="local:$TMP/reg"
# Check timing for the runs where a failing check is not what is tested: a
# loaded machine may be slow to answer, and only a real failure should count.
HC=(--health-interval 100ms --health-timeout 10s)

# listed NAME - NAME has an instance in the registry.
listed() {
    [ -n "$("$BIN/tether" list "$1" --registry "$REG" 2>>"$TMP/list.log")" ]
}
unlisted() {
    local out
    out=$("$BIN/tether" list "$1" --registry "$REG" 2>>"$TMP/list.log") && [ -z "$out" ]
}

accepting() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

alive() {
    kill -0 "$1" 2>/dev/null
}

# sidecar NAME LOG ARGS... - `tether register` in the background; its PID
# goes into SC.
sidecar() {
    local log=$1
    shift
    "$BIN/tether" register --registry "$REG" "$@" >"$TMP/$log.out.log" 2>"$TMP/$log.log" &
    SC=$!
    PIDS+=("$SC")
}

# child_of PID PATTERN - the sidecar's child running PATTERN (its CMD; a
# registry backend may start a helper process of its own too).
child_of() {
    local c
    c=$(pgrep -P "$1" -f "$2" | head -n 1)
    [ -n "$c" ] && echo "$c"
}

# ---- usage errors -----------------------------------------------------------
expect_usage() { # text args...
    local want=$1
    shift
    "$BIN/tether" register "$@" >"$TMP/u.out" 2>"$TMP/u.err"
    local rc=$?
    [ $rc -eq 2 ] || fail "tether register $*: exit $rc, not 2"
    grep -qF -- "$want" "$TMP/u.err" || fail "tether register $*: no '$want' in: $(cat "$TMP/u.err")"
}
expect_usage "--name is required" --addr 127.0.0.1:1 -- true
expect_usage "--addr is required" --name x -- true
expect_usage "no command to run" --name x --addr 127.0.0.1:1
expect_usage "unknown --health" --name x --addr 127.0.0.1:1 --health udp -- true
expect_usage "unknown codec" --name x --addr 127.0.0.1:1 --health rpc:xml -- true
expect_usage "--health-fails must be" --name x --addr 127.0.0.1:1 --health-fails 0 -- true
expect_usage "bad --health-interval" --name x --addr 127.0.0.1:1 --health-interval 1y -- true
expect_usage "--meta needs KEY=VALUE" --name x --addr 127.0.0.1:1 --meta novalue -- true
expect_usage "--grace needs a value" --name x --addr 127.0.0.1:1 --grace
"$BIN/tether" register --registry "$REG" --name x --addr 127.0.0.1:1 -- "$TMP/no-such-program" \
    2>"$TMP/u.err"
rc=$?
[ $rc -eq 127 ] || fail "a missing program: exit $rc, not 127"
grep -q "cannot run" "$TMP/u.err" || fail "a missing program: $(cat "$TMP/u.err")"
"$BIN/tether" register --registry "$REG" --name x --addr 127.0.0.1:1 --health none -- \
    sh -c 'exit 7' 2>"$TMP/u.err"
rc=$?
[ $rc -eq 7 ] || fail "exit status 7 came back as $rc"
unlisted x || fail "x still listed after its command exited"
note "usage errors, a missing program (127), exit status passed back"

# ---- Go net/rpc server, --health tcp ------------------------------------------
P=$(free_port)
LISTCMD="'$BIN/tether' list calc --registry '$REG'"
sidecar go1 --name calc --addr "127.0.0.1:$P" --health tcp "${HC[@]}" -- \
    "$GOSRV" -addr "127.0.0.1:$P" -delay 1500ms -on-term "$LISTCMD" -exit-code 3
# Listed only once the port is up: each round looks at the registry first
# and at the port second, so a listing seen before the port opened shows.
seen_unlisted=0
end=$(($(now_ms) + 30000))
while :; do
    if listed calc; then
        accepting "$P" || fail "calc listed before its port was up"
        grep -q "^listening" "$TMP/go1.out.log" || fail "calc listed before the server listened"
        break
    fi
    seen_unlisted=1
    [ "$(now_ms)" -lt "$end" ] || fail "calc never listed"
    alive "$SC" || fail "the sidecar exited"
    sleep 0.05
done
[ $seen_unlisted = 1 ] || fail "calc was listed at once, before the 1.5 s start of the server"
grep -q "registered" "$TMP/go1.log" || fail "no 'registered' in the sidecar's log"
out=$("$BIN/sidecar-client" "$REG" calc 20 22 2>"$TMP/client.log") || fail "gob call by name"
[ "$out" = 42 ] || fail "Calculator.Add(20, 22) = '$out'"
note "Go server listed after its port opened; C client by name over gob: 20+22=$out"

# SIGTERM: deregister, then signal the Go server, exit with its status.
kill -TERM "$SC"
wait "$SC"
rc=$?
[ $rc -eq 3 ] || fail "the sidecar exited with $rc, not the Go server's 3"
grep -q "^got SIGTERM" "$TMP/go1.out.log" || fail "the Go server got no SIGTERM"
grep -q "^on-term done" "$TMP/go1.out.log" || fail "the Go server's SIGTERM check did not finish"
grep -q "^on-term failed" "$TMP/go1.out.log" && fail "tether list failed inside the Go server"
grep -q "^on-term: " "$TMP/go1.out.log" &&
    fail "calc was still listed when the Go server got SIGTERM: $(grep on-term: "$TMP/go1.out.log")"
unlisted calc || fail "calc listed after the sidecar exited"
note "SIGTERM: entry gone before the Go server's SIGTERM (it listed nothing), exit 3 passed back"

# --grace: the signal reaches the Go server no sooner than the grace after
# the entry went; a second SIGTERM skips what is left of it.
P=$(free_port)
sidecar go2 --name calc --addr "127.0.0.1:$P" --health tcp "${HC[@]}" --grace 1500ms \
    -- "$GOSRV" -addr "127.0.0.1:$P"
wait_until 30 "calc listed (grace run)" listed calc
t0=$(now_ms)
kill -TERM "$SC"
wait_until 30 "calc to go (grace run)" unlisted calc
wait_until 30 "the Go server's SIGTERM" grep -q "^got SIGTERM" "$TMP/go2.out.log"
dt=$(($(now_ms) - t0))
wait "$SC"
[ "$dt" -ge 1500 ] || fail "the Go server got SIGTERM ${dt} ms after the sidecar, within the grace"
note "--grace 1500ms: the Go server got SIGTERM ${dt} ms after the sidecar did"
P=$(free_port)
sidecar go3 --name calc --addr "127.0.0.1:$P" --health tcp "${HC[@]}" --grace 60s \
    -- "$GOSRV" -addr "127.0.0.1:$P"
wait_until 30 "calc listed (second signal run)" listed calc
t0=$(now_ms)
kill -TERM "$SC"
wait_until 30 "calc to go (second signal run)" unlisted calc
kill -TERM "$SC"
wait_until 30 "the Go server's SIGTERM after a second one" grep -q "^got SIGTERM" "$TMP/go3.out.log"
dt=$(($(now_ms) - t0))
wait "$SC"
[ "$dt" -lt 50000 ] || fail "a second SIGTERM did not skip the 60 s grace"
note "a second SIGTERM skipped the 60 s grace (signal forwarded after ${dt} ms)"

# kill -9 of the Go server: the sidecar deregisters at once and exits 137.
P=$(free_port)
sidecar go4 --name calc --addr "127.0.0.1:$P" --health rpc:gob "${HC[@]}" \
    --meta zone=b --meta "note=a b" -- "$GOSRV" -addr "127.0.0.1:$P"
wait_until 30 "calc listed (rpc:gob)" listed calc
"$BIN/tether" list calc --registry "$REG" | grep -q 'zone=b note="a b"' ||
    fail "metadata: $("$BIN/tether" list calc --registry "$REG")"
GPID=$(child_of "$SC" gosidecar) || fail "no child of the sidecar"
t0=$(now_ms)
kill -KILL "$GPID"
wait "$SC"
rc=$?
dt=$(($(now_ms) - t0))
[ $rc -eq 137 ] || fail "after kill -9 of the Go server the sidecar exited with $rc, not 137"
unlisted calc || fail "calc listed after its server was killed"
grep -q "killed by signal 9" "$TMP/go4.log" || fail "no 'killed by signal 9' in the log"
note "--health rpc:gob, --meta listed; kill -9: deregistered and exit 137 after ${dt} ms"

# ---- --health rpc (native): a tether server passes, a gob-only Go server not --
P=$(free_port)
sidecar tt --name calcnative --addr "127.0.0.1:$P" --health rpc "${HC[@]}" -- \
    "$BIN/calculator-server" --listen "127.0.0.1:$P" --registry "local:$TMP/other"
wait_until 30 "calcnative listed (rpc, a tether server)" listed calcnative
kill -TERM "$SC"
wait "$SC"
rc=$?
[ $rc -eq 0 ] || fail "calculator-server under the sidecar exited with $rc after SIGTERM"
unlisted calcnative || fail "calcnative listed after the sidecar exited"
P=$(free_port)
sidecar go5 --name calcgob --addr "127.0.0.1:$P" --health rpc --health-interval 100ms -v -- \
    "$GOSRV" -addr "127.0.0.1:$P"
wait_until 30 "the Go server to listen" grep -q "^listening" "$TMP/go5.out.log"
# Checks that start once the port is up fail all the same (a native frame
# to a gob server): wait for a few of them, then it must still be unlisted.
rpc_fails_after_listen() {
    [ "$(sed -n '/ECONNRESET\|EBADREPLY\|EPROTO\|ETIMEDOUT/p' "$TMP/go5.log" | grep -c .)" -ge 3 ]
}
wait_until 30 "failed native checks against the Go server" rpc_fails_after_listen
unlisted calcgob || fail "a gob-only server passed the native rpc check"
kill -TERM "$SC"
wait "$SC"
note "--health rpc: a tether server listed, a gob-only Go server not"

# ---- python3 -m http.server, --health http:/ ---------------------------------
mkdir -p "$TMP/www"
P=$(free_port)
MP=$(free_port)
sidecar web --name web --addr "127.0.0.1:$P" --health http:/ --health-interval 200ms \
    --health-timeout 1s --health-fails 3 --metrics "127.0.0.1:$MP" \
    -- python3 -m http.server "$P" --bind 127.0.0.1 --directory "$TMP/www"
wait_until 60 "web listed" listed web
grep -q "GET / " "$TMP/web.log" || fail "listed without a GET / reaching the server"
# --metrics: the sidecar's own series, and /health while registered.
metrics() {
    python3 -c 'import sys, urllib.request
try:
    r = urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]), timeout=5)
    print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())' "$MP" "$1"
}
M=$(metrics /metrics)
grep -q 'tether_sidecar_registered{name="web",address="127.0.0.1:'"$P"'"} 1' <<<"$M" ||
    fail "--metrics: not registered in /metrics: $M"
grep -q 'tether_sidecar_health_checks_total{name="web",result="ok"} [1-9]' <<<"$M" ||
    fail "--metrics: no passing check counted: $M"
if command -v promtool >/dev/null; then
    sed 1d <<<"$M" | promtool check metrics || fail "promtool rejects the sidecar's metrics"
fi
H=$(metrics /health)
[ "$(head -1 <<<"$H")" = 200 ] || fail "--metrics: /health is not 200 while registered: $H"
note "--metrics: registered 1, checks counted, /health 200"
PY=$(child_of "$SC" http.server) || fail "no child of the web sidecar"
t0=$(now_ms)
kill -STOP "$PY"
wait_until 60 "web to go while stopped" unlisted web
H=$(metrics /health)
[ "$(head -1 <<<"$H")" = 503 ] || fail "--metrics: /health is not 503 once deregistered: $H"
dt=$(($(now_ms) - t0))
alive "$SC" || fail "the sidecar exited when its server stopped answering"
grep -q "deregistered (3 failed health checks in a row)" "$TMP/web.log" ||
    fail "no deregistration after 3 failed checks"
# Three failed checks that each wait 1 s for an answer, one after the
# other (the first may have started just before the stop): at least two
# full timeouts, with a margin for timer granularity.
[ "$dt" -ge 1500 ] || fail "deregistered ${dt} ms after the stop: sooner than 3 checks"
kill -CONT "$PY"
wait_until 60 "web back after SIGCONT" listed web
note "http:/ listed; SIGSTOP: gone after 3 failed checks (${dt} ms); SIGCONT: back"
kill -TERM "$SC"
wait "$SC"
rc=$?
[ $rc -eq 143 ] || fail "python killed by SIGTERM: the sidecar exited with $rc, not 143"
unlisted web || fail "web listed after the sidecar exited"
note "SIGTERM: python killed by the forwarded signal, exit 143"

# ---- --health exec: ------------------------------------------------------------
touch "$TMP/healthy"
sidecar ex --name job --addr "127.0.0.1:9" --health "exec:test -f '$TMP/healthy'" \
    "${HC[@]}" --health-fails 2 -- sleep 600
wait_until 30 "job listed (file present)" listed job
rm "$TMP/healthy"
wait_until 30 "job to go (file removed)" unlisted job
grep -q "health check failed: exec: exit status 1" "$TMP/ex.log" ||
    fail "the failed check's reason is not logged"
touch "$TMP/healthy"
wait_until 30 "job back (file restored)" listed job
kill -TERM "$SC"
wait "$SC"
rc=$?
[ $rc -eq 143 ] || fail "sleep killed by SIGTERM: exit $rc"
unlisted job || fail "job listed after the sidecar exited"
note "exec: removed when the file went, back when it returned"

# ---- SIGINT stops in order too; SIGHUP is passed on as it is ----------------
# A background job of a script starts with SIGINT ignored, and an ignored
# signal stays ignored: give the sidecar the default disposition.
env --default-signal=INT "$BIN/tether" register --registry "$REG" --name job --addr 127.0.0.1:9 \
    --health none -- sleep 600 >"$TMP/int.out.log" 2>"$TMP/int.log" &
SC=$!
PIDS+=("$SC")
wait_until 30 "job listed (SIGINT run)" listed job
kill -INT "$SC"
wait "$SC"
rc=$?
[ $rc -eq 130 ] || fail "sleep killed by the forwarded SIGINT: exit $rc, not 130"
grep -q "deregistered (Interrupt)" "$TMP/int.log" || fail "SIGINT: no deregistration logged"
unlisted job || fail "job listed after SIGINT"
sidecar hup --name job --addr 127.0.0.1:9 --health none -- sleep 600
wait_until 30 "job listed (SIGHUP run)" listed job
kill -HUP "$SC"
wait "$SC"
rc=$?
[ $rc -eq 129 ] || fail "sleep killed by the passed-on SIGHUP: exit $rc, not 129"
unlisted job || fail "job listed after its command died of SIGHUP"
note "SIGINT: deregistered, forwarded, exit 130; SIGHUP passed on, exit 129"
echo "ok"
