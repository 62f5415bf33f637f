/*
 * native.c - tether's own frames (frame.h, docs/protocol.md) behind the
 * codec contract, both sides: for the client engine requests out and
 * replies and control frames in, for the server the reverse.  Native
 * frames carry protobuf bodies, or opaque bytes for raw methods, and
 * their call context (deadline, metadata, trailers) as frame entries, so
 * the codec keeps almost no per-connection state: the message limit, and
 * on the server whether the client's preface has been read.
 */
#include <stdio.h>
#include <string.h>

#include "codec/codec.h"
#include "codec/native/frame.h"
#include "codec/pbjson/pbutil.h"
#include "core/alloc.h"
#include "core/err.h"

typedef struct native_state {
    size_t max;      /* the message limit: no frame is larger */
    int preface_ok;  /* server: the client's preface has been read */
    const char *err; /* why the stream broke (static text, or errbuf) */
    char errbuf[128];
} native_state;

#define ST(state) ((native_state *)(state))

static tether_err
native_init(void *state, size_t max_msg)
{
    memset(state, 0, sizeof(native_state));
    ST(state)->max = max_msg;
    ST(state)->err = "";
    return TETHER_OK;
}

static void
native_fini(void *state)
{
    (void)state;
}

/* The error an ERROR frame's status stands for; a status that is no
 * tether_err (or says OK) is a protocol error. */
static tether_err
status_err(uint32_t status)
{
    return tt_err_on_wire((tether_err)status) ? (tether_err)status : TETHER_EPROTO;
}

static tether_err
native_decode_reply(void *state, const uint8_t *p, size_t n, size_t *used, tt_rpc_msg *m)
{
    tt_frame f;
    tether_err rc = tt_frame_decode(p, n, ST(state)->max, &f, NULL);
    if (rc != TETHER_OK) {
        return rc;
    }
    memset(m, 0, sizeof *m);
    *used = f.total;
    m->seq = f.seq;
    switch (f.type) {
    case TT_FRAME_REPLY:
        m->body = f.body;
        m->body_len = f.body_len;
        m->ctx = f.ctx;
        m->ctx_len = f.ctx_len;
        return TETHER_OK;
    case TT_FRAME_ERROR:
        m->kind = f.seq == 0 ? TT_MSG_CONN_ERROR : TT_MSG_CALL;
        m->status = status_err(f.status);
        m->errtext = (const char *)f.body;
        m->errtext_len = f.body_len;
        m->ctx = f.ctx;
        m->ctx_len = f.ctx_len;
        return TETHER_OK;
    case TT_FRAME_GOAWAY:
        m->kind = TT_MSG_GOAWAY;
        return TETHER_OK;
    case TT_FRAME_PING:
        /* A server does not ask clients for liveness; nothing to do. */
        m->kind = TT_MSG_NOP;
        return TETHER_OK;
    case TT_FRAME_PONG:
        m->kind = TT_MSG_PONG; /* the answer to the engine's probe */
        return TETHER_OK;
    default:
        return TETHER_EPROTO; /* requests and cancels never go to a client */
    }
}

/* A request without context.  later: leave the raw body's len bytes out
 * (the caller sends them next). */
static tether_err
put_request(void *state, tt_buf *out, uint64_t seq, const char *method, size_t mlen,
            const ProtobufCMessage *msg, const void *data, size_t len, int later)
{
    if (msg != NULL) {
        len = protobuf_c_message_get_packed_size(msg);
    }
    if (TT_FRAME_HDR + mlen + len > ST(state)->max) {
        return TETHER_EMSGSIZE;
    }
    later = later && msg == NULL;
    tether_err rc = tt_buf_reserve(out, TT_FRAME_HDR + mlen + (later ? 0 : len));
    if (rc != TETHER_OK) {
        return rc;
    }
    uint8_t *w = out->data + out->len;
    tt_frame_put_header(w, TT_FRAME_REQUEST, seq, 0, mlen, len);
    memcpy(w + TT_FRAME_HDR, method, mlen);
    out->len += TT_FRAME_HDR + mlen;
    if (msg != NULL) {
        protobuf_c_message_pack(msg, w + TT_FRAME_HDR + mlen);
        out->len += len;
    } else if (!later && data != NULL && len > 0) {
        memcpy(w + TT_FRAME_HDR + mlen, data, len);
        out->len += len;
    }
    return TETHER_OK;
}

