/*
 * server.h - an RPC server: services, listeners, I/O threads.
 *
 * Life of a server:
 *   tether_server_config_init(&cfg);           defaults, then adjust
 *   tether_server_create(&cfg, &srv);
 *   tether_server_add_service(srv, ...);        before start
 *   tether_server_listen(srv, "127.0.0.1:0");   binds at once; port readable
 *   tether_server_start(srv);                   I/O threads begin serving
 *   ...
 *   tether_server_shutdown(srv);                request a stop (any thread,
 *                                               signal handlers too)
 *   tether_server_wait(srv);                    blocks until stopped
 *   tether_server_destroy(srv);
 *
 * Connections are served by a fixed set of I/O threads (epoll).  Each
 * connection may carry many calls at once; answers leave as soon as they
 * are ready, in any order, and answers that become ready together leave in
 * one send.
 */
#ifndef TETHER_SERVER_H
#define TETHER_SERVER_H

#include "tether/health.h"
#include "tether/registry.h"
#include "tether/service.h"
#include "tether/tether.h"
#include "tether/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/* tether_server - opaque server handle. */
typedef struct tether_server tether_server;

/*
 * tether_server_config - creation-time settings.  Zero in any field means
 * "the default", which tether_server_config_init() writes out (except
 * grace_ms and stall_ms, where zero is a setting of its own).
 */
typedef struct tether_server_config {
    int io_threads;                 /* I/O threads; default: online CPUs */
    int worker_threads;             /* pool for TETHER_METHOD_BLOCKING; default 4 */
    size_t max_frame_size;          /* largest frame accepted or sent; default 4 MiB */
    uint32_t max_inflight_per_conn; /* calls in flight per connection; default 4096 */
    /* Open connections, all listeners together; default: the soft
     * RLIMIT_NOFILE less 128 (half of it below 256), at most 65536. */
    uint32_t max_connections;
    uint32_t drain_timeout_ms;      /* graceful stop: wait for calls; default 10000 */
    uint32_t grace_ms;              /* graceful stop: pause after "going away"; default 0 */
    /* Request metadata (and reply trailers) per call, in bytes as encoded
     * (docs/protocol.md); a call over it is answered TETHER_ELIMIT and the
     * connection stays.  Default 8192, at most 65536. */
    uint32_t max_metadata_size;
    /* A message whose first bytes arrived must be complete within this
     * many ms, or its connection is closed (slow senders holding
     * connections open).  Default 30000; TETHER_NO_TIMEOUT: never. */
    uint32_t partial_timeout_ms;
    /* A connection with no call in flight and nothing received for this
     * many ms is closed (clients reconnect when they next call).  Default
     * 0: never. */
    uint32_t idle_timeout_ms;
    /* Bytes of incomplete messages the server holds in all, shared out
     * over the I/O threads; a connection that would need more stops being
     * read until others finish theirs (one connection alone may always
     * take a whole message).  Default 64 MiB. */
    size_t max_input_buffered;
    /* Calls of TETHER_METHOD_BLOCKING methods waiting for or running on a
     * worker, server-wide.  Each connection gets a fair share (an equal
     * part, with room kept for one more connection); a call past it, or
     * past the total, is answered TETHER_ELIMIT at once.  Default 1024. */
    uint32_t max_queued_blocking;
    /* Metrics over HTTP (include/tether/metrics.h, docs/metrics.md):
     * "host:port" (port 0: any free one) of a listener serving /metrics
     * (Prometheus text), /vars.json, /health and a status page at /.  NULL:
     * no listener and no counting (tether_server_enable_metrics() counts
     * without one).  Copied by tether_server_create().  A bad or taken
     * address, or no libmicrohttpd, fails tether_server_start() with
     * TETHER_EADDRINVAL, TETHER_EADDRINUSE or TETHER_ENOTSUP. */
    const char *metrics_addr;
    /* The serving watchdog (docs/health.md): when an I/O thread has not
     * turned for stall_ms (a handler blocks it), or jobs have waited that
     * long for the worker pool with every worker busy, the server is
     * stalled: it leaves the registry (and comes back by itself once it
     * turns again), logs why, answers _tether.Health.Check with
     * NOT_SERVING, and stops systemd's WATCHDOG=1.  config_init writes
     * 2000; 0 turns the watchdog off. */
    uint32_t stall_ms;
    /* TLS on every listener (include/tether/tls.h): on when tls.cert_file
     * is set; the files are loaded by tether_server_create().  Default:
     * all zero, plaintext only. */
    tether_tls_config tls;
} tether_server_config;

