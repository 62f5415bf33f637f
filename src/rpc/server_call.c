/*
 * server_call.c - one call on the server, from its decoded request to its
 * answer: the call object (recycled per thread, with a small arena the
 * request is unpacked into), the interceptors, running the handler inline
 * or on the worker pool, the answer (encoded on the I/O thread by the
 * connection's codec, whichever thread gave it), deadline and cancel, and
 * what a handler reads of its call (tether_call_* in tether/service.h).
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "codec/native/frame.h"
#include "codec/pbjson/pbutil.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/list.h"
#include "core/log.h"
#include "rpc/server_int.h"
#include "rpc/server_metrics.h"

#define MAX_FREE_CALLS 1024

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

static void call_finish(struct tether_call *call);
static void blocking_done(conn *c);

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
    call->body_cap = 0;
    call->canceled = 0;
    call->deadline_ns = 0;
    call->ctx = NULL;
    call->ctx_len = 0;
    call->ctx_heap = 0;
    call->trailers.off = call->trailers.len = 0;
    atomic_store_explicit(&call->cstate, CST_NONE, memory_order_relaxed);
    call->cancel_fn = NULL;
    call->nic = 0;
    call->blk = 0;
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
    call->pb_heap = 1;
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
        /* A request wholly in the arena goes with the arena's reset: the
         * walk over its fields would free nothing. */
        if (!call->req_in_arena || call->pb_heap) {
            protobuf_c_message_free_unpacked(
                call->req, call->req_in_arena ? &call->pb_alloc : &tt_pb_allocator);
        }
        call->req = NULL;
    }
    call->req_in_arena = 0;
    call->arena_off = 0;
    if (call->body_cap > 0) {
        tt_buf b = {.data = call->body, .cap = call->body_cap};
        tt_srv_buf_release(call->t, &b);
    } else if (call->body != NULL && call->body != call->small) {
        tt_free(call->body);
    }
    call->body = NULL;
    call->body_cap = 0;
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
    call->body_cap = 0; /* its thread is gone: a plain free */
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
    if (call->blk) {
        blocking_done(c);
        call->blk = 0;
    }
    tt_srv_bump(&t->st_completed);
    if (tt_timer_armed(&call->dl_tmr)) {
        tt_timer_cancel(&t->loop, &call->dl_tmr);
    }
    long left = atomic_load_explicit(&t->inflight, memory_order_relaxed) - 1;
    atomic_store_explicit(&t->inflight, left, memory_order_relaxed);
    /* Once this thread ran its drain check (tt_srv_task_drain_check), it sees
     * DRAINING here and reports its last call; the control thread then
     * needs no polling. */
    if (left == 0 && atomic_load(&t->srv->state) == SRV_DRAINING) {
        tt_srv_report_drained(t);
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
    tt_srv_conn_unref(c);
    if (gref) {
        atomic_fetch_sub(&g->refs, 1);
    }
}

/* Encode an answer into c's output with its codec (on c's thread). */
static tether_err
answer_encode(struct tether_call *call, tether_err status, const ProtobufCMessage *msg,
              const ProtobufCMessageDescriptor *desc, const void *data, size_t len)
{
    conn *c = call->c;
    tt_answer a = {.seq = call->seq,
                   .method = call->m->name,
                   .method_len = call->m->name_len,
                   .status = status,
                   .msg = msg,
                   .desc = desc,
                   .data = data,
                   .len = len,
                   .trailers = tt_buf_head(&call->trailers),
                   .trailers_len = tt_buf_size(&call->trailers)};
    if (status != TETHER_OK) {
        tt_srv_bump(&c->t->st_failed);
    }
    /* A large raw reply goes from the handler's memory to the socket. */
    a.body_later =
        status == TETHER_OK && msg == NULL && tt_codec_body_direct(c->codec, len, c->tls != NULL);
    /* Room for the usual answer up front (from the thread's spares); the
     * codec grows the buffer itself when it needs more. */
    tether_err rc =
        tt_srv_buf_prepare(c->t, &c->out, 64 + a.trailers_len + (a.body_later ? 0 : len));
    if (rc == TETHER_OK) {
        rc = c->codec->encode_answer(c->cstate, &c->out, &a);
        if (rc == TETHER_OK && a.body_later) {
            tt_srv_conn_send_body(c, data, len);
        }
        tt_srv_mark_dirty(c);
    }
    if (rc != TETHER_OK && status == TETHER_OK) {
        /* The caller got an error instead (too large, not encodable). */
        tt_srv_bump(&c->t->st_failed);
        if (!call->canceled) {
            call->status = rc == TETHER_EMSGSIZE ? TETHER_EMSGSIZE : TETHER_EINTERNAL;
        }
    }
    return rc;
}

