/*
 * server_metrics.c - a server's metrics: what it counts, how it counts
 * it, and what its HTTP listener answers.
 *
 * The server feeds the counters through the hooks in server_metrics.h,
 * on each call's I/O thread: each thread bumps its own block of counters
 * (ops/counters.h), found by the thread's index, with no lock, no
 * read-modify-write and no cache line shared with another thread, and
 * reads the clock per batch rather than per call (see the header).
 * Connection counts and protocol errors are the server's own per-thread
 * counters (tether_server_get_stats()).  Request and answer sizes are
 * noted on the call by the server (mt_in, mt_out).
 *
 * The listener's thread reads all of that while the I/O threads write it;
 * it reads the server's thread table only once the state says the
 * threads exist.
 */
#include "rpc/server_metrics.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "ops/counters.h"
#include "ops/expo.h"
#include "ops/http.h"
#include "registry/registry.h"
#include "tether/metrics.h"

tether_err
tt_server_metrics_enable(tether_server *srv, const char *addr)
{
    if (srv->metrics == NULL) {
        srv->metrics = tt_calloc(1, sizeof *srv->metrics);
        if (srv->metrics == NULL) {
            return TETHER_ENOMEM;
        }
    }
    if (addr != NULL) {
        char *copy = tt_strdup(addr);
        if (copy == NULL) {
            return TETHER_ENOMEM;
        }
        tt_free(srv->metrics->addr);
        srv->metrics->addr = copy;
    }
    /* The config keeps our copy, so reading it back never sees the
     * caller's (possibly freed) string. */
    srv->cfg.metrics_addr = srv->metrics->addr;
    return TETHER_OK;
}

tether_err
tether_server_enable_metrics(tether_server *srv)
{
    if (srv == NULL) {
        return TETHER_EINVAL;
    }
    if (atomic_load(&srv->state) != SRV_NEW) {
        return TETHER_ESTATE;
    }
    return tt_server_metrics_enable(srv, NULL);
}

void
tt_server_metrics_flush_pending(tt_mthr *mt)
{
    /* One clock read for every call the batch finished. */
    uint64_t now = tt_now_ns();
    for (uint32_t i = 0; i < mt->n; i++) {
        const tt_mpend *p = &mt->p[i];
        tt_counters_time_n(p->cell, now > p->t0 ? now - p->t0 : 0, p->n);
    }
    mt->n = 0;
}

tt_mthr *
tt_server_metrics_thread(tether_server *srv, int idx)
{
    struct tt_srv_metrics *sm = srv->metrics;
    return sm != NULL && sm->k != NULL ? &sm->thr[idx] : NULL;
}

/* ---------------------------------------------------------------------- */
/* Snapshot                                                               */

static const char *
state_word(int state)
{
    switch (state) {
    case SRV_RUNNING:
        return "SERVING";
    case SRV_DRAINING:
        return "DRAINING";
    case SRV_STOPPED:
        return "STOPPED";
    default:
        return "STARTING";
    }
}

/* Fill s from srv; s->methods and s->regs are allocated (free with
 * snap_fini).  Errors: TETHER_ENOMEM. */
static tether_err
snap_take(const tether_server *srv, tt_ops_snapshot *s)
{
    memset(s, 0, sizeof *s);
    const struct tt_srv_metrics *sm = srv->metrics;
    int state = atomic_load(&((tether_server *)srv)->state);
    s->state = state_word(state);
    s->uptime_ms = (tt_now_ns() - sm->start_ns) / 1000000u;
    if (state != SRV_NEW) {
        /* Only now do the I/O threads' counters exist. */
        tether_server_get_stats(srv, &s->server);
    }
    s->nmethods = srv->nmethods;
    s->methods = tt_calloc(s->nmethods + 1, sizeof *s->methods);
    s->regs = NULL;
    if (s->methods == NULL) {
        return TETHER_ENOMEM;
    }
    for (size_t i = 0; i < s->nmethods; i++) {
        s->methods[i].method = srv->methods[i].name;
        tt_counters_read(sm->k, i, &s->methods[i]);
    }
    s->nservices = srv->nservices;
    s->services = (const char *const *)srv->services;
    if (srv->registry != NULL) {
        s->has_registry = 1;
        /* Redacted when it is opened: no password reaches a page. */
        s->registry_url = tether_registry_get_location(srv->registry);
        tether_registry_get_stats(srv->registry, &s->registry);
        if (srv->reg_service != NULL) {
            tt_ops_reg *regs = tt_calloc((size_t)srv->nlisteners + 1, sizeof *regs);
            if (regs == NULL) {
                return TETHER_ENOMEM;
            }
            for (int i = 0; i < srv->nlisteners; i++) {
                regs[i].service = srv->reg_service;
                regs[i].address = srv->listeners[i].text;
            }
            s->regs = regs;
            s->nregs = (size_t)srv->nlisteners;
        }
    }
    return TETHER_OK;
}

static void
snap_fini(tt_ops_snapshot *s)
{
    tt_free(s->methods);
    tt_free((void *)s->regs);
}

/* ---------------------------------------------------------------------- */
/* The listener                                                           */

