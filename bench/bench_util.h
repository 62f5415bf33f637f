/*
 * bench_util.h - small helpers shared by the benchmark programs.
 *
 * Everything here is static inline so that each benchmark stays one .c
 * file plus this header; nothing in bench/ is part of the library.
 *
 * Result lines: every benchmark program prints exactly one line starting
 * with "RESULT" followed by key=value pairs (for example
 * "RESULT p50_us=21.3 p99_us=40.2 calls=20000").  bench/run.sh greps for
 * that line, so human-readable chatter goes to stderr.
 */
#ifndef TETHER_BENCH_UTIL_H
#define TETHER_BENCH_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/*
 * The message sizes of one tether "Calculator.Add" call with A=1, B=2, as
 * they travel on the wire (see src/codec/native/frame.h): a request frame
 * is the 20-byte header, the 14-byte method name, the 11-byte context
 * section every call carries (ctx_len, then the deadline entry) and the
 * 4-byte protobuf Args body (08 01 10 02); a reply frame is the 20-byte
 * header and the
 * 2-byte Int64Value body (08 03).  The raw TCP floor sends exactly these
 * byte counts, so floor and tether move the same bytes per call.
 * tether-bench-client checks the request size against protobuf-c's own
 * packed size at start-up and refuses to run if they ever drift apart.
 */
#define BENCH_HDR_LEN 20
#define BENCH_METHOD "Calculator.Add"
#define BENCH_METHOD_LEN 14
#define BENCH_ARGS_LEN 4
#define BENCH_CTX_LEN 11 /* u32 ctx_len + the deadline entry (tag, u16 len, u32 ms) */
#define BENCH_REQ_LEN (BENCH_HDR_LEN + BENCH_METHOD_LEN + BENCH_CTX_LEN + BENCH_ARGS_LEN) /* 49 */
#define BENCH_REPLY_LEN (BENCH_HDR_LEN + 2)                                               /* 22 */
#define BENCH_PREFACE "\xF5TETHER\x02"
#define BENCH_PREFACE_LEN 8

/* Calls kept outstanding per connection in the pipelined runs. */
#define BENCH_DEFAULT_DEPTH 64

static inline uint64_t
bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void
bench_sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int
bench_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/*
 * bench_percentile - the q-quantile (0..1) of v[0..n), which is sorted in
 * place.  Nearest-rank definition: the smallest sample with at least q*n
 * samples at or below it, so p99 of 20,000 calls is the 19,800th fastest.
 */
static inline uint64_t
bench_percentile(uint64_t *v, size_t n, double q, int sorted)
{
    if (n == 0) {
        return 0;
    }
    if (!sorted) {
        qsort(v, n, sizeof(v[0]), bench_cmp_u64);
    }
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > n) {
        rank = n;
    }
    return v[rank - 1];
}

/*
 * bench_raise_nofile - lift the soft RLIMIT_NOFILE to the hard limit; the
 * idle-connection test needs more descriptors than the usual 1024.
 * Returns the new soft limit.
 */
static inline rlim_t
bench_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return 0;
    }
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
    (void)getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur;
}

/*
 * bench_parse_addr - "host:port" (IPv4 dotted quad only: the benchmarks
 * run on loopback) into sa.  Returns 0 or -1.
 */
static inline int
bench_parse_addr(const char *addr, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host)) {
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535) {
        return -1;
    }
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (host[0] == '\0') {
        sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        return -1;
    }
    return 0;
}

/* bench_nodelay - disable Nagle, as tether does: small frames must leave at once. */
static inline void
bench_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* bench_connect - a blocking TCP connection to addr with TCP_NODELAY, or -1. */
static inline int
bench_connect(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0) {
        close(fd);
        return -1;
    }
    bench_nodelay(fd);
    return fd;
}

/*
 * bench_serve - the floors' server: listen on addr, then run
 * conn_main((void *)(intptr_t)fd) on a detached thread for each connection
 * (TCP_NODELAY set).  With announce it prints "listening on 127.0.0.1:PORT"
 * first (port 0 picks one).  Returns only on failure: 2 for a bad address,
 * 1 otherwise, with a message after who.
 */
static inline int
bench_serve(const char *who, const char *addr, void *(*conn_main)(void *), int announce)
{
    struct sockaddr_in sa;
    if (bench_parse_addr(addr, &sa) != 0) {
        fprintf(stderr, "%s: bad address %s\n", who, addr);
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    socklen_t sl = sizeof(sa);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 1024) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0) {
        fprintf(stderr, "%s: listen on %s: %s\n", who, addr, strerror(errno));
        return 1;
    }
    if (announce) {
        printf("listening on 127.0.0.1:%u\n", ntohs(sa.sin_port));
        fflush(stdout);
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE) {
                continue;
            }
            fprintf(stderr, "%s: accept: %s\n", who, strerror(errno));
            return 1;
        }
        bench_nodelay(fd);
        pthread_t t;
        if (pthread_create(&t, &attr, conn_main, (void *)(intptr_t)fd) != 0) {
            close(fd);
        }
    }
}

/* bench_write_all - write n bytes, retrying short writes.  Returns 0 or -1. */
static inline int
bench_write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* bench_read_all - read exactly n bytes.  Returns 0, or -1 on error or EOF. */
static inline int
bench_read_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t r = read(fd, b, n);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (r == 0) {
            return -1;
        }
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static inline void
bench_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t
bench_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Options shared by the floor and tether's bench client. */
struct bench_opts {
    const char *addr;
    const char *mode;
    long calls, warmup, warmup_ms;
    int conns, depth;
    double seconds;
};

static inline void
bench_opts_init(struct bench_opts *o)
{
    o->addr = NULL;
    o->mode = "seq";
    o->calls = 20000;
    o->warmup = 2000;
    o->warmup_ms = 500;
    o->conns = 1;
    o->depth = BENCH_DEFAULT_DEPTH;
    o->seconds = 2.0;
}

/* bench_opt - take option k with value v into o; 0 if k is not one of the
 * shared options (--listen is an alias of --addr for servers). */
static inline int
bench_opt(struct bench_opts *o, const char *k, const char *v)
{
    if (strcmp(k, "--addr") == 0 || strcmp(k, "--listen") == 0) {
        o->addr = v;
    } else if (strcmp(k, "--mode") == 0) {
        o->mode = v;
    } else if (strcmp(k, "--calls") == 0) {
        o->calls = strtol(v, NULL, 10);
    } else if (strcmp(k, "--warmup") == 0) {
        o->warmup = strtol(v, NULL, 10);
    } else if (strcmp(k, "--warmup-ms") == 0) {
        o->warmup_ms = strtol(v, NULL, 10);
    } else if (strcmp(k, "--conns") == 0) {
        o->conns = (int)strtol(v, NULL, 10);
    } else if (strcmp(k, "--depth") == 0) {
        o->depth = (int)strtol(v, NULL, 10);
    } else if (strcmp(k, "--seconds") == 0) {
        o->seconds = strtod(v, NULL);
    } else {
        return 0;
    }
    return 1;
}

#endif
