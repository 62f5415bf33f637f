/*
 * client.h - call methods on a tether server.
 *
 * A tether_client talks to one address over one connection that carries
 * many calls at once.  Calls are synchronous (tether_client_call*, with a
 * deadline) or asynchronous (tether_client_call_async*, with a completion
 * callback).  A broken connection fails every pending call with
 * TETHER_ECONNRESET (or with the reason the server gave before closing:
 * TETHER_ELIMIT, TETHER_EPROTO, TETHER_EMSGSIZE, TETHER_ENOMEM); the next
 * call connects again.  A synchronous call made from a completion callback
 * returns TETHER_ESTATE (it would wait on the thread that must answer it).
 *
 * Threads: every function here is thread-safe.  Completion callbacks run
 * on a thread of the process's shared client I/O pool (see
 * tether_client_set_io_threads()), never inside the function that started
 * the call, with no library lock held; a callback may start new calls.
 */
#ifndef TETHER_CLIENT_H
#define TETHER_CLIENT_H

#include "tether/registry.h"
#include "tether/service.h"
#include "tether/tether.h"
#include "tether/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/* tether_client - opaque client handle. */
typedef struct tether_client tether_client;

/* How a client by service name picks an instance for each call.  The
 * default (0) is TETHER_BALANCE_P2C: an instance that
 * is alive but answers nothing (stopped, its packets dropped) collects
 * calls in flight and stops being chosen at once, long before a ping
 * finds it out, where in turn it keeps getting its share until then. */
typedef enum tether_balance {
    TETHER_BALANCE_P2C = 0,         /* two different random choices (weighted), the one with
                                     * fewer calls in flight per weight wins (default) */
    TETHER_BALANCE_RANDOM = 1,      /* weighted random */
    TETHER_BALANCE_ROUND_ROBIN = 2, /* in turn, weights honoured */
    TETHER_BALANCE_HASH = 3         /* rendezvous hash of the call's key (tether_call_opts.key) */
} tether_balance;

/*
 * tether_codec - the wire format a client speaks.  A tether server
 * understands all three on the same port; Go's net/rpc servers speak gob
 * (rpc.ServeConn, rpc.Accept) or jsonrpc (jsonrpc.ServeConn).  Messages
 * map to Go values as docs/codecs.md describes.
 */
typedef enum tether_codec {
    TETHER_CODEC_NATIVE = 0, /* tether's own frames (default; the fast path) */
    TETHER_CODEC_GOB = 1,    /* Go's default net/rpc codec (encoding/gob) */
    TETHER_CODEC_JSONRPC = 2 /* Go's net/rpc/jsonrpc */
} tether_codec;

/*
 * tether_client_interceptor - hooks around every call a client makes
 * (sync and async, typed and raw, by address or by name).
 *  before  runs in the calling thread before the call is sent; an error
 *          return refuses the call: the call function returns that code
 *          (an async call's callback then never runs) and the
 *          interceptors after it are skipped.  NULL: none.
 *  after   runs once the call ended (in the caller's thread for sync
 *          calls, on the I/O thread before the callback for async ones)
 *          with its outcome and the time since before, in ns; only for
 *          interceptors whose before let the call through, last first.
 *          NULL: none.
 *  arg     passed to both.
 * method is the call's "Service.Method", valid during the hook.  Neither
 * may block or start a synchronous call.
 */
typedef struct tether_client_interceptor {
    tether_err (*before)(tether_client *c, const char *method, void *arg);
    void (*after)(tether_client *c, const char *method, tether_err status, uint64_t duration_ns,
                  void *arg);
    void *arg;
} tether_client_interceptor;

/*
 * tether_client_config - creation-time settings; zero means default
 * (tether_client_config_init() writes them out).
 */
