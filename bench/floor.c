/*
 * floor.c - the raw C TCP floor that tether's figures are compared with.
 *
 * A server and a client that do the least work a request/reply protocol
 * over TCP can do: no event loop, no encoding, no dispatch.  They move the
 * same bytes as one tether "Calculator.Add" call (BENCH_REQ_LEN-byte
 * request frames after an 8-byte preface, BENCH_REPLY_LEN-byte replies;
 * see bench_util.h), length-prefixed as tether's frames are, so the ratio
 * tether/floor measures what tether adds on top of the kernel.
 *
 *   tether-bench-floor server --listen 127.0.0.1:PORT
 *       thread per connection, blocking reads; every read is answered with
 *       one write carrying a reply for each complete request in it, so
 *       pipelined requests get batched replies without extra effort.
 *   tether-bench-floor server --listen 127.0.0.1:PORT --wait epoll
 *       the same, but every read waits in epoll_wait() first, as an
 *       event-loop server's does: the least an event loop adds (one system
 *       call per read), measured beside the floor.
 *   tether-bench-floor client --addr 127.0.0.1:PORT --mode seq
 *                             [--calls N] [--warmup N]
 *       one connection, one call in flight; prints p50/p99 of N calls.
 *   tether-bench-floor client --addr 127.0.0.1:PORT --mode pipe
 *                             [--conns C] [--depth D] [--seconds S] [--warmup-ms W]
 *       C connections, a thread each, D requests outstanding on each:
 *       whenever replies arrive, as many new requests go out in one write.
 *   tether-bench-floor freeport
 *       prints a currently free loopback TCP port (for bench/run.sh).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/epoll.h>

#include "bench_util.h"

#define IO_BUF (64 * 1024)

/* ---- server ---- */

/* --wait epoll: each connection's thread waits in epoll_wait() before
 * every read (set once at start, read by the connection threads). */
static int wait_epoll;

/*
 * serve_conn - one connection's thread.  It checks the preface, then
 * answers every complete request frame found in each read.  Partial frames
 * stay in the buffer for the next read.
 */
static void *
serve_conn(void *argp)
{
    int fd = (int)(intptr_t)argp;
    static const uint8_t preface[BENCH_PREFACE_LEN] = BENCH_PREFACE;
    uint8_t pre[BENCH_PREFACE_LEN];
    uint8_t *in = malloc(IO_BUF);
    /* Worst case every request in a full input buffer needs a reply. */
    uint8_t *out = malloc((IO_BUF / BENCH_REQ_LEN + 1) * BENCH_REPLY_LEN);
    size_t have = 0;
    int ep = -1;

    if (in == NULL || out == NULL || bench_read_all(fd, pre, sizeof(pre)) != 0 ||
        memcmp(pre, preface, sizeof(pre)) != 0) {
        goto done;
    }
    if (wait_epoll) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            goto done;
        }
    }
    for (;;) {
        struct epoll_event ev;
        if (ep >= 0 && epoll_wait(ep, &ev, 1, -1) < 0 && errno != EINTR) {
            break;
        }
        ssize_t r = read(fd, in + have, IO_BUF - have);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        have += (size_t)r;
        size_t off = 0;
        size_t nout = 0;
        while (have - off >= 4) {
            size_t flen = 4 + (size_t)bench_get_le32(in + off);
            if (flen < BENCH_HDR_LEN || flen > IO_BUF) {
                goto done; /* not a frame we sent: drop the connection */
            }
            if (have - off < flen) {
                break;
            }
            /* Same reply frame tether sends: type 2, the request's seq, body 08 03. */
            uint8_t *o = out + nout;
            memset(o, 0, BENCH_REPLY_LEN);
            bench_put_le32(o, BENCH_REPLY_LEN - 4);
            o[4] = 2;
            memcpy(o + 8, in + off + 8, 8);
            o[20] = 0x08;
            o[21] = 0x03;
            nout += BENCH_REPLY_LEN;
            off += flen;
        }
        if (nout > 0 && bench_write_all(fd, out, nout) != 0) {
            break;
        }
        memmove(in, in + off, have - off);
        have -= off;
    }
done:
    free(in);
    free(out);
    if (ep >= 0) {
        close(ep);
    }
    close(fd);
    return NULL;
}

static int
run_server(const char *addr)
{
    /* The run script stops the server with SIGTERM; default action is fine. */
    return bench_serve("floor", addr, serve_conn, 0);
}

/* ---- client ---- */

