/*
 * client.c - the public client functions, and the client by address.
 *
 * A tether_client is an ops table (client_int.h) with two kinds behind
 * it: a client by address, which is one engine (engine.c) speaking the
 * configured codec, and a client by service name (discovery.c).  This file
 * checks arguments once for both, resolves defaults, and maps the public
 * call forms (typed, raw; sync, async) onto one request shape.
 */
#include <stdio.h>
#include <string.h>

#include "codec/gob/gob.h"
#include "codec/jsonrpc/jsonrpc.h"
#include "codec/native/frame.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/loop_pool.h"
#include "rpc/client_int.h"
#include "tether/metrics.h"

void
tether_client_config_init(tether_client_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_frame_size = 4u * 1024 * 1024;
    cfg->connect_timeout_ms = 5000;
    cfg->call_timeout_ms = 10000;
    cfg->probe_ms = 100;
    cfg->probe_timeout_ms = 300;
    cfg->keepalive_ms = 10000;
    cfg->eject_failures = 5;
    cfg->eject_base_ms = 1000;
    cfg->eject_max_ms = 30000;
    cfg->eject_max_percent = 50;
}

static void
config_resolve(tether_client_config *dst, const tether_client_config *cfg)
{
    tether_client_config_init(dst);
    if (cfg == NULL) {
        return;
    }
    if (cfg->max_frame_size > 0) {
        dst->max_frame_size = cfg->max_frame_size;
    }
    if (cfg->connect_timeout_ms > 0) {
        dst->connect_timeout_ms = cfg->connect_timeout_ms;
    }
    if (cfg->call_timeout_ms > 0) {
        dst->call_timeout_ms = cfg->call_timeout_ms;
    }
#define TAKE(f)                                                                                    \
    if (cfg->f > 0) {                                                                              \
        dst->f = cfg->f;                                                                           \
    }
    TAKE(probe_ms)
    TAKE(probe_timeout_ms)
    TAKE(keepalive_ms)
    TAKE(eject_failures)
    TAKE(eject_base_ms)
    TAKE(eject_max_ms)
    TAKE(eject_max_percent)
    TAKE(backup_ms)
#undef TAKE
    if (dst->eject_max_percent > 100) {
        dst->eject_max_percent = 100;
    }
    if (dst->eject_max_ms < dst->eject_base_ms) {
        dst->eject_max_ms = dst->eject_base_ms;
    }
    dst->balance = cfg->balance;
    dst->codec = cfg->codec;
    /* Strings are copied by tt_client_init (server_name, auth_token) or
     * read once (the TLS files); none are kept from the caller. */
    dst->tls.enable = cfg->tls.enable;
    dst->tls.min_version = cfg->tls.min_version;
}

void
tt_client_engine_liveness(const tether_client *c, tt_engine_config *ec)
{
    ec->probe_ms = c->cfg.probe_ms == TETHER_OFF ? 0 : c->cfg.probe_ms;
    ec->probe_timeout_ms = c->cfg.probe_timeout_ms == TETHER_OFF ? 0 : c->cfg.probe_timeout_ms;
    ec->keepalive_ms = c->cfg.keepalive_ms == TETHER_OFF ? 0 : c->cfg.keepalive_ms;
}
/* The metadata pair that carries the bearer token (auth_token). */
#define AUTH_KEY "authorization"
#define AUTH_PREFIX "Bearer "

