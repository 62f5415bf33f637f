/*
 * engine.c - the client engine (engine.h): one connection, many calls in
 * flight, any codec, on a loop of the shared client pool.
 *
 * Who reads the socket.  The connection is registered with the engine's
 * pool loop, but the common case of a synchronous call with nothing else
 * in flight does not go through it: the calling thread sends the request
 * and reads the answer itself ("sync reader"), which saves two thread
 * hand-offs per call and keeps sequential latency close to a raw socket's.
 * Exactly one thread is the reader at a time (e->reader); whoever reads
 * dispatches every answer that arrives: its own, other synchronous callers'
 * (signalled through their condition variables) and asynchronous calls'
 * (whose callbacks always run on the loop thread).  When a sync reader
 * finishes while other calls are pending it hands reading back to the loop.
 * The reader is also the only user of the codec's decoding state, so gob's
 * per-connection type table needs no lock.
 *
 * Time.  Asynchronous deadlines sit under e->mu in a list kept in order
 * (calls with the same timeout arrive in deadline order, so appending is
 * the common case: O(1) in and out) with a heap for the calls that would
 * break the order; one loop timer is armed for the earliest.  Deadlines
 * are read from the coarse clock (one vDSO read less per call) and padded
 * by its resolution, so a call never times out early.  A connect runs in the background (the socket
 * is non-blocking until it is up) with a timer for its timeout, so no
 * thread ever blocks in connect() with a lock held.  Synchronous callers
 * wait on their own deadline (SO_RCVTIMEO, poll or a timed condition).
 *
 * Liveness.  A connection can be up and still serve nobody (the server's
 * process stopped, packets dropped on the way): its calls would each wait
 * for their deadline.  So, with probe_ms set, a connection that has calls
 * outstanding and received nothing for probe_ms sends a PING, and one whose
 * PONG does not come within probe_timeout_ms is closed as dead.  One timer
 * per engine does it, armed at most once per probe_ms by calls (no cost per
 * call beyond a flag check), re-armed by itself while calls are out; reads
 * only set a flag, which the timer samples every half period (a PING goes
 * after two empty samples: one to one and a half periods of silence).  The
 * bytes queued and sent are counted, so a close can tell which calls never
 * fully left the process (no handler can have seen them).
 *
 * Locking: e->mu protects everything except the input buffer, which only
 * the current reader touches.  Callbacks and on_state run without it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "codec/native/frame.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/heap.h"
#include "core/list.h"
#include "core/log.h"
#include "core/thread.h"
#include "net/loop.h"
#include "net/loop_pool.h"
#include "rpc/engine.h"

#define MIN_BUCKETS 16u
#define READ_CHUNK 65536u
#define FREE_LIST_MAX 64
#define IDLE_BUFFER_NS                                                                             \
    (1000ull * 1000000ull) /* an idle connection's read buffer goes after 1 s                      \
                            */

enum { READER_NONE, READER_IO, READER_SYNC };

typedef struct pending {
    uint64_t seq;
    struct pending *hnext;         /* hash chain */
    struct pending *prev, *next;   /* all pending calls */
    struct pending *cnext;         /* completed list (async, for the loop thread) */
    tt_heap_node dl;               /* async deadline out of order: in e->deadlines */
    struct pending *dprev, *dnext; /* async deadline in order: in e->dl_head list */
    uint64_t deadline;
    uint64_t end_off; /* e->queued_total once its request was queued */
    int in_dlist;
    int in_table;       /* still findable by seq (not taken by a dispatcher) */
    tether_reply_fn fn; /* async callback; NULL for a sync call */
    tether_client *owner;
    void *arg;
    const ProtobufCMessageDescriptor *desc;
    /* Outcome. */
    int done;
    tether_err err;
    ProtobufCMessage *msg;
    uint8_t *data; /* reply bytes (copied) */
    size_t len;
    char *text;
    tether_meta *trailers; /* one block: the array, then the strings */
    size_t ntrailers;
    pthread_cond_t *cv; /* sync waiter, NULL for the sync reader itself */
} pending;

struct tt_engine {
    tt_engine_config cfg;
    const tt_codec_ops *ops;
    tt_addr addr;
    tt_loop *loop;
    pthread_mutex_t mu;
    void *enc, *dec; /* codec state per direction: enc under mu, dec by the reader */
    int fd;
    uint32_t rcvtimeo_ms; /* SO_RCVTIMEO set on fd (0: none), by the sync reader */
    _Atomic int state;
    int reader;
    unsigned armed; /* events registered with the loop */
    int registered;
    int broken; /* a writer saw the connection fail; the reader closes */
    int closing;
    int detaching; /* destroy started on the loop: post nothing more */
    _Atomic int goaway;
    tether_err conn_err;    /* reason the server gave before closing, if any */
    tether_err connect_err; /* how the last connect failed */
    int free_in_final;      /* destroyed on its own loop: on_final frees it */
    uint64_t next_seq;
    pending **buckets;
    size_t nbuckets;
    pending *all;
    size_t npending;
    _Atomic size_t npending_pub; /* npending for lock-free readers (balancing) */
    tt_heap deadlines;
    pending *dl_head, *dl_tail;
    uint64_t timer_at;      /* when call_tmr is armed for; 0: not armed */
    tt_timer call_tmr;      /* earliest async deadline */
    tt_timer connect_tmr;   /* connect timeout */
    tt_timer idle_tmr;      /* gives the read buffer back a while after the last call */
    tt_timer probe_tmr;     /* liveness: PING when quiet, dead when no PONG */
    _Atomic int rx_seen;    /* bytes came in (or calls began) since the last tick */
    int quiet_ticks;        /* ticks (half periods) in a row that found nothing */
    _Atomic int unanswered; /* a request went out since bytes last came in */
    uint64_t ping_seq;
    uint64_t ping_deadline;
    int ping_out; /* a PING waits for its PONG */
    int probing;  /* tt_engine_probe() waits for that PONG */
    int dead;     /* being closed for an unanswered PING */
    char dead_text[96];
    uint64_t queued_total, sent_total; /* bytes since the connect began */
    tt_buf out;                        /* request bytes not yet sent (under mu) */
    tt_buf in;                         /* a partial answer, owned by the reader */
    pending *completed;
    pending *free_list;
    int nfree;
    int nsync; /* synchronous callers inside the engine */
    tt_io io;
    int flush_after; /* requests queued from a callback inside on_fd */
    tt_task t_kick;
    int kicked; /* t_kick is queued: a task must not be queued twice */
    tt_task t_detach, t_final;
    int detached;
    pthread_cond_t cv; /* nsync reached 0, detached, connect ended */
    tt_tls *tls;       /* TLS session (cfg.tls set), from connect to close */
};

static void close_locked(tt_engine *e, tether_err why);
static void run_completed(tt_engine *e);
static void on_pong(tt_engine *e, uint64_t seq);

/* ---------------------------------------------------------------------- */
/* Pending calls (under mu)                                               */

static void
rehash_locked(tt_engine *e, size_t n)
{
    pending **b = tt_calloc(n, sizeof *b);
    if (b == NULL) {
        return; /* longer chains, still correct */
    }
    for (pending *p = e->all; p != NULL; p = p->next) {
        if (p->in_table) {
            pending **slot = &b[p->seq & (n - 1)];
            p->hnext = *slot;
            *slot = p;
        }
    }
    tt_free(e->buckets);
    e->buckets = b;
    e->nbuckets = n;
}

/* Async deadlines: the in-order list or, for a deadline earlier than the
 * list's last, the heap. */
static tether_err
dl_add(tt_engine *e, pending *p, uint64_t deadline)
{
    p->deadline = deadline;
    if (e->dl_tail == NULL || deadline >= e->dl_tail->deadline) {
        p->dprev = e->dl_tail;
        p->dnext = NULL;
        if (e->dl_tail != NULL) {
            e->dl_tail->dnext = p;
        } else {
            e->dl_head = p;
        }
        e->dl_tail = p;
        p->in_dlist = 1;
        return TETHER_OK;
    }
    return tt_heap_push(&e->deadlines, &p->dl, deadline);
}