/* The answer to a call built on another thread arrives on the I/O thread
 * as (status, bytes): the connection's codec encodes it once, here. */
static void
answer_home(tt_task *task)
{
    struct tether_call *call =
        (struct tether_call *)((char *)task - offsetof(struct tether_call, task));
    conn *c = call->c;
    if (!c->closed && !call->canceled) {
        if (call->ans_oom) {
            static const char t[] = "rpc: server out of memory";
            answer_encode(call, TETHER_ENOMEM, NULL, NULL, t, sizeof t - 1);
        } else {
            const ProtobufCMessageDescriptor *desc =
                call->ans_status == TETHER_OK ? call->out_desc : NULL;
            answer_encode(call, call->ans_status, NULL, desc, tt_buf_head(&call->ans),
                          tt_buf_size(&call->ans));
        }
    }
    call_finish(call);
}

/* Common answer path for reply, reply_raw and fail: status TETHER_OK and
 * msg (or the bytes data[0..len)), or an error code and its text. */
static tether_err
call_answer(struct tether_call *call, tether_err status, const ProtobufCMessage *msg,
            const void *data, size_t len)
{
    tether_err rc = TETHER_OK;
    /* Only call fields here: off the I/O thread the server may be gone. */
    if (status == TETHER_OK && msg != NULL) {
        if (call->out_desc != NULL && msg->descriptor != call->out_desc) {
            status = TETHER_EINTERNAL;
            data = "rpc: handler replied with the wrong message type";
            len = strlen(data);
            msg = NULL;
            rc = TETHER_EINVAL;
        } else {
            len = protobuf_c_message_get_packed_size(msg); /* once per answer */
        }
    }
    if (status == TETHER_OK && len > call->max_frame) {
        /* Refused before any copy; the codec checks its exact limit. */
        status = TETHER_EMSGSIZE;
        data = "rpc: reply larger than the frame limit";
        len = strlen(data);
        msg = NULL;
        rc = TETHER_EMSGSIZE;
    }
    call->mt_out = (uint32_t)len; /* metrics: answer bytes */
    if (!call->canceled) {
        call->status = status; /* what the caller gets, for the interceptors */
    }
    iothr *t = call->t;
    if (tt_srv_tls == t) {
        /* On the call's own I/O thread: straight into the output buffer. */
        if (!call->c->closed && !call->canceled) {
            tether_err erc = answer_encode(call, status, msg, NULL, data, len);
            rc = rc != TETHER_OK ? rc : erc;
        }
        call_finish(call);
        return rc;
    }
    /* Another thread: keep (status, bytes) with the call and send it home,
     * where the connection's codec encodes it. */
    call->ans.off = call->ans.len = 0;
    call->ans_status = status;
    call->ans_oom = tt_buf_reserve(&call->ans, len) != TETHER_OK;
    if (call->ans_oom) {
        rc = TETHER_ENOMEM;
    } else if (msg != NULL) {
        call->ans.len = protobuf_c_message_pack(msg, call->ans.data);
    } else if (len > 0) {
        memcpy(call->ans.data, data, len);
        call->ans.len = len;
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
        call_answer(call, TETHER_EINTERNAL, NULL, "rpc: handler replied NULL",
                    strlen("rpc: handler replied NULL"));
        return TETHER_EINVAL;
    }
    return call_answer(call, TETHER_OK, reply, NULL, 0);
}

tether_err
tether_call_reply_raw(tether_call *call, const void *data, size_t len)
{
    if (call == NULL || (data == NULL && len > 0)) {
        return TETHER_EINVAL;
    }
    return call_answer(call, TETHER_OK, NULL, data, len);
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
    return call_answer(call, TETHER_EREMOTE, NULL, msg, strlen(msg));
}

