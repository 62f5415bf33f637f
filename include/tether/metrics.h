/*
 * metrics.h - what a server counts per method, read in C or scraped over
 * HTTP (Prometheus text, a status page).
 *
 * Metrics are on when tether_server_config.metrics_addr is set (an HTTP
 * listener then serves /metrics, /vars.json, /health and a status page at
 * /, see docs/metrics.md), or after tether_server_enable_metrics() (counters
 * only, read with the functions below).  Off, a call costs nothing extra.
 *
 * Counting is per I/O thread: each thread bumps its own block of counters
 * (one per method) with no lock and no shared cache line; a read sums the
 * blocks.  A read is therefore a snapshot of each counter, not of all of
 * them together.
 *
 * Latencies go into log-linear buckets: four per decade (1, 2.5, 5, 7.5
 * times a power of ten) from 1 us to 10 s, then +Inf.  The latency of a
 * call is the time it spent in the server: from the start of the read
 * that brought its request to the end of the I/O thread's event batch
 * that wrote its answer.  (Each I/O thread reads the clock once per read
 * and once per batch, not per call, so metrics cost a pipelined call a
 * few counter updates.)  A call is counted in calls and by_code before its
 * answer leaves; its latency reaches the histogram at the end of that
 * batch, a moment later.
 */
#ifndef TETHER_METRICS_H
#define TETHER_METRICS_H

#include "tether/client.h"
#include "tether/registry.h"
#include "tether/server.h"
#include "tether/tether.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Latency buckets: TETHER_METRICS_BUCKETS finite upper bounds plus +Inf. */
#define TETHER_METRICS_BUCKETS 29
/* Codes counted one by one: 0 .. TETHER_METRICS_CODES-1 (every tether_err
 * of this version); any other code (TETHER_ESYSERR|errno) is counted in
 * calls_other. */
#define TETHER_METRICS_CODES 29

/* tether_method_stats - the counters of one method. */
/*
 * tether_client_instance_stats - what a client knows of one instance it
 * calls (a client by address has one, a client by service name one per
 * instance it follows).
 */
typedef struct tether_client_instance_stats {
    char address[256];
    uint64_t outstanding; /* calls in flight to it now */
    uint64_t ejections;   /* times it was ejected as an outlier */
    uint64_t retries;     /* calls that failed there and were sent elsewhere */
    int ejected;          /* 1 while it is ejected or being probed */
} tether_client_instance_stats;

/*
 * tether_client_get_instance_stats - fill out[0..cap) with c's instances
 * (in no particular order); *n gets how many there are (it may exceed
 * cap: call again with more room).  Thread-safe; takes the client's lock
 * briefly.  Errors: TETHER_EINVAL.
 */
TETHER_API tether_err tether_client_get_instance_stats(tether_client *c,
                                                       tether_client_instance_stats *out,
                                                       size_t cap, size_t *n);

/*
 * tether_client_metrics_text - c's instances as Prometheus text
 * (tether_client_outstanding_calls, tether_client_ejections_total,
 * tether_client_retries_total, tether_client_ejected, labelled
 * client="name" and instance="address") in *out, NUL-terminated, freed
 * with tether_free().  Errors: TETHER_EINVAL, TETHER_ENOMEM.
 */
TETHER_API tether_err tether_client_metrics_text(tether_client *c, const char *name, char **out);

/*
 * tether_server_add_client_metrics - serve c's series (as above, with
 * client="name") on srv's metrics listener and in
 * tether_server_metrics_text(), after the server's own.  c must outlive
 * srv's metrics (destroy srv first).  Only before tether_server_start();
 * at most 16 clients.  Errors: TETHER_EINVAL, TETHER_ESTATE, TETHER_ELIMIT.
 */
TETHER_API tether_err tether_server_add_client_metrics(tether_server *srv, tether_client *c,
                                                       const char *name);

/*
 * A metrics listener of a program's own (the sidecar, or anything that is
 * no tether server): it serves /metrics with the Prometheus text fn
 * writes, and /health (200 "SERVING" when fn's health is 1, else 503).
 * tether_metrics_fn - when text is not NULL, write the Prometheus text
 * into *text (a NUL-terminated string from malloc(), freed by the
 * listener; NULL: nothing); set *healthy.  Runs on the listener's
 * thread.
 */
typedef tether_err (*tether_metrics_fn)(void *arg, char **text, int *healthy);
typedef struct tether_metrics_listener tether_metrics_listener;

