/*
 * metrics_listener.c - a metrics listener for programs that are not a
 * tether server (tether register): the ops layer's HTTP listener serving
 * what the program's callback writes.
 */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "ops/http.h"
#include "tether/metrics.h"

struct tether_metrics_listener {
    tt_http *http;
    tether_metrics_fn fn;
    void *arg;
};

static tether_err
serve(void *arg, const char *path, int *status, const char **ctype, tt_buf *body)
{
    struct tether_metrics_listener *l = arg;
    int metrics = strcmp(path, "/metrics") == 0;
    if (!metrics && strcmp(path, "/health") != 0) {
        static const char msg[] = "not found: try /metrics or /health\n";
        *status = 404;
        return tt_buf_append(body, msg, sizeof msg - 1);
    }
    char *text = NULL;
    int healthy = 0;
    tether_err rc = l->fn(l->arg, metrics ? &text : NULL, &healthy);
    if (rc == TETHER_OK && metrics) {
        *ctype = "text/plain; version=0.0.4; charset=utf-8";
        rc = text != NULL ? tt_buf_append(body, text, strlen(text)) : TETHER_OK;
    } else if (rc == TETHER_OK) {
        *status = healthy ? 200 : 503;
        const char *w = healthy ? "SERVING\n" : "NOT_SERVING\n";
        rc = tt_buf_append(body, w, strlen(w));
    }
    free(text); /* the program's malloc(), see tether_metrics_fn */
    return rc;
}

tether_err
tether_metrics_listen(const char *addr, tether_metrics_fn fn, void *arg,
                      tether_metrics_listener **out)
{
    if (addr == NULL || fn == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    struct tether_metrics_listener *l = tt_calloc(1, sizeof *l);
    if (l == NULL) {
        return TETHER_ENOMEM;
    }
    l->fn = fn;
    l->arg = arg;
    char why[256];
    tether_err rc = tt_http_start(addr, serve, l, &l->http, why, sizeof why);
    if (rc != TETHER_OK) {
        tt_log(TETHER_LOG_ERROR, "metrics listener on %s: %s", addr, why);
        tt_free(l);
        return rc;
    }
    *out = l;
    return TETHER_OK;
}

const char *
tether_metrics_listener_address(const tether_metrics_listener *l)
{
    return l != NULL ? tt_http_address(l->http) : "";
}

void
tether_metrics_listener_close(tether_metrics_listener *l)
{
    if (l != NULL) {
        tt_http_stop(l->http);
        tt_free(l);
    }
}
