/*
 * http.c - the metrics listener on libmicrohttpd.
 *
 * libmicrohttpd is loaded on first use (mhd_dl.h).  The socket is made here (bound and listening
 * before tt_http_start returns, so a taken port is an error at start and port 0 can be read back)
 * and handed to libmicrohttpd, which serves it from one internal thread: a scrape every few seconds
 * and a status page polling once a second need no more, and one thread keeps the callback
 * single-threaded.
 */
#include "ops/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "ops/mhd_dl.h"

struct tt_http {
    struct MHD_Daemon *d;
    int fd;
    tt_http_fn fn;
    void *arg;
    char addr[128];
};

/* Split "host:port", "[v6]:port" or ":port" into host (NULL: every IPv4
 * address) and port. */
static int
split_addr(const char *addr, char *host, size_t hcap, const char **port)
{
    const char *colon;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - addr - 1) >= hcap) {
            return -1;
        }
        memcpy(host, addr + 1, (size_t)(end - addr - 1));
        host[end - addr - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL || (size_t)(colon - addr) >= hcap) {
            return -1;
        }
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = '\0';
    }
    *port = colon + 1;
    if (**port == '\0' || strspn(*port, "0123456789") != strlen(*port) || strlen(*port) > 5) {
        return -1;
    }
    return 0;
}

static tether_err
bind_listen(const char *addr, int *fd_out, char *text, size_t tcap, char *why, size_t cap)
{
    char host[256];
    const char *port;
    if (addr == NULL || split_addr(addr, host, sizeof host, &port) != 0) {
        snprintf(why, cap, "metrics address must be host:port, [v6]:port or :port");
        return TETHER_EADDRINVAL;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int g = getaddrinfo(host[0] != '\0' ? host : "0.0.0.0", port, &hints, &res);
    if (g != 0 || res == NULL) {
        snprintf(why, cap, "metrics address %.200s: %s", addr, gai_strerror(g));
        return TETHER_EADDRINVAL;
    }
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    if (fd < 0) {
        int e = errno;
        freeaddrinfo(res);
        snprintf(why, cap, "metrics listener: socket failed");
        return (tether_err)(TETHER_ESYSERR | e);
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        freeaddrinfo(res);
        close(fd);
        snprintf(why, cap, "metrics address %.200s: cannot listen (errno %d)", addr, e);
        return e == EADDRINUSE ? TETHER_EADDRINUSE : (tether_err)(TETHER_ESYSERR | e);
    }
    freeaddrinfo(res);
    /* Read the port back (port 0) and write the address as clients use it. */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        snprintf(text, tcap, "[%s]:%u", ip, (unsigned)ntohs(s6->sin6_port));
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        snprintf(text, tcap, "%s:%u", ip, (unsigned)ntohs(s4->sin_port));
    }
    *fd_out = fd;
    return TETHER_OK;
}

static enum MHD_Result
reply(struct MHD_Connection *conn, int status, const char *ctype, const void *p, size_t n)
{
    struct MHD_Response *r =
        tt_mhd.create_response_from_buffer(n, (void *)p, MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        return MHD_NO;
    }
    tt_mhd.add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    tt_mhd.add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    /* The status page is self-contained: it may talk to this listener and
     * load nothing from anywhere. */
    tt_mhd.add_response_header(r, "Content-Security-Policy",
                               "default-src 'none'; script-src 'unsafe-inline'; "
                               "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'");
    tt_mhd.add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ret = tt_mhd.queue_response(conn, (unsigned)status, r);
    tt_mhd.destroy_response(r);
    return ret;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls)
{
    tt_http *h = cls;
    (void)version;
    (void)upload_data;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        static const char msg[] = "only GET and HEAD\n";
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", msg,
                     sizeof msg - 1);
    }
    if (*req_cls == NULL) {
        /* libmicrohttpd calls twice: first with the headers only. */
        *req_cls = h;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* a GET with a body: ignore the body */
        return MHD_YES;
    }
    tt_buf body = {0};
    int status = 200;
    const char *ctype = "text/plain; charset=utf-8";
    tether_err rc = h->fn(h->arg, url, &status, &ctype, &body);
    enum MHD_Result ret;
    if (rc != TETHER_OK) {
        static const char msg[] = "internal error\n";
        ret = reply(conn, 500, "text/plain; charset=utf-8", msg, sizeof msg - 1);
    } else {
        ret = reply(conn, status, ctype, tt_buf_head(&body), tt_buf_size(&body));
    }
    tt_buf_free(&body);
    return ret;
}

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (!tt_log_enabled(TETHER_LOG_DEBUG)) {
        return;
    }
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    tt_log(TETHER_LOG_DEBUG, "metrics listener: %s", msg);
}

tether_err
tt_http_start(const char *addr, tt_http_fn fn, void *arg, tt_http **out, char *why, size_t cap)
{
    if (tt_mhd_load() != TETHER_OK) {
        snprintf(why, cap, "the metrics listener needs libmicrohttpd (Debian: libmicrohttpd12)");
        return TETHER_ENOTSUP;
    }
    tt_http *h = tt_calloc(1, sizeof *h);
    if (h == NULL) {
        snprintf(why, cap, "out of memory");
        return TETHER_ENOMEM;
    }
    h->fn = fn;
    h->arg = arg;
    tether_err rc = bind_listen(addr, &h->fd, h->addr, sizeof h->addr, why, cap);
    if (rc != TETHER_OK) {
        tt_free(h);
        return rc;
    }
    /* libmicrohttpd's thread inherits this mask: like every library
     * thread it must never take the application's signals. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    h->d = tt_mhd.start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                               on_request, h, MHD_OPTION_LISTEN_SOCKET, h->fd,
                               MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
                               MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (h->d == NULL) {
        snprintf(why, cap, "metrics listener on %s would not start", h->addr);
        close(h->fd);
        tt_free(h);
        return (tether_err)(TETHER_ESYSERR | EIO);
    }
    *out = h;
    return TETHER_OK;
}

const char *
tt_http_address(const tt_http *h)
{
    return h->addr;
}

void
tt_http_stop(tt_http *h)
{
    if (h == NULL) {
        return;
    }
    tt_mhd.stop_daemon(h->d);
    close(h->fd); /* given with LISTEN_SOCKET: libmicrohttpd leaves it open */
    tt_free(h);
}
