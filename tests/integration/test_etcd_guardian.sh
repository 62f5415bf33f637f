#!/usr/bin/env bash
# test_etcd_guardian.sh - the crash guardian (docs/etcd.md) against a real
# etcd, with a 10 s TTL so "at once" and "after the TTL" cannot be confused:
#   1. SIGKILL of a registered server: a watcher sees the DELETE well within
#      the TTL (figure printed), and the guardian exits;
#   2. the guardian killed by SIGKILL first: the server keeps serving; then
#      the server killed by SIGKILL: the key stays until the TTL;
#   3. SIGTERM of the server (graceful): it revokes itself, the guardian
#      exits quietly, nobody logs an error (no double revoke);
#   4. SIGTERM of the guardian alone: it revokes; the server keeps serving
#      and registers again under a new lease, with a new guardian;
#   5. guardian=0: no guardian process;
#   6. a program linked with libtether.a has its guardian too; when it
#      exec()s another program, the guardian revokes.
source "$(dirname "$0")/etcd_lib.sh"

TTL=10
etcd_single e1 "$TMP/data"
URL="etcd://127.0.0.1:$CPORT?ttl=$TTL"
PFX=/services/calculator/

# guardian_of PID - the PID of the server's guardian (its child named
# tether-guard), or nothing.
guardian_of() {
    pgrep -P "$1" -x tether-guard 2>/dev/null | head -n 1
}
has_guardian() {
    [ -n "$(guardian_of "$1")" ]
}
# gone PID - the process has exited (absent, or a zombie nobody reaped yet).
gone() {
    [ ! -e "/proc/$1" ] || [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = Z ]
}
# lease_of KEY - the key's lease id (hex), or nothing.
lease_of() {
    ectl "$CPORT" get "$1" -w json 2>/dev/null |
        python3 -c 'import json,sys
kvs = json.load(sys.stdin).get("kvs") or []
print("%x" % kvs[0]["lease"] if kvs else "")'
}

# The watcher: etcdctl prints DELETE and the key on two lines.
ectl_bg "$CPORT" watch --prefix "$PFX" >"$TMP/watch.log" 2>&1
WPID=$!
PIDS+=("$WPID")
marker_seen() {
    ectl "$CPORT" put "${PFX}marker" "127.0.0.1:11" >/dev/null
    grep -q marker "$TMP/watch.log"
}
wait_until 30 "etcdctl watch to run" marker_seen
ectl "$CPORT" del "${PFX}marker" >/dev/null
deleted_seen() {
    sed -n '/^DELETE$/{n;p}' "$TMP/watch.log" | grep -qx "$1"
}

# start NAME [URL] - a registered server on a free port with its guardian;
# sets PORT[NAME], KEY[NAME], GPID[NAME].
declare -A PORT KEY GPID
start() {
    local name=$1 url=${2:-$URL}
    PORT[$name]=$(free_port)
    KEY[$name]="${PFX}127.0.0.1:${PORT[$name]}"
    server_start "$name" "${PORT[$name]}" "$url"
    wait_until 30 "server $name's key" key_present "$CPORT" "${KEY[$name]}"
    GPID[$name]=$(guardian_of "${SPID[$name]}")
}

# ---- 1. SIGKILL: the guardian revokes at once ---------------------------------
start k1
[ -n "${GPID[k1]}" ] || fail "server k1 has no guardian process"
grep -q 'tether-guard' "/proc/${GPID[k1]}/cmdline" || fail "guardian's command line"
# Nothing of the server's on the guardian: stdin is /dev/null and the
# server's listening socket is not among its fds.
[ "$(readlink "/proc/${GPID[k1]}/fd/0")" = /dev/null ] || fail "guardian's stdin"
inode=$(awk -v p="$(printf ':%04X' "${PORT[k1]}")" '$2 ~ p"$" && $4 == "0A" { print $10 }' \
    /proc/net/tcp)
[ -n "$inode" ] || fail "no listening socket of k1 in /proc/net/tcp"
ls -l "/proc/${GPID[k1]}/fd" | grep -q "socket:\[$inode\]" &&
    fail "the guardian holds the server's listening socket"
