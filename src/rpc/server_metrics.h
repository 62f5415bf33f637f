/*
 * server_metrics.h - a server's metrics (include/tether/metrics.h): the
 * per-thread counters fed by an interceptor of the server's own, and the
 * optional HTTP listener (src/ops/).  The server calls these at a few
 * points of its life; each is a no-op while metrics are off.
 */
#ifndef TT_RPC_SERVER_METRICS_H
#define TT_RPC_SERVER_METRICS_H

#include "tether/server.h"

struct tt_srv_metrics;

/* tether_server_create: metrics on (addr: also an HTTP listener there;
 * NULL: counters only).  addr is copied.  Errors: TETHER_ENOMEM. */
tether_err tt_server_metrics_enable(tether_server *srv, const char *addr);

/* tether_server_start, once the method table is final and before the I/O
 * threads run: the counters, the interceptor (first in the chain) and the
 * listener.  Errors: TETHER_ELIMIT (no room for the interceptor),
 * TETHER_ENOMEM, the listener's errors (tether_server_errmsg() tells). */
tether_err tt_server_metrics_start(tether_server *srv);

/* tether_server_destroy, before the threads are freed: stop the listener
 * and free everything. */
void tt_server_metrics_fini(tether_server *srv);

#endif