static tether_err
native_encode_request(void *state, tt_buf *out, uint64_t seq, const char *method, size_t mlen,
                      const ProtobufCMessage *msg)
{
    return put_request(state, out, seq, method, mlen, msg, NULL, 0, 0);
}

/* A request with its context: the deadline always (every call has one),
 * then the metadata pairs in the caller's order. */
static tether_err
native_encode_call(void *state, tt_buf *out, uint64_t seq, const char *method, size_t mlen,
                   const ProtobufCMessage *msg, const void *data, size_t len,
                   const tt_call_ctx *ctx)
{
    /* Each string is measured once: the lengths of the first pairs are
     * kept for the copy below (a call rarely has more). */
    size_t lens[2 * 8];
    size_t clen = ctx->timeout_ms > 0 ? 7 : 0;
    for (size_t i = 0; i < ctx->nmeta; i++) {
        size_t kl = strlen(ctx->meta[i].key);
        size_t vl = strlen(ctx->meta[i].value);
        if (kl == 0 || kl + vl + 2 > 0xffff) {
            return TETHER_ELIMIT;
        }
        if (i < 8) {
            lens[2 * i] = kl;
            lens[2 * i + 1] = vl;
        }
        clen += tt_ctx_size_meta(kl, vl);
    }
    if (clen == 0) {
        return put_request(state, out, seq, method, mlen, msg, data, len, ctx->body_later);
    }
    if (clen > TT_CTX_MAX) {
        return TETHER_ELIMIT;
    }
    if (msg != NULL) {
        len = protobuf_c_message_get_packed_size(msg);
    }
    size_t total = TT_FRAME_HDR + mlen + 4 + clen + len;
    if (total > ST(state)->max) {
        return TETHER_EMSGSIZE;
    }
    int later = ctx->body_later && msg == NULL;
    tether_err rc = tt_buf_reserve(out, later ? total - len : total);
    if (rc != TETHER_OK) {
        return rc;
    }
    uint8_t *w = out->data + out->len;
    tt_frame_put_header_ctx(w, TT_FRAME_REQUEST, seq, 0, mlen, clen, len);
    memcpy(w + TT_FRAME_HDR, method, mlen);
    uint8_t *c = w + TT_FRAME_HDR + mlen + 4;
    if (ctx->timeout_ms > 0) {
        c += tt_ctx_put_deadline(c, ctx->timeout_ms);
    }
    for (size_t i = 0; i < ctx->nmeta; i++) {
        const char *k = ctx->meta[i].key;
        const char *v = ctx->meta[i].value;
        c += i < 8 ? tt_ctx_put_meta(c, k, lens[2 * i], v, lens[2 * i + 1])
                   : tt_ctx_put_meta(c, k, strlen(k), v, strlen(v));
    }
    if (msg != NULL) {
        protobuf_c_message_pack(msg, c);
    } else if (later) {
        total -= len; /* the caller sends the body */
    } else if (data != NULL && len > 0) {
        memcpy(c, data, len);
    }
    out->len += total;
    return TETHER_OK;
}

static tether_err
native_encode_cancel(void *state, tt_buf *out, uint64_t seq)
{
    (void)state;
    tether_err rc = tt_buf_reserve(out, TT_FRAME_HDR);
    if (rc == TETHER_OK) {
        tt_frame_put_header(out->data + out->len, TT_FRAME_CANCEL, seq, 0, 0, 0);
        out->len += TT_FRAME_HDR;
    }
    return rc;
}

static tether_err
native_encode_request_raw(void *state, tt_buf *out, uint64_t seq, const char *method, size_t mlen,
                          const void *data, size_t len)
{
    return put_request(state, out, seq, method, mlen, NULL, data, len, 0);
}

static tether_err
native_unpack(void *state, const ProtobufCMessageDescriptor *desc, const uint8_t *body, size_t len,
              ProtobufCMessage **out)
{
    *out = protobuf_c_message_unpack(desc, &tt_pb_allocator, len, body);
    if (*out == NULL) {
        ST(state)->err = "the reply does not decode as the method's reply type";
        return TETHER_EBADREPLY;
    }
    return TETHER_OK;
}

/* Server side: protobuf-c's unpack recurses without a limit, so a
 * recursive type gets its nesting checked first (flat types skip this). */
