/*
 * server_int.h - the server's internal structures, shared by server.c
 * (setup, method table, I/O threads), server_conn.c (connections and the
 * one read -> decode -> call -> answer -> flush pipeline), server_call.c
 * (calls), drain.c (the stop sequence), lifecycle.c (registration),
 * describe_server.c (the built-in _tether.Describe) and watchdog.c (the
 * serving watchdog and _tether.Health.Check).
 *
 * Threads and ownership:
 *  - Each connection belongs to one I/O thread (struct iothr) and is only
 *    touched there.  Its refcount counts "open" plus one per call in
 *    flight, and it is freed on its thread once both are gone.
 *  - A call is created on its connection's thread.  If it is answered
 *    there (inline handler), the answer goes straight into the
 *    connection's output buffer.  If it is answered on another thread
 *    (async handler, worker pool), the answer frame is built there and the
 *    call is posted back to its thread, which appends it and finishes the
 *    call.
 *  - The gate outlives the server while answers may still arrive from
 *    other threads: after the I/O threads have stopped, late answers see
 *    gate->dead and just free their call.
 */
#ifndef TT_RPC_SERVER_INT_H
#define TT_RPC_SERVER_INT_H

#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdatomic.h>

#include "codec/codec.h"
#include "core/buf.h"
#include "core/thread.h"
#include "net/loop.h"
#include "net/sock.h"
#include "net/tls.h"
#include "rpc/pool.h"
#include "tether/server.h"

typedef struct method_ent {
    char *name; /* "Service.Method", NUL-terminated */
    size_t name_len;
    const ProtobufCMethodDescriptor *md; /* typed methods; NULL for raw */
    tether_handler_fn fn;
    tether_raw_handler_fn raw_fn;
    unsigned flags;
    void *arg;
} method_ent;

typedef struct gate {
    pthread_mutex_t mu;
    int dead;           /* I/O threads are gone: drop late answers */
    _Atomic long refs;  /* outstanding calls + 1 for the server */
} gate;

struct iothr;
struct tether_call;

typedef struct conn {
    tt_io io;
    struct iothr *t;
    int refs;        /* 1 while open + 1 per call in flight */
    int closed;
    /* The codec recognised from the first bytes (NULL: not known yet) and
     * its per-connection state. */
    const struct tt_codec_ops *codec;
    void *cstate;
    const method_ent *last_m; /* the method of the last call: clients repeat */
    int paused; /* reading off: too much unsent output */
    int starved; /* reading off: the thread's input budget is spent (on t->starved) */
    struct conn *starved_next;
    size_t in_held;        /* bytes of 'in' counted in the thread's budget */
    uint64_t partial_since; /* coarse ns: 'in' holds an incomplete message since */
    uint64_t last_active;   /* coarse ns of the last read (with idle_timeout_ms) */
    tt_timer tmr;           /* partial and idle timeouts */
    uint32_t nblocking;     /* blocking calls of this connection in flight */
    int zombie; /* closed with calls in flight: on the thread's zombie list */
    int goaway_sent;
    int in_dirty;
    size_t need;     /* bytes the partial frame in 'in' needs */
    uint32_t inflight;
    tt_buf in;       /* an incomplete frame carried to the next read */
    tt_buf out;      /* answers not yet sent */
    struct tether_call *calls; /* calls in flight (for cancel at drain end) */
    struct conn *prev, *next;  /* thread's list of open connections */
    struct conn *dirty_next;   /* thread's list of connections to flush */
    struct conn *reap_next;    /* thread's list of connections to free */
    tt_addr peer;              /* the client's address, from accept() */
    /* TLS (server_conn.c): the session once a ClientHello came (NULL:
     * plaintext), tls_setup while the first bytes or the handshake are
     * awaited, and the verified client certificate's subject. */
    tt_tls *tls;
    int tls_setup;
    char *peer_subject;
} conn;

