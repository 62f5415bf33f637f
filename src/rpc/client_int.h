/*
 * client_int.h - what sits behind a tether_client: one ops table, with two
 * implementations, a client by address (client.c, one engine) and a client
 * by service name (discovery.c, an engine per instance and a balancer).
 */
#ifndef TT_RPC_CLIENT_INT_H
#define TT_RPC_CLIENT_INT_H

#include "rpc/engine.h"
#include "tether/client.h"

/* What every kind of client does; requests come validated (method name,
 * timeout resolved). */
struct tether_client_instance_stats;

typedef struct tt_client_ops {
    /* call - a synchronous call; key picks the instance under hashing. */
    tether_err (*call)(tether_client *c, const tt_call_req *rq, const char *key,
                       tt_call_result *res);
    /* call_async - start a call; error: fn never runs; OK: exactly once. */
    tether_err (*call_async)(tether_client *c, const tt_call_req *rq, const char *key,
                             tether_reply_fn fn, void *arg, uint64_t *id);
    /* cancel - give up on async call id (TETHER_ENOENT: not pending). */
    tether_err (*cancel)(tether_client *c, uint64_t id);
    /* pending - calls in flight. */
    size_t (*pending)(const tether_client *c);
    /* destroy - fail what is pending with TETHER_ECLOSED and free c. */
    void (*destroy)(tether_client *c);
    /* instances - fill out[0..cap) with what c knows of its instances;
     * returns how many there are. */
    size_t (*instances)(tether_client *c, struct tether_client_instance_stats *out, size_t cap);
} tt_client_ops;

/* The part of every client the public functions use; each kind embeds it
 * first. */
#define TT_CLIENT_MAX_EXTRAS 16 /* default metadata pairs, interceptors */

struct tether_client {
    const tt_client_ops *ops;
    /* Resolved: no zero sizes or timeouts; meta and interceptors point at
     * the copies below. */
    tether_client_config cfg;
    const tt_codec_ops *codec;
    tether_meta *meta_copy; /* one block: the array, then the strings */
    tether_client_interceptor ics[TT_CLIENT_MAX_EXTRAS];
    tt_tls_ctx *tls;   /* cfg.tls loaded (NULL: plaintext); engines take references */
    char *server_name; /* cfg.tls.server_name copied (NULL: each address's host) */
};

/* tt_client_init - fill the shared part of a new client: cfg resolved
 * (zero means default; cfg may be NULL) and its metadata and interceptors
 * copied.  TETHER_EINVAL (too many, or a bad pair), TETHER_ENOMEM.
 * tt_client_fini frees what it copied. */
tether_err tt_client_init(tether_client *c, const tt_client_ops *ops,
                          const tether_client_config *cfg);
void tt_client_fini(tether_client *c);

/* tt_client_engine_liveness - the engine's probe and keep-alive settings
 * from c's resolved config (TETHER_OFF becomes 0). */
void tt_client_engine_liveness(const tether_client *c, tt_engine_config *ec);

/* discovery.c: a client by service name. */
tether_err tt_disc_create(tether_registry *reg, const char *service,
                          const tether_client_config *cfg, tether_client **out);

/* describe_server.c: the built-in method every server answers, its message type. */
#define TT_DESCRIBE_SERVICE "_tether"
#define TT_DESCRIBE_MAX_NAME 1024
extern const ProtobufCMessageDescriptor tt_string_value_descriptor;

/* client.c: the codec a client speaks. */
tether_codec tt_client_codec_kind(const tether_client *c);
/* client.c: a jsonrpc call with JSON text for params and result. */
tether_err tt_client_call_json_text(tether_client *c, const char *method, const char *json_in,
                                    char **json_out, const tether_call_opts *opts, char **errtext);
/* client.c: an asynchronous call with request bytes whatever the codec (a
 * prepared JSON request: native bytes, or jsonrpc's params text). */
tether_err tt_client_call_async_bytes(tether_client *c, const char *method, const void *req,
                                      size_t req_len, const tether_call_opts *opts,
                                      tether_reply_fn fn, void *arg);

#endif
