/*
 * server_conn.c - the server's connections: accepting, one pipeline for
 * every codec (read -> decode -> call -> answer -> flush), output
 * buffering with backpressure, and the tasks the stop sequence posts to
 * each I/O thread (see server_int.h for the threading model).
 *
 * The codec of a connection is picked from its first bytes by the codecs'
 * own probes (native, jsonrpc, gob) and from then on every message goes
 * through its ops: nothing here knows one codec from another.  The hot
 * path for calls answered inline: one recv() brings a batch of requests
 * into the thread's scratch buffer, each is decoded in place and started
 * (server_call.c), its answer encoded straight into the connection's
 * output; after the batch one send() per connection carries all answers.
 *
 * TLS (net/tls.c) sits under all of it: with a certificate configured, a
 * connection's first bytes are peeked before anything else.  A ClientHello
 * gets a TLS session and its handshake, and from then on the same
 * pipeline runs on the decrypted bytes (the codec probe included); any
 * other first bytes are plaintext, served only if the server allows it.
 * A plaintext connection's cost is a test of c->tls per read and send.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "codec/gob/gob.h"
#include "codec/jsonrpc/jsonrpc.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/list.h"
#include "core/log.h"
#include "net/sock.h"
#include "rpc/server_int.h"
#include "rpc/server_metrics.h"

/* Unsent output above which a connection's reading pauses, and below which
 * it resumes: a client that never reads its answers cannot grow us. */
#define OUT_HIGH (4u * 1024 * 1024)
#define OUT_LOW (1u * 1024 * 1024)

/* The codecs a connection may speak, in probe order (native's one-byte
 * test first, then jsonrpc's '{' after whitespace, then gob). */
static const tt_codec_ops *const codecs[] = {&tt_codec_native, &tt_codec_jsonrpc, &tt_codec_gob};

/* A client that has sent this much without showing its protocol (only
 * whitespace, say) is not one we speak. */
#define PROBE_MAX 4096

/* Bytes a connection may hold unconsumed beyond the message limit: Go's
 * codecs send a request's header and type definitions in front of its
 * body, so the buffer may hold a little more than one message. */
#define IN_SLACK (64 * 1024)

TT_THREAD_LOCAL iothr *tt_srv_tls;

static void in_release(conn *c);
static void partial_begin(conn *c);
static void tls_read(conn *c);

/* recv() and send() on c, through TLS when c has a session. */
static inline ssize_t
conn_recv(conn *c, void *buf, size_t n)
{
    return c->tls == NULL ? recv(c->io.fd, buf, n, 0) : tt_tls_read(c->tls, buf, n);
}

static inline ssize_t
conn_send(conn *c, const void *buf, size_t n, int flags)
{
    return c->tls == NULL ? send(c->io.fd, buf, n, MSG_NOSIGNAL | flags)
                          : tt_tls_write(c->tls, buf, n);
}

/* Tell the control thread this I/O thread has no call left (draining). */
void
tt_srv_report_drained(iothr *t)
{
    uint64_t one = 1;
    ssize_t w = write(t->srv->drained_fd, &one, sizeof one);
    (void)w;
}

/* How long the thread keeps a large buffer nobody uses: a connection
 * that moves large messages one after another reuses it, and its pages,
 * instead of mapping, faulting in and unmapping megabytes per message;
 * an idle server gives it back within this time. */
#define BIG_KEEP_NS (1000ull * 1000000ull)

#define NBIG (sizeof ((iothr *)0)->big / sizeof ((iothr *)0)->big[0])

/* Move b's bytes into the smallest of the thread's large spares that
 * holds them with extra more, when b must grow (compacting would not
 * do); b's old storage goes back as a spare. */
static int
take_big(iothr *t, tt_buf *b, size_t extra)
{
    size_t held = tt_buf_size(b);
    if (b->data != NULL && b->cap - held >= extra) {
        return 0; /* tt_buf_reserve compacts instead */
    }
    int k = -1;
    for (size_t i = 0; i < NBIG; i++) {
        if (t->big[i] != NULL && t->big_cap[i] >= held && t->big_cap[i] - held >= extra &&
            (k < 0 || t->big_cap[i] < t->big_cap[k])) {
            k = (int)i;
        }
    }
    if (k < 0) {
        return 0;
    }
    tt_buf old = *b;
    if (held > 0) {
        memcpy(t->big[k], b->data + b->off, held);
    }
    b->data = t->big[k];
    b->cap = t->big_cap[k];
    b->off = 0;
    b->len = held;
    t->big[k] = NULL;
    t->big_cap[k] = 0;
    old.off = old.len = 0;
    tt_srv_buf_release(t, &old);
    return 1;
}

/* Keep a large buffer as a spare: in a free slot, or instead of a
 * smaller one; false if it is not kept. */