static tether_err
native_unpack_with(void *state, const ProtobufCMessageDescriptor *desc, const uint8_t *body,
                   size_t len, ProtobufCAllocator *alloc, ProtobufCMessage **out)
{
    native_state *s = state;
    if (tt_pb_static_depth(desc) > TT_PB_MAX_DEPTH &&
        tt_pb_check_depth(desc, body, len, TT_PB_MAX_DEPTH) != TETHER_OK) {
        *out = NULL;
        return TETHER_ELIMIT;
    }
    *out = protobuf_c_message_unpack(desc, alloc, len, body);
    s->err = "";
    return *out != NULL ? TETHER_OK : TETHER_EBADREQUEST;
}

static const char *
native_last_error(const void *state)
{
    return ST(state)->err;
}

/* --- Server side --- */

static int
native_probe(const uint8_t *p, size_t n)
{
    /* Every version's preface starts with this byte; the version itself is
     * checked by decode_request, which can say what is wrong. */
    (void)n;
    return p[0] == (uint8_t)TT_PREFACE[0];
}

static tether_err
broken(native_state *s, tether_err rc, const char *why)
{
    s->err = why;
    return rc;
}

static tether_err
read_preface(native_state *s, const uint8_t *p, size_t n, size_t *used, tt_rpc_msg *m)
{
    size_t k = n < TT_PREFACE_LEN ? n : TT_PREFACE_LEN;
    if (memcmp(p, TT_PREFACE, k) != 0) {
        if (k == TT_PREFACE_LEN && memcmp(p, TT_PREFACE, TT_PREFACE_LEN - 1) == 0) {
            snprintf(s->errbuf, sizeof s->errbuf,
                     "tether protocol version %u is not supported: this server speaks "
                     "version %u (update the client)",
                     (unsigned)p[TT_PREFACE_LEN - 1], (unsigned)TT_PROTOCOL_VERSION);
            return broken(s, TETHER_EPROTO, s->errbuf);
        }
        return broken(s, TETHER_EPROTO, "not a tether stream (bad preface)");
    }
    if (n < TT_PREFACE_LEN) {
        m->need = TT_PREFACE_LEN;
        return TETHER_EAGAIN;
    }
    s->preface_ok = 1;
    *used = TT_PREFACE_LEN;
    m->kind = TT_MSG_NOP;
    return TETHER_OK;
}

static tether_err
native_decode_request(void *state, const uint8_t *p, size_t n, size_t *used, tt_rpc_msg *m)
{
    native_state *s = state;
    m->kind = TT_MSG_CALL;
    m->method = NULL;
    m->need = 0;
    if (!s->preface_ok) {
        return read_preface(s, p, n, used, m);
    }
    tt_frame f;
    size_t need = 0;
    tether_err rc = tt_frame_decode(p, n, s->max, &f, &need);
    if (rc == TETHER_EAGAIN) {
        m->need = need;
        return rc;
    }
    if (rc == TETHER_EMSGSIZE) {
        return broken(s, rc, "frame larger than the server's limit");
    }
    if (rc != TETHER_OK) {
        return broken(s, TETHER_EPROTO, "malformed frame");
    }
    *used = f.total;
    m->seq = f.seq;
    switch (f.type) {
    case TT_FRAME_REQUEST:
        m->method = f.name;
        m->method_len = f.name_len;
        m->body = f.body;
        m->body_len = f.body_len;
        m->status = TETHER_OK;
        m->ctx = f.ctx;
        m->ctx_len = f.ctx_len;
        return TETHER_OK;
    case TT_FRAME_PING:
        m->kind = TT_MSG_PING;
        return TETHER_OK;
    case TT_FRAME_PONG:
        m->kind = TT_MSG_NOP;
        return TETHER_OK;
    case TT_FRAME_CANCEL:
        m->kind = TT_MSG_CANCEL;
        return TETHER_OK;
    default:
        return broken(s, TETHER_EPROTO, "unexpected frame type from client");
    }
}

/* One answer frame: its trailers in the context section, its body the
 * message packed in place (a->len is its packed size), the bytes given, or
 * the error text.  A reply over the limit becomes an EMSGSIZE error; an
 * error text over it is cut (trailers go first), never refused. */
