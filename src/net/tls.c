/*
 * tls.c - TLS over non-blocking sockets with OpenSSL (see tls.h).
 *
 * The socket is reached through a small BIO of our own rather than
 * OpenSSL's socket BIO: that one write()s, and a write to a socket whose
 * peer is gone raises SIGPIPE, which a library must never do; ours uses
 * send(MSG_NOSIGNAL).  Buffers: on servers SSL_MODE_RELEASE_BUFFERS
 * gives the record buffers back while a connection is idle, so an idle
 * TLS connection costs little more than its SSL object (clients, with few
 * connections, keep theirs).  Reads run ahead
 * (see tt_tls_ctx_create).  Servers keep no
 * session cache and send no tickets (nothing would resume from them).
 */
#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "core/log.h"

/* OpenSSL's error queue is per thread and must be empty before a call
 * whose failure SSL_get_error() classifies.  Clearing it outright walks
 * all its slots (about as costly as a record's cipher setup), so look
 * first: on the hot path it is empty. */
static inline void
clear_errors(void)
{
    if (ERR_peek_error() != 0) {
        ERR_clear_error();
    }
}

struct tt_tls_ctx {
    SSL_CTX *ssl;
    _Atomic int refs;
    int is_server;
    int allow_plaintext;
};

struct tt_tls {
    SSL *ssl;
    int is_server;
    int locked;
    int want_write; /* the last read or write needs the socket writable */
    int dead;       /* errno a broken connection keeps answering with */
    int eof;        /* ...because the peer closed it */
    int done;       /* handshake finished */
    char err[256];
    pthread_mutex_t mu;
};

/* --- The socket BIO: recv/send with MSG_NOSIGNAL, the fd as its data. --- */

static BIO_METHOD *bio_meth;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int
bio_write(BIO *b, const char *p, int n)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t r;
    do {
        r = send(fd, p, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        BIO_set_retry_write(b);
    }
    return (int)r;
}

static int
bio_read(BIO *b, char *p, int n)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t r;
    do {
        r = recv(fd, p, (size_t)n, MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        BIO_set_retry_read(b);
    }
    return (int)r;
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* nothing is buffered here */
}

static int
bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void
bio_meth_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tether socket");
    if (m != NULL && BIO_meth_set_write(m, bio_write) == 1 && BIO_meth_set_read(m, bio_read) == 1 &&
        BIO_meth_set_ctrl(m, bio_ctrl) == 1 && BIO_meth_set_create(m, bio_create) == 1) {
        bio_meth = m;
    } else if (m != NULL) {
        BIO_meth_free(m);
    }
}

/* --- Error text --- */

/* OpenSSL's reason for the first queued error, plus the verification
 * result when that is what failed ("certificate verify failed: certificate
 * has expired"). */
static void
error_text(char *buf, size_t len, SSL *ssl, const char *what)
{
    unsigned long e = ERR_peek_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (reason == NULL && e != 0) {
        char tmp[160];
        ERR_error_string_n(e, tmp, sizeof tmp);
        snprintf(buf, len, "%s: %s", what, tmp);
    } else if (vr != X509_V_OK && e != 0 && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        snprintf(buf, len, "%s: %s: %s", what, reason, X509_verify_cert_error_string(vr));
    } else if (reason != NULL) {
        snprintf(buf, len, "%s: %s", what, reason);
    } else {
        char eb[128];
        snprintf(buf, len, "%s: %s", what,
                 errno != 0 ? strerror_r(errno, eb, sizeof eb) : "connection closed");
    }
    ERR_clear_error();
}

/* --- Contexts --- */

static tether_err
load_fail(char *why, size_t why_len, const char *what, const char *file)
{
    char tmp[200];
    snprintf(tmp, sizeof tmp, "tls: cannot load %s %s", what, file);
    error_text(why, why_len, NULL, tmp);
    return TETHER_ETLS;
}