static int
keep_big(iothr *t, void *data, size_t cap)
{
    int k = -1;
    for (size_t i = 0; i < NBIG; i++) {
        if (t->big[i] == NULL) {
            k = (int)i;
            break;
        }
        if (t->big_cap[i] <= cap && (k < 0 || t->big_cap[i] < t->big_cap[k])) {
            k = (int)i;
        }
    }
    if (k < 0) {
        return 0;
    }
    tt_free(t->big[k]);
    t->big[k] = data;
    t->big_cap[k] = cap;
    t->big_at[k] = tt_now_coarse_ns();
    if (!tt_timer_armed(&t->big_tmr)) {
        tt_timer_arm(&t->loop, &t->big_tmr, t->big_at[k] + BIG_KEEP_NS);
    }
    return 1;
}

/* Give b storage from the thread's spare buffers when it has none, or
 * when it must grow past TT_IOBUF. */
tether_err
tt_srv_buf_prepare(iothr *t, tt_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra) {
        return TETHER_OK;
    }
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
    if (take_big(t, b, extra)) {
        return TETHER_OK;
    }
    return tt_buf_reserve(b, extra);
}

/* Return an empty buffer's storage to the thread (idle connections hold
 * no buffers): TT_IOBUF ones to the spares, larger ones (the largest)
 * to the big spares for BIG_KEEP_NS. */
