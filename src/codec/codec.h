/*
 * codec.h - the contract every wire codec implements (native, jsonrpc,
 * gob).  Codecs work on byte ranges and buffers, never on sockets; the
 * server and client own the sockets and call these ops from the one
 * thread that owns the connection, so a codec's per-connection state needs
 * no lock.
 *
 * Server side: probe the first bytes of a connection to pick the codec,
 * decode_request() each message (a call with its undecoded body, a ping, a
 * cancel), look the method up, unpack() the body with the method's input
 * descriptor (unpack_with() into the call's arena where the codec can),
 * run the handler, then encode_answer().  Control messages the codec can
 * carry: encode_goaway(), encode_conn_error(), encode_pong().
 * Client side: encode_call() or encode_request(), decode_reply(), unpack().
 */
#ifndef TT_CODEC_CODEC_H
#define TT_CODEC_CODEC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "tether/tether.h"

/* What a request carries besides its body, as far as the codec can carry
 * it (Go's codecs carry none of it). */
typedef struct tt_call_ctx {
    uint32_t timeout_ms;     /* the caller's remaining time; 0: none */
    const tether_meta *meta; /* request metadata */
    size_t nmeta;
    /* TT_CODEC_BODY_LAST codecs, raw bodies: encode the request but its
     * body's len bytes, which the caller sends itself right after. */
    int body_later;
} tt_call_ctx;

/* What a decoded message is.  gob and jsonrpc only ever give
 * TT_MSG_CALL; there a message with no method, no body and status OK
 * carries nothing (a gob type definition) and is skipped. */
enum tt_msg_kind {
    TT_MSG_CALL = 0,       /* a request or a reply */
    TT_MSG_NOP = 1,        /* consumed bytes that need no action (ping, pong) */
    TT_MSG_GOAWAY = 2,     /* the server takes no new calls on this connection */
    TT_MSG_CONN_ERROR = 3, /* the server closes the connection: status, errtext say why */
    TT_MSG_CANCEL = 4,     /* the client gave up on call seq */
    TT_MSG_PING = 5,       /* the peer asks for a pong with seq */
    TT_MSG_PONG = 6        /* the answer to our ping seq (client side) */
};

/* One decoded request or reply header; pointers refer into the input. */
typedef struct tt_rpc_msg {
    int kind;           /* enum tt_msg_kind */
    uint64_t seq;       /* native seq, gob Seq, jsonrpc id */
    const char *method; /* "Service.Method"; not NUL-terminated */
    size_t method_len;
    const uint8_t *body; /* codec-specific encoding of the message */
    size_t body_len;
    tether_err status;   /* replies: TETHER_OK or the error kind */
    const char *errtext; /* replies with an error: text, not NUL-terminated */
    size_t errtext_len;
    const uint8_t *ctx; /* native context entries (metadata, trailers), or NULL */
    size_t ctx_len;
    /* After TETHER_EAGAIN: the bytes the message needs in all, when the
     * codec knows it (a native header read), else 0. */
    size_t need;
} tt_rpc_msg;

/* One answer, as the server hands it to encode_answer(). */
typedef struct tt_answer {
    uint64_t seq;
    const char *method; /* "Service.Method"; not NUL-terminated */
    size_t method_len;
    tether_err status; /* TETHER_OK: a reply; else an error, its text in data */
    /* A reply is msg, or the bytes data[0..len): a message packed by
     * protobuf-c when desc (its type) is set, else opaque bytes (raw
     * methods).  With msg, len is its packed size. */
    const ProtobufCMessage *msg;
    const ProtobufCMessageDescriptor *desc;
    const void *data;
    size_t len;
    /* Reply trailers, as context entries (native only; others ignore them). */
    const uint8_t *trailers;
    size_t trailers_len;
    /* TT_CODEC_BODY_LAST codecs, raw replies: encode the answer but its
     * body's len bytes, which the caller sends itself right after (only
     * when encode_answer returns TETHER_OK: an answer too large becomes a
     * whole error frame). */
    int body_later;
} tt_answer;

