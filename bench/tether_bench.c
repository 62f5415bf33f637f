/*
 * tether_bench.c - tether's own benchmark client, on the public API only.
 *
 * It calls Calculator.Add(1, 2) on bin/calculator-server, so the bytes on
 * the wire are the ones the raw floor (floor.c) sends.
 *
 *   tether-bench-client --addr 127.0.0.1:PORT --mode seq [--calls N] [--warmup N]
 *       one tether_client, one call in flight: tether_client_call() in a
 *       loop; prints p50/p99 over N calls after N warm-up calls.
 *   tether-bench-client --addr 127.0.0.1:PORT --mode pipe [--conns C] [--depth D]
 *                       [--seconds S] [--warmup-ms W]
 *       C tether_clients (one connection each), D calls in flight on each:
 *       every completion callback starts the next call, so the window
 *       stays full without any client-side batching logic.
 *   --codec native|gob|jsonrpc (either mode)
 *       the wire format (a Go net/rpc server speaks gob or jsonrpc).
 *   --by-name (either mode)
 *       call through a client by service name over the registry
 *       "static:ADDR" (one instance: the same server), to price the
 *       by-name layer against a direct client.
 *   --probe-ms N|off (either mode)
 *       the connection liveness probe period (tether_client_config.probe_ms),
 *       or no probes, to price them.
 *   --raw 1 (pipe mode)
 *       the same calls with the request as bytes packed once at start and
 *       the reply checked as bytes (tether_client_call_async_raw): the
 *       client's side of a call without protobuf-c, to price the message
 *       layer against the rest of the client.
 *   --meta N (either mode)
 *       send N small metadata pairs ("k1"="v1", ...) with every call, to
 *       price the call context against a bare call.
 *   --ctl FIFO (either mode, may be given twice)
 *       after warm-up write "mark" to FIFO, after the measured calls
 *       "report"; bench/alloccount.c, preloaded into the server (or this
 *       client), counts the allocations made in between.  The RESULT line
 *       then carries window_calls, the number of calls in that window.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "bench_util.h"
#include "calculator.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "tether/client.h"

/* The request all calls send; read-only, so every thread can share it. */
static Args add_args = ARGS__INIT;

/* The call options every call passes: metadata only with --meta. */
#define MAX_META 16
static tether_meta meta[MAX_META];
static tether_call_opts call_opts;
static const tether_call_opts *opts_p; /* NULL without --meta: a bare call */

/* The client config every client is made with (--codec). */
static tether_client_config client_cfg;
static int by_name; /* --by-name */

/* --raw: Args{1, 2} packed once, and the packed Int64Value{3} expected. */
static int raw;
static uint8_t raw_req[16], raw_rep[16];
static size_t raw_req_len, raw_rep_len;

/* A client for addr: direct, or by name over static:addr. */
static tether_err
make_client(const char *addr, tether_client **c)
{
    if (!by_name) {
        return tether_client_create(addr, &client_cfg, c);
    }
    char url[300];
    snprintf(url, sizeof url, "static:%s", addr);
    tether_registry *reg = NULL;
    tether_err err = tether_registry_open(url, &reg);
    if (err == TETHER_OK) {
        err = tether_client_create_service(reg, "calculator", &client_cfg, c);
        tether_registry_close(reg);
    }
    return err;
}

/* --mode connect: new connections per second, one after another (each a
 * tether_client_create, which connects, handshakes with TLS, and one call
 * so the server has taken the connection), for S seconds. */
static int check_reply(const ProtobufCMessage *msg);

static int
run_connect(const char *addr, double seconds)
{
    uint64_t end = bench_now_ns() + (uint64_t)(seconds * 1e9);
    uint64_t t0 = bench_now_ns();
    long n = 0;
    while (bench_now_ns() < end) {
        tether_client *c = NULL;
        tether_err err = make_client(addr, &c);
        ProtobufCMessage *reply = NULL;
        if (err == TETHER_OK) {
            err =
                tether_client_call(c, BENCH_METHOD, &add_args.base,
                                   &google__protobuf__int64_value__descriptor, &reply, NULL, NULL);
        }
        if (err != TETHER_OK || !check_reply(reply)) {
            fprintf(stderr, "tether-bench-client: connect %s: %s\n", addr, tether_strerror(err));
            return 1;
        }
        tether_msg_free(reply);
        tether_client_destroy(c);
        n++;
    }
    double s = (double)(bench_now_ns() - t0) / 1e9;
    printf("RESULT conns_per_s=%.0f conns=%ld\n", (double)n / s, n);
    return 0;
}

