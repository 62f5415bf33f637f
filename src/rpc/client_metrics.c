/*
 * client_metrics.c - what a client knows of its instances (outstanding
 * calls, ejections, retries), read through the stats API and as
 * Prometheus text, on its own or on a server's metrics listener.
 */
#include <string.h>

#include "core/alloc.h"
#include "ops/expo.h"
#include "rpc/client_int.h"
#include "rpc/server_int.h"
#include "tether/metrics.h"

tether_err
tether_client_get_instance_stats(tether_client *c, tether_client_instance_stats *out, size_t cap,
                                 size_t *n)
{
    if (c == NULL || n == NULL || (out == NULL && cap > 0)) {
        return TETHER_EINVAL;
    }
    *n = c->ops->instances(c, out, cap);
    return TETHER_OK;
}

/* A snapshot of c's instances (tt_free it). */
static tether_err
take(tether_client *c, tether_client_instance_stats **out, size_t *n)
{
    size_t cap = 8;
    for (;;) {
        tether_client_instance_stats *st = tt_calloc(cap, sizeof *st);
        if (st == NULL) {
            return TETHER_ENOMEM;
        }
        size_t have = c->ops->instances(c, st, cap);
        if (have <= cap) {
            *out = st;
            *n = have;
            return TETHER_OK;
        }
        tt_free(st);
        cap = have + 8; /* more came meanwhile: room for them */
    }
}

tether_err
tt_client_metrics_append(tether_client *const *cs, char *const *names, size_t ncs, tt_buf *b)
{
    tt_ops_client cl[TT_MAX_METRIC_CLIENTS] = {{0}};
    size_t ncl = 0;
    tether_err rc = TETHER_OK;
    for (size_t i = 0; i < ncs && i < TT_MAX_METRIC_CLIENTS && rc == TETHER_OK; i++) {
        tether_client_instance_stats *st = NULL;
        size_t n = 0;
        rc = take(cs[i], &st, &n);
        if (rc == TETHER_OK) {
            cl[ncl++] = (tt_ops_client){.name = names[i], .inst = st, .n = n};
        }
    }
    if (rc == TETHER_OK) {
        rc = tt_ops_prometheus_clients(cl, ncl, b);
    }
    for (size_t i = 0; i < ncl; i++) {
        tt_free((void *)cl[i].inst);
    }
    return rc;
}

tether_err
tether_client_metrics_text(tether_client *c, const char *name, char **out)
{
    if (c == NULL || name == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    tt_buf b = {0};
    char *nm = (char *)name;
    tether_err rc = tt_client_metrics_append(&c, &nm, 1, &b);
    if (rc == TETHER_OK) {
        rc = tt_buf_append(&b, "", 1);
    }
    if (rc != TETHER_OK) {
        tt_buf_free(&b);
        return rc;
    }
    *out = (char *)b.data;
    return TETHER_OK;
}

tether_err
tether_server_add_client_metrics(tether_server *srv, tether_client *c, const char *name)
{
    if (srv == NULL || c == NULL || name == NULL) {
        return TETHER_EINVAL;
    }
    if (atomic_load(&srv->state) != SRV_NEW) {
        return TETHER_ESTATE;
    }
    if (srv->nmclients == TT_MAX_METRIC_CLIENTS) {
        return TETHER_ELIMIT;
    }
    char *copy = tt_strdup(name);
    if (copy == NULL) {
        return TETHER_ENOMEM;
    }
    srv->mclients[srv->nmclients] = c;
    srv->mclient_names[srv->nmclients] = copy;
    srv->nmclients++;
    return TETHER_OK;
}
