#!/usr/bin/env bash
# test_etcd_auth.sh - the etcd backend against a real etcd with
# authentication on, then against one that serves https:
#   1. auth (user root, a password with '&' and '=' %-encoded in the URL):
#      a server registers, `tether list` lists it, `tether watch` sees
#      servers come and go; after etcd restarts (its simple tokens die
#      with it) the watch and the server log in again on the 401; a wrong
#      password fails at once with a clear message (tether list and the
#      server); SIGTERM removes the key; the password from password_file=
#      and from $TETHER_ETCD_PASSWORD; the crash guardian logs in too;
#   2. https with a throwaway CA: a server registers with cacert=CA and
#      `tether list` reads it; a server given an unrelated CA logs the
#      certificate failure, registers nothing, and keeps serving calls.
source "$(dirname "$0")/etcd_lib.sh"

command -v openssl >/dev/null || fail "openssl is not installed (run scripts/setup.sh)"

# The default TTL: a shorter one can expire on a loaded machine (a keep-alive
# over https under the sanitizers late), which this test would report.
TTL=10
PFX=/services/calculator/
# Every command that talks to etcd is bounded: a hang fails the test.
CMD_TIMEOUT=10

# ---- helpers -----------------------------------------------------------------

# server_addr NAME - the address a server started with --listen 127.0.0.1:0
# printed ("listening on ADDR"), or nothing yet.
server_addr() {
    sed -n 's/^listening on //p' "$TMP/server-$1.log" | head -n 1
}
has_addr() {
    [ -n "$(server_addr "$1")" ]
}

# start_server NAME URL - calculator-server on a free port, registered in
# URL; waits until it serves and sets ADDR[NAME].
declare -A ADDR
start_server() {
    server_start "$1" 0 "$2"
    wait_until 20 "server $1 to listen" has_addr "$1"
    ADDR[$1]=$(server_addr "$1")
}

# stop_server NAME - SIGTERM, and a clean exit within the deadline.
stop_server() {
    local pid=${SPID[$1]} i
    kill -TERM "$pid"
    for ((i = 0; i < 200; i++)); do
        alive "$pid" || break
        sleep 0.05
    done
    alive "$pid" && fail "server $1 still running 10 s after SIGTERM"
    wait "$pid"
    local rc=$?
    [ $rc -eq 0 ] || fail "server $1 exited with $rc after SIGTERM"
}

# calc_ok ADDR - Calculator.Add(1, 2) straight to ADDR answers 3.
calc_ok() {
    local out
    out=$(timeout "$CMD_TIMEOUT" "$BIN/calculator-client" --addr "$1" add 1 2 2>&1) &&
        [ "$out" = "3" ]
}

# no_warnings NAME - the server logged no warning and no error.
no_warnings() {
    if grep -q '^tether: \(warn\|error\)' "$TMP/server-$1.log"; then
        fail "server $1 logged trouble: $(grep '^tether: ' "$TMP/server-$1.log" | head -n 5)"
    fi
}

# ---- 1. authentication ---------------------------------------------------------

# '&' and '=' would end the option: the URL carries them %-encoded.
PASS='s3cr&t=pw'
PASS_URL='s3cr%26t%3Dpw'

etcd_single e1 "$TMP/data1"
A=$CPORT
ectl "$A" user add "root:$PASS" >/dev/null || fail "etcdctl user add root"
ectl "$A" auth enable >"$TMP/auth-enable.log" 2>&1 ||
    fail "etcdctl auth enable: $(cat "$TMP/auth-enable.log")"

# actl ARGS... - etcdctl as root.
actl() {
    ectl "$A" --user "root:$PASS" "$@"
}
akey_present() {
    [ "$(actl get --prefix --keys-only "$1" 2>/dev/null | grep -c .)" -ge 1 ]
}
# Absent only when a read as root succeeds and finds nothing.
akey_absent() {
    local out
    out=$(actl get --prefix --keys-only "$1" 2>/dev/null) && [ -z "$out" ]
}
auth_healthy() {
    actl endpoint health >/dev/null 2>&1
}

# Auth is really on: without a user etcd refuses reads.
ectl "$A" get --prefix /services/ >/dev/null 2>&1 && fail "etcd reads without a user: auth is off"

URL="etcd://127.0.0.1:$A?user=root&password=$PASS_URL&ttl=$TTL"
start_server a1 "$URL"
t_reg=$(now_ms)
wait_until 20 "server a1's key in etcd (auth)" akey_present "$PFX${ADDR[a1]}"
actl get --prefix "$PFX" >"$TMP/get.out" || fail "etcdctl get as root"
grep -qx "$PFX${ADDR[a1]}" "$TMP/get.out" || fail "etcdctl get: $(cat "$TMP/get.out")"
grep -q "\"Addr\":\"${ADDR[a1]}\"" "$TMP/get.out" || fail "value: $(cat "$TMP/get.out")"
calc_ok "${ADDR[a1]}" || fail "server a1 does not answer"

