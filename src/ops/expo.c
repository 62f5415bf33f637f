/*
 * expo.c - Prometheus text (exposition format 0.0.4) and the JSON the
 * status page reads, both from one tt_ops_snapshot.
 *
 * Series names follow Prometheus's conventions: a tether_ prefix, the
 * subsystem, base units (seconds, bytes), _total on counters.  The list
 * with their meaning is docs/metrics.md; keep the two in step.
 */
#include "ops/expo.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "ops/counters.h"

/* Appends to a buffer and remembers the first failure, so the renderers
 * check once at the end instead of after every line. */
typedef struct out {
    tt_buf *b;
    tether_err rc;
} out;

static void __attribute__((format(printf, 2, 3))) put(out *o, const char *fmt, ...)
{
    if (o->rc != TETHER_OK) {
        return;
    }
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->rc = TETHER_EINTERNAL;
        return;
    }
    if ((size_t)n < sizeof small) {
        o->rc = tt_buf_append(o->b, small, (size_t)n);
        return;
    }
    /* Longer than a line usually is (a long method name): format again
     * straight into the buffer. */
    if ((o->rc = tt_buf_reserve(o->b, (size_t)n + 1)) != TETHER_OK) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf((char *)o->b->data + o->b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    o->b->len += (size_t)n;
}

/* A label value with \, " and newline escaped as the format asks. */
static void
put_label(out *o, const char *v)
{
    for (const char *p = v; *p != '\0' && o->rc == TETHER_OK; p++) {
        if (*p == '\\') {
            put(o, "\\\\");
        } else if (*p == '"') {
            put(o, "\\\"");
        } else if (*p == '\n') {
            put(o, "\\n");
        } else {
            o->rc = tt_buf_append(o->b, p, 1);
        }
    }
}

