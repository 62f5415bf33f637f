/*
 * server.c - the RPC server: setup, accepting, reading frames, running
 * handlers and writing answers (see server_int.h for the threading model,
 * drain.c for the stop sequence).
 *
 * The hot path for a call that is answered inline: one recv() brings a
 * batch of request frames into the thread's scratch buffer; each is decoded
 * in place, its body unpacked by protobuf-c, its handler run, and its answer
 * packed straight into the connection's output buffer; after the batch one
 * send() per connection carries all the answers.  Calls, buffers and
 * scratch space are recycled per thread, so the steady state allocates
 * nothing beyond protobuf-c's unpack.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "codec/native/frame.h"
#include "codec/pbjson/pbutil.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/list.h"
#include "core/log.h"
#include "core/thread.h"
#include "rpc/server_int.h"
#include "rpc/server_metrics.h"

/* Unsent output above which a connection's reading pauses, and below which
 * it resumes: a client that never reads its answers cannot grow us. */
#define OUT_HIGH (4u * 1024 * 1024)
#define OUT_LOW (1u * 1024 * 1024)
#define MAX_FREE_CALLS 1024

static TT_THREAD_LOCAL iothr *tls_thr; /* the I/O thread running on this thread */

static void conn_close(conn *c);

/* Tell the control thread this I/O thread has no call left (draining). */
static void
report_drained(iothr *t)
{
    uint64_t one = 1;
    ssize_t w = write(t->srv->drained_fd, &one, sizeof one);
    (void)w;
}
static void call_finish(struct tether_call *call);
static void call_cancel_notify(struct tether_call *call, tether_err why);

/* ---------------------------------------------------------------------- */
/* Setup                                                                  */

void
tether_server_config_init(tether_server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->io_threads = n > 0 ? (int)n : 1;
    cfg->worker_threads = 4;
    cfg->max_frame_size = 4u * 1024 * 1024; /* gRPC's default */
    cfg->max_inflight_per_conn = 4096;
    cfg->max_metadata_size = 8192;
    cfg->max_connections = 65536;
    cfg->drain_timeout_ms = 10000;
    cfg->grace_ms = 0;
}

static void __attribute__((format(printf, 2, 3))) set_err(tether_server *srv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(srv->errmsg, sizeof srv->errmsg, fmt, ap);
    va_end(ap);
}

tether_err
tether_server_create(const tether_server_config *cfg, tether_server **out)
{
    if (out == NULL) {
        return TETHER_EINVAL;
    }
    tether_server_config def;
    tether_server_config_init(&def);
    tether_server *srv = tt_calloc(1, sizeof *srv);
    if (srv == NULL) {
        return TETHER_ENOMEM;
    }
    srv->cfg = def;
    if (cfg != NULL) {
        /* Zero fields keep their defaults. */
        if (cfg->io_threads > 0) {
            srv->cfg.io_threads = cfg->io_threads;
        }
        if (cfg->worker_threads > 0) {
            srv->cfg.worker_threads = cfg->worker_threads;
        }
        if (cfg->max_frame_size > 0) {
            srv->cfg.max_frame_size = cfg->max_frame_size;
        }
        if (cfg->max_inflight_per_conn > 0) {
            srv->cfg.max_inflight_per_conn = cfg->max_inflight_per_conn;
        }
        if (cfg->max_connections > 0) {
            srv->cfg.max_connections = cfg->max_connections;
        }
        if (cfg->drain_timeout_ms > 0) {
            srv->cfg.drain_timeout_ms = cfg->drain_timeout_ms;
        }
        srv->cfg.grace_ms = cfg->grace_ms;
        if (cfg->max_metadata_size > 0) {
            srv->cfg.max_metadata_size = cfg->max_metadata_size;
        }
    }
    if (srv->cfg.max_frame_size < TT_FRAME_HDR + TT_FRAME_MAX_NAME || srv->cfg.io_threads > 256 ||
        srv->cfg.max_metadata_size > TT_CTX_MAX) {
        tt_free(srv);
        return TETHER_EINVAL;
    }
    srv->shutdown_fd = -1;
    srv->drained_fd = -1;
    srv->g = tt_calloc(1, sizeof *srv->g);
    if (srv->g == NULL) {
        tt_free(srv);
        return TETHER_ENOMEM;
    }
    pthread_mutex_init(&srv->g->mu, NULL);
    atomic_store(&srv->g->refs, 1);
    srv->shutdown_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    srv->drained_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (srv->shutdown_fd < 0 || srv->drained_fd < 0) {
        int e = errno;
        tether_server_destroy(srv);
        return tt_err_errno(e);
    }
    pthread_mutex_init(&srv->mu, NULL);
    tt_cond_init_monotonic(&srv->cv);
    atomic_store(&srv->state, SRV_NEW);
    if (cfg != NULL && cfg->metrics_addr != NULL &&
        tt_server_metrics_enable(srv, cfg->metrics_addr) != TETHER_OK) {
        tether_server_destroy(srv);
        return TETHER_ENOMEM;
    }
    *out = srv;
    return TETHER_OK;
}

const char *
tether_server_errmsg(const tether_server *srv)
{
    return srv != NULL ? srv->errmsg : "no server";
}