typedef struct tt_codec_ops {
    /* Name used in options and logs: "native", "jsonrpc", "gob". */
    const char *name;

    /* Bytes of per-connection state the server/client allocates for it. */
    size_t state_size;

    /* probe - look at the first n bytes a client sent: 1 if they start
     * this codec's stream, 0 if not, -1 if more bytes are needed to tell. */
    int (*probe)(const uint8_t *p, size_t n);

    /* init - set up zeroed state; max_msg bounds every length the codec
     * accepts.  fini - release what init and later calls allocated. */
    tether_err (*init)(void *state, size_t max_msg);
    void (*fini)(void *state);

    /* decode_request - decode the next request from p[0..n).  TETHER_OK:
     * *used bytes consumed, *m filled (m->body may be empty).  TETHER_EAGAIN:
     * need more bytes.  Any other error: the stream is broken and the
     * connection must close (EPROTO, EMSGSIZE, ENOMEM, ELIMIT).  A codec may
     * consume bytes that carry no request (gob type definitions): then it
     * returns TETHER_OK with m->method == NULL. */
    tether_err (*decode_request)(void *state, const uint8_t *p, size_t n, size_t *used,
                                 tt_rpc_msg *m);

    /* decode_reply - the same for replies (client side).  Control
     * messages come as their kind (enum tt_msg_kind); a codec that cannot
     * carry one never returns it.  On TETHER_OK every field of *m is set
     * (the caller does not clear it first); on any other result *m is not
     * to be read. */
    tether_err (*decode_reply)(void *state, const uint8_t *p, size_t n, size_t *used,
                               tt_rpc_msg *m);

    /* unpack - turn a body from decode_request/decode_reply into a message
     * of type desc, allocated with tt_pb_allocator.  TETHER_EBADREQUEST if
     * it does not decode as that type. */
    tether_err (*unpack)(void *state, const ProtobufCMessageDescriptor *desc, const uint8_t *body,
                         size_t len, ProtobufCMessage **out);

    /* unpack_with - unpack() into messages allocated with alloc (the
     * server's per-call arena, with its budget).  NULL: the codec builds
     * its messages with tt_pb_allocator; use unpack(). */
    tether_err (*unpack_with)(void *state, const ProtobufCMessageDescriptor *desc,
                              const uint8_t *body, size_t len, ProtobufCAllocator *alloc,
                              ProtobufCMessage **out);

    /* encode_answer - append the answer a to out (server side, every
     * codec).  TETHER_EMSGSIZE when it does not fit the message limit. */
    tether_err (*encode_answer)(void *state, tt_buf *out, const tt_answer *a);

    /* encode_goaway - append "no new calls here"; encode_conn_error -
     * append "this connection closes because of code: text"; encode_pong -
     * answer a ping.  NULL: the codec cannot say it (Go's just close). */
    tether_err (*encode_goaway)(void *state, tt_buf *out);
    tether_err (*encode_conn_error)(void *state, tt_buf *out, tether_err code, const char *text);
    tether_err (*encode_pong)(void *state, tt_buf *out, uint64_t seq);
    /* encode_ping - append "answer with a pong carrying seq" (client side:
     * liveness probes).  NULL: the codec cannot ask (Go's). */
    tether_err (*encode_ping)(void *state, tt_buf *out, uint64_t seq);

    /* encode_reply - append the reply to call seq of method, carrying msg,
     * to out.  encode_error - append an error reply with text instead.
     * The building blocks of the Go codecs' encode_answer (NULL for
     * native, whose answers carry trailers). */
    tether_err (*encode_reply)(void *state, tt_buf *out, uint64_t seq, const char *method,
                               size_t method_len, const ProtobufCMessage *msg);
    tether_err (*encode_error)(void *state, tt_buf *out, uint64_t seq, const char *method,
                               size_t method_len, tether_err code, const char *text);

    /* encode_request - append a request (client side). */
    tether_err (*encode_request)(void *state, tt_buf *out, uint64_t seq, const char *method,
                                 size_t method_len, const ProtobufCMessage *msg);

    /* --- Client side, beyond the calls above.  NULL members: the codec
     * cannot do it. --- */

    /* Bytes a client sends before its first request (NULL: none). */
    const uint8_t *preface;
    size_t preface_len;

    /* TT_CODEC_RAW_BYTES: request and reply bodies may be opaque bytes
     * (raw methods), sent by encode_request_raw() and returned as they
     * came.  TT_CODEC_BODY_LAST: a raw body is the last bytes of its frame,
     * as it is (body_later in tt_call_ctx and tt_answer: large bodies go
     * from the caller's memory to the socket, not through out). */
    unsigned flags;

    /* encode_request_raw - append a request whose body is data[0..len):
     * opaque bytes for native, the JSON text of params[0] for jsonrpc. */
    tether_err (*encode_request_raw)(void *state, tt_buf *out, uint64_t seq, const char *method,
                                     size_t method_len, const void *data, size_t len);

    /* last_error - why the last unpack(), or the last decode that broke
     * the stream, failed on state (never NULL; "" when the codec has no
     * words for it). */
    const char *(*last_error)(const void *state);

    /* encode_call - append a request carrying msg (or, when msg is NULL,
     * the bytes data[0..len)) and the context ctx.  TETHER_EMSGSIZE over
     * the message limit, TETHER_ELIMIT when the context does not fit its
     * encoding.  NULL: the codec carries no context, and encode_request()
     * or encode_request_raw() is used. */
    tether_err (*encode_call)(void *state, tt_buf *out, uint64_t seq, const char *method,
                              size_t method_len, const ProtobufCMessage *msg, const void *data,
                              size_t len, const tt_call_ctx *ctx);

    /* encode_cancel - append "the caller gave up on seq" (NULL: the codec
     * cannot say it). */
    tether_err (*encode_cancel)(void *state, tt_buf *out, uint64_t seq);

    /* reply_status - the code an error reply's text stands for, for codecs
     * whose error replies carry text only (Go's "rpc: can't find method
     * X" is TETHER_ENOMETHOD); NULL when the status travels on the wire. */
    tether_err (*reply_status)(const char *text, size_t len);
} tt_codec_ops;

