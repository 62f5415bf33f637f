/*
 * engine.h - the client engine: one connection to one address, many calls
 * in flight, for any codec.
 *
 * The engine owns what every client connection needs, written once: the
 * pending-call table (hashed by sequence number), sequence numbers,
 * deadlines (a heap and one loop timer), going-away, the asynchronous
 * connect with its timeout, and reconnecting after a break.  The codec ops
 * (codec/codec.h) say how requests are written and replies read, so the
 * native, gob and jsonrpc clients are configurations of this one engine.
 * Its connection lives on a loop of the shared client pool
 * (net/loop_pool.h): engines add no threads.
 *
 * Threads: every function is thread-safe.  Asynchronous callbacks run on
 * the engine's loop thread with no engine lock held.  A synchronous call
 * with nothing else in flight reads the socket on the caller's thread (no
 * hand-off to the loop and back).
 */
#ifndef TT_RPC_ENGINE_H
#define TT_RPC_ENGINE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/codec.h"
#include "net/sock.h"
#include "net/tls.h"
#include "tether/client.h"

typedef struct tt_engine tt_engine;
struct tt_loop;

/* Connection states (tt_engine_state). */
enum { TT_ENGINE_IDLE, TT_ENGINE_CONNECTING, TT_ENGINE_READY };

typedef struct tt_engine_config {
    const tt_codec_ops *ops;
    size_t max_frame;
    uint32_t connect_timeout_ms;
    /* Called when a connect ends (ready or failed, err says which) or a
     * ready connection is lost (err: why), on the loop thread or in the
     * caller of a call that found the connect failing at once; never with
     * an engine lock held.  May be NULL. */
    void (*on_state)(tt_engine *e, tether_err err, void *arg);
    void *state_arg;
    /* Liveness (codecs with encode_ping only; 0: off).  A connection with
     * calls outstanding and nothing received for probe_ms sends a PING; no
     * PONG within probe_timeout_ms closes it: its calls fail with
     * TETHER_ECONNRESET and a text saying so (those whose request never
     * left the process with TETHER_EAGAIN when unsent_again is set). */
    uint32_t probe_ms;
    uint32_t probe_timeout_ms;
    int unsent_again;
    uint32_t keepalive_ms; /* TCP keep-alive idle time (tt_sock_keepalive); 0: off */
    /* Called with ok 1 when a PONG answers a probe of tt_engine_probe(),
     * with ok 0 when a probe or a liveness PING went unanswered (the
     * connection was closed) or the probe's connect failed; no engine lock
     * held, on the loop thread or the thread reading.  May be NULL. */
    void (*on_probe)(tt_engine *e, int ok, void *arg);
    /* TLS: the client's context (NULL: plaintext; the engine takes a
     * reference) and the name the server's certificate must carry (NULL:
     * the address's IP; must outlive the engine).  The handshake is part
     * of the connect (and of connect_timeout_ms); the synchronous fast
     * path polls and reads through OpenSSL instead of a blocking recv(). */
    tt_tls_ctx *tls;
    const char *server_name;
} tt_engine_config;

/* One call's request: typed (msg) or bytes (data, len), and what the
 * reply is unpacked into (desc; NULL: the reply bytes). */
typedef struct tt_call_req {
    const char *method;
    size_t method_len;
    const ProtobufCMessage *msg;
    const void *data;
    size_t len;
    const ProtobufCMessageDescriptor *desc;
    uint32_t timeout_ms;     /* > 0 */
    const tether_meta *meta; /* request metadata (codecs that carry it) */
    size_t nmeta;
    unsigned flags; /* TETHER_CALL_* */
} tt_call_req;

/* A synchronous call's outcome; the caller owns and frees what it holds
 * (tt_call_result_clear). */
typedef struct tt_call_result {
    tether_err err;
    ProtobufCMessage *msg; /* typed replies */
    uint8_t *data;         /* reply bytes (desc NULL), NUL-terminated */
    size_t len;
    char *text;            /* the server's error text, or why the reply did not decode */
    tether_meta *trailers; /* reply trailers: one block (array and strings) */
    size_t ntrailers;
} tt_call_result;

/* tt_engine_create - an engine for addr, not connected yet.  Errors:
 * TETHER_ENOMEM, TETHER_ESYSERR|errno (the pool's threads). */
tether_err tt_engine_create(const tt_addr *addr, const tt_engine_config *cfg, tt_engine **out);

/* tt_engine_connect_wait - connect now and wait for the outcome, up to the
 * connect timeout (a client by address reports a bad address when it is
 * created).  Errors: TETHER_ECONNREFUSED, TETHER_ETIMEDOUT, ... */
tether_err tt_engine_connect_wait(tt_engine *e);

/* tt_engine_prepare - start connecting in the background if idle.
 * Returns an immediate failure (on_state is not called for it). */
tether_err tt_engine_prepare(tt_engine *e);

/* tt_engine_state - TT_ENGINE_IDLE, _CONNECTING or _READY (a snapshot). */
int tt_engine_state(const tt_engine *e);

/* tt_engine_probe - ask the server for a PONG (connecting first if idle);
 * on_probe tells the outcome, within probe_timeout_ms of the connection
 * being up (a connect has connect_timeout_ms).  TETHER_ENOTSUP
 * without encode_ping or probe_timeout_ms; an immediate connect failure is
 * returned (on_probe is not called for it). */
tether_err tt_engine_probe(tt_engine *e);

/* tt_engine_loop - the loop the engine runs on (for timers of its users). */
struct tt_loop *tt_engine_loop(const tt_engine *e);

/* tt_engine_goaway - the server said "going away" on this connection. */
int tt_engine_goaway(const tt_engine *e);

/* tt_engine_pending - calls in flight (a snapshot, no lock). */
size_t tt_engine_pending(const tt_engine *e);

/* tt_engine_call - a synchronous call: TETHER_OK or the call's error, with
 * res filled (res->text may hold the server's text on error). */
tether_err tt_engine_call(tt_engine *e, const tt_call_req *rq, tt_call_result *res);

/* tt_engine_call_async - start a call; fn gets owner and arg back.  An
 * error return means fn never runs; TETHER_OK means it runs exactly once,
 * on the loop thread, never inside this call. */
tether_err tt_engine_call_async(tt_engine *e, const tt_call_req *rq, tether_reply_fn fn,
                                tether_client *owner, void *arg, uint64_t *seq);

/* tt_engine_cancel - give up on async call seq: the server is told
 * (CANCEL) and the callback runs with TETHER_ECANCELED on the loop thread.
 * TETHER_ENOENT when seq is not pending (it completed already). */
tether_err tt_engine_cancel(tt_engine *e, uint64_t seq);

/* tt_engine_destroy - fail what is pending with TETHER_ECLOSED (callbacks
 * run before it returns) and free e.  NULL is a no-op. */
void tt_engine_destroy(tt_engine *e);

/* tt_call_result_clear - free what res holds. */
void tt_call_result_clear(tt_call_result *res);

#endif
