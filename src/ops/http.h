/*
 * http.h - a small HTTP/1.1 listener (libmicrohttpd) for metrics and the
 * status page.  It serves GET and HEAD only, from one thread of its own,
 * by handing each path to a callback.
 */
#ifndef TT_OPS_HTTP_H
#define TT_OPS_HTTP_H

#include <stddef.h>

#include "core/buf.h"
#include "tether/tether.h"

/* tt_http_fn - answer a GET of path (no query string) with *status (200
 * unless set) and body; *ctype starts as "text/plain; charset=utf-8".
 * Runs on the listener's thread, one request at a time.  A non-OK return
 * answers 500. */
typedef tether_err (*tt_http_fn)(void *arg, const char *path, int *status, const char **ctype,
                                 tt_buf *body);

typedef struct tt_http tt_http;

/*
 * tt_http_start - listen on addr ("host:port", "[v6]:port", ":port"; port
 * 0 picks a free one) and serve with fn(arg).  Errors: TETHER_EADDRINVAL,
 * TETHER_EADDRINUSE, TETHER_ENOMEM, TETHER_ENOTSUP (libmicrohttpd cannot
 * be loaded), TETHER_ESYSERR|errno (socket, or the listener would not
 * start); why gets text for people.
 */
tether_err tt_http_start(const char *addr, tt_http_fn fn, void *arg, tt_http **out, char *why,
                         size_t cap);

/* tt_http_address - the bound address as "host:port" (valid until stop). */
const char *tt_http_address(const tt_http *h);

/* tt_http_stop - stop serving (waits for a request being answered) and
 * free.  NULL is a no-op. */
void tt_http_stop(tt_http *h);

#endif
