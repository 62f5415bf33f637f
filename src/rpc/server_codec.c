/*
 * server_codec.c - serving Go's net/rpc codecs (gob, jsonrpc) on the same
 * listener as the native protocol.
 *
 * A connection whose first byte is not the native preface's 0xF5 comes
 * here: the codecs' probes pick jsonrpc or gob (anything else is closed),
 * and from then on every read goes through the codec's decode_request.
 * A request is looked up, its body unpacked with the method's input
 * descriptor, and the call started exactly like a native one (same call
 * object, inline or on the worker pool, same counters and drain rules).
 *
 * Codec state belongs to the connection and is touched only on its I/O
 * thread: an answer made there is encoded straight into the connection's
 * output; an answer made on another thread travels home as a native frame
 * (call->ans, built by server.c) and is unpacked and re-encoded here.  The
 * native path never comes through this file.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "codec/gob/gob.h"
#include "codec/jsonrpc/jsonrpc.h"
#include "codec/native/frame.h"
#include "core/alloc.h"
#include "core/log.h"
#include "rpc/server_int.h"

/* Probe order: jsonrpc's test ('{' after whitespace) is the cheaper one. */
static const tt_codec_ops *const codecs[] = {&tt_codec_jsonrpc, &tt_codec_gob};

/* A client that has sent this much without showing its protocol (only
 * whitespace, say) is not one we speak. */
#define PROBE_MAX 4096

/* Room reserved in the output before an encode: the codecs grow the buffer
 * themselves, this only makes it start from one of the thread's spares. */
#define OUT_MIN 512

/* Bytes a codec connection may hold unconsumed beyond the message limit:
 * a request's header and type definitions travel in front of its body, so
 * the buffer may hold a little more than one message (docs/codecs.md). */
#define IN_SLACK (64 * 1024)

static inline void
cbump(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static const char *
last_error(const conn *c)
{
    const char *t = c->codec == &tt_codec_jsonrpc ? tt_jsonrpc_last_error(c->cstate)
                                                  : tt_gob_last_error(c->cstate);
    return t != NULL && t[0] != '\0' ? t : "rpc: cannot decode the request";
}

void
tt_server_codec_error(conn *c, uint64_t seq, const char *method, size_t method_len,
                      tether_err code, const char *text)
{
    if (c->closed || c->cstate == NULL) {
        return;
    }
    cbump(&c->t->st_failed);
    if (tt_server_out_reserve(c, OUT_MIN + method_len + strlen(text)) != TETHER_OK) {
        return; /* the client times out; nothing better to do without memory */
    }
    tether_err rc = c->codec->encode_error(c->cstate, &c->out, seq, method, method_len, code, text);
    if (rc != TETHER_OK) {
        tt_log(TETHER_LOG_WARN, "%s: cannot encode an error reply: %s", c->codec->name,
               tether_strerror(rc));
    }
    tt_server_mark_dirty(c);
}

/* One decoded request: the same checks and the same call object as a
 * native request (server.c start_call). */
static void
start_call(conn *c, const tt_rpc_msg *m)
{
    iothr *t = c->t;
    tether_server *srv = t->srv;
    cbump(&t->st_started);
    if (atomic_load_explicit(&srv->state, memory_order_relaxed) == SRV_DRAINING) {
        tt_server_codec_error(c, m->seq, m->method, m->method_len, TETHER_EGOINGAWAY,
                              "rpc: server is going away");
        return;
    }
    char why[TT_FRAME_MAX_NAME + 64];
    tether_err code;
    const method_ent *me = tt_server_lookup(srv, m->method, m->method_len, &code, why, sizeof why);
    if (me == NULL) {
        /* Go reports the method before the params. */
        tt_server_codec_error(c, m->seq, m->method, m->method_len, code, why);
        return;
    }
    if (m->status != TETHER_OK) {
        char *text = tt_strndup(m->errtext != NULL ? m->errtext : "", m->errtext_len);
        tt_server_codec_error(c, m->seq, me->name, me->name_len, m->status,
                              text != NULL ? text : "rpc: bad request");
        tt_free(text);
        return;
    }
    if (c->inflight >= srv->cfg.max_inflight_per_conn) {
        tt_server_codec_error(c, m->seq, me->name, me->name_len, TETHER_ELIMIT,
                              "rpc: too many calls in flight on this connection");
        return;
    }
    if (me->md == NULL) {
        /* A raw method's bytes have no meaning in Go's encodings. */
        char text[TT_FRAME_MAX_NAME + 96];
        snprintf(text, sizeof text, "rpc: %s takes raw bytes: call it over tether's protocol",
                 me->name);
        tt_server_codec_error(c, m->seq, me->name, me->name_len, TETHER_EBADREQUEST, text);
        return;
    }
    ProtobufCMessage *req = NULL;
    tether_err rc = c->codec->unpack(c->cstate, me->md->input, m->body, m->body_len, &req);
    if (rc != TETHER_OK) {
        tt_server_codec_error(c, m->seq, me->name, me->name_len, TETHER_EBADREQUEST,
                              rc == TETHER_EBADREQUEST ? last_error(c) : tether_strerror(rc));
        return;
    }
    struct tether_call *call = tt_server_call_alloc(c, me, m->seq);
    if (call == NULL) {
        protobuf_c_message_free_unpacked(req, &tt_pb_allocator);
        tt_server_codec_error(c, m->seq, me->name, me->name_len, TETHER_ENOMEM,
                              "rpc: server out of memory");
        return;
    }
    call->req = req; /* unpacked by the codec with tt_pb_allocator */
    call->mt_out = 0;
    call->mt_in = (uint32_t)m->body_len; /* metrics: request bytes */
    tt_server_call_launch(c, call);
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
        /* Unknown bytes may still be a native client of another version:
         * conn_fail tells it why (codec is not set yet). */
        tt_server_conn_fail(c, TETHER_EPROTO, "rpc: unknown protocol (not tether, gob or jsonrpc)");
        return -1;
    }
    void *st = tt_calloc(1, pick->state_size);
    if (st == NULL) {
        tt_server_conn_fail(c, TETHER_ENOMEM, "rpc: server out of memory");
        return -1;
    }
    tether_err rc = pick->init(st, c->t->srv->cfg.max_frame_size);
    if (rc != TETHER_OK) {
        tt_free(st);
        tt_server_conn_fail(c, rc, "rpc: server out of memory");
        return -1;
    }
    c->codec = pick;
    c->cstate = st;
    return 1;
}

