/*
 * client.c - one connection, many calls in flight, sync and async.
 *
 * Who reads the socket.  A client has its own I/O thread (epoll, the fd
 * armed with EPOLLONESHOT only while it is that thread's job to read), but
 * the common case of a synchronous call with nothing else in flight does
 * not go through it: the calling thread sends the request and reads the
 * answer itself ("sync reader"), which saves two thread hand-offs per call
 * and keeps sequential latency close to a raw socket's.  Exactly one thread
 * is the reader at a time (c->reader); whoever reads dispatches every answer
 * that arrives: its own, other synchronous callers' (signalled through
 * their condition variables) and asynchronous calls' (whose callbacks always
 * run on the I/O thread).  When a sync reader finishes while other calls are
 * pending it hands reading back to the I/O thread by re-arming the fd.
 *
 * Locking: c->mu protects everything except the input buffer, which only
 * the current reader touches.  Callbacks run without c->mu held.
 */
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "codec/native/frame.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/list.h"
#include "core/log.h"
#include "net/loop.h"
#include "net/sock.h"
#include "rpc/client_int.h"
#include "tether/client.h"

#define NBUCKETS 1024u
#define TIMEOUT_SCAN_MS 10

enum { READER_NONE, READER_IO, READER_SYNC };

typedef struct pending {
    uint64_t seq;
    struct pending *hnext;       /* hash chain */
    struct pending *prev, *next; /* all pending calls */
    struct pending *cnext;       /* completed list (async, for the I/O thread) */
    tether_reply_fn fn;          /* async callback; NULL for a sync call */
    void *arg;
    const ProtobufCMessageDescriptor *desc;
    uint64_t deadline_ns;
    /* Outcome. */
    int done;
    tether_err err;
    ProtobufCMessage *msg; /* sync typed replies */
    uint8_t *data;         /* raw reply bytes or error text (copied) */
    size_t len;
    int has_text;
    pthread_cond_t *cv; /* sync waiter, NULL for the sync reader itself */
} pending;

struct tether_client {
    tether_client_config cfg;
    tt_addr addr;
    pthread_mutex_t mu;
    int fd;
    int reader;
    int armed;      /* epoll events registered for the I/O thread */
    uint32_t rcvtimeo_ms; /* SO_RCVTIMEO now set on fd (sync reader's blocking recv) */
    int registered; /* fd is in epoll */
    int broken;     /* a writer saw the connection fail; the reader closes */
    int closing;
    /* The server said it is going away.  Read without the lock, on every
     * pick of a discovery client. */
    _Atomic int goaway;
    struct tt_disc *disc; /* a client by service name: everything goes there */
    struct tt_cc *cc;     /* a gob or jsonrpc client (client_codec.c): likewise */
    tether_err conn_err; /* reason the server gave before closing, if any */
    uint64_t next_seq;
    pending *buckets[NBUCKETS];
    pending *all;
    size_t npending;
    /* npending as last published (written under mu): tether_client_pending()
     * reads it without the lock, once per endpoint per call when balancing. */
    _Atomic size_t npending_pub;
    size_t nasync;
    tt_buf out; /* request bytes not yet sent (under mu) */
    tt_buf in;  /* answer bytes read, owned by the reader */
    pending *completed;
    pending *free_list;
    tt_loop loop;
    tt_io io;
    pthread_t tid;
    int stop;
    int flush_after; /* the I/O thread queued requests in out */
    tt_task t_kick;
    int kicked; /* t_kick is queued (under mu): a task must not be queued twice */
    tt_task t_stop;
};

static __thread tether_client *tls_io; /* set on a client's I/O thread */

void
tether_client_config_init(tether_client_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_frame_size = 16u * 1024 * 1024;
    cfg->connect_timeout_ms = 5000;
    cfg->call_timeout_ms = 10000;
}

/* ---------------------------------------------------------------------- */
/* Pending calls (under mu)                                               */

static void
pend_insert(tether_client *c, pending *p)
{
    pending **b = &c->buckets[p->seq & (NBUCKETS - 1)];
    p->hnext = *b;
    *b = p;
    TT_DLIST_PUSH(&c->all, p);
    c->npending++;
    atomic_store_explicit(&c->npending_pub, c->npending, memory_order_relaxed);
    if (p->fn != NULL) {
        c->nasync++;
    }
}

static void
pend_remove(tether_client *c, pending *p)
{
    pending **b = &c->buckets[p->seq & (NBUCKETS - 1)];
    while (*b != NULL && *b != p) {
        b = &(*b)->hnext;
    }
    if (*b == p) {
        *b = p->hnext;
    }
    TT_DLIST_REMOVE(&c->all, p);
    c->npending--;
    atomic_store_explicit(&c->npending_pub, c->npending, memory_order_relaxed);
    if (p->fn != NULL) {
        c->nasync--;
    }
}

