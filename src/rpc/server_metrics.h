/*
 * server_metrics.h - a server's metrics (include/tether/metrics.h): the
 * per-thread counters (src/ops/) and the optional HTTP listener.
 *
 * The server calls the tt_server_metrics_* hooks at a few points of its
 * life and of each call; each is one pointer test while metrics are off.
 *
 * Latency without a clock read per call: each I/O thread reads the clock
 * once when a read begins (stamp: every call started by that read gets
 * it as its start) and once after its event batch, when the answers it
 * produced have been written (flush: every call finished in the batch is
 * timed against it).  A call's latency is thus the time from the read
 * that brought its request to the end of the batch that wrote its answer:
 * what the call spent in this server, queueing included.  Under pipelined
 * load many calls share the two reads; a lone call pays two, as an
 * interceptor would.
 */
#ifndef TT_RPC_SERVER_METRICS_H
#define TT_RPC_SERVER_METRICS_H

#include "core/clock.h"
#include "ops/counters.h"
#include "rpc/server_int.h"

/* Calls finished in the current batch, waiting for its end. */
#define TT_MPEND 256

typedef struct tt_mpend {
    uint64_t method;
    uint64_t t0;
} tt_mpend;

/* One I/O thread's metrics state: touched only by that thread. */
typedef struct tt_mthr {
    _Alignas(64) uint64_t now; /* when the current read began */
    uint32_t n;
    tt_mpend p[TT_MPEND];
} tt_mthr;

struct tt_http;

struct tt_srv_metrics {
    char *addr;     /* listener address, or NULL: counters only */
    tt_counters *k; /* one block per I/O thread; set by start */
    tt_mthr *thr;   /* [io_threads], 64-byte aligned */
    void *thr_raw;  /* its allocation */
    struct tt_http *http;
    uint64_t start_ns;
};

/* tether_server_create: metrics on (addr: also an HTTP listener there;
 * NULL: counters only).  addr is copied.  Errors: TETHER_ENOMEM. */
tether_err tt_server_metrics_enable(tether_server *srv, const char *addr);

/* tether_server_start, once the method table is final and before the I/O
 * threads run: the counters and the listener.  Errors: TETHER_ENOMEM, the
 * listener's (tether_server_get_errmsg() tells). */
tether_err tt_server_metrics_start(tether_server *srv);

/* tether_server_destroy, before the threads are freed: stop the listener
 * and free everything. */
void tt_server_metrics_fini(tether_server *srv);

/* Time the calls finished in t's batch (the slow half of flush). */
void tt_server_metrics_flush_pending(struct tt_srv_metrics *sm, int idx);

/* conn_read: a read begins on thread t. */
static inline void
tt_server_metrics_stamp(iothr *t)
{
    struct tt_srv_metrics *sm = t->srv->metrics;
    if (sm != NULL && sm->k != NULL) {
        sm->thr[t->idx].now = tt_now_ns();
    }
}

/* call_launch: the call is in flight (before any interceptor). */
static inline void
tt_server_metrics_begin(struct tether_call *call)
{
    struct tt_srv_metrics *sm = call->srv->metrics;
    if (sm != NULL && sm->k != NULL) {
        call->mt_t0 = sm->thr[call->t->idx].now;
        tt_counters_begin(
            tt_counters_cell(sm->k, call->t->idx, (size_t)(call->m - call->srv->methods)));
    }
}

/* call_finish: the call is answered, refused or canceled with
 * call->status: counted now (before its answer leaves, so a caller that
 * has its answer sees it counted), timed at the end of the batch. */
static inline void
tt_server_metrics_end(struct tether_call *call)
{
    struct tt_srv_metrics *sm = call->srv->metrics;
    if (sm != NULL && sm->k != NULL) {
        size_t m = (size_t)(call->m - call->srv->methods);
        tt_counters_finish(tt_counters_cell(sm->k, call->t->idx, m), (int)call->status, call->mt_in,
                           call->mt_out);
        tt_mthr *mt = &sm->thr[call->t->idx];
        if (mt->n == TT_MPEND) {
            tt_server_metrics_flush_pending(sm, call->t->idx);
        }
        mt->p[mt->n++] = (tt_mpend){m, call->mt_t0};
    }
}

/* io_main: the batch's answers are written. */
static inline void
tt_server_metrics_flush(iothr *t)
{
    struct tt_srv_metrics *sm = t->srv->metrics;
    if (sm != NULL && sm->k != NULL && sm->thr[t->idx].n > 0) {
        tt_server_metrics_flush_pending(sm, t->idx);
    }
}

#endif