void
tt_srv_buf_release(iothr *t, tt_buf *b)
{
    if (b->data == NULL) {
        return;
    }
    if (b->cap == TT_IOBUF && t->nbufs < (int)(sizeof t->bufs / sizeof t->bufs[0])) {
        t->bufs[t->nbufs++] = b->data;
    } else if (b->cap <= TT_IOBUF || !keep_big(t, b->data, b->cap)) {
        tt_free(b->data);
    }
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

void
tt_srv_big_expire(tt_timer *tm)
{
    iothr *t = (iothr *)((char *)tm - offsetof(iothr, big_tmr));
    uint64_t now = tt_now_coarse_ns(), next = 0;
    for (size_t i = 0; i < NBIG; i++) {
        if (t->big[i] == NULL) {
            continue;
        }
        uint64_t due = t->big_at[i] + BIG_KEEP_NS;
        if (now >= due) {
            tt_free(t->big[i]);
            t->big[i] = NULL;
            t->big_cap[i] = 0;
        } else if (next == 0 || due < next) {
            next = due;
        }
    }
    if (next != 0) {
        tt_timer_arm(&t->loop, &t->big_tmr, next);
    }
}

void
tt_srv_mark_dirty(conn *c)
{
    if (!c->in_dirty && !c->closed) {
        c->in_dirty = 1;
        c->dirty_next = c->t->dirty;
        c->t->dirty = c;
    }
}

static void
update_events(conn *c)
{
    unsigned ev = 0;
    if (!c->paused && !c->starved) {
        ev |= TT_EV_READ;
    }
    if (tt_buf_size(&c->out) > 0 || (c->tls != NULL && tt_tls_wants_write(c->tls))) {
        ev |= TT_EV_WRITE;
    }
    tt_loop_mod(&c->t->loop, &c->io, ev);
}

static void
conn_flush(conn *c)
{
    while (tt_buf_size(&c->out) > 0) {
        ssize_t n = conn_send(c, tt_buf_head(&c->out), tt_buf_size(&c->out), 0);
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
        tt_srv_conn_close(c);
        return;
    }
    size_t left = tt_buf_size(&c->out);
    if (left == 0) {
        tt_srv_buf_release(c->t, &c->out);
    }
    if (!c->paused && left > OUT_HIGH) {
        c->paused = 1;
    } else if (c->paused && left < OUT_LOW) {
        c->paused = 0;
        update_events(c);
        if (c->tls != NULL && !c->starved && tt_tls_pending(c->tls)) {
            tls_read(c); /* decrypted bytes the poller does not know of */
        }
        return;
    }
    update_events(c);
}

void
tt_srv_conn_send_body(conn *c, const void *body, size_t len)
{
    tether_err rc = tt_sock_send_with(c->io.fd, &c->out, body, len, NULL);
    if (rc == TETHER_ENOMEM) {
        tt_srv_conn_close(c); /* the frame's header went, its body cannot */
    }
    /* Anything left (and a failed socket) is the next flush's. */
}

void
tt_srv_flush_dirty(iothr *t)
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

static void
conn_free(conn *c)
{
    tt_srv_buf_release(c->t, &c->in);
    tt_srv_buf_release(c->t, &c->out);
    tt_free(c->peer_subject);
    tt_free(c);
}

void
tt_srv_conn_unref(conn *c)
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

void
tt_srv_conn_close(conn *c)
{
    if (c->closed) {
        return;
    }
    iothr *t = c->t;
    c->closed = 1;
    /* Nobody waits for the answers any more: tell the handlers. */
    for (struct tether_call *call = c->calls; call != NULL; call = call->next) {
        tt_srv_call_cancel_notify(call, TETHER_ECANCELED);
    }
    tt_loop_del(&t->loop, &c->io);
    tt_tls_free(c->tls); /* its close_notify goes before the close */
    c->tls = NULL;
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
    if (tt_timer_armed(&c->tmr)) {
        tt_timer_cancel(&t->loop, &c->tmr);
    }
    if (c->starved) {
        for (conn **pp = &t->starved; *pp != NULL; pp = &(*pp)->starved_next) {
            if (*pp == c) {
                *pp = c->starved_next;
                break;
            }
        }
        c->starved = 0;
    }
    in_release(c);
    tt_srv_buf_release(t, &c->out);
    if (c->cstate != NULL) {
        c->codec->fini(c->cstate);
        tt_free(c->cstate);
        c->cstate = NULL;
    }
    tt_srv_conn_unref(c);
}

/* Append a control message with enc (codecs that cannot say it: none). */
static void
put_control(conn *c, tether_err (*enc)(void *, tt_buf *))
{
    if (enc != NULL && !c->closed && tt_srv_buf_prepare(c->t, &c->out, 64) == TETHER_OK &&
        enc(c->cstate, &c->out) == TETHER_OK) {
        tt_srv_mark_dirty(c);
    }
}

/* A broken stream: tell the peer why where its codec can (best effort),
 * then close. */
void
tt_srv_conn_fail(conn *c, tether_err code, const char *why)
{
    tt_srv_bump(&c->t->st_proto);
    tt_log(TETHER_LOG_DEBUG, "closing connection: %s", why);
    if (c->codec != NULL && c->codec->encode_conn_error != NULL &&
        tt_srv_buf_prepare(c->t, &c->out, 64 + strlen(why)) == TETHER_OK) {
        c->codec->encode_conn_error(c->cstate, &c->out, code, why);
    }
    if (tt_buf_size(&c->out) > 0) {
        ssize_t n = conn_send(c, tt_buf_head(&c->out), tt_buf_size(&c->out), MSG_DONTWAIT);
        (void)n;
    }
    tt_srv_conn_close(c);
}

void
tt_srv_answer_error(conn *c, uint64_t seq, const char *method, size_t method_len,
                    tether_err code, const char *text)
{
    tt_srv_bump(&c->t->st_failed);
    if (c->closed) {
        return;
    }
    size_t len = strlen(text);
    tt_answer a = {.seq = seq, .method = method, .method_len = method_len, .status = code,
                   .data = text, .len = len};
    /* Without memory the answer is lost and the caller times out. */
    if (tt_srv_buf_prepare(c->t, &c->out, 64 + method_len + len) == TETHER_OK) {
        c->codec->encode_answer(c->cstate, &c->out, &a);
        tt_srv_mark_dirty(c);
    }
}

/* Pick the codec from the first bytes: 1 chosen, 0 need more, -1 closed. */
static int
pick_codec(conn *c, const uint8_t *p, size_t n)
{
    const tt_codec_ops *pick = NULL;
    int undecided = 0;
    for (size_t i = 0; i < sizeof codecs / sizeof codecs[0] && pick == NULL; i++) {
        int r = codecs[i]->probe(p, n);
        if (r > 0) {
            pick = codecs[i];
        } else if (r < 0) {
            undecided = 1;
        }
    }
    if (pick == NULL) {
        if (undecided && n < PROBE_MAX) {
            return 0;
        }
        tt_srv_conn_fail(c, TETHER_EPROTO,
                         c->tls == NULL && tt_tls_detect(p, n)
                             ? "rpc: a TLS connection, but this server has no TLS certificate "
                               "configured"
                             : "rpc: unknown protocol (not tether, gob or jsonrpc)");
        return -1;
    }
    void *st = tt_calloc(1, pick->state_size);
    tether_err rc = st != NULL ? pick->init(st, c->t->srv->cfg.max_frame_size) : TETHER_ENOMEM;
    if (rc != TETHER_OK) {
        tt_free(st);
        tt_srv_conn_fail(c, rc, "rpc: server out of memory");
        return -1;
    }
    c->codec = pick;
    c->cstate = st;
    if (atomic_load(&c->t->srv->state) == SRV_DRAINING && !c->goaway_sent) {
        /* Connected while we drain: "going away" at once, where the codec
         * can say it (Go's cannot: their calls get the error instead). */
        put_control(c, pick->encode_goaway);
        c->goaway_sent = 1;
    }
    return 1;
}

/* Limits a peer runs into are logged at WARN through a gate (a flood of
 * bad connections must not flood the log). */
static void
log_limit(const conn *c, const char *why)
{
    static tt_log_gate lg;
    unsigned long dropped;
    if (tt_log_gate_pass(&lg, &dropped)) {
        tt_log(TETHER_LOG_WARN, "%s connection closed at a limit: %s (%lu more not logged)",
               c->codec->name, why, dropped);
    }
}

/* The stream cannot be decoded any further: say why and close. */
static void
stream_broken(conn *c, tether_err rc)
{
    char why[256];
    const char *detail = c->codec->last_error(c->cstate);
    snprintf(why, sizeof why, "rpc: broken %s stream: %s", c->codec->name,
             detail[0] != '\0' ? detail : tether_strerror(rc));
    if (rc == TETHER_ELIMIT || rc == TETHER_EMSGSIZE) {
        log_limit(c, why);
    }
    tt_srv_conn_fail(c, rc, why);
}

/* The caller gave up on seq: tell the handler, drop its answer.  Calls in
 * flight per connection are bounded (max_inflight_per_conn) and cancels
 * rare, so a walk of the list is enough. */
static void
cancel_seq(conn *c, uint64_t seq)
{
    for (struct tether_call *call = c->calls; call != NULL; call = call->next) {
        if (call->seq == seq) {
            tt_srv_call_cancel(call, TETHER_ECANCELED, 0, NULL);
            return;
        }
    }
}

/* Decode and act on every complete message in p[0..n); returns the bytes
 * used (the rest waits in c->in for more). */
static size_t
process(conn *c, const uint8_t *p, size_t n)
{
    c->need = 0;
    if (c->codec == NULL) {
        int r = pick_codec(c, p, n);
        if (r <= 0) {
            return r == 0 ? 0 : n;
        }
    }
    const tt_codec_ops *ops = c->codec;
    size_t off = 0;
    unsigned calls = 0;
    while (off < n && !c->closed) {
        tt_rpc_msg m;
        memset(&m, 0, sizeof m);
        size_t used = 0;
        /* After EAGAIN the codec sees the same bytes again plus more. */
        tether_err rc = ops->decode_request(c->cstate, p + off, n - off, &used, &m);
        if (rc == TETHER_EAGAIN) {
            c->need = m.need;
            break;
        }
        if (rc != TETHER_OK) {
            stream_broken(c, rc);
            return n;
        }
        off += used;
        switch (m.kind) {
        case TT_MSG_CALL:
            if (m.method != NULL) {
                tt_srv_start_call(c, &m);
                if (++calls % TT_SOCK_FLUSH_BATCH == 0 && off < n && c->in_dirty && !c->closed &&
                    atomic_load_explicit(&c->t->nconns, memory_order_relaxed) == 1) {
                    /* The thread's only connection (TT_SOCK_FLUSH_BATCH). */
                    conn_flush(c);
                }
            } else if (used == 0) {
                goto done; /* nothing consumed, nothing decoded: wait for more */
            }
            break; /* without a method: gob type definitions, whitespace */
        case TT_MSG_PING:
            if (ops->encode_pong != NULL && tt_srv_buf_prepare(c->t, &c->out, 64) == TETHER_OK &&
                ops->encode_pong(c->cstate, &c->out, m.seq) == TETHER_OK) {
                tt_srv_mark_dirty(c);
            }
            break;
        case TT_MSG_CANCEL:
            cancel_seq(c, m.seq);
            break;
        case TT_MSG_NOP:
            break;
        default:
            tt_srv_conn_fail(c, TETHER_EPROTO, "rpc: unexpected message from client");
            return n;
        }
    }
done:
    /* What stays unconsumed waits in the connection's input buffer: cap it,
     * so a peer cannot park more than one message (plus headers) there. */
    if (!c->closed && n - off > c->t->srv->cfg.max_frame_size + IN_SLACK) {
        char why[160];
        snprintf(why, sizeof why,
                 "rpc: broken %s stream: %zu bytes buffered without a complete request "
                 "(the limit is %zu)",
                 ops->name, n - off, c->t->srv->cfg.max_frame_size + IN_SLACK);
        log_limit(c, why);
        tt_srv_conn_fail(c, TETHER_EMSGSIZE, why);
        return n;
    }
    return off;
}

/* --- The input budget (max_input_buffered) and the partial and idle
 * timeouts.  Incomplete messages are what a peer can make us hold, so
 * their buffers are counted per thread; a connection whose next buffer
 * would pass the thread's share stops being read (its peer's sends then
 * block in TCP) until another connection's buffer goes.  A message begun
 * must be finished within partial_timeout_ms: together the two bound what
 * slow or stalled senders can hold, in bytes and in time. --- */

static void
resume_starved(iothr *t)
{
    while (t->starved != NULL) {
        conn *c = t->starved;
        t->starved = c->starved_next;
        c->starved_next = NULL;
        c->starved = 0;
        if (!c->closed) {
            update_events(c); /* level-triggered: pending bytes wake it */
            if (c->tls != NULL && !c->paused && tt_tls_pending(c->tls)) {
                tls_read(c); /* ...but not those OpenSSL holds */
            }
        }
    }
}

/* Count c->in's storage as it is now in the thread's budget. */
static void
in_account(conn *c)
{
    iothr *t = c->t;
    size_t now = c->in.cap;
    size_t was = c->in_held;
    t->in_bytes = t->in_bytes - was + now;
    c->in_held = now;
    if (now < was && t->starved != NULL) {
        resume_starved(t);
    }
}

/* May c's input buffer grow to cap bytes?  Else c stops being read. */
static int
in_allowed(conn *c, size_t cap)
{
    iothr *t = c->t;
    if (cap <= c->in.cap || t->in_bytes - c->in_held + cap <= t->in_budget ||
        t->in_bytes == c->in_held) {
        return 1; /* within budget, or the only holder: it may finish */
    }
    if (!c->starved) {
        c->starved = 1;
        c->starved_next = t->starved;
        t->starved = c;
        tt_srv_bump(&t->st_in_paused);
        update_events(c);
    }
    return 0;
}

static void
in_release(conn *c)
{
    tt_srv_buf_release(c->t, &c->in);
    c->partial_since = 0;
    in_account(c);
}

static uint64_t
ms_ns(uint32_t ms)
{
    return (uint64_t)ms * 1000000u;
}

/* Arm c's timer for when its next timeout could fall due. */
static void
conn_timer_arm(conn *c, uint64_t now)
{
    const tether_server_config *cfg = &c->t->srv->cfg;
    uint64_t due = UINT64_MAX;
    if (c->partial_since != 0 && cfg->partial_timeout_ms != TETHER_NO_TIMEOUT) {
        due = c->partial_since + ms_ns(cfg->partial_timeout_ms);
    }
    if (cfg->idle_timeout_ms != 0 && cfg->idle_timeout_ms != TETHER_NO_TIMEOUT) {
        uint64_t d = c->last_active + ms_ns(cfg->idle_timeout_ms);
        if (d <= now) {
            d = now + ms_ns(cfg->idle_timeout_ms); /* busy now: look again later */
        }
        due = d < due ? d : due;
    }
    if (due != UINT64_MAX) {
        /* The coarse clock may lag: never fire early. */
        tt_timer_arm(&c->t->loop, &c->tmr, due + tt_coarse_step_ns());
    }
}

static void
on_conn_timer(tt_timer *tm)
{
    conn *c = (conn *)((char *)tm - offsetof(conn, tmr));
    if (c->closed) {
        return;
    }
    if (c->tls_setup == 2) { /* TLS_LINGER: the failed handshake's time is up */
        tt_srv_conn_close(c);
        return;
    }
    const tether_server_config *cfg = &c->t->srv->cfg;
    uint64_t now = tt_now_coarse_ns();
    if (c->partial_since != 0 && cfg->partial_timeout_ms != TETHER_NO_TIMEOUT &&
        now >= c->partial_since + ms_ns(cfg->partial_timeout_ms)) {
        char why[160];
        snprintf(why, sizeof why,
                 "rpc: a message was begun and not finished within %u ms (partial_timeout_ms)",
                 (unsigned)cfg->partial_timeout_ms);
        tt_srv_bump(&c->t->st_partial_to);
        if (c->codec != NULL) {
            log_limit(c, why);
        }
        tt_srv_conn_fail(c, TETHER_ETIMEDOUT, why);
        return;
    }
    if (cfg->idle_timeout_ms != 0 && cfg->idle_timeout_ms != TETHER_NO_TIMEOUT &&
        c->inflight == 0 && c->partial_since == 0 && tt_buf_size(&c->out) == 0 &&
        now >= c->last_active + ms_ns(cfg->idle_timeout_ms)) {
        tt_srv_bump(&c->t->st_idle_closed);
        tt_log(TETHER_LOG_DEBUG, "closing a connection idle for %u ms", (unsigned)cfg->idle_timeout_ms);
        tt_srv_conn_close(c);
        return;
    }
    conn_timer_arm(c, now);
}

/* c->in now holds an incomplete message: start its clock. */
static void
partial_begin(conn *c)
{
    if (c->partial_since == 0) {
        c->partial_since = tt_now_coarse_ns();
        if (c->t->srv->cfg.partial_timeout_ms != TETHER_NO_TIMEOUT) {
            conn_timer_arm(c, c->partial_since);
        }
    }
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
        if (!in_allowed(c, held + want)) {
            return; /* not read until the thread's input budget frees */
        }
        if (tt_srv_buf_prepare(t, &c->in, want) != TETHER_OK) {
            tt_srv_conn_fail(c, TETHER_ENOMEM, "rpc: server out of memory");
            return;
        }
        in_account(c);
        ssize_t r = conn_recv(c, c->in.data + c->in.len, c->in.cap - c->in.len);
        if (r <= 0) {
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                return;
            }
            tt_srv_conn_close(c);
            return;
        }
        c->in.len += (size_t)r;
        if (c->t->srv->cfg.idle_timeout_ms != 0) {
            c->last_active = tt_now_coarse_ns();
        }
        size_t used = process(c, tt_buf_head(&c->in), tt_buf_size(&c->in));
        if (c->closed) {
            return;
        }
        tt_buf_consume(&c->in, used);
        if (tt_buf_size(&c->in) == 0) {
            in_release(c);
        } else if (used > 0) {
            /* A message finished, the next one began: its own clock. */
            c->partial_since = 0;
            partial_begin(c);
        }
        return;
    }
    ssize_t r = conn_recv(c, t->scratch, TT_IOBUF);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        tt_srv_conn_close(c);
        return;
    }
    if (c->t->srv->cfg.idle_timeout_ms != 0) {
        c->last_active = tt_now_coarse_ns();
    }
    size_t used = process(c, t->scratch, (size_t)r);
    if (!c->closed && used < (size_t)r) {
        /* Keep the incomplete tail for the next read (a thread spare, or
         * the tail's size: within one read, so within the budget's slack). */
        size_t rest = (size_t)r - used;
        if (tt_srv_buf_prepare(t, &c->in, rest) != TETHER_OK ||
            tt_buf_append(&c->in, t->scratch + used, rest) != TETHER_OK) {
            tt_srv_conn_fail(c, TETHER_ENOMEM, "rpc: server out of memory");
            return;
        }
        in_account(c);
        partial_begin(c);
    }
}