static pending *
pend_take(tether_client *c, uint64_t seq)
{
    for (pending *p = c->buckets[seq & (NBUCKETS - 1)]; p != NULL; p = p->hnext) {
        if (p->seq == seq) {
            pend_remove(c, p);
            return p;
        }
    }
    return NULL;
}

static pending *
pend_alloc(tether_client *c)
{
    pending *p = c->free_list;
    if (p != NULL) {
        c->free_list = p->cnext;
    } else {
        p = tt_malloc(sizeof *p);
        if (p == NULL) {
            return NULL;
        }
    }
    memset(p, 0, sizeof *p);
    return p;
}

static void
pend_free_locked(tether_client *c, pending *p)
{
    tt_free(p->data);
    p->data = NULL;
    p->cnext = c->free_list;
    c->free_list = p;
}

/* ---------------------------------------------------------------------- */
/* The connection (under mu)                                              */

/* Register ev (level-triggered) for the I/O thread, if it changed: the
 * steady async state costs no epoll_ctl per batch. */
static void
set_events_locked(tether_client *c, uint32_t ev)
{
    if (c->fd < 0 || (c->registered && c->armed == (int)ev) || (!c->registered && ev == 0)) {
        return;
    }
    struct epoll_event e = {.events = ev, .data.ptr = &c->io};
    int op = c->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(c->loop.epfd, op, c->fd, &e) == 0) {
        c->registered = 1;
        c->armed = (int)ev;
    }
}

/* Let the I/O thread read (and write what is queued).  Reading stays on
 * once it was needed; only a sync reader taking over turns it off (on_fd),
 * and that reader calls this again when it is done. */
static void
arm_locked(tether_client *c)
{
    if (c->fd < 0 || c->reader == READER_SYNC) {
        return;
    }
    uint32_t ev = (uint32_t)c->armed & EPOLLIN;
    if (c->npending > 0) {
        ev |= EPOLLIN;
    }
    if (tt_buf_size(&c->out) > 0) {
        ev |= EPOLLOUT;
    }
    set_events_locked(c, ev);
}

/* Send what is queued.  Errors mark the connection broken for the reader
 * (or close it here when nobody is reading). */
static void close_locked(tether_client *c, tether_err why);

static void
flush_locked(tether_client *c)
{
    while (c->fd >= 0 && tt_buf_size(&c->out) > 0) {
        ssize_t n = send(c->fd, tt_buf_head(&c->out), tt_buf_size(&c->out),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            tt_buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* The I/O thread finishes the write when the socket drains. */
            arm_locked(c);
            return;
        }
        if (c->reader == READER_NONE) {
            close_locked(c, TETHER_ECONNRESET);
        } else {
            c->broken = 1;
        }
        return;
    }
}

/* Wake the I/O thread to run completed callbacks (none needed on it).
 * The kick task is queued at most once: queuing a task twice would loop
 * the loop's queue on itself. */
static void
kick_locked(tether_client *c)
{
    if (tls_io != c && !c->kicked) {
        c->kicked = 1;
        tt_loop_post(&c->loop, &c->t_kick);
    }
}

/* Complete p with an error and no body. */
static void
finish_err_locked(tether_client *c, pending *p, tether_err err)
{
    p->err = err;
    p->done = 1;
    if (p->fn != NULL) {
        p->cnext = c->completed;
        c->completed = p;
    } else if (p->cv != NULL) {
        pthread_cond_signal(p->cv);
    }
}

/* Close the connection and fail every pending call with why.  Only the
 * reader, or anyone while there is no reader, may do this. */
static void
close_locked(tether_client *c, tether_err why)
{
    if (c->conn_err != TETHER_OK && why == TETHER_ECONNRESET) {
        why = c->conn_err;
    }
    c->conn_err = TETHER_OK;
    if (c->fd >= 0) {
        if (c->registered) {
            epoll_ctl(c->loop.epfd, EPOLL_CTL_DEL, c->fd, NULL);
        }
        close(c->fd);
    }
    c->fd = -1;
    c->registered = 0;
    c->armed = 0;
    c->broken = 0;
    c->out.off = c->out.len = 0;
    c->in.off = c->in.len = 0;
    while (c->all != NULL) {
        pending *p = c->all;
        pend_remove(c, p);
        finish_err_locked(c, p, why);
    }
    if (c->completed != NULL) {
        kick_locked(c);
    }
}

