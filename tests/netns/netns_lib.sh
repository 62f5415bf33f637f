# netns_lib.sh - a multi-host test bed on loopback only (sourced by tests,
# not run).  Needs root (or CAP_NET_ADMIN and CAP_SETUID), iproute2,
# nftables and util-linux's setpriv: scripts/setup.sh installs them.
#
#   source tests/netns/netns_lib.sh
#   netns_enter "$@"            # first thing: re-runs this script inside a
#                               # private network namespace (see below)
#   netns_host etcd 2           # host "etcd" is 127.0.0.2
#   netns_host srv 3
#   on_bg etcd etcd --listen-client-urls http://127.0.0.2:2379 ...
#   on srv some-client --connect 127.0.0.2:2379   # connects from 127.0.0.3
#   netns_cut srv etcd [PORT]   # drop everything between them (or to PORT)
#   netns_heal [srv etcd [PORT]]
#
# The namespace: netns_enter creates `tt-<pid>-<n>` with `ip netns add`,
# brings its lo up, and runs the calling script again inside it (marked by
# TT_NETNS in the environment), so every command of the script, its helper
# functions included, runs there and sees only that namespace's lo.  The
# outer script waits for it and then, on every exit path (normal end,
# failure, SIGINT/SIGTERM/SIGHUP: the traps), kills by PID whatever still
# runs in the namespace (`ip netns pids`) and deletes it by name.
#
# Hosts: every simulated host has its own address 127.0.0.X (2..254; the
# script itself is 127.0.0.1) and its own uid, 40000+X.  A policy-routing
# rule sends that uid's traffic through a table whose only route is
# `local 127.0.0.0/8 src 127.0.0.X`, so whatever a host's process connects
# to, its packets come from 127.0.0.X: etcd members, servers, clients need
# no option for it.  It binds to 127.0.0.X when told to listen there.
# Running as another uid, a host's process can read what is world-readable
# and write where netns_own gave it a directory; redirections (>log) are
# opened by the script, as root.
#
# Partitions: nftables rules in the namespace's own table (inet tt_netns),
# on the output hook, so a packet between the two hosts is dropped when it
# is sent: a connect times out (no RST, no ICMP), an open connection stops
# moving; healing restores both.  No address outside 127.0.0.0/8 is ever
# used, and nothing outside the namespace is touched.

# netns_enter "$@" - see above.  Returns (inside the namespace) or exits
# with the inner run's status (outside).
netns_enter() {
    if [ -n "${TT_NETNS:-}" ]; then
        _netns_inner_setup
        return 0
    fi
    local tool
    for tool in ip nft setpriv; do
        command -v "$tool" >/dev/null || {
            echo "FAIL: $tool is not installed (run scripts/setup.sh)" >&2
            exit 1
        }
    done
    _NETNS_SEQ=$((${_NETNS_SEQ:-0} + 1))
    TT_NETNS="tt-$$-$_NETNS_SEQ"
    _NETNS_CHILD=""
    trap _netns_outer_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    ip netns add "$TT_NETNS" || {
        echo "FAIL: cannot create network namespace $TT_NETNS (needs root)" >&2
        exit 1
    }
    ip netns exec "$TT_NETNS" ip link set lo up || exit 1
    local script
    script=$(readlink -f "$0")
    TT_NETNS=$TT_NETNS ip netns exec "$TT_NETNS" bash "$script" "$@" &
    _NETNS_CHILD=$!
    local rc=0
    wait "$_NETNS_CHILD" || rc=$?
    _NETNS_CHILD=""
    exit "$rc"
}

_netns_outer_cleanup() {
    local p pass
    if [ -n "${_NETNS_CHILD:-}" ]; then
        kill -TERM "$_NETNS_CHILD" 2>/dev/null
        wait "$_NETNS_CHILD" 2>/dev/null
    fi
    # Whatever the inner run left behind (it cleans up after itself; this
    # covers a run that was killed): by PID, then the namespace by name.
    for pass in 1 2 3; do
        for p in $(ip netns pids "$TT_NETNS" 2>/dev/null); do
            kill -KILL "$p" 2>/dev/null
        done
        [ -z "$(ip netns pids "$TT_NETNS" 2>/dev/null)" ] && break
        sleep 0.2
    done
    ip netns del "$TT_NETNS" 2>/dev/null
}