timeout "$CMD_TIMEOUT" "$BIN/tether" list calculator --registry "$URL" \
    >"$TMP/list.out" 2>"$TMP/list.log" || fail "tether list with auth: $(cat "$TMP/list.log")"
grep -q "^${ADDR[a1]} serving" "$TMP/list.out" || fail "tether list: $(cat "$TMP/list.out")"
note "auth: registered (key read by etcdctl as root) and listed by tether list"

# The watch: its range lists a1; a2 coming and going arrives on the stream.
"$BIN/tether" watch calculator --registry "$URL" >"$TMP/w.out" 2>"$TMP/watch.log" &
WPID=$!
PIDS+=("$WPID")
seen() {
    grep -q " $1 $2 " "$TMP/w.out"
}
wait_until 20 "the watch to list a1" seen added "${ADDR[a1]}"
start_server a2 "$URL"
wait_until 20 "the watch to see a2 added" seen added "${ADDR[a2]}"
stop_server a2
wait_until 20 "the watch to see a2 removed" seen removed "${ADDR[a2]}"
akey_absent "$PFX${ADDR[a2]}" || fail "a2's key still there after SIGTERM"
no_warnings a2
note "auth: tether watch saw a2 added and removed; SIGTERM removed a2's key"

# Wrong password: a clear message and a non-zero exit, at once.
BAD="etcd://127.0.0.1:$A?user=root&password=wrong&ttl=$TTL"
t0=$(now_ms)
rc=0
timeout "$CMD_TIMEOUT" "$BIN/tether" list calculator --registry "$BAD" \
    >"$TMP/bad-list.out" 2>"$TMP/bad-list.log" || rc=$?
[ $rc -eq 124 ] && fail "tether list with a wrong password hangs"
[ $rc -ne 0 ] || fail "tether list with a wrong password succeeded"
grep -q "authentication as 'root' failed" "$TMP/bad-list.log" ||
    fail "tether list, wrong password: unclear message: $(cat "$TMP/bad-list.log")"
[ -s "$TMP/bad-list.out" ] &&
    fail "tether list, wrong password, printed: $(cat "$TMP/bad-list.out")"
rc=0
timeout "$CMD_TIMEOUT" "$BIN/calculator-server" --listen 127.0.0.1:0 --registry "$BAD" \
    >"$TMP/bad-server.out" 2>"$TMP/bad-server.log" || rc=$?
[ $rc -eq 124 ] && fail "calculator-server with a wrong password hangs"
[ $rc -ne 0 ] || fail "calculator-server with a wrong password exited 0"
grep -q "authentication as 'root' failed" "$TMP/bad-server.log" ||
    fail "calculator-server, wrong password: unclear message: $(cat "$TMP/bad-server.log")"
note "wrong password: exit $rc, '$(grep -m1 authentication "$TMP/bad-server.log")'" \
    "($(($(now_ms) - t0)) ms for both)"

# Simple tokens live in etcd's memory: after a restart (data kept) the
# tokens the server and the watch hold are unknown.  KV and revoke calls
# answer 401; a watch is created already canceled ("invalid auth token").
etcd_stop e1
etcd_start e1 "$TMP/data1" "$A" "$PPORT" "e1=http://127.0.0.1:$PPORT"
wait_until 30 "etcd e1 to serve again" auth_healthy
start_server a3 "$URL"
wait_until 20 "the watch (old token) to see a3 added" seen added "${ADDR[a3]}"
stop_server a3
wait_until 20 "the watch to see a3 removed" seen removed "${ADDR[a3]}"
no_warnings a3

# a1 kept its lease through the restart, well past its TTL.
left=$((TTL * 1000 + 1500 - ($(now_ms) - t_reg)))
[ $left -gt 0 ] && sleep "$(printf '%d.%03d' $((left / 1000)) $((left % 1000)))"
akey_present "$PFX${ADDR[a1]}" || fail "a1's key expired: no keep-alive with auth"
# a1's revoke carries its pre-restart token: 401, log in again, revoke.
stop_server a1
akey_absent "$PFX${ADDR[a1]}" || fail "a1's key still there after SIGTERM (token not renewed?)"
wait_until 20 "the watch to see a1 removed" seen removed "${ADDR[a1]}"
# While etcd was down a1's keep-alive and the watch warned; nothing else.
LOGS=("$TMP/server-a1.log" "$TMP/watch.log")
grep -q 'authentication\|cannot remove\|HTTP 4\|token\|denied' "${LOGS[@]}" &&
    fail "a1 or the watch failed after the restart: $(grep -h '^tether: ' "${LOGS[@]}")"
