/*
 * expo.h - a server's state as text: Prometheus exposition format 0.0.4
 * (/metrics) and JSON (/vars.json, for the status page).
 *
 * Both render one tt_ops_snapshot, which the server side fills in (the
 * ops layer knows no server: it renders what it is handed).
 */
#ifndef TT_OPS_EXPO_H
#define TT_OPS_EXPO_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "tether/metrics.h"

/* One registration of the server, as the status page shows it. */
typedef struct tt_ops_reg {
    const char *service;
    const char *address;
} tt_ops_reg;

typedef struct tt_ops_snapshot {
    const char *state; /* "SERVING", "STARTING", "DRAINING", "STOPPED" */
    uint64_t uptime_ms;
    tether_server_stats server;
    size_t nmethods;
    tether_method_stats *methods; /* .method set */
    size_t nservices;
    const char *const *services;
    int has_registry;
    const char *registry_url; /* redacted; NULL when none */
    tether_registry_stats registry;
    size_t nregs;
    const tt_ops_reg *regs;
} tt_ops_snapshot;

/* tt_ops_prometheus - append every series of s to out.  Errors:
 * TETHER_ENOMEM. */
tether_err tt_ops_prometheus(const tt_ops_snapshot *s, tt_buf *out);

/* tt_ops_vars_json - append s as one JSON object to out.  Errors:
 * TETHER_ENOMEM. */
tether_err tt_ops_vars_json(const tt_ops_snapshot *s, tt_buf *out);

/* One client's instances, named, for the client series. */
typedef struct tt_ops_client {
    const char *name;
    const tether_client_instance_stats *inst;
    size_t n;
} tt_ops_client;

/* tt_ops_prometheus_clients - append the tether_client_* families for the
 * clients cl[0..ncl) (each family once, even with no client). */
tether_err tt_ops_prometheus_clients(const tt_ops_client *cl, size_t ncl, tt_buf *out);

/* The status page: a self-contained HTML document (no outside assets)
 * that polls vars.json. */
extern const char tt_ops_status_html[];

#endif
