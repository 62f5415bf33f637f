/*
 * fuzz_tls.c - libFuzzer target for the TLS first-bytes test and the
 * server's handshake over what a client sends.
 *
 * The input is the first bytes a client sends to a TLS port.  First
 * tt_tls_detect() on every prefix: it must answer 0 or 1, and once six
 * bytes are there the answer must not change with more.  Then, when the
 * bytes are taken for TLS, they go to a server-side session exactly as
 * the server does it (net/tls.c over a non-blocking socket: here one end
 * of a socketpair, the input written into the other end and closed), and
 * the handshake is stepped until it waits or fails: OpenSSL's record and
 * ClientHello parsing and our error path.  The server's certificate is a
 * self-signed P-256 one made at start-up.
 *
 * The static library is not instrumented, so net/tls.c is compiled into
 * this target (as fuzz_frame.c does with the frame decoder).
 */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/tls.c"

static tt_tls_ctx *server_ctx;

/* A self-signed certificate and key in PEM files (the context loads
 * files, as servers do). */
static int
make_cert(const char *crt, const char *key)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (pk == NULL || x == NULL) {
        return -1;
    }
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, n);
    if (X509_sign(x, pk, EVP_sha256()) == 0) {
        return -1;
    }
    FILE *f = fopen(crt, "w");
    FILE *g = fopen(key, "w");
    int ok = f != NULL && g != NULL && PEM_write_X509(f, x) == 1 &&
             PEM_write_PrivateKey(g, pk, NULL, NULL, 0, NULL, NULL) == 1;
    if (f != NULL) {
        fclose(f);
    }
    if (g != NULL) {
        fclose(g);
    }
    X509_free(x);
    EVP_PKEY_free(pk);
    return ok ? 0 : -1;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/fuzz_tls.XXXXXX";
    if (mkdtemp(dir) == NULL) {
        abort();
    }
    char crt[64], key[64];
    snprintf(crt, sizeof crt, "%s/c.pem", dir);
    snprintf(key, sizeof key, "%s/k.pem", dir);
    tether_tls_config cfg = {.cert_file = crt, .key_file = key};
    char why[256];
    if (make_cert(crt, key) != 0 || tt_tls_ctx_create(&cfg, 1, &server_ctx, why, sizeof why) != 0) {
        fprintf(stderr, "fuzz_tls: no server context: %s\n", why);
        abort();
    }
    unlink(crt);
    unlink(key);
    rmdir(dir);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int at6 = -1;
    for (size_t i = 0; i <= size && i <= 16; i++) {
        int d = tt_tls_detect(data, i);
        if (d != 0 && d != 1) {
            abort();
        }
        if (i == 0 && d != 0) {
            abort(); /* nothing is not TLS */
        }
        if (i == 6) {
            at6 = d;
        } else if (i > 6 && d != at6) {
            abort(); /* six bytes decide */
        }
    }
    if (!tt_tls_detect(data, size) || size > 64 * 1024) {
        return 0;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) {
        abort();
    }
    size_t off = 0;
    while (off < size) {
        ssize_t w = send(sv[0], data + off, size - off, MSG_NOSIGNAL);
        if (w <= 0) {
            break;
        }
        off += (size_t)w;
    }
    shutdown(sv[0], SHUT_WR);
    tt_tls *t = NULL;
    if (tt_tls_new(server_ctx, sv[1], NULL, 0, &t) == 0) {
        for (int i = 0; i < 8; i++) {
            int h = tt_tls_handshake(t);
            if (h == TT_TLS_FAIL) {
                if (tt_tls_error(t)[0] == '\0') {
                    abort(); /* a failure always says why */
                }
                break;
            }
            if (h == TT_TLS_DONE) {
                abort(); /* no client can finish without our key exchange */
            }
            /* Drain what the server sent so its writes never block. */
            uint8_t sink[16384];
            while (recv(sv[0], sink, sizeof sink, MSG_DONTWAIT) > 0) {
            }
        }
        tt_tls_free(t);
    }
    close(sv[0]);
    close(sv[1]);
    return 0;
}