tether_err
tt_tls_ctx_create(const tether_tls_config *cfg, int is_server, tt_tls_ctx **out, char *why,
                  size_t why_len)
{
    *out = NULL;
    why[0] = '\0';
    if (cfg->min_version != 0 && cfg->min_version != TETHER_TLS_1_2 &&
        cfg->min_version != TETHER_TLS_1_3) {
        snprintf(why, why_len, "tls: min_version must be TETHER_TLS_1_2 or TETHER_TLS_1_3");
        return TETHER_EINVAL;
    }
    if ((cfg->cert_file == NULL) != (cfg->key_file == NULL)) {
        snprintf(why, why_len, "tls: a certificate needs its key and a key its certificate");
        return TETHER_EINVAL;
    }
    if (is_server && cfg->cert_file == NULL) {
        snprintf(why, why_len, "tls: a server needs a certificate and key");
        return TETHER_EINVAL;
    }
    if (is_server && cfg->require_client_cert && cfg->ca_file == NULL) {
        snprintf(why, why_len, "tls: requiring client certificates needs a CA file to verify them");
        return TETHER_EINVAL;
    }
    pthread_once(&bio_once, bio_meth_init);
    if (bio_meth == NULL) {
        return TETHER_ENOMEM;
    }
    tt_tls_ctx *c = tt_calloc(1, sizeof *c);
    if (c == NULL) {
        return TETHER_ENOMEM;
    }
    ERR_clear_error();
    c->ssl = SSL_CTX_new(is_server ? TLS_server_method() : TLS_client_method());
    if (c->ssl == NULL) {
        tt_free(c);
        return TETHER_ENOMEM;
    }
    atomic_init(&c->refs, 1);
    c->is_server = is_server;
    c->allow_plaintext = is_server && cfg->allow_plaintext;
    tether_err rc = TETHER_OK;
    SSL_CTX *s = c->ssl;
    SSL_CTX_set_min_proto_version(s, cfg->min_version == TETHER_TLS_1_3 ? TLS1_3_VERSION
                                                                        : TLS1_2_VERSION);
    SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            (is_server ? SSL_MODE_RELEASE_BUFFERS : 0));
    SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION);
    /* Read ahead: one recv() takes every record the socket holds, and
     * SSL_has_pending() then says exactly whether to read again, so a
     * read never ends in a recv() that finds nothing. */
    SSL_CTX_set_read_ahead(s, 1);
    /* AES-128-GCM first: as strong as needed and the cheapest per record
     * with AES-NI (small RPC records are where TLS costs show). */
    SSL_CTX_set_ciphersuites(s, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                "TLS_CHACHA20_POLY1305_SHA256");
    if (cfg->cert_file != NULL) {
        if (SSL_CTX_use_certificate_chain_file(s, cfg->cert_file) != 1) {
            rc = load_fail(why, why_len, "certificate", cfg->cert_file);
        } else if (SSL_CTX_use_PrivateKey_file(s, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
            rc = load_fail(why, why_len, "key", cfg->key_file);
        } else if (SSL_CTX_check_private_key(s) != 1) {
            rc = load_fail(why, why_len, "key (it does not match the certificate)", cfg->key_file);
        }
    }
    if (rc == TETHER_OK && is_server) {
        SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(s, 0);
        if (cfg->ca_file != NULL) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
            if (names == NULL || SSL_CTX_load_verify_locations(s, cfg->ca_file, NULL) != 1) {
                sk_X509_NAME_pop_free(names, X509_NAME_free);
                rc = load_fail(why, why_len, "CA file", cfg->ca_file);
            } else {
                SSL_CTX_set_client_CA_list(s, names);
                SSL_CTX_set_verify(
                    s,
                    SSL_VERIFY_PEER |
                        (cfg->require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                    NULL);
            }
        }
    } else if (rc == TETHER_OK) {
        SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
        if (cfg->ca_file != NULL) {
            if (SSL_CTX_load_verify_locations(s, cfg->ca_file, NULL) != 1) {
                rc = load_fail(why, why_len, "CA file", cfg->ca_file);
            }
        } else if (SSL_CTX_set_default_verify_paths(s) != 1) {
            rc = load_fail(why, why_len, "the system's CA store", "");
        }
    }
    if (rc != TETHER_OK) {
        tt_tls_ctx_unref(c);
        return rc;
    }
    *out = c;
    return TETHER_OK;
}

void
tt_tls_ctx_ref(tt_tls_ctx *ctx)
{
    atomic_fetch_add(&ctx->refs, 1);
}

void
tt_tls_ctx_unref(tt_tls_ctx *ctx)
{
    if (ctx != NULL && atomic_fetch_sub(&ctx->refs, 1) == 1) {
        SSL_CTX_free(ctx->ssl);
        tt_free(ctx);
    }
}