#define TT_CODEC_RAW_BYTES 0x1u
#define TT_CODEC_BODY_LAST 0x2u

/* Raw bodies from this size on are worth sending from the caller's
 * memory (a copy of them costs more than a second iovec). */
#define TT_CODEC_DIRECT_MIN (64u * 1024u)

/* tt_codec_body_direct - whether a raw body of len bytes on a plaintext
 * connection of ops goes to the socket from the caller's memory
 * (body_later), rather than through the output buffer. */
static inline int
tt_codec_body_direct(const tt_codec_ops *ops, size_t len, int tls)
{
    return len >= TT_CODEC_DIRECT_MIN && (ops->flags & TT_CODEC_BODY_LAST) && !tls;
}

/* The native codec, both sides (src/codec/native/native.c). */
extern const tt_codec_ops tt_codec_native;

/* tt_codec_go_answer - encode_answer for codecs built on encode_reply and
 * encode_error (gob, jsonrpc): a packed reply is unpacked with a->desc
 * first, raw bytes are refused with an error reply (src/codec/answer.c). */
tether_err tt_codec_go_answer(const tt_codec_ops *ops, void *state, tt_buf *out,
                              const tt_answer *a);

/* tt_codec_go_reply_status - reply_status for Go's net/rpc texts
 * (src/codec/goerr.c). */
tether_err tt_codec_go_reply_status(const char *text, size_t len);

#endif