kill -TERM "$WPID"
wait "$WPID" || fail "tether watch exited with $? after SIGTERM"
# added a1, a2, removed a2, added a3, removed a3, a1: each once, in order.
events=$(awk '{ printf "%s %s,", $2, $3 }' "$TMP/w.out")
want="added ${ADDR[a1]},added ${ADDR[a2]},removed ${ADDR[a2]},"
want+="added ${ADDR[a3]},removed ${ADDR[a3]},removed ${ADDR[a1]},"
[ "$events" = "$want" ] || fail "watch events: $(cat "$TMP/w.out")"
note "auth: after an etcd restart, the watch and a1 logged in again; SIGTERM removed a1's key"

# The password out of the URL: from a file (password_file=, first line), or
# from $TETHER_ETCD_PASSWORD.  Neither shows up in a log line.
printf '%s\n' "$PASS" >"$TMP/pw"
chmod 600 "$TMP/pw"
FURL="etcd://127.0.0.1:$A?user=root&password_file=$TMP/pw&ttl=$TTL"
start_server f1 "$FURL"
wait_until 20 "server f1's key (password_file)" akey_present "$PFX${ADDR[f1]}"
timeout "$CMD_TIMEOUT" "$BIN/tether" list calculator --registry "$FURL" \
    >"$TMP/flist.out" 2>"$TMP/flist.log" || fail "tether list, password_file: $(cat "$TMP/flist.log")"
grep -q "^${ADDR[f1]} serving" "$TMP/flist.out" || fail "tether list: $(cat "$TMP/flist.out")"
# The crash guardian logs in with the same credentials (sent over its
# channel): SIGKILL of the server, and the key goes at once.
kill -KILL "${SPID[f1]}"
wait "${SPID[f1]}" 2>/dev/null
t0=$(now_ms)
wait_until 5 "f1's key revoked by its guardian after SIGKILL" akey_absent "$PFX${ADDR[f1]}"
note "password_file: registered, listed; SIGKILL -> key revoked by the guardian" \
    "(with auth) after $(($(now_ms) - t0)) ms"
EURL="etcd://127.0.0.1:$A?user=root&ttl=$TTL"
TETHER_ETCD_PASSWORD=$PASS server_start v1 0 "$EURL"
wait_until 20 "server v1 to listen" has_addr v1
ADDR[v1]=$(server_addr v1)
wait_until 20 "server v1's key (TETHER_ETCD_PASSWORD)" akey_present "$PFX${ADDR[v1]}"
G=$(pgrep -P "${SPID[v1]}" -x tether-guard | head -n 1)
[ -n "$G" ] || fail "server v1 has no crash guardian"
# The password is neither in the guardian's command line nor in its
# environment.
grep -qa "s3cr" "/proc/$G/cmdline" "/proc/$G/environ" && fail "the password is visible in the guardian"
stop_server v1
akey_absent "$PFX${ADDR[v1]}" || fail "v1's key still there after SIGTERM"
no_warnings v1
# A wrong one from the environment fails like a wrong one in the URL; a
# missing file is named in a clear message.
rc=0
TETHER_ETCD_PASSWORD=wrong timeout "$CMD_TIMEOUT" "$BIN/tether" list calculator \
    --registry "$EURL" >/dev/null 2>"$TMP/bad-env.log" || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "authentication as 'root' failed" "$TMP/bad-env.log" ||
    fail "wrong TETHER_ETCD_PASSWORD: exit $rc, $(cat "$TMP/bad-env.log")"
rc=0
timeout "$CMD_TIMEOUT" "$BIN/tether" list calculator \
    --registry "etcd://127.0.0.1:$A?user=root&password_file=$TMP/nope" >/dev/null \
    2>"$TMP/bad-file.log" || rc=$?
[ $rc -ne 0 ] && grep -q "cannot open password_file '$TMP/nope'" "$TMP/bad-file.log" ||
    fail "missing password_file: exit $rc, $(cat "$TMP/bad-file.log")"
