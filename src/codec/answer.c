/*
 * answer.c - encode_answer for the codecs that speak Go's net/rpc (gob,
 * jsonrpc), on top of their encode_reply and encode_error.
 *
 * An answer made on another thread reaches the connection's thread as
 * protobuf-c packed bytes (the handler's message may be gone by then), so
 * here it is unpacked once and encoded once with the connection's codec.
 * Go's codecs carry no trailers and no raw bytes: trailers are dropped,
 * raw replies become an error the Go client can show.
 */
#include <string.h>

#include "codec/codec.h"
#include "core/alloc.h"

/* Error texts need a terminating NUL; short ones are copied on the stack. */
static tether_err
put_error(const tt_codec_ops *ops, void *state, tt_buf *out, const tt_answer *a,
          tether_err code, const char *text, size_t len)
{
    char small[256];
    char *t = len < sizeof small ? small : tt_malloc(len + 1);
    if (t == NULL) {
        t = small;
        len = sizeof small - 1;
    }
    memcpy(t, text, len);
    t[len] = '\0';
    tether_err rc = ops->encode_error(state, out, a->seq, a->method, a->method_len, code, t);
    if (t != small) {
        tt_free(t);
    }
    return rc;
}

tether_err
tt_codec_go_answer(const tt_codec_ops *ops, void *state, tt_buf *out, const tt_answer *a)
{
    if (a->status != TETHER_OK) {
        return put_error(ops, state, out, a, a->status, a->data != NULL ? a->data : "",
                         a->data != NULL ? a->len : 0);
    }
    const ProtobufCMessage *msg = a->msg;
    ProtobufCMessage *unpacked = NULL;
    if (msg == NULL && a->desc != NULL) {
        unpacked = protobuf_c_message_unpack(a->desc, &tt_pb_allocator, a->len, a->data);
        if (unpacked == NULL) {
            static const char t[] = "rpc: server cannot encode the reply";
            put_error(ops, state, out, a, TETHER_EINTERNAL, t, sizeof t - 1);
            return TETHER_ENOMEM;
        }
        msg = unpacked;
    }
    if (msg == NULL) {
        /* Raw methods are refused before their handler runs on these
         * codecs; answer something a Go client understands all the same. */
        static const char t[] = "rpc: raw reply over a Go codec";
        put_error(ops, state, out, a, TETHER_EINTERNAL, t, sizeof t - 1);
        return TETHER_EINVAL;
    }
    size_t mark = out->len;
    tether_err rc = ops->encode_reply(state, out, a->seq, a->method, a->method_len, msg);
    if (unpacked != NULL) {
        protobuf_c_message_free_unpacked(unpacked, &tt_pb_allocator);
    }
    if (rc != TETHER_OK) {
        /* The caller still gets an answer: what went wrong, as an error. */
        out->len = out->len < mark ? out->len : mark;
        const char *t = rc == TETHER_EMSGSIZE ? "rpc: reply larger than the message limit"
                                              : "rpc: server cannot encode the reply";
        put_error(ops, state, out, a, rc == TETHER_EMSGSIZE ? TETHER_EMSGSIZE : TETHER_EINTERNAL,
                  t, strlen(t));
    }
    return rc;
}
