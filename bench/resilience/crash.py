"""crash.py - SIGKILL -> watcher sees DELETE (driven by bench/resilience/run.sh).

Each run starts a calculator-server registered in etcd (with its crash
guardian), opens a watch on the server's key on etcd's own HTTP gateway
(a raw socket, no client library in between), sends the server SIGKILL and
timestamps the DELETE event.  Median, min and max over RUNS runs; then one
run with guardian=0, where the TTL applies.  Prints figures; never judges
them.
"""
import base64, json, os, signal, socket, statistics, subprocess, sys, time

BIN, EPORT = sys.argv[1], int(sys.argv[2])
RUNS = int(os.environ.get("RUNS", "20"))
TTL = os.environ.get("TTL", "10")
b64 = lambda s: base64.b64encode(s.encode()).decode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def key_present(key):
    body = json.dumps({"key": b64(key)}).encode()
    s = socket.create_connection(("127.0.0.1", EPORT))
    s.sendall(b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
              b"Connection: close\r\n\r\n" % len(body) + body)
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    return b'"kvs"' in data


def wait(cond, what, secs=30):
    end = time.monotonic() + secs
    while not cond():
        if time.monotonic() > end:
            sys.exit("bench: timed out waiting for " + what)
        time.sleep(0.01)


def guardian_of(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return None
    for k in kids:
        try:
            with open("/proc/%d/comm" % k) as f:
                if f.read().strip() == "tether-guard":
                    return k
        except OSError:
            pass
    return None


def one(extra=""):
    port = free_port()
    key = "/services/calculator/127.0.0.1:%d" % port
    url = "etcd://127.0.0.1:%d?ttl=%s%s" % (EPORT, TTL, extra)
    p = subprocess.Popen([BIN + "/calculator-server", "--listen", "127.0.0.1:%d" % port,
                          "--registry", url],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait(lambda: key_present(key), "the key")
    if not extra:
        wait(lambda: guardian_of(p.pid) is not None, "the guardian")
    body = json.dumps({"create_request": {"key": b64(key)}}).encode()
    w = socket.create_connection(("127.0.0.1", EPORT))
    w.sendall(b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    buf = b""
    while b'"created":true' not in buf:
        buf += w.recv(65536)
    buf = b""
    t0 = time.perf_counter()
    os.kill(p.pid, signal.SIGKILL)
    while b'"type":"DELETE"' not in buf:
        d = w.recv(65536)
        if not d:
            sys.exit("bench: watch closed")
        buf += d
    t1 = time.perf_counter()
    w.close()
    p.wait(30)
    return (t1 - t0) * 1e3


ms = [one() for _ in range(RUNS)]
print("SIGKILL -> watcher sees DELETE, crash guardian   median %.2f ms  (min %.2f, max %.2f, "
      "%d runs)" % (statistics.median(ms), min(ms), max(ms), len(ms)))
print("SIGKILL -> watcher sees DELETE, guardian=0       %.0f ms  (one run, ttl %s s)"
      % (one("&guardian=0"), TTL))