/* A timeout of "never" where 0 means the default. */
#define TETHER_NO_TIMEOUT UINT32_MAX

/*
 * tether_server_config_init - fill cfg with the documented defaults.
 */
TETHER_API void tether_server_config_init(tether_server_config *cfg);

/*
 * tether_server_create - create a server.  cfg may be NULL (all defaults);
 * it is copied.  On success *out holds the server.  Errors: TETHER_EINVAL,
 * TETHER_ENOMEM, TETHER_ESYSERR|errno (eventfd creation failed),
 * TETHER_ETLS (a TLS file could not be loaded; the reason is logged at
 * WARN).
 */
TETHER_API tether_err tether_server_create(const tether_server_config *cfg, tether_server **out);

/*
 * tether_server_add_service - serve the service described by desc (the
 * protoc-c generated "<pkg>__<name>__descriptor"), named on the wire by
 * desc->short_name.  methods[0..n-1] give a handler for some or all of its
 * methods (by .proto method name); methods left out answer "unknown
 * method".  arg is passed to every handler.  The descriptor must outlive
 * the server; the table is copied.  Only before tether_server_start().
 * Errors: TETHER_EINVAL (NULL, unknown method name), TETHER_EEXIST (service
 * already added), TETHER_ESTATE (already started), TETHER_ENOMEM.
 */
TETHER_API tether_err tether_server_add_service(tether_server *srv,
                                                const ProtobufCServiceDescriptor *desc,
                                                const tether_method *methods, size_t n,
                                                void *arg);

/*
 * tether_server_add_raw_method - serve "Service.Method" (full_name) as a
 * raw-bytes method: the handler gets the request bytes as sent and answers
 * with tether_call_reply_raw().  flags: TETHER_METHOD_*.  Errors as for
 * tether_server_add_service().
 */
TETHER_API tether_err tether_server_add_raw_method(tether_server *srv, const char *full_name,
                                                   tether_raw_handler_fn fn, unsigned flags,
                                                   void *arg);

/*
 * tether_server_interceptor - hooks around every call the server runs, of
 * every codec, so logging, metrics, auth and tracing are written once.
 *  before  runs on the I/O thread after the method is found and the
 *          request decoded, before the handler.  It reads what the call
 *          carries (tether_call_get_method(), tether_call_get_meta(),
 *          tether_call_get_peer(), tether_call_get_deadline()) and returns
 *          TETHER_OK to let the call through, or an error code to refuse
 *          it: the caller gets that code with *why as its text (why starts
 *          as NULL: then "rpc: call refused"), the handler never runs, and
 *          the interceptors after it are skipped.  NULL: none.
 *  after   runs on the I/O thread once the call is finished (answered,
 *          refused or canceled) with the code the caller got (TETHER_OK, or
 *          the error) and the time from before to the answer, in ns.
 *          Interceptors whose before let the call through see it, last
 *          added first.  NULL:
 *          none.
 *  arg     passed to both.
 * Neither may block or answer the call.
 */
typedef struct tether_server_interceptor {
    tether_err (*before)(tether_call *call, const char **why, void *arg);
    void (*after)(const tether_call *call, tether_err status, uint64_t duration_ns, void *arg);
    void *arg;
} tether_server_interceptor;

/*
 * tether_server_add_interceptor - add ic (copied) to srv's chain: befores
 * run in the order added, afters in reverse.  Only before
 * tether_server_start().  Errors: TETHER_EINVAL, TETHER_ESTATE (started),
 * TETHER_ELIMIT (more than 16), TETHER_ENOMEM.
 */
TETHER_API tether_err tether_server_add_interceptor(tether_server *srv,
                                                    const tether_server_interceptor *ic);

/*
 * tether_auth_config - who may call (tether_server_add_auth()).  A call is
 * let through when any of these says yes:
 *  tokens[0..ntokens-1]  bearer tokens: the call's metadata
 *          "authorization" is "Bearer <token>" with one of them (clients
 *          set it with tether_client_config.auth_token).  Compared in
 *          constant time; copied; never logged.
 *  subjects[0..nsubjects-1]  client certificate subjects, exactly as
 *          tether_call_get_peer_subject() gives them ("CN=a,O=b"), for
 *          servers with mTLS (tls.ca_file).  Copied.
 *  check   the application's decision, asked when neither list matched:
 *          token is the bearer token sent (NULL: none), subject the
 *          verified certificate subject (NULL: none); TETHER_OK lets the
 *          call through.  Runs on the I/O thread: must not block.  NULL:
 *          none.
 * Any other call is answered TETHER_EPERM ("rpc: permission denied: ...",
 * the reason without the token).  gob and jsonrpc carry no metadata: their
 * callers pass by certificate or by check alone.
 */