static const method_ent *
find_method(const tether_server *srv, const char *name, size_t len)
{
    /* Methods are sorted by name at start (binary search: no hashing
     * state, and a service has a handful of methods). */
    size_t lo = 0, hi = srv->nmethods;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const method_ent *m = &srv->methods[mid];
        size_t n = m->name_len < len ? m->name_len : len;
        int r = memcmp(m->name, name, n);
        if (r == 0) {
            r = m->name_len < len ? -1 : (m->name_len > len ? 1 : 0);
        }
        if (r == 0) {
            return m;
        }
        if (r < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

static int
method_cmp(const void *a, const void *b)
{
    const method_ent *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static tether_err
add_method(tether_server *srv, const char *svc, const char *meth, method_ent *proto)
{
    size_t n = strlen(svc) + 1 + strlen(meth);
    if (n > TT_FRAME_MAX_NAME) {
        set_err(srv, "method name too long: %s.%s", svc, meth);
        return TETHER_EINVAL;
    }
    char *name = tt_malloc(n + 1);
    if (name == NULL) {
        return TETHER_ENOMEM;
    }
    snprintf(name, n + 1, "%s.%s", svc, meth);
    for (size_t i = 0; i < srv->nmethods; i++) {
        if (strcmp(srv->methods[i].name, name) == 0) {
            set_err(srv, "method %s already added", name);
            tt_free(name);
            return TETHER_EEXIST;
        }
    }
    method_ent *grown = tt_realloc(srv->methods, (srv->nmethods + 1) * sizeof *grown);
    if (grown == NULL) {
        tt_free(name);
        return TETHER_ENOMEM;
    }
    srv->methods = grown;
    method_ent *m = &srv->methods[srv->nmethods++];
    *m = *proto;
    m->name = name;
    m->name_len = n;
    return TETHER_OK;
}

static tether_err
add_service_name(tether_server *srv, const char *svc, size_t len)
{
    for (size_t i = 0; i < srv->nservices; i++) {
        if (strlen(srv->services[i]) == len && memcmp(srv->services[i], svc, len) == 0) {
            return TETHER_OK;
        }
    }
    char **grown = tt_realloc(srv->services, (srv->nservices + 1) * sizeof *grown);
    if (grown == NULL) {
        return TETHER_ENOMEM;
    }
    srv->services = grown;
    srv->services[srv->nservices] = tt_strndup(svc, len);
    if (srv->services[srv->nservices] == NULL) {
        return TETHER_ENOMEM;
    }
    srv->nservices++;
    return TETHER_OK;
}

tether_err
tether_server_add_service(tether_server *srv, const ProtobufCServiceDescriptor *desc,
                          const tether_method *methods, size_t n, void *arg)
{
    if (srv == NULL || desc == NULL || (methods == NULL && n > 0)) {
        return TETHER_EINVAL;
    }
    if (atomic_load(&srv->state) != SRV_NEW) {
        return TETHER_ESTATE;
    }
    const char *svc = desc->short_name;
    for (size_t i = 0; i < srv->nservices; i++) {
        if (strcmp(srv->services[i], svc) == 0) {
            set_err(srv, "service %s already added", svc);
            return TETHER_EEXIST;
        }
    }
    /* Check the whole table before adding anything. */
    for (size_t i = 0; i < n; i++) {
        if (methods[i].name == NULL || methods[i].fn == NULL) {
            set_err(srv, "a method entry of %s has no name or handler", svc);
            return TETHER_EINVAL;
        }
        const ProtobufCMethodDescriptor *md =
            protobuf_c_service_descriptor_get_method_by_name(desc, methods[i].name);
        if (md == NULL) {
            set_err(srv, "service %s has no method %s", svc, methods[i].name);
            return TETHER_EINVAL;
        }
    }
    tether_err rc = add_service_name(srv, svc, strlen(svc));
    if (rc != TETHER_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        method_ent m = {0};
        m.md = protobuf_c_service_descriptor_get_method_by_name(desc, methods[i].name);
        m.fn = methods[i].fn;
        m.flags = methods[i].flags;
        m.arg = arg;
        rc = add_method(srv, svc, methods[i].name, &m);
        if (rc != TETHER_OK) {
            return rc;
        }
    }
    return TETHER_OK;
}

tether_err
tether_server_add_raw_method(tether_server *srv, const char *full_name, tether_raw_handler_fn fn,
                             unsigned flags, void *arg)
{
    if (srv == NULL || full_name == NULL || fn == NULL) {
        return TETHER_EINVAL;
    }
    if (atomic_load(&srv->state) != SRV_NEW) {
        return TETHER_ESTATE;
    }
    const char *dot = strchr(full_name, '.');
    if (dot == NULL || dot == full_name || dot[1] == '\0') {
        set_err(srv, "raw method name must be Service.Method: %s", full_name);
        return TETHER_EINVAL;
    }
    char svc[TT_FRAME_MAX_NAME + 1];
    size_t sl = (size_t)(dot - full_name);
    if (sl > TT_FRAME_MAX_NAME) {
        return TETHER_EINVAL;
    }
    memcpy(svc, full_name, sl);
    svc[sl] = '\0';
    tether_err rc = add_service_name(srv, svc, sl);
    if (rc != TETHER_OK) {
        return rc;
    }
    method_ent m = {0};
    m.raw_fn = fn;
    m.flags = flags;
    m.arg = arg;
    return add_method(srv, svc, dot + 1, &m);
}

tether_err
tether_server_add_interceptor(tether_server *srv, const tether_server_interceptor *ic)
{
    if (srv == NULL || ic == NULL || (ic->before == NULL && ic->after == NULL)) {
        return TETHER_EINVAL;
    }
    if (atomic_load(&srv->state) != SRV_NEW) {
        return TETHER_ESTATE;
    }
    if (srv->nics == TT_MAX_INTERCEPTORS) {
        return TETHER_ELIMIT;
    }
    srv->ics[srv->nics++] = *ic;
    return TETHER_OK;
}

tether_err
tether_server_listen(tether_server *srv, const char *addr)
{
    if (srv == NULL || addr == NULL) {
        return TETHER_EINVAL;
    }
    if (atomic_load(&srv->state) != SRV_NEW) {
        return TETHER_ESTATE;
    }
    listener l = {.fd = -1};
    tether_err rc = tt_addr_parse(addr, &l.addr);
    if (rc != TETHER_OK) {
        set_err(srv, "bad listen address '%s'", addr);
        return rc;
    }
    rc = tt_sock_listen(&l.addr, 1024, &l.fd);
    if (rc != TETHER_OK) {
        set_err(srv, "cannot listen on %s: %s", addr, tether_strerror(rc));
        return rc;
    }
    tt_sock_bound(l.fd, &l.addr);
    tt_addr_format(&l.addr, l.text, sizeof l.text);
    listener *grown = tt_realloc(srv->listeners, (size_t)(srv->nlisteners + 1) * sizeof *grown);
    if (grown == NULL) {
        close(l.fd);
        return TETHER_ENOMEM;
    }
    srv->listeners = grown;
    srv->listeners[srv->nlisteners++] = l;
    return TETHER_OK;
}

tether_err
tether_server_address(const tether_server *srv, int idx, char *buf, size_t len)
{
    if (srv == NULL || buf == NULL) {
        return TETHER_EINVAL;
    }
    if (idx < 0 || idx >= srv->nlisteners) {
        return TETHER_ENOENT;
    }
    size_t n = strlen(srv->listeners[idx].text);
    if (n + 1 > len) {
        return TETHER_EMSGSIZE;
    }
    memcpy(buf, srv->listeners[idx].text, n + 1);
    return TETHER_OK;
}

void
tether_server_get_stats(const tether_server *srv, tether_server_stats *out)
{
    memset(out, 0, sizeof *out);
    if (srv == NULL || srv->threads == NULL) {
        return;
    }
    for (int i = 0; i < srv->nthreads; i++) {
        iothr *t = &srv->threads[i];
        out->connections_accepted += atomic_load_explicit(&t->st_accepted, memory_order_relaxed);
        out->calls_started += atomic_load_explicit(&t->st_started, memory_order_relaxed);
        out->calls_completed += atomic_load_explicit(&t->st_completed, memory_order_relaxed);
        out->calls_failed += atomic_load_explicit(&t->st_failed, memory_order_relaxed);
        out->protocol_errors += atomic_load_explicit(&t->st_proto, memory_order_relaxed);
    }
    long open = atomic_load(&((tether_server *)srv)->nconns);
    out->connections_open = open > 0 ? (uint64_t)open : 0;
}

/* Single-writer counter bump: only the owning thread writes. */
static inline void
bump(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* ---------------------------------------------------------------------- */
/* Buffers                                                                */

/* Give b storage from the thread's spare buffers when it has none. */
static tether_err
buf_prepare(iothr *t, tt_buf *b, size_t extra)
{
    if (b->data == NULL && extra <= TT_IOBUF && t->nbufs > 0) {
        b->data = t->bufs[--t->nbufs];
        b->cap = TT_IOBUF;
        b->off = b->len = 0;
        return TETHER_OK;
    }
    if (b->data == NULL && extra <= TT_IOBUF) {
        b->data = tt_malloc(TT_IOBUF);
        if (b->data == NULL) {
            return TETHER_ENOMEM;
        }
        b->cap = TT_IOBUF;
        b->off = b->len = 0;
        return TETHER_OK;
    }
    return tt_buf_reserve(b, extra);
}

/* Return an empty buffer's storage to the thread (idle connections hold
 * no buffers). */
static void
buf_release(iothr *t, tt_buf *b)
{
    if (b->data == NULL) {
        return;
    }
    if (b->cap == TT_IOBUF && t->nbufs < (int)(sizeof t->bufs / sizeof t->bufs[0])) {
        t->bufs[t->nbufs++] = b->data;
        b->data = NULL;
        b->off = b->len = b->cap = 0;
    } else {
        tt_buf_free(b);
    }
}

/* ---------------------------------------------------------------------- */
/* Output                                                                 */

static void
mark_dirty(conn *c)
{
    if (!c->in_dirty && !c->closed) {
        c->in_dirty = 1;
        c->dirty_next = c->t->dirty;
        c->t->dirty = c;
    }
}

static tether_err encode_answer(tt_buf *out, iothr *t, const tt_buf *trailers, uint64_t seq,
                                uint8_t type, uint32_t status, const ProtobufCMessage *msg,
                                const void *data, size_t len);

/* Append one frame with a text body (error frames and control frames). */
static void
write_frame(conn *c, uint8_t type, uint64_t seq, uint32_t status, const char *text)
{
    if (c->closed) {
        return;
    }
    /* Without memory the frame is lost and the caller times out. */
    if (encode_answer(&c->out, c->t, NULL, seq, type, status, NULL, text,
                      text != NULL ? strlen(text) : 0) == TETHER_OK) {
        mark_dirty(c);
    }
}

static void
write_error(conn *c, uint64_t seq, tether_err code, const char *text)
{
    bump(&c->t->st_failed);
    write_frame(c, TT_FRAME_ERROR, seq, (uint32_t)code, text);
}

static void
update_events(conn *c)
{
    unsigned ev = 0;
    if (!c->paused) {
        ev |= TT_EV_READ;
    }
    if (tt_buf_size(&c->out) > 0) {
        ev |= TT_EV_WRITE;
    }
    tt_loop_mod(&c->t->loop, &c->io, ev);
}

static void
conn_flush(conn *c)
{
    while (tt_buf_size(&c->out) > 0) {
        ssize_t n = send(c->io.fd, tt_buf_head(&c->out), tt_buf_size(&c->out), MSG_NOSIGNAL);
        if (n > 0) {
            tt_buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        conn_close(c);
        return;
    }
    size_t left = tt_buf_size(&c->out);
    if (left == 0) {
        buf_release(c->t, &c->out);
    }
    if (!c->paused && left > OUT_HIGH) {
        c->paused = 1;
    } else if (c->paused && left < OUT_LOW) {
        c->paused = 0;
    }
    update_events(c);
}

static void
flush_dirty(iothr *t)
{
    while (t->dirty != NULL) {
        conn *c = t->dirty;
        t->dirty = c->dirty_next;
        c->in_dirty = 0;
        if (!c->closed) {
            conn_flush(c);
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Connections                                                            */

static void
conn_free(conn *c)
{
    buf_release(c->t, &c->in);
    buf_release(c->t, &c->out);
    tt_free(c);
}

static void
conn_unref(conn *c)
{
    if (--c->refs == 0) {
        if (c->zombie) {
            /* Its last call finished: off the zombie list. */
            TT_DLIST_REMOVE(&c->t->zombies, c);
            c->zombie = 0;
        }
        /* Freed after the current event batch: it may still be on a stack. */
        c->reap_next = c->t->reap;
        c->t->reap = c;
    }
}

static void
conn_close(conn *c)
{
    if (c->closed) {
        return;
    }
    iothr *t = c->t;
    c->closed = 1;
    /* Nobody waits for the answers any more: tell the handlers. */
    for (struct tether_call *call = c->calls; call != NULL; call = call->next) {
        call_cancel_notify(call, TETHER_ECANCELED);
    }
    tt_loop_del(&t->loop, &c->io);
    close(c->io.fd);
    c->io.fd = -1;
    TT_DLIST_REMOVE(&t->conns, c);
    if (c->refs > 1) {
        /* Calls in flight keep it; listed so a stopped thread can free it. */
        c->zombie = 1;
        TT_DLIST_PUSH(&t->zombies, c);
    }
    atomic_fetch_sub(&t->srv->nconns, 1);
    atomic_fetch_sub(&t->nconns, 1);
    buf_release(t, &c->in);
    buf_release(t, &c->out);
    if (c->codec != NULL) {
        tt_server_codec_fini(c);
    }
    conn_unref(c);
}

/* A broken stream: tell the peer why (best effort), then close. */
static void
conn_fail(conn *c, tether_err code, const char *why)
{
    bump(&c->t->st_proto);
    tt_log(TETHER_LOG_DEBUG, "closing connection: %s", why);
    if (c->codec == NULL) {
        /* Go's codecs have no connection-level error: they just close. */
        write_frame(c, TT_FRAME_ERROR, 0, (uint32_t)code, why);
    }
    if (tt_buf_size(&c->out) > 0) {
        ssize_t n =
            send(c->io.fd, tt_buf_head(&c->out), tt_buf_size(&c->out), MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)n;
    }
    conn_close(c);
}

/* ---------------------------------------------------------------------- */
/* Calls                                                                  */

/* A call for request seq of method m on c, from the thread's free list;
 * NULL without memory. */
static struct tether_call *
call_alloc(conn *c, const method_ent *m, uint64_t seq)
{
    iothr *t = c->t;
    struct tether_call *call = t->free_calls;
    if (call != NULL) {
        t->free_calls = call->next;
        t->nfree_calls--;
    } else {
        call = tt_calloc(1, sizeof *call);
        if (call == NULL) {
            return NULL;
        }
    }
    call->srv = t->srv;
    call->g = t->srv->g;
    call->t = t;
    call->c = c;
    call->m = m;
    call->seq = seq;
    call->req = NULL;
    call->req_in_arena = 0;
    call->arena_off = 0;
    call->body = NULL;
    call->body_len = 0;
    call->canceled = 0;
    call->deadline_ns = 0;
    call->ctx = NULL;
    call->ctx_len = 0;
    call->ctx_heap = 0;
    call->trailers.off = call->trailers.len = 0;
    atomic_store_explicit(&call->cstate, CST_NONE, memory_order_relaxed);
    call->cancel_fn = NULL;
    call->nic = 0;
    call->status = TETHER_OK;
    tt_timer_init(&call->dl_tmr, NULL);
    return call;
}

/* Give back a call that was never launched. */
static void
call_unused(iothr *t, struct tether_call *call)
{
    call->next = t->free_calls;
    t->free_calls = call;
    t->nfree_calls++;
}

/* The per-call bump allocator behind native request unpacking. */
/* Unpack budget: what protobuf-c may hold for one request beyond the
 * arena, counted live (a block's size plus TT_UNPACK_OVERHEAD, refunded
 * when it is freed), is at most TT_UNPACK_FACTOR times the body plus
 * TT_UNPACK_SLACK.  Past it the allocation fails, so the unpack does and
 * the call gets TETHER_EBADREQUEST: a body made of millions of tiny
 * fields (unknown ones cost protobuf-c about 50 bytes of memory per wire
 * byte) cannot balloon.  Blocks beyond the arena carry their size in a
 * 16-byte prefix for the refund. */
#define TT_UNPACK_FACTOR 32
#define TT_UNPACK_SLACK (64 * 1024)
#define TT_UNPACK_OVERHEAD 16

static void *
arena_alloc(void *data, size_t size)
{
    struct tether_call *call = data;
    size_t need = (size + 15) & ~(size_t)15;
    if (need >= size && need <= sizeof call->arena - call->arena_off) {
        void *p = call->arena + call->arena_off;
        call->arena_off += need;
        return p;
    }
    size_t cost = size + TT_UNPACK_OVERHEAD;
    if (size > SIZE_MAX - 16 || cost > call->pb_budget) {
        call->pb_over = 1;
        return NULL;
    }
    size_t *p = tt_malloc(size + 16);
    if (p == NULL) {
        return NULL;
    }
    call->pb_budget -= cost;
    p[0] = size;
    return (uint8_t *)p + 16;
}

static void
arena_free(void *data, void *ptr)
{
    struct tether_call *call = data;
    uint8_t *p = ptr;
    if (p == NULL || (p >= call->arena && p < call->arena + sizeof call->arena)) {
        return; /* the whole arena is reset when the call is recycled */
    }
    size_t *h = (size_t *)(void *)(p - 16);
    call->pb_budget += h[0] + TT_UNPACK_OVERHEAD;
    tt_free(h);
}

static void
call_release_body(struct tether_call *call)
{
    if (call->req != NULL) {
        protobuf_c_message_free_unpacked(call->req,
                                         call->req_in_arena ? &call->pb_alloc : &tt_pb_allocator);
        call->req = NULL;
    }
    call->req_in_arena = 0;
    call->arena_off = 0;
    if (call->body != NULL && call->body != call->small) {
        tt_free(call->body);
    }
    call->body = NULL;
    if (call->ctx_heap) {
        tt_free((void *)call->ctx);
    }
    call->ctx = NULL;
    call->ctx_len = 0;
    call->ctx_heap = 0;
}

/* Free a call that can no longer reach its thread (the server stopped). */
static void
call_drop_dead(struct tether_call *call)
{
    gate *g = call->g;
    int gref = call->gref;
    call_release_body(call);
    tt_buf_free(&call->ans);
    tt_buf_free(&call->trailers);
    tt_free(call);
    if (gref && atomic_fetch_sub(&g->refs, 1) == 1) {
        pthread_mutex_destroy(&g->mu);
        tt_free(g);
    }
}

/* Finish a call on its I/O thread: unlink it, account, recycle. */
static void
call_finish(struct tether_call *call)
{
    iothr *t = call->t;
    conn *c = call->c;
    gate *g = call->g;
    if (call->nic > 0) {
        /* The interceptors that let the call in see how it ended, last
         * first, while its method and metadata are still there. */
        uint64_t took = tt_now_ns() - call->ic_start_ns;
        const tether_server_interceptor *ics = t->srv->ics;
        for (int i = call->nic - 1; i >= 0; i--) {
            if (ics[i].after != NULL) {
                ics[i].after(call, call->status, took, ics[i].arg);
            }
        }
        call->nic = 0;
    }
    tt_server_metrics_end(call);
    TT_DLIST_REMOVE(&c->calls, call);
    c->inflight--;
    bump(&t->st_completed);
    if (tt_timer_armed(&call->dl_tmr)) {
        tt_timer_cancel(&t->loop, &call->dl_tmr);
    }
    long left = atomic_load_explicit(&t->inflight, memory_order_relaxed) - 1;
    atomic_store_explicit(&t->inflight, left, memory_order_relaxed);
    /* Once this thread ran its drain check (task_drain_check), it sees
     * DRAINING here and reports its last call; the control thread then
     * needs no polling. */
    if (left == 0 && atomic_load(&t->srv->state) == SRV_DRAINING) {
        report_drained(t);
    }
    call_release_body(call);
    call->canceled = 0;
    if (call == t->inline_call) {
        t->inline_done = 1; /* answered before its handler returned */
    }
    int gref = call->gref;
    call->gref = 0;
    if (t->nfree_calls < MAX_FREE_CALLS) {
        /* Keep an answer buffer of modest size with the recycled call. */
        if (call->ans.cap > TT_IOBUF) {
            tt_buf_free(&call->ans);
        }
        if (call->trailers.cap > 1024) {
            tt_buf_free(&call->trailers);
        }
        call->ans.off = call->ans.len = 0;
        call->next = t->free_calls;
        t->free_calls = call;
        t->nfree_calls++;
    } else {
        tt_buf_free(&call->ans);
        tt_buf_free(&call->trailers);
        tt_free(call);
    }
    conn_unref(c);
    if (gref) {
        atomic_fetch_sub(&g->refs, 1);
    }
}

/* The answer to a call built on another thread arrives on the I/O thread. */
static void
answer_home(tt_task *task)
{
    struct tether_call *call =
        (struct tether_call *)((char *)task - offsetof(struct tether_call, task));
    conn *c = call->c;
    if (!c->closed && !call->canceled && c->codec != NULL) {
        tt_server_codec_answer_home(call); /* re-encoded with the conn's codec */
    } else if (!c->closed && !call->canceled) {
        if (buf_prepare(c->t, &c->out, tt_buf_size(&call->ans)) == TETHER_OK) {
            memcpy(c->out.data + c->out.len, tt_buf_head(&call->ans), tt_buf_size(&call->ans));
            c->out.len += tt_buf_size(&call->ans);
            mark_dirty(c);
        }
    }
    call_finish(call);
}

/* Build an answer frame into out: its body is msg packed (len is then its
 * packed size, already computed by the caller) or the len bytes at data;
 * trailers (if any) go in its context section.  t: the I/O thread whose
 * spare buffers may be used, or NULL. */
static tether_err
encode_answer(tt_buf *out, iothr *t, const tt_buf *trailers, uint64_t seq, uint8_t type,
              uint32_t status, const ProtobufCMessage *msg, const void *data, size_t len)
{
    size_t tl = trailers != NULL ? tt_buf_size(trailers) : 0;
    size_t extra = tl > 0 ? 4 + tl : 0;
    tether_err rc = t != NULL ? buf_prepare(t, out, TT_FRAME_HDR + extra + len)
                              : tt_buf_reserve(out, TT_FRAME_HDR + extra + len);
    if (rc != TETHER_OK) {
        return rc;
    }
    uint8_t *p = out->data + out->len;
    if (tl > 0) {
        tt_frame_put_header_ctx(p, type, seq, status, 0, tl, len);
        memcpy(p + TT_FRAME_HDR + 4, tt_buf_head(trailers), tl);
    } else {
        tt_frame_put_header(p, type, seq, status, 0, len);
    }
    uint8_t *body = p + TT_FRAME_HDR + extra;
    if (msg != NULL) {
        protobuf_c_message_pack(msg, body);
    } else if (len > 0) {
        memcpy(body, data, len);
    }
    out->len += TT_FRAME_HDR + extra + len;
    return TETHER_OK;
}

/* Common answer path for reply, reply_raw and fail. */
static tether_err
call_answer(struct tether_call *call, uint8_t type, uint32_t status, const ProtobufCMessage *msg,
            const void *data, size_t len)
{
    tether_err rc = TETHER_OK;
    /* Only call fields here: off the I/O thread the server may be gone. */
    size_t max = call->max_frame;
    size_t over =
        TT_FRAME_HDR + (tt_buf_size(&call->trailers) > 0 ? 4 + tt_buf_size(&call->trailers) : 0);
    if (type == TT_FRAME_REPLY) {
        if (msg != NULL && call->out_desc != NULL && msg->descriptor != call->out_desc) {
            type = TT_FRAME_ERROR;
            status = TETHER_EINTERNAL;
            data = "rpc: handler replied with the wrong message type";
            len = strlen(data);
            msg = NULL;
            rc = TETHER_EINVAL;
        } else {
            if (msg != NULL) {
                len = protobuf_c_message_get_packed_size(msg); /* once per answer */
            }
            if (over + len > max) {
                type = TT_FRAME_ERROR;
                status = TETHER_EMSGSIZE;
                data = "rpc: reply larger than the frame limit";
                len = strlen(data);
                msg = NULL;
                rc = TETHER_EMSGSIZE;
            }
        }
    }
    if (type == TT_FRAME_ERROR && over + len > max) {
        /* Error texts are cut, never refused; trailers go first. */
        call->trailers.off = call->trailers.len = 0;
        if (TT_FRAME_HDR + len > max) {
            len = max - TT_FRAME_HDR;
        }
    }
    call->mt_out = (uint32_t)len;
    if (!call->canceled) {
        /* What the caller gets, for the interceptors' after hooks. */
        call->status = type == TT_FRAME_ERROR ? (tether_err)status : TETHER_OK;
    }
    iothr *t = call->t;
    if (tls_thr == t) {
        /* On the call's own I/O thread: straight into the output buffer. */
        conn *c = call->c;
        if (!c->closed && !call->canceled) {
            if (type == TT_FRAME_ERROR) {
                bump(&t->st_failed);
            }
            if (c->codec != NULL) {
                tether_err crc =
                    tt_server_codec_answer(call, type == TT_FRAME_ERROR, status, msg, data, len);
                rc = crc != TETHER_OK ? crc : rc;
            } else if (encode_answer(&c->out, t, &call->trailers, call->seq, type, status, msg,
                                     data, len) != TETHER_OK) {
                rc = TETHER_ENOMEM;
            }
            mark_dirty(c);
        }
        call_finish(call);
        return rc;
    }
    /* Another thread: build the frame here, then send the call home. */
    call->ans.off = call->ans.len = 0;
    if (encode_answer(&call->ans, NULL, &call->trailers, call->seq, type, status, msg, data, len) !=
        TETHER_OK) {
        rc = TETHER_ENOMEM;
        call->ans.off = call->ans.len = 0;
    }
    gate *g = call->g;
    pthread_mutex_lock(&g->mu);
    if (!g->dead) {
        call->task.fn = answer_home;
        tt_loop_post(&t->loop, &call->task);
        pthread_mutex_unlock(&g->mu);
        return rc;
    }
    pthread_mutex_unlock(&g->mu);
    call_drop_dead(call);
    return rc;
}

tether_err
tether_call_reply(tether_call *call, const ProtobufCMessage *reply)
{
    if (call == NULL) {
        return TETHER_EINVAL;
    }
    if (reply == NULL) {
        call_answer(call, TT_FRAME_ERROR, TETHER_EINTERNAL, NULL, "rpc: handler replied NULL",
                    strlen("rpc: handler replied NULL"));
        return TETHER_EINVAL;
    }
    return call_answer(call, TT_FRAME_REPLY, 0, reply, NULL, 0);
}

tether_err
tether_call_reply_raw(tether_call *call, const void *data, size_t len)
{
    if (call == NULL || (data == NULL && len > 0)) {
        return TETHER_EINVAL;
    }
    return call_answer(call, TT_FRAME_REPLY, 0, NULL, data, len);
}

tether_err
tether_call_fail(tether_call *call, const char *msg)
{
    if (call == NULL) {
        return TETHER_EINVAL;
    }
    if (msg == NULL) {
        msg = "error";
    }
    return call_answer(call, TT_FRAME_ERROR, TETHER_EREMOTE, NULL, msg, strlen(msg));
}

tether_err
tether_call_fail_code(tether_call *call, tether_err code, const char *text)
{
    if (call == NULL) {
        return TETHER_EINVAL;
    }
    if (!tt_err_on_wire(code)) {
        call_answer(call, TT_FRAME_ERROR, TETHER_EINTERNAL, NULL,
                    "rpc: handler failed with an invalid code",
                    strlen("rpc: handler failed with an invalid code"));
        return TETHER_EINVAL;
    }
    if (text == NULL) {
        text = tether_strerror(code);
    }
    return call_answer(call, TT_FRAME_ERROR, (uint32_t)code, NULL, text, strlen(text));
}

const char *
tether_call_method(const tether_call *call)
{
    return call != NULL ? call->m->name : "";
}

uint64_t
tether_call_deadline(const tether_call *call)
{
    if (call == NULL || call->deadline_ns == 0) {
        return 0;
    }
    return call->deadline_ns / 1000000ull;
}

tether_err
tether_call_canceled(const tether_call *call)
{
    if (call == NULL) {
        return TETHER_EINVAL;
    }
    int st = atomic_load_explicit(&((struct tether_call *)call)->cstate, memory_order_acquire);
    return st > CST_FN ? (tether_err)st : TETHER_OK;
}

tether_err
tether_call_on_cancel(tether_call *call, tether_cancel_fn fn, void *arg)
{
    if (call == NULL || fn == NULL) {
        return TETHER_EINVAL;
    }
    int expect = CST_NONE;
    int cur = atomic_load_explicit(&call->cstate, memory_order_acquire);
    if (cur == CST_FN) {
        return TETHER_ESTATE;
    }
    if (cur > CST_FN) {
        return (tether_err)cur;
    }
    call->cancel_fn = fn;
    call->cancel_arg = arg;
    /* Publishes fn and arg; fails only if a cancel came meanwhile. */
    if (!atomic_compare_exchange_strong_explicit(&call->cstate, &expect, CST_FN,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        return expect > CST_FN ? (tether_err)expect : TETHER_ESTATE;
    }
    return TETHER_OK;
}

/* Mark call canceled for why and tell its handler (on the I/O thread).
 * The first reason wins; the callback runs at most once. */
static void
call_cancel_notify(struct tether_call *call, tether_err why)
{
    int cur = atomic_load_explicit(&call->cstate, memory_order_acquire);
    while (cur <= CST_FN) {
        if (atomic_compare_exchange_weak_explicit(&call->cstate, &cur, (int)why,
                                                  memory_order_acq_rel, memory_order_acquire)) {
            if (cur == CST_FN) {
                call->cancel_fn(call, why, call->cancel_arg);
            }
            return;
        }
    }
}

/* Cancel an open call on its I/O thread: answer the caller now with code
 * (unless it gave up itself: answer_caller 0), drop the handler's answer
 * when it comes, and tell the handler. */
static void
call_cancel(struct tether_call *call, tether_err why, int answer_caller, const char *text)
{
    conn *c = call->c;
    if (call->canceled) {
        return;
    }
    call->canceled = 1;
    call->status = why;
    if (answer_caller && !c->closed) {
        if (c->codec != NULL) {
            tt_server_codec_error(c, call->seq, call->m->name, call->m->name_len, why, text);
        } else {
            write_error(c, call->seq, why, text);
        }
    }
    call_cancel_notify(call, why);
}

static void
on_deadline(tt_timer *tm)
{
    struct tether_call *call =
        (struct tether_call *)((char *)tm - offsetof(struct tether_call, dl_tmr));
    call_cancel(call, TETHER_ETIMEDOUT, 1, "rpc: deadline exceeded");
}

/* Walk call's request metadata: the i-th META entry (counting from 0), or
 * the first with key when key is not NULL.  1 found, 0 not. */
static int
meta_find(const struct tether_call *call, size_t i, const char *key, tt_ctx_entry *out)
{
    size_t off = 0;
    size_t n = 0;
    tt_ctx_entry e;
    while (tt_ctx_next(call->ctx, call->ctx_len, &off, &e) == 1) {
        if (e.tag != TT_CTX_META) {
            continue;
        }
        if (key != NULL ? strcmp(e.key, key) == 0 : n == i) {
            *out = e;
            return 1;
        }
        n++;
    }
    return 0;
}

const char *
tether_call_get_meta(const tether_call *call, const char *key)
{
    tt_ctx_entry e;
    if (call == NULL || key == NULL || !meta_find(call, 0, key, &e)) {
        return NULL;
    }
    return e.value;
}

size_t
tether_call_meta_count(const tether_call *call)
{
    size_t n = 0;
    size_t off = 0;
    tt_ctx_entry e;
    while (call != NULL && tt_ctx_next(call->ctx, call->ctx_len, &off, &e) == 1) {
        n += e.tag == TT_CTX_META;
    }
    return n;
}

tether_err
tether_call_meta_at(const tether_call *call, size_t i, tether_meta *out)
{
    tt_ctx_entry e;
    if (call == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    if (!meta_find(call, i, NULL, &e)) {
        return TETHER_ENOENT;
    }
    out->key = e.key;
    out->value = e.value;
    return TETHER_OK;
}

tether_err
tether_call_set_trailer(tether_call *call, const char *key, const char *value)
{
    if (call == NULL || key == NULL || key[0] == '\0' || value == NULL) {
        return TETHER_EINVAL;
    }
    size_t kl = strlen(key);
    size_t vl = strlen(value);
    size_t need = tt_ctx_size_meta(kl, vl);
    if (need - 3 > 0xffff || tt_buf_size(&call->trailers) + need > call->max_meta) {
        return TETHER_ELIMIT;
    }
    tether_err rc = tt_buf_reserve(&call->trailers, need);
    if (rc != TETHER_OK) {
        return rc;
    }
    call->trailers.len +=
        tt_ctx_put_meta(call->trailers.data + call->trailers.len, key, kl, value, vl);
    return TETHER_OK;
}

tether_err
tether_call_get_peer(const tether_call *call, char *buf, size_t len)
{
    if (call == NULL || buf == NULL) {
        return TETHER_EINVAL;
    }
    const tt_addr *a = &call->c->peer;
    if (a->ss.ss_family == AF_UNIX) {
        if (len < 6) {
            return TETHER_EMSGSIZE;
        }
        memcpy(buf, "unix:", 6);
        return TETHER_OK;
    }
    return tt_addr_format(a, buf, len);
}

/* Shared with server_codec.c (see server_int.h). */

tether_err
tt_server_out_reserve(conn *c, size_t extra)
{
    return buf_prepare(c->t, &c->out, extra);
}

void
tt_server_mark_dirty(conn *c)
{
    mark_dirty(c);
}

void
tt_server_conn_fail(conn *c, tether_err code, const char *why)
{
    conn_fail(c, code, why);
}

struct tether_call *
tt_server_call_alloc(conn *c, const method_ent *m, uint64_t seq)
{
    return call_alloc(c, m, seq);
}

void
tt_server_call_unused(iothr *t, struct tether_call *call)
{
    call_unused(t, call);
}

/* A blocking handler runs on a worker thread. */
static void
run_on_worker(tt_task *task)
{
    struct tether_call *call =
        (struct tether_call *)((char *)task - offsetof(struct tether_call, task));
    const method_ent *m = call->m;
    if (m->md != NULL) {
        m->fn(call, call->req, m->arg);
    } else {
        m->raw_fn(call, call->body, call->body_len, m->arg);
    }
}

const method_ent *
tt_server_lookup(const tether_server *srv, const char *name, size_t len, tether_err *code,
                 char *text, size_t cap)
{
    const method_ent *m = find_method(srv, name, len);
    if (m != NULL) {
        return m;
    }
    /* The same texts as Go's net/rpc server, which splits the name at its
     * last dot, for every codec. */
    int nl = len > TT_FRAME_MAX_NAME ? TT_FRAME_MAX_NAME : (int)len;
    const char *dot = len > 0 ? memrchr(name, '.', len) : NULL;
    if (dot == NULL) {
        snprintf(text, cap, "rpc: service/method request ill-formed: %.*s", nl, name);
        *code = TETHER_ENOMETHOD;
        return NULL;
    }
    size_t sl = (size_t)(dot - name);
    for (size_t i = 0; i < srv->nservices; i++) {
        if (strlen(srv->services[i]) == sl && memcmp(srv->services[i], name, sl) == 0) {
            snprintf(text, cap, "rpc: can't find method %.*s", nl, name);
            *code = TETHER_ENOMETHOD;
            return NULL;
        }
    }
    snprintf(text, cap, "rpc: can't find service %.*s", nl, name);
    *code = TETHER_ENOSERVICE;
    return NULL;
}

/* Run the interceptors' befores in order; 0 if one refused the call (it
 * is then answered with that one's code). */
static int
run_befores(tether_server *srv, struct tether_call *call)
{
    call->ic_start_ns = tt_now_ns();
    for (int i = 0; i < srv->nics; i++) {
        const char *why = NULL;
        tether_err rc = srv->ics[i].before != NULL
                            ? srv->ics[i].before(call, &why, srv->ics[i].arg)
                            : TETHER_OK;
        if (rc != TETHER_OK) {
            if (why == NULL) {
                why = "rpc: call refused";
            }
            if (!tt_err_on_wire(rc)) {
                rc = TETHER_EINTERNAL;
            }
            call_answer(call, TT_FRAME_ERROR, (uint32_t)rc, NULL, why, strlen(why));
            return 0;
        }
        call->nic = i + 1;
    }
    return 1;
}

/* Put a filled-in call in flight (linked to its connection, counted) and
 * run its handler: inline, or on the worker pool for blocking methods. */
static inline void
call_launch(conn *c, struct tether_call *call)
{
    iothr *t = c->t;
    const method_ent *m = call->m;
    call->max_frame = t->srv->cfg.max_frame_size;
    call->max_meta = t->srv->cfg.max_metadata_size;
    call->out_desc = m->md != NULL ? m->md->output : NULL;
    /* In flight from here: linked to the connection, counted. */
    TT_DLIST_PUSH(&c->calls, call);
    c->refs++;
    c->inflight++;
    atomic_store_explicit(&t->inflight,
                          atomic_load_explicit(&t->inflight, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    tt_server_metrics_begin(call);
    if (t->srv->nics > 0 && !run_befores(t->srv, call)) {
        return; /* refused: answered already */
    }
    if (m->flags & TETHER_METHOD_BLOCKING) {
        /* Leaves the thread: the gate must outlive the server for it. */
        atomic_fetch_add_explicit(&call->g->refs, 1, memory_order_relaxed);
        call->gref = 1;
        call->task.fn = run_on_worker;
        if (call->deadline_ns != 0) {
            call->dl_tmr.fn = on_deadline;
            tt_timer_arm(&t->loop, &call->dl_tmr, call->deadline_ns);
        }
        tt_pool_submit(t->srv->pool, &call->task);
        return;
    }
    /* Inline: the handler may answer (and free the call) before returning.
     * Only a call still open when it returns takes a gate reference, so
     * the common case costs no atomic operation.  An answer from another
     * thread during the handler arrives as a posted task, after this. */
    t->inline_call = call;
    t->inline_done = 0;
    if (m->md != NULL) {
        m->fn(call, call->req, m->arg);
    } else {
        m->raw_fn(call, call->body, call->body_len, m->arg);
    }
    if (!t->inline_done) {
        atomic_fetch_add_explicit(&call->g->refs, 1, memory_order_relaxed);
        call->gref = 1;
        /* Open past its handler: now the deadline needs a timer (an inline
         * answer, the common case, never pays for one). */
        if (call->deadline_ns != 0) {
            call->dl_tmr.fn = on_deadline;
            tt_timer_arm(&t->loop, &call->dl_tmr, call->deadline_ns);
        }
    }
    t->inline_call = NULL;
}

/* Read a request's context: the deadline, and the metadata, which is
 * kept with the call (in its arena when it fits, so a call with a few
 * small pairs allocates nothing) until it is answered.  A malformed or
 * oversized context fails this call only: the framing is intact. */
static tether_err
call_take_ctx(conn *c, struct tether_call *call, const tt_frame *f)
{
    tether_server *srv = c->t->srv;
    if (f->ctx_len > srv->cfg.max_metadata_size) {
        char text[128];
        snprintf(text, sizeof text,
                 "rpc: request metadata of %zu bytes is over the server's limit of %u", f->ctx_len,
                 (unsigned)srv->cfg.max_metadata_size);
        write_error(c, f->seq, TETHER_ELIMIT, text);
        return TETHER_ELIMIT;
    }
    size_t off = 0;
    int has_meta = 0;
    tt_ctx_entry e;
    int r;
    while ((r = tt_ctx_next(f->ctx, f->ctx_len, &off, &e)) == 1) {
        if (e.tag == TT_CTX_DEADLINE) {
            uint32_t ms = tt_get_le32(e.val);
            if (c->t->now_ns == 0) {
                c->t->now_ns = tt_now_ns();
            }
            call->deadline_ns = c->t->now_ns + (uint64_t)(ms > 0 ? ms : 1) * 1000000ull;
        } else if (e.tag == TT_CTX_META) {
            has_meta = 1;
        }
    }
    if (r < 0) {
        write_error(c, f->seq, TETHER_EBADREQUEST, "rpc: malformed call context");
        return TETHER_EBADREQUEST;
    }
    if (!has_meta) {
        return TETHER_OK;
    }
    uint8_t *copy;
    size_t need = (f->ctx_len + 15) & ~(size_t)15;
    if (need <= sizeof call->arena / 2) {
        copy = call->arena + call->arena_off;
        call->arena_off += need;
    } else {
        copy = tt_malloc(f->ctx_len);
        if (copy == NULL) {
            write_error(c, f->seq, TETHER_ENOMEM, "rpc: server out of memory");
            return TETHER_ENOMEM;
        }
        call->ctx_heap = 1;
    }
    memcpy(copy, f->ctx, f->ctx_len);
    call->ctx = copy;
    call->ctx_len = f->ctx_len;
    return TETHER_OK;
}

static void
start_call(conn *c, const tt_frame *f)
{
    iothr *t = c->t;
    tether_server *srv = t->srv;
    bump(&t->st_started);
    if (atomic_load_explicit(&srv->state, memory_order_relaxed) == SRV_DRAINING) {
        /* Never reached a handler: the client may retry it elsewhere. */
        write_error(c, f->seq, TETHER_EGOINGAWAY, "rpc: server is going away");
        return;
    }
    /* The order of the checks is the same for every codec (Go reports an
     * unknown method before anything else about the call). */
    char why[TT_FRAME_MAX_NAME + 64];
    tether_err code;
    const method_ent *m = tt_server_lookup(srv, f->name, f->name_len, &code, why, sizeof why);
    if (m == NULL) {
        write_error(c, f->seq, code, why);
        return;
    }
    if (c->inflight >= srv->cfg.max_inflight_per_conn) {
        write_error(c, f->seq, TETHER_ELIMIT, "rpc: too many calls in flight on this connection");
        return;
    }
    struct tether_call *call = call_alloc(c, m, f->seq);
    if (call == NULL) {
        write_error(c, f->seq, TETHER_ENOMEM, "rpc: server out of memory");
        return;
    }
    call->mt_out = 0;
    call->mt_in = (uint32_t)f->body_len; /* metrics: request bytes */
    if (f->ctx_len > 0 && call_take_ctx(c, call, f) != TETHER_OK) {
        call_unused(t, call);
        return;
    }
    if (m->md != NULL) {
        call->pb_alloc.alloc = arena_alloc;
        call->pb_alloc.free = arena_free;
        call->pb_alloc.allocator_data = call;
        call->req_in_arena = 1;
        /* protobuf-c's unpack recurses without a limit: a recursive type
         * gets its nesting checked first (flat types skip this). */
        if (tt_pb_static_depth(m->md->input) > TT_PB_MAX_DEPTH &&
            tt_pb_check_depth(m->md->input, f->body, f->body_len, TT_PB_MAX_DEPTH) != TETHER_OK) {
            char text[TT_FRAME_MAX_NAME + 96];
            snprintf(text, sizeof text, "rpc: request for %s nests deeper than %d messages",
                     m->name, TT_PB_MAX_DEPTH);
            write_error(c, f->seq, TETHER_EBADREQUEST, text);
            call_unused(t, call);
            return;
        }
        call->pb_budget = TT_UNPACK_FACTOR * f->body_len + TT_UNPACK_SLACK;
        call->pb_over = 0;
        call->req = protobuf_c_message_unpack(m->md->input, &call->pb_alloc, f->body_len, f->body);
        if (call->req == NULL) {
            char text[TT_FRAME_MAX_NAME + 96];
            if (call->pb_over) {
                bump(&t->st_unpack_limit);
                tt_log(TETHER_LOG_DEBUG, "%s: request needs more than %d times its size to unpack",
                       m->name, TT_UNPACK_FACTOR);
            }
            snprintf(text, sizeof text, "rpc: cannot decode request for %s as %s%s", m->name,
                     m->md->input->name,
                     call->pb_over ? " (it needs too much memory: too many tiny fields)" : "");
            write_error(c, f->seq, TETHER_EBADREQUEST, text);
            call_release_body(call);
            call_unused(t, call);
            return;
        }
    } else {
        /* Raw bodies must outlive this read buffer if answered later. */
        call->body_len = f->body_len;
        call->body = f->body_len <= sizeof call->small ? call->small : tt_malloc(f->body_len);
        if (call->body == NULL) {
            write_error(c, f->seq, TETHER_ENOMEM, "rpc: server out of memory");
            call_release_body(call);
            call_unused(t, call);
            return;
        }
        if (f->body_len > 0) {
            memcpy(call->body, f->body, f->body_len);
        }
    }
    call_launch(c, call);
}

void
tt_server_call_launch(conn *c, struct tether_call *call)
{
    call_launch(c, call);
}

static void
handle_frame(conn *c, const tt_frame *f)
{
    switch (f->type) {
    case TT_FRAME_REQUEST:
        start_call(c, f);
        break;
    case TT_FRAME_PING:
        write_frame(c, TT_FRAME_PONG, f->seq, 0, NULL);
        break;
    case TT_FRAME_PONG:
        break;
    case TT_FRAME_CANCEL:
        /* The caller gave up: tell the handler, drop its answer.  Calls in
         * flight per connection are few (bounded by max_inflight_per_conn)
         * and cancels rare, so a walk of the list is enough. */
        for (struct tether_call *call = c->calls; call != NULL; call = call->next) {
            if (call->seq == f->seq) {
                call_cancel(call, TETHER_ECANCELED, 0, NULL);
                break;
            }
        }
        break;
    default:
        conn_fail(c, TETHER_EPROTO, "rpc: unexpected frame type from client");
        break;
    }
}

/* Decode and handle every complete frame in p[0..n); returns bytes used. */
static size_t
process(conn *c, const uint8_t *p, size_t n)
{
    size_t off = 0;
    if (c->codec != NULL) {
        return tt_server_codec_process(c, p, n);
    }
    if (!c->preface_ok && p[0] != (uint8_t)TT_PREFACE[0]) {
        /* Not native: Go's gob or jsonrpc, or garbage (server_codec.c). */
        return tt_server_codec_process(c, p, n);
    }
    if (!c->preface_ok) {
        size_t k = n < TT_PREFACE_LEN ? n : TT_PREFACE_LEN;
        if (memcmp(p, TT_PREFACE, k) != 0) {
            if (k == TT_PREFACE_LEN && memcmp(p, TT_PREFACE, TT_PREFACE_LEN - 1) == 0) {
                char why[128];
                snprintf(why, sizeof why,
                         "rpc: tether protocol version %u is not supported: this server "
                         "speaks version %u (update the client)",
                         (unsigned)p[TT_PREFACE_LEN - 1], (unsigned)TT_PROTOCOL_VERSION);
                conn_fail(c, TETHER_EPROTO, why);
                return n;
            }
            conn_fail(c, TETHER_EPROTO, "rpc: not a tether stream (bad preface)");
            return n;
        }
        if (n < TT_PREFACE_LEN) {
            c->need = TT_PREFACE_LEN;
            return 0;
        }
        c->preface_ok = 1;
        off = TT_PREFACE_LEN;
        if (atomic_load(&c->t->srv->state) == SRV_DRAINING && !c->goaway_sent) {
            /* Connected while we drain: the codec is known only now. */
            write_frame(c, TT_FRAME_GOAWAY, 0, 0, NULL);
            c->goaway_sent = 1;
        }
    }
    size_t max = c->t->srv->cfg.max_frame_size;
    while (off < n && !c->closed) {
        tt_frame f;
        size_t need = 0;
        tether_err rc = tt_frame_decode(p + off, n - off, max, &f, &need);
        if (rc == TETHER_EAGAIN) {
            c->need = need;
            break;
        }
        if (rc == TETHER_EMSGSIZE) {
            conn_fail(c, TETHER_EMSGSIZE, "rpc: frame larger than the server's limit");
            return n;
        }
        if (rc != TETHER_OK) {
            conn_fail(c, TETHER_EPROTO, "rpc: malformed frame");
            return n;
        }
        handle_frame(c, &f);
        off += f.total;
    }
    return off;
}

static void
conn_read(conn *c)
{
    c->t->now_ns = 0; /* read once per batch, by the first deadline */
    iothr *t = c->t;
    tt_server_metrics_stamp(t);
    if (tt_buf_size(&c->in) > 0) {
        /* Continue a partial frame: read straight into its buffer, sized
         * for the whole frame once its header is known. */
        size_t held = tt_buf_size(&c->in);
        size_t want = c->need > held ? c->need - held : 0;
        if (want < 16384) {
            want = 16384;
        }
        if (buf_prepare(t, &c->in, want) != TETHER_OK) {
            conn_fail(c, TETHER_ENOMEM, "rpc: server out of memory");
            return;
        }
        ssize_t r = recv(c->io.fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
        if (r <= 0) {
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                return;
            }
            conn_close(c);
            return;
        }
        c->in.len += (size_t)r;
        size_t used = process(c, tt_buf_head(&c->in), tt_buf_size(&c->in));
        if (c->closed) {
            return;
        }
        tt_buf_consume(&c->in, used);
        if (tt_buf_size(&c->in) == 0) {
            buf_release(t, &c->in);
        }
        return;
    }
    ssize_t r = recv(c->io.fd, t->scratch, TT_IOBUF, 0);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        conn_close(c);
        return;
    }
    size_t used = process(c, t->scratch, (size_t)r);
    if (!c->closed && used < (size_t)r) {
        /* Keep the incomplete tail for the next read. */
        size_t rest = (size_t)r - used;
        if (buf_prepare(t, &c->in, rest) != TETHER_OK ||
            tt_buf_append(&c->in, t->scratch + used, rest) != TETHER_OK) {
            conn_fail(c, TETHER_ENOMEM, "rpc: server out of memory");
        }
    }
}

static void
on_conn(tt_io *io, unsigned events)
{
    conn *c = (conn *)io;
    if (c->closed) {
        return;
    }
    if (events & TT_EV_WRITE) {
        conn_flush(c);
        if (c->closed) {
            return;
        }
    }
    if (events & (TT_EV_READ | TT_EV_ERROR)) {
        if (!c->paused) {
            conn_read(c);
        } else if (events & TT_EV_ERROR) {
            conn_close(c);
        }
    }
}

/* Make fd a connection of thread t (on t).  t->nconns was already counted
 * for it by whoever chose t. */
static void
conn_adopt(iothr *t, int fd, const tt_addr *peer)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn *c = tt_calloc(1, sizeof *c);
    if (c != NULL) {
        c->io.fd = fd;
        c->io.cb = on_conn;
        c->t = t;
        c->refs = 1;
        c->peer = *peer;
    }
    if (c == NULL || tt_loop_add(&t->loop, &c->io, TT_EV_READ) != TETHER_OK) {
        close(fd);
        tt_free(c);
        atomic_fetch_sub(&t->nconns, 1);
        return;
    }
    TT_DLIST_PUSH(&t->conns, c);
    atomic_fetch_add(&t->srv->nconns, 1);
    bump(&t->st_accepted);
    /* While draining, "going away" is sent once the first bytes show the
     * native protocol (process()): Go's codecs have no such frame. */
}

/* A connection accepted by one thread and handed to another. */
struct adopt {
    tt_task task; /* first: the task pointer is the struct's */
    int fd;
    tt_addr peer;
};

static void
adopt_task(tt_task *task)
{
    struct adopt *a = (struct adopt *)task;
    iothr *t = tls_thr;
    if (t == NULL || t->stop || !t->accepting) {
        close(a->fd); /* the server is stopping */
        if (t != NULL) {
            atomic_fetch_sub(&t->nconns, 1);
        }
    } else {
        conn_adopt(t, a->fd, &a->peer);
    }
    tt_free(a);
}

/* The thread with the fewest connections (this one on a tie). */
static iothr *
least_loaded(iothr *self)
{
    tether_server *srv = self->srv;
    iothr *best = self;
    long least = atomic_load_explicit(&self->nconns, memory_order_relaxed);
    for (int i = 0; i < srv->nthreads; i++) {
        long n = atomic_load_explicit(&srv->threads[i].nconns, memory_order_relaxed);
        if (n < least) {
            least = n;
            best = &srv->threads[i];
        }
    }
    return best;
}

static void
on_listener(tt_io *io, unsigned events)
{
    (void)events;
    iothr *t = tls_thr;
    tether_server *srv = t->srv;
    /* Take a bounded batch so one busy listener cannot starve the rest. */
    for (int i = 0; i < 64 && t->accepting; i++) {
        tt_addr peer;
        peer.len = sizeof peer.ss;
        int fd =
            accept4(io->fd, (struct sockaddr *)&peer.ss, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                tt_log(TETHER_LOG_WARN, "accept: out of file descriptors");
            }
            return;
        }
        if ((uint64_t)atomic_load(&srv->nconns) >= srv->cfg.max_connections) {
            uint8_t hdr[TT_FRAME_HDR + 32];
            const char *why = "rpc: too many connections";
            tt_frame_put_header(hdr, TT_FRAME_ERROR, 0, TETHER_ELIMIT, 0, strlen(why));
            memcpy(hdr + TT_FRAME_HDR, why, strlen(why));
            ssize_t w = send(fd, hdr, TT_FRAME_HDR + strlen(why), MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)w;
            close(fd);
            bump(&t->st_proto);
            continue;
        }
        /* Whichever thread the kernel woke, connections are spread over
         * the threads: an idle thread tends to win every accept, and a
         * server whose clients all landed on one thread uses one core. */
        iothr *dst = least_loaded(t);
        struct adopt *a = dst != t ? tt_malloc(sizeof *a) : NULL;
        if (a == NULL) {
            dst = t;
        }
        /* Counted at once, so the next accept of this batch sees it. */
        atomic_fetch_add(&dst->nconns, 1);
        if (a == NULL) {
            conn_adopt(t, fd, &peer);
            continue;
        }
        a->fd = fd;
        a->peer = peer;
        a->task.fn = adopt_task;
        tt_loop_post(&dst->loop, &a->task);
    }
}

/* ---------------------------------------------------------------------- */
/* Tasks posted by the stop sequence (drain.c)                            */

#define TASK_THR(task, field) ((iothr *)((char *)(task)-offsetof(iothr, field)))

static void
task_goaway(tt_task *task)
{
    iothr *t = TASK_THR(task, t_goaway);
    for (conn *c = t->conns; c != NULL; c = c->next) {
        if (!c->goaway_sent && c->preface_ok) {
            write_frame(c, TT_FRAME_GOAWAY, 0, 0, NULL);
            c->goaway_sent = 1;
        }
    }
}

static void
task_stop_accept(tt_task *task)
{
    iothr *t = TASK_THR(task, t_stop_accept);
    t->accepting = 0;
    for (int i = 0; i < t->srv->nlisteners; i++) {
        tt_loop_del(&t->loop, &t->lios[i]);
    }
}

/* The drain step asks each thread, on the thread itself, whether it is
 * idle: a thread's own count is exact there, so a last call that finished
 * just before the stop began is not missed (the control thread, reading
 * the counters from outside, could see a stale one). */
static void
task_drain_check(tt_task *task)
{
    iothr *t = TASK_THR(task, t_drain_check);
    if (atomic_load_explicit(&t->inflight, memory_order_relaxed) == 0) {
        report_drained(t);
    }
}

static void
task_cancel(tt_task *task)
{
    iothr *t = TASK_THR(task, t_cancel);
    for (conn *c = t->conns; c != NULL; c = c->next) {
        for (struct tether_call *call = c->calls; call != NULL; call = call->next) {
            call_cancel(call, TETHER_ECANCELED, 1,
                        "rpc: call canceled: the server stopped before it finished");
        }
    }
}

static void
task_stop(tt_task *task)
{
    iothr *t = TASK_THR(task, t_stop);
    t->stop = 1;
}

void
tt_server_post_all(tether_server *srv, size_t task_off)
{
    for (int i = 0; i < srv->nthreads; i++) {
        iothr *t = &srv->threads[i];
        tt_task *task = (tt_task *)((char *)t + task_off);
        tt_loop_post(&t->loop, task);
    }
}

long
tt_server_inflight(tether_server *srv)
{
    long n = 0;
    for (int i = 0; i < srv->nthreads; i++) {
        n += atomic_load(&srv->threads[i].inflight);
    }
    return n;
}

/* ---------------------------------------------------------------------- */
/* I/O threads                                                            */

static void
reap(iothr *t)
{
    while (t->reap != NULL) {
        conn *c = t->reap;
        t->reap = c->reap_next;
        conn_free(c);
    }
}

static void *
io_main(void *arg)
{
    iothr *t = arg;
    tls_thr = t;
    while (!t->stop) {
        tt_loop_poll(&t->loop, -1);
        flush_dirty(t);
        tt_server_metrics_flush(t);
        reap(t);
    }
    /* Stopping: send what is pending, then close every connection. */
    flush_dirty(t);
    while (t->conns != NULL) {
        conn_close(t->conns);
    }
    reap(t);
    tls_thr = NULL;
    return NULL;
}

static void
thread_fini(iothr *t)
{
    /* Calls of connections that closed with calls in flight keep their
     * connection alive; with the threads gone, free them here. */
    for (conn *c = t->reap; c != NULL;) {
        conn *n = c->reap_next;
        tt_free(c);
        c = n;
    }
    /* Connections whose calls never came home (the server stopped first);
     * those calls are freed by their late answers without touching them. */
    for (conn *c = t->zombies; c != NULL;) {
        conn *n = c->next;
        tt_free(c);
        c = n;
    }
    t->zombies = NULL;
    while (t->free_calls != NULL) {
        struct tether_call *call = t->free_calls;
        t->free_calls = call->next;
        tt_buf_free(&call->ans);
        tt_free(call);
    }
    for (int i = 0; i < t->nbufs; i++) {
        tt_free(t->bufs[i]);
    }
    t->nbufs = 0;
    tt_free(t->scratch);
    tt_free(t->lios);
    tt_loop_fini(&t->loop);
}

tether_err
tether_server_start(tether_server *srv)
{
    if (srv == NULL) {
        return TETHER_EINVAL;
    }
    if (atomic_load(&srv->state) != SRV_NEW || srv->nlisteners == 0) {
        set_err(srv, "%s", srv->nlisteners == 0 ? "no listener" : "already started");
        return TETHER_ESTATE;
    }
    tether_err rc = tt_server_add_builtins(srv);
    if (rc != TETHER_OK) {
        return rc;
    }
    qsort(srv->methods, srv->nmethods, sizeof *srv->methods, method_cmp);
    if ((rc = tt_server_metrics_start(srv)) != TETHER_OK) {
        return rc;
    }
    /* Worker threads only for servers that have blocking methods. */
    int blocking = 0;
    for (size_t i = 0; i < srv->nmethods; i++) {
        blocking |= (srv->methods[i].flags & TETHER_METHOD_BLOCKING) != 0;
    }
    if (blocking) {
        rc = tt_pool_create(srv->cfg.worker_threads, &srv->pool);
        if (rc != TETHER_OK) {
            return rc;
        }
    }
    srv->threads = tt_calloc((size_t)srv->cfg.io_threads, sizeof *srv->threads);
    if (srv->threads == NULL) {
        return TETHER_ENOMEM;
    }
    for (int i = 0; i < srv->cfg.io_threads; i++) {
        iothr *t = &srv->threads[i];
        t->srv = srv;
        t->idx = i;
        t->accepting = 1;
        t->t_goaway.fn = task_goaway;
        t->t_stop_accept.fn = task_stop_accept;
        t->t_cancel.fn = task_cancel;
        t->t_drain_check.fn = task_drain_check;
        t->t_stop.fn = task_stop;
        t->scratch = tt_malloc(TT_IOBUF);
        t->lios = tt_calloc((size_t)srv->nlisteners, sizeof *t->lios);
        if (t->scratch == NULL || t->lios == NULL) {
            tt_free(t->scratch);
            tt_free(t->lios);
            rc = TETHER_ENOMEM;
            goto fail;
        }
        rc = tt_loop_init(&t->loop);
        if (rc != TETHER_OK) {
            tt_free(t->scratch);
            tt_free(t->lios);
            goto fail;
        }
        srv->nthreads = i + 1;
        for (int j = 0; j < srv->nlisteners; j++) {
            t->lios[j].fd = srv->listeners[j].fd;
            t->lios[j].cb = on_listener;
            /* Every thread watches every listener; TT_EV_EXCLUSIVE wakes one
             * of them per connection, which spreads connections out. */
            rc = tt_loop_add(&t->loop, &t->lios[j], TT_EV_READ | TT_EV_EXCLUSIVE);
            if (rc != TETHER_OK) {
                goto fail;
            }
        }
    }
    atomic_store(&srv->state, SRV_RUNNING);
    for (int i = 0; i < srv->nthreads; i++) {
        int e = tt_thread_start(&srv->threads[i].tid, io_main, &srv->threads[i]);
        if (e != 0) {
            /* Threads that did start are stopped and joined. */
            for (int j = 0; j < i; j++) {
                tt_loop_post(&srv->threads[j].loop, &srv->threads[j].t_stop);
                pthread_join(srv->threads[j].tid, NULL);
            }
            atomic_store(&srv->state, SRV_NEW);
            rc = tt_err_errno(e);
            goto fail;
        }
    }
    int e = tt_thread_start(&srv->control, tt_server_control_main, srv);
    if (e != 0) {
        /* Without the control thread nobody could stop us: stop now. */
        tt_server_post_all(srv, offsetof(iothr, t_stop));
        for (int i = 0; i < srv->nthreads; i++) {
            pthread_join(srv->threads[i].tid, NULL);
        }
        atomic_store(&srv->state, SRV_NEW);
        rc = tt_err_errno(e);
        goto fail;
    }
    srv->control_started = 1;
    /* Serving now: only from here may the registry list us. */
    rc = tt_server_register_all(srv);
    if (rc != TETHER_OK) {
        set_err(srv, "registration failed: %s", tether_strerror(rc));
        tether_server_shutdown(srv);
        tether_server_shutdown(srv);
        pthread_join(srv->control, NULL);
        srv->control_started = 0;
        return rc;
    }
    return TETHER_OK;

fail:
    for (int i = 0; i < srv->nthreads; i++) {
        thread_fini(&srv->threads[i]);
    }
    tt_free(srv->threads);
    srv->threads = NULL;
    srv->nthreads = 0;
    tt_pool_destroy(srv->pool, 100); /* the drain already waited for handlers */
    srv->pool = NULL;
    return rc;
}

void
tether_server_shutdown(tether_server *srv)
{
    if (srv == NULL) {
        return;
    }
    /* Only write(2): safe in a signal handler. */
    uint64_t one = 1;
    ssize_t w = write(srv->shutdown_fd, &one, sizeof one);
    (void)w;
}

tether_err
tether_server_wait(tether_server *srv)
{
    if (srv == NULL) {
        return TETHER_EINVAL;
    }
    if (!srv->control_started) {
        return TETHER_ESTATE;
    }
    pthread_mutex_lock(&srv->mu);
    while (atomic_load(&srv->state) != SRV_STOPPED) {
        pthread_cond_wait(&srv->cv, &srv->mu);
    }
    pthread_mutex_unlock(&srv->mu);
    return TETHER_OK;
}

void
tt_server_stop_threads(tether_server *srv)
{
    tt_server_post_all(srv, offsetof(iothr, t_stop));
    for (int i = 0; i < srv->nthreads; i++) {
        pthread_join(srv->threads[i].tid, NULL);
    }
    /* From here no loop runs: answers arriving late must not post. */
    pthread_mutex_lock(&srv->g->mu);
    srv->g->dead = 1;
    pthread_mutex_unlock(&srv->g->mu);
    /* Posted answers that raced with the stop are still queued: finish them
     * so their calls are freed (their connections are closed). */
    for (int i = 0; i < srv->nthreads; i++) {
        iothr *t = &srv->threads[i];
        tls_thr = t;
        tt_loop_poll(&t->loop, 0);
        reap(t);
        tls_thr = NULL;
    }
    for (int i = 0; i < srv->nlisteners; i++) {
        if (srv->listeners[i].fd >= 0) {
            close(srv->listeners[i].fd);
            srv->listeners[i].fd = -1;
            if (srv->listeners[i].addr.ss.ss_family == AF_UNIX) {
                unlink(((struct sockaddr_un *)&srv->listeners[i].addr.ss)->sun_path);
            }
        }
    }
}

void
tether_server_destroy(tether_server *srv)
{
    if (srv == NULL) {
        return;
    }
    if (srv->control_started) {
        /* Two requests make the stop immediate. */
        tether_server_shutdown(srv);
        tether_server_shutdown(srv);
        pthread_join(srv->control, NULL);
        srv->control_started = 0;
    }
    tt_server_metrics_fini(srv);
    tt_server_registry_fini(srv);
    tt_pool_destroy(srv->pool, 100); /* the drain already waited for handlers */
    for (int i = 0; i < srv->nthreads; i++) {
        thread_fini(&srv->threads[i]);
    }
    tt_free(srv->threads);
    for (int i = 0; i < srv->nlisteners; i++) {
        if (srv->listeners[i].fd >= 0) {
            close(srv->listeners[i].fd);
        }
    }
    tt_free(srv->listeners);
    for (size_t i = 0; i < srv->nmethods; i++) {
        tt_free(srv->methods[i].name);
    }
    tt_free(srv->methods);
    for (size_t i = 0; i < srv->nservices; i++) {
        tt_free(srv->services[i]);
    }
    tt_free(srv->services);
    if (srv->shutdown_fd >= 0) {
        close(srv->shutdown_fd);
    }
    if (srv->drained_fd >= 0) {
        close(srv->drained_fd);
    }
    if (srv->g != NULL) {
        pthread_mutex_lock(&srv->g->mu);
        srv->g->dead = 1;
        pthread_mutex_unlock(&srv->g->mu);
        if (atomic_fetch_sub(&srv->g->refs, 1) == 1) {
            pthread_mutex_destroy(&srv->g->mu);
            tt_free(srv->g);
        }
    }
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    tt_free(srv);
}