kill -KILL "${SPID[k1]}"
t0=$(now_ms)
end=$((t0 + 30000))
until deleted_seen "${KEY[k1]}"; do
    [ "$(now_ms)" -lt "$end" ] || fail "no DELETE within 30 s of the SIGKILL"
    sleep 0.005
done
dt=$(($(now_ms) - t0))
wait "${SPID[k1]}" 2>/dev/null
note "SIGKILL -> watcher saw DELETE after ${dt} ms (TTL ${TTL} s; shell polling adds ~5-10 ms)"
# Well under the TTL, with room for a loaded machine: the revoke, not
# the expiry, removed it.
[ "$dt" -lt $((TTL * 1000 / 2)) ] || fail "DELETE took ${dt} ms after SIGKILL: the guardian did not revoke"
wait_until 10 "the guardian to exit" gone "${GPID[k1]}"

# ---- 2. guardian SIGKILL, then server SIGKILL: the TTL applies -----------------
start k2
kill -KILL "${GPID[k2]}"
wait_until 10 "guardian of k2 to die" gone "${GPID[k2]}"
call_ok "${PORT[k2]}" || fail "server k2 stopped serving when its guardian died"
alive "${SPID[k2]}" || fail "server k2 died with its guardian"
kill -KILL "${SPID[k2]}"
wait "${SPID[k2]}" 2>/dev/null
t0=$(now_ms)
sleep 2
key_present "$CPORT" "${KEY[k2]}" || fail "k2's key went at once though both processes died by SIGKILL"
wait_until $((TTL + 30)) "k2's key to expire" key_absent "$CPORT" "${KEY[k2]}"
dt=$(($(now_ms) - t0))
note "guardian and server SIGKILLed: key gone after ${dt} ms (TTL ${TTL} s)"
[ "$dt" -ge $((TTL * 1000 - 2000)) ] || fail "k2's key went before the TTL (${dt} ms)"

# ---- 3. graceful SIGTERM of the server ----------------------------------------
start t1
kill -TERM "${SPID[t1]}"
wait "${SPID[t1]}"
rc=$?
[ $rc -eq 0 ] || fail "server t1 exited with $rc after SIGTERM"
key_absent "$CPORT" "${KEY[t1]}" || fail "t1's key still there after SIGTERM"
wait_until 10 "guardian of t1 to exit" gone "${GPID[t1]}"
grep -q '^tether: error' "$TMP/server-t1.log" &&
    fail "errors after a graceful stop: $(grep '^tether: ' "$TMP/server-t1.log")"
note "graceful SIGTERM: key removed by the server, guardian exited, no error logged"

# ---- 4. SIGTERM of the guardian alone ---------------------------------------------
start g1
lease1=$(lease_of "${KEY[g1]}")
kill -TERM "${GPID[g1]}"
t0=$(now_ms)
wait_until 10 "the DELETE after the guardian's SIGTERM" deleted_seen "${KEY[g1]}"
note "guardian SIGTERM: DELETE after $(($(now_ms) - t0)) ms"
wait_until 10 "guardian of g1 to exit" gone "${GPID[g1]}"
call_ok "${PORT[g1]}" || fail "server g1 stopped serving"
# The server's next keep-alive (TTL/3) finds the lease gone and registers
# again under a new one, with a new guardian.
wait_until $((TTL + 20)) "g1's key back" key_present "$CPORT" "${KEY[g1]}"
lease2=$(lease_of "${KEY[g1]}")
[ -n "$lease2" ] && [ "$lease2" != "$lease1" ] || fail "g1 back with lease '$lease2' (was $lease1)"
wait_until 10 "a new guardian for g1" has_guardian "${SPID[g1]}"
g2=$(guardian_of "${SPID[g1]}")
[ "$g2" != "${GPID[g1]}" ] || fail "no new guardian"
# And the new guardian guards the new lease.
kill -KILL "${SPID[g1]}"
wait "${SPID[g1]}" 2>/dev/null
wait_until 5 "g1's key gone after SIGKILL (new guardian)" key_absent "$CPORT" "${KEY[g1]}"
note "guardian SIGTERM: key revoked, server re-registered under lease $lease2, new guardian revoked it"