typedef struct tether_auth_config {
    const char *const *tokens;
    size_t ntokens;
    const char *const *subjects;
    size_t nsubjects;
    tether_err (*check)(const tether_call *call, const char *token, const char *subject,
                        void *arg);
    void *check_arg;
} tether_auth_config;

/*
 * tether_server_add_auth - check every call (every codec and method, the
 * built-in _tether ones too) as cfg says, through an interceptor added to
 * srv's chain at this point (see tether_server_add_interceptor()).  Once
 * per server, before tether_server_start().  Errors: TETHER_EINVAL (NULL,
 * nothing to accept by, an empty token), TETHER_EEXIST (added before),
 * TETHER_ESTATE (started), TETHER_ELIMIT, TETHER_ENOMEM.
 */
TETHER_API tether_err tether_server_add_auth(tether_server *srv, const tether_auth_config *cfg);

/*
 * tether_server_listen - bind and listen on addr, at once.  Accepted forms:
 * "host:port" (IPv4 or a name), "[v6addr]:port", ":port" (all IPv4
 * addresses), "unix:/path" (an existing socket file at path is replaced).
 * Port 0 picks a free port; read it back with tether_server_get_address().
 * May be called several times, before tether_server_start().  Errors:
 * TETHER_EADDRINVAL, TETHER_EADDRINUSE, TETHER_ESTATE, TETHER_ENOMEM,
 * TETHER_ESYSERR|errno.  tether_server_get_errmsg() gives detail.
 */
TETHER_API tether_err tether_server_listen(tether_server *srv, const char *addr);

/*
 * tether_server_get_address - write the bound address of listener idx (in
 * listen order) into buf as "host:port", "[v6]:port" or "unix:/path".
 * Errors: TETHER_ENOENT (no such listener), TETHER_EMSGSIZE (buf too
 * small; 128 bytes always suffice for TCP).
 */
TETHER_API tether_err tether_server_get_address(const tether_server *srv, int idx, char *buf,
                                            size_t len);

/*
 * tether_server_start - start the I/O threads and begin accepting, then
 * register in the registry if one was set.  Does not block.  Errors:
 * TETHER_EINVAL (NULL), TETHER_ESTATE (no listener, or started before),
 * TETHER_ENOMEM, TETHER_ESYSERR|errno (thread or epoll creation), and the
 * registry's errors (the server is then stopped again).
 */
TETHER_API tether_err tether_server_start(tether_server *srv);

/*
 * tether_server_shutdown - ask the server to stop gracefully, in this order
 * (src/rpc/drain.c): deregister from the registry, refuse new calls with
 * TETHER_EGOINGAWAY and send connected clients "going away", wait grace_ms,
 * stop accepting, let calls in flight finish until drain_timeout_ms, answer
 * the rest with TETHER_ECANCELED, close.  Returns at once.  A second call
 * makes the stop immediate: connections close at once and callers of calls
 * still in flight see TETHER_ECONNRESET.  Async-signal-safe: it only writes
 * to an eventfd.
 */
TETHER_API void tether_server_shutdown(tether_server *srv);

/*
 * tether_server_wait - block until the server has stopped (after
 * tether_server_shutdown()).  Returns TETHER_OK, or TETHER_ESTATE if the
 * server was never started, TETHER_EINVAL for NULL.
 */
TETHER_API tether_err tether_server_wait(tether_server *srv);

/*
 * tether_server_destroy - stop the server at once if it runs (pending
 * calls are dropped; their late answers are ignored), join its threads and
 * free it.  NULL is a no-op.  Must not be called from a handler.
 */
TETHER_API void tether_server_destroy(tether_server *srv);

/*
 * tether_server_get_errmsg - text about the last failed call on srv from the
 * calling setup thread (listen, add_service).  Valid until the next call
 * on srv.  Never NULL.
 */
TETHER_API const char *tether_server_get_errmsg(const tether_server *srv);