static void
dl_del(tt_engine *e, pending *p)
{
    if (p->in_dlist) {
        if (p->dprev != NULL) {
            p->dprev->dnext = p->dnext;
        } else {
            e->dl_head = p->dnext;
        }
        if (p->dnext != NULL) {
            p->dnext->dprev = p->dprev;
        } else {
            e->dl_tail = p->dprev;
        }
        p->in_dlist = 0;
    } else {
        tt_heap_remove(&e->deadlines, &p->dl);
    }
}

/* The call with the earliest deadline, or NULL. */
static pending *
dl_first(tt_engine *e)
{
    tt_heap_node *top = tt_heap_top(&e->deadlines);
    pending *h = top != NULL ? (pending *)((char *)top - offsetof(pending, dl)) : NULL;
    if (e->dl_head == NULL || (h != NULL && h->deadline < e->dl_head->deadline)) {
        return h;
    }
    return e->dl_head;
}

static void
pend_insert(tt_engine *e, pending *p)
{
    if (e->npending >= 2 * e->nbuckets) {
        rehash_locked(e, e->nbuckets * 2);
    }
    pending **b = &e->buckets[p->seq & (e->nbuckets - 1)];
    p->hnext = *b;
    *b = p;
    p->in_table = 1;
    TT_DLIST_PUSH(&e->all, p);
    e->npending++;
    atomic_store_explicit(&e->npending_pub, e->npending, memory_order_relaxed);
}

static void
pend_remove(tt_engine *e, pending *p)
{
    if (p->in_table) {
        pending **b = &e->buckets[p->seq & (e->nbuckets - 1)];
        while (*b != NULL && *b != p) {
            b = &(*b)->hnext;
        }
        if (*b == p) {
            *b = p->hnext;
        }
        p->in_table = 0;
    }
    dl_del(e, p);
    TT_DLIST_REMOVE(&e->all, p);
    e->npending--;
    atomic_store_explicit(&e->npending_pub, e->npending, memory_order_relaxed);
}

static pending *
pend_take(tt_engine *e, uint64_t seq)
{
    for (pending *p = e->buckets[seq & (e->nbuckets - 1)]; p != NULL; p = p->hnext) {
        if (p->seq == seq) {
            pend_remove(e, p);
            return p;
        }
    }
    return NULL;
}

static pending *
pend_alloc(tt_engine *e)
{
    pending *p = e->free_list;
    if (p != NULL) {
        e->free_list = p->cnext;
        e->nfree--;
    } else {
        p = tt_malloc(sizeof *p);
        if (p == NULL) {
            return NULL;
        }
    }
    memset(p, 0, sizeof *p);
    tt_heap_node_init(&p->dl);
    return p;
}

static void
outcome_clear(pending *p)
{
    if (p->msg != NULL) {
        protobuf_c_message_free_unpacked(p->msg, &tt_pb_allocator);
        p->msg = NULL;
    }
    tt_free(p->data);
    tt_free(p->text);
    tt_free(p->trailers);
    p->data = NULL;
    p->text = NULL;
    p->trailers = NULL;
    p->ntrailers = 0;
}

static void
pend_free_locked(tt_engine *e, pending *p)
{
    outcome_clear(p);
    if (e->nfree < FREE_LIST_MAX) {
        p->cnext = e->free_list;
        e->free_list = p;
        e->nfree++;
    } else {
        tt_free(p);
    }
}

/* ---------------------------------------------------------------------- */
/* The connection (under mu)                                              */

/* Register ev for the loop, if it changed: the steady state costs no
 * epoll_ctl per batch. */
static void
set_events_locked(tt_engine *e, unsigned ev)
{
    if (e->fd < 0 || (e->registered && e->armed == ev) || (!e->registered && ev == 0)) {
        return;
    }
    tether_err rc =
        e->registered ? tt_loop_mod(e->loop, &e->io, ev) : tt_loop_add(e->loop, &e->io, ev);
    if (rc == TETHER_OK) {
        e->registered = 1;
        e->armed = ev;
    }
}

/* Let the loop read (and write what is queued).  Reading stays on once it
 * was needed; only a sync reader taking over turns it off (on_fd), and that
 * reader calls this again when it is done. */
static void
arm_locked(tt_engine *e)
{
    if (e->fd < 0 || e->reader == READER_SYNC ||
        atomic_load_explicit(&e->state, memory_order_relaxed) != TT_ENGINE_READY) {
        return;
    }
    unsigned ev = e->armed & TT_EV_READ;
    if (e->npending > 0 || e->ping_out) {
        ev |= TT_EV_READ;
    }
    if (tt_buf_size(&e->out) > 0) {
        ev |= TT_EV_WRITE;
    }
    set_events_locked(e, ev);
}

/* Send what is queued.  Errors mark the connection broken for the reader
 * (or close it here when nobody is reading). */
/* A write broke the connection: close it now, or, while a reader owns
 * the socket, have that reader close it. */
static void
write_failed_locked(tt_engine *e, tether_err why)
{
    if (e->reader == READER_NONE) {
        close_locked(e, why);
    } else {
        e->broken = 1;
    }
}

static void
flush_locked(tt_engine *e)
{
    if (atomic_load_explicit(&e->state, memory_order_relaxed) != TT_ENGINE_READY) {
        return; /* sent when the connect completes */
    }
    while (e->fd >= 0 && tt_buf_size(&e->out) > 0) {
        ssize_t n = e->tls != NULL ? tt_tls_write(e->tls, tt_buf_head(&e->out), tt_buf_size(&e->out))
                                   : send(e->fd, tt_buf_head(&e->out), tt_buf_size(&e->out),
                                          MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            tt_buf_consume(&e->out, (size_t)n);
            e->sent_total += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            arm_locked(e); /* the loop finishes the write when the socket drains */
            return;
        }
        write_failed_locked(e, TETHER_ECONNRESET);
        return;
    }
}

/* Have the loop run completed callbacks.  The kick task is queued at most
 * once (queuing a task twice would loop the loop's queue on itself), and
 * never once destroy began (the engine must be freeable after its last
 * task ran). */
static void
kick_locked(tt_engine *e)
{
    if (!e->kicked && !e->detaching) {
        e->kicked = 1;
        tt_loop_post(e->loop, &e->t_kick);
    }
}

/* Complete p (out of the table) with its outcome set. */
static void
complete_locked(tt_engine *e, pending *p)
{
    p->done = 1;
    if (p->fn != NULL) {
        p->cnext = e->completed;
        e->completed = p;
        kick_locked(e);
    } else if (p->cv != NULL) {
        pthread_cond_signal(p->cv);
    }
}

static void
fail_locked(tt_engine *e, pending *p, tether_err err)
{
    p->err = err;
    complete_locked(e, p);
}

/* Close the connection and fail every pending call with why.  Only the
 * reader, or anyone while there is no reader, may do this. */
static void
close_locked(tt_engine *e, tether_err why)
{
    if (e->conn_err != TETHER_OK && why == TETHER_ECONNRESET) {
        why = e->conn_err;
    }
    if (e->closing) {
        why = TETHER_ECLOSED;
    }
    e->conn_err = TETHER_OK;
    if (why == TETHER_ETLS) {
        /* TLS 1.3: a refused client certificate shows after the connect. */
        e->connect_err = why;
    }
    if (e->fd >= 0) {
        if (e->registered) {
            tt_loop_del(e->loop, &e->io);
        }
        tt_tls_free(e->tls);
        e->tls = NULL;
        close(e->fd);
    }
    e->fd = -1;
    e->io.fd = -1;
    atomic_store_explicit(&e->state, TT_ENGINE_IDLE, memory_order_relaxed);
    tt_timer_cancel(e->loop, &e->connect_tmr);
    e->registered = 0;
    e->armed = 0;
    e->broken = 0;
    e->out.off = e->out.len = 0;
    e->in.off = e->in.len = 0;
    e->ping_out = 0;
    e->probing = 0;
    while (e->all != NULL) {
        pending *p = e->all;
        pend_remove(e, p);
        tether_err err = why;
        if (e->cfg.unsent_again && why != TETHER_ECLOSED && p->end_off > e->sent_total) {
            err = TETHER_EAGAIN; /* never left the process: safe anywhere else */
        } else if (e->dead && why == TETHER_ECONNRESET) {
            p->text = tt_strdup(e->dead_text);
        }
        fail_locked(e, p, err);
    }
    e->dead = 0;
    e->quiet_ticks = 0;
    e->queued_total = e->sent_total = 0;
    atomic_store_explicit(&e->unanswered, 0, memory_order_relaxed);
    pthread_cond_broadcast(&e->cv);
}