static void refuse(int fd, tether_err code, const char *why);

/* tls_setup values: 1 first bytes or handshake awaited; TLS_LINGER the
 * handshake failed and the client is given time to read the alert. */
#define TLS_LINGER 2
#define TLS_LINGER_MS 2000u

/* The last word (a TLS alert, or the refusal of plaintext) is sent.
 * Closing now would answer bytes the client sent or still sends (TLS 1.3
 * clients send requests before they hear the verdict) with a reset, which
 * can overtake that word: so c lingers a while, reading and dropping,
 * until the client closes (TLS_LINGER_MS at most). */
static void
linger(conn *c)
{
    shutdown(c->io.fd, SHUT_WR);
    c->tls_setup = TLS_LINGER;
    tt_loop_mod(&c->t->loop, &c->io, TT_EV_READ);
    tt_timer_arm(&c->t->loop, &c->tmr, tt_now_ns() + TLS_LINGER_MS * 1000000ull);
}

/* The first bytes of a connection to a TLS server, then its handshake:
 * 1 when plaintext or decrypted bytes may be read now, 0 when not (waiting
 * for the peer, or c was closed). */
static int
tls_setup_step(conn *c)
{
    tether_server *srv = c->t->srv;
    if (c->tls_setup == TLS_LINGER) {
        uint8_t sink[4096];
        ssize_t r;
        for (int i = 0; i < 16 && (r = recv(c->io.fd, sink, sizeof sink, 0)) > 0; i++) {
        }
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            tt_srv_conn_close(c);
        }
        return 0;
    }
    if (c->tls == NULL) {
        uint8_t p[6];
        ssize_t r = recv(c->io.fd, p, sizeof p, MSG_PEEK);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            return 0;
        }
        if (r <= 0) {
            tt_srv_conn_close(c);
            return 0;
        }
        if (!tt_tls_detect(p, (size_t)r)) {
            if (tt_tls_ctx_allow_plaintext(srv->tls)) {
                c->tls_setup = 0;
                return 1;
            }
            static tt_log_gate lg;
            unsigned long dropped;
            if (tt_log_gate_pass(&lg, &dropped)) {
                tt_log(TETHER_LOG_WARN,
                       "plaintext connection refused: this server requires TLS (%lu more not "
                       "logged)",
                       dropped);
            }
            if (tt_codec_native.probe(p, (size_t)r) > 0) {
                /* Only tether's framing can say why; Go's clients just
                 * see the close. */
                refuse(c->io.fd, TETHER_ETLS,
                       "rpc: this server requires TLS: plaintext connections are refused");
            }
            tt_srv_bump(&c->t->st_proto);
            linger(c);
            return 0;
        }
        if (tt_tls_new(srv->tls, c->io.fd, NULL, 0, &c->tls) != TETHER_OK) {
            tt_srv_conn_close(c);
            return 0;
        }
        partial_begin(c); /* a handshake must finish like a message */
    }
    int h = tt_tls_handshake(c->tls);
    if (h == TT_TLS_WANT_READ || h == TT_TLS_WANT_WRITE) {
        tt_loop_mod(&c->t->loop, &c->io, h == TT_TLS_WANT_WRITE ? TT_EV_WRITE : TT_EV_READ);
        return 0;
    }
    if (h != TT_TLS_DONE) {
        tt_srv_bump(&c->t->st_proto); /* logged by tls.c */
        linger(c);
        return 0;
    }
    c->tls_setup = 0;
    c->partial_since = 0;
    char subj[512];
    if (tt_tls_peer_subject(c->tls, subj, sizeof subj) == TETHER_OK) {
        c->peer_subject = tt_strdup(subj);
    }
    update_events(c);
    return 1;
}

