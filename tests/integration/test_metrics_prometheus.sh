#!/usr/bin/env bash
# test_metrics_prometheus.sh - a real Prometheus scrapes calculator-server's
# metrics listener; the series it stored, read back through its HTTP API
# (/api/v1/query), count exactly the calls this test made.  promtool
# accepts the exposition text; /health answers SERVING, then 503 DRAINING
# while a graceful stop waits for a call in flight.  Prometheus, the
# servers and their clients are stopped by PID (process groups) on exit.
#
# A missing prometheus or promtool fails the test (scripts/setup.sh
# installs Debian's prometheus).
set -u
. "$(dirname "$0")/ops_lib.sh"

for tool in prometheus promtool; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (run scripts/setup.sh)"
done

# --delay-ms puts every call on the worker pool for 300 ms (a latency
# the histogram must show).
start_server calc --delay-ms 300
note "server on $ADDR, metrics on $MADDR"

# ---- the exposition text itself -------------------------------------------
http_get "http://$MADDR/metrics" "$TMP/metrics.txt"
[ "$(cat "$TMP/status")" = 200 ] || fail "/metrics answered $(cat "$TMP/status")"
promtool check metrics <"$TMP/metrics.txt" >"$TMP/promtool.log" 2>&1 ||
    fail "promtool check metrics rejected the text: $(cat "$TMP/promtool.log")"
grep -q '^# TYPE tether_server_call_duration_seconds histogram$' "$TMP/metrics.txt" ||
    fail "no histogram TYPE line"
grep -q '^tether_server_calls_total{method="Calculator.Add",code="OK"} 0$' "$TMP/metrics.txt" ||
    fail "no zero Add series before any call"

# ---- Prometheus ---------------------------------------------------------------
PPORT=$(free_port)
mkdir -p "$TMP/prom-data"
cat >"$TMP/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: calculator
    static_configs:
      - targets: ["$MADDR"]
YML
promtool check config "$TMP/prometheus.yml" >"$TMP/promtool-config.log" 2>&1 ||
    fail "promtool rejected the test's own config"
setsid prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom-data" \
    --web.listen-address="127.0.0.1:$PPORT" >"$TMP/prometheus.log" 2>&1 &
PIDS+=("$!")
ready() { http_get "http://127.0.0.1:$PPORT/-/ready" /dev/null 2>/dev/null &&
    [ "$(cat "$TMP/status")" = 200 ]; }
wait_until 90 "prometheus to be ready" ready

# query EXPR - the value of PromQL EXPR's single result, or "none".
query() {
    python3 - "http://127.0.0.1:$PPORT/api/v1/query" "$1" <<'PY'
import json, sys, urllib.parse, urllib.request
url = sys.argv[1] + "?" + urllib.parse.urlencode({"query": sys.argv[2]})
with urllib.request.urlopen(url, timeout=10) as r:
    d = json.load(r)
res = d["data"]["result"] if d.get("status") == "success" else []
print(res[0]["value"][1] if len(res) == 1 else "none")
PY
}
# expect EXPR VALUE - wait until Prometheus has scraped EXPR at VALUE.
expect() {
    local got
    is() { got=$(query "$1"); [ "$got" = "$2" ]; }
    wait_until 60 "$1 == $2 in Prometheus (last: ${got:-nothing})" is "$1" "$2"
    note "prometheus: $1 = $2"
}

# Until Prometheus has scraped once, nothing is known: the target must be up.
expect 'up{job="calculator"}' 1

# ---- calls ------------------------------------------------------------------------
calls 5 add 2 3
calls 3 sub 9 4
calls 2 div 1 0 # EREMOTE: divide by zero
expect 'tether_server_calls_total{method="Calculator.Add",code="OK"}' 5
expect 'tether_server_calls_total{method="Calculator.Sub",code="OK"}' 3
expect 'tether_server_calls_total{method="Calculator.Div",code="EREMOTE"}' 2
expect 'tether_server_calls_total{method="Calculator.Div",code="OK"}' 0
expect 'tether_server_call_duration_seconds_count{method="Calculator.Add"}' 5
# Every call took at least its 300 ms delay: none is in the buckets below.
expect 'tether_server_call_duration_seconds_bucket{method="Calculator.Add",le="0.25"}' 0
expect 'tether_server_call_duration_seconds_bucket{method="Calculator.Add",le="+Inf"}' 5
expect 'sum(tether_server_calls_in_flight)' 0
# Each calculator-client call is one connection.
expect 'tether_server_connections_accepted_total' 10
expect 'tether_server_connections_open' 0
expect 'tether_server_protocol_errors_total' 0
expect 'tether_server_serving' 1
# An Add request is two varint fields: 2 bytes of tag and 1 per value.
expect 'tether_server_request_bytes_total{method="Calculator.Add"}' 20

# ---- a protocol error is counted -----------------------------------------------
python3 - "$ADDR" <<'PY'
import socket, sys
h, p = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((h, int(p)), timeout=10)
s.sendall(b"GARBAGE-NOT-A-PREFACE\r\n" * 4)
try:
    while s.recv(4096):
        pass
except OSError:
    pass
PY
expect 'tether_server_protocol_errors_total' 1

# ---- /health: 200 SERVING, then 503 DRAINING while a call finishes -----------
# A server of its own whose calls take 3 s (calculator-client waits 5 s):
# the graceful stop waits for the one in flight, and /health is read
# during that wait.
start_server slow --delay-ms 3000 --drain-ms 60000
http_get "http://$MADDR/health" "$TMP/health.txt"
[ "$(cat "$TMP/status")" = 200 ] && grep -qx SERVING "$TMP/health.txt" ||
    fail "/health while serving: $(cat "$TMP/status") $(cat "$TMP/health.txt")"
# A slow call in flight keeps the drain going; during it /health says 503.
"$BIN/calculator-client" --addr "$ADDR" add 1 1 >>"$TMP/client.log" 2>&1 &
CPID=$!
PIDS+=("$CPID")
inflight() { http_get "http://$MADDR/metrics" "$TMP/m2.txt" &&
    grep -q '^tether_server_calls_in_flight{method="Calculator.Add"} 1$' "$TMP/m2.txt"; }
wait_until 30 "the slow call to be in flight" inflight
kill -TERM "$SPID"
draining() { http_get "http://$MADDR/health" "$TMP/health.txt" 2>/dev/null &&
    [ "$(cat "$TMP/status")" = 503 ] && grep -qx DRAINING "$TMP/health.txt"; }
wait_until 30 "/health to answer 503 DRAINING" draining
note "/health: 503 DRAINING during the graceful stop"
wait "$CPID" || fail "the call in flight during the drain failed"
echo "1 passed, 0 failed"
