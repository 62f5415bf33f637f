/*
 * client_int.h - what the discovery client (discovery.c) needs from the
 * single-connection client (client.c).
 */
#ifndef TT_RPC_CLIENT_INT_H
#define TT_RPC_CLIENT_INT_H

#include "tether/client.h"

struct tt_disc;

/* dst = the defaults, with the sizes and timeouts cfg sets (zero means
 * default; cfg may be NULL).  Codec and balance are the caller's to copy:
 * not every kind of client takes them. */
static inline void
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
}

/* The server on c's connection sent GOAWAY (reset when it reconnects). */
int tt_client_goaway(tether_client *c);
/* The calling thread is some client's I/O thread (callbacks run there). */
int tt_client_on_io_thread(void);

/* discovery.c */
tether_err tt_disc_create(const char *url, const char *service, const tether_client_config *cfg,
                          struct tt_disc **out);
void tt_disc_destroy(struct tt_disc *d);
size_t tt_disc_pending(struct tt_disc *d);
/* Sync call: typed when desc != NULL (reply in *msg), else raw (*out, *out_len). */
tether_err tt_disc_call(struct tt_disc *d, const char *key, const char *method,
                        const ProtobufCMessage *req, const void *data, size_t len,
                        const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg,
                        uint8_t **out, size_t *out_len, uint32_t timeout_ms, char **errtext);
tether_err tt_disc_call_async(struct tt_disc *d, tether_client *outer, const char *method,
                              const ProtobufCMessage *req, const void *data, size_t len,
                              const ProtobufCMessageDescriptor *desc, uint32_t timeout_ms,
                              tether_reply_fn fn, void *arg);

/* describe.c: the built-in method every server answers, its message type. */
#define TT_DESCRIBE_SERVICE "_tether"
#define TT_DESCRIBE_MAX_NAME 1024
extern const ProtobufCMessageDescriptor tt_string_value_descriptor;

/* client.c: the codec a client was created with. */
tether_codec tt_client_codec_kind(const tether_client *c);
/* client_codec.c: a jsonrpc call with JSON text for params and result. */
tether_err tt_client_call_json_text(tether_client *c, const char *method, const char *json_in,
                                    char **json_out, uint32_t timeout_ms, char **errtext);

/* client_codec.c: a single-address client speaking gob or jsonrpc. */
struct tt_cc;
tether_err tt_cc_create(const char *addr, const tether_client_config *cfg, struct tt_cc **out);
void tt_cc_destroy(struct tt_cc *cc);
size_t tt_cc_pending(struct tt_cc *cc);
/* Sync call: typed (desc, *msg) or, for jsonrpc only, JSON text (json_in,
 * *json_out). */
tether_err tt_cc_call(struct tt_cc *cc, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg,
                      const char *json_in, char **json_out, uint32_t timeout_ms, char **errtext);
tether_err tt_cc_call_async(struct tt_cc *cc, tether_client *outer, const char *method,
                            const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                            uint32_t timeout_ms, tether_reply_fn fn, void *arg);

#endif