tether_err
tt_client_init(tether_client *c, const tt_client_ops *ops, const tether_client_config *cfg)
{
    c->ops = ops;
    config_resolve(&c->cfg, cfg);
    if (cfg == NULL) {
        return TETHER_OK;
    }
    if (cfg->nmeta > TT_CLIENT_MAX_EXTRAS || cfg->ninterceptors > TT_CLIENT_MAX_EXTRAS ||
        (cfg->nmeta > 0 && cfg->meta == NULL) ||
        (cfg->ninterceptors > 0 && cfg->interceptors == NULL)) {
        return TETHER_EINVAL;
    }
    if (cfg->tls.enable) {
        char why[256];
        tether_err rc = tt_tls_ctx_create(&cfg->tls, 0, &c->tls, why, sizeof why);
        if (rc != TETHER_OK) {
            tt_log(TETHER_LOG_WARN, "%s", why);
            return rc;
        }
        if (cfg->tls.server_name != NULL &&
            (c->server_name = tt_strdup(cfg->tls.server_name)) == NULL) {
            return TETHER_ENOMEM;
        }
    }
    /* Metadata: one block holding the array and every string; the bearer
     * token, if any, is the last pair. */
    size_t nmeta = cfg->nmeta + (cfg->auth_token != NULL);
    size_t bytes = nmeta * sizeof(tether_meta);
    if (cfg->auth_token != NULL) {
        bytes += sizeof AUTH_KEY + sizeof AUTH_PREFIX + strlen(cfg->auth_token);
    }
    for (size_t i = 0; i < cfg->nmeta; i++) {
        const tether_meta *m = &cfg->meta[i];
        if (m->key == NULL || m->key[0] == '\0' || m->value == NULL) {
            return TETHER_EINVAL;
        }
        bytes += strlen(m->key) + strlen(m->value) + 2;
    }
    if (nmeta > 0) {
        c->meta_copy = tt_malloc(bytes);
        if (c->meta_copy == NULL) {
            return TETHER_ENOMEM;
        }
        char *w = (char *)(c->meta_copy + nmeta);
        for (size_t i = 0; i < cfg->nmeta; i++) {
            size_t kl = strlen(cfg->meta[i].key) + 1;
            size_t vl = strlen(cfg->meta[i].value) + 1;
            memcpy(w, cfg->meta[i].key, kl);
            c->meta_copy[i].key = w;
            memcpy(w + kl, cfg->meta[i].value, vl);
            c->meta_copy[i].value = w + kl;
            w += kl + vl;
        }
        if (cfg->auth_token != NULL) {
            tether_meta *m = &c->meta_copy[cfg->nmeta];
            memcpy(w, AUTH_KEY, sizeof AUTH_KEY);
            m->key = w;
            w += sizeof AUTH_KEY;
            memcpy(w, AUTH_PREFIX, sizeof AUTH_PREFIX - 1);
            memcpy(w + sizeof AUTH_PREFIX - 1, cfg->auth_token, strlen(cfg->auth_token) + 1);
            m->value = w;
        }
    }
    c->cfg.meta = c->meta_copy;
    c->cfg.nmeta = nmeta;
    c->cfg.auth_token = NULL; /* it lives in meta_copy only */
    for (size_t i = 0; i < cfg->ninterceptors; i++) {
        c->ics[i] = cfg->interceptors[i];
    }
    c->cfg.interceptors = c->ics;
    c->cfg.ninterceptors = cfg->ninterceptors;
    return TETHER_OK;
}

void
tt_client_fini(tether_client *c)
{
    tt_free(c->meta_copy);
    c->meta_copy = NULL;
    tt_tls_ctx_unref(c->tls);
    c->tls = NULL;
    tt_free(c->server_name);
    c->server_name = NULL;
}

tether_err
tether_client_set_io_threads(unsigned n)
{
    return tt_loop_pool_set_size(n);
}

/* ---------------------------------------------------------------------- */
/* The client by address: one engine                                      */

typedef struct direct_client {
    tether_client base;
    tt_engine *e;
    char addr[256]; /* as given, for the stats */
} direct_client;

static tether_err
direct_call(tether_client *c, const tt_call_req *rq, const char *key, tt_call_result *res)
{
    (void)key;
    return tt_engine_call(((direct_client *)c)->e, rq, res);
}

static tether_err
direct_call_async(tether_client *c, const tt_call_req *rq, const char *key, tether_reply_fn fn,
                  void *arg, uint64_t *id)
{
    (void)key;
    return tt_engine_call_async(((direct_client *)c)->e, rq, fn, c, arg, id);
}

static tether_err
direct_cancel(tether_client *c, uint64_t id)
{
    return tt_engine_cancel(((direct_client *)c)->e, id);
}