static void
states_free(tt_engine *e)
{
    if (e->enc != NULL) {
        e->ops->fini(e->enc);
        tt_free(e->enc);
    }
    if (e->dec != NULL) {
        e->ops->fini(e->dec);
        tt_free(e->dec);
    }
    e->enc = e->dec = NULL;
}

/* Fresh codec state for a new connection (each connection starts a new
 * stream: gob's type ids, for one, are per connection). */
static tether_err
states_reset(tt_engine *e)
{
    states_free(e);
    e->enc = tt_calloc(1, e->ops->state_size);
    e->dec = tt_calloc(1, e->ops->state_size);
    if (e->enc == NULL || e->dec == NULL) {
        tt_free(e->enc);
        tt_free(e->dec);
        e->enc = e->dec = NULL;
        return TETHER_ENOMEM;
    }
    tether_err rc = e->ops->init(e->enc, e->cfg.max_frame);
    if (rc == TETHER_OK) {
        rc = e->ops->init(e->dec, e->cfg.max_frame);
        if (rc != TETHER_OK) {
            e->ops->fini(e->enc);
        }
    }
    if (rc != TETHER_OK) {
        tt_free(e->enc);
        tt_free(e->dec);
        e->enc = e->dec = NULL;
    }
    return rc;
}

/* The socket is connected: make it blocking for the sync reader's recv()
 * (every other send and recv passes MSG_DONTWAIT) and send what waited. */
