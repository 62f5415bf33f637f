/*
 * tls.h - TLS over a non-blocking socket (OpenSSL): contexts from
 * tether_tls_config, a non-blocking handshake, reads and writes that
 * behave like recv() and send(), the peer's verified subject, and the
 * first-bytes test that tells a TLS ClientHello from plaintext.
 *
 * A tt_tls is used by one thread at a time, unless it was made with
 * locked set: then reads and writes may come from two threads at once
 * (the client engine reads on one thread while callers write), and each
 * takes the connection's lock for the (never blocking) OpenSSL call.
 */
#ifndef TT_NET_TLS_H
#define TT_NET_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tether/tether.h"
#include "tether/tls.h"

typedef struct tt_tls_ctx tt_tls_ctx;
typedef struct tt_tls tt_tls;

/* tt_tls_ctx_create - a context for the server (is_server) or a client
 * side, with its certificate, key and CA files loaded.  Errors:
 * TETHER_EINVAL (settings that do not fit together), TETHER_ETLS (a file
 * could not be loaded; why says which and OpenSSL's reason),
 * TETHER_ENOMEM. */
tether_err tt_tls_ctx_create(const tether_tls_config *cfg, int is_server, tt_tls_ctx **out,
                             char *why, size_t why_len);
/* Contexts are refcounted: each holder takes a reference. */
void tt_tls_ctx_ref(tt_tls_ctx *ctx);
void tt_tls_ctx_unref(tt_tls_ctx *ctx); /* NULL is a no-op */
/* Server contexts: plaintext connections allowed too. */
int tt_tls_ctx_allow_plaintext(const tt_tls_ctx *ctx);

/* tt_tls_new - TLS on connected socket fd.  Clients verify the server
 * against name (a host name or an IP address; NULL: no name check).
 * locked: see above.  TETHER_ENOMEM. */
tether_err tt_tls_new(tt_tls_ctx *ctx, int fd, const char *name, int locked, tt_tls **out);
/* tt_tls_free - free t (the socket stays open; the caller closes it).
 * NULL is a no-op. */
void tt_tls_free(tt_tls *t);

/* tt_tls_handshake - one step of the handshake: TT_TLS_DONE, TT_TLS_WANT_READ,
 * TT_TLS_WANT_WRITE, or TT_TLS_FAIL (tt_tls_error() says why). */
enum { TT_TLS_DONE = 0, TT_TLS_WANT_READ = 1, TT_TLS_WANT_WRITE = 2, TT_TLS_FAIL = -1 };
int tt_tls_handshake(tt_tls *t);
/* Why the handshake or the connection failed (never NULL; valid until the
 * next call on t). */
const char *tt_tls_error(const tt_tls *t);

/* tt_tls_read - like recv() on a non-blocking socket: bytes read (as many
 * as are ready, up to n), 0 when the peer closed, or -1 with errno EAGAIN
 * (nothing now; tt_tls_wants_write() says whether the socket must become
 * writable first) or ECONNRESET (broken; tt_tls_error()). */
ssize_t tt_tls_read(tt_tls *t, void *buf, size_t n);
/* tt_tls_write - like send(): bytes taken (0 < r <= n), or -1 with errno
 * EAGAIN or ECONNRESET.  After EAGAIN the same bytes (at any address)
 * must be offered again first. */
ssize_t tt_tls_write(tt_tls *t, const void *buf, size_t n);
/* Decrypted or undecoded bytes OpenSSL holds that the socket's readiness
 * will not announce: read again before waiting. */
int tt_tls_pending(tt_tls *t);
int tt_tls_wants_write(const tt_tls *t);

/* tt_tls_peer_subject - the verified peer certificate's subject, RFC 2253
 * form ("CN=client,O=Example"), into buf.  TETHER_ENOENT (no verified
 * certificate), TETHER_EMSGSIZE (buf too small). */
tether_err tt_tls_peer_subject(tt_tls *t, char *buf, size_t len);

/* tt_tls_detect - do the first n bytes of a connection start a TLS
 * ClientHello?  1 yes, 0 no.  Six bytes decide (record type 22, version
 * 3.x, handshake type 1); with fewer, a first byte of 22 counts as TLS
 * (its handshake then fails cleanly if it is not). */
int tt_tls_detect(const uint8_t *p, size_t n);

#endif
