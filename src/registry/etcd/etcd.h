/*
 * etcd.h - the "etcd://" registry backend: etcd's v3 API through its JSON
 * gateway (HTTP/1.1 POSTs to /v3/..., see docs/etcd.md), with libcurl and
 * jansson.
 *
 * Files:
 *   url.c    the URL: endpoints, prefix and query options;
 *   http.c   one libcurl connection per user (the callers' requests, the
 *            keep-alive thread, each watch), fail-over between endpoints,
 *            the auth token, unary calls and the streaming watch;
 *   codec.c  base64, range ends, the naming/endpoints value (both ways),
 *            and the small JSON readers shared by the others;
 *   etcd.c   open/destroy, the one lease per registry object, register,
 *            set_state, deregister, list, and the keep-alive thread;
 *   watch.c  the watch: range, then one streaming watch from revision+1,
 *            resumed after a break from the last revision seen;
 *   guardian.c  the crash guardian: a process that revokes the lease when
 *            the server dies without revoking it.
 *
 * Threads: the generic layer's threads call into etcd.c; each registry
 * object has at most one keep-alive thread of its own (started by the
 * first registration), and each watch runs on the generic watch thread.
 * Nothing here takes a lock while calling user code.
 */
#ifndef TT_REGISTRY_ETCD_H
#define TT_REGISTRY_ETCD_H

#include "registry/etcd/curl_dl.h"
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "registry/registry.h"

extern const struct tt_registry_ops tt_etcd_registry_ops;

/* Defaults of the URL's query options (docs/etcd.md). */
#define TT_ETCD_DEFAULT_PREFIX "/services"
#define TT_ETCD_DEFAULT_TTL_S 10
#define TT_ETCD_DEFAULT_TIMEOUT_MS 1000
#define TT_ETCD_MAX_ENDPOINTS 16
/* Largest answer (unary body or one streamed line) accepted from etcd. */
#define TT_ETCD_MAX_BODY (16u * 1024u * 1024u)

/* What the URL says. */
struct tt_etcd_cfg {
    char *endpoints[TT_ETCD_MAX_ENDPOINTS]; /* "http://127.0.0.1:2379" */
    size_t nendpoints;
    char *prefix;        /* "/services": no trailing '/', may be "" */
    uint32_t ttl_s;      /* lease TTL */
    uint32_t timeout_ms; /* per unary request */
    char *user;          /* NULL: no auth */
    char *password;
    char *cacert;  /* NULL: the system's CAs (https only) */
    char *cert;    /* client certificate and its key (https; NULL: none) */
    char *key;
    bool guardian; /* start a crash guardian (guardian.c); default true */
};

/*
 * tt_etcd_parse_url - fill cfg from rest, the URL after "etcd:" (so
 * "//h:p,h:p/prefix?ttl=5").  Errors: TETHER_EINVAL (logged),
 * TETHER_ENOMEM.  On error cfg holds nothing to free.
 */
tether_err tt_etcd_parse_url(const char *url, const char *rest, struct tt_etcd_cfg *cfg);
void tt_etcd_cfg_free(struct tt_etcd_cfg *cfg);

/* The backend's registry object. */
struct tt_etcd_registry {
    struct tether_registry super;
    struct tt_etcd_cfg cfg;
    /* The endpoint that answered last: every connection starts there, so
     * after a fail-over all of them move to the member that works. */
    atomic_uint cur_ep;
    /* The auth token (user/password only); guarded by tok_mu. */
    pthread_mutex_t tok_mu;
    char *token;
    /* The rest (lease, registrations, keep-alive thread) is etcd.c's. */
    struct tt_etcd_state *st;
};

/* One libcurl connection, used by one thread at a time. */
struct tt_etcd_http {
    struct tt_etcd_registry *er;
    CURLM *multi;
    CURL *easy;
    /* When set and true, requests stop and return TETHER_ECANCELED (the
     * keep-alive thread's stop flag, a watch's `stopping`). */
    const atomic_bool *stop;
    /* The answer's body (unary) or the unread part of a stream; kept
     * NUL-terminated once allocated, off always 0. */
    tt_buf body;
    bool overflow;
    bool tls_logged; /* a TLS failure was logged; cleared by a success */
    char errbuf[CURL_ERROR_SIZE];
};

/* A unary answer: HTTP status and, when the body is JSON, its parse. */
struct tt_etcd_reply {
    long status;
    json_t *json; /* owned, NULL if the body was not JSON */
};

/*
 * A streamed line's handler: return false to end the stream early.
 */
typedef bool (*tt_etcd_line_fn)(void *arg, const char *line, size_t len);

/* tt_etcd_http_init - a connection for er; stop may be NULL.  Errors:
 * TETHER_ENOMEM, TETHER_EREGISTRY (libcurl refused). */
