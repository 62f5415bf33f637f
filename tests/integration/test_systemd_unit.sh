#!/usr/bin/env bash
# test_systemd_unit.sh - examples/systemd/calculator.service, pointed at
# the built calculator-server, passes `systemd-analyze verify` without a
# warning, and is a system unit whose local: registry is the directory
# systemd makes for it (RuntimeDirectory=, kept across stops, User= set).
set -euo pipefail
src=${TETHER_SOURCE_DIR:?TETHER_SOURCE_DIR is not set (run through ctest)}
bin=${TETHER_BIN_DIR:?TETHER_BIN_DIR is not set (run through ctest)}
unit=$src/examples/systemd/calculator.service
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
command -v systemd-analyze >/dev/null ||
    fail "systemd-analyze (Debian: systemd; scripts/setup.sh installs it) is required"
[ -x "$bin/calculator-server" ] || fail "$bin/calculator-server not built"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# value KEY: the unit's value for KEY (the last one wins, as in systemd).
value() { sed -n "s/^$1=//p" "$unit" | tail -1; }
[ "$(value Type)" = notify ] || fail "Type= is not notify"
[ -n "$(value User)" ] || fail "no User=: not a system unit"
rundir=$(value RuntimeDirectory)
[ -n "$rundir" ] || fail "no RuntimeDirectory="
[ "$(value RuntimeDirectoryPreserve)" = yes ] || fail "RuntimeDirectoryPreserve= is not yes"
[ -n "$(value WatchdogSec)" ] || fail "no WatchdogSec=: a wedged server would never be restarted"
exec_start=$(value ExecStart)
case " $exec_start " in
*" --registry local:/run/$rundir?group="*) ;;
*) fail "ExecStart= does not register in local:/run/$rundir?group=...: $exec_start" ;;
esac
[ "$(value RuntimeDirectoryMode)" = 2770 ] ||
    fail "RuntimeDirectoryMode= is not 2770: the registry's group cannot read it"
case "$exec_start" in
/usr/local/bin/calculator-server\ *) ;;
*) fail "ExecStart= does not start /usr/local/bin/calculator-server" ;;
esac

sed "s|/usr/local/bin/calculator-server|$bin/calculator-server|" "$unit" >"$tmp/calculator.service"
if ! systemd-analyze verify "$tmp/calculator.service" >"$tmp/out" 2>&1; then
    cat "$tmp/out" >&2
    fail "systemd-analyze verify rejects the unit"
fi
# verify exits 0 on unknown keys and bad values; it only warns.
if [ -s "$tmp/out" ]; then
    cat "$tmp/out" >&2
    fail "systemd-analyze verify warns about the unit"
fi
# The server accepts the unit's arguments (--help-like check: an unknown
# option makes it print its usage and fail before listening).
args=${exec_start#* }
args=${args/127.0.0.1:8080/127.0.0.1:0}
args=${args/local:\/run\/$rundir/local:$tmp/run}
# The unit's group is made by tether.sysusers; here a group every Debian
# system has stands in for it.  The directory is made as systemd makes
# RuntimeDirectory= (the group's, RuntimeDirectoryMode=).
group=daemon
getent group "$group" >/dev/null || fail "no group '$group' to stand in for tether"
args=${args/group=tether/group=$group}
url="local:$tmp/run?group=$group"
chmod 755 "$tmp"
mkdir "$tmp/run"
chgrp "$group" "$tmp/run"
chmod "$(value RuntimeDirectoryMode)" "$tmp/run"
# shellcheck disable=SC2086
"$bin/calculator-server" $args >"$tmp/server.log" 2>&1 &
pid=$!
for _ in $(seq 200); do
    [ -n "$(find "$tmp/run" -name '*.json' 2>/dev/null)" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/server.log" >&2; fail "the server exited"; }
    sleep 0.05
done
"$bin/tether" list calculator --registry "$url" | grep -q serving ||
    { kill -KILL "$pid"; fail "the server with the unit's arguments is not listed"; }
# A reader that is not the server's user, only a member of its group,
# lists it; the same user outside the group is refused.
command -v setpriv >/dev/null || { kill -KILL "$pid"; fail "setpriv (util-linux) is required"; }
setpriv --reuid=65534 --regid="$group" --clear-groups \
    "$bin/tether" list calculator --registry "$url" >"$tmp/member.out" 2>&1
grep -q serving "$tmp/member.out" ||
    { cat "$tmp/member.out" >&2; kill -KILL "$pid"; fail "a member of the group cannot read the registry"; }
if setpriv --reuid=65534 --regid=65534 --clear-groups \
    "$bin/tether" list calculator --registry "$url" >"$tmp/outsider.out" 2>&1; then
    kill -KILL "$pid"
    fail "a user outside the group read the registry: $(cat "$tmp/outsider.out")"
fi
grep -q "Permission denied" "$tmp/outsider.out" ||
    { cat "$tmp/outsider.out" >&2; kill -KILL "$pid"; fail "the outsider's refusal does not say why"; }
kill -TERM "$pid"
wait "$pid" || fail "the server did not stop cleanly on SIGTERM"
echo "systemd unit: ok"