typedef struct tether_client_config {
    size_t max_frame_size;       /* largest reply accepted; default 4 MiB */
    uint32_t connect_timeout_ms; /* default 5000 */
    uint32_t call_timeout_ms;    /* used when a call passes timeout 0; default 10000 */
    tether_balance balance;      /* clients by service name only */
    /* Wire format (tether_client_create() only; clients by service name
     * speak native).  With GOB or JSONRPC the client talks to any Go
     * net/rpc server of that codec: typed calls, sync and async, work as
     * documented below; raw calls answer TETHER_ENOTSUP; a server error
     * is TETHER_EREMOTE with Go's text ("rpc: can't find service X" and
     * "rpc: can't find method X" become TETHER_ENOSERVICE and
     * TETHER_ENOMETHOD); "going away" does not exist in these codecs. */
    tether_codec codec;
    /* Metadata sent with every call, before the call's own (an auth token,
     * say); copied at creation.  Native protocol only.  At most 16 pairs. */
    const tether_meta *meta;
    size_t nmeta;
    /* Interceptors, run in this order (copied at creation; at most 16). */
    const tether_client_interceptor *interceptors;
    size_t ninterceptors;
    /* Liveness of a connection ("alive but not serving"; native codec
     * only: gob and jsonrpc cannot ping).  A connection with calls
     * outstanding that received nothing for probe_ms (default 100) sends a
     * PING; no PONG within probe_timeout_ms (default 300) closes it as
     * dead.  Its calls then fail with TETHER_ECONNRESET and errtext "no
     * answer to a ping..."; a client by service name sends the ones that
     * never left the process, and those marked TETHER_CALL_IDEMPOTENT, to
     * another instance within their deadline.  TETHER_OFF: no pings.  A
     * server answers PING on its I/O thread: an inline (non-blocking)
     * handler that keeps that thread longer than probe_timeout_ms makes
     * its connections look dead; slow handlers belong on the worker pool. */
    uint32_t probe_ms;
    uint32_t probe_timeout_ms;
    /* TCP keep-alive on client connections: first probe after keepalive_ms
     * of silence (default 10000), connection dropped about 1.75 times that
     * later without answer, or when sent data stays unacknowledged that
     * long (TCP_USER_TIMEOUT), so a half-open connection is found without
     * a call.  TETHER_OFF: the system's settings. */
    uint32_t keepalive_ms;
    /* Outlier ejection (clients by service name).  eject_failures
     * consecutive transport failures or timeouts on an instance (default 5;
     * TETHER_OFF: never), or one unanswered PING, eject it: it gets no calls
     * for eject_base_ms (default 1000), doubling with each ejection that
     * follows within eject_max_ms of the last one, up to eject_max_ms
     * (default 30000).  At most eject_max_percent of the instances
     * (default 50; at least one) are ejected at once.  When its time is
     * up an ejected instance is probed (a PING, reconnecting if needed)
     * and gets calls again only after a PONG; no PONG ejects it again. */
    uint32_t eject_failures;
    uint32_t eject_base_ms;
    uint32_t eject_max_ms;
    uint32_t eject_max_percent;
    /* Hedged (backup) requests (clients by service name, calls marked
     * TETHER_CALL_IDEMPOTENT): a call not answered after backup_ms is sent
     * once more to another instance; the first answer wins and the other
     * copy is canceled.  0: off (default); TETHER_BACKUP_P95: the 95th
     * percentile of the last 128 answered calls' latencies (no hedging
     * before 16 were answered). */
    uint32_t backup_ms;
    /* TLS to every server (include/tether/tls.h): on with tls.enable; the
     * files are loaded at creation.  Clients by service name verify each
     * instance against tls.server_name, or else its address's IP.
     * Default: all zero, plaintext. */
    tether_tls_config tls;
    /* A bearer token sent with every call as the metadata pair
     * "authorization: Bearer <token>" (what tether_server_add_auth()
     * checks); copied at creation, never logged.  NULL: none.  Counts as
     * one of the 16 metadata pairs' room. */
    const char *auth_token;
} tether_client_config;

/* A config value that turns a feature off (probe_ms, keepalive_ms,
 * eject_failures). */
#define TETHER_OFF UINT32_MAX
/* backup_ms: hedge after the recent 95th percentile latency. */
#define TETHER_BACKUP_P95 (UINT32_MAX - 1)

/* tether_client_config_init - fill cfg with the documented defaults. */
TETHER_API void tether_client_config_init(tether_client_config *cfg);

/*
 * tether_client_set_io_threads - the number of I/O threads all clients of
 * the process share (0: the default, min(online cores, 4)).  Clients never
 * start threads of their own: every connection of every client, whatever
 * its codec and however many instances a client by service name follows,
 * runs on this pool.  The pool starts with the first client and stops when
 * the last one is destroyed; the setting applies from the next start.
 * Errors: TETHER_EINVAL above 64.
 */
TETHER_API tether_err tether_client_set_io_threads(unsigned n);