# Inside: policy routing needs the local table looked up after the host
# rules (1000+X), so it moves from priority 0 to 32000; and the table for
# partitions.
_netns_inner_setup() {
    ip rule add pref 32000 lookup local || return 1
    ip rule del pref 0 || return 1
    nft -f - <<'EOF' || return 1
table inet tt_netns {
    chain out {
        type filter hook output priority 0; policy accept;
    }
}
EOF
    declare -gA NETNS_IP NETNS_UID
    NETNS_IP[self]=127.0.0.1
}

# netns_host NAME X - host NAME has address 127.0.0.X and uid 40000+X.
netns_host() {
    local name=$1 x=$2
    case "$x" in
    '' | *[!0-9]*)
        echo "netns_host: '$x' is not a number" >&2
        return 1
        ;;
    esac
    if [ "$x" -lt 2 ] || [ "$x" -gt 254 ]; then
        echo "netns_host: 127.0.0.$x: X must be 2..254 (127.0.0.1 is the script)" >&2
        return 1
    fi
    local ip=127.0.0.$x uid=$((40000 + x))
    NETNS_IP[$name]=$ip
    NETNS_UID[$name]=$uid
    # No `ip addr add`: 127.0.0.0/8 is local on lo already, and a /32 of
    # its own would make the script's connections to X come from X.
    ip route add local 127.0.0.0/8 dev lo src "$ip" table "$uid" 2>/dev/null || true
    ip rule add pref $((1000 + x)) uidrange "$uid-$uid" lookup "$uid"
}

# netns_ip NAME - the host's address.
netns_ip() {
    echo "${NETNS_IP[$1]:?unknown host $1}"
}

# netns_own NAME PATH... - make PATHs (created as directories if missing)
# the host's, so its processes can write there.
netns_own() {
    local name=$1 uid
    uid=${NETNS_UID[$1]:?unknown host $1}
    shift
    mkdir -p "$@" && chown -R "$uid:$uid" "$@"
}

# on NAME CMD... - run CMD as host NAME, in the foreground.
on() {
    local name=$1 uid
    uid=${NETNS_UID[$1]:?unknown host $1}
    shift
    setpriv --reuid="$uid" --regid="$uid" --clear-groups --inh-caps=-all -- "$@"
}

# on_bg NAME CMD... - the same in the background; the PID is in $! as for
# any background command, and goes into PIDS (etcd_lib.sh's list of what
# its cleanup kills) when that exists.
on_bg() {
    local name=$1 uid
    uid=${NETNS_UID[$1]:?unknown host $1}
    shift
    # Not through `on`: a function in the background would be a subshell,
    # and $! its PID instead of the program's.
    setpriv --reuid="$uid" --regid="$uid" --clear-groups --inh-caps=-all -- "$@" &
    if declare -p PIDS >/dev/null 2>&1; then
        PIDS+=("$!")
    fi
}

# _netns_rules A B [PORT] - the nft rule bodies of a cut.
_netns_rules() {
    local a b
    a=$(netns_ip "$1") && b=$(netns_ip "$2") || return 1
    if [ -n "${3:-}" ]; then
        echo "ip saddr $a ip daddr $b tcp dport $3 drop comment \"tt $1 $2 $3\""
        echo "ip saddr $b ip daddr $a tcp sport $3 drop comment \"tt $1 $2 $3\""
    else
        echo "ip saddr $a ip daddr $b drop comment \"tt $1 $2 -\""
        echo "ip saddr $b ip daddr $a drop comment \"tt $1 $2 -\""
    fi
}

# netns_cut A B [PORT] - drop all traffic between hosts A and B, both ways
# (or only A's traffic to B's PORT and its answers).
netns_cut() {
    local r
    _netns_rules "$@" >/dev/null || return 1
    while IFS= read -r r; do
        nft add rule inet tt_netns out "$r" || return 1
    done < <(_netns_rules "$@")
}

# netns_heal [A B [PORT]] - remove that cut, or every cut.
netns_heal() {
    if [ $# -eq 0 ]; then
        nft flush chain inet tt_netns out
        return
    fi
    local tag="tt $1 $2 ${3:--}" h
    for h in $(nft -a list chain inet tt_netns out |
        awk -v t="comment \"$tag\"" 'index($0, t) { print $NF }'); do
        nft delete rule inet tt_netns out handle "$h" || return 1
    done
}