/* put_request - a request frame exactly as tether frames Calculator.Add(1, 2). */
static void
put_request(uint8_t *p, uint64_t seq)
{
    memset(p, 0, BENCH_HDR_LEN);
    bench_put_le32(p, BENCH_REQ_LEN - 4);
    p[4] = 1;
    p[5] = 1; /* a context section follows the name */
    p[6] = BENCH_METHOD_LEN;
    for (int i = 0; i < 8; i++) {
        p[8 + i] = (uint8_t)(seq >> (8 * i));
    }
    memcpy(p + BENCH_HDR_LEN, BENCH_METHOD, BENCH_METHOD_LEN);
    /* ctx_len 7, then the deadline entry: tag 1, length 4, 10000 ms. */
    static const uint8_t ctx[BENCH_CTX_LEN] = {7, 0, 0, 0, 1, 4, 0, 0x10, 0x27, 0, 0};
    memcpy(p + BENCH_HDR_LEN + BENCH_METHOD_LEN, ctx, BENCH_CTX_LEN);
    static const uint8_t args[BENCH_ARGS_LEN] = {0x08, 0x01, 0x10, 0x02};
    memcpy(p + BENCH_HDR_LEN + BENCH_METHOD_LEN + BENCH_CTX_LEN, args, BENCH_ARGS_LEN);
}

static int
open_conn(const struct sockaddr_in *sa)
{
    int fd = bench_connect(sa);
    if (fd < 0) {
        perror("floor: connect");
        return -1;
    }
    if (bench_write_all(fd, BENCH_PREFACE, BENCH_PREFACE_LEN) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int
run_seq(const struct sockaddr_in *sa, long calls, long warmup)
{
    int fd = open_conn(sa);
    if (fd < 0) {
        return 1;
    }
    uint64_t *lat = calloc((size_t)calls, sizeof(uint64_t));
    uint8_t req[BENCH_REQ_LEN];
    uint8_t rep[BENCH_REPLY_LEN];
    if (lat == NULL) {
        return 1;
    }
    for (long i = 0; i < warmup + calls; i++) {
        put_request(req, (uint64_t)i + 1);
        uint64_t t0 = bench_now_ns();
        if (bench_write_all(fd, req, sizeof(req)) != 0 ||
            bench_read_all(fd, rep, sizeof(rep)) != 0) {
            fprintf(stderr, "floor: connection lost\n");
            return 1;
        }
        uint64_t t1 = bench_now_ns();
        if (i >= warmup) {
            lat[i - warmup] = t1 - t0;
        }
    }
    close(fd);
    qsort(lat, (size_t)calls, sizeof(lat[0]), bench_cmp_u64);
    printf("RESULT p50_us=%.2f p99_us=%.2f calls=%ld\n",
           (double)bench_percentile(lat, (size_t)calls, 0.50, 1) / 1e3,
           (double)bench_percentile(lat, (size_t)calls, 0.99, 1) / 1e3, calls);
    free(lat);
    return 0;
}

struct pipe_conn {
    pthread_t thread;
    int fd;
    int depth;
    _Atomic uint64_t done; /* replies received so far */
    int failed;
};

static atomic_int pipe_stop;

/*
 * pipe_main - keep depth requests outstanding on one connection.  Each
 * read's complete replies are counted and replaced by as many new
 * requests in one write; after pipe_stop it only drains what is in flight.
 */
static void *
pipe_main(void *argp)
{
    struct pipe_conn *pc = argp;
    uint8_t *reqs = malloc((size_t)pc->depth * BENCH_REQ_LEN);
    uint8_t *in = malloc(IO_BUF);
    size_t have = 0;
    long outstanding = pc->depth;
    uint64_t seq = 0;

    if (reqs == NULL || in == NULL) {
        pc->failed = 1;
        return NULL;
    }
    for (int i = 0; i < pc->depth; i++) {
        put_request(reqs + (size_t)i * BENCH_REQ_LEN, ++seq);
    }
    if (bench_write_all(pc->fd, reqs, (size_t)pc->depth * BENCH_REQ_LEN) != 0) {
        pc->failed = 1;
        goto out;
    }
    while (outstanding > 0) {
        ssize_t r = read(pc->fd, in + have, IO_BUF - have);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            pc->failed = 1;
            break;
        }
        have += (size_t)r;
        size_t off = 0;
        long k = 0;
        while (have - off >= BENCH_REPLY_LEN) {
            size_t flen = 4 + (size_t)bench_get_le32(in + off);
            if (flen != BENCH_REPLY_LEN) {
                pc->failed = 1;
                goto out;
            }
            off += flen;
            k++;
        }
        memmove(in, in + off, have - off);
        have -= off;
        outstanding -= k;
        atomic_fetch_add_explicit(&pc->done, (uint64_t)k, memory_order_relaxed);
        if (k > 0 && !atomic_load_explicit(&pipe_stop, memory_order_relaxed)) {
            /* The request bytes differ only in seq, which the floor server
             * echoes and nobody checks; resending the prebuilt frames keeps
             * the client's own cost out of the floor. */
            if (bench_write_all(pc->fd, reqs, (size_t)k * BENCH_REQ_LEN) != 0) {
                pc->failed = 1;
                break;
            }
            outstanding += k;
        }
    }
out:
    free(reqs);
    free(in);
    return NULL;
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
run_pipe(const struct sockaddr_in *sa, int conns, int depth, double seconds, long warmup_ms)
{
    struct pipe_conn *pcs = calloc((size_t)conns, sizeof(*pcs));
    if (pcs == NULL) {
        return 1;
    }
    for (int i = 0; i < conns; i++) {
        pcs[i].fd = open_conn(sa);
        pcs[i].depth = depth;
        if (pcs[i].fd < 0) {
            return 1;
        }
    }
    for (int i = 0; i < conns; i++) {
        pthread_create(&pcs[i].thread, NULL, pipe_main, &pcs[i]);
    }
    bench_sleep_ms((unsigned)warmup_ms);
    uint64_t c0 = pipe_total(pcs, conns);
    uint64_t t0 = bench_now_ns();
    bench_sleep_ms((unsigned)(seconds * 1000));
    uint64_t c1 = pipe_total(pcs, conns);
    uint64_t t1 = bench_now_ns();
    atomic_store(&pipe_stop, 1);
    int failed = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(pcs[i].thread, NULL);
        failed |= pcs[i].failed;
        close(pcs[i].fd);
    }
    free(pcs);
    if (failed) {
        fprintf(stderr, "floor: a connection failed\n");
        return 1;
    }
    double rate = (double)(c1 - c0) / ((double)(t1 - t0) / 1e9);
    printf("RESULT calls_per_s=%.0f calls=%llu conns=%d depth=%d\n", rate,
           (unsigned long long)(c1 - c0), conns, depth);
    return 0;
}

static int
run_freeport(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    bench_parse_addr("127.0.0.1:0", &sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        return 1;
    }
    printf("%d\n", ntohs(sa.sin_port));
    close(fd);
    return 0;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: tether-bench-floor server --listen HOST:PORT [--wait epoll]\n"
            "       tether-bench-floor client --addr HOST:PORT --mode seq\n"
            "                                 [--calls N] [--warmup N]\n"
            "       tether-bench-floor client --addr HOST:PORT --mode pipe\n"
            "                                 [--conns C] [--depth D] [--seconds S]\n"
            "                                 [--warmup-ms W]\n"
            "       tether-bench-floor freeport\n");
}