int
tt_tls_ctx_allow_plaintext(const tt_tls_ctx *ctx)
{
    return ctx->allow_plaintext;
}

/* --- Connections --- */

static int
is_ip(const char *name)
{
    unsigned char b[16];
    return inet_pton(AF_INET, name, b) == 1 || inet_pton(AF_INET6, name, b) == 1;
}

tether_err
tt_tls_new(tt_tls_ctx *ctx, int fd, const char *name, int locked, tt_tls **out)
{
    *out = NULL;
    tt_tls *t = tt_calloc(1, sizeof *t);
    if (t == NULL) {
        return TETHER_ENOMEM;
    }
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl);
    BIO *b = t->ssl != NULL ? BIO_new(bio_meth) : NULL;
    if (b == NULL) {
        SSL_free(t->ssl);
        tt_free(t);
        return TETHER_ENOMEM;
    }
    BIO_set_data(b, (void *)(intptr_t)fd);
    SSL_set_bio(t->ssl, b, b);
    t->is_server = ctx->is_server;
    if (ctx->is_server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (name != NULL && name[0] != '\0') {
            int ok;
            if (is_ip(name)) {
                ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name);
            } else {
                ok = SSL_set1_host(t->ssl, name) && SSL_set_tlsext_host_name(t->ssl, name);
            }
            if (!ok) {
                SSL_free(t->ssl);
                tt_free(t);
                return TETHER_ENOMEM;
            }
        }
    }
    t->locked = locked;
    if (locked) {
        pthread_mutex_init(&t->mu, NULL);
    }
    *out = t;
    return TETHER_OK;
}

void
tt_tls_free(tt_tls *t)
{
    if (t == NULL) {
        return;
    }
    if (t->done && t->dead == 0) {
        /* close_notify, best effort: the socket is non-blocking. */
        ERR_clear_error();
        SSL_shutdown(t->ssl);
        ERR_clear_error();
    }
    SSL_free(t->ssl);
    if (t->locked) {
        pthread_mutex_destroy(&t->mu);
    }
    tt_free(t);
}

/* A peer that misbehaves in TLS is logged (at WARN: it is what a user
 * needs to see to fix certificates).  Servers log through a gate, since
 * any client can provoke the line. */
static void
log_failure(tt_tls *t)
{
    if (t->is_server) {
        static tt_log_gate lg;
        unsigned long dropped;
        if (tt_log_gate_pass(&lg, &dropped)) {
            tt_log(TETHER_LOG_WARN, "%s (from a client; %lu more not logged)", t->err, dropped);
        }
    } else {
        tt_log(TETHER_LOG_WARN, "%s", t->err);
    }
}

/* Classify a failed OpenSSL call r: 1 retry later (want_write set or
 * cleared), 0 the peer closed, -1 broken (t->dead, t->err set). */
static int
failed(tt_tls *t, int r, const char *what)
{
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        t->want_write = 0;
        return 1;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        t->want_write = 1;
        return 1;
    }
    if (e == SSL_ERROR_ZERO_RETURN ||
        (e == SSL_ERROR_SSL && t->done &&
         ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) ||
        (e == SSL_ERROR_SYSCALL && t->done && ERR_peek_error() == 0 && errno == 0)) {
        ERR_clear_error();
        t->dead = ECONNRESET;
        t->eof = 1;
        snprintf(t->err, sizeof t->err, "tls: connection closed");
        return 0; /* a close, with or without close_notify */
    }
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        /* The socket failed (reset, or closed during the handshake). */
        char eb[128];
        snprintf(t->err, sizeof t->err, "%s: %s", what,
                 errno != 0 ? strerror_r(errno, eb, sizeof eb) : "the peer closed the connection");
        t->dead = ECONNRESET;
        if (t->done) {
            return -1; /* an ordinary reset: the caller reports it */
        }
    } else {
        error_text(t->err, sizeof t->err, t->ssl, what);
        t->dead = EPROTO;
    }
    log_failure(t);
    return -1;
}

