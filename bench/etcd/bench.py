"""bench.py - the etcd registry figures (driven by bench/etcd/run.sh).

1. SIGTERM -> DELETE: a calculator-server registered in etcd gets SIGTERM;
   a watch on etcd's own HTTP gateway (raw socket, no client library in
   between) timestamps the DELETE.  Median and spread over RUNS runs.
2. Registrations per second from one process (regbench: one registry
   object, one lease, one put per registration), and deregistrations.
3. The registry's background cost in a server: CPU (% of one core) and
   RSS of calculator-server registered in etcd, against the same server
   without a registry, both idle for IDLE_SECONDS.
Prints figures; never judges them.
"""
import base64, json, os, signal, socket, statistics, subprocess, sys, time

BIN, REGBENCH, EPORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
RUNS = int(os.environ.get("RUNS", "15"))
REGS = int(os.environ.get("REGS", "500"))
IDLE = float(os.environ.get("IDLE_SECONDS", "30"))
TTL = os.environ.get("TTL", "10")
URL = "etcd://127.0.0.1:%d?ttl=%s" % (EPORT, TTL)
b64 = lambda s: base64.b64encode(s.encode()).decode()

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p

def post(path, obj):
    body = json.dumps(obj).encode()
    s = socket.create_connection(("127.0.0.1", EPORT))
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
              % (path.encode(), len(body)) + body)
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    return data

def key_present(key):
    return b'"kvs"' in post("/v3/kv/range", {"key": b64(key)})

def wait(cond, what, secs=30):
    end = time.monotonic() + secs
    while not cond():
        if time.monotonic() > end:
            sys.exit("bench: timed out waiting for " + what)
        time.sleep(0.01)

def server(port, registry=True):
    args = [BIN + "/calculator-server", "--listen", "127.0.0.1:%d" % port]
    if registry:
        args += ["--registry", URL]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def sigterm_to_delete():
    out = []
    for _ in range(RUNS):
        port = free_port()
        key = "/services/calculator/127.0.0.1:%d" % port
        p = server(port)
        wait(lambda: key_present(key), "the key")
        body = json.dumps({"create_request": {"key": b64(key)}}).encode()
        w = socket.create_connection(("127.0.0.1", EPORT))
        w.sendall(b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body)
        buf = b""
        while b'"created":true' not in buf:
            buf += w.recv(65536)
        buf = b""
        t0 = time.perf_counter()
        os.kill(p.pid, signal.SIGTERM)
        while b'"type":"DELETE"' not in buf:
            d = w.recv(65536)
            if not d:
                sys.exit("bench: watch closed")
            buf += d
        t1 = time.perf_counter()
        w.close()
        p.wait(30)
        out.append((t1 - t0) * 1e3)
    return out

def proc_cpu_rss(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return ticks, rss

def idle_cost():
    hz = os.sysconf("SC_CLK_TCK")
    pa, pb = free_port(), free_port()
    a = server(pa, True)
    b = server(pb, False)
    wait(lambda: key_present("/services/calculator/127.0.0.1:%d" % pa), "the key")
    time.sleep(2)
    ta0, _ = proc_cpu_rss(a.pid)
    tb0, _ = proc_cpu_rss(b.pid)
    time.sleep(IDLE)
    ta1, ra = proc_cpu_rss(a.pid)
    tb1, rb = proc_cpu_rss(b.pid)
    for p in (a, b):
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    cpu = lambda t0, t1: (t1 - t0) / hz / IDLE * 100
    return cpu(ta0, ta1), cpu(tb0, tb1), ra, rb

ms = sigterm_to_delete()
print("SIGTERM -> watcher sees DELETE   median %.2f ms  (min %.2f, max %.2f, %d runs)"
      % (statistics.median(ms), min(ms), max(ms), len(ms)))
r = subprocess.run([REGBENCH, URL, str(REGS)], capture_output=True, text=True, check=True)
lines = dict((l.split()[0], (int(l.split()[1]), float(l.split()[2])))
             for l in r.stdout.splitlines())
for k in ("register", "deregister"):
    n, t = lines[k]
    print("%-32s %8.0f /s   (%d in %.0f ms, one process, one etcd)" % (k + "s", n / t * 1e3, n, t))
ca, cb, ra, rb = idle_cost()
print("server CPU, idle %.0f s (ttl %s s)   with etcd registry %.3f %%  without %.3f %%  "
      "-> registry %.3f %% of one core" % (IDLE, TTL, ca, cb, ca - cb))
print("server RSS                        with etcd registry %d KiB  without %d KiB  "
      "-> registry %d KiB" % (ra, rb, ra - rb))