static tether_err
native_encode_answer(void *state, tt_buf *out, const tt_answer *a)
{
    size_t max = ST(state)->max;
    uint8_t type = a->status == TETHER_OK ? TT_FRAME_REPLY : TT_FRAME_ERROR;
    uint32_t status = (uint32_t)a->status;
    const ProtobufCMessage *msg = a->msg;
    const void *data = a->data;
    size_t len = a->len;
    size_t tl = a->trailers_len;
    tether_err ret = TETHER_OK;
    if (type == TT_FRAME_REPLY && TT_FRAME_HDR + (tl > 0 ? 4 + tl : 0) + len > max) {
        type = TT_FRAME_ERROR;
        status = TETHER_EMSGSIZE;
        msg = NULL;
        data = "rpc: reply larger than the frame limit";
        len = strlen(data);
        ret = TETHER_EMSGSIZE;
    }
    if (type == TT_FRAME_ERROR && TT_FRAME_HDR + (tl > 0 ? 4 + tl : 0) + len > max) {
        tl = 0;
        if (TT_FRAME_HDR + len > max) {
            len = max - TT_FRAME_HDR;
        }
    }
    size_t extra = tl > 0 ? 4 + tl : 0;
    /* The body goes from the caller's memory (a reply that fits, raw). */
    int later = a->body_later && type == TT_FRAME_REPLY && msg == NULL;
    tether_err rc = tt_buf_reserve(out, TT_FRAME_HDR + extra + (later ? 0 : len));
    if (rc != TETHER_OK) {
        return rc;
    }
    uint8_t *w = out->data + out->len;
    if (tl > 0) {
        tt_frame_put_header_ctx(w, type, a->seq, status, 0, tl, len);
        memcpy(w + TT_FRAME_HDR + 4, a->trailers, tl);
    } else {
        tt_frame_put_header(w, type, a->seq, status, 0, len);
    }
    uint8_t *body = w + TT_FRAME_HDR + extra;
    if (msg != NULL) {
        protobuf_c_message_pack(msg, body);
    } else if (!later && len > 0) {
        memcpy(body, data, len);
    }
    out->len += TT_FRAME_HDR + extra + (later ? 0 : len);
    return ret;
}

/* A frame with only a header and a text body (control frames). */
static tether_err
put_control(const native_state *s, tt_buf *out, uint8_t type, uint64_t seq, uint32_t status,
            const char *text)
{
    size_t len = text != NULL ? strlen(text) : 0;
    if (TT_FRAME_HDR + len > s->max) {
        len = s->max - TT_FRAME_HDR;
    }
    tether_err rc = tt_buf_reserve(out, TT_FRAME_HDR + len);
    if (rc != TETHER_OK) {
        return rc;
    }
    tt_frame_put_header(out->data + out->len, type, seq, status, 0, len);
    if (text != NULL && len > 0) {
        memcpy(out->data + out->len + TT_FRAME_HDR, text, len);
    }
    out->len += TT_FRAME_HDR + len;
    return TETHER_OK;
}

static tether_err
native_encode_goaway(void *state, tt_buf *out)
{
    return put_control(state, out, TT_FRAME_GOAWAY, 0, 0, NULL);
}

static tether_err
native_encode_conn_error(void *state, tt_buf *out, tether_err code, const char *text)
{
    return put_control(state, out, TT_FRAME_ERROR, 0, (uint32_t)code, text);
}

static tether_err
native_encode_pong(void *state, tt_buf *out, uint64_t seq)
{
    return put_control(state, out, TT_FRAME_PONG, seq, 0, NULL);
}

static tether_err
native_encode_ping(void *state, tt_buf *out, uint64_t seq)
{
    return put_control(state, out, TT_FRAME_PING, seq, 0, NULL);
}

const tt_codec_ops tt_codec_native = {
    .name = "native",
    .state_size = sizeof(native_state),
    .probe = native_probe,
    .init = native_init,
    .fini = native_fini,
    .decode_request = native_decode_request,
    .decode_reply = native_decode_reply,
    .unpack = native_unpack,
    .unpack_with = native_unpack_with,
    .encode_answer = native_encode_answer,
    .encode_goaway = native_encode_goaway,
    .encode_conn_error = native_encode_conn_error,
    .encode_pong = native_encode_pong,
    .encode_ping = native_encode_ping,
    .encode_request = native_encode_request,
    .preface = (const uint8_t *)TT_PREFACE,
    .preface_len = TT_PREFACE_LEN,
    .flags = TT_CODEC_RAW_BYTES | TT_CODEC_BODY_LAST,
    .encode_request_raw = native_encode_request_raw,
    .encode_call = native_encode_call,
    .encode_cancel = native_encode_cancel,
    .last_error = native_last_error,
};
