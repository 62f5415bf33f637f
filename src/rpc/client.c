/*
 * client.c - the public client functions, and the client by address.
 *
 * A tether_client is an ops table (client_int.h) with two kinds behind
 * it: a client by address, which is one engine (engine.c) speaking the
 * configured codec, and a client by service name (discovery.c).  This file
 * checks arguments once for both, resolves defaults, and maps the public
 * call forms (typed, raw; sync, async) onto one request shape.
 */
#include <string.h>

#include "codec/gob/gob.h"
#include "codec/jsonrpc/jsonrpc.h"
#include "codec/native/frame.h"
#include "core/alloc.h"
#include "net/loop_pool.h"
#include "rpc/client_int.h"

void
tether_client_config_init(tether_client_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_frame_size = 16u * 1024 * 1024;
    cfg->connect_timeout_ms = 5000;
    cfg->call_timeout_ms = 10000;
}

void
tt_client_config_resolve(tether_client_config *dst, const tether_client_config *cfg)
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
    dst->balance = cfg->balance;
    dst->codec = cfg->codec;
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
} direct_client;

static tether_err
direct_call(tether_client *c, const tt_call_req *rq, const char *key, tt_call_result *res)
{
    (void)key;
    return tt_engine_call(((direct_client *)c)->e, rq, res);
}

static tether_err
direct_call_async(tether_client *c, const tt_call_req *rq, const char *key, tether_reply_fn fn,
                  void *arg)
{
    (void)key;
    return tt_engine_call_async(((direct_client *)c)->e, rq, fn, c, arg);
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
    tt_free(c);
}

static const tt_client_ops direct_ops = {
    .call = direct_call,
    .call_async = direct_call_async,
    .pending = direct_pending,
    .destroy = direct_destroy,
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
    tt_client_config_resolve(&dc->base.cfg, cfg);
    dc->base.ops = &direct_ops;
    dc->base.codec = codec_for(dc->base.cfg.codec);
    tt_addr a;
    tether_err rc = dc->base.codec != NULL ? tt_addr_parse(addr, &a) : TETHER_EINVAL;
    if (rc == TETHER_OK) {
        tt_engine_config ec = {.ops = dc->base.codec,
                               .max_frame = dc->base.cfg.max_frame_size,
                               .connect_timeout_ms = dc->base.cfg.connect_timeout_ms};
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
        tt_free(dc);
        return rc;
    }
    *out = &dc->base;
    return TETHER_OK;
}

tether_err
tether_client_create_service(const char *registry_url, const char *service,
                             const tether_client_config *cfg, tether_client **out)
{
    if (registry_url == NULL || service == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    return tt_disc_create(registry_url, service, cfg, out);
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

size_t
tether_client_pending(const tether_client *c)
{
    return c != NULL ? c->ops->pending(c) : 0;
}

/* ---------------------------------------------------------------------- */
/* Calls                                                                  */

/* Fill rq from the public arguments; TETHER_EINVAL if they are wrong. */
static tether_err
make_req(tether_client *c, tt_call_req *rq, const char *method, const ProtobufCMessage *msg,
         const void *data, size_t len, const ProtobufCMessageDescriptor *desc,
         const tether_call_opts *opts)
{
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
    *rq = (tt_call_req){.method = method,
                        .method_len = mlen,
                        .msg = msg,
                        .data = data,
                        .len = len,
                        .desc = desc,
                        .timeout_ms =
                            opts->timeout_ms != 0 ? opts->timeout_ms : c->cfg.call_timeout_ms,
                        .meta = opts->meta,
                        .nmeta = opts->nmeta};
    return TETHER_OK;
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
    tt_call_req rq;
    tether_err rc = make_req(c, &rq, method, req, NULL, 0, reply_desc, opts);
    if (rc != TETHER_OK) {
        return rc;
    }
    tt_call_result res;
    rc = c->ops->call(c, &rq, opts != NULL ? opts->key : NULL, &res);
    if (rc == TETHER_OK) {
        *reply = res.msg;
        res.msg = NULL;
    }
    give_extras(&res, opts, errtext);
    tt_call_result_clear(&res);
    return rc;
}

/* A sync call with request bytes; the reply bytes go to *out. */
static tether_err
call_bytes(tether_client *c, const char *method, const void *req, size_t req_len, uint8_t **out,
           size_t *out_len, const tether_call_opts *opts, char **errtext)
{
    tt_call_req rq;
    tether_err rc = make_req(c, &rq, method, NULL, req, req_len, NULL, opts);
    if (rc != TETHER_OK) {
        return rc;
    }
    tt_call_result res;
    rc = c->ops->call(c, &rq, opts != NULL ? opts->key : NULL, &res);
    if (rc == TETHER_OK) {
        *out = res.data;
        *out_len = res.len;
        res.data = NULL;
    }
    give_extras(&res, opts, errtext);
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
    if (req == NULL || fn == NULL ||
        make_req(c, &rq, method, req, NULL, 0, reply_desc, opts) != TETHER_OK) {
        return TETHER_EINVAL;
    }
    return c->ops->call_async(c, &rq, opts != NULL ? opts->key : NULL, fn, arg);
}

tether_err
tether_client_call_async_raw(tether_client *c, const char *method, const void *req, size_t req_len,
                             const tether_call_opts *opts, tether_reply_fn fn, void *arg)
{
    tt_call_req rq;
    if (fn == NULL || make_req(c, &rq, method, NULL, req, req_len, NULL, opts) != TETHER_OK) {
        return TETHER_EINVAL;
    }
    if (!raw_ok(c)) {
        return TETHER_ENOTSUP;
    }
    return c->ops->call_async(c, &rq, opts != NULL ? opts->key : NULL, fn, arg);
}
