#!/usr/bin/env bash
# test_advertise.sh - the address a server registers (issue: never
# 0.0.0.0).  Inside a private network namespace whose only interface is lo
# (tests/netns/netns_lib.sh), so the host has no address other hosts could
# reach:
#   local:, listening on 0.0.0.0:P     -> registers 127.0.0.1:P (readers are on this host)
#   local:, --advertise 127.0.0.5:P    -> registers that, once, and nothing else
#   etcd, listening on 0.0.0.0:P       -> refuses to start, saying what to set
#   etcd, --advertise 127.0.0.1:P      -> registers that
set -u
source "$(dirname "$0")/../netns/netns_lib.sh"
netns_enter "$@"
source "$(dirname "$0")/etcd_lib.sh"

list() {
    "$BIN/tether" list calculator --registry "$1" 2>>"$TMP/list.log"
}

REG="local:$TMP/reg"
P=$(free_port)
server_start wild "$P" "$REG" --listen "0.0.0.0:$P"
wait_until 30 "the wildcard server to register" eval 'list "$REG" | grep -q "127.0.0.1:$P"'
out=$(list "$REG")
grep -q '0\.0\.0\.0' <<<"$out" && fail "0.0.0.0 registered: $out"
note "local:, 0.0.0.0:$P -> $(grep -o "127.0.0.1:$P" <<<"$out")"
kill -TERM "${SPID[wild]}"
wait "${SPID[wild]}" || fail "the wildcard server did not stop cleanly"

P=$(free_port)
server_start adv "$P" "$REG" --listen "0.0.0.0:$P" --advertise "127.0.0.5:$P"
wait_until 30 "the advertised address" eval 'list "$REG" | grep -q "127.0.0.5:$P"'
out=$(list "$REG")
[ "$(grep -c . <<<"$out")" -eq 1 ] || fail "more than the advertised address: $out"
note "local:, --advertise 127.0.0.5:$P -> $out"
kill -TERM "${SPID[adv]}"
wait "${SPID[adv]}" || fail "the advertising server did not stop cleanly"

etcd_single e1 "$TMP/e1"
URL="etcd://127.0.0.1:$CPORT"
P=$(free_port)
"$BIN/calculator-server" --listen "0.0.0.0:$P" --registry "$URL" >"$TMP/refuse.log" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "a wildcard server without an address to register exited $rc (want 1)"
grep -q "no address other hosts can reach" "$TMP/refuse.log" ||
    fail "unclear refusal: $(cat "$TMP/refuse.log")"
grep -q -- "--advertise" "$TMP/refuse.log" || fail "the refusal does not say what to set"
key_absent "$CPORT" /services/calculator/ || fail "something was registered"
note "etcd, 0.0.0.0:$P, only lo -> refused: $(grep -o 'cannot register.*' "$TMP/refuse.log" | head -1)"

server_start etcdadv "$P" "$URL" --listen "0.0.0.0:$P" --advertise "127.0.0.1:$P"
wait_until 30 "the advertised key" eval \
    'ectl "$CPORT" get --prefix --keys-only /services/calculator/ | grep -q "127.0.0.1:$P"'
note "etcd, --advertise 127.0.0.1:$P -> $(ectl "$CPORT" get --prefix --keys-only /services/calculator/ | grep .)"
echo ok
