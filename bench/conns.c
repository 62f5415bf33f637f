/*
 * conns.c - hold many idle client connections open, for the memory rows.
 *
 *   tether-bench-conns --addr 127.0.0.1:PORT --count N [--preface 1|0]
 *                      [--tls-ca CA.pem]
 *
 * Opens N TCP connections to addr; with --preface 1 (the default) each
 * sends tether's 8-byte connection preface, so the server has taken the
 * connection as a tether client and not just accepted a socket.  Then it
 * prints "RESULT opened=N" and sleeps until killed.  bench/run.sh measures
 * the server's RSS before and after.  Use --preface 0 for servers that
 * speak another protocol (Go's net/rpc).
 *
 * Every socket gets SO_LINGER {on, 0}: when the process is killed its
 * connections are reset instead of lingering in TIME_WAIT, so repeated
 * runs do not use up the loopback's ephemeral ports.
 *
 * With --tls-ca each connection first completes a TLS handshake (OpenSSL,
 * verifying the server against CA.pem) and sends the preface inside it,
 * for the per-idle-TLS-connection row.
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>

#include "bench_util.h"

int
main(int argc, char **argv)
{
    const char *addr = NULL;
    long count = 10000;
    int preface = 1;
    const char *tls_ca = NULL;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--addr") == 0) {
            addr = argv[i + 1];
        } else if (strcmp(argv[i], "--count") == 0) {
            count = strtol(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--tls-ca") == 0) {
            tls_ca = argv[i + 1];
        } else if (strcmp(argv[i], "--preface") == 0) {
            preface = strcmp(argv[i + 1], "0") != 0;
        } else {
            addr = NULL;
            break;
        }
    }
    struct sockaddr_in sa;
    if (addr == NULL || count < 1 || bench_parse_addr(addr, &sa) != 0) {
        fprintf(stderr, "usage: tether-bench-conns --addr HOST:PORT --count N [--preface 1|0]\n");
        return 2;
    }
    rlim_t lim = bench_raise_nofile();
    if (lim < (rlim_t)count + 16) {
        fprintf(stderr, "tether-bench-conns: RLIMIT_NOFILE %llu is too low for %ld connections\n",
                (unsigned long long)lim, count);
        return 1;
    }
    struct sigaction ign;
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, NULL);

    SSL_CTX *ctx = NULL;
    if (tls_ca != NULL) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, tls_ca, NULL) != 1) {
            fprintf(stderr, "tether-bench-conns: cannot load %s\n", tls_ca);
            return 1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    }
    struct linger lg = {1, 0};
    for (long i = 0; i < count; i++) {
        int fd = bench_connect(&sa);
        if (fd < 0) {
            perror("tether-bench-conns: connect");
            fprintf(stderr, "tether-bench-conns: %ld connections were open\n", i);
            return 1;
        }
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        if (ctx != NULL) {
            /* Kept for the life of the process: the connection stays open. */
            SSL *ssl = SSL_new(ctx);
            if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1 ||
                (preface &&
                 SSL_write(ssl, BENCH_PREFACE, BENCH_PREFACE_LEN) != BENCH_PREFACE_LEN)) {
                fprintf(stderr, "tether-bench-conns: TLS on connection %ld failed\n", i);
                ERR_print_errors_fp(stderr);
                return 1;
            }
            continue;
        }
        if (preface && bench_write_all(fd, BENCH_PREFACE, BENCH_PREFACE_LEN) != 0) {
            fprintf(stderr, "tether-bench-conns: preface on connection %ld failed\n", i);
            return 1;
        }
    }
    printf("RESULT opened=%ld\n", count);
    fflush(stdout);
    for (;;) {
        pause();
    }
}