static void
ready_locked(tt_engine *e)
{
    int fl = e->tls == NULL ? fcntl(e->fd, F_GETFL) : -1; /* TLS stays non-blocking */
    if (fl >= 0) {
        fcntl(e->fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    tt_timer_cancel(e->loop, &e->connect_tmr);
    atomic_store_explicit(&e->state, TT_ENGINE_READY, memory_order_relaxed);
    if (e->ping_out) {
        e->ping_deadline = tt_now_coarse_ns() + (uint64_t)e->cfg.probe_timeout_ms * 1000000ull;
        tt_timer_arm(e->loop, &e->probe_tmr, e->ping_deadline);
    }
    pthread_cond_broadcast(&e->cv);
    flush_locked(e);
    arm_locked(e);
}

/* Start connecting (state IDLE).  The preface goes first into the output,
 * so requests queued while connecting follow it.  An immediate failure is
 * returned (nothing was queued then). */
static tether_err
connect_start_locked(tt_engine *e)
{
    tether_err rc = states_reset(e);
    if (rc != TETHER_OK) {
        return rc;
    }
    int fd, in_progress;
    rc = tt_sock_connect_start(&e->addr, &fd, &in_progress);
    if (rc != TETHER_OK) {
        return rc;
    }
    tt_sock_keepalive(fd, e->cfg.keepalive_ms);
    e->out.off = e->out.len = 0;
    e->queued_total = e->ops->preface_len;
    e->sent_total = 0;
    if (e->ops->preface_len > 0 &&
        tt_buf_append(&e->out, e->ops->preface, e->ops->preface_len) != TETHER_OK) {
        close(fd);
        return TETHER_ENOMEM;
    }
    e->fd = fd;
    e->rcvtimeo_ms = 0;
    e->io.fd = fd;
    e->registered = 0;
    e->armed = 0;
    atomic_store_explicit(&e->goaway, 0, memory_order_relaxed);
    if (!in_progress && e->cfg.tls == NULL) {
        ready_locked(e);
        return TETHER_OK;
    }
    atomic_store_explicit(&e->state, TT_ENGINE_CONNECTING, memory_order_relaxed);
    set_events_locked(e, TT_EV_WRITE);
    rc = tt_timer_arm(e->loop, &e->connect_tmr,
                      tt_now_ns() + (uint64_t)e->cfg.connect_timeout_ms * 1000000ull);
    if (rc != TETHER_OK || !e->registered) {
        close_locked(e, rc != TETHER_OK ? rc : TETHER_ENOMEM);
        return rc != TETHER_OK ? rc : TETHER_ENOMEM;
    }
    return TETHER_OK;
}

static void
notify_state(tt_engine *e, tether_err err)
{
    if (e->cfg.on_state != NULL) {
        e->cfg.on_state(e, err, e->cfg.state_arg);
    }
}

/* ---------------------------------------------------------------------- */
/* Answers                                                                */

/* A per-thread read buffer: answers are decoded straight from it, and
 * only a partial answer is copied into the engine's own buffer, so an idle
 * connection holds no read buffer at all. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static TT_THREAD_LOCAL uint8_t *tls_scratch;

static void
scratch_free(void *p)
{
    tt_free(p);
}

static void
scratch_key_init(void)
{
    pthread_key_create(&scratch_key, scratch_free);
}

static uint8_t *
scratch_get(void)
{
    if (tls_scratch == NULL) {
        pthread_once(&scratch_once, scratch_key_init);
        tls_scratch = tt_malloc(READ_CHUNK);
        if (tls_scratch != NULL) {
            pthread_setspecific(scratch_key, tls_scratch);
        }
    }
    return tls_scratch;
}

/* The trailers of an answer as one block: the tether_meta array, then a
 * copy of the context entries its strings point into (they are
 * NUL-terminated there).  NULL with no trailers, or without memory (the
 * answer itself still counts). */
static tether_meta *
trailers_copy(const uint8_t *ctx, size_t len, size_t *count)
{
    size_t n = 0;
    size_t off = 0;
    tt_ctx_entry e;
    while (tt_ctx_next(ctx, len, &off, &e) == 1) {
        n += e.tag == TT_CTX_META;
    }
    *count = 0;
    if (n == 0) {
        return NULL;
    }
    tether_meta *arr = tt_malloc(n * sizeof *arr + len);
    if (arr == NULL) {
        return NULL;
    }
    uint8_t *copy = (uint8_t *)(arr + n);
    memcpy(copy, ctx, len);
    off = 0;
    size_t i = 0;
    while (i < n && tt_ctx_next(copy, len, &off, &e) == 1) {
        if (e.tag == TT_CTX_META) {
            arr[i].key = e.key;
            arr[i].value = e.value;
            i++;
        }
    }
    *count = n;
    return arr;
}

/* Run an async call's callback (loop thread, no lock held). */
static void
run_callback(pending *p, const uint8_t *data, size_t len)
{
    tether_reply r = {.err = p->err,
                      .errtext = p->text,
                      .msg = p->msg,
                      .data = data,
                      .len = len,
                      .trailers = p->trailers,
                      .ntrailers = p->ntrailers};
    if (r.err != TETHER_OK) {
        r.data = NULL;
        r.len = 0;
        r.msg = NULL;
    }
    p->msg = NULL; /* the callback owns it */
    p->fn(p->owner, &r, p->arg);
}

/* Hand one answer to its call.  Unknown seqs (late answers of calls that
 * timed out) are dropped. */
static void
dispatch(tt_engine *e, const tt_rpc_msg *m, pending *me, pending **spent)
{
    pthread_mutex_lock(&e->mu);
    pending *p = pend_take(e, m->seq);
    pthread_mutex_unlock(&e->mu);
    if (p == NULL) {
        return;
    }
    /* p is out of the table: nobody else touches it until it is done. */
    if (m->ctx_len > 0) {
        p->trailers = trailers_copy(m->ctx, m->ctx_len, &p->ntrailers);
    }
    if (m->status != TETHER_OK) {
        const char *t = m->errtext != NULL ? m->errtext : "";
        p->text = tt_strndup(t, m->errtext_len);
        if (p->text == NULL) {
            p->err = TETHER_ENOMEM;
        } else if (e->ops->reply_status != NULL) {
            p->err = e->ops->reply_status(t, m->errtext_len);
        } else {
            p->err = m->status;
        }
    } else if (p->desc != NULL) {
        p->err = e->ops->unpack(e->dec, p->desc, m->body, m->body_len, &p->msg);
        if (p->err != TETHER_OK) {
            p->err = TETHER_EBADREPLY;
            p->text = tt_strdup(e->ops->last_error(e->dec));
        }
    }
    int on_loop = tt_loop_on_thread(e->loop);
    if (p->fn != NULL && on_loop) {
        /* On the loop thread: run the callback straight from the buffer. */
        run_callback(p, m->body, m->body_len);
        /* Back to the free list with the rest of the batch, under one
         * lock (dispatch_all). */
        outcome_clear(p);
        p->cnext = *spent;
        *spent = p;
        return;
    }
    if (p->err == TETHER_OK && (p->desc == NULL || p->fn != NULL)) {
        /* Raw replies, and the bytes an async typed reply also shows. */
        p->data = (uint8_t *)tt_strndup((const char *)m->body, m->body_len);
        p->len = m->body_len;
        if (p->data == NULL) {
            outcome_clear(p);
            p->err = TETHER_ENOMEM;
        }
    }
    if (p == me) {
        /* The reader's own call: out of the table, on this thread's stack,
         * read by nobody else, so no lock. */
        p->done = 1;
        return;
    }
    pthread_mutex_lock(&e->mu);
    complete_locked(e, p);
    pthread_mutex_unlock(&e->mu);
}

/* Decode and dispatch every complete answer in p[0..n).  Returns the bytes
 * used, or sets *err to what breaks the connection. */
static size_t
dispatch_all(tt_engine *e, const uint8_t *p, size_t n, pending *me, tether_err *err)
{
    size_t off = 0;
    unsigned calls = 0;
    pending *spent = NULL; /* calls whose callbacks ran: freed together */
    *err = TETHER_OK;
    while (off < n) {
        tt_rpc_msg m; /* decode_reply fills it whole when it returns OK */
        size_t used = 0;
        tether_err rc = e->ops->decode_reply(e->dec, p + off, n - off, &used, &m);
        if (rc == TETHER_EAGAIN) {
            break;
        }
        if (rc != TETHER_OK) {
            tt_log(TETHER_LOG_WARN, "%s reply stream broken: %s", e->ops->name,
                   tether_strerror(rc));
            *err = rc == TETHER_EMSGSIZE ? TETHER_EMSGSIZE : TETHER_EPROTO;
            break;
        }
        switch (m.kind) {
        case TT_MSG_CALL:
            /* gob type definitions alone, or whitespace, carry no reply. */
            if (m.method != NULL || m.body != NULL || m.status != TETHER_OK) {
                dispatch(e, &m, me, &spent);
                /* Requests the callbacks queued go out every
                 * TT_SOCK_FLUSH_BATCH answers when this engine is alone on
                 * its pool thread. */
                if (me == NULL && ++calls % TT_SOCK_FLUSH_BATCH == 0 && e->flush_after &&
                    off + used < n && tt_loop_pool_alone(e->loop)) {
                    pthread_mutex_lock(&e->mu);
                    e->flush_after = 0;
                    flush_locked(e);
                    pthread_mutex_unlock(&e->mu);
                }
            }
            break;
        case TT_MSG_CONN_ERROR:
            /* The server closes next; its reason beats "reset". */
            tt_log(TETHER_LOG_WARN, "server closed the connection: %.*s", (int)m.errtext_len,
                   m.errtext != NULL ? m.errtext : "");
            pthread_mutex_lock(&e->mu);
            e->conn_err = m.status;
            pthread_mutex_unlock(&e->mu);
            break;
        case TT_MSG_GOAWAY:
            atomic_store_explicit(&e->goaway, 1, memory_order_relaxed);
            break;
        case TT_MSG_PONG:
            on_pong(e, m.seq);
            break;
        default:
            break;
        }
        if (used == 0) {
            break;
        }
        off += used;
    }
    if (spent != NULL) {
        pthread_mutex_lock(&e->mu);
        while (spent != NULL) {
            pending *next = spent->cnext;
            pend_free_locked(e, spent);
            spent = next;
        }
        pthread_mutex_unlock(&e->mu);
    }
    return off;
}

/* One read by the current reader (blocking up to SO_RCVTIMEO when block
 * is set).  *got: 0 nothing came, 2 the read filled the buffer (more may
 * wait), else 1.  Returns TETHER_OK or the error that broke the
 * connection. */
static tether_err
read_some(tt_engine *e, pending *me, int *got, int block)
{
    *got = 0;
    uint8_t *dst;
    size_t space;
    /* The engine's own buffer once it has one (a busy connection keeps it),
     * the thread's scratch buffer otherwise. */
    int direct = e->in.cap == 0;
    if (direct) {
        dst = scratch_get();
        space = READ_CHUNK;
        if (dst == NULL) {
            return TETHER_ENOMEM;
        }
    } else {
        /* A partial answer waits: read after it, growing with it. */
        size_t want = tt_buf_size(&e->in) > READ_CHUNK ? tt_buf_size(&e->in) : READ_CHUNK;
        if (tt_buf_reserve(&e->in, want) != TETHER_OK) {
            return TETHER_ENOMEM;
        }
        dst = e->in.data + e->in.len;
        space = e->in.cap - e->in.len;
    }
    ssize_t n;
    do {
        n = e->tls != NULL ? tt_tls_read(e->tls, dst, space)
                           : recv(e->fd, dst, space, block ? 0 : MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
        return TETHER_ECONNRESET;
    }
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK ? TETHER_OK
               : errno == EPROTO                       ? TETHER_ETLS
                                                       : TETHER_ECONNRESET;
    }
    *got = (size_t)n == space ? 2 : 1;
    if (e->cfg.probe_ms != 0) {
        /* Flags only, no clock: the timer samples them once a period. */
        atomic_store_explicit(&e->rx_seen, 1, memory_order_relaxed);
        atomic_store_explicit(&e->unanswered, 0, memory_order_relaxed);
    }
    tether_err rc;
    if (direct) {
        size_t used = dispatch_all(e, dst, (size_t)n, me, &rc);
        if (rc == TETHER_OK && used < (size_t)n &&
            (tt_buf_reserve(&e->in, READ_CHUNK) != TETHER_OK ||
             tt_buf_append(&e->in, dst + used, (size_t)n - used) != TETHER_OK)) {
            rc = TETHER_ENOMEM;
        }
        return rc;
    }
    e->in.len += (size_t)n;
    size_t used = dispatch_all(e, tt_buf_head(&e->in), tt_buf_size(&e->in), me, &rc);
    tt_buf_consume(&e->in, used);
    if (tt_buf_size(&e->in) == 0 &&
        atomic_load_explicit(&e->npending_pub, memory_order_relaxed) == 0 &&
        !tt_timer_armed(&e->idle_tmr)) {
        /* An idle connection keeps no buffer, but one that is idle only
         * between two calls (large sequential replies) keeps it: freeing it
         * after each call costs an allocation and its page faults per call.
         * The timer frees it once the connection stays idle (the check is
         * a hint; a lost race only moves the timer). */
        tt_timer_arm(e->loop, &e->idle_tmr, tt_now_coarse_ns() + IDLE_BUFFER_NS);
    }
    return rc;
}

/* Tell the server the caller gave up on seq, so its handler can stop
 * (codecs that can say so; best effort: without memory it is not said). */
static void
queue_cancel_locked(tt_engine *e, uint64_t seq)
{
    if (e->ops->encode_cancel != NULL && e->fd >= 0 &&
        atomic_load_explicit(&e->state, memory_order_relaxed) == TT_ENGINE_READY) {
        size_t before = tt_buf_size(&e->out);
        e->ops->encode_cancel(e->enc, &e->out, seq);
        e->queued_total += tt_buf_size(&e->out) - before;
    }
}

/* ---------------------------------------------------------------------- */
/* The loop side                                                          */

static void
run_completed(tt_engine *e)
{
    pthread_mutex_lock(&e->mu);
    pending *list = e->completed;
    e->completed = NULL;
    pthread_mutex_unlock(&e->mu);
    /* The list is newest first: reverse to completion order. */
    pending *rev = NULL;
    while (list != NULL) {
        pending *n = list->cnext;
        list->cnext = rev;
        rev = list;
        list = n;
    }
    while (rev != NULL) {
        pending *p = rev;
        rev = p->cnext;
        run_callback(p, p->data, p->len);
        pthread_mutex_lock(&e->mu);
        pend_free_locked(e, p);
        pthread_mutex_unlock(&e->mu);
    }
}

static void
on_kick(tt_task *t)
{
    tt_engine *e = (tt_engine *)((char *)t - offsetof(tt_engine, t_kick));
    pthread_mutex_lock(&e->mu);
    e->kicked = 0;
    pthread_mutex_unlock(&e->mu);
    run_completed(e);
}

/* The earliest async deadline passed: fail every call that is due. */
static void
on_call_timer(tt_timer *t)
{
    tt_engine *e = (tt_engine *)((char *)t - offsetof(tt_engine, call_tmr));
    uint64_t now = tt_now_ns();
    pthread_mutex_lock(&e->mu);
    pending *p;
    while ((p = dl_first(e)) != NULL && p->deadline <= now) {
        pend_remove(e, p);
        queue_cancel_locked(e, p->seq);
        fail_locked(e, p, TETHER_ETIMEDOUT);
    }
    e->timer_at = 0;
    if (p != NULL) {
        e->timer_at = p->deadline;
        tt_timer_arm(e->loop, &e->call_tmr, p->deadline);
    }
    if (e->reader == READER_NONE) {
        flush_locked(e);
    } /* else the reader's arm_locked() flushes through the loop */
    pthread_mutex_unlock(&e->mu);
    run_completed(e);
}

static void
on_idle_timer(tt_timer *t)
{
    tt_engine *e = (tt_engine *)((char *)t - offsetof(tt_engine, idle_tmr));
    pthread_mutex_lock(&e->mu);
    /* With no reader, nobody touches the input buffer. */
    if (e->reader == READER_NONE && e->npending == 0 && tt_buf_size(&e->in) == 0) {
        tt_buf_free(&e->in);
    }
    pthread_mutex_unlock(&e->mu);
}

static void
on_connect_timer(tt_timer *t)
{
    tt_engine *e = (tt_engine *)((char *)t - offsetof(tt_engine, connect_tmr));
    pthread_mutex_lock(&e->mu);
    int was = atomic_load_explicit(&e->state, memory_order_relaxed) == TT_ENGINE_CONNECTING;
    if (was) {
        e->connect_err = TETHER_ETIMEDOUT;
        close_locked(e, TETHER_ETIMEDOUT);
    }
    pthread_mutex_unlock(&e->mu);
    if (was) {
        run_completed(e);
        notify_state(e, TETHER_ETIMEDOUT);
    }
}

/* Queue a PING and arm the timer for its PONG's deadline. */
static void
send_ping_locked(tt_engine *e, uint64_t now)
{
    size_t before = tt_buf_size(&e->out);
    if (e->ops->encode_ping(e->enc, &e->out, ++e->ping_seq) != TETHER_OK) {
        /* No memory now: try again a period later. */
        tt_timer_arm(e->loop, &e->probe_tmr, now + (uint64_t)e->cfg.probe_ms * 1000000ull);
        return;
    }
    e->queued_total += tt_buf_size(&e->out) - before;
    e->ping_out = 1;
    e->ping_deadline = now + (uint64_t)e->cfg.probe_timeout_ms * 1000000ull;
    if (atomic_load_explicit(&e->state, memory_order_relaxed) != TT_ENGINE_READY) {
        /* The connect has its own timeout; the PONG's starts once it is up
         * (ready_locked), so a SYN retransmitted once does not fail a
         * probe. */
        e->ping_deadline += (uint64_t)e->cfg.connect_timeout_ms * 1000000ull;
    }
    tt_timer_arm(e->loop, &e->probe_tmr, e->ping_deadline);
    /* Sent now even while a sync reader waits in recv(): sending under
     * e->mu does not disturb it. */
    flush_locked(e);
}

/* The liveness timer (loop thread): see "Liveness" at the top. */
static void
on_probe_timer(tt_timer *t)
{
    tt_engine *e = (tt_engine *)((char *)t - offsetof(tt_engine, probe_tmr));
    pthread_mutex_lock(&e->mu);
    if (e->fd < 0 || e->detaching) {
        e->ping_out = 0;
        pthread_mutex_unlock(&e->mu);
        return;
    }
    uint64_t now = tt_now_coarse_ns();
    uint64_t period = (uint64_t)e->cfg.probe_ms * 1000000ull;
    int dead = 0, closed = 0;
    if (e->ping_out) {
        if (now >= e->ping_deadline) {
            dead = 1;
        } else {
            tt_timer_arm(e->loop, &e->probe_tmr, e->ping_deadline);
        }
    } else if ((e->npending > 0 || atomic_load_explicit(&e->unanswered, memory_order_relaxed)) &&
               period != 0 &&
               atomic_load_explicit(&e->state, memory_order_relaxed) == TT_ENGINE_READY) {
        /* Ticks every half period; two empty ones in a row mean one to
         * one and a half periods with nothing received: ask. */
        if (atomic_exchange_explicit(&e->rx_seen, 0, memory_order_relaxed)) {
            e->quiet_ticks = 0;
        } else {
            e->quiet_ticks++;
        }
        if (e->quiet_ticks >= 2) {
            e->quiet_ticks = 0;
            send_ping_locked(e, now);
        } else {
            tt_timer_arm(e->loop, &e->probe_tmr, now + period / 2);
        }
    }
    if (dead) {
        snprintf(e->dead_text, sizeof e->dead_text,
                 "no answer to a ping within %u ms: connection given up",
                 (unsigned)e->cfg.probe_timeout_ms);
        e->dead = 1;
        if (e->reader == READER_NONE) {
            close_locked(e, TETHER_ECONNRESET);
            closed = 1;
        } else {
            /* A sync reader owns the close: wake it from recv(). */
            e->broken = 1;
            shutdown(e->fd, SHUT_RDWR);
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (dead && e->cfg.on_probe != NULL) {
        /* Before the failed calls' callbacks run: their retries must not
         * pick this connection's instance again. */
        e->cfg.on_probe(e, 0, e->cfg.state_arg);
    }
    if (closed) {
        run_completed(e);
        notify_state(e, TETHER_ECONNRESET);
    }
}

/* A PONG came (reader's thread): the connection lives. */
static void
on_pong(tt_engine *e, uint64_t seq)
{
    pthread_mutex_lock(&e->mu);
    int was_probe = 0;
    if (e->ping_out && seq == e->ping_seq) {
        e->ping_out = 0;
        was_probe = e->probing;
        e->probing = 0;
        if ((e->npending > 0 || atomic_load_explicit(&e->unanswered, memory_order_relaxed)) &&
            e->cfg.probe_ms != 0) {
            e->quiet_ticks = 0;
            tt_timer_arm(e->loop, &e->probe_tmr,
                         tt_now_coarse_ns() + (uint64_t)e->cfg.probe_ms * 500000ull);
        } else {
            tt_timer_cancel(e->loop, &e->probe_tmr);
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (was_probe && e->cfg.on_probe != NULL) {
        e->cfg.on_probe(e, 1, e->cfg.state_arg);
    }
}

/* TLS: one step of the handshake once TCP is connected.  TETHER_OK when it
 * is done, TETHER_EAGAIN while it waits for the socket, else the error
 * (tls.c logged why). */
static tether_err
tls_step_locked(tt_engine *e)
{
    if (e->tls == NULL) {
        char name[TT_ADDR_STRLEN];
        const char *n = e->cfg.server_name;
        if (n == NULL && e->addr.ss.ss_family != AF_UNIX &&
            tt_addr_format(&e->addr, name, sizeof name) == TETHER_OK) {
            /* "1.2.3.4:port" or "[v6]:port": the certificate must name the IP. */
            char *colon = strrchr(name, ':');
            *colon = '\0';
            n = name[0] == '[' ? name + 1 : name;
            if (name[0] == '[') {
                name[strlen(name) - 1] = '\0';
            }
        }
        tether_err rc = tt_tls_new(e->cfg.tls, e->fd, n, 1, &e->tls);
        if (rc != TETHER_OK) {
            return rc;
        }
    }
    int h = tt_tls_handshake(e->tls);
    if (h == TT_TLS_WANT_READ || h == TT_TLS_WANT_WRITE) {
        set_events_locked(e, h == TT_TLS_WANT_WRITE ? TT_EV_WRITE : TT_EV_READ);
        return TETHER_EAGAIN;
    }
    return h == TT_TLS_DONE ? TETHER_OK : TETHER_ETLS;
}

static void
on_fd(tt_io *io, unsigned events)
{
    tt_engine *e = (tt_engine *)((char *)io - offsetof(tt_engine, io));
    pthread_mutex_lock(&e->mu);
    if (e->fd >= 0 &&
        atomic_load_explicit(&e->state, memory_order_relaxed) == TT_ENGINE_CONNECTING) {
        /* The background connect ended, one way or the other. */
        tether_err rc = e->tls != NULL ? TETHER_OK : tt_sock_connect_result(e->fd);
        if (rc == TETHER_OK && e->cfg.tls != NULL && (rc = tls_step_locked(e)) == TETHER_EAGAIN) {
            pthread_mutex_unlock(&e->mu); /* the handshake goes on */
            return;
        }
        if (rc == TETHER_OK) {
            ready_locked(e);
        } else {
            e->connect_err = rc;
            close_locked(e, rc);
        }
        pthread_mutex_unlock(&e->mu);
        run_completed(e);
        notify_state(e, rc);
        return;
    }
    if (e->fd < 0 || e->reader != READER_NONE) {
        /* A sync reader took over: stand aside (level-triggered events would
         * wake us in a loop); it re-arms us when it is done. */
        set_events_locked(e, 0);
        pthread_mutex_unlock(&e->mu);
        return;
    }
    if (events & TT_EV_WRITE) {
        flush_locked(e);
    }
    if (e->fd < 0) {
        pthread_mutex_unlock(&e->mu);
        run_completed(e);
        notify_state(e, TETHER_ECONNRESET);
        return;
    }
    e->reader = READER_IO;
    pthread_mutex_unlock(&e->mu);
    tether_err rc = TETHER_OK;
    if (events & (TT_EV_READ | TT_EV_ERROR)) {
        /* Read again only when a read filled the buffer: otherwise the
         * level-triggered poller says when there is more, and the empty
         * recv() that would tell us so is saved. */
        int got = 2;
        for (int i = 0; i < 16 && got == 2 && rc == TETHER_OK; i++) {
            rc = read_some(e, NULL, &got, 0);
        }
    }
    pthread_mutex_lock(&e->mu);
    e->reader = READER_NONE;
    int lost = rc != TETHER_OK || e->broken;
    if (lost) {
        close_locked(e, rc != TETHER_OK ? rc : TETHER_ECONNRESET);
    } else {
        if (e->flush_after) {
            e->flush_after = 0;
            flush_locked(e);
        }
        arm_locked(e);
    }
    /* Callbacks for answers read here already ran from the buffer; only a
     * close queues more (others' completions come with a kick). */
    int queued = e->completed != NULL;
    pthread_mutex_unlock(&e->mu);
    if (queued) {
        run_completed(e);
    }
    if (lost) {
        notify_state(e, rc != TETHER_OK ? rc : TETHER_ECONNRESET);
    }
}

/* ---------------------------------------------------------------------- */
/* Setup and teardown                                                     */

tether_err
tt_engine_create(const tt_addr *addr, const tt_engine_config *cfg, tt_engine **out)
{
    tt_engine *e = tt_calloc(1, sizeof *e);
    if (e == NULL) {
        return TETHER_ENOMEM;
    }
    e->cfg = *cfg;
    e->ops = cfg->ops;
    if (cfg->tls != NULL) {
        tt_tls_ctx_ref(cfg->tls);
    }
    e->addr = *addr;
    e->fd = -1;
    e->io.fd = -1;
    e->io.cb = on_fd;
    e->next_seq = 1;
    e->nbuckets = MIN_BUCKETS;
    e->buckets = tt_calloc(MIN_BUCKETS, sizeof *e->buckets);
    if (e->buckets == NULL) {
        tt_tls_ctx_unref(cfg->tls);
        tt_free(e);
        return TETHER_ENOMEM;
    }
    tether_err rc = tt_loop_pool_acquire(&e->loop);
    if (rc != TETHER_OK) {
        tt_free(e->buckets);
        tt_tls_ctx_unref(cfg->tls);
        tt_free(e);
        return rc;
    }
    pthread_mutex_init(&e->mu, NULL);
    tt_cond_init_monotonic(&e->cv);
    tt_timer_init(&e->call_tmr, on_call_timer);
    tt_timer_init(&e->connect_tmr, on_connect_timer);
    tt_timer_init(&e->idle_tmr, on_idle_timer);
    tt_timer_init(&e->probe_tmr, on_probe_timer);
    e->t_kick.fn = on_kick;
    *out = e;
    return TETHER_OK;
}

tether_err
tt_engine_connect_wait(tt_engine *e)
{
    pthread_mutex_lock(&e->mu);
    tether_err rc = TETHER_OK;
    if (atomic_load_explicit(&e->state, memory_order_relaxed) == TT_ENGINE_IDLE) {
        rc = connect_start_locked(e);
    }
    /* The connect timer bounds this wait; the extra second only guards
     * against a loop that never ran it. */
    uint64_t until = tt_now_ns() + ((uint64_t)e->cfg.connect_timeout_ms + 1000) * 1000000ull;
    struct timespec ts = tt_timespec_ns(until);
    while (rc == TETHER_OK &&
           atomic_load_explicit(&e->state, memory_order_relaxed) == TT_ENGINE_CONNECTING) {
        if (pthread_cond_timedwait(&e->cv, &e->mu, &ts) == ETIMEDOUT) {
            rc = TETHER_ETIMEDOUT;
        }
    }
    if (rc == TETHER_OK &&
        atomic_load_explicit(&e->state, memory_order_relaxed) != TT_ENGINE_READY) {
        rc = e->connect_err != TETHER_OK ? e->connect_err : TETHER_ECONNREFUSED;
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

tether_err
tt_engine_prepare(tt_engine *e)
{
    pthread_mutex_lock(&e->mu);
    tether_err rc = TETHER_OK;
    if (!e->closing && atomic_load_explicit(&e->state, memory_order_relaxed) == TT_ENGINE_IDLE) {
        rc = connect_start_locked(e);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int
tt_engine_state(const tt_engine *e)
{
    return atomic_load_explicit(&e->state, memory_order_relaxed);
}

tether_err
tt_engine_probe(tt_engine *e)
{
    if (e->ops->encode_ping == NULL || e->cfg.probe_timeout_ms == 0) {
        return TETHER_ENOTSUP;
    }
    pthread_mutex_lock(&e->mu);
    tether_err rc = e->closing ? TETHER_ECLOSED : TETHER_OK;
    if (rc == TETHER_OK &&
        atomic_load_explicit(&e->state, memory_order_relaxed) == TT_ENGINE_IDLE) {
        rc = connect_start_locked(e);
    }
    if (rc == TETHER_OK) {
        if (!e->ping_out) {
            send_ping_locked(e, tt_now_coarse_ns());
        }
        e->probing = e->ping_out;
        if (!e->ping_out) {
            rc = TETHER_ENOMEM;
        }
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

struct tt_loop *
tt_engine_loop(const tt_engine *e)
{
    return e->loop;
}

int
tt_engine_goaway(const tt_engine *e)
{
    return atomic_load_explicit(&e->goaway, memory_order_relaxed);
}

size_t
tt_engine_pending(const tt_engine *e)
{
    return atomic_load_explicit(&e->npending_pub, memory_order_relaxed);
}

static void engine_free(tt_engine *e);

/* The last task of a destroy: every task posted before it has run. */
static void
on_final(tt_task *t)
{
    tt_engine *e = (tt_engine *)((char *)t - offsetof(tt_engine, t_final));
    if (e->free_in_final) {
        engine_free(e);
        return;
    }
    pthread_mutex_lock(&e->mu);
    e->detached = 1;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* On the loop thread: stop the timers, take the connection off the loop,
 * fail what is pending and run those callbacks here. */
static void
on_detach(tt_task *t)
{
    tt_engine *e = (tt_engine *)((char *)t - offsetof(tt_engine, t_detach));
    pthread_mutex_lock(&e->mu);
    e->detaching = 1;
    tt_timer_cancel(e->loop, &e->call_tmr);
    tt_timer_cancel(e->loop, &e->connect_tmr);
    tt_timer_cancel(e->loop, &e->idle_tmr);
    tt_timer_cancel(e->loop, &e->probe_tmr);
    close_locked(e, TETHER_ECLOSED);
    pthread_mutex_unlock(&e->mu);
    run_completed(e);
    /* A kick posted before the detach began may still be queued behind
     * this task: free only after it ran. */
    e->t_final.fn = on_final;
    tt_loop_post(e->loop, &e->t_final);
}

static void
engine_free(tt_engine *e)
{
    while (e->free_list != NULL) {
        pending *p = e->free_list;
        e->free_list = p->cnext;
        tt_free(p);
    }
    states_free(e);
    tt_heap_fini(&e->deadlines);
    tt_buf_free(&e->out);
    tt_buf_free(&e->in);
    tt_free(e->buckets);
    tt_tls_ctx_unref(e->cfg.tls);
    tt_loop *l = e->loop;
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    tt_free(e);
    tt_loop_pool_release(l);
}

void
tt_engine_destroy(tt_engine *e)
{
    if (e == NULL) {
        return;
    }
    pthread_mutex_lock(&e->mu);
    e->closing = 1;
    if (e->reader == READER_NONE) {
        close_locked(e, TETHER_ECLOSED); /* sync waiters leave with ECLOSED */
    } else if (e->fd >= 0) {
        shutdown(e->fd, SHUT_RDWR); /* wakes the reader blocked in recv() */
    }
    while (e->nsync > 0) {
        pthread_cond_wait(&e->cv, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    e->t_detach.fn = on_detach;
    if (tt_loop_on_thread(e->loop)) {
        /* From a callback of another engine on the same loop: do the loop's
         * part now; the memory goes with the last queued task. */
        e->free_in_final = 1;
        on_detach(&e->t_detach);
        return;
    }
    tt_loop_post(e->loop, &e->t_detach);
    pthread_mutex_lock(&e->mu);
    while (!e->detached) {
        pthread_cond_wait(&e->cv, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    engine_free(e);
}

/* ---------------------------------------------------------------------- */
/* Calls                                                                  */

/* Take e->mu with a connection in place or on its way (connecting again
 * after a break).  On error the lock is not held. */
static tether_err
lock_connected(tt_engine *e)
{
    pthread_mutex_lock(&e->mu);
    tether_err rc = e->closing ? TETHER_ECLOSED : TETHER_OK;
    if (rc == TETHER_OK &&
        atomic_load_explicit(&e->state, memory_order_relaxed) == TT_ENGINE_IDLE) {
        rc = connect_start_locked(e);
    }
    if (rc != TETHER_OK) {
        pthread_mutex_unlock(&e->mu);
    }
    return rc;
}

static tether_err
encode_request_locked(tt_engine *e, uint64_t seq, const tt_call_req *rq, int later)
{
    if (e->ops->encode_call != NULL) {
        tt_call_ctx ctx = {.timeout_ms = rq->timeout_ms,
                           .meta = rq->meta,
                           .nmeta = rq->nmeta,
                           .body_later = later};
        if (rq->msg == NULL && e->ops->encode_request_raw == NULL) {
            return TETHER_ENOTSUP;
        }
        return e->ops->encode_call(e->enc, &e->out, seq, rq->method, rq->method_len, rq->msg,
                                   rq->data, rq->len, &ctx);
    }
    if (rq->msg != NULL) {
        return e->ops->encode_request(e->enc, &e->out, seq, rq->method, rq->method_len, rq->msg);
    }
    if (e->ops->encode_request_raw == NULL) {
        return TETHER_ENOTSUP;
    }
    return e->ops->encode_request_raw(e->enc, &e->out, seq, rq->method, rq->method_len, rq->data,
                                      rq->len);
}

/* Queue the request and count its bytes (see "Liveness").  A large raw
 * body goes from the caller's memory to the socket when the connection is
 * up (only what the socket does not take now is copied), else into out. */
static tether_err
queue_request_locked(tt_engine *e, uint64_t seq, const tt_call_req *rq)
{
    int later = rq->msg == NULL && e->ops->encode_call != NULL &&
                tt_codec_body_direct(e->ops, rq->len, e->cfg.tls != NULL);
    size_t before = tt_buf_size(&e->out);
    tether_err rc = encode_request_locked(e, seq, rq, later);
    if (rc != TETHER_OK) {
        return rc;
    }
    size_t framed = tt_buf_size(&e->out) - before;
    e->queued_total += framed;
    if (!later) {
        return TETHER_OK;
    }
    if (atomic_load_explicit(&e->state, memory_order_relaxed) != TT_ENGINE_READY || e->fd < 0) {
        rc = tt_buf_append(&e->out, rq->data, rq->len);
        if (rc != TETHER_OK) {
            e->out.len -= framed; /* the frame's start goes: nothing was sent */
            e->queued_total -= framed;
            return rc;
        }
        e->queued_total += rq->len;
        return TETHER_OK;
    }
    size_t sent = 0;
    rc = tt_sock_send_with(e->fd, &e->out, rq->data, rq->len, &sent);
    e->queued_total += rq->len;
    e->sent_total += sent;
    if (rc == TETHER_ENOMEM) {
        write_failed_locked(e, rc); /* part of the frame went, the rest cannot be kept */
        return rc;
    }
    return TETHER_OK; /* a socket error shows at the flush that follows */
}

/* A call goes out: the liveness timer runs while calls are outstanding.
 * A connection that had none counts its quiet time from now. */
static void
probe_note_call_locked(tt_engine *e)
{
    if (e->cfg.probe_ms == 0 || e->ops->encode_ping == NULL) {
        return;
    }
    /* Quiet time counts from the first request nothing came back for:
     * calls canceled (timed out, or a hedged call's loser) leave the
     * table, but a connection that answers none of them is still dead.
     * No clock is read here. */
    if (!atomic_load_explicit(&e->unanswered, memory_order_relaxed)) {
        /* Counts as activity: the next tick must not find the new call's
         * period empty already. */
        atomic_store_explicit(&e->rx_seen, 1, memory_order_relaxed);
        atomic_store_explicit(&e->unanswered, 1, memory_order_relaxed);
    }
    if (!tt_timer_armed(&e->probe_tmr)) {
        tt_timer_arm(e->loop, &e->probe_tmr,
                     tt_now_coarse_ns() + (uint64_t)e->cfg.probe_ms * 500000ull);
    }
}

tether_err
tt_engine_call_async(tt_engine *e, const tt_call_req *rq, tether_reply_fn fn, tether_client *owner,
                     void *arg, uint64_t *seq)
{
    tether_err rc = lock_connected(e);
    if (rc != TETHER_OK) {
        return rc;
    }
    pending *p = pend_alloc(e);
    if (p == NULL) {
        pthread_mutex_unlock(&e->mu);
        return TETHER_ENOMEM;
    }
    p->seq = e->next_seq++;
    if (seq != NULL) {
        *seq = p->seq;
    }
    p->fn = fn;
    p->owner = owner;
    p->arg = arg;
    p->desc = rq->desc;
    uint64_t deadline =
        tt_now_coarse_ns() + tt_coarse_step_ns() + (uint64_t)rq->timeout_ms * 1000000ull;
    rc = dl_add(e, p, deadline);
    if (rc == TETHER_OK) {
        rc = queue_request_locked(e, p->seq, rq);
        if (rc != TETHER_OK) {
            dl_del(e, p);
        }
    }
    if (rc != TETHER_OK) {
        pend_free_locked(e, p);
        pthread_mutex_unlock(&e->mu);
        return rc;
    }
    p->end_off = e->queued_total;
    probe_note_call_locked(e);
    pend_insert(e, p);
    /* The timer only ever moves earlier here; a call that completes leaves
     * it be, and a timer that finds nothing due re-arms for what is. */
    if (e->timer_at == 0 || deadline < e->timer_at) {
        e->timer_at = deadline;
        tt_timer_arm(e->loop, &e->call_tmr, deadline);
    }
    if (e->reader == READER_IO && tt_loop_on_thread(e->loop)) {
        /* From a callback inside on_fd: batch with this round's requests. */
        e->flush_after = 1;
    } else {
        flush_locked(e);
        arm_locked(e);
    }
    pthread_mutex_unlock(&e->mu);
    return TETHER_OK;
}

tether_err
tt_engine_cancel(tt_engine *e, uint64_t seq)
{
    tether_err rc = TETHER_ENOENT;
    pthread_mutex_lock(&e->mu);
    for (pending *p = e->buckets[seq & (e->nbuckets - 1)]; p != NULL; p = p->hnext) {
        if (p->seq == seq && p->fn != NULL) {
            pend_remove(e, p);
            queue_cancel_locked(e, seq);
            fail_locked(e, p, TETHER_ECANCELED);
            if (e->reader == READER_NONE) {
                flush_locked(e);
            } else {
                arm_locked(e);
            }
            rc = TETHER_OK;
            break;
        }
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

/* The fast path: the caller reads until its answer is in.  The first wait
 * is a blocking recv() bounded by SO_RCVTIMEO (one syscall instead of
 * poll() + recv()); after a timeout, poll() keeps the deadline exact.
 * Called and returns with e->mu held. */
static void
sync_read_locked(tt_engine *e, pending *p, uint64_t deadline, uint32_t timeout_ms)
{
    tether_err brk = TETHER_OK;
    int use_poll = e->tls != NULL; /* OpenSSL reads never block: poll first */
    while (!p->done && brk == TETHER_OK) {
        if (e->fd < 0 || e->broken) {
            brk = TETHER_ECONNRESET;
            break;
        }
        int fd = e->fd;
        pthread_mutex_unlock(&e->mu);
        uint64_t now = tt_now_ns();
        int wait_ms = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
        int got = 0;
        int r = 1;
        if (!use_poll && wait_ms > 0) {
            /* Kept on the socket from call to call: set again only when
             * the timeout changes (a syscall per call otherwise). */
            if (e->rcvtimeo_ms != timeout_ms) {
                struct timeval tv = {.tv_sec = timeout_ms / 1000,
                                     .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                e->rcvtimeo_ms = timeout_ms;
            }
            brk = read_some(e, p, &got, 1);
            if (brk == TETHER_OK && got == 0) {
                use_poll = 1;
                r = 0;
            }
        } else {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            r = e->tls != NULL && tt_tls_pending(e->tls) ? 1 : poll(&pfd, 1, wait_ms);
            if (r > 0) {
                brk = read_some(e, p, &got, 0);
            } else if (r < 0 && errno != EINTR) {
                brk = tt_err_errno(errno);
            }
        }
        pthread_mutex_lock(&e->mu);
        if (!p->done && r == 0 && tt_now_ns() >= deadline) {
            pend_remove(e, p);
            queue_cancel_locked(e, p->seq);
            p->done = 1;
            p->err = TETHER_ETIMEDOUT;
        }
    }
    e->reader = READER_NONE;
    if (brk != TETHER_OK || e->broken) {
        close_locked(e, brk != TETHER_OK ? brk : TETHER_ECONNRESET);
    } else {
        arm_locked(e); /* others' calls arrived meanwhile: hand over */
    }
}

tether_err
tt_engine_call(tt_engine *e, const tt_call_req *rq, tt_call_result *res)
{
    memset(res, 0, sizeof *res);
    if (tt_loop_pool_on_thread()) {
        return TETHER_ESTATE; /* would wait on the thread that must answer it */
    }
    uint64_t deadline = tt_now_ns() + (uint64_t)rq->timeout_ms * 1000000ull;
    pending p;
    memset(&p, 0, sizeof p);
    tt_heap_node_init(&p.dl);
    p.desc = rq->desc;
    tether_err rc = lock_connected(e);
    if (rc != TETHER_OK) {
        res->err = rc;
        return rc;
    }
    p.seq = e->next_seq++;
    rc = queue_request_locked(e, p.seq, rq);
    if (rc != TETHER_OK) {
        pthread_mutex_unlock(&e->mu);
        res->err = rc;
        return rc;
    }
    p.end_off = e->queued_total;
    probe_note_call_locked(e);
    e->nsync++;
    int fast = e->reader == READER_NONE && e->npending == 0 &&
               atomic_load_explicit(&e->state, memory_order_relaxed) == TT_ENGINE_READY;
    pend_insert(e, &p);
    if (fast) {
        e->reader = READER_SYNC;
    }
    flush_locked(e);
    int lost = 0;
    if (fast) {
        sync_read_locked(e, &p, deadline, rq->timeout_ms);
        lost = e->fd < 0;
    } else {
        /* Somebody else reads (or the connect is still going): wait. */
        pthread_cond_t cv;
        tt_cond_init_monotonic(&cv);
        p.cv = &cv;
        arm_locked(e);
        struct timespec ts = tt_timespec_ns(deadline);
        while (!p.done) {
            if (pthread_cond_timedwait(&cv, &e->mu, &ts) == ETIMEDOUT && !p.done && p.in_table) {
                /* Still in the table: nobody is completing it; a call a
                 * reader has taken is done in a moment. */
                pend_remove(e, &p);
                queue_cancel_locked(e, p.seq);
                if (e->reader == READER_NONE) {
                    flush_locked(e);
                } else {
                    arm_locked(e);
                }
                p.done = 1;
                p.err = TETHER_ETIMEDOUT;
            }
        }
        p.cv = NULL;
        pthread_cond_destroy(&cv);
    }
    if (--e->nsync == 0 && e->closing) {
        pthread_cond_broadcast(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    if (lost) {
        notify_state(e, TETHER_ECONNRESET);
    }
    res->err = p.err;
    res->msg = p.msg;
    res->data = p.data;
    res->len = p.len;
    res->text = p.text;
    res->trailers = p.trailers;
    res->ntrailers = p.ntrailers;
    return p.err;
}

void
tt_call_result_clear(tt_call_result *res)
{
    if (res->msg != NULL) {
        protobuf_c_message_free_unpacked(res->msg, &tt_pb_allocator);
    }
    tt_free(res->data);
    tt_free(res->text);
    tt_free(res->trailers);
    memset(res, 0, sizeof *res);
}