static void
family(out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{method="m"<extra>} */
static void
series_m(out *o, const char *name, const char *method, const char *extra)
{
    put(o, "%s{method=\"", name);
    put_label(o, method);
    put(o, "\"%s}", extra != NULL ? extra : "");
}

/* tether_err_name() without its "TETHER_" prefix: "OK", "EREMOTE". */
static const char *
code_label(size_t code)
{
    const char *n = tether_err_name((tether_err)code);
    return strncmp(n, "TETHER_", 7) == 0 ? n + 7 : n;
}

/* Seconds as Prometheus floats: "1e-06", "0.0025", "10". */
static void
put_seconds(out *o, uint64_t ns)
{
    put(o, "%.9g", (double)ns / 1e9);
}

static void
methods_prom(out *o, const tt_ops_snapshot *s)
{
    family(o, "tether_server_calls_total", "counter",
           "Calls finished, by method and by the code the caller got (OK or a tether_err name).");
    for (size_t i = 0; i < s->nmethods; i++) {
        const tether_method_stats *m = &s->methods[i];
        for (size_t c = 0; c < TETHER_METRICS_CODES; c++) {
            /* OK always, so every method has a series from the start;
             * error codes once they happened. */
            if (c != 0 && m->by_code[c] == 0) {
                continue;
            }
            char extra[64];
            snprintf(extra, sizeof extra, ",code=\"%s\"", code_label(c));
            series_m(o, "tether_server_calls_total", m->method, extra);
            put(o, " %llu\n", (unsigned long long)m->by_code[c]);
        }
        if (m->calls_other > 0) {
            series_m(o, "tether_server_calls_total", m->method, ",code=\"ESYSERR\"");
            put(o, " %llu\n", (unsigned long long)m->calls_other);
        }
    }
    family(o, "tether_server_calls_in_flight", "gauge", "Calls started and not yet finished.");
    for (size_t i = 0; i < s->nmethods; i++) {
        series_m(o, "tether_server_calls_in_flight", s->methods[i].method, NULL);
        put(o, " %llu\n", (unsigned long long)s->methods[i].in_flight);
    }
    family(o, "tether_server_call_duration_seconds", "histogram",
           "Time a call spent in the server, from the read of its request to the write of its "
           "answer.");
    for (size_t i = 0; i < s->nmethods; i++) {
        const tether_method_stats *m = &s->methods[i];
        uint64_t cum = 0;
        for (size_t b = 0; b <= TETHER_METRICS_BUCKETS; b++) {
            cum += m->latency_buckets[b];
            put(o, "tether_server_call_duration_seconds_bucket{method=\"");
            put_label(o, m->method);
            put(o, "\",le=\"");
            if (b < TETHER_METRICS_BUCKETS) {
                put_seconds(o, tt_hist_bounds_ns[b]);
            } else {
                put(o, "+Inf");
            }
            put(o, "\"} %llu\n", (unsigned long long)cum);
        }
        series_m(o, "tether_server_call_duration_seconds_sum", m->method, NULL);
        put(o, " ");
        put_seconds(o, m->latency_sum_ns);
        put(o, "\n");
        series_m(o, "tether_server_call_duration_seconds_count", m->method, NULL);
        put(o, " %llu\n", (unsigned long long)cum);
    }
    family(o, "tether_server_request_bytes_total", "counter",
           "Request message bytes received, by method.");
    for (size_t i = 0; i < s->nmethods; i++) {
        series_m(o, "tether_server_request_bytes_total", s->methods[i].method, NULL);
        put(o, " %llu\n", (unsigned long long)s->methods[i].bytes_in);
    }
    family(o, "tether_server_response_bytes_total", "counter",
           "Answer message bytes sent, by method (native encoding).");
    for (size_t i = 0; i < s->nmethods; i++) {
        series_m(o, "tether_server_response_bytes_total", s->methods[i].method, NULL);
        put(o, " %llu\n", (unsigned long long)s->methods[i].bytes_out);
    }
}

static void
server_prom(out *o, const tt_ops_snapshot *s)
{
    family(o, "tether_server_serving", "gauge", "1 while the server takes calls, else 0.");
    put(o, "tether_server_serving %d\n", strcmp(s->state, "SERVING") == 0);
    family(o, "tether_server_connections_open", "gauge", "Client connections open now.");
    put(o, "tether_server_connections_open %llu\n", (unsigned long long)s->server.connections_open);
    family(o, "tether_server_connections_accepted_total", "counter",
           "Client connections accepted.");
    put(o, "tether_server_connections_accepted_total %llu\n",
        (unsigned long long)s->server.connections_accepted);
    family(o, "tether_server_protocol_errors_total", "counter",
           "Connections closed for a broken stream (bad preface, malformed frame).");
    put(o, "tether_server_protocol_errors_total %llu\n",
        (unsigned long long)s->server.protocol_errors);
}

static void
registry_prom(out *o, const tt_ops_snapshot *s)
{
    if (!s->has_registry) {
        return;
    }
    const tether_registry_stats *r = &s->registry;
    family(o, "tether_registry_registrations", "gauge",
           "Live registrations made through the server's registry handle.");
    put(o, "tether_registry_registrations %llu\n", (unsigned long long)r->registrations);
    family(o, "tether_registry_lease_id", "gauge",
           "The etcd lease the registrations live under; 0 for none (local registry).");
    put(o, "tether_registry_lease_id %lld\n", (long long)r->lease_id);
    family(o, "tether_registry_keepalive_age_seconds", "gauge",
           "Seconds since etcd last answered a keep-alive; -1 before the first.");
    if (r->keepalive_age_ms < 0) {
        put(o, "tether_registry_keepalive_age_seconds -1\n");
    } else {
        put(o, "tether_registry_keepalive_age_seconds %.3f\n", (double)r->keepalive_age_ms / 1e3);
    }
    family(o, "tether_registry_reregistrations_total", "counter",
           "Keys put again under a new lease after the old one was lost.");
    put(o, "tether_registry_reregistrations_total %llu\n", (unsigned long long)r->reregistrations);
    family(o, "tether_registry_watch_resumes_total", "counter",
           "Registry watches that broke and resumed.");
    put(o, "tether_registry_watch_resumes_total %llu\n", (unsigned long long)r->watch_resumes);
}

tether_err
tt_ops_prometheus(const tt_ops_snapshot *s, tt_buf *b)
{
    out o = {b, TETHER_OK};
    methods_prom(&o, s);
    server_prom(&o, s);
    registry_prom(&o, s);
    return o.rc;
}

/* ---------------------------------------------------------------------- */
/* JSON                                                                   */

static json_t *
method_json(const tether_method_stats *m)
{
    json_t *codes = json_object();
    for (size_t c = 0; c < TETHER_METRICS_CODES && codes != NULL; c++) {
        if (m->by_code[c] > 0) {
            json_object_set_new(codes, code_label(c), json_integer((json_int_t)m->by_code[c]));
        }
    }
    if (codes != NULL && m->calls_other > 0) {
        json_object_set_new(codes, "ESYSERR", json_integer((json_int_t)m->calls_other));
    }
    uint64_t errors = m->calls - m->by_code[0];
    return json_pack("{s:s,s:I,s:I,s:I,s:o*,s:I,s:I,s:I,s:I,s:I}", "method", m->method, "calls",
                     (json_int_t)m->calls, "errors", (json_int_t)errors, "in_flight",
                     (json_int_t)m->in_flight, "codes", codes, "bytes_in", (json_int_t)m->bytes_in,
                     "bytes_out", (json_int_t)m->bytes_out, "latency_sum_ns",
                     (json_int_t)m->latency_sum_ns, "p50_ns",
                     (json_int_t)tt_hist_quantile_ns(m->latency_buckets, 0.5), "p99_ns",
                     (json_int_t)tt_hist_quantile_ns(m->latency_buckets, 0.99));
}

static int
dump_cb(const char *p, size_t n, void *arg)
{
    return tt_buf_append(arg, p, n) == TETHER_OK ? 0 : -1;
}

tether_err
tt_ops_vars_json(const tt_ops_snapshot *s, tt_buf *b)
{
    json_t *methods = json_array();
    json_t *services = json_array();
    json_t *regs = json_array();
    json_t *root = NULL;
    tether_err rc = TETHER_ENOMEM;
    if (methods == NULL || services == NULL || regs == NULL) {
        goto done;
    }
    for (size_t i = 0; i < s->nmethods; i++) {
        if (json_array_append_new(methods, method_json(&s->methods[i])) != 0) {
            goto done;
        }
    }
    for (size_t i = 0; i < s->nservices; i++) {
        if (json_array_append_new(services, json_string(s->services[i])) != 0) {
            goto done;
        }
    }
    for (size_t i = 0; i < s->nregs; i++) {
        if (json_array_append_new(regs, json_pack("{s:s,s:s}", "service", s->regs[i].service,
                                                  "address", s->regs[i].address)) != 0) {
            goto done;
        }
    }
    json_t *registry = json_null();
    if (s->has_registry) {
        /* The lease as hex text: JavaScript numbers lose 64-bit ids. */
        char lease[32];
        snprintf(lease, sizeof lease, "%llx", (unsigned long long)s->registry.lease_id);
        registry = json_pack(
            "{s:s,s:s,s:I,s:I,s:I,s:I,s:o}", "url", s->registry_url != NULL ? s->registry_url : "",
            "lease_id", lease, "keepalive_age_ms", (json_int_t)s->registry.keepalive_age_ms,
            "reregistrations", (json_int_t)s->registry.reregistrations, "watch_resumes",
            (json_int_t)s->registry.watch_resumes, "live_registrations",
            (json_int_t)s->registry.registrations, "registrations", regs);
        regs = NULL; /* stolen by "o" */
    }
    root = json_pack("{s:s,s:I,s:o,s:o,s:{s:I,s:I,s:I,s:I,s:I,s:I},s:o*}", "state", s->state,
                     "uptime_ms", (json_int_t)s->uptime_ms, "services", services, "methods",
                     methods, "server", "connections_open", (json_int_t)s->server.connections_open,
                     "connections_accepted", (json_int_t)s->server.connections_accepted,
                     "calls_started", (json_int_t)s->server.calls_started, "calls_completed",
                     (json_int_t)s->server.calls_completed, "calls_failed",
                     (json_int_t)s->server.calls_failed, "protocol_errors",
                     (json_int_t)s->server.protocol_errors, "registry", registry);
    services = methods = NULL; /* stolen, even on failure */
    if (root == NULL) {
        goto done;
    }
    /* Straight into the buffer: no copy, and no guess about which
     * allocator jansson's own strings came from. */
    rc = json_dump_callback(root, dump_cb, b, JSON_COMPACT) == 0 ? TETHER_OK : TETHER_ENOMEM;
done:
    json_decref(root);
    json_decref(methods);
    json_decref(services);
    json_decref(regs);
    return rc;
}

tether_err
tt_ops_prometheus_clients(const tt_ops_client *cl, size_t ncl, tt_buf *b)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"tether_client_outstanding_calls", "gauge", "Calls in flight to an instance now."},
        {"tether_client_ejections_total", "counter",
         "Times an instance was ejected as an outlier (failures, an unanswered ping)."},
        {"tether_client_retries_total", "counter",
         "Calls that failed on an instance and were sent to another."},
        {"tether_client_ejected", "gauge", "1 while an instance is ejected or being probed."},
    };
    out o = {b, TETHER_OK};
    for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
        family(&o, fam[f].name, fam[f].type, fam[f].help);
        for (size_t c = 0; c < ncl; c++) {
            for (size_t i = 0; i < cl[c].n; i++) {
                const tether_client_instance_stats *st = &cl[c].inst[i];
                uint64_t v = f == 0   ? st->outstanding
                             : f == 1 ? st->ejections
                             : f == 2 ? st->retries
                                      : (uint64_t)st->ejected;
                put(&o, "%s{client=\"", fam[f].name);
                put_label(&o, cl[c].name);
                put(&o, "\",instance=\"");
                put_label(&o, st->address);
                put(&o, "\"} %llu\n", (unsigned long long)v);
            }
        }
    }
    return o.rc;
}