static size_t
direct_pending(const tether_client *c)
{
    return tt_engine_pending(((const direct_client *)c)->e);
}

static void
direct_destroy(tether_client *c)
{
    tt_engine_destroy(((direct_client *)c)->e);
    tt_client_fini(c);
    tt_free(c);
}

static size_t
direct_instances(tether_client *c, tether_client_instance_stats *out, size_t cap)
{
    direct_client *dc = (direct_client *)c;
    if (cap > 0) {
        memset(out, 0, sizeof *out);
        snprintf(out->address, sizeof out->address, "%s", dc->addr);
        out->outstanding = tt_engine_pending(dc->e);
    }
    return 1;
}

static const tt_client_ops direct_ops = {
    .call = direct_call,
    .call_async = direct_call_async,
    .cancel = direct_cancel,
    .pending = direct_pending,
    .destroy = direct_destroy,
    .instances = direct_instances,
};

static const tt_codec_ops *
codec_for(tether_codec k)
{
    switch (k) {
    case TETHER_CODEC_NATIVE:
        return &tt_codec_native;
    case TETHER_CODEC_GOB:
        return &tt_codec_gob;
    case TETHER_CODEC_JSONRPC:
        return &tt_codec_jsonrpc;
    default:
        return NULL;
    }
}

tether_err
tether_client_create(const char *addr, const tether_client_config *cfg, tether_client **out)
{
    if (addr == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    direct_client *dc = tt_calloc(1, sizeof *dc);
    if (dc == NULL) {
        return TETHER_ENOMEM;
    }
    tether_err rc = tt_client_init(&dc->base, &direct_ops, cfg);
    dc->base.codec = codec_for(dc->base.cfg.codec);
    snprintf(dc->addr, sizeof dc->addr, "%s", addr);
    tt_addr a;
    if (rc == TETHER_OK) {
        rc = dc->base.codec != NULL ? tt_addr_parse(addr, &a) : TETHER_EINVAL;
    }
    if (rc == TETHER_OK) {
        /* TLS by address: the certificate must carry the address's host
         * (a name or an IP), unless a server_name was given. */
        if (dc->base.tls != NULL && dc->base.server_name == NULL && addr[0] != '[' &&
            strncmp(addr, "unix:", 5) != 0 && strrchr(addr, ':') != NULL &&
            strrchr(addr, ':') != addr) {
            dc->base.server_name = tt_strndup(addr, (size_t)(strrchr(addr, ':') - addr));
            rc = dc->base.server_name != NULL ? TETHER_OK : TETHER_ENOMEM;
        }
    }
    if (rc == TETHER_OK) {
        tt_engine_config ec = {.ops = dc->base.codec,
                               .max_frame = dc->base.cfg.max_frame_size,
                               .connect_timeout_ms = dc->base.cfg.connect_timeout_ms,
                               .tls = dc->base.tls,
                               .server_name = dc->base.server_name};
        tt_client_engine_liveness(&dc->base, &ec);
        rc = tt_engine_create(&a, &ec, &dc->e);
    }
    if (rc == TETHER_OK) {
        /* Connect now so that a bad or unreachable address shows here. */
        rc = tt_engine_connect_wait(dc->e);
        if (rc != TETHER_OK) {
            tt_engine_destroy(dc->e);
        }
    }
    if (rc != TETHER_OK) {
        tt_client_fini(&dc->base);
        tt_free(dc);
        return rc;
    }
    *out = &dc->base;
    return TETHER_OK;
}

tether_err
tether_client_create_service(tether_registry *reg, const char *service,
                             const tether_client_config *cfg, tether_client **out)
{
    if (reg == NULL || service == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    return tt_disc_create(reg, service, cfg, out);
}

tether_codec
tt_client_codec_kind(const tether_client *c)
{
    return c->cfg.codec;
}

void
tether_client_destroy(tether_client *c)
{
    if (c != NULL) {
        c->ops->destroy(c);
    }
}

tether_err
tether_client_cancel(tether_client *c, uint64_t id)
{
    if (c == NULL || id == 0) {
        return TETHER_EINVAL;
    }
    return c->ops->cancel(c, id);
}

size_t
tether_client_get_pending(const tether_client *c)
{
    return c != NULL ? c->ops->pending(c) : 0;
}

/* ---------------------------------------------------------------------- */
/* Calls                                                                  */

/* What a call needs beyond its request: the merged metadata (the
 * client's defaults, then the call's own) when both exist. */
typedef struct call_scratch {
    tether_meta stack[32];
    tether_meta *heap;
} call_scratch;

/* Fill rq from the public arguments; TETHER_EINVAL if they are wrong. */
static tether_err
make_req(tether_client *c, tt_call_req *rq, const char *method, const ProtobufCMessage *msg,
         const void *data, size_t len, const ProtobufCMessageDescriptor *desc,
         const tether_call_opts *opts, call_scratch *sc)
{
    sc->heap = NULL;
    if (c == NULL || method == NULL || (data == NULL && len > 0)) {
        return TETHER_EINVAL;
    }
    size_t mlen = strlen(method);
    if (mlen == 0 || mlen > TT_FRAME_MAX_NAME || memchr(method, '.', mlen) == NULL) {
        return TETHER_EINVAL;
    }
    static const tether_call_opts none;
    if (opts == NULL) {
        opts = &none;
    }
    if (opts->nmeta > 0 && opts->meta == NULL) {
        return TETHER_EINVAL;
    }
    for (size_t i = 0; i < opts->nmeta; i++) {
        if (opts->meta[i].key == NULL || opts->meta[i].key[0] == '\0' ||
            opts->meta[i].value == NULL) {
            return TETHER_EINVAL;
        }
    }
    const tether_meta *meta = opts->meta;
    size_t nmeta = opts->nmeta;
    if (c->cfg.nmeta > 0) {
        size_t n = c->cfg.nmeta + opts->nmeta;
        tether_meta *m = sc->stack;
        if (n > sizeof sc->stack / sizeof sc->stack[0]) {
            m = sc->heap = tt_malloc(n * sizeof *m);
            if (m == NULL) {
                return TETHER_ENOMEM;
            }
        }
        memcpy(m, c->cfg.meta, c->cfg.nmeta * sizeof *m);
        if (opts->nmeta > 0) {
            memcpy(m + c->cfg.nmeta, opts->meta, opts->nmeta * sizeof *m);
        }
        meta = m;
        nmeta = n;
    }
    *rq = (tt_call_req){.method = method,
                        .method_len = mlen,
                        .msg = msg,
                        .data = data,
                        .len = len,
                        .desc = desc,
                        .timeout_ms =
                            opts->timeout_ms != 0 ? opts->timeout_ms : c->cfg.call_timeout_ms,
                        .meta = meta,
                        .nmeta = nmeta,
                        .flags = opts->flags};
    return TETHER_OK;
}

/* Run the interceptors' befores; returns the refusal, and in *passed how
 * many let the call through (their afters run at the end). */
static tether_err
run_befores(tether_client *c, const char *method, size_t *passed)
{
    *passed = 0;
    for (size_t i = 0; i < c->cfg.ninterceptors; i++) {
        const tether_client_interceptor *ic = &c->ics[i];
        tether_err rc = ic->before != NULL ? ic->before(c, method, ic->arg) : TETHER_OK;
        if (rc != TETHER_OK) {
            return rc;
        }
        *passed = i + 1;
    }
    return TETHER_OK;
}

static void
run_afters(tether_client *c, const char *method, size_t passed, tether_err status,
           uint64_t start_ns)
{
    uint64_t took = tt_now_ns() - start_ns;
    for (size_t i = passed; i-- > 0;) {
        const tether_client_interceptor *ic = &c->ics[i];
        if (ic->after != NULL) {
            ic->after(c, method, status, took, ic->arg);
        }
    }
}

/* A synchronous call through the interceptors. */
static tether_err
sync_call(tether_client *c, const tt_call_req *rq, const char *key, tt_call_result *res)
{
    memset(res, 0, sizeof *res);
    if (c->cfg.ninterceptors == 0) {
        return c->ops->call(c, rq, key, res);
    }
    uint64_t start = tt_now_ns();
    size_t passed;
    tether_err rc = run_befores(c, rq->method, &passed);
    if (rc == TETHER_OK) {
        rc = c->ops->call(c, rq, key, res);
    } else {
        res->err = rc;
    }
    run_afters(c, rq->method, passed, rc, start);
    return rc;
}

/* An asynchronous call through the interceptors: the callback is wrapped
 * so the afters run before it (one allocation, only with interceptors). */
typedef struct async_wrap {
    tether_reply_fn fn;
    void *arg;
    size_t passed;
    uint64_t start_ns;
    char method[];
} async_wrap;

static void
wrapped_done(tether_client *c, const tether_reply *r, void *arg)
{
    async_wrap *w = arg;
    run_afters(c, w->method, w->passed, r->err, w->start_ns);
    w->fn(c, r, w->arg);
    tt_free(w);
}

static tether_err
async_call(tether_client *c, const tt_call_req *rq, const tether_call_opts *opts,
           tether_reply_fn fn, void *arg)
{
    const char *key = opts != NULL ? opts->key : NULL;
    uint64_t *id = opts != NULL ? opts->id : NULL;
    if (c->cfg.ninterceptors == 0) {
        return c->ops->call_async(c, rq, key, fn, arg, id);
    }
    async_wrap *w = tt_malloc(sizeof *w + rq->method_len + 1);
    if (w == NULL) {
        return TETHER_ENOMEM;
    }
    memcpy(w->method, rq->method, rq->method_len + 1);
    w->fn = fn;
    w->arg = arg;
    w->start_ns = tt_now_ns();
    tether_err rc = run_befores(c, rq->method, &w->passed);
    if (rc == TETHER_OK) {
        rc = c->ops->call_async(c, rq, key, wrapped_done, w, id);
    }
    if (rc != TETHER_OK) {
        /* Refused, or it could not start: the callback never runs, but
         * the interceptors that let it through hear how it ended. */
        run_afters(c, w->method, w->passed, rc, w->start_ns);
        tt_free(w);
    }
    return rc;
}

/* Raw bytes have no form in Go's codecs. */
static int
raw_ok(const tether_client *c)
{
    return (c->codec->flags & TT_CODEC_RAW_BYTES) != 0;
}

/* Hand the server's text and the trailers to the caller (the rest is
 * freed by tt_call_result_clear). */
static void
give_extras(tt_call_result *res, const tether_call_opts *opts, char **errtext)
{
    if (res->err != TETHER_OK && errtext != NULL) {
        *errtext = res->text;
        res->text = NULL;
    }
    if (opts != NULL && opts->trailers != NULL) {
        *opts->trailers = res->trailers;
        if (opts->ntrailers != NULL) {
            *opts->ntrailers = res->ntrailers;
        }
        res->trailers = NULL;
    }
}

/* Clear the outputs a call may set, whatever happens next. */
static void
reset_outputs(const tether_call_opts *opts, char **errtext)
{
    if (errtext != NULL) {
        *errtext = NULL;
    }
    if (opts != NULL && opts->trailers != NULL) {
        *opts->trailers = NULL;
        if (opts->ntrailers != NULL) {
            *opts->ntrailers = 0;
        }
    }
}

static const char *
key_of(const tether_call_opts *opts)
{
    return opts != NULL ? opts->key : NULL;
}

/* Every synchronous form: build the request, call, hand over the text
 * and trailers; the reply stays in *res for the caller to take. */
static tether_err
sync_public(tether_client *c, const char *method, const ProtobufCMessage *msg, const void *data,
            size_t len, const ProtobufCMessageDescriptor *desc, const tether_call_opts *opts,
            char **errtext, tt_call_result *res)
{
    memset(res, 0, sizeof *res);
    tt_call_req rq;
    call_scratch sc;
    tether_err rc = make_req(c, &rq, method, msg, data, len, desc, opts, &sc);
    if (rc != TETHER_OK) {
        return rc;
    }
    rc = sync_call(c, &rq, key_of(opts), res);
    tt_free(sc.heap);
    give_extras(res, opts, errtext);
    return rc;
}

tether_err
tether_client_call(tether_client *c, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
                   const tether_call_opts *opts, char **errtext)
{
    reset_outputs(opts, errtext);
    if (req == NULL || reply_desc == NULL || reply == NULL) {
        return TETHER_EINVAL;
    }
    *reply = NULL;
    tt_call_result res;
    tether_err rc = sync_public(c, method, req, NULL, 0, reply_desc, opts, errtext, &res);
    if (rc == TETHER_OK) {
        *reply = res.msg;
        res.msg = NULL;
    }
    tt_call_result_clear(&res);
    return rc;
}

/* A sync call with request bytes; the reply bytes go to *out. */
static tether_err
call_bytes(tether_client *c, const char *method, const void *req, size_t req_len, uint8_t **out,
           size_t *out_len, const tether_call_opts *opts, char **errtext)
{
    tt_call_result res;
    tether_err rc = sync_public(c, method, NULL, req, req_len, NULL, opts, errtext, &res);
    if (rc == TETHER_OK) {
        *out = res.data;
        *out_len = res.len;
        res.data = NULL;
    }
    tt_call_result_clear(&res);
    return rc;
}

tether_err
tether_client_call_raw(tether_client *c, const char *method, const void *req, size_t req_len,
                       uint8_t **out, size_t *out_len, const tether_call_opts *opts, char **errtext)
{
    reset_outputs(opts, errtext);
    if (out == NULL || out_len == NULL) {
        return TETHER_EINVAL;
    }
    *out = NULL;
    *out_len = 0;
    if (c != NULL && !raw_ok(c)) {
        return TETHER_ENOTSUP;
    }
    return call_bytes(c, method, req, req_len, out, out_len, opts, errtext);
}

tether_err
tt_client_call_json_text(tether_client *c, const char *method, const char *json_in, char **json_out,
                         const tether_call_opts *opts, char **errtext)
{
    if (c->cfg.codec != TETHER_CODEC_JSONRPC) {
        return TETHER_ENOTSUP;
    }
    reset_outputs(opts, errtext);
    size_t len = 0;
    return call_bytes(c, method, json_in, strlen(json_in), (uint8_t **)json_out, &len, opts,
                      errtext);
}

tether_err
tether_client_call_async(tether_client *c, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *reply_desc, const tether_call_opts *opts,
                         tether_reply_fn fn, void *arg)
{
    tt_call_req rq;
    call_scratch sc;
    if (req == NULL || fn == NULL ||
        make_req(c, &rq, method, req, NULL, 0, reply_desc, opts, &sc) != TETHER_OK) {
        return TETHER_EINVAL;
    }
    /* The request (metadata included) is encoded before this returns. */
    tether_err rc = async_call(c, &rq, opts, fn, arg);
    tt_free(sc.heap);
    return rc;
}

tether_err
tether_client_call_async_raw(tether_client *c, const char *method, const void *req, size_t req_len,
                             const tether_call_opts *opts, tether_reply_fn fn, void *arg)
{
    tt_call_req rq;
    call_scratch sc;
    if (fn == NULL || make_req(c, &rq, method, NULL, req, req_len, NULL, opts, &sc) != TETHER_OK) {
        return TETHER_EINVAL;
    }
    tether_err rc = raw_ok(c) ? async_call(c, &rq, opts, fn, arg) : TETHER_ENOTSUP;
    tt_free(sc.heap);
    return rc;
}

tether_err
tt_client_call_async_bytes(tether_client *c, const char *method, const void *req, size_t req_len,
                           const tether_call_opts *opts, tether_reply_fn fn, void *arg)
{
    tt_call_req rq;
    call_scratch sc;
    if (fn == NULL || make_req(c, &rq, method, NULL, req, req_len, NULL, opts, &sc) != TETHER_OK) {
        return TETHER_EINVAL;
    }
    tether_err rc = async_call(c, &rq, opts, fn, arg);
    tt_free(sc.heap);
    return rc;
}