/*
 * tether_client_create - a client for addr: "host:port", "[v6]:port" or
 * "unix:/path".  cfg may be NULL.  Connects before returning, so a bad or
 * unreachable address is reported here.  Errors: TETHER_EINVAL,
 * TETHER_EADDRINVAL, TETHER_ECONNREFUSED, TETHER_ETIMEDOUT, TETHER_ENOMEM,
 * TETHER_ESYSERR|errno, TETHER_ETLS (a TLS file could not be loaded, or
 * the handshake failed: the reason is logged at WARN).
 */
TETHER_API tether_err tether_client_create(const char *addr, const tether_client_config *cfg,
                                           tether_client **out);

/*
 * tether_client_create_service - a client for every instance of service
 * listed in registry reg (tether_registry_open(): "local:", "etcd://...",
 * "static:h:p,h:p", ...).  The client takes its own reference to reg, so
 * the caller may close its handle at any time.  It follows the registry's watch: instances that
 * appear get calls, instances that are removed, draining, or that sent
 * "going away" get no new calls while their calls in flight complete.  Each
 * call goes to one instance picked by cfg->balance.  A call that failed
 * before any handler saw it (connection refused, "going away", a reset
 * after the instance said it was going away) is retried on another
 * instance within the call's deadline; an instance that refuses
 * connections is set aside with growing backoff (100 ms to 5 s) even
 * before the registry notices.  An instance that is connected but does not
 * answer (a stopped process, dropped packets) is ejected and probed before
 * it gets calls again (probe_ms, eject_* in the config); calls marked
 * TETHER_CALL_IDEMPOTENT are also retried after a reset, and hedged when
 * backup_ms is set.  When no instance is available a call waits
 * for one until its deadline (TETHER_ETIMEDOUT; TETHER_ENOENT if the
 * registry never listed any); with TETHER_CALL_NO_WAIT it fails at once.
 * Errors: TETHER_EINVAL (also for an unknown cfg->balance), TETHER_ENOMEM
 * and the registry's errors.
 */
TETHER_API tether_err tether_client_create_service(tether_registry *reg, const char *service,
                                                   const tether_client_config *cfg,
                                                   tether_client **out);

/*
 * tether_client_destroy - close the client.  Pending asynchronous calls
 * complete with TETHER_ECLOSED before it returns (on the I/O thread, or
 * on the calling thread for any left after the I/O thread stopped);
 * pending synchronous calls return TETHER_ECLOSED.  NULL is a no-op.  Must
 * not be called from one of this client's callbacks.
 */
TETHER_API void tether_client_destroy(tether_client *c);

/* Call flags (tether_call_opts.flags). */
#define TETHER_CALL_IDEMPOTENT 0x1u /* safe to run twice (for retries and hedging) */
/* By service name: when no instance can take the call now, fail at once
 * (TETHER_ENOENT: the registry lists none; TETHER_EAGAIN: none is
 * reachable) instead of waiting for one until the deadline. */
#define TETHER_CALL_NO_WAIT 0x2u

/*
 * tether_call_opts - how one call is made; every call form takes it.  NULL,
 * or a zeroed struct, means the client's defaults.  Nothing in it needs to
 * outlive the call that takes it (metadata is copied before return).
 *  timeout_ms  the call's deadline from now; 0: the client's
 *              call_timeout_ms.  The remaining time travels with the call
 *              (native protocol), so the server can give up when it does.
 *  key         balancing key: under TETHER_BALANCE_HASH the same key goes
 *              to the same instance while the set of instances does not
 *              change; ignored by other policies and clients by address.
 *  meta,nmeta  request metadata the handler reads (tether_call_get_meta());
 *              keys non-empty.  Native protocol only (gob and jsonrpc
 *              cannot carry it).  Over the server's max_metadata_size the
 *              call fails with TETHER_ELIMIT and the connection stays.
 *  flags       TETHER_CALL_* (TETHER_CALL_IDEMPOTENT, TETHER_CALL_NO_WAIT).
 *  id          asynchronous calls: if not NULL, *id receives the call's id
 *              (never 0) for tether_client_cancel().
 *  trailers    synchronous calls: if not NULL, *trailers receives the
 *              metadata the server attached to its answer, *ntrailers
 *              pairs in one block the caller frees with tether_free()
 *              (NULL, 0 when there are none).  Asynchronous calls find
 *              trailers in tether_reply.
 */
typedef struct tether_call_opts {
    uint32_t timeout_ms;
    const char *key;
    const tether_meta *meta;
    size_t nmeta;
    unsigned flags;
    tether_meta **trailers;
    size_t *ntrailers;
    uint64_t *id;
} tether_call_opts;