#define MAX_CTL 2
static const char *ctl_paths[MAX_CTL];
static int n_ctl;

/*
 * ctl_send - write one command line to each control FIFO.  Plain
 * open/write and no stdio: when this process is itself preloaded with the
 * allocation counter, the bookkeeping must not allocate.  The pause lets
 * the counter's thread act before the measured calls start.
 */
static void
ctl_send(const char *cmd)
{
    for (int i = 0; i < n_ctl; i++) {
        int fd = open(ctl_paths[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            perror("tether-bench-client: open --ctl");
            continue;
        }
        (void)bench_write_all(fd, cmd, strlen(cmd));
        close(fd);
    }
    if (n_ctl > 0) {
        bench_sleep_ms(200);
    }
}

static int
check_reply(const ProtobufCMessage *msg)
{
    const Google__Protobuf__Int64Value *v = (const Google__Protobuf__Int64Value *)msg;
    return msg != NULL && msg->descriptor == &google__protobuf__int64_value__descriptor &&
           v->value == add_args.a + add_args.b;
}

static int
run_seq(tether_client *c, long calls, long warmup)
{
    uint64_t *lat = calloc((size_t)calls, sizeof(uint64_t));
    if (lat == NULL) {
        return 1;
    }
    for (long i = 0; i < warmup + calls; i++) {
        if (i == warmup) {
            ctl_send("mark\n");
        }
        ProtobufCMessage *reply = NULL;
        char *errtext = NULL;
        uint64_t t0 = bench_now_ns();
        tether_err err = tether_client_call(c, BENCH_METHOD, &add_args.base,
                                            &google__protobuf__int64_value__descriptor, &reply,
                                            opts_p, &errtext);
        uint64_t t1 = bench_now_ns();
        if (err != TETHER_OK || !check_reply(reply)) {
            fprintf(stderr, "tether-bench-client: call %ld: %s%s%s\n", i, tether_strerror(err),
                    errtext ? ": " : "", errtext ? errtext : "");
            tether_free(errtext);
            return 1;
        }
        tether_msg_free(reply);
        if (i >= warmup) {
            lat[i - warmup] = t1 - t0;
        }
    }
    ctl_send("report\n");
    qsort(lat, (size_t)calls, sizeof(lat[0]), bench_cmp_u64);
    printf("RESULT p50_us=%.2f p99_us=%.2f calls=%ld window_calls=%ld\n",
           (double)bench_percentile(lat, (size_t)calls, 0.50, 1) / 1e3,
           (double)bench_percentile(lat, (size_t)calls, 0.99, 1) / 1e3, calls, calls);
    free(lat);
    return 0;
}

struct pipe_conn {
    tether_client *client;
    _Atomic uint64_t done;   /* calls completed successfully */
    _Atomic uint64_t errors; /* calls that failed, or could not be re-issued */
    _Atomic int first_err;
};

static atomic_int pipe_stop;

/*
 * on_reply - completion of one pipelined call, on the client's I/O thread.
 * Starting the next call from here keeps exactly depth calls in flight
 * until pipe_stop is set; then the window drains.
 */
static void on_reply(tether_client *c, const tether_reply *r, void *arg);

/* One more call in flight on c (typed, or raw with --raw). */
static tether_err
pipe_start(tether_client *c, struct pipe_conn *pc)
{
    if (raw) {
        return tether_client_call_async_raw(c, BENCH_METHOD, raw_req, raw_req_len, opts_p,
                                            on_reply, pc);
    }
    return tether_client_call_async(c, BENCH_METHOD, &add_args.base,
                                    &google__protobuf__int64_value__descriptor, opts_p, on_reply,
                                    pc);
}

static void
on_reply(tether_client *c, const tether_reply *r, void *arg)
{
    struct pipe_conn *pc = arg;
    int ok = raw ? r->len == raw_rep_len && memcmp(r->data, raw_rep, raw_rep_len) == 0
                 : check_reply(r->msg);
    if (r->err != TETHER_OK || !ok) {
        int none = 0;
        atomic_compare_exchange_strong(&pc->first_err, &none,
                                       r->err != TETHER_OK ? (int)r->err : -1);
        atomic_fetch_add_explicit(&pc->errors, 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&pc->done, 1, memory_order_relaxed);
    }
    tether_msg_free(r->msg);
    if (atomic_load_explicit(&pipe_stop, memory_order_relaxed)) {
        return;
    }
    tether_err err = pipe_start(c, pc);
    if (err != TETHER_OK) {
        int none = 0;
        atomic_compare_exchange_strong(&pc->first_err, &none, (int)err);
        atomic_fetch_add_explicit(&pc->errors, 1, memory_order_relaxed);
    }
}

static uint64_t
pipe_total(struct pipe_conn *pcs, int n)
{
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        sum += atomic_load_explicit(&pcs[i].done, memory_order_relaxed);
    }
    return sum;
}