/* Limits a peer runs into are logged at WARN, at most once a second for
 * the whole process (a flood of bad connections must not flood the log);
 * the lines left out are counted and reported with the next one. */
static void
log_limit(const conn *c, const char *why)
{
    static _Atomic long last;
    static _Atomic unsigned long dropped;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    long now = (long)ts.tv_sec;
    long prev = atomic_load_explicit(&last, memory_order_relaxed);
    if (prev == now ||
        !atomic_compare_exchange_strong_explicit(&last, &prev, now, memory_order_relaxed,
                                                 memory_order_relaxed)) {
        atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
        return;
    }
    unsigned long d = atomic_exchange_explicit(&dropped, 0, memory_order_relaxed);
    tt_log(TETHER_LOG_WARN, "%s connection closed at a limit: %s (%lu more not logged)",
           c->codec->name, why, d);
}

/* The codec's own words for a broken stream, when it has some. */
static const char *
stream_error(const conn *c)
{
    const char *t = c->codec == &tt_codec_jsonrpc ? tt_jsonrpc_last_error(c->cstate)
                                                  : tt_gob_last_error(c->cstate);
    return t != NULL && t[0] != '\0' ? t : NULL;
}

size_t
tt_server_codec_process(conn *c, const uint8_t *p, size_t n)
{
    if (c->codec == NULL) {
        int r = pick_codec(c, p, n);
        if (r <= 0) {
            c->need = 0;
            return r == 0 ? 0 : n;
        }
    }
    size_t off = 0;
    c->need = 0;
    while (off < n && !c->closed) {
        tt_rpc_msg m;
        memset(&m, 0, sizeof m);
        size_t used = 0;
        /* After EAGAIN the codec sees the same bytes again plus more: the
         * unused tail stays in c->in and the next read appends to it. */
        tether_err rc = c->codec->decode_request(c->cstate, p + off, n - off, &used, &m);
        if (rc == TETHER_EAGAIN) {
            break;
        }
        if (rc != TETHER_OK) {
            char why[256];
            const char *detail = stream_error(c);
            snprintf(why, sizeof why, "rpc: broken %s stream: %s%s%s", c->codec->name,
                     tether_strerror(rc), detail != NULL ? ": " : "",
                     detail != NULL ? detail : "");
            if (rc == TETHER_ELIMIT || rc == TETHER_EMSGSIZE) {
                log_limit(c, why);
            }
            tt_server_conn_fail(c, rc, why);
            return n;
        }
        off += used;
        if (m.method == NULL) {
            if (used == 0) {
                break; /* nothing consumed and nothing decoded: wait for more */
            }
            continue; /* gob type definitions, or whitespace */
        }
        start_call(c, &m);
    }
    /* What stays unconsumed waits in the connection's input buffer: cap it,
     * so a peer cannot park more than one message (plus headers) there. */
    size_t cap = c->t->srv->cfg.max_frame_size + IN_SLACK;
    if (!c->closed && n - off > cap) {
        char why[160];
        snprintf(why, sizeof why,
                 "rpc: broken %s stream: %zu bytes buffered without a complete request "
                 "(the limit is %zu)",
                 c->codec->name, n - off, cap);
        log_limit(c, why);
        tt_server_conn_fail(c, TETHER_EMSGSIZE, why);
        return n;
    }
    return off;
}