/* TETHER_CALL_TIMEOUT - call options with only a timeout, as an
 * expression (C99 compound literal): tether_client_call(..., TETHER_CALL_TIMEOUT(500), ...). */
#define TETHER_CALL_TIMEOUT(ms) (&(const tether_call_opts){.timeout_ms = (ms)})

/*
 * tether_client_call - call method ("Service.Method") with request req and
 * wait for the answer, at most opts->timeout_ms (opts NULL or 0: the
 * configured default).  On
 * TETHER_OK *reply holds the unpacked answer of type reply_desc, owned by
 * the caller (free it with tether_msg_free()).  On TETHER_EREMOTE and the
 * other errors the server reports (TETHER_ENOSERVICE, TETHER_ENOMETHOD,
 * TETHER_EBADREQUEST, TETHER_ELIMIT...), *errtext (if errtext is not NULL)
 * receives the server's text, owned by the caller (tether_free()); else it
 * is set to NULL.  Other errors: TETHER_ETIMEDOUT, TETHER_ECONNRESET,
 * TETHER_ECONNREFUSED, TETHER_EBADREPLY, TETHER_EMSGSIZE, TETHER_ENOMEM,
 * TETHER_EGOINGAWAY (the server was stopping; the call never reached a
 * handler), TETHER_ECLOSED.
 */
TETHER_API tether_err tether_client_call(tether_client *c, const char *method,
                                         const ProtobufCMessage *req,
                                         const ProtobufCMessageDescriptor *reply_desc,
                                         ProtobufCMessage **reply, const tether_call_opts *opts,
                                         char **errtext);

/*
 * tether_client_call_raw - like tether_client_call() with bytes in and
 * out: *out (len *out_len) is owned by the caller (tether_free()).
 */
TETHER_API tether_err tether_client_call_raw(tether_client *c, const char *method, const void *req,
                                             size_t req_len, uint8_t **out, size_t *out_len,
                                             const tether_call_opts *opts, char **errtext);

/*
 * tether_reply - what an asynchronous call's callback receives.
 *  err      TETHER_OK or the call's error (same values as tether_client_call())
 *  errtext  the server's error text, or NULL; valid during the callback
 *  msg      typed calls on success: the unpacked reply, owned by the
 *           callback (tether_msg_free()); NULL otherwise
 *  data,len the reply bytes as received; valid during the callback
 *  trailers the metadata the server attached to its answer (ntrailers
 *           pairs; native protocol only); valid during the callback
 */
typedef struct tether_reply {
    tether_err err;
    const char *errtext;
    ProtobufCMessage *msg;
    const uint8_t *data;
    size_t len;
    const tether_meta *trailers;
    size_t ntrailers;
} tether_reply;

/*
 * tether_reply_fn - completion callback of an asynchronous call.
 */
typedef void (*tether_reply_fn)(tether_client *c, const tether_reply *r, void *arg);

/*
 * tether_client_call_async - start a call and return at once.  reply_desc
 * may be NULL to get the reply bytes only.  If this returns an error the
 * callback never runs; if it returns TETHER_OK the callback runs exactly
 * once, on a thread of the shared client pool: with the reply, with the call's error,
 * with TETHER_ETIMEDOUT after opts->timeout_ms (0: the configured default), or
 * with TETHER_ECLOSED when the client is destroyed.  Errors: TETHER_EINVAL,
 * TETHER_ENOMEM, TETHER_EMSGSIZE, TETHER_ECONNREFUSED (reconnect failed),
 * TETHER_ECLOSED.
 */
TETHER_API tether_err tether_client_call_async(tether_client *c, const char *method,
                                               const ProtobufCMessage *req,
                                               const ProtobufCMessageDescriptor *reply_desc,
                                               const tether_call_opts *opts, tether_reply_fn fn,
                                               void *arg);

/*
 * tether_client_call_async_raw - tether_client_call_async() with request
 * bytes (copied before return).  r->msg is always NULL.
 */
TETHER_API tether_err tether_client_call_async_raw(tether_client *c, const char *method,
                                                   const void *req, size_t req_len,
                                                   const tether_call_opts *opts, tether_reply_fn fn,
                                                   void *arg);