static int
run_pipe(const char *addr, int conns, int depth, double seconds, long warmup_ms)
{
    struct pipe_conn *pcs = calloc((size_t)conns, sizeof(*pcs));
    if (pcs == NULL) {
        return 1;
    }
    for (int i = 0; i < conns; i++) {
        tether_err err = make_client(addr, &pcs[i].client);
        if (err != TETHER_OK) {
            fprintf(stderr, "tether-bench-client: connect %s: %s\n", addr, tether_strerror(err));
            return 1;
        }
    }
    for (int i = 0; i < conns; i++) {
        for (int d = 0; d < depth; d++) {
            tether_err err = pipe_start(pcs[i].client, &pcs[i]);
            if (err != TETHER_OK) {
                fprintf(stderr, "tether-bench-client: call_async: %s\n", tether_strerror(err));
                return 1;
            }
        }
    }
    bench_sleep_ms((unsigned)warmup_ms);
    /* The allocation window opens when the counter reads "mark", a moment
     * after this count is taken: calls completing in between make the
     * per-call figure approximate (by about depth calls in 10^5). */
    uint64_t mark = pipe_total(pcs, conns);
    ctl_send("mark\n");
    uint64_t c0 = pipe_total(pcs, conns);
    uint64_t t0 = bench_now_ns();
    bench_sleep_ms((unsigned)(seconds * 1000));
    uint64_t c1 = pipe_total(pcs, conns);
    uint64_t t1 = bench_now_ns();
    atomic_store(&pipe_stop, 1);

    /* Let every call in flight complete before destroying the clients, so
     * the drain is counted and no callback sees TETHER_ECLOSED. */
    uint64_t deadline = bench_now_ns() + 10ull * 1000000000ull;
    for (int i = 0; i < conns; i++) {
        while (tether_client_get_pending(pcs[i].client) > 0 && bench_now_ns() < deadline) {
            bench_sleep_ms(1);
        }
    }
    uint64_t window = pipe_total(pcs, conns) - mark;
    ctl_send("report\n");
    uint64_t errors = 0;
    int first_err = 0;
    for (int i = 0; i < conns; i++) {
        tether_client_destroy(pcs[i].client);
        errors += atomic_load(&pcs[i].errors);
        if (first_err == 0) {
            first_err = atomic_load(&pcs[i].first_err);
        }
    }
    free(pcs);
    if (errors > 0) {
        fprintf(stderr, "tether-bench-client: %llu calls failed (first: %s)\n",
                (unsigned long long)errors,
                first_err > 0 ? tether_strerror((tether_err)first_err) : "wrong reply");
        return 1;
    }
    double rate = (double)(c1 - c0) / ((double)(t1 - t0) / 1e9);
    printf("RESULT calls_per_s=%.0f calls=%llu conns=%d depth=%d window_calls=%llu\n", rate,
           (unsigned long long)(c1 - c0), conns, depth, (unsigned long long)window);
    return 0;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: tether-bench-client --addr HOST:PORT --mode seq [--calls N] [--warmup N]\n"
            "       tether-bench-client --addr HOST:PORT --mode pipe [--conns C] [--depth D]\n"
            "                           [--seconds S] [--warmup-ms W]\n"
            "       tether-bench-client --addr HOST:PORT --mode connect [--seconds S]\n"
            "       any mode: [--codec native|gob|jsonrpc] [--meta N] [--by-name 1]\n"
            "                 [--raw 1] (pipe mode: request and reply as bytes)\n"
            "                 [--tls-ca CA.pem] (TLS, verifying the server against CA.pem)\n"
            "                    [--ctl FIFO]... (allocation counting, see\n"
            "                    bench/README.md)\n");
}