struct tether_call {
    tether_server *srv;
    gate *g;
    struct iothr *t;
    conn *c;
    const method_ent *m;
    uint64_t seq;
    ProtobufCMessage *req;
    uint8_t *body;     /* raw methods: the request bytes */
    size_t body_len;
    size_t body_cap; /* >0: body is a thread spare of this size (tt_srv_buf_prepare) */
    int canceled; /* already answered with an error (drain end, deadline,
                   * client cancel): the handler's answer is dropped */
    /* The per-call context (native protocol v2). */
    uint64_t deadline_ns; /* monotonic; 0: the caller sent none */
    tt_timer dl_tmr;      /* armed while the call is open past its handler */
    const uint8_t *ctx;   /* request context entries (metadata) */
    size_t ctx_len;
    int ctx_heap;    /* ctx was allocated (else it is in the arena) */
    tt_buf trailers; /* reply trailers, encoded as context entries */
    /* Cancel as the handler sees it: CST_NONE, CST_FN (a callback is
     * set), or the tether_err that canceled it.  Changed with CAS so the
     * callback runs at most once, and never after a failed set. */
    _Atomic int cstate;
    tether_cancel_fn cancel_fn;
    void *cancel_arg;
    tt_task task;                    /* worker pool job, then the answer's trip home */
    /* An answer given off the I/O thread: its status and bytes (packed
     * reply, raw bytes or error text), encoded at home by the codec. */
    tt_buf ans;
    tether_err ans_status;
    int ans_oom; /* ans could not be stored: answer "out of memory" */
    struct tether_call *prev, *next; /* conn's calls in flight / free list */
    uint8_t small[64]; /* small raw request bodies live here */
    /* Copied at launch so that an answer from another thread never reads
     * server memory (the server may be gone by then: see gate). */
    size_t max_frame;
    size_t max_meta;
    /* Interceptors: how many befores let the call through (their afters
     * run at the end), when the call started, and the answer's code. */
    int nic;
    int blk; /* counted in the worker queue's fair share */
    uint64_t ic_start_ns;
    tether_err status;
    const ProtobufCMessageDescriptor *out_desc;
    /* The call holds a gate reference: it left the I/O thread's hands
     * (worker pool, or a handler that returned without answering). */
    int gref;
    /* For metrics (server_metrics.h): request and answer body bytes,
     * when the read that brought the request began, and the method's
     * cell in the thread's counters (NULL: not counted). */
    uint32_t mt_in, mt_out;
    uint64_t mt_t0;
    struct tt_mcell *mt_cell;
    /* Native requests are unpacked into this arena (protobuf-c allocates
     * through pb_alloc), so a small request costs no malloc at all. */
    int req_in_arena;
    int pb_over;      /* the last unpack ran out of pb_budget */
    int pb_heap;      /* ...or took memory outside the arena: free_unpacked it */
    size_t pb_budget; /* bytes the unpack may still allocate beyond the arena */
    size_t arena_off;
    ProtobufCAllocator pb_alloc;
    _Alignas(16) uint8_t arena[256];
};

typedef struct iothr {
    tether_server *srv;
    int idx;
    pthread_t tid;
    tt_loop loop;
    uint64_t now_ns; /* time of the latest read, for deadlines set during it */
    struct tt_mthr *mt; /* metrics state (server_metrics.h), NULL while off */
    tt_io *lios;     /* one per listener */
    int accepting;
    /* Out of descriptors: the listeners are off this loop until the timer
     * (server_conn.c accept_pause). */
    int accept_paused;
    uint32_t accept_backoff_ms;
    tt_timer accept_tmr;
    int stop;
    conn *conns;
    conn *dirty;
    conn *reap;
    conn *zombies; /* closed connections still referenced by calls */
    struct tether_call *free_calls;
    struct tether_call *inline_call; /* the call whose handler runs inline now */
    int inline_done;                 /* ...and it was answered before returning */
    int nfree_calls;
    uint8_t *scratch;
    void *bufs[32]; /* spare I/O buffers of TT_IOBUF bytes */
    int nbufs;
    /* Spare buffers larger than TT_IOBUF (a large message's input, a raw
     * method's copy of its body, its answer), kept BIG_KEEP_NS after
     * their last use (server_conn.c, tt_srv_buf_release). */
    void *big[3];
    size_t big_cap[3];
    uint64_t big_at[3];
    tt_timer big_tmr;
    /* Counters written only by this thread, read by anyone. */
    _Atomic uint64_t st_accepted, st_started, st_completed, st_failed, st_proto;
    _Atomic uint64_t st_unpack_limit; /* requests refused by the unpack budget */
    _Atomic uint64_t st_fd_exhausted; /* accepts that failed for want of a descriptor */
    _Atomic uint64_t st_partial_to, st_idle_closed, st_in_paused, st_blk_refused;
    size_t in_bytes;  /* input buffer bytes held by this thread's connections */
    size_t in_budget; /* its share of max_input_buffered */
    conn *starved;    /* connections waiting for input budget */
    _Atomic long inflight;
    _Atomic long nconns;
    tt_task t_goaway, t_stop_accept, t_drain_check, t_cancel, t_stop;
    /* The watchdog's ping (watchdog.c): the control thread bumps wd_sent
     * and posts t_wd_ping, which copies it into wd_done when the loop
     * turns; wd_sent_ns (control thread only) is when it was posted. */
    _Atomic uint64_t wd_sent, wd_done;
    uint64_t wd_sent_ns;
    tt_task t_wd_ping;
} iothr;