grep -rqa "$PASS" "$TMP"/*.log && fail "the password appears in a log: $(grep -rla "$PASS" "$TMP"/*.log)"
note "TETHER_ETCD_PASSWORD: registered, not visible in the guardian; bad file and bad env refused"
etcd_stop e1

# ---- 2. https ------------------------------------------------------------------

# A throwaway CA, a certificate for 127.0.0.1 (IP SAN) signed by it, and
# an unrelated CA.
mkcert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$TMP/ca.key" -out "$TMP/ca.pem" -days 2 -subj /CN=tether-test-ca &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$TMP/other-ca.key" -out "$TMP/other-ca.pem" -days 2 \
            -subj /CN=tether-other-ca &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$TMP/server.key" -out "$TMP/server.csr" -subj /CN=127.0.0.1 &&
        printf '%s\n' subjectAltName=IP:127.0.0.1 extendedKeyUsage=serverAuth \
            basicConstraints=CA:FALSE >"$TMP/server.ext" &&
        openssl x509 -req -in "$TMP/server.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" \
            -CAcreateserial -out "$TMP/server.pem" -days 2 -extfile "$TMP/server.ext"
}
mkcert >"$TMP/openssl.log" 2>&1 || fail "openssl: $(tail -n 5 "$TMP/openssl.log")"

T=$(free_port)
TPEER=$(free_port)
etcd --name t1 --data-dir "$TMP/data2" \
    --cert-file "$TMP/server.pem" --key-file "$TMP/server.key" \
    --listen-client-urls "https://127.0.0.1:$T" --advertise-client-urls "https://127.0.0.1:$T" \
    --listen-peer-urls "http://127.0.0.1:$TPEER" \
    --initial-advertise-peer-urls "http://127.0.0.1:$TPEER" \
    --initial-cluster "t1=http://127.0.0.1:$TPEER" --initial-cluster-state new \
    --initial-cluster-token "tt-tls-$(basename "$TMP")" \
    --log-level error >>"$TMP/etcd-t1.log" 2>&1 &
EPID[t1]=$!
PIDS+=("$!")

# tctl ARGS... - etcdctl over https, trusting the test CA.
tctl() {
    ETCDCTL_API=3 etcdctl --endpoints "https://127.0.0.1:$T" --cacert "$TMP/ca.pem" \
        --command-timeout=3s --dial-timeout=2s "$@"
}
tls_healthy() {
    tctl endpoint health >/dev/null 2>&1
}
tkey_present() {
    [ "$(tctl get --prefix --keys-only "$1" 2>/dev/null | grep -c .)" -ge 1 ]
}
tkey_absent() {
    local out
    out=$(tctl get --prefix --keys-only "$1" 2>/dev/null) && [ -z "$out" ]
}
wait_until 30 "etcd t1 to serve https on $T" tls_healthy

TURL="etcd://127.0.0.1:$T?tls=1&cacert=$TMP/ca.pem&ttl=$TTL"
start_server t1 "$TURL"
wait_until 20 "server t1's key in etcd (https)" tkey_present "$PFX${ADDR[t1]}"
timeout "$CMD_TIMEOUT" "$BIN/tether" list calculator --registry "$TURL" \
    >"$TMP/tlist.out" 2>"$TMP/tlist.log" || fail "tether list over https: $(cat "$TMP/tlist.log")"
grep -q "^${ADDR[t1]} serving" "$TMP/tlist.out" || fail "tether list: $(cat "$TMP/tlist.out")"
note "https: registered (key read by etcdctl --cacert) and listed by tether list"

# An unrelated CA: the certificate check fails, the log says so, nothing
# is registered, and the server serves all the same.
start_server t2 "etcd://127.0.0.1:$T?cacert=$TMP/other-ca.pem&ttl=$TTL"
cert_logged() {
    grep -q '^tether: error: .*certificate' "$TMP/server-t2.log"
}
wait_until 20 "server t2 to log the certificate failure" cert_logged
calc_ok "${ADDR[t2]}" || fail "server t2 (wrong CA) does not serve"
alive "${SPID[t2]}" || fail "server t2 (wrong CA) exited"
tkey_absent "$PFX${ADDR[t2]}" || fail "server t2 registered with an unrelated CA"
# The wrong CA fails tether list too, with the same reason.
rc=0
timeout "$CMD_TIMEOUT" "$BIN/tether" list calculator \
    --registry "etcd://127.0.0.1:$T?cacert=$TMP/other-ca.pem" \
    >"$TMP/bad-tlist.out" 2>"$TMP/bad-tlist.log" || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "tether list with an unrelated CA: exit $rc"
grep -q certificate "$TMP/bad-tlist.log" ||
    fail "tether list, unrelated CA: unclear message: $(cat "$TMP/bad-tlist.log")"
note "wrong CA: '$(grep -m1 certificate "$TMP/server-t2.log")'; server serves, key absent"
stop_server t2
stop_server t1
tkey_absent "$PFX${ADDR[t1]}" || fail "t1's key still there after SIGTERM"
no_warnings t1
note "https: SIGTERM removed t1's key"
# ---- 3. https with client certificates (etcd --client-cert-auth) -------------
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$TMP/client.key" -out "$TMP/client.csr" -subj /CN=tether-client >>"$TMP/openssl.log" 2>&1 &&
    openssl x509 -req -in "$TMP/client.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" \
        -CAcreateserial -out "$TMP/client.pem" -days 2 >>"$TMP/openssl.log" 2>&1 ||
    fail "openssl (client certificate): $(tail -n 5 "$TMP/openssl.log")"
# etcd's HTTP gateway calls its own gRPC port with the server certificate
# as its client certificate: under --client-cert-auth that one must be
# good for clientAuth too.
printf '%s\n' subjectAltName=IP:127.0.0.1 extendedKeyUsage=serverAuth,clientAuth \
    basicConstraints=CA:FALSE >"$TMP/server2.ext"
openssl x509 -req -in "$TMP/server.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial \
    -out "$TMP/server2.pem" -days 2 -extfile "$TMP/server2.ext" >>"$TMP/openssl.log" 2>&1 ||
    fail "openssl (server certificate): $(tail -n 5 "$TMP/openssl.log")"
M=$(free_port)
MPEER=$(free_port)
etcd --name m1 --data-dir "$TMP/data3" \
    --cert-file "$TMP/server2.pem" --key-file "$TMP/server.key" \
    --client-cert-auth --trusted-ca-file "$TMP/ca.pem" \
    --listen-client-urls "https://127.0.0.1:$M" --advertise-client-urls "https://127.0.0.1:$M" \
    --listen-peer-urls "http://127.0.0.1:$MPEER" \
    --initial-advertise-peer-urls "http://127.0.0.1:$MPEER" \
    --initial-cluster "m1=http://127.0.0.1:$MPEER" --initial-cluster-state new \
    --initial-cluster-token "tt-mtls-$(basename "$TMP")" \
    --log-level error >>"$TMP/etcd-m1.log" 2>&1 &
EPID[m1]=$!
PIDS+=("$!")
mctl() {
    ETCDCTL_API=3 etcdctl --endpoints "https://127.0.0.1:$M" --cacert "$TMP/ca.pem" \
        --cert "$TMP/client.pem" --key "$TMP/client.key" \
        --command-timeout=3s --dial-timeout=2s "$@"
}
m_healthy() { mctl endpoint health >/dev/null 2>&1; }
mkey_present() { [ "$(mctl get --prefix --keys-only "$1" 2>/dev/null | grep -c .)" -ge 1 ]; }
wait_until 30 "etcd m1 to serve https with client certificates on $M" m_healthy
MURL="etcd://127.0.0.1:$M?cacert=$TMP/ca.pem&cert=$TMP/client.pem&key=$TMP/client.key&ttl=$TTL"
start_server m1 "$MURL"
wait_until 20 "server m1's key in etcd (client certificate)" mkey_present "$PFX${ADDR[m1]}"
timeout "$CMD_TIMEOUT" "$BIN/tether" list calculator --registry "$MURL" \
    >"$TMP/mlist.out" 2>"$TMP/mlist.log" || fail "tether list with a client certificate: $(cat "$TMP/mlist.log")"
grep -q "^${ADDR[m1]} serving" "$TMP/mlist.out" || fail "tether list: $(cat "$TMP/mlist.out")"
# Without the certificate etcd refuses the handshake: a clear failure.
rc=0
timeout "$CMD_TIMEOUT" "$BIN/tether" list calculator \
    --registry "etcd://127.0.0.1:$M?cacert=$TMP/ca.pem" >"$TMP/nlist.out" 2>"$TMP/nlist.log" || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "tether list without a client certificate: exit $rc"
rc=0
"$BIN/tether" list calculator --registry "etcd://127.0.0.1:$M?cert=$TMP/client.pem" \
    >/dev/null 2>"$TMP/ckey.log" || rc=$?
[ $rc -ne 0 ] && grep -q 'cert= and key= go together' "$TMP/ckey.log" ||
    fail "cert= without key=: $(cat "$TMP/ckey.log")"
stop_server m1
no_warnings m1
note "https with a client certificate: registered, listed; without one: '$(head -c 200 "$TMP/nlist.log")'"

# Under the sanitizers a report need not change an exit status.
if grep -l 'runtime error:\|ERROR: [A-Za-z]*Sanitizer' "$TMP"/*.log 2>/dev/null; then
    fail "sanitizer report in the logs above"
fi
echo "ok"