tether_err
tether_call_fail_code(tether_call *call, tether_err code, const char *text)
{
    if (call == NULL) {
        return TETHER_EINVAL;
    }
    if (!tt_err_on_wire(code)) {
        call_answer(call, TETHER_EINTERNAL, NULL, "rpc: handler failed with an invalid code",
                    strlen("rpc: handler failed with an invalid code"));
        return TETHER_EINVAL;
    }
    if (text == NULL) {
        text = tether_strerror(code);
    }
    return call_answer(call, code, NULL, text, strlen(text));
}

const char *
tether_call_get_method(const tether_call *call)
{
    return call != NULL ? call->m->name : "";
}

uint64_t
tether_call_get_deadline(const tether_call *call)
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
void
tt_srv_call_cancel_notify(struct tether_call *call, tether_err why)
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
void
tt_srv_call_cancel(struct tether_call *call, tether_err why, int answer_caller, const char *text)
{
    conn *c = call->c;
    if (call->canceled) {
        return;
    }
    call->canceled = 1;
    call->status = why;
    if (answer_caller && !c->closed) {
        tt_srv_answer_error(c, call->seq, call->m->name, call->m->name_len, why, text);
    }
    tt_srv_call_cancel_notify(call, why);
}

static void
on_deadline(tt_timer *tm)
{
    struct tether_call *call =
        (struct tether_call *)((char *)tm - offsetof(struct tether_call, dl_tmr));
    tt_srv_call_cancel(call, TETHER_ETIMEDOUT, 1, "rpc: deadline exceeded");
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
tether_call_get_meta_count(const tether_call *call)
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
tether_call_get_meta_at(const tether_call *call, size_t i, tether_meta *out)
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

tether_err
tether_call_get_peer_subject(const tether_call *call, char *buf, size_t len)
{
    if (call == NULL || buf == NULL) {
        return TETHER_EINVAL;
    }
    /* Set once at the handshake, before any call: immutable after. */
    const char *s = call->c->peer_subject;
    if (s == NULL) {
        return TETHER_ENOENT;
    }
    size_t n = strlen(s);
    if (n >= len) {
        return TETHER_EMSGSIZE;
    }
    memcpy(buf, s, n + 1);
    return TETHER_OK;
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
            call_answer(call, rc, NULL, why, strlen(why));
            return 0;
        }
        call->nic = i + 1;
    }
    return 1;
}

/* The worker queue is shared fairly: at most max_queued_blocking blocking
 * calls in flight server-wide, and a connection that already has some
 * may hold an equal share with room kept for one more connection, so one
 * client queuing thousands of calls cannot make everyone else wait
 * behind them.  1 admitted (counted), 0 refused with why. */
static int
blocking_admit(conn *c, char *why, size_t cap)
{
    tether_server *srv = c->t->srv;
    long max = (long)srv->cfg.max_queued_blocking;
    long total = atomic_load_explicit(&srv->nblocking, memory_order_relaxed);
    if (total >= max) {
        snprintf(why, cap,
                 "rpc: server busy: %ld blocking calls are queued or running "
                 "(max_queued_blocking)",
                 total);
        return 0;
    }
    if (c->nblocking > 0) {
        long conns = atomic_load_explicit(&srv->nconns_blocking, memory_order_relaxed);
        long share = max / (conns + 1);
        share = share > 0 ? share : 1;
        if ((long)c->nblocking >= share) {
            snprintf(why, cap,
                     "rpc: server busy: this connection has its share of the worker queue "
                     "(%ld calls)",
                     share);
            return 0;
        }
    }
    atomic_fetch_add_explicit(&srv->nblocking, 1, memory_order_relaxed);
    if (c->nblocking++ == 0) {
        atomic_fetch_add_explicit(&srv->nconns_blocking, 1, memory_order_relaxed);
    }
    return 1;
}