static tether_err
connect_locked(tether_client *c)
{
    if (c->fd >= 0) {
        return TETHER_OK;
    }
    int fd;
    tether_err rc = tt_sock_connect(&c->addr, c->cfg.connect_timeout_ms, &fd);
    if (rc != TETHER_OK) {
        return rc;
    }
    /* The socket blocks: a sync reader waits in recv() itself (no poll()
     * per call); every other send and recv passes MSG_DONTWAIT. */
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) {
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    /* Everything else about the old connection was reset by close_locked(). */
    if (tt_buf_append(&c->out, TT_PREFACE, TT_PREFACE_LEN) != TETHER_OK) {
        close(fd);
        return TETHER_ENOMEM;
    }
    c->rcvtimeo_ms = 0;
    c->fd = fd;
    c->io.fd = fd;
    atomic_store_explicit(&c->goaway, 0, memory_order_relaxed);
    return TETHER_OK;
}

/* ---------------------------------------------------------------------- */
/* Answers                                                                */

/* Copy an outcome into p (the bytes are about to be overwritten). */
static void
store_copy(pending *p, tether_err err, const uint8_t *data, size_t len, int is_text)
{
    p->err = err;
    p->has_text = is_text;
    if (len > 0 || is_text) {
        p->data = tt_malloc(len + 1);
        if (p->data == NULL) {
            p->err = TETHER_ENOMEM;
            p->has_text = 0;
            return;
        }
        memcpy(p->data, data, len);
        p->data[len] = '\0';
        p->len = len;
    }
}

/* Run an async call's callback (I/O thread, no lock held). */
static void
run_callback(tether_client *c, pending *p, tether_err err, const uint8_t *data, size_t len,
             const char *text)
{
    tether_reply r = {.err = err, .errtext = text, .msg = NULL, .data = data, .len = len};
    if (err == TETHER_OK && p->desc != NULL) {
        r.msg = protobuf_c_message_unpack(p->desc, &tt_pb_allocator, len, data);
        if (r.msg == NULL) {
            r.err = TETHER_EBADREPLY;
        }
    }
    if (r.err != TETHER_OK) {
        r.data = NULL;
        r.len = 0;
    }
    p->fn(c, &r, p->arg);
}

/* Hand one answer frame to its call.  Returns nothing: unknown seqs (late
 * answers of calls that timed out) are dropped. */
/* The error an ERROR frame's status stands for; a status that is no
 * tether_err (or says OK) is a protocol error. */
static tether_err
status_err(uint32_t status)
{
    if (status == TETHER_OK || (status > TETHER_EINTERNAL && status < TETHER_ESYSERR)) {
        return TETHER_EPROTO;
    }
    return (tether_err)status;
}