static tether_err
serve(void *arg, const char *path, int *status, const char **ctype, tt_buf *body)
{
    tether_server *srv = arg;
    tt_ops_snapshot s;
    tether_err rc;
    if (strcmp(path, "/health") == 0) {
        /* SERVING only while new calls are taken: a draining server tells
         * a load balancer's probe to send nothing more. */
        const char *w = state_word(atomic_load(&srv->state));
        *status = strcmp(w, "SERVING") == 0 ? 200 : 503;
        rc = tt_buf_append(body, w, strlen(w));
        return rc == TETHER_OK ? tt_buf_append(body, "\n", 1) : rc;
    }
    if (strcmp(path, "/") == 0) {
        *ctype = "text/html; charset=utf-8";
        return tt_buf_append(body, tt_ops_status_html, strlen(tt_ops_status_html));
    }
    int prom = strcmp(path, "/metrics") == 0;
    if (!prom && strcmp(path, "/vars.json") != 0) {
        static const char msg[] = "not found: try /, /metrics, /vars.json or /health\n";
        *status = 404;
        return tt_buf_append(body, msg, sizeof msg - 1);
    }
    rc = snap_take(srv, &s);
    if (rc == TETHER_OK && prom) {
        *ctype = "text/plain; version=0.0.4; charset=utf-8";
        rc = tt_ops_prometheus(&s, body);
        if (rc == TETHER_OK && srv->nmclients > 0) {
            rc = tt_client_metrics_append(srv->mclients, srv->mclient_names,
                                          (size_t)srv->nmclients, body);
        }
    } else if (rc == TETHER_OK) {
        *ctype = "application/json";
        rc = tt_ops_vars_json(&s, body);
    }
    snap_fini(&s);
    return rc;
}

tether_err
tt_server_metrics_start(tether_server *srv)
{
    struct tt_srv_metrics *sm = srv->metrics;
    if (sm == NULL || sm->k != NULL) {
        return TETHER_OK;
    }
    int n = srv->cfg.io_threads;
    tt_counters *k = tt_counters_create(srv->nmethods, n);
    /* Cache-line aligned by hand (the allocator hooks have no aligned
     * form), so no two threads' states share a line. */
    sm->thr_raw = tt_calloc(1, (size_t)n * sizeof(tt_mthr) + 64);
    if (k == NULL || sm->thr_raw == NULL) {
        tt_counters_destroy(k);
        tt_free(sm->thr_raw);
        sm->thr_raw = NULL;
        return TETHER_ENOMEM;
    }
    sm->thr = (tt_mthr *)(((uintptr_t)sm->thr_raw + 63) & ~(uintptr_t)63);
    for (int i = 0; i < n; i++) {
        sm->thr[i].cells = k->blocks[i];
    }
    sm->start_ns = tt_now_ns();
    if (sm->addr != NULL) {
        char why[256];
        tether_err rc = tt_http_start(sm->addr, serve, srv, &sm->http, why, sizeof why);
        if (rc != TETHER_OK) {
            snprintf(srv->errmsg, sizeof srv->errmsg, "%s", why);
            tt_counters_destroy(k);
            tt_free(sm->thr_raw);
            sm->thr_raw = NULL;
            return rc;
        }
    }
    /* Last: the I/O threads made after this count (each takes its
     * state from tt_server_metrics_thread). */
    sm->k = k;
    return TETHER_OK;
}

void
tt_server_metrics_fini(tether_server *srv)
{
    struct tt_srv_metrics *sm = srv->metrics;
    if (sm == NULL) {
        return;
    }
    tt_http_stop(sm->http);
    tt_counters_destroy(sm->k);
    tt_free(sm->thr_raw);
    tt_free(sm->addr);
    tt_free(sm);
    srv->metrics = NULL;
}

/* ---------------------------------------------------------------------- */
/* The C API                                                              */

size_t
tether_server_method_count(const tether_server *srv)
{
    return srv != NULL && atomic_load(&((tether_server *)srv)->state) != SRV_NEW ? srv->nmethods
                                                                                 : 0;
}

tether_err
tether_server_method_stats(const tether_server *srv, size_t idx, tether_method_stats *out)
{
    if (srv == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    if (srv->metrics == NULL || srv->metrics->k == NULL) {
        return TETHER_ESTATE;
    }
    if (idx >= srv->nmethods) {
        return TETHER_ENOENT;
    }
    out->method = srv->methods[idx].name;
    tt_counters_read(srv->metrics->k, idx, out);
    return TETHER_OK;
}

tether_err
tether_server_metrics_text(const tether_server *srv, char **out, size_t *len)
{
    if (srv == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    if (srv->metrics == NULL || srv->metrics->k == NULL) {
        return TETHER_ESTATE;
    }
    tt_ops_snapshot s;
    tt_buf b = {0};
    tether_err rc = snap_take(srv, &s);
    if (rc == TETHER_OK) {
        rc = tt_ops_prometheus(&s, &b);
    }
    if (rc == TETHER_OK && srv->nmclients > 0) {
        rc = tt_client_metrics_append(srv->mclients, srv->mclient_names, (size_t)srv->nmclients,
                                      &b);
    }
    if (rc == TETHER_OK) {
        rc = tt_buf_append(&b, "", 1); /* the NUL */
    }
    snap_fini(&s);
    if (rc != TETHER_OK) {
        tt_buf_free(&b);
        return rc;
    }
    if (len != NULL) {
        *len = tt_buf_size(&b) - 1;
    }
    *out = (char *)b.data; /* off is 0: nothing was consumed */
    return TETHER_OK;
}

tether_err
tether_server_metrics_address(const tether_server *srv, char *buf, size_t len)
{
    if (srv == NULL || buf == NULL) {
        return TETHER_EINVAL;
    }
    if (srv->metrics == NULL || srv->metrics->http == NULL) {
        return TETHER_ENOENT;
    }
    const char *a = tt_http_address(srv->metrics->http);
    if (strlen(a) + 1 > len) {
        return TETHER_EMSGSIZE;
    }
    memcpy(buf, a, strlen(a) + 1);
    return TETHER_OK;
}