int
main(int argc, char **argv)
{
    struct bench_opts o;
    bench_opts_init(&o);

    if (argc < 2) {
        usage();
        return 2;
    }
    struct sigaction ign;
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, NULL);
    if (strcmp(argv[1], "freeport") == 0) {
        return run_freeport();
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--wait") == 0 && strcmp(argv[1], "server") == 0) {
            if (strcmp(argv[i + 1], "epoll") != 0) {
                usage();
                return 2;
            }
            wait_epoll = 1;
            continue;
        }
        if (!bench_opt(&o, argv[i], argv[i + 1])) {
            usage();
            return 2;
        }
    }
    if (o.addr == NULL || o.calls < 1 || o.conns < 1 || o.depth < 1 ||
        o.depth > IO_BUF / BENCH_REQ_LEN) {
        usage();
        return 2;
    }
    if (strcmp(argv[1], "server") == 0) {
        return run_server(o.addr);
    }
    struct sockaddr_in sa;
    if (strcmp(argv[1], "client") != 0 || bench_parse_addr(o.addr, &sa) != 0) {
        usage();
        return 2;
    }
    if (strcmp(o.mode, "seq") == 0) {
        return run_seq(&sa, o.calls, o.warmup);
    }
    if (strcmp(o.mode, "pipe") == 0) {
        return run_pipe(&sa, o.conns, o.depth, o.seconds, o.warmup_ms);
    }
    usage();
    return 2;
}