int
main(int argc, char **argv)
{
    struct bench_opts o;
    bench_opts_init(&o);
    tether_client_config_init(&client_cfg);

    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (bench_opt(&o, k, v)) {
            continue;
        }
        if (strcmp(k, "--ctl") == 0 && n_ctl < MAX_CTL) {
            ctl_paths[n_ctl++] = v;
        } else if (strcmp(k, "--codec") == 0 &&
                   (strcmp(v, "native") == 0 || strcmp(v, "gob") == 0 ||
                    strcmp(v, "jsonrpc") == 0)) {
            client_cfg.codec = strcmp(v, "gob") == 0       ? TETHER_CODEC_GOB
                               : strcmp(v, "jsonrpc") == 0 ? TETHER_CODEC_JSONRPC
                                                           : TETHER_CODEC_NATIVE;
        } else if (strcmp(k, "--probe-ms") == 0) {
            client_cfg.probe_ms = strcmp(v, "off") == 0 ? TETHER_OFF : (uint32_t)atoi(v);
        } else if (strcmp(k, "--tls-ca") == 0) {
            client_cfg.tls.enable = 1;
            client_cfg.tls.ca_file = v;
        } else if (strcmp(k, "--raw") == 0) {
            raw = strcmp(v, "0") != 0;
        } else if (strcmp(k, "--by-name") == 0) {
            by_name = strcmp(v, "0") != 0;
        } else if (strcmp(k, "--meta") == 0 && strtol(v, NULL, 10) >= 0 &&
                   strtol(v, NULL, 10) <= MAX_META) {
            static char kv[MAX_META][2][8];
            call_opts.nmeta = (size_t)strtol(v, NULL, 10);
            for (size_t j = 0; j < call_opts.nmeta; j++) {
                snprintf(kv[j][0], sizeof kv[j][0], "k%zu", j + 1);
                snprintf(kv[j][1], sizeof kv[j][1], "v%zu", j + 1);
                meta[j].key = kv[j][0];
                meta[j].value = kv[j][1];
            }
            call_opts.meta = meta;
            opts_p = call_opts.nmeta > 0 ? &call_opts : NULL;
        } else {
            usage();
            return 2;
        }
    }
    if (o.addr == NULL || o.calls < 1 || o.conns < 1 || o.depth < 1) {
        usage();
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    add_args.a = 1;
    add_args.b = 2;
    /* The floor sends BENCH_REQ_LEN/BENCH_REPLY_LEN bytes per call; make sure
     * that is still what this call puts on the wire. */
    Google__Protobuf__Int64Value three = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    three.value = 3;
    size_t req_len =
        BENCH_HDR_LEN + strlen(BENCH_METHOD) + BENCH_CTX_LEN + args__get_packed_size(&add_args);
    size_t rep_len = BENCH_HDR_LEN + google__protobuf__int64_value__get_packed_size(&three);
    raw_req_len = args__pack(&add_args, raw_req);
    raw_rep_len = google__protobuf__int64_value__pack(&three, raw_rep);
    if (opts_p == NULL && client_cfg.codec == TETHER_CODEC_NATIVE &&
        (req_len != BENCH_REQ_LEN || rep_len != BENCH_REPLY_LEN)) {
        fprintf(stderr, "tether-bench-client: frame sizes %zu/%zu differ from the floor's %d/%d\n",
                req_len, rep_len, BENCH_REQ_LEN, BENCH_REPLY_LEN);
        return 1;
    }

    if (strcmp(o.mode, "connect") == 0) {
        return run_connect(o.addr, o.seconds);
    }
    if (strcmp(o.mode, "pipe") == 0) {
        return run_pipe(o.addr, o.conns, o.depth, o.seconds, o.warmup_ms);
    }
    if (strcmp(o.mode, "seq") != 0) {
        usage();
        return 2;
    }
    tether_client *c = NULL;
    tether_err err = make_client(o.addr, &c);
    if (err != TETHER_OK) {
        fprintf(stderr, "tether-bench-client: connect %s: %s\n", o.addr, tether_strerror(err));
        return 1;
    }
    int rc = run_seq(c, o.calls, o.warmup);
    tether_client_destroy(c);
    return rc;
}