typedef struct listener {
    int fd;
    tt_addr addr;
    char text[TT_ADDR_STRLEN];
} listener;

enum { SRV_NEW, SRV_RUNNING, SRV_DRAINING, SRV_STOPPED };

#define TT_MAX_INTERCEPTORS 16
#define TT_MAX_METRIC_CLIENTS 16

/* client_metrics.c: append the tether_client_* series of cs[0..ncs)
 * (named names[i]) to b. */
struct tether_client;
tether_err tt_client_metrics_append(struct tether_client *const *cs, char *const *names,
                                    size_t ncs, tt_buf *b);

struct tether_server {
    tether_server_config cfg;
    tether_server_interceptor ics[TT_MAX_INTERCEPTORS];
    int nics;
    method_ent *methods;
    size_t nmethods;
    char **services;  /* wire service names, for "unknown service" vs "method" */
    size_t nservices;
    listener *listeners;
    int nlisteners;
    iothr *threads;
    int nthreads;
    tt_pool *pool;
    gate *g;
    _Atomic int state;
    _Atomic long nconns;
    /* Blocking calls in flight, and connections that have some (the
     * worker queue's fair share, server_call.c). */
    _Atomic long nblocking;
    _Atomic long nconns_blocking;
    int shutdown_fd;  /* eventfd: tether_server_shutdown() writes it */
    int drained_fd;   /* eventfd: a thread saw its last call finish while draining */
    pthread_t control;
    int control_started;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* state changes, for tether_server_wait() */
    /* Runs first in a graceful stop, on the control thread (registry
     * deregistration); set by the lifecycle code, NULL otherwise. */
    void (*on_stop)(tether_server *srv, void *arg);
    void *on_stop_arg;
    /* Registration (lifecycle.c). */
    tether_registry *registry;
    char *reg_service;
    tether_meta *reg_meta;
    size_t reg_nmeta;
    uint32_t reg_weight;
    char *reg_advertise; /* tmpl->address: the one address to register, or NULL */
    tether_registration **regs; /* one per listener while registered */
    int notify_systemd;         /* send STOPPING=1 when the stop begins */
    /* Metrics (server_metrics.c); NULL: off.  Clients whose series the
     * listener serves too (client_metrics.c). */
    struct tt_srv_metrics *metrics;
    struct tether_client *mclients[TT_MAX_METRIC_CLIENTS];
    char *mclient_names[TT_MAX_METRIC_CLIENTS];
    int nmclients;
    /* regs is changed by the caller's thread (start, set_registry) and
     * the control thread (watchdog, stop): reg_mu orders them. */
    pthread_mutex_t reg_mu;
    int listed; /* regs are listed, not withdrawn (reg_mu) */
    /* The watchdog and health (watchdog.c). */
    _Atomic int app_serving; /* tether_server_set_serving() */
    _Atomic int stalled;     /* the watchdog finds a loop not turning */
    _Atomic uint64_t st_stalls;
    int wd_fd; /* eventfd: wakes the control thread (set_serving) */
    uint64_t wd_stall_start_ns;
    int wd_reg_failing;
    uint64_t sd_wd_usec;    /* systemd's WATCHDOG_USEC (0: not asked) */
    uint64_t sd_wd_next_ns; /* the next WATCHDOG=1 is due */
    tt_tls_ctx *tls;            /* cfg.tls loaded; NULL: plaintext only */
    struct tt_auth *auth;       /* tether_server_add_auth() (auth.c); NULL: none */
    char errmsg[512];
};

#define TT_IOBUF (64 * 1024)

/* cstate values besides a tether_err (all of which are > 1). */
#define CST_NONE 0
#define CST_FN 1

/* drain.c: the control thread that runs the stop sequence. */
void *tt_server_control_main(void *arg);
/* server.c: tasks the control thread posts to each I/O thread. */
void tt_server_post_all(tether_server *srv, size_t task_off);
long tt_server_inflight(tether_server *srv);
/* server.c: stop and join the I/O threads, drop late answers, close the
 * listeners (the last step of every stop). */