/*
 * tether_server_set_registry - register this server in registry r, once
 * per listener, as the instance tmpl describes: tmpl->service (required,
 * for example "calculator"), tmpl->meta[0..meta_count-1] and tmpl->weight
 * (0 means 1).  The address registered: tmpl->address when set (the
 * advertised address, "host:port": then one instance is registered,
 * whatever the listeners), else each listener's address; a listener on
 * every address (":port", "0.0.0.0:port", "[::]:port") registers
 * 127.0.0.1:port (or [::1]) in a local: registry, whose readers are on
 * this host, and the host's first non-loopback address otherwise, and
 * start fails with TETHER_EINVAL (saying so in tether_server_get_errmsg()) on
 * a host without one: never 0.0.0.0.  tmpl's state, id and pid are
 * ignored.  Everything is copied.  Registration happens in
 * tether_server_start(), after the I/O threads serve, so an instance is
 * never listed before it can answer; if called after start it registers
 * at once.  The graceful stop begins by deregistering each registration,
 * before clients are told to go away and before the listener closes.  r
 * must outlive the server.  Errors: TETHER_EINVAL, TETHER_ENOMEM,
 * TETHER_ESTATE (stopping), and the registry's errors when registering at
 * once.
 */
TETHER_API tether_err tether_server_set_registry(tether_server *srv, tether_registry *r,
                                                 const tether_instance *tmpl);

/*
 * tether_server_run - the opt-in run helper: start the server if it is not
 * started yet (registering it), then block until it has stopped.  While it
 * runs, the first SIGINT or SIGTERM starts the graceful stop (see
 * tether_server_shutdown()) and a second one stops at once: this function
 * installs handlers for both signals with sigaction() and restores the
 * previous handlers before it returns; nothing else in the library touches
 * signals.  It also unblocks SIGINT and SIGTERM in the calling thread (and
 * restores the mask on return).  Every thread the library starts (I/O,
 * workers, registry, client pool) blocks all signals, so SIGINT and SIGTERM
 * always reach the application's own threads.
 * Under systemd (NOTIFY_SOCKET set) it sends READY=1 once the
 * server serves and is registered, and STOPPING=1 when the stop begins.
 * Only one server per process may be in tether_server_run() at a time
 * (TETHER_ESTATE otherwise).  Returns TETHER_OK after a stop, or the error
 * of tether_server_start().
 */
TETHER_API tether_err tether_server_run(tether_server *srv);

/*
 * tether_server_set_serving - the application's own say in the server's
 * health: serving 0 makes _tether.Health.Check answer NOT_SERVING and
 * takes the instance out of the registry (its registration lives on:
 * local: the entry is marked not serving, etcd: its keys go, its lease
 * stays), serving 1 (the state at creation) lists it again unless the
 * watchdog holds it out.  Calls are still served either way: this only
 * steers clients away.  Thread-safe, also from handlers; the registry is
 * updated by the server's control thread within a few milliseconds.
 * Errors: TETHER_EINVAL (NULL).
 */
TETHER_API tether_err tether_server_set_serving(tether_server *srv, int serving);

/*
 * tether_server_health - what _tether.Health.Check would answer now for
 * service (a wire service name such as "Calculator"; NULL or "" for the
 * whole server).  Thread-safe.
 */
TETHER_API tether_health_status tether_server_health(const tether_server *srv, const char *service);

/* Counters a server keeps (read with tether_server_stats()). */
typedef struct tether_server_stats {
    uint64_t connections_accepted;
    uint64_t connections_open;
    uint64_t calls_started;
    uint64_t calls_completed;
    uint64_t calls_failed; /* answered with an error of any kind */
    uint64_t protocol_errors;
    /* Accepts that failed for want of a file descriptor (EMFILE/ENFILE);
     * accepting pauses 10 ms to 1 s each time, see docs/protocol.md. */
    uint64_t fd_exhausted;
    /* Connections closed because a message stayed incomplete past
     * partial_timeout_ms, or idle past idle_timeout_ms. */
    uint64_t partial_timeouts;
    uint64_t idle_closed;
    /* Times a connection stopped being read at max_input_buffered, and
     * blocking calls refused past their share of max_queued_blocking. */
    uint64_t input_paused;
    uint64_t blocking_refused;
    /* Times the watchdog found the server stalled (docs/health.md). */
    uint64_t stalls;
} tether_server_stats;

/*
 * tether_server_get_stats - copy the server's counters into out.  Thread-safe;
 * counters are read without stopping the I/O threads, so they are a
 * consistent snapshot of each counter, not of all of them together.
 */
TETHER_API void tether_server_get_stats(const tether_server *srv, tether_server_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* TETHER_SERVER_H */
