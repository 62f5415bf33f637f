/*
 * sock.h - addresses and non-blocking sockets (TCP v4/v6, Unix).
 */
#ifndef TT_NET_SOCK_H
#define TT_NET_SOCK_H

#include <stdint.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "tether/tether.h"

typedef struct tt_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} tt_addr;

/* Longest text tt_addr_format() writes for any address, NUL included. */
#define TT_ADDR_STRLEN 128

/*
 * tt_addr_parse - parse "host:port", "[v6]:port", ":port" or "unix:/path"
 * into *out, resolving host names.  TETHER_EADDRINVAL on bad syntax or an
 * unknown name.
 */
tether_err tt_addr_parse(const char *s, tt_addr *out);

/* tt_addr_format - the text form of a, in the forms tt_addr_parse takes. */
tether_err tt_addr_format(const tt_addr *a, char *buf, size_t n);

/* tt_sock_listen - a non-blocking, close-on-exec listening socket bound to
 * a (SO_REUSEADDR; a stale unix socket file is removed first). */
tether_err tt_sock_listen(const tt_addr *a, int backlog, int *fd_out);

/* tt_sock_connect - connect to a within timeout_ms, blocking the caller
 * (never call it with a lock held); the socket comes back non-blocking,
 * close-on-exec, with TCP_NODELAY for TCP. */
tether_err tt_sock_connect(const tt_addr *a, uint32_t timeout_ms, int *fd_out);

/* tt_sock_connect_start - start a non-blocking connect to a without
 * waiting.  *in_progress is 1 when the connect goes on (wait for the socket
 * to be writable, then ask tt_sock_connect_result()), 0 when it is done. */
tether_err tt_sock_connect_start(const tt_addr *a, int *fd_out, int *in_progress);

/* tt_sock_keepalive - TCP keep-alive on a client socket, so a half-open
 * connection (the peer's host gone, packets dropped) is found without a
 * call: the first probe after idle_ms of silence, then one a quarter of
 * that apart (at least 1 s), and the connection dropped after 3 unanswered
 * ones; TCP_USER_TIMEOUT drops it as well once sent data stays unacknowledged
 * that long.  A no-op for Unix sockets; best effort (errors are ignored). */
void tt_sock_keepalive(int fd, uint32_t idle_ms);

/* tt_sock_connect_result - how a connect started by tt_sock_connect_start()
 * ended (call once the socket is writable). */
tether_err tt_sock_connect_result(int fd);

/* tt_sock_bound - the address a socket is bound to. */
tether_err tt_sock_bound(int fd, tt_addr *out);

/*
 * tt_sock_send_with - send what out holds, then body[0..len), in as few
 * sendmsg() calls as the socket takes without blocking: the bytes of a
 * large message go from the caller's memory to the socket, not through
 * out.  What the socket does not take now is kept in out (the rest of
 * out, then the rest of the body, copied), so the stream's order holds
 * and the caller's normal flush sends it later.  *sent (may be NULL) gets
 * the bytes sent.  TETHER_OK, TETHER_ENOMEM (the rest could not be kept:
 * the stream is broken, close it), or TETHER_ECONNRESET (the socket
 * failed; the rest is kept, the caller's flush sees the error again).
 * Plain sockets only (no TLS).
 */
tether_err tt_sock_send_with(int fd, tt_buf *out, const void *body, size_t len, size_t *sent);

/* Under pipelined load a long read's worth of messages is written every
 * TT_SOCK_FLUSH_BATCH messages rather than all at its end, by a
 * connection alone on its thread (the server's answers, the client's next
 * requests): the peer starts on the first ones while the rest are made,
 * so both sides work at once instead of taking turns (1 conn x 64, 2
 * cores: about 2 x the calls/s).  A thread with several connections has
 * work enough, and one write per read costs fewer system calls (4 conns
 * x 64: chunks of 16 gave about a third fewer calls/s). */
#define TT_SOCK_FLUSH_BATCH 16

/* tt_err_errno - map an errno to the closest tether_err. */
tether_err tt_err_errno(int e);

#endif