tether_err
tt_server_codec_answer(struct tether_call *call, int is_error, uint32_t status,
                       const ProtobufCMessage *msg, const void *data, size_t len)
{
    conn *c = call->c;
    const method_ent *me = call->m;
    if (c->closed || c->cstate == NULL) {
        return TETHER_OK;
    }
    tether_err rc = TETHER_OK;
    if (!is_error) {
        if (msg == NULL) {
            /* Raw replies cannot happen here (raw methods are refused
             * above); answer something Go understands all the same. */
            data = "rpc: raw reply over a Go codec";
            len = strlen(data);
            status = TETHER_EINTERNAL;
            rc = TETHER_EINVAL;
        } else {
            size_t before = c->out.len;
            rc = tt_server_out_reserve(c, OUT_MIN);
            if (rc == TETHER_OK) {
                rc = c->codec->encode_reply(c->cstate, &c->out, call->seq, me->name, me->name_len,
                                            msg);
            }
            if (rc == TETHER_OK) {
                tt_server_mark_dirty(c);
                return TETHER_OK;
            }
            c->out.len = c->out.len < before ? c->out.len : before;
            status = rc == TETHER_EMSGSIZE ? TETHER_EMSGSIZE : TETHER_EINTERNAL;
            data = rc == TETHER_EMSGSIZE ? "rpc: reply larger than the message limit"
                                         : "rpc: server cannot encode the reply";
            len = strlen(data);
            cbump(&c->t->st_failed); /* handler errors were counted by server.c */
        }
    }
    /* Error texts need a terminating NUL; small ones stay on the stack. */
    char small[256];
    char *text = len < sizeof small ? small : tt_malloc(len + 1);
    if (text == NULL) {
        text = small;
        len = sizeof small - 1;
    }
    memcpy(text, data, len);
    text[len] = '\0';
    if (tt_server_out_reserve(c, OUT_MIN + me->name_len + len) == TETHER_OK) {
        tether_err erc = c->codec->encode_error(c->cstate, &c->out, call->seq, me->name,
                                                me->name_len,
                                                status != 0 ? (tether_err)status : TETHER_EREMOTE,
                                                text);
        if (erc != TETHER_OK && rc == TETHER_OK) {
            rc = erc;
        }
        tt_server_mark_dirty(c);
    } else if (rc == TETHER_OK) {
        rc = TETHER_ENOMEM;
    }
    if (text != small) {
        tt_free(text);
    }
    return rc;
}

void
tt_server_codec_answer_home(struct tether_call *call)
{
    conn *c = call->c;
    const method_ent *me = call->m;
    tt_frame f;
    size_t need = 0;
    if (tt_buf_size(&call->ans) == 0 ||
        tt_frame_decode(tt_buf_head(&call->ans), tt_buf_size(&call->ans), SIZE_MAX, &f, &need) !=
            TETHER_OK) {
        /* call_answer could not build the frame: out of memory. */
        tt_server_codec_error(c, call->seq, me->name, me->name_len, TETHER_ENOMEM,
                              "rpc: server out of memory");
        return;
    }
    if (f.type != TT_FRAME_REPLY) {
        cbump(&c->t->st_failed);
        tt_server_codec_answer(call, 1, f.status, NULL, f.body, f.body_len);
        return;
    }
    /* The body is the reply packed by protobuf-c on the handler's thread:
     * unpack it here, where the codec state may be used. */
    ProtobufCMessage *msg = NULL;
    if (me->md != NULL) {
        msg = protobuf_c_message_unpack(me->md->output, &tt_pb_allocator, f.body_len, f.body);
    }
    if (msg == NULL) {
        tt_server_codec_error(c, call->seq, me->name, me->name_len, TETHER_EINTERNAL,
                              "rpc: server cannot encode the reply");
        return;
    }
    tt_server_codec_answer(call, 0, 0, msg, NULL, 0);
    protobuf_c_message_free_unpacked(msg, &tt_pb_allocator);
}

void
tt_server_codec_fini(conn *c)
{
    if (c->cstate != NULL) {
        c->codec->fini(c->cstate);
        tt_free(c->cstate);
        c->cstate = NULL;
    }
}