tether_err tt_etcd_http_init(struct tt_etcd_http *h, struct tt_etcd_registry *er,
                             const atomic_bool *stop);
void tt_etcd_http_fini(struct tt_etcd_http *h);

/*
 * tt_etcd_post - POST body to path on the current endpoint, failing over
 * to the others on transport errors and "unavailable" answers, within
 * budget_ms in all (each try also within cfg.timeout_ms).  Authenticates
 * first when the URL has a user, and once more on a 401.  TETHER_OK means
 * etcd answered (any status; rep filled, free it with
 * tt_etcd_reply_clear).  Errors: TETHER_ECONNREFUSED, TETHER_ETIMEDOUT,
 * TETHER_ECONNRESET (no member answered), TETHER_ECANCELED (stop flag),
 * TETHER_EMSGSIZE (answer over TT_ETCD_MAX_BODY), TETHER_ENOMEM,
 * TETHER_EREGISTRY (authentication refused).
 */
tether_err tt_etcd_post(struct tt_etcd_http *h, const char *path, const char *body,
                        uint32_t budget_ms, struct tt_etcd_reply *rep);
void tt_etcd_reply_clear(struct tt_etcd_reply *rep);

/*
 * tt_etcd_stream - POST body to path (a streaming call: /v3/watch) and
 * hand every complete line of the answer to fn, on this thread, until the
 * answer ends, fn returns false or the stop flag is set.  Connecting fails
 * over like tt_etcd_post.  *status gets the HTTP status (0 if none).
 * Returns TETHER_OK when the stream ended normally or fn ended it, else an
 * error as for tt_etcd_post (TETHER_ECONNRESET: the connection broke).
 */
tether_err tt_etcd_stream(struct tt_etcd_http *h, const char *path, const char *body,
                          tt_etcd_line_fn fn, void *arg, long *status);

/* tt_etcd_drop_token - forget the auth token: the next request logs in
 * again.  For answers that say the token is dead without a 401 (a watch
 * canceled as unauthenticated). */
void tt_etcd_drop_token(struct tt_etcd_registry *er);

/* Back-off between tries while etcd does not answer: doubled from the
 * first value up to the cap, so a returning etcd is seen within about a
 * second.  tt_etcd_next_backoff(0) is the first value. */
#define TT_ETCD_BACKOFF_FIRST_MS 100
#define TT_ETCD_BACKOFF_CAP_MS 1000

static inline uint32_t
tt_etcd_next_backoff(uint32_t b)
{
    if (b == 0) {
        return TT_ETCD_BACKOFF_FIRST_MS;
    }
    return b * 2 > TT_ETCD_BACKOFF_CAP_MS ? TT_ETCD_BACKOFF_CAP_MS : b * 2;
}

/* tt_etcd_http_sleep - wait ms, or less if woken or stopped.  Keeps the
 * connection open. */
void tt_etcd_http_sleep(struct tt_etcd_http *h, uint32_t ms);

/* tt_etcd_http_wake - make a tt_etcd_http_sleep, post or stream running on
 * h's thread look at its stop flag now.  Any thread; never blocks. */
void tt_etcd_http_wake(struct tt_etcd_http *h);

/* ---- codec.c ------------------------------------------------------------ */

/* tt_etcd_b64 - standard base64 with padding of data[0..len), NUL-ended,
 * allocated with tt_malloc.  NULL on ENOMEM. */
char *tt_etcd_b64(const void *data, size_t len);

/* tt_etcd_unb64 - decode standard base64; *out (tt_malloc, NUL-ended for
 * convenience) and *outlen.  false on bad input or ENOMEM (*out NULL). */
bool tt_etcd_unb64(const char *text, char **out, size_t *outlen);

/* tt_etcd_prefix_end - the range_end that selects every key starting with
 * prefix, base64-encoded (tt_malloc).  NULL on ENOMEM. */
char *tt_etcd_prefix_end(const char *prefix);

/* tt_etcd_int - a JSON integer or decimal string (etcd's int64s) into
 * *v.  A missing member (NULL) is 0, etcd's way of writing zero.  false
 * if present but not a number. */
bool tt_etcd_int(const json_t *j, int64_t *v);

/* tt_etcd_dump - jansson's compact text of j into a tt_malloc buffer.  NULL
 * on ENOMEM. */
char *tt_etcd_dump(const json_t *j);

/* tt_etcd_err_text - the "error"/"message" text of an error answer, or a
 * short description of what came instead (never NULL; static or inside
 * rep->json, valid while rep is). */
const char *tt_etcd_err_text(const struct tt_etcd_reply *rep);

/*
 * tt_etcd_encode_value - the naming/endpoints value for inst:
 *   {"Op":0,"Addr":"h:p","Metadata":{"id":..,"pid":..,"state":"serving",
 *    "weight":1,"meta":{...}}}
 * as a tt_malloc string.  Errors: TETHER_EINVAL (not UTF-8),
 * TETHER_EMSGSIZE (over TT_REGISTRY_MAX_ENTRY), TETHER_ENOMEM.
 */