static void
blocking_done(conn *c)
{
    tether_server *srv = c->t->srv;
    atomic_fetch_sub_explicit(&srv->nblocking, 1, memory_order_relaxed);
    if (--c->nblocking == 0) {
        atomic_fetch_sub_explicit(&srv->nconns_blocking, 1, memory_order_relaxed);
    }
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
        char why[160];
        if (!blocking_admit(c, why, sizeof why)) {
            tt_srv_bump(&t->st_blk_refused);
            call_answer(call, TETHER_ELIMIT, NULL, why, strlen(why));
            return;
        }
        call->blk = 1;
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
call_take_ctx(conn *c, struct tether_call *call, const tt_rpc_msg *m)
{
    tether_server *srv = c->t->srv;
    if (m->ctx_len > srv->cfg.max_metadata_size) {
        char text[128];
        snprintf(text, sizeof text,
                 "rpc: request metadata of %zu bytes is over the server's limit of %u", m->ctx_len,
                 (unsigned)srv->cfg.max_metadata_size);
        tt_srv_answer_error(c, m->seq, call->m->name, call->m->name_len, TETHER_ELIMIT, text);
        return TETHER_ELIMIT;
    }
    size_t off = 0;
    int has_meta = 0;
    tt_ctx_entry e;
    int r;
    while ((r = tt_ctx_next(m->ctx, m->ctx_len, &off, &e)) == 1) {
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
        tt_srv_answer_error(c, m->seq, call->m->name, call->m->name_len, TETHER_EBADREQUEST,
                            "rpc: malformed call context");
        return TETHER_EBADREQUEST;
    }
    if (!has_meta) {
        return TETHER_OK;
    }
    uint8_t *copy;
    size_t need = (m->ctx_len + 15) & ~(size_t)15;
    if (need <= sizeof call->arena / 2) {
        copy = call->arena + call->arena_off;
        call->arena_off += need;
    } else {
        copy = tt_malloc(m->ctx_len);
        if (copy == NULL) {
            tt_srv_answer_error(c, m->seq, call->m->name, call->m->name_len, TETHER_ENOMEM,
                                "rpc: server out of memory");
            return TETHER_ENOMEM;
        }
        call->ctx_heap = 1;
    }
    memcpy(copy, m->ctx, m->ctx_len);
    call->ctx = copy;
    call->ctx_len = m->ctx_len;
    return TETHER_OK;
}

/* Unpack the request body into call->req: into the call's arena, within
 * its budget, where the codec can; an error answer (and nonzero) if the
 * body does not decode. */
static int
call_unpack(conn *c, struct tether_call *call, const tt_rpc_msg *m)
{
    const method_ent *me = call->m;
    const tt_codec_ops *ops = c->codec;
    tether_err rc;
    call->pb_over = 0;
    call->pb_heap = 0;
    if (ops->unpack_with != NULL) {
        call->pb_alloc.alloc = arena_alloc;
        call->pb_alloc.free = arena_free;
        call->pb_alloc.allocator_data = call;
        call->req_in_arena = 1;
        call->pb_budget = TT_UNPACK_FACTOR * m->body_len + TT_UNPACK_SLACK;
        rc = ops->unpack_with(c->cstate, me->md->input, m->body, m->body_len, &call->pb_alloc,
                              &call->req);
    } else {
        rc = ops->unpack(c->cstate, me->md->input, m->body, m->body_len, &call->req);
    }
    if (rc == TETHER_OK) {
        return 0;
    }
    call->req = NULL;
    char text[TT_FRAME_MAX_NAME + 128];
    const char *detail = ops->last_error(c->cstate);
    if (call->pb_over) {
        tt_srv_bump(&c->t->st_unpack_limit);
        tt_log(TETHER_LOG_DEBUG, "%s: request needs more than %d times its size to unpack",
               me->name, TT_UNPACK_FACTOR);
        snprintf(text, sizeof text,
                 "rpc: cannot decode request for %s as %s (it needs too much memory: too many "
                 "tiny fields)",
                 me->name, me->md->input->name);
    } else if (rc == TETHER_ELIMIT && detail[0] == '\0') {
        snprintf(text, sizeof text, "rpc: request for %s nests deeper than %d messages", me->name,
                 TT_PB_MAX_DEPTH);
    } else if (detail[0] != '\0' && rc == TETHER_EBADREQUEST) {
        snprintf(text, sizeof text, "%s", detail);
    } else if (rc == TETHER_EBADREQUEST) {
        snprintf(text, sizeof text, "rpc: cannot decode request for %s as %s", me->name,
                 me->md->input->name);
    } else {
        snprintf(text, sizeof text, "rpc: cannot decode request for %s: %s", me->name,
                 tether_strerror(rc));
    }
    tt_srv_answer_error(c, m->seq, me->name, me->name_len, TETHER_EBADREQUEST, text);
    return -1;
}

/* One decoded request, from any codec: the checks in one order (Go reports
 * an unknown method before anything else about the call), then the call
 * object, its context and body, and its launch. */
void
tt_srv_start_call(conn *c, const tt_rpc_msg *m)
{
    iothr *t = c->t;
    tether_server *srv = t->srv;
    tt_srv_bump(&t->st_started);
    if (atomic_load_explicit(&srv->state, memory_order_relaxed) == SRV_DRAINING &&
        !tt_srv_is_health(m->method, m->method_len)) {
        /* Never reached a handler: the client may retry it elsewhere.
         * Health checks still get their answer (DRAINING). */
        tt_srv_answer_error(c, m->seq, m->method, m->method_len, TETHER_EGOINGAWAY,
                            "rpc: server is going away");
        return;
    }
    char why[TT_FRAME_MAX_NAME + 96];
    tether_err code;
    /* A connection mostly calls one method again and again: one compare
     * instead of the table's binary search. */
    const method_ent *me = c->last_m;
    if (me == NULL || me->name_len != m->method_len ||
        memcmp(me->name, m->method, m->method_len) != 0) {
        me = tt_server_lookup(srv, m->method, m->method_len, &code, why, sizeof why);
        if (me == NULL) {
            tt_srv_answer_error(c, m->seq, m->method, m->method_len, code, why);
            return;
        }
        c->last_m = me;
    }
    if (m->status != TETHER_OK) {
        /* The codec could read the header but not the call (Go's params). */
        int tl = m->errtext_len > 200 ? 200 : (int)m->errtext_len;
        snprintf(why, sizeof why, "%.*s", tl, m->errtext != NULL ? m->errtext : "");
        tt_srv_answer_error(c, m->seq, me->name, me->name_len, m->status,
                            why[0] != '\0' ? why : "rpc: bad request");
        return;
    }
    if (c->inflight >= srv->cfg.max_inflight_per_conn) {
        tt_srv_answer_error(c, m->seq, me->name, me->name_len, TETHER_ELIMIT,
                            "rpc: too many calls in flight on this connection");
        return;
    }
    if (me->md == NULL && !(c->codec->flags & TT_CODEC_RAW_BYTES)) {
        snprintf(why, sizeof why, "rpc: %s takes raw bytes: call it over tether's protocol",
                 me->name);
        tt_srv_answer_error(c, m->seq, me->name, me->name_len, TETHER_EBADREQUEST, why);
        return;
    }
    struct tether_call *call = call_alloc(c, me, m->seq);
    if (call == NULL) {
        tt_srv_answer_error(c, m->seq, me->name, me->name_len, TETHER_ENOMEM,
                            "rpc: server out of memory");
        return;
    }
    call->mt_out = 0;
    call->mt_in = (uint32_t)m->body_len; /* metrics: request bytes */
    call->mt_cell = NULL;
    if (m->ctx_len > 0 && call_take_ctx(c, call, m) != TETHER_OK) {
        call_release_body(call);
        call_unused(t, call);
        return;
    }
    if (me->md != NULL) {
        if (call_unpack(c, call, m) != 0) {
            call_release_body(call);
            call_unused(t, call);
            return;
        }
    } else {
        /* Raw bodies must outlive this read buffer if answered later;
         * large ones take the thread's large spares (no fresh mapping
         * per message). */
        call->body_len = m->body_len;
        if (m->body_len <= sizeof call->small) {
            call->body = call->small;
        } else if (m->body_len > TT_IOBUF) {
            tt_buf b = {0};
            if (tt_srv_buf_prepare(t, &b, m->body_len) == TETHER_OK) {
                call->body = b.data;
                call->body_cap = b.cap;
            }
        } else {
            call->body = tt_malloc(m->body_len);
        }
        if (call->body == NULL) {
            tt_srv_answer_error(c, m->seq, me->name, me->name_len, TETHER_ENOMEM,
                                "rpc: server out of memory");
            call_release_body(call);
            call_unused(t, call);
            return;
        }
        if (m->body_len > 0) {
            memcpy(call->body, m->body, m->body_len);
        }
    }
    call_launch(c, call);
}
