/*
 * native.c - tether's own frames (frame.h, docs/protocol.md) behind the
 * codec contract, for the client engine: requests out, replies and
 * control frames in.  Native frames carry protobuf bodies, or opaque
 * bytes for raw methods, so the codec keeps no per-connection state.
 */
#include <string.h>

#include "codec/codec.h"
#include "codec/native/frame.h"
#include "core/alloc.h"
#include "core/err.h"

static tether_err
native_init(void *state, size_t max_msg)
{
    *(size_t *)state = max_msg;
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
    tether_err rc = tt_frame_decode(p, n, *(size_t *)state, &f, NULL);
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
    case TT_FRAME_PONG:
        /* Liveness frames: a client that has calls to wait for needs
         * nothing from them (it never sends PING itself yet). */
        m->kind = TT_MSG_NOP;
        return TETHER_OK;
    default:
        return TETHER_EPROTO; /* requests and cancels never go to a client */
    }
}

static tether_err
put_request(void *state, tt_buf *out, uint64_t seq, const char *method, size_t mlen,
            const ProtobufCMessage *msg, const void *data, size_t len)
{
    if (msg != NULL) {
        len = protobuf_c_message_get_packed_size(msg);
    }
    if (TT_FRAME_HDR + mlen + len > *(size_t *)state) {
        return TETHER_EMSGSIZE;
    }
    tether_err rc = tt_buf_reserve(out, TT_FRAME_HDR + mlen + len);
    if (rc != TETHER_OK) {
        return rc;
    }
    uint8_t *w = out->data + out->len;
    tt_frame_put_header(w, TT_FRAME_REQUEST, seq, 0, mlen, len);
    memcpy(w + TT_FRAME_HDR, method, mlen);
    if (msg != NULL) {
        protobuf_c_message_pack(msg, w + TT_FRAME_HDR + mlen);
    } else if (data != NULL && len > 0) {
        memcpy(w + TT_FRAME_HDR + mlen, data, len);
    }
    out->len += TT_FRAME_HDR + mlen + len;
    return TETHER_OK;
}

static tether_err
native_encode_request(void *state, tt_buf *out, uint64_t seq, const char *method, size_t mlen,
                      const ProtobufCMessage *msg)
{
    return put_request(state, out, seq, method, mlen, msg, NULL, 0);
}

/* A request with its context: the deadline always (every call has one),
 * then the metadata pairs in the caller's order. */
static tether_err
native_encode_call(void *state, tt_buf *out, uint64_t seq, const char *method, size_t mlen,
                   const ProtobufCMessage *msg, const void *data, size_t len,
                   const tt_call_ctx *ctx)
{
    size_t clen = ctx->timeout_ms > 0 ? 7 : 0;
    for (size_t i = 0; i < ctx->nmeta; i++) {
        size_t kl = strlen(ctx->meta[i].key);
        size_t vl = strlen(ctx->meta[i].value);
        if (kl == 0 || kl + vl + 2 > 0xffff) {
            return TETHER_ELIMIT;
        }
        clen += tt_ctx_size_meta(kl, vl);
    }
    if (clen == 0) {
        return put_request(state, out, seq, method, mlen, msg, data, len);
    }
    if (clen > TT_CTX_MAX) {
        return TETHER_ELIMIT;
    }
    if (msg != NULL) {
        len = protobuf_c_message_get_packed_size(msg);
    }
    size_t total = TT_FRAME_HDR + mlen + 4 + clen + len;
    if (total > *(size_t *)state) {
        return TETHER_EMSGSIZE;
    }
    tether_err rc = tt_buf_reserve(out, total);
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
        c += tt_ctx_put_meta(c, k, strlen(k), v, strlen(v));
    }
    if (msg != NULL) {
        protobuf_c_message_pack(msg, c);
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
    return put_request(state, out, seq, method, mlen, NULL, data, len);
}

static tether_err
native_unpack(void *state, const ProtobufCMessageDescriptor *desc, const uint8_t *body, size_t len,
              ProtobufCMessage **out)
{
    (void)state;
    *out = protobuf_c_message_unpack(desc, &tt_pb_allocator, len, body);
    return *out != NULL ? TETHER_OK : TETHER_EBADREPLY;
}

static const char *
native_last_error(const void *state)
{
    (void)state;
    return "the reply does not decode as the method's reply type";
}

const tt_codec_ops tt_codec_native = {
    .name = "native",
    .state_size = sizeof(size_t),
    .init = native_init,
    .fini = native_fini,
    .decode_reply = native_decode_reply,
    .unpack = native_unpack,
    .encode_request = native_encode_request,
    .preface = (const uint8_t *)TT_PREFACE,
    .preface_len = TT_PREFACE_LEN,
    .flags = TT_CODEC_RAW_BYTES,
    .encode_request_raw = native_encode_request_raw,
    .encode_call = native_encode_call,
    .encode_cancel = native_encode_cancel,
    .last_error = native_last_error,
};
