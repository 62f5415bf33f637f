/*
 * test_ops.c - the metrics layer (src/ops/) on its own: the histogram's
 * bucket index against a plain search, quantiles, per-block counters
 * summed, and both renderers (Prometheus text escaping and layout, the
 * JSON the status page reads).
 */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ops/counters.h"
#include "ops/expo.h"

static size_t
plain_bucket(uint64_t ns)
{
    for (size_t i = 0; i < TETHER_METRICS_BUCKETS; i++) {
        if (ns <= tt_hist_bounds_ns[i]) {
            return i;
        }
    }
    return TETHER_METRICS_BUCKETS;
}

static void
test_bucket_index(void **state)
{
    (void)state;
    for (uint64_t ns = 0; ns < 30000; ns++) {
        assert_int_equal(tt_hist_bucket(ns), plain_bucket(ns));
    }
    for (size_t i = 0; i < TETHER_METRICS_BUCKETS; i++) {
        uint64_t b = tt_hist_bounds_ns[i];
        assert_int_equal(tt_hist_bucket(b - 1), plain_bucket(b - 1));
        assert_int_equal(tt_hist_bucket(b), i);
        assert_int_equal(tt_hist_bucket(b + 1), plain_bucket(b + 1));
    }
    for (int k = 0; k < 64; k++) {
        uint64_t v = 1ull << k;
        assert_int_equal(tt_hist_bucket(v), plain_bucket(v));
        assert_int_equal(tt_hist_bucket(v - 1), plain_bucket(v - 1));
        assert_int_equal(tt_hist_bucket(v + v / 3), plain_bucket(v + v / 3));
    }
    assert_int_equal(tt_hist_bucket(UINT64_MAX), TETHER_METRICS_BUCKETS);
    uint64_t x = 88172645463325252ull; /* xorshift: spread over every scale */
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t v = x >> (x % 40);
        assert_int_equal(tt_hist_bucket(v), plain_bucket(v));
    }
}

static void
test_quantile(void **state)
{
    (void)state;
    uint64_t b[TETHER_METRICS_BUCKETS + 1] = {0};
    assert_int_equal(tt_hist_quantile_ns(b, 0.5), 0);
    /* 100 calls in (5 us, 7.5 us]: the median is halfway through. */
    b[3] = 100;
    assert_int_equal(tt_hist_quantile_ns(b, 0.5), 6250);
    assert_int_equal(tt_hist_quantile_ns(b, 0.99), 7475);
    /* One slow call past the last bound: p99.9 says "at least 10 s". */
    b[TETHER_METRICS_BUCKETS] = 1;
    assert_int_equal(tt_hist_quantile_ns(b, 0.999), 10000000000ull);
}

static void
test_blocks_summed(void **state)
{
    (void)state;
    tt_counters *k = tt_counters_create(3, 4);
    assert_non_null(k);
    for (int b = 0; b < 4; b++) {
        assert_int_equal((uintptr_t)k->blocks[b] % 64, 0);
        for (int i = 0; i <= b; i++) {
            tt_mcell *c = tt_counters_cell(k, b, 1);
            tt_counters_begin(c);
            tt_counters_end(c, i % 2 == 0 ? TETHER_OK : TETHER_EREMOTE, 3000, 10, 20);
        }
    }
    /* One left in flight, one with a wrapped system error. */
    tt_counters_begin(tt_counters_cell(k, 2, 1));
    tt_counters_begin(tt_counters_cell(k, 3, 1));
    tt_counters_end(tt_counters_cell(k, 3, 1), (int)(TETHER_ESYSERR | 5), 20000000000ull, 0, 0);
    tether_method_stats st = {.method = "x"};
    tt_counters_read(k, 1, &st);
    assert_string_equal(st.method, "x");
    assert_int_equal(st.calls, 11);
    assert_int_equal(st.by_code[TETHER_OK], 6);
    assert_int_equal(st.by_code[TETHER_EREMOTE], 4);
    assert_int_equal(st.calls_other, 1);
    assert_int_equal(st.in_flight, 1);
    assert_int_equal(st.bytes_in, 100);
    assert_int_equal(st.bytes_out, 200);
    assert_int_equal(st.latency_buckets[2], 10); /* 3 us: (2.5 us, 5 us] */
    assert_int_equal(st.latency_buckets[TETHER_METRICS_BUCKETS], 1);
    tt_counters_read(k, 0, &st);
    assert_int_equal(st.calls, 0);
    tt_counters_read(k, 3, &st); /* past the end: zeros */
    assert_int_equal(st.calls, 0);
    tt_counters_destroy(k);
    tt_counters_destroy(NULL);
}