static void
dispatch(tether_client *c, const tt_frame *f, pending *me)
{
    tether_err err = TETHER_OK;
    int is_text = 0;
    if (f->type == TT_FRAME_ERROR) {
        err = status_err(f->status);
        is_text = 1;
    }
    pthread_mutex_lock(&c->mu);
    pending *p = pend_take(c, f->seq);
    if (p == NULL) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    if (p->fn != NULL) {
        if (tls_io == c) {
            /* On the I/O thread: run the callback straight from the buffer. */
            pthread_mutex_unlock(&c->mu);
            char *text = NULL;
            if (is_text) {
                text = tt_strndup((const char *)f->body, f->body_len);
            }
            run_callback(c, p, err, is_text ? NULL : f->body, is_text ? 0 : f->body_len, text);
            tt_free(text);
            pthread_mutex_lock(&c->mu);
            pend_free_locked(c, p);
            pthread_mutex_unlock(&c->mu);
            return;
        }
        store_copy(p, err, f->body, f->body_len, is_text);
        p->done = 1;
        p->cnext = c->completed;
        c->completed = p;
        kick_locked(c); /* one queued kick covers every completion until it runs */
        pthread_mutex_unlock(&c->mu);
        return;
    }
    /* A synchronous call: unpack here, whoever we are. */
    if (err == TETHER_OK && p->desc != NULL) {
        p->msg = protobuf_c_message_unpack(p->desc, &tt_pb_allocator, f->body_len, f->body);
        p->err = p->msg != NULL ? TETHER_OK : TETHER_EBADREPLY;
    } else {
        store_copy(p, err, f->body, f->body_len, is_text);
    }
    p->done = 1;
    if (p != me && p->cv != NULL) {
        pthread_cond_signal(p->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

/* Parse and dispatch every complete frame in c->in.  Returns TETHER_OK or
 * the error that breaks the connection. */
static tether_err
dispatch_all(tether_client *c, pending *me)
{
    while (tt_buf_size(&c->in) > 0) {
        tt_frame f;
        size_t need;
        tether_err rc =
            tt_frame_decode(tt_buf_head(&c->in), tt_buf_size(&c->in), c->cfg.max_frame_size, &f, &need);
        if (rc == TETHER_EAGAIN) {
            return TETHER_OK;
        }
        if (rc != TETHER_OK) {
            return rc == TETHER_EMSGSIZE ? TETHER_EMSGSIZE : TETHER_EPROTO;
        }
        switch (f.type) {
        case TT_FRAME_REPLY:
        case TT_FRAME_ERROR:
            if (f.seq == 0 && f.type == TT_FRAME_ERROR) {
                /* A connection-level error: the server closes next. */
                tt_log(TETHER_LOG_WARN, "server closed the connection: %.*s", (int)f.body_len,
                       (const char *)f.body);
                pthread_mutex_lock(&c->mu);
                c->conn_err = status_err(f.status);
                pthread_mutex_unlock(&c->mu);
            } else {
                dispatch(c, &f, me);
            }
            break;
        case TT_FRAME_GOAWAY:
            atomic_store_explicit(&c->goaway, 1, memory_order_relaxed);
            break;
        case TT_FRAME_PONG:
        case TT_FRAME_PING:
            /* Liveness frames: nothing to do for a client that has calls
             * to wait for (it never sends PING itself yet). */
            break;
        default:
            return TETHER_EPROTO;
        }
        tt_buf_consume(&c->in, f.total);
    }
    return TETHER_OK;
}

/* One read by the current reader (blocking up to SO_RCVTIMEO when block
 * is set).  Returns TETHER_OK with *got = 0 if nothing came, 2 if the read
 * filled the buffer (more may wait), else 1; or the error that broke the
 * connection. */
static tether_err
read_some(tether_client *c, pending *me, int *got, int block)
{
    *got = 0;
    if (tt_buf_reserve(&c->in, 65536) != TETHER_OK) {
        return TETHER_ENOMEM;
    }
    size_t space = c->in.cap - c->in.len;
    ssize_t n;
    do {
        n = recv(c->fd, c->in.data + c->in.len, space, block ? 0 : MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
        return TETHER_ECONNRESET;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return TETHER_OK;
        }
        return TETHER_ECONNRESET;
    }
    *got = (size_t)n == space ? 2 : 1;
    c->in.len += (size_t)n;
    tether_err rc = dispatch_all(c, me);
    /* A large partial frame keeps its buffer; an empty one shrinks back. */
    if (tt_buf_size(&c->in) == 0 && c->in.cap > 1024 * 1024) {
        tt_buf_free(&c->in);
    }
    return rc;
}

/* ---------------------------------------------------------------------- */
/* The I/O thread                                                         */

static void
run_completed(tether_client *c)
{
    pthread_mutex_lock(&c->mu);
    pending *list = c->completed;
    c->completed = NULL;
    pthread_mutex_unlock(&c->mu);
    /* Reverse to completion order. */
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
        if (p->has_text) {
            run_callback(c, p, p->err, NULL, 0, (const char *)p->data);
        } else {
            run_callback(c, p, p->err, p->data, p->len, NULL);
        }
        pthread_mutex_lock(&c->mu);
        pend_free_locked(c, p);
        pthread_mutex_unlock(&c->mu);
    }
}

static void
on_kick(tt_task *t)
{
    /* run_completed() runs after every poll; this only wakes the loop. */
    tether_client *c = (tether_client *)((char *)t - offsetof(tether_client, t_kick));
    pthread_mutex_lock(&c->mu);
    c->kicked = 0;
    pthread_mutex_unlock(&c->mu);
}

static void
on_stop(tt_task *t)
{
    tether_client *c = (tether_client *)((char *)t - offsetof(tether_client, t_stop));
    c->stop = 1;
}

static void
on_fd(tt_io *io, uint32_t events)
{
    tether_client *c = (tether_client *)((char *)io - offsetof(tether_client, io));
    pthread_mutex_lock(&c->mu);
    if (c->fd < 0 || c->reader != READER_NONE) {
        /* A sync reader took over: stand aside (level-triggered events would
         * wake us in a loop); it re-arms us when it is done. */
        set_events_locked(c, 0);
        pthread_mutex_unlock(&c->mu);
        return;
    }
    if (events & EPOLLOUT) {
        flush_locked(c);
    }
    if (c->fd < 0) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    c->reader = READER_IO;
    pthread_mutex_unlock(&c->mu);
    tether_err rc = TETHER_OK;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        /* Read again only when a read filled the buffer: otherwise the
         * level-triggered epoll says when there is more, and the empty
         * recv() that would tell us so is saved. */
        int got = 2;
        for (int i = 0; i < 16 && got == 2 && rc == TETHER_OK; i++) {
            rc = read_some(c, NULL, &got, 0);
        }
    }
    pthread_mutex_lock(&c->mu);
    c->reader = READER_NONE;
    if (rc != TETHER_OK || c->broken) {
        close_locked(c, rc != TETHER_OK ? rc : TETHER_ECONNRESET);
    } else {
        if (c->flush_after) {
            c->flush_after = 0;
            flush_locked(c);
        }
        arm_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
}

static void
expire_timeouts(tether_client *c)
{
    uint64_t now = tt_now_coarse_ns();
    pthread_mutex_lock(&c->mu);
    pending *p = c->all;
    while (p != NULL) {
        pending *n = p->next;
        if (p->fn != NULL && p->deadline_ns <= now) {
            pend_remove(c, p);
            finish_err_locked(c, p, TETHER_ETIMEDOUT);
        }
        p = n;
    }
    pthread_mutex_unlock(&c->mu);
}

static void *
client_io_main(void *arg)
{
    tether_client *c = arg;
    tls_io = c;
    uint64_t next_scan = 0;
    while (!c->stop) {
        pthread_mutex_lock(&c->mu);
        int timed = c->nasync > 0;
        pthread_mutex_unlock(&c->mu);
        tt_loop_poll(&c->loop, timed ? TIMEOUT_SCAN_MS : -1);
        if (c->flush_after) {
            pthread_mutex_lock(&c->mu);
            c->flush_after = 0;
            flush_locked(c);
            pthread_mutex_unlock(&c->mu);
        }
        run_completed(c);
        uint64_t now = tt_now_coarse_ns() / 1000000ull;
        if (timed && now >= next_scan) {
            next_scan = now + TIMEOUT_SCAN_MS;
            expire_timeouts(c);
            run_completed(c);
        }
    }
    /* Destroying: fail what is left, run the callbacks here. */
    pthread_mutex_lock(&c->mu);
    if (c->reader == READER_NONE) {
        close_locked(c, TETHER_ECLOSED);
    }
    pthread_mutex_unlock(&c->mu);
    run_completed(c);
    tls_io = NULL;
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* Public API                                                             */

tether_err
tether_client_create(const char *addr, const tether_client_config *cfg, tether_client **out)
{
    if (addr == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    tether_client *c = tt_calloc(1, sizeof *c);
    if (c == NULL) {
        return TETHER_ENOMEM;
    }
    if (cfg != NULL && cfg->codec != TETHER_CODEC_NATIVE) {
        /* Go's codecs: a client of their own (client_codec.c). */
        c->cfg.codec = cfg->codec;
        tether_err crc = tt_cc_create(addr, cfg, &c->cc);
        if (crc != TETHER_OK) {
            tt_free(c);
            return crc;
        }
        *out = c;
        return TETHER_OK;
    }
    tt_client_config_resolve(&c->cfg, cfg);
    c->fd = -1;
    c->next_seq = 1;
    tether_err rc = tt_addr_parse(addr, &c->addr);
    if (rc != TETHER_OK) {
        tt_free(c);
        return rc;
    }
    rc = tt_loop_init(&c->loop);
    if (rc != TETHER_OK) {
        tt_free(c);
        return rc;
    }
    pthread_mutex_init(&c->mu, NULL);
    c->io.cb = on_fd;
    c->t_kick.fn = on_kick;
    c->t_stop.fn = on_stop;
    rc = connect_locked(c);
    if (rc == TETHER_OK) {
        int e = pthread_create(&c->tid, NULL, client_io_main, c);
        if (e != 0) {
            rc = tt_err_errno(e);
        }
    }
    if (rc != TETHER_OK) {
        if (c->fd >= 0) {
            close(c->fd);
        }
        tt_buf_free(&c->out);
        tt_loop_fini(&c->loop);
        pthread_mutex_destroy(&c->mu);
        tt_free(c);
        return rc;
    }
    *out = c;
    return TETHER_OK;
}

int
tt_client_goaway(tether_client *c)
{
    return atomic_load_explicit(&c->goaway, memory_order_relaxed);
}

tether_codec
tt_client_codec_kind(const tether_client *c)
{
    return c->cfg.codec;
}

tether_err
tt_client_call_json_text(tether_client *c, const char *method, const char *json_in,
                         char **json_out, uint32_t timeout_ms, char **errtext)
{
    if (c->cc == NULL) {
        return TETHER_ENOTSUP;
    }
    return tt_cc_call(c->cc, method, NULL, NULL, NULL, json_in, json_out, timeout_ms, errtext);
}

int
tt_client_on_io_thread(void)
{
    return tls_io != NULL;
}

tether_err
tether_client_create_service(const char *registry_url, const char *service,
                             const tether_client_config *cfg, tether_client **out)
{
    if (registry_url == NULL || service == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    tether_client *c = tt_calloc(1, sizeof *c);
    if (c == NULL) {
        return TETHER_ENOMEM;
    }
    tether_err rc = tt_disc_create(registry_url, service, cfg, &c->disc);
    if (rc != TETHER_OK) {
        tt_free(c);
        return rc;
    }
    *out = c;
    return TETHER_OK;
}

void
tether_client_destroy(tether_client *c)
{
    if (c == NULL) {
        return;
    }
    if (c->disc != NULL) {
        tt_disc_destroy(c->disc);
        tt_free(c);
        return;
    }
    if (c->cc != NULL) {
        tt_cc_destroy(c->cc);
        tt_free(c);
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->closing = 1;
    pthread_mutex_unlock(&c->mu);
    tt_loop_post(&c->loop, &c->t_stop);
    pthread_join(c->tid, NULL);
    pthread_mutex_lock(&c->mu);
    close_locked(c, TETHER_ECLOSED);
    pthread_mutex_unlock(&c->mu);
    run_completed(c);
    while (c->free_list != NULL) {
        pending *p = c->free_list;
        c->free_list = p->cnext;
        tt_free(p);
    }
    tt_buf_free(&c->out);
    tt_buf_free(&c->in);
    tt_loop_fini(&c->loop);
    pthread_mutex_destroy(&c->mu);
    tt_free(c);
}

size_t
tether_client_pending(const tether_client *c)
{
    if (c == NULL) {
        return 0;
    }
    if (c->disc != NULL) {
        return tt_disc_pending(c->disc);
    }
    if (c->cc != NULL) {
        return tt_cc_pending(c->cc);
    }
    return atomic_load_explicit(&c->npending_pub, memory_order_relaxed);
}

/* Append a request frame for p to c->out (under mu). */
static tether_err
queue_request_locked(tether_client *c, pending *p, const char *method, size_t mlen,
                     const ProtobufCMessage *msg, const void *data, size_t len)
{
    if (msg != NULL) {
        len = protobuf_c_message_get_packed_size(msg);
    }
    if (TT_FRAME_HDR + mlen + len > c->cfg.max_frame_size) {
        return TETHER_EMSGSIZE;
    }
    tether_err rc = tt_buf_reserve(&c->out, TT_FRAME_HDR + mlen + len);
    if (rc != TETHER_OK) {
        return rc;
    }
    uint8_t *w = c->out.data + c->out.len;
    tt_frame_put_header(w, TT_FRAME_REQUEST, p->seq, 0, mlen, len);
    memcpy(w + TT_FRAME_HDR, method, mlen);
    if (msg != NULL) {
        protobuf_c_message_pack(msg, w + TT_FRAME_HDR + mlen);
    } else if (len > 0) {
        memcpy(w + TT_FRAME_HDR + mlen, data, len);
    }
    c->out.len += TT_FRAME_HDR + mlen + len;
    return TETHER_OK;
}

/* Take c->mu with a connection in place (connecting again after a break).
 * On error the lock is not held. */
static tether_err
lock_connected(tether_client *c)
{
    pthread_mutex_lock(&c->mu);
    tether_err rc = c->closing ? TETHER_ECLOSED : TETHER_OK;
    if (rc == TETHER_OK && c->fd < 0) {
        rc = connect_locked(c);
    }
    if (rc != TETHER_OK) {
        pthread_mutex_unlock(&c->mu);
    }
    return rc;
}

static tether_err
check_method(const char *method, size_t *mlen)
{
    if (method == NULL) {
        return TETHER_EINVAL;
    }
    *mlen = strlen(method);
    if (*mlen == 0 || *mlen > TT_FRAME_MAX_NAME || memchr(method, '.', *mlen) == NULL) {
        return TETHER_EINVAL;
    }
    return TETHER_OK;
}

static tether_err
call_async(tether_client *c, const char *method, const ProtobufCMessage *req, const void *data,
           size_t len, const ProtobufCMessageDescriptor *desc, uint32_t timeout_ms,
           tether_reply_fn fn, void *arg)
{
    size_t mlen;
    if (c == NULL || fn == NULL || check_method(method, &mlen) != TETHER_OK ||
        (data == NULL && len > 0)) {
        return TETHER_EINVAL;
    }
    if (timeout_ms == 0) {
        timeout_ms = c->cfg.call_timeout_ms;
    }
    tether_err rc = lock_connected(c);
    if (rc != TETHER_OK) {
        return rc;
    }
    pending *p = pend_alloc(c);
    if (p == NULL) {
        pthread_mutex_unlock(&c->mu);
        return TETHER_ENOMEM;
    }
    p->seq = c->next_seq++;
    p->fn = fn;
    p->arg = arg;
    p->desc = desc;
    p->deadline_ns = tt_now_coarse_ns() + (uint64_t)timeout_ms * 1000000ull;
    rc = queue_request_locked(c, p, method, mlen, req, data, len);
    if (rc != TETHER_OK) {
        pend_free_locked(c, p);
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    pend_insert(c, p);
    if (tls_io == c) {
        /* From a callback: batch with the other requests of this round. */
        c->flush_after = 1;
    } else {
        flush_locked(c);
        arm_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
    return TETHER_OK;
}

tether_err
tether_client_call_async(tether_client *c, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *reply_desc, uint32_t timeout_ms,
                         tether_reply_fn fn, void *arg)
{
    if (req == NULL || c == NULL) {
        return TETHER_EINVAL;
    }
    if (c->disc != NULL) {
        return tt_disc_call_async(c->disc, c, method, req, NULL, 0, reply_desc, timeout_ms, fn,
                                  arg);
    }
    if (c->cc != NULL) {
        return tt_cc_call_async(c->cc, c, method, req, reply_desc, timeout_ms, fn, arg);
    }
    return call_async(c, method, req, NULL, 0, reply_desc, timeout_ms, fn, arg);
}

tether_err
tether_client_call_async_raw(tether_client *c, const char *method, const void *req,
                             size_t req_len, uint32_t timeout_ms, tether_reply_fn fn, void *arg)
{
    if (c != NULL && c->disc != NULL) {
        return tt_disc_call_async(c->disc, c, method, NULL, req, req_len, NULL, timeout_ms, fn,
                                  arg);
    }
    if (c != NULL && c->cc != NULL) {
        return TETHER_ENOTSUP; /* raw bytes have no form in Go's codecs */
    }
    return call_async(c, method, NULL, req, req_len, NULL, timeout_ms, fn, arg);
}

/* The synchronous call: fast path as reader, or wait for whoever reads. */
static tether_err
call_sync(tether_client *c, const char *method, const ProtobufCMessage *req, const void *data,
          size_t len, const ProtobufCMessageDescriptor *desc, uint32_t timeout_ms, pending *p)
{
    size_t mlen;
    if (c == NULL || check_method(method, &mlen) != TETHER_OK || (data == NULL && len > 0)) {
        return TETHER_EINVAL;
    }
    if (tls_io == c) {
        return TETHER_ESTATE; /* would deadlock: a callback waiting on itself */
    }
    if (timeout_ms == 0) {
        timeout_ms = c->cfg.call_timeout_ms;
    }
    uint64_t deadline = tt_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    memset(p, 0, sizeof *p);
    p->desc = desc;
    tether_err rc = lock_connected(c);
    if (rc != TETHER_OK) {
        return rc;
    }
    p->seq = c->next_seq++;
    rc = queue_request_locked(c, p, method, mlen, req, data, len);
    if (rc != TETHER_OK) {
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    int fast = c->reader == READER_NONE && c->npending == 0;
    pend_insert(c, p);
    if (fast) {
        c->reader = READER_SYNC;
    }
    flush_locked(c);
    if (!fast) {
        /* Somebody else reads; wait for our answer. */
        pthread_cond_t cv;
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&cv, &ca);
        pthread_condattr_destroy(&ca);
        p->cv = &cv;
        arm_locked(c);
        struct timespec ts = tt_timespec_ns(deadline);
        while (!p->done) {
            if (pthread_cond_timedwait(&cv, &c->mu, &ts) == ETIMEDOUT && !p->done) {
                pend_remove(c, p);
                p->done = 1;
                p->err = TETHER_ETIMEDOUT;
            }
        }
        p->cv = NULL;
        pthread_mutex_unlock(&c->mu);
        pthread_cond_destroy(&cv);
        return p->err;
    }
    /* Fast path: we are the reader until our answer is in.  The first wait
     * is a blocking recv() bounded by SO_RCVTIMEO (one syscall instead of
     * poll() + recv()); after a timeout, poll() keeps the deadline exact. */
    tether_err brk = TETHER_OK;
    int use_poll = 0;
    while (!p->done && brk == TETHER_OK) {
        if (c->fd < 0) {
            brk = TETHER_ECONNRESET;
            break;
        }
        if (c->broken) {
            brk = TETHER_ECONNRESET;
            break;
        }
        int fd = c->fd;
        pthread_mutex_unlock(&c->mu);
        uint64_t now = tt_now_ns();
        int wait_ms = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
        int got = 0;
        int r = 1;
        if (!use_poll && wait_ms > 0) {
            if (c->rcvtimeo_ms != timeout_ms) {
                struct timeval tv = {.tv_sec = timeout_ms / 1000,
                                     .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                c->rcvtimeo_ms = timeout_ms;
            }
            brk = read_some(c, p, &got, 1);
            if (brk == TETHER_OK && got == 0) {
                use_poll = 1;
                r = 0;
            }
        } else {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            r = poll(&pfd, 1, wait_ms);
            if (r > 0) {
                brk = read_some(c, p, &got, 0);
            } else if (r < 0 && errno != EINTR) {
                brk = tt_err_errno(errno);
            }
        }
        pthread_mutex_lock(&c->mu);
        if (!p->done && r == 0 && tt_now_ns() >= deadline) {
            pend_remove(c, p);
            p->done = 1;
            p->err = TETHER_ETIMEDOUT;
        }
    }
    c->reader = READER_NONE;
    if (brk != TETHER_OK || c->broken) {
        close_locked(c, brk != TETHER_OK ? brk : TETHER_ECONNRESET);
    } else {
        arm_locked(c); /* others' calls arrived meanwhile: hand over */
    }
    pthread_mutex_unlock(&c->mu);
    return p->err;
}

tether_err
tether_client_call(tether_client *c, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
                   uint32_t timeout_ms, char **errtext)
{
    if (errtext != NULL) {
        *errtext = NULL;
    }
    if (req == NULL || reply_desc == NULL || reply == NULL) {
        return TETHER_EINVAL;
    }
    *reply = NULL;
    if (c != NULL && c->disc != NULL) {
        return tt_disc_call(c->disc, NULL, method, req, NULL, 0, reply_desc, reply, NULL, NULL,
                            timeout_ms, errtext);
    }
    if (c != NULL && c->cc != NULL) {
        return tt_cc_call(c->cc, method, req, reply_desc, reply, NULL, NULL, timeout_ms, errtext);
    }
    pending p;
    memset(&p, 0, sizeof p); /* call_sync may fail before it fills p */
    tether_err rc = call_sync(c, method, req, NULL, 0, reply_desc, timeout_ms, &p);
    if (rc == TETHER_OK) {
        *reply = p.msg;
    } else if (p.has_text && errtext != NULL) {
        *errtext = (char *)p.data;
        p.data = NULL;
    }
    tt_free(p.data);
    return rc;
}

tether_err
tether_client_call_raw(tether_client *c, const char *method, const void *req, size_t req_len,
                       uint8_t **out, size_t *out_len, uint32_t timeout_ms, char **errtext)
{
    if (errtext != NULL) {
        *errtext = NULL;
    }
    if (out == NULL || out_len == NULL) {
        return TETHER_EINVAL;
    }
    *out = NULL;
    *out_len = 0;
    if (c != NULL && c->disc != NULL) {
        return tt_disc_call(c->disc, NULL, method, NULL, req, req_len, NULL, NULL, out, out_len,
                            timeout_ms, errtext);
    }
    if (c != NULL && c->cc != NULL) {
        return TETHER_ENOTSUP;
    }
    pending p;
    memset(&p, 0, sizeof p); /* call_sync may fail before it fills p */
    tether_err rc = call_sync(c, method, NULL, req, req_len, NULL, timeout_ms, &p);
    if (rc == TETHER_OK) {
        if (p.data == NULL) {
            p.data = tt_malloc(1); /* an empty reply is still a buffer */
            if (p.data == NULL) {
                return TETHER_ENOMEM;
            }
        }
        *out = p.data;
        *out_len = p.len;
        return TETHER_OK;
    }
    if (p.has_text && errtext != NULL) {
        *errtext = (char *)p.data;
        p.data = NULL;
    }
    tt_free(p.data);
    return rc;
}

tether_err
tether_client_call_keyed(tether_client *c, const char *key, const char *method,
                         const ProtobufCMessage *req, const ProtobufCMessageDescriptor *reply_desc,
                         ProtobufCMessage **reply, uint32_t timeout_ms, char **errtext)
{
    if (c != NULL && c->disc != NULL && req != NULL && reply_desc != NULL && reply != NULL) {
        if (errtext != NULL) {
            *errtext = NULL;
        }
        *reply = NULL;
        return tt_disc_call(c->disc, key, method, req, NULL, 0, reply_desc, reply, NULL, NULL,
                            timeout_ms, errtext);
    }
    return tether_client_call(c, method, req, reply_desc, reply, timeout_ms, errtext);
}