# ---- 5. guardian=0 --------------------------------------------------------------
start n1 "$URL&guardian=0"
sleep 0.5
has_guardian "${SPID[n1]}" && fail "guardian=0 but a guardian runs"
kill -TERM "${SPID[n1]}"
wait "${SPID[n1]}" || fail "server n1 exit status"
key_absent "$CPORT" "${KEY[n1]}" || fail "n1's key still there after SIGTERM"
rc=0
"$BIN/tether" list calculator --registry "$URL&guardian=2" >/dev/null 2>"$TMP/bad.log" || rc=$?
[ $rc -ne 0 ] && grep -q "guardian" "$TMP/bad.log" || fail "guardian=2 accepted: $(cat "$TMP/bad.log")"
note "guardian=0: no guardian process; guardian=2 refused"

# ---- 6. a program linked with libtether.a (no libtether.so) ----------------------
# The guardian's constructor comes along with the etcd backend's objects.
cat >"$TMP/st.c" <<'EOF'
#include <stdio.h>
#include <unistd.h>
#include <tether/registry.h>
int
main(int argc, char **argv)
{
    tether_registry *r = NULL;
    tether_registration *g = NULL;
    tether_instance inst = {.service = "statictest", .address = argv[2], .weight = 1};
    if (argc < 3 || tether_registry_open(argv[1], &r) != TETHER_OK ||
        tether_registry_register(r, &inst, &g) != TETHER_OK) {
        return 1;
    }
    printf("registered\n");
    fflush(stdout);
    if (argc == 4) {
        /* Another program in the same process: the lease is nobody's. */
        sleep(3);
        execl("/bin/sleep", "sleep", "1000", (char *)NULL);
        return 2;
    }
    pause();
    return 0;
}
EOF
# shellcheck disable=SC2086
"${TETHER_CC:-cc}" ${TETHER_CC_FLAGS:-} -o "$TMP/st" "$TMP/st.c" -I"$TETHER_SOURCE_DIR/include" \
    "$BIN/../src/libtether.a" -ljansson -lprotobuf-c -ldl -lm -lpthread >"$TMP/st-cc.log" 2>&1 ||
    fail "cannot build the static test program: $(cat "$TMP/st-cc.log")"
readelf -d "$TMP/st" | grep -q 'NEEDED.*libtether' && fail "the test program needs libtether.so"
SKEY=/services/statictest/127.0.0.1:9
"$TMP/st" "$URL" 127.0.0.1:9 >"$TMP/server-st.log" 2>&1 &
STPID=$!
PIDS+=("$STPID")
wait_until 30 "the static program's key" key_present "$CPORT" "$SKEY"
wait_until 10 "the static program's guardian" has_guardian "$STPID"
kill -KILL "$STPID"
wait "$STPID" 2>/dev/null
t0=$(now_ms)
wait_until 5 "the static program's key revoked by its guardian" key_absent "$CPORT" "$SKEY"
note "libtether.a: guardian present; SIGKILL -> key gone after $(($(now_ms) - t0)) ms"

# The server exec()s another program: its end of the channel closes, and
# the guardian revokes though the process lives on.
XKEY=/services/statictest/127.0.0.1:10
"$TMP/st" "$URL" 127.0.0.1:10 exec >"$TMP/server-stx.log" 2>&1 &
XPID=$!
PIDS+=("$XPID")
wait_until 30 "the exec test's key" key_present "$CPORT" "$XKEY"
wait_until 15 "the key revoked after the exec" key_absent "$CPORT" "$XKEY"
alive "$XPID" || fail "the exec test's process is gone"
[ "$(cat "/proc/$XPID/comm")" = sleep ] || fail "the key went before the exec"
note "exec of another program: the guardian revoked the lease, the process lives on"

for f in "$TMP"/server-*.log; do
    grep -q 'runtime error:\|ERROR: [A-Za-z]*Sanitizer' "$f" && fail "sanitizer report in $f"
done
echo "ok"
