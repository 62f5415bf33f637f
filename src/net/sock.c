/*
 * sock.c - address parsing and socket setup.
 */
#include "net/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/uio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

tether_err
tt_err_errno(int e)
{
    switch (e) {
    case ENOMEM:
        return TETHER_ENOMEM;
    case ECONNREFUSED:
    case ENOENT: /* unix socket path with no listener */
        return TETHER_ECONNREFUSED;
    case ECONNRESET:
    case EPIPE:
    case ENOTCONN:
        return TETHER_ECONNRESET;
    case ETIMEDOUT:
        return TETHER_ETIMEDOUT;
    case EADDRINUSE:
        return TETHER_EADDRINUSE;
    case EADDRNOTAVAIL:
    case EAFNOSUPPORT:
        return TETHER_EADDRINVAL;
    default:
        return (tether_err)(TETHER_ESYSERR | (unsigned)e);
    }
}

static tether_err
parse_port(const char *s, uint16_t *port)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < 0 || v > 65535) {
        return TETHER_EADDRINVAL;
    }
    *port = (uint16_t)v;
    return TETHER_OK;
}

tether_err
tt_addr_parse(const char *s, tt_addr *out)
{
    if (s == NULL) {
        return TETHER_EINVAL;
    }
    memset(out, 0, sizeof *out);
    if (strncmp(s, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&out->ss;
        const char *path = s + 5;
        size_t n = strlen(path);
        if (n == 0 || n >= sizeof un->sun_path) {
            return TETHER_EADDRINVAL;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, n + 1);
        out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return TETHER_OK;
    }
    char host[256];
    const char *portstr;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host) {
            return TETHER_EADDRINVAL;
        }
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        portstr = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof host) {
            return TETHER_EADDRINVAL;
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        portstr = colon + 1;
    }
    uint16_t port;
    if (parse_port(portstr, &port) != TETHER_OK) {
        return TETHER_EADDRINVAL;
    }
    if (host[0] == '\0') {
        struct sockaddr_in *in = (struct sockaddr_in *)&out->ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_ANY);
        in->sin_port = htons(port);
        out->len = sizeof *in;
        return TETHER_OK;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)&out->ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        out->len = sizeof *in;
        return TETHER_OK;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        out->len = sizeof *in6;
        return TETHER_OK;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL) {
        return TETHER_EADDRINVAL;
    }
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    if (res->ai_family == AF_INET) {
        ((struct sockaddr_in *)&out->ss)->sin_port = htons(port);
    } else if (res->ai_family == AF_INET6) {
        ((struct sockaddr_in6 *)&out->ss)->sin6_port = htons(port);
    }
    freeaddrinfo(res);
    return TETHER_OK;
}

tether_err
tt_addr_format(const tt_addr *a, char *buf, size_t n)
{
    char host[INET6_ADDRSTRLEN];
    int w;
    switch (a->ss.ss_family) {
    case AF_INET: {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        w = snprintf(buf, n, "%s:%u", host, ntohs(in->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        w = snprintf(buf, n, "[%s]:%u", host, ntohs(in6->sin6_port));
        break;
    }
    case AF_UNIX: {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;
        w = snprintf(buf, n, "unix:%s", un->sun_path);
        break;
    }
    default:
        return TETHER_EADDRINVAL;
    }
    if (w < 0 || (size_t)w >= n) {
        return TETHER_EMSGSIZE;
    }
    return TETHER_OK;
}

tether_err
tt_sock_listen(const tt_addr *a, int backlog, int *fd_out)
{
    int fam = a->ss.ss_family;
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return tt_err_errno(errno);
    }
    int one = 1;
    if (fam == AF_UNIX) {
        /* Replace a stale socket file, never some other kind of file. */
        const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;
        struct stat st;
        if (stat(un->sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            unlink(un->sun_path);
        }
    } else {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (fam == AF_INET6) {
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        }
    }
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0 || listen(fd, backlog) != 0) {
        int e = errno;
        close(fd);
        return tt_err_errno(e);
    }
    *fd_out = fd;
    return TETHER_OK;
}

tether_err
tt_sock_connect_start(const tt_addr *a, int *fd_out, int *in_progress)
{
    int fam = a->ss.ss_family;
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return tt_err_errno(errno);
    }
    *in_progress = 0;
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) != 0) {
        /* EAGAIN: a Unix socket whose listener's queue is full; it may
         * still accept, so wait for writability as for TCP. */
        if (errno != EINPROGRESS && errno != EAGAIN) {
            int e = errno;
            close(fd);
            return tt_err_errno(e);
        }
        *in_progress = 1;
    }
    if (fam != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    *fd_out = fd;
    return TETHER_OK;
}

void
tt_sock_keepalive(int fd, uint32_t idle_ms)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (idle_ms == 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 ||
        ss.ss_family == AF_UNIX) {
        return;
    }
    /* The kernel counts keep-alive times in whole seconds. */
    int idle = (int)((idle_ms + 999) / 1000);
    int intvl = idle / 4 > 1 ? idle / 4 : 1;
    int cnt = 3;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    /* Without it, data that is never acknowledged is retransmitted for
     * about 15 minutes before the connection fails; keep-alive does not
     * run while data is outstanding.  Same bound as keep-alive's. */
    unsigned ut = (unsigned)(idle + intvl * cnt) * 1000u;
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof ut);
}

tether_err
tt_sock_connect_result(int fd)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) {
        return tt_err_errno(errno);
    }
    return soerr == 0 ? TETHER_OK : tt_err_errno(soerr);
}

tether_err
tt_sock_connect(const tt_addr *a, uint32_t timeout_ms, int *fd_out)
{
    int fd, pending;
    tether_err rc = tt_sock_connect_start(a, &fd, &pending);
    if (rc != TETHER_OK) {
        return rc;
    }
    if (!pending) {
        *fd_out = fd;
        return TETHER_OK;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int r;
    do {
        r = poll(&p, 1, (int)timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
        close(fd);
        return r == 0 ? TETHER_ETIMEDOUT : tt_err_errno(errno);
    }
    rc = tt_sock_connect_result(fd);
    if (rc != TETHER_OK) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return TETHER_OK;
}

tether_err
tt_sock_bound(int fd, tt_addr *out)
{
    out->len = sizeof out->ss;
    if (getsockname(fd, (struct sockaddr *)&out->ss, &out->len) != 0) {
        return tt_err_errno(errno);
    }
    return TETHER_OK;
}

tether_err
tt_sock_send_with(int fd, tt_buf *out, const void *body, size_t len, size_t *sent)
{
    const uint8_t *b = body;
    size_t done = 0; /* body bytes sent */
    size_t total = 0;
    tether_err rc = TETHER_OK;
    while (done < len) {
        struct iovec iov[2];
        int k = 0;
        size_t head = tt_buf_size(out);
        if (head > 0) {
            iov[k++] = (struct iovec){.iov_base = tt_buf_head(out), .iov_len = head};
        }
        iov[k++] = (struct iovec){.iov_base = (void *)(b + done), .iov_len = len - done};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)k};
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            size_t from_out = (size_t)n < head ? (size_t)n : head;
            tt_buf_consume(out, from_out);
            done += (size_t)n - from_out;
            total += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            rc = TETHER_ECONNRESET;
        }
        break;
    }
    if (done < len && tt_buf_append(out, b + done, len - done) != TETHER_OK) {
        rc = TETHER_ENOMEM;
    }
    if (sent != NULL) {
        *sent = total;
    }
    return rc;
}
