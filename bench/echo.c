/*
 * echo.c - large messages: tether's Echo against a raw TCP echo of the
 * same size, one connection, one call in flight.
 *
 *   tether-bench-echo server --listen 127.0.0.1:PORT
 *       a tether server with the raw method Bench.Echo, which answers its
 *       request bytes (inline, on the I/O thread).
 *   tether-bench-echo client --addr 127.0.0.1:PORT --size N [--seconds S]
 *       tether_client_call_raw() of N bytes in a loop; prints MB/s (both
 *       directions counted once: N bytes per call).
 *   tether-bench-echo floor-server --listen 127.0.0.1:PORT
 *   tether-bench-echo floor-client --addr 127.0.0.1:PORT --size N [--seconds S]
 *       the same over plain blocking sockets: a 4-byte length, then the
 *       bytes, echoed back whole; no event loop, no framing beyond that.
 */
#include <pthread.h>
#include <signal.h>

#include "bench_util.h"
#include "tether/client.h"
#include "tether/server.h"

#define MAX_SIZE (3u * 1024 * 1024)

/* The measuring loop both clients share: 300 ms of warm-up, then calls
 * counted for the given seconds, then the RESULT line. */
struct meter {
    size_t size;
    double seconds;
    uint64_t warm_end, t0, end, calls;
};

static struct meter
meter_start(size_t size, double seconds)
{
    struct meter m = {.size = size, .seconds = seconds, .warm_end = bench_now_ns() + 300000000ull};
    return m;
}

/* One call done: 1 once the measured time is over (RESULT printed). */
static int
meter_tick(struct meter *m)
{
    uint64_t now = bench_now_ns();
    if (m->t0 == 0) {
        if (now >= m->warm_end) {
            m->t0 = now;
            m->end = now + (uint64_t)(m->seconds * 1e9);
        }
        return 0;
    }
    m->calls++;
    if (now < m->end) {
        return 0;
    }
    printf("RESULT mb_per_s=%.1f calls=%llu size=%zu\n",
           (double)m->calls * (double)m->size / ((double)(now - m->t0) / 1e9) / 1e6,
           (unsigned long long)m->calls, m->size);
    return 1;
}

static void
echo(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    tether_call_reply_raw(call, req, len);
}

static int
run_server(const char *addr)
{
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.max_frame_size = MAX_SIZE + 4096;
    tether_server *srv = NULL;
    if (tether_server_create(&cfg, &srv) != TETHER_OK ||
        tether_server_add_raw_method(srv, "Bench.Echo", echo, 0, NULL) != TETHER_OK ||
        tether_server_listen(srv, addr) != TETHER_OK || tether_server_start(srv) != TETHER_OK) {
        fprintf(stderr, "tether-bench-echo: server: %s\n",
                srv != NULL ? tether_server_get_errmsg(srv) : "create failed");
        return 1;
    }
    return tether_server_run(srv) == TETHER_OK ? 0 : 1;
}

static int
run_client(const char *addr, size_t size, double seconds)
{
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.max_frame_size = MAX_SIZE + 4096;
    tether_client *c = NULL;
    if (tether_client_create(addr, &cfg, &c) != TETHER_OK) {
        fprintf(stderr, "tether-bench-echo: cannot connect to %s\n", addr);
        return 1;
    }
    uint8_t *msg = malloc(size);
    if (msg == NULL) {
        return 1;
    }
    memset(msg, 'e', size);
    struct meter m = meter_start(size, seconds);
    for (;;) {
        uint8_t *out = NULL;
        size_t len = 0;
        tether_err err = tether_client_call_raw(c, "Bench.Echo", msg, size, &out, &len,
                                                TETHER_CALL_TIMEOUT(30000), NULL);
        if (err != TETHER_OK || len != size) {
            fprintf(stderr, "tether-bench-echo: call: %s\n", tether_strerror(err));
            return 1;
        }
        tether_free(out);
        if (meter_tick(&m)) {
            break;
        }
    }
    free(msg);
    tether_client_destroy(c);
    return 0;
}

static void *
floor_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint8_t *buf = malloc(MAX_SIZE + 4);
    uint8_t hdr[4];
    while (buf != NULL && bench_read_all(fd, hdr, 4) == 0) {
        uint32_t n = bench_get_le32(hdr);
        if (n > MAX_SIZE || bench_read_all(fd, buf + 4, n) != 0) {
            break;
        }
        memcpy(buf, hdr, 4);
        if (bench_write_all(fd, buf, 4 + n) != 0) {
            break;
        }
    }
    free(buf);
    close(fd);
    return NULL;
}

static int
run_floor_server(const char *addr)
{
    return bench_serve("tether-bench-echo: floor-server", addr, floor_conn, 0);
}

static int
run_floor_client(const char *addr, size_t size, double seconds)
{
    struct sockaddr_in sa;
    if (bench_parse_addr(addr, &sa) != 0) {
        return 2;
    }
    int fd = bench_connect(&sa);
    uint8_t *buf = malloc(size + 4);
    if (fd < 0 || buf == NULL) {
        fprintf(stderr, "tether-bench-echo: cannot connect to %s\n", addr);
        return 1;
    }
    memset(buf, 'e', size + 4);
    struct meter m = meter_start(size, seconds);
    for (;;) {
        bench_put_le32(buf, (uint32_t)size);
        if (bench_write_all(fd, buf, size + 4) != 0 || bench_read_all(fd, buf, size + 4) != 0) {
            fprintf(stderr, "tether-bench-echo: floor echo failed\n");
            return 1;
        }
        if (meter_tick(&m)) {
            break;
        }
    }
    free(buf);
    close(fd);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: tether-bench-echo server|client|floor-server|floor-client "
                        "--listen|--addr HOST:PORT [--size N] [--seconds S]\n");
        return 2;
    }
    const char *addr = NULL;
    size_t size = 65536;
    double seconds = 2.0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--addr") == 0 || strcmp(argv[i], "--listen") == 0) {
            addr = argv[i + 1];
        } else if (strcmp(argv[i], "--size") == 0) {
            size = (size_t)strtoul(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--seconds") == 0) {
            seconds = strtod(argv[i + 1], NULL);
        }
    }
    if (addr == NULL || size == 0 || size > MAX_SIZE) {
        fprintf(stderr, "tether-bench-echo: --addr and a --size of 1..%u are needed\n", MAX_SIZE);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    if (strcmp(argv[1], "server") == 0) {
        return run_server(addr);
    }
    if (strcmp(argv[1], "client") == 0) {
        return run_client(addr, size, seconds);
    }
    if (strcmp(argv[1], "floor-server") == 0) {
        return run_floor_server(addr);
    }
    if (strcmp(argv[1], "floor-client") == 0) {
        return run_floor_client(addr, size, seconds);
    }
    fprintf(stderr, "tether-bench-echo: unknown mode %s\n", argv[1]);
    return 2;
}
