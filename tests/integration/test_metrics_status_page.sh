#!/usr/bin/env bash
# test_metrics_status_page.sh - the status page at "/" of calculator-server's
# metrics listener, opened in a real headless Chromium: after its script
# has polled vars.json, the page shows the services, every method with the
# number of calls this test made, the connection counts and the
# registration.  The document loads nothing from anywhere else.  A
# screenshot is taken too (kept with KEEP_SHOT=FILE).
#
# A missing chromium fails the test (scripts/setup.sh installs Debian's).
set -u
. "$(dirname "$0")/ops_lib.sh"

CHROME=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROME" ] || fail "chromium is not installed (run scripts/setup.sh)"

start_server calc --registry "local:$TMP/registry" --name calc-status
note "server on $ADDR, metrics on $MADDR"
calls 7 add 2 3
calls 2 div 1 0 # two errors

# ---- the document itself: self-contained -------------------------------------
http_get "http://$MADDR/" "$TMP/page.html"
[ "$(cat "$TMP/status")" = 200 ] || fail "/ answered $(cat "$TMP/status")"
if grep -nE '(src|href)=|@import|url\(' "$TMP/page.html"; then
    fail "the status page refers to outside resources"
fi

# chromium [ARGS...] - headless Chromium on the page, in its own process
# group and profile, bounded in time; its PID is recorded for cleanup.
chromium_run() {
    setsid "$CHROME" --headless --no-sandbox --disable-gpu --no-first-run \
        --user-data-dir="$TMP/profile" --virtual-time-budget=5000 "$@" \
        "http://$MADDR/" 2>>"$TMP/chromium.log" &
    local pid=$!
    PIDS+=("$pid")
    local end=$(($(now_ms) + 120000))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$(now_ms)" -lt "$end" ] || fail "chromium did not finish in 120 s"
        sleep 0.2
    done
    wait "$pid" || fail "chromium failed"
}

chromium_run --dump-dom >"$TMP/dom.html"
python3 - "$TMP/dom.html" "$ADDR" "local:$TMP/registry" <<'PY' || fail "the page does not show what it should"
import sys
from html.parser import HTMLParser

class Page(HTMLParser):
    """Collects each table row's cells, keyed by its data-method, and the
    text of elements with an id."""
    def __init__(self):
        super().__init__()
        self.rows, self.ids, self.row, self.stack = {}, {}, None, []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-method" in a:
            self.row = a["data-method"]
            self.rows[self.row] = []
        if tag == "td" and self.row is not None:
            self.rows[self.row].append("")
        self.stack.append((tag, a.get("id")))
    def handle_endtag(self, tag):
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break
        if tag == "tr":
            self.row = None
    def handle_data(self, data):
        if self.row is not None and self.rows[self.row]:
            self.rows[self.row][-1] += data
        for _, i in self.stack:
            if i:
                self.ids[i] = self.ids.get(i, "") + data

p = Page()
p.feed(open(sys.argv[1]).read())
ok = True
def check(cond, what):
    global ok
    print(("ok   " if cond else "FAIL ") + what)
    ok = ok and cond

check(p.ids.get("state", "").strip() == "SERVING", "state SERVING: %r" % p.ids.get("state"))
for m in ("Calculator.Add", "Calculator.Sub", "Calculator.Mul", "Calculator.Div"):
    check(m in p.rows, "row for " + m)
add = p.rows.get("Calculator.Add", [])
check(len(add) > 3 and add[1] == "7" and add[3] == "0", "Add: 7 calls, 0 errors: %r" % add)
div = p.rows.get("Calculator.Div", [])
check(len(div) > 3 and div[1] == "2" and div[3] == "2", "Div: 2 calls, 2 errors: %r" % div)
check("Calculator" in p.ids.get("services", ""), "services list Calculator")
conns = p.ids.get("conns", "")
check("accepted9" in conns.replace(" ", ""), "9 connections accepted: %r" % conns)
reg = p.ids.get("registry", "")
check("calc-status @ " + sys.argv[2] in reg, "registered as calc-status @ addr: %r" % reg)
check(sys.argv[3] in reg, "the registry's URL: %r" % reg)
sys.exit(0 if ok else 1)
PY

chromium_run --window-size=1280,900 --screenshot="$TMP/status.png"
[ -s "$TMP/status.png" ] || fail "no screenshot"
python3 - "$TMP/status.png" <<'PY' || fail "the screenshot is not a 1280x900 PNG"
import struct, sys
d = open(sys.argv[1], "rb").read(32)
assert d[:8] == b"\x89PNG\r\n\x1a\n"
w, h = struct.unpack(">II", d[16:24])
assert (w, h) == (1280, 900), (w, h)
PY
if [ -n "${KEEP_SHOT:-}" ]; then
    cp "$TMP/status.png" "$KEEP_SHOT"
fi
echo "1 passed, 0 failed"