/* tether_metrics_listen - serve fn(arg) on addr ("host:port", port 0: any
 * free one).  Errors: TETHER_EINVAL, TETHER_EADDRINVAL, TETHER_EADDRINUSE,
 * TETHER_ENOTSUP (no libmicrohttpd), TETHER_ENOMEM. */
TETHER_API tether_err tether_metrics_listen(const char *addr, tether_metrics_fn fn, void *arg,
                                            tether_metrics_listener **out);

/* tether_metrics_listener_address - the bound "host:port". */
TETHER_API const char *tether_metrics_listener_address(const tether_metrics_listener *l);

/* tether_metrics_listener_close - stop serving and free; NULL: no-op. */
TETHER_API void tether_metrics_listener_close(tether_metrics_listener *l);

typedef struct tether_method_stats {
    const char *method;                     /* "Service.Method"; valid while the server lives */
    uint64_t calls;                         /* finished calls, every code */
    uint64_t in_flight;                     /* started, not finished */
    uint64_t by_code[TETHER_METRICS_CODES]; /* finished calls per tether_err */
    uint64_t calls_other;                   /* finished with a code not in by_code */
    uint64_t bytes_in;                      /* request message bytes, as received */
    uint64_t bytes_out;                     /* answer message bytes (native encoding) */
    uint64_t latency_sum_ns;
    /* Calls per latency bucket (not cumulative): bucket i holds latencies
     * <= tether_metrics_bucket_bound_ns(i) and above the bound before it;
     * the last one, [TETHER_METRICS_BUCKETS], is everything slower. */
    uint64_t latency_buckets[TETHER_METRICS_BUCKETS + 1];
} tether_method_stats;

/*
 * tether_metrics_bucket_bound_ns - upper bound of latency bucket i in ns
 * (i < TETHER_METRICS_BUCKETS), or UINT64_MAX for i past the last finite
 * one.
 */
TETHER_API uint64_t tether_metrics_bucket_bound_ns(size_t i);

/*
 * tether_server_enable_metrics - count per-method calls without an HTTP
 * listener.  Only before tether_server_start() (metrics_addr enables them
 * too).  Errors: TETHER_EINVAL (NULL), TETHER_ESTATE (started).
 */
TETHER_API tether_err tether_server_enable_metrics(tether_server *srv);

/*
 * tether_server_method_count - how many methods srv serves (its own and
 * the built-in _tether ones); 0 before tether_server_start().
 */
TETHER_API size_t tether_server_method_count(const tether_server *srv);

/*
 * tether_server_method_stats - the counters of method idx (0 ..
 * tether_server_method_count()-1, sorted by name) into out.  Thread-safe;
 * never blocks the I/O threads.  Errors: TETHER_EINVAL (NULL),
 * TETHER_ESTATE (metrics off, or not started), TETHER_ENOENT (idx past the
 * end).
 */
TETHER_API tether_err tether_server_method_stats(const tether_server *srv, size_t idx,
                                                 tether_method_stats *out);

/*
 * tether_server_metrics_text - every series in the Prometheus text format
 * 0.0.4 (what GET /metrics answers), NUL-terminated, into *out (freed with
 * tether_free); *len (may be NULL) gets its length.  Thread-safe.
 * Errors: TETHER_EINVAL, TETHER_ESTATE (metrics off, or not started),
 * TETHER_ENOMEM.
 */
TETHER_API tether_err tether_server_metrics_text(const tether_server *srv, char **out, size_t *len);

/*
 * tether_server_metrics_address - the bound address of the metrics
 * listener as "host:port" into buf (useful with port 0).  Errors:
 * TETHER_ENOENT (no listener: metrics_addr unset or not started yet),
 * TETHER_EMSGSIZE (buf too small; 128 bytes always suffice).
 */
TETHER_API tether_err tether_server_metrics_address(const tether_server *srv, char *buf,
                                                    size_t len);

/* tether_registry_stats - what a registry backend reports about itself. */
typedef struct tether_registry_stats {
    int64_t lease_id;         /* etcd: the lease now held; 0 none (local: 0) */
    int64_t keepalive_age_ms; /* etcd: ms since the last keep-alive etcd answered; -1 never */
    uint64_t registrations;   /* live registrations made through this registry */
    uint64_t reregistrations; /* keys put again after a lost lease */
    uint64_t watch_resumes;   /* watches that broke and resumed */
} tether_registry_stats;

/*
 * tether_registry_get_stats - copy r's counters into out.  Thread-safe;
 * never blocks.  Errors: TETHER_EINVAL (NULL).
 */
TETHER_API tether_err tether_registry_get_stats(const tether_registry *r,
                                                tether_registry_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* TETHER_METRICS_H */