int
tt_tls_handshake(tt_tls *t)
{
    if (t->dead != 0) {
        return TT_TLS_FAIL;
    }
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->done = 1;
        t->want_write = 0;
        return TT_TLS_DONE;
    }
    int f = failed(t, r,
                   t->is_server ? "tls: handshake with a client failed" : "tls: handshake failed");
    if (f == 1) {
        return t->want_write ? TT_TLS_WANT_WRITE : TT_TLS_WANT_READ;
    }
    if (f == 0) {
        /* Closed during the handshake: a failure all the same. */
        snprintf(t->err, sizeof t->err, "tls: handshake failed: the peer closed the connection");
        t->dead = ECONNRESET;
        if (!t->is_server) {
            log_failure(t);
        }
    }
    return TT_TLS_FAIL;
}

const char *
tt_tls_error(const tt_tls *t)
{
    return t->err[0] != '\0' ? t->err : "tls: no error";
}

ssize_t
tt_tls_read(tt_tls *t, void *buf, size_t n)
{
    if (t->locked) {
        pthread_mutex_lock(&t->mu);
    }
    size_t got = 0;
    while (t->dead == 0 && got < n) {
        clear_errors();
        errno = 0;
        size_t want = n - got > INT32_MAX ? INT32_MAX : n - got;
        int r = SSL_read(t->ssl, (char *)buf + got, (int)want);
        if (r > 0) {
            got += (size_t)r;
            if (!SSL_has_pending(t->ssl)) {
                break; /* the socket's readiness says when there is more */
            }
            continue;
        }
        failed(t, r, "tls: connection failed");
        break;
    }
    int dead = t->dead, eof = t->eof;
    if (t->locked) {
        pthread_mutex_unlock(&t->mu);
    }
    if (got > 0) {
        return (ssize_t)got; /* a close or failure shows on the next read */
    }
    if (eof) {
        return 0;
    }
    errno = dead != 0 ? dead : EAGAIN;
    return -1;
}

ssize_t
tt_tls_write(tt_tls *t, const void *buf, size_t n)
{
    if (t->locked) {
        pthread_mutex_lock(&t->mu);
    }
    size_t put = 0;
    while (t->dead == 0 && put < n) {
        clear_errors();
        errno = 0;
        size_t want = n - put > INT32_MAX ? INT32_MAX : n - put;
        int r = SSL_write(t->ssl, (const char *)buf + put, (int)want);
        if (r > 0) {
            put += (size_t)r;
            t->want_write = 0;
            continue;
        }
        failed(t, r, "tls: connection failed");
        break;
    }
    int dead = t->dead;
    if (t->locked) {
        pthread_mutex_unlock(&t->mu);
    }
    if (put > 0) {
        return (ssize_t)put;
    }
    errno = dead != 0 ? dead : EAGAIN;
    return -1;
}

int
tt_tls_pending(tt_tls *t)
{
    if (t->locked) {
        pthread_mutex_lock(&t->mu);
    }
    int p = SSL_has_pending(t->ssl);
    if (t->locked) {
        pthread_mutex_unlock(&t->mu);
    }
    return p;
}

int
tt_tls_wants_write(const tt_tls *t)
{
    return t->want_write;
}

tether_err
tt_tls_peer_subject(tt_tls *t, char *buf, size_t len)
{
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    if (x == NULL || SSL_get_verify_result(t->ssl) != X509_V_OK) {
        return TETHER_ENOENT;
    }
    BIO *m = BIO_new(BIO_s_mem());
    if (m == NULL) {
        return TETHER_ENOMEM;
    }
    tether_err rc = TETHER_OK;
    if (X509_NAME_print_ex(m, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) < 0) {
        rc = TETHER_ENOMEM;
    } else {
        char *p;
        long n = BIO_get_mem_data(m, &p);
        if (n < 0 || (size_t)n >= len) {
            rc = TETHER_EMSGSIZE;
        } else {
            memcpy(buf, p, (size_t)n);
            buf[n] = '\0';
        }
    }
    BIO_free(m);
    return rc;
}

int
tt_tls_detect(const uint8_t *p, size_t n)
{
    if (n == 0 || p[0] != 0x16) {
        return 0;
    }
    if (n < 6) {
        return 1;
    }
    /* Record: type 22 (handshake), version 3.x (x <= 4), length; then the
     * handshake message type 1 (ClientHello). */
    return p[1] == 0x03 && p[2] <= 0x04 && p[5] == 0x01;
}