tether_err tt_etcd_encode_value(const tether_instance *inst, char **out);

/*
 * tt_etcd_decode_value - parse a value read under key into inst (owned;
 * service copied from the argument; id from the value's Metadata.id, else
 * the key).  Accepts the JSON above (unknown fields ignored, Metadata of
 * any shape) and a plain "host:port" (what the Go pattern writes).
 * Returns 1 (inst filled), 0 (not an instance: why is filled; "Op":1, a
 * delete marker, also gives 0 with why "") or -1 (ENOMEM).
 */
int tt_etcd_decode_value(const char *key, const char *service, const char *value, size_t len,
                         tether_instance *inst, char *why, size_t whycap);

/* tt_etcd_service_prefix - "<prefix>/<service>/" (tt_malloc). */
char *tt_etcd_service_prefix(const struct tt_etcd_cfg *cfg, const char *service);

/*
 * tt_etcd_kv - from one mvccpb.KeyValue of an answer: the key and value,
 * decoded (tt_malloc, NUL-ended), and mod_revision.  value may be absent
 * (empty).  false on a malformed kv or ENOMEM (*enomem says which).
 */
bool tt_etcd_kv(const json_t *kv, char **key, char **value, size_t *vlen, int64_t *mod_rev,
                bool *enomem);

/* ---- etcd.c ------------------------------------------------------------- */

/* What tt_etcd_range() hands over for each live instance: inst is owned by
 * the caller of fn, which may take it (tt_instance_list_push_take zeroes
 * it) or only look. */
typedef tether_err (*tt_etcd_kv_fn)(void *arg, const char *key, tether_instance *inst);

/*
 * tt_etcd_range - read every instance of service with h (within
 * budget_ms), calling fn for each one that parses (others are logged and
 * skipped); *revision gets the store revision the read saw.  Errors:
 * TETHER_EREGISTRY (unreachable or a bad answer; logged with
 * log_failures, else at debug level), TETHER_ECANCELED, TETHER_ENOMEM, or
 * what fn returned.
 */
tether_err tt_etcd_range(struct tt_etcd_http *h, const char *service, uint32_t budget_ms,
                         bool log_failures, tt_etcd_kv_fn fn, void *arg, int64_t *revision);

/* tt_etcd_endpoint - the endpoint requests go to now (for log lines). */
const char *tt_etcd_endpoint(struct tt_etcd_registry *er);

/*
 * tt_etcd_revoke_lease - revoke lease with h within budget_ms; a lease
 * already gone is fine.  Errors: as tt_etcd_post, TETHER_EREGISTRY (etcd
 * refused; logged).
 */
tether_err tt_etcd_revoke_lease(struct tt_etcd_registry *er, struct tt_etcd_http *h, int64_t lease,
                                uint32_t budget_ms);

/* ---- guardian.c --------------------------------------------------------- */

/* The environment variable that makes a process started from the
 * program's own executable the guardian (its value: the channel's fd). */
#define TT_GUARDIAN_ENV "TETHER_GUARDIAN"

/* The server's handle on its guardian; used under the registry's op_mu. */
struct tt_etcd_guardian {
    int sock;      /* the channel, -1: no guardian */
    pid_t pid;     /* -1: none */
    int pidfd;     /* to reap exactly our child; -1 if the kernel has none */
    pid_t old_pid; /* a retired guardian not reaped yet */
    int old_pidfd;
    bool failed; /* could not start one: do not try again */
};

void tt_etcd_guardian_init(struct tt_etcd_guardian *g);

/* tt_etcd_guardian_lease - tell the guardian the lease to guard (after a
 * grant, before any key is put with it), starting one first if there is
 * none (or it died).  Never fails: without a guardian, keys of a crashed
 * server go when the lease expires (logged once). */
void tt_etcd_guardian_lease(struct tt_etcd_guardian *g, const struct tt_etcd_cfg *cfg,
                            int64_t lease);

/* tt_etcd_guardian_release - the server no longer uses its lease: revoked
 * says whether it revoked it itself (the guardian exits quietly) or could
 * not (the guardian revokes it, retrying, then exits). */
void tt_etcd_guardian_release(struct tt_etcd_guardian *g, bool revoked);

/* tt_etcd_guardian_fini - let the guardian go quietly and reap it. */
void tt_etcd_guardian_fini(struct tt_etcd_guardian *g);

/* ---- watch.c ------------------------------------------------------------ */

tether_err tt_etcd_watch_create(struct tether_registry *r, const char *service,
                                struct tether_watch **out);
void tt_etcd_watch_run(struct tether_watch *w);
void tt_etcd_watch_wake(struct tether_watch *w);
void tt_etcd_watch_destroy(struct tether_watch *w);

#endif
