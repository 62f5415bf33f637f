/*
 * tls_floor.c - the TLS floor: what OpenSSL alone costs a request/reply
 * exchange, for bench/tls.sh to set tether's TLS figures against.
 *
 * Like floor.c it does the least work a request/reply protocol can do:
 * blocking sockets, a thread per connection, no event loop, no encoding.
 * Each call is one SSL_write of a BENCH_REQ_LEN-byte request and one
 * SSL_read of a BENCH_REPLY_LEN-byte reply, the bytes of one tether
 * Calculator.Add call, after an 8-byte preface; TLS 1.3 with the
 * library's default cipher suite, as tether negotiates it.  With no
 * certificate the same program runs over plain TCP, so one run gives both
 * floors and their ratio: what TLS itself adds to a sequential call.
 *
 *   tether-bench-tls-floor server --listen 127.0.0.1:PORT [--cert F --key F]
 *   tether-bench-tls-floor client --addr 127.0.0.1:PORT [--tls-ca F]
 *                                 [--calls N] [--warmup N]
 *       one connection, one call in flight; prints p50/p99 of N calls.
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>

#include "bench_util.h"

/* One end of a connection: TLS when ssl is set, plain TCP otherwise. */
struct end {
    int fd;
    SSL *ssl;
};

static int
end_read_all(struct end *e, void *p, size_t n)
{
    if (e->ssl == NULL) {
        return bench_read_all(e->fd, p, n);
    }
    size_t got = 0;
    while (got < n) {
        int r = SSL_read(e->ssl, (char *)p + got, (int)(n - got));
        if (r <= 0) {
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

static int
end_write_all(struct end *e, const void *p, size_t n)
{
    if (e->ssl == NULL) {
        return bench_write_all(e->fd, p, n);
    }
    return SSL_write(e->ssl, p, (int)n) == (int)n ? 0 : -1;
}

static void
end_close(struct end *e)
{
    if (e->ssl != NULL) {
        SSL_free(e->ssl);
    }
    close(e->fd);
}

/* ---- server ---- */

/* The server's TLS settings, NULL for plain TCP. */
static SSL_CTX *server_ctx;

static void *
serve_conn(void *argp)
{
    int fd = (int)(intptr_t)argp;
    struct end e = {fd, NULL};
    uint8_t req[BENCH_REQ_LEN], reply[BENCH_REPLY_LEN] = {0};
    bench_put_le32(reply, BENCH_REPLY_LEN - 4);
    if (server_ctx != NULL) {
        e.ssl = SSL_new(server_ctx);
        if (e.ssl == NULL || SSL_set_fd(e.ssl, fd) != 1 || SSL_accept(e.ssl) != 1) {
            goto done;
        }
    }
    if (end_read_all(&e, req, BENCH_PREFACE_LEN) != 0 ||
        memcmp(req, BENCH_PREFACE, BENCH_PREFACE_LEN) != 0) {
        goto done;
    }
    while (end_read_all(&e, req, sizeof req) == 0) {
        memcpy(reply + 8, req + 8, 8); /* the call's sequence number */
        if (end_write_all(&e, reply, sizeof reply) != 0) {
            break;
        }
    }
done:
    end_close(&e);
    return NULL;
}

static int
run_server(const char *listen_addr, const char *cert, const char *key)
{
    SSL_CTX *ctx = NULL;
    if (cert != NULL) {
        ctx = SSL_CTX_new(TLS_server_method());
        if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(ctx, 0);
    }
    server_ctx = ctx;
    return bench_serve("tls-floor", listen_addr, serve_conn, 1);
}

/* ---- client ---- */

static int
run_client(const char *addr, const char *ca, long calls, long warmup)
{
    struct sockaddr_in sa;
    if (bench_parse_addr(addr, &sa) != 0 || calls <= 0 || warmup < 0) {
        fprintf(stderr, "tls-floor: bad address or counts\n");
        return 2;
    }
    struct end e = {bench_connect(&sa), NULL};
    if (e.fd < 0) {
        perror("tls-floor: connect");
        return 1;
    }
    SSL_CTX *ctx = NULL;
    if (ca != NULL) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        e.ssl = SSL_new(ctx);
        if (e.ssl == NULL || SSL_set_fd(e.ssl, e.fd) != 1 ||
            SSL_set1_host(e.ssl, "localhost") != 1 || SSL_connect(e.ssl) != 1) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
    }
    uint8_t req[BENCH_REQ_LEN] = {0}, reply[BENCH_REPLY_LEN];
    bench_put_le32(req, BENCH_REQ_LEN - 4);
    uint64_t *lat = malloc((size_t)calls * sizeof *lat);
    if (lat == NULL || end_write_all(&e, BENCH_PREFACE, BENCH_PREFACE_LEN) != 0) {
        fprintf(stderr, "tls-floor: start failed\n");
        return 1;
    }
    for (long i = 0; i < warmup + calls; i++) {
        uint64_t t0 = bench_now_ns();
        memcpy(req + 8, &i, sizeof i);
        if (end_write_all(&e, req, sizeof req) != 0 || end_read_all(&e, reply, sizeof reply) != 0 ||
            memcmp(reply + 8, req + 8, 8) != 0) {
            fprintf(stderr, "tls-floor: call %ld failed\n", i);
            return 1;
        }
        if (i >= warmup) {
            lat[i - warmup] = bench_now_ns() - t0;
        }
    }
    qsort(lat, (size_t)calls, sizeof *lat, bench_cmp_u64);
    printf("RESULT p50_us=%.2f p99_us=%.2f calls=%ld\n",
           (double)bench_percentile(lat, (size_t)calls, 0.50, 1) / 1e3,
           (double)bench_percentile(lat, (size_t)calls, 0.99, 1) / 1e3, calls);
    free(lat);
    end_close(&e);
    SSL_CTX_free(ctx);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *listen_addr = NULL, *addr = NULL, *cert = NULL, *key = NULL, *ca = NULL;
    long calls = 20000, warmup = 2000;
    signal(SIGPIPE, SIG_IGN);
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--listen") == 0) {
            listen_addr = v;
        } else if (strcmp(k, "--addr") == 0) {
            addr = v;
        } else if (strcmp(k, "--cert") == 0) {
            cert = v;
        } else if (strcmp(k, "--key") == 0) {
            key = v;
        } else if (strcmp(k, "--tls-ca") == 0) {
            ca = v;
        } else if (strcmp(k, "--calls") == 0) {
            calls = atol(v);
        } else if (strcmp(k, "--warmup") == 0) {
            warmup = atol(v);
        } else {
            listen_addr = addr = NULL;
            break;
        }
    }
    if (argc >= 2 && strcmp(argv[1], "server") == 0 && listen_addr != NULL &&
        (cert == NULL) == (key == NULL)) {
        return run_server(listen_addr, cert, key);
    }
    if (argc >= 2 && strcmp(argv[1], "client") == 0 && addr != NULL) {
        return run_client(addr, ca, calls, warmup);
    }
    fprintf(stderr,
            "usage: tether-bench-tls-floor server --listen HOST:PORT [--cert F --key F]\n"
            "       tether-bench-tls-floor client --addr HOST:PORT [--tls-ca F]"
            " [--calls N] [--warmup N]\n");
    return 2;
}