/* Read a TLS connection until OpenSSL holds nothing the poller would not
 * announce (a read that filled its buffer may leave decrypted bytes). */
static void
tls_read(conn *c)
{
    conn_read(c);
    for (int i = 0; i < 64 && !c->closed && !c->paused && !c->starved && c->tls != NULL &&
                    tt_tls_pending(c->tls);
         i++) {
        conn_read(c);
    }
}

static void
on_conn(tt_io *io, unsigned events)
{
    conn *c = (conn *)io;
    if (c->closed) {
        return;
    }
    if (c->tls_setup) {
        if (tls_setup_step(c)) {
            if (c->tls != NULL) {
                tls_read(c);
            } else {
                conn_read(c);
            }
        }
        return;
    }
    if (c->tls != NULL) {
        if (events & TT_EV_WRITE) {
            conn_flush(c);
        }
        if (!c->closed && (events & (TT_EV_READ | TT_EV_ERROR) || tt_tls_wants_write(c->tls)) &&
            !c->paused && !c->starved) {
            tls_read(c);
        } else if (!c->closed && (events & TT_EV_ERROR)) {
            tt_srv_conn_close(c);
        }
        return;
    }
    if (events & TT_EV_WRITE) {
        conn_flush(c);
        if (c->closed) {
            return;
        }
    }
    if (events & (TT_EV_READ | TT_EV_ERROR)) {
        if (!c->paused && !c->starved) {
            conn_read(c);
        } else if (events & TT_EV_ERROR) {
            tt_srv_conn_close(c);
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
        c->tls_setup = t->srv->tls != NULL;
        tt_timer_init(&c->tmr, on_conn_timer);
    }
    if (c == NULL || tt_loop_add(&t->loop, &c->io, TT_EV_READ) != TETHER_OK) {
        close(fd);
        tt_free(c);
        atomic_fetch_sub(&t->nconns, 1);
        return;
    }
    TT_DLIST_PUSH(&t->conns, c);
    atomic_fetch_add(&t->srv->nconns, 1);
    tt_srv_bump(&t->st_accepted);
    if (t->srv->cfg.idle_timeout_ms != 0 && t->srv->cfg.idle_timeout_ms != TETHER_NO_TIMEOUT) {
        c->last_active = tt_now_coarse_ns();
        conn_timer_arm(c, c->last_active);
    }
    /* While draining, "going away" is sent once the first bytes show the
     * codec (pick_codec). */
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
    iothr *t = tt_srv_tls;
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

/* A connection over the limit is told why in tether's own framing, the
 * only one with a connection-level error (a Go client just sees the
 * close); rare enough to pay for a codec state. */
static void
refuse(int fd, tether_err code, const char *why)
{
    const tt_codec_ops *ops = &tt_codec_native;
    void *st = tt_calloc(1, ops->state_size);
    tt_buf b = {0};
    if (st != NULL && ops->init(st, 4096) == TETHER_OK &&
        ops->encode_conn_error(st, &b, code, why) == TETHER_OK) {
        ssize_t w = send(fd, tt_buf_head(&b), tt_buf_size(&b), MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
    }
    if (st != NULL) {
        ops->fini(st);
    }
    tt_free(st);
    tt_buf_free(&b);
}

#define ACCEPT_BACKOFF_MIN_MS 10
#define ACCEPT_BACKOFF_MAX_MS 1000

/* The listeners are level-triggered: out of descriptors, a pending
 * connection would wake the thread again at once, for ever.  So this
 * thread stops watching them for a while (10 ms, doubling up to 1 s while
 * it lasts); the connections wait in the kernel's backlog meanwhile. */
static void
accept_pause(iothr *t, int err)
{
    static tt_log_gate lg;
    unsigned long dropped;
    tt_srv_bump(&t->st_fd_exhausted);
    if (tt_log_gate_pass(&lg, &dropped)) {
        tt_log(TETHER_LOG_WARN,
               "accept: %s: not accepting for a while (raise the descriptor limit, "
               "ulimit -n, or lower max_connections; %lu more not logged)",
               err == EMFILE ? "out of file descriptors (EMFILE)"
                             : "the system is out of file descriptors (ENFILE)",
               dropped);
    }
    if (t->accept_paused) {
        return;
    }
    t->accept_paused = 1;
    for (int i = 0; i < t->srv->nlisteners; i++) {
        tt_loop_del(&t->loop, &t->lios[i]);
    }
    uint32_t ms = t->accept_backoff_ms == 0 ? ACCEPT_BACKOFF_MIN_MS : t->accept_backoff_ms * 2;
    t->accept_backoff_ms = ms > ACCEPT_BACKOFF_MAX_MS ? ACCEPT_BACKOFF_MAX_MS : ms;
    tt_timer_arm(&t->loop, &t->accept_tmr, tt_now_ns() + (uint64_t)t->accept_backoff_ms * 1000000u);
}

void
tt_srv_accept_resume(tt_timer *tm)
{
    iothr *t = (iothr *)((char *)tm - offsetof(iothr, accept_tmr));
    if (!t->accept_paused) {
        return;
    }
    t->accept_paused = 0;
    if (!t->accepting) {
        return; /* stopped meanwhile: the listeners stay off */
    }
    for (int i = 0; i < t->srv->nlisteners; i++) {
        tt_loop_add(&t->loop, &t->lios[i], TT_EV_READ | TT_EV_EXCLUSIVE);
    }
}

void
tt_srv_on_listener(tt_io *io, unsigned events)
{
    (void)events;
    iothr *t = tt_srv_tls;
    tether_server *srv = t->srv;
    /* Take a bounded batch so one busy listener cannot starve the rest. */
    for (int i = 0; i < 64 && t->accepting; i++) {
        tt_addr peer;
        peer.len = sizeof peer.ss;
        int fd =
            accept4(io->fd, (struct sockaddr *)&peer.ss, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                accept_pause(t, errno);
            }
            return;
        }
        t->accept_backoff_ms = 0;
        if ((uint64_t)atomic_load(&srv->nconns) >= srv->cfg.max_connections) {
            refuse(fd, TETHER_ELIMIT, "rpc: too many connections");
            close(fd);
            tt_srv_bump(&t->st_proto);
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

#define TASK_THR(task, field) ((iothr *)((char *)(task)-offsetof(iothr, field)))

void
tt_srv_task_goaway(tt_task *task)
{
    iothr *t = TASK_THR(task, t_goaway);
    for (conn *c = t->conns; c != NULL; c = c->next) {
        if (!c->goaway_sent && c->codec != NULL) {
            put_control(c, c->codec->encode_goaway);
            c->goaway_sent = 1;
        }
    }
}

void
tt_srv_task_stop_accept(tt_task *task)
{
    iothr *t = TASK_THR(task, t_stop_accept);
    t->accepting = 0;
    if (tt_timer_armed(&t->accept_tmr)) {
        tt_timer_cancel(&t->loop, &t->accept_tmr);
    }
    if (!t->accept_paused) {
        for (int i = 0; i < t->srv->nlisteners; i++) {
            tt_loop_del(&t->loop, &t->lios[i]);
        }
    }
    t->accept_paused = 0;
}

/* The drain step asks each thread, on the thread itself, whether it is
 * idle: a thread's own count is exact there, so a last call that finished
 * just before the stop began is not missed (the control thread, reading
 * the counters from outside, could see a stale one). */
void
tt_srv_task_drain_check(tt_task *task)
{
    iothr *t = TASK_THR(task, t_drain_check);
    if (atomic_load_explicit(&t->inflight, memory_order_relaxed) == 0) {
        tt_srv_report_drained(t);
    }
}

void
tt_srv_task_cancel(tt_task *task)
{
    iothr *t = TASK_THR(task, t_cancel);
    for (conn *c = t->conns; c != NULL; c = c->next) {
        for (struct tether_call *call = c->calls; call != NULL; call = call->next) {
            tt_srv_call_cancel(call, TETHER_ECANCELED, 1,
                        "rpc: call canceled: the server stopped before it finished");
        }
    }
}

void
tt_srv_task_stop(tt_task *task)
{
    iothr *t = TASK_THR(task, t_stop);
    t->stop = 1;
}

void
tt_srv_reap(iothr *t)
{
    while (t->reap != NULL) {
        conn *c = t->reap;
        t->reap = c->reap_next;
        conn_free(c);
    }
}