/*
 * tether_client_call_json - call method with a request given as JSON text
 * (json_in: an object as Go's encoding/json would write the request
 * struct, e.g. {"A":1,"B":2}; NULL or "" mean {}) and get the reply as
 * JSON text in *json_out (caller frees it with tether_free()).  No
 * generated code is needed:
 *  - jsonrpc clients pass the text through as params[0] and return the
 *    result's text as the server wrote it;
 *  - native and gob clients first ask the server's built-in method
 *    _tether.Describe (every tether server answers it; see docs/call.md)
 *    for the method's message types, build the request from the JSON and
 *    print the reply in the same mapping as the jsonrpc codec.  A raw
 *    method gets json_in as its bytes, and its reply bytes are returned
 *    as they are.
 * Errors: those of tether_client_call(); TETHER_EINVAL also when json_in
 * does not fit the request type (*errtext says why); TETHER_ENOTSUP when
 * the server cannot describe its methods (a Go server: use jsonrpc).
 */
TETHER_API tether_err tether_client_call_json(tether_client *c, const char *method,
                                              const char *json_in, char **json_out,
                                              const tether_call_opts *opts, char **errtext);

/*
 * tether_client_describe - ask the server's built-in _tether.Describe
 * (docs/call.md) and get its answer as JSON text in *json_out (caller
 * frees it with tether_free()): for name "Service.Method" that method's
 * input and output types and every message type they reach; for NULL or
 * "" the list of services and their methods.  The answer is checked in
 * full before it is returned (names, numbers, types, references, sizes).
 * Works over every codec.  Errors: those of tether_client_call();
 * TETHER_EBADREPLY when the answer is not a valid description (*errtext
 * says why); TETHER_ENOTSUP when the server does not describe its
 * methods, or (for the list) is a tether server too old to list them.
 */
TETHER_API tether_err tether_client_describe(tether_client *c, const char *name, char **json_out,
                                             const tether_call_opts *opts, char **errtext);

/*
 * tether_json_request - a request converted from JSON once and sent many
 * times (the `tether bench` tool): the conversion
 * tether_client_call_json() makes, without the call.
 */
typedef struct tether_json_request tether_json_request;

/*
 * tether_json_request_create - convert json_in (NULL or "" mean {}) for
 * method as tether_client_call_json() does on c: jsonrpc keeps the text;
 * native and gob ask the server's _tether.Describe (within opts'
 * timeout) and build the request, a raw method takes the text as its
 * bytes.  *out is freed with tether_json_request_free().  Errors: those
 * of tether_client_call_json() before it sends the call itself (*errtext
 * says why when it can).
 */
TETHER_API tether_err tether_json_request_create(tether_client *c, const char *method,
                                                 const char *json_in, const tether_call_opts *opts,
                                                 tether_json_request **out, char **errtext);

/*
 * tether_client_call_async_json - start the call rq describes on c, as
 * tether_client_call_async_raw() does: native and jsonrpc send rq's bytes
 * as they are (nothing is converted per call); gob sends the request
 * message (gob describes its types per connection).  c must speak the
 * codec of the client rq was made with; any number of clients may share
 * rq.  The callback gets the reply bytes; r->msg is the unpacked reply
 * (caller frees it with tether_msg_free()) for gob only, else NULL.
 * Errors: those of tether_client_call_async(); TETHER_EINVAL for a codec
 * that differs from rq's; TETHER_ENOTSUP for a raw method over gob.
 */
TETHER_API tether_err tether_client_call_async_json(tether_client *c, const tether_json_request *rq,
                                                    const tether_call_opts *opts,
                                                    tether_reply_fn fn, void *arg);

/* tether_json_request_free - free rq once no call started with it is
 * pending.  NULL is a no-op. */
TETHER_API void tether_json_request_free(tether_json_request *rq);

/*
 * tether_client_cancel - give up on the asynchronous call whose id a call
 * option returned: its callback runs once with TETHER_ECANCELED (on an I/O
 * thread, never inside this function), and the server is told, so its
 * handler can stop (native protocol).  Errors: TETHER_EINVAL, TETHER_ENOENT
 * (the call already completed or never existed; its callback runs or ran
 * as usual).  Thread-safe; callable from callbacks.
 */
TETHER_API tether_err tether_client_cancel(tether_client *c, uint64_t id);

/*
 * tether_client_get_pending - number of calls started and not yet completed.
 */
TETHER_API size_t tether_client_get_pending(const tether_client *c);

#ifdef __cplusplus
}
#endif
#endif /* TETHER_CLIENT_H */