/* A snapshot with one method whose name needs escaping. */
static void
sample(tt_ops_snapshot *s, tether_method_stats *m, const char **svcs)
{
    memset(s, 0, sizeof *s);
    memset(m, 0, sizeof *m);
    m->method = "S.a\"b\\c\nd";
    m->calls = 3;
    m->by_code[TETHER_OK] = 2;
    m->by_code[TETHER_ETIMEDOUT] = 1;
    m->latency_buckets[0] = 1;
    m->latency_buckets[5] = 2;
    m->latency_sum_ns = 1500000000ull;
    m->bytes_in = 7;
    s->state = "SERVING";
    s->nmethods = 1;
    s->methods = m;
    s->nservices = 1;
    s->services = svcs;
    s->server.connections_open = 2;
}

static void
test_prometheus_text(void **state)
{
    (void)state;
    tt_ops_snapshot s;
    tether_method_stats m;
    const char *svcs[] = {"S"};
    sample(&s, &m, svcs);
    tt_buf b = {0};
    assert_int_equal(tt_ops_prometheus(&s, &b), TETHER_OK);
    assert_int_equal(tt_buf_append(&b, "", 1), TETHER_OK);
    const char *t = (const char *)b.data;
    const char *name = "method=\"S.a\\\"b\\\\c\\nd\"";
    char want[256];
    snprintf(want, sizeof want, "\ntether_server_calls_total{%s,code=\"OK\"} 2\n", name);
    assert_non_null(strstr(t, want));
    snprintf(want, sizeof want, "\ntether_server_calls_total{%s,code=\"ETIMEDOUT\"} 1\n", name);
    assert_non_null(strstr(t, want));
    assert_null(strstr(t, "code=\"EREMOTE\"")); /* never happened: no series */
    snprintf(want, sizeof want, "\ntether_server_call_duration_seconds_bucket{%s,le=\"1e-06\"} 1\n",
             name);
    assert_non_null(strstr(t, want));
    snprintf(want, sizeof want,
             "\ntether_server_call_duration_seconds_bucket{%s,le=\"2.5e-05\"} 3\n", name);
    assert_non_null(strstr(t, want));
    snprintf(want, sizeof want, "\ntether_server_call_duration_seconds_bucket{%s,le=\"+Inf\"} 3\n",
             name);
    assert_non_null(strstr(t, want));
    snprintf(want, sizeof want, "\ntether_server_call_duration_seconds_sum{%s} 1.5\n", name);
    assert_non_null(strstr(t, want));
    assert_non_null(strstr(t, "# TYPE tether_server_call_duration_seconds histogram\n"));
    assert_non_null(strstr(t, "\ntether_server_connections_open 2\n"));
    assert_null(strstr(t, "tether_registry_"));
    /* Every line is a comment or ends in a number; no line is empty. */
    assert_null(strstr(t, "\n\n"));
    tt_buf_free(&b);

    s.has_registry = 1;
    s.registry.lease_id = 0x694d7a1b2c3d4e5fll;
    s.registry.keepalive_age_ms = 1500;
    assert_int_equal(tt_ops_prometheus(&s, &b), TETHER_OK);
    assert_int_equal(tt_buf_append(&b, "", 1), TETHER_OK);
    t = (const char *)b.data;
    assert_non_null(strstr(t, "\ntether_registry_lease_id 7587855204314074719\n"));
    assert_non_null(strstr(t, "\ntether_registry_keepalive_age_seconds 1.500\n"));
    tt_buf_free(&b);
}

static void
test_vars_json(void **state)
{
    (void)state;
    tt_ops_snapshot s;
    tether_method_stats m;
    const char *svcs[] = {"S"};
    sample(&s, &m, svcs);
    tt_ops_reg regs[] = {{"calc", "127.0.0.1:1"}};
    s.has_registry = 1;
    s.registry_url = "local:";
    s.registry.lease_id = 0x694d7a1b2c3d4e5fll;
    s.regs = regs;
    s.nregs = 1;
    tt_buf b = {0};
    assert_int_equal(tt_ops_vars_json(&s, &b), TETHER_OK);
    json_error_t err;
    json_t *v = json_loadb((const char *)tt_buf_head(&b), tt_buf_size(&b), 0, &err);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "state")), "SERVING");
    json_t *m0 = json_array_get(json_object_get(v, "methods"), 0);
    assert_string_equal(json_string_value(json_object_get(m0, "method")), m.method);
    assert_int_equal(json_integer_value(json_object_get(m0, "calls")), 3);
    assert_int_equal(json_integer_value(json_object_get(m0, "errors")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(m0, "codes"), "ETIMEDOUT")),
                     1);
    json_t *r = json_object_get(v, "registry");
    assert_string_equal(json_string_value(json_object_get(r, "lease_id")), "694d7a1b2c3d4e5f");
    json_t *r0 = json_array_get(json_object_get(r, "registrations"), 0);
    assert_string_equal(json_string_value(json_object_get(r0, "address")), "127.0.0.1:1");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(v, "server"), "connections_open")), 2);
    json_decref(v);
    tt_buf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_index),  cmocka_unit_test(test_quantile),
        cmocka_unit_test(test_blocks_summed), cmocka_unit_test(test_prometheus_text),
        cmocka_unit_test(test_vars_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
