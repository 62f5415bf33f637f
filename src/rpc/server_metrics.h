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

/* Calls of one method that one read started: they share a latency, so
 * a pipelined batch is timed as a few groups rather than call by call. */
typedef struct tt_mpend {
    tt_mcell *cell;
    uint64_t t0;
    uint64_t n;
} tt_mpend;

/* One I/O thread's metrics state: touched only by that thread. */
typedef struct tt_mthr {
    _Alignas(64) tt_mcell *cells; /* this thread's block: one cell per method */
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

/* Time the calls finished in the thread's batch (the slow half of flush). */
void tt_server_metrics_flush_pending(tt_mthr *mt);

/* The thread's metrics state, or NULL while metrics are off: the server
 * keeps it in iothr.mt, so every hook below is one pointer test. */
tt_mthr *tt_server_metrics_thread(tether_server *srv, int idx);

/* conn_read: a read begins on thread t; the calls it starts are timed
 * from now (kept as t->now_ns, which deadlines set during the read use
 * too, so the two share one clock read). */
static inline void
tt_server_metrics_stamp(iothr *t)
{
    if (t->mt != NULL) {
        t->now_ns = tt_now_ns();
    }
}

/* call_launch: the call is in flight (before any interceptor).  The
 * call keeps its cell, so the end finds it without a lookup. */
static inline void
tt_server_metrics_begin(struct tether_call *call)
{
    tt_mthr *mt = call->t->mt;
    if (mt != NULL) {
        tt_mcell *cell = &mt->cells[call->m - call->srv->methods];
        call->mt_cell = cell;
        call->mt_t0 = call->t->now_ns;
        tt_counters_begin(cell);
    }
}

/* call_finish: the call is answered, refused or canceled with
 * call->status: counted now (before its answer leaves, so a caller that
 * has its answer sees it counted), timed at the end of the batch. */
static inline void
tt_server_metrics_end(struct tether_call *call)
{
    tt_mcell *cell = call->mt_cell;
    if (cell != NULL) {
        tt_mthr *mt = call->t->mt;
        tt_counters_finish(cell, (int)call->status, call->mt_in, call->mt_out);
        if (mt->n > 0) {
            tt_mpend *last = &mt->p[mt->n - 1];
            if (last->cell == cell && last->t0 == call->mt_t0) {
                last->n++;
                return;
            }
        }
        if (mt->n == TT_MPEND) {
            tt_server_metrics_flush_pending(mt);
        }
        mt->p[mt->n++] = (tt_mpend){cell, call->mt_t0, 1};
    }
}

/* io_main: the batch's answers are written. */
static inline void
tt_server_metrics_flush(iothr *t)
{
    if (t->mt != NULL && t->mt->n > 0) {
        tt_server_metrics_flush_pending(t->mt);
    }
}

#endif
