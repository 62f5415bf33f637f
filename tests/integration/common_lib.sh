# common_lib.sh - the helpers every shell test uses (sourced, not run):
# failing with the last lines of every log in $TMP, notes, a millisecond
# clock, a free port, and a generous wait.  The caller sets TMP first.

# fail MSG - say why, show the tail of each $TMP/*.log, exit 1.
fail() {
    echo "FAIL: $*" >&2
    for f in "$TMP"/*.log; do
        [ -f "$f" ] || continue
        echo "---- $(basename "$f") (last 15 lines)" >&2
        tail -n 15 "$f" >&2
    done
    exit 1
}

# note MSG - a line of the test's findings.
note() {
    echo "# $*"
}

# now_ms - a monotonic-enough clock in milliseconds.
now_ms() {
    local t
    t=$(date +%s%N)
    echo $((t / 1000000))
}

# free_port - a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# wait_until SECONDS WHAT CMD... - run CMD until it succeeds; fail the test
# after SECONDS.  Deadlines are generous: the machine may be slow and shared.
wait_until() {
    local secs=$1 what=$2
    shift 2
    local end=$(($(now_ms) + secs * 1000))
    until "$@"; do
        if [ "$(now_ms)" -gt "$end" ]; then
            fail "timed out after ${secs}s waiting for: $what"
        fi
        sleep 0.05
    done
}