void tt_server_stop_threads(tether_server *srv);
/* lifecycle.c: register every listener (after the threads serve), and the
 * first step of the stop sequence; free what registration kept. */
tether_err tt_server_register_all(tether_server *srv);
void tt_server_deregister_all(tether_server *srv);
void tt_server_registry_fini(tether_server *srv);
void tt_sd_notify(const char *state);
/* lifecycle.c: list (1) or withdraw (0) every registration, keeping it
 * alive; 0 if the registry took it (else it is tried again later). */
int tt_server_set_listed(tether_server *srv, int listed);

/* watchdog.c: the control thread's periodic check (see there); how long
 * it may sleep before the next (-1: until woken); what a health check
 * answers; the built-in _tether.Health service. */
void tt_wd_setup(tether_server *srv);
void tt_wd_tick(tether_server *srv);
int tt_wd_timeout_ms(const tether_server *srv);
void tt_srv_task_wd_ping(tt_task *task);
int tt_srv_is_health(const char *method, size_t len);
tether_err tt_server_add_health(tether_server *srv);

/* server.c: the method name[0..len) names, or NULL with the code and the
 * text (Go's exact texts, for every codec) to answer with. */
const method_ent *tt_server_lookup(const tether_server *srv, const char *name, size_t len,
                                   tether_err *code, char *text, size_t cap);

/* server_conn.c: connections, buffers, accepting, the stop tasks. */
extern TT_THREAD_LOCAL iothr *tt_srv_tls; /* the I/O thread running here */
void tt_srv_report_drained(iothr *t);
/* Give b storage (from the thread's spares when it has none) for extra
 * more bytes; release gives an empty buffer's storage back. */
tether_err tt_srv_buf_prepare(iothr *t, tt_buf *b, size_t extra);
void tt_srv_buf_release(iothr *t, tt_buf *b);
/* tt_srv_big_expire - the big_tmr callback (server_conn.c). */
void tt_srv_big_expire(tt_timer *tm);
void tt_srv_mark_dirty(conn *c);  /* flush c after this batch */
/* Large raw answers (tt_codec_body_direct) are sent from the handler's
 * memory: tt_srv_conn_send_body() sends c's output, then body, at once,
 * and keeps in c's output only what the socket did not take. */
void tt_srv_conn_send_body(conn *c, const void *body, size_t len);
void tt_srv_flush_dirty(iothr *t);
void tt_srv_conn_unref(conn *c);
void tt_srv_conn_close(conn *c);
void tt_srv_conn_fail(conn *c, tether_err code, const char *why);
void tt_srv_reap(iothr *t);       /* free connections closed in this batch */
/* An error answer to request seq of method[0..method_len), outside any
 * handler, encoded by c's codec. */
void tt_srv_answer_error(conn *c, uint64_t seq, const char *method, size_t method_len,
                         tether_err code, const char *text);
void tt_srv_on_listener(tt_io *io, unsigned events);
void tt_srv_accept_resume(tt_timer *tm); /* the accept_tmr callback */
void tt_srv_task_goaway(tt_task *task);
void tt_srv_task_stop_accept(tt_task *task);
void tt_srv_task_drain_check(tt_task *task);
void tt_srv_task_cancel(tt_task *task);
void tt_srv_task_stop(tt_task *task);

/* server_call.c: a decoded request becomes a call; cancel one. */
struct tt_rpc_msg;
void tt_srv_start_call(conn *c, const struct tt_rpc_msg *m);
/* Cancel an open call on its I/O thread: answer the caller now with why
 * (unless it gave up itself: answer_caller 0), drop the handler's answer
 * when it comes, and tell the handler. */
void tt_srv_call_cancel(struct tether_call *call, tether_err why, int answer_caller,
                        const char *text);
/* Mark call canceled for why and tell its handler (first reason wins). */
void tt_srv_call_cancel_notify(struct tether_call *call, tether_err why);

/* Single-writer counter bump: only the owning thread writes. */
static inline void
tt_srv_bump(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* auth.c: free what tether_server_add_auth() kept (NULL: no-op). */
struct tt_auth;
void tt_auth_free(struct tt_auth *a);

/* describe_server.c: built-in methods every server serves (_tether.Describe). */
tether_err tt_server_add_builtins(tether_server *srv);

#endif
