/*
 * test_metrics_api.c - the C side of include/tether/metrics.h on a real
 * server in this process, called over loopback by real clients: exact
 * per-method counts by code (calls an interceptor refuses included),
 * bytes in and out, the histogram, counts summed over several I/O threads
 * and connections, the Prometheus text, and every documented error.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "tether/metrics.h"

static void
on_echo(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    tether_call_reply_raw(call, req, len);
}

static void
on_fail(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    tether_call_fail(call, "no");
}

/* Refuses T.Refused with TETHER_EPERM; lets everything else through. */
static tether_err
refuse_before(tether_call *call, const char **why, void *arg)
{
    (void)arg;
    if (strcmp(tether_call_get_method(call), "T.Refused") == 0) {
        *why = "refused by the test";
        return TETHER_EPERM;
    }
    return TETHER_OK;
}

/* A started server with T.Echo, T.Fail and T.Refused (raw) and metrics
 * counted without a listener; *addr gets its address. */
static tether_server *
start_server(int io_threads, char *addr, size_t cap)
{
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.io_threads = io_threads;
    tether_server *srv = NULL;
    H_OK(tether_server_create(&cfg, &srv));
    H_OK(tether_server_enable_metrics(srv));
    H_OK(tether_server_add_raw_method(srv, "T.Echo", on_echo, 0, NULL));
    H_OK(tether_server_add_raw_method(srv, "T.Fail", on_fail, 0, NULL));
    H_OK(tether_server_add_raw_method(srv, "T.Refused", on_echo, 0, NULL));
    tether_server_interceptor ic = {refuse_before, NULL, NULL};
    H_OK(tether_server_add_interceptor(srv, &ic));
    H_OK(tether_server_listen(srv, "127.0.0.1:0"));
    /* Not started yet: nothing to read. */
    tether_method_stats st;
    assert_int_equal(tether_server_method_stats(srv, 0, &st), TETHER_ESTATE);
    assert_int_equal(tether_server_method_count(srv), 0);
    H_OK(tether_server_start(srv));
    H_OK(tether_server_get_address(srv, 0, addr, cap));
    return srv;
}

static int
find_method(const tether_server *srv, const char *name, tether_method_stats *out)
{
    for (size_t i = 0; i < tether_server_method_count(srv); i++) {
        H_OK(tether_server_method_stats(srv, i, out));
        if (strcmp(out->method, name) == 0) {
            return 1;
        }
    }
    return 0;
}

static void
call_n(tether_client *c, const char *method, int n, tether_err want)
{
    for (int i = 0; i < n; i++) {
        uint8_t *out = NULL;
        size_t out_len = 0;
        char *errtext = NULL;
        tether_err rc =
            tether_client_call_raw(c, method, "hello", 5, &out, &out_len, NULL, &errtext);
        assert_int_equal(rc, want);
        tether_free(out);
        tether_free(errtext);
    }
}

static uint64_t
bucket_total(const tether_method_stats *st)
{
    uint64_t n = 0;
    for (size_t i = 0; i <= TETHER_METRICS_BUCKETS; i++) {
        n += st->latency_buckets[i];
    }
    return n;
}

/* Latencies reach the histogram at the end of the I/O thread's batch, a
 * moment after the call is counted and answered. */
static void
wait_timed(const tether_server *srv, const char *name, uint64_t n)
{
    tether_method_stats st;
    H_WAIT(find_method(srv, name, &st) && bucket_total(&st) == n, "the latencies in the histogram");
}

static void
test_counts_by_method_and_code(void **state)
{
    (void)state;
    char addr[128];
    tether_server *srv = start_server(1, addr, sizeof addr);
    tether_client *c = NULL;
    H_OK(tether_client_create(addr, NULL, &c));
    call_n(c, "T.Echo", 10, TETHER_OK);
    call_n(c, "T.Fail", 3, TETHER_EREMOTE);
    call_n(c, "T.Refused", 2, TETHER_EPERM);
    call_n(c, "T.Nope", 1, TETHER_ENOMETHOD); /* no method: not counted */
    tether_client_destroy(c);
    wait_timed(srv, "T.Echo", 10);

    tether_method_stats st;
    assert_true(find_method(srv, "T.Echo", &st));
    assert_int_equal(st.calls, 10);
    assert_int_equal(st.by_code[TETHER_OK], 10);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.bytes_in, 50);
    assert_int_equal(st.bytes_out, 50);
    assert_int_equal(bucket_total(&st), 10);
    assert_true(st.latency_sum_ns > 0);
    assert_true(find_method(srv, "T.Fail", &st));
    assert_int_equal(st.calls, 3);
    assert_int_equal(st.by_code[TETHER_EREMOTE], 3);
    assert_int_equal(st.by_code[TETHER_OK], 0);
    /* Calls are counted before any interceptor runs, so those an
     * interceptor refuses count too, with the code their callers got. */
    assert_true(find_method(srv, "T.Refused", &st));
    assert_int_equal(st.calls, 2);
    assert_int_equal(st.by_code[TETHER_EPERM], 2);
    assert_int_equal(st.in_flight, 0);
    assert_true(find_method(srv, "_tether.Describe", &st));
    assert_int_equal(st.calls, 0);
    assert_int_equal(tether_server_method_stats(srv, tether_server_method_count(srv), &st),
                     TETHER_ENOENT);

    char *text = NULL;
    size_t len = 0;
    H_OK(tether_server_metrics_text(srv, &text, &len));
    assert_int_equal(strlen(text), len);
    assert_non_null(
        strstr(text, "\ntether_server_calls_total{method=\"T.Echo\",code=\"OK\"} 10\n"));
    assert_non_null(
        strstr(text, "tether_server_calls_total{method=\"T.Fail\",code=\"EREMOTE\"} 3\n"));
    assert_non_null(
        strstr(text, "tether_server_calls_total{method=\"T.Refused\",code=\"EPERM\"} 2\n"));
    assert_non_null(strstr(text, "tether_server_call_duration_seconds_bucket{method=\"T.Echo\","
                                 "le=\"+Inf\"} 10\n"));
    assert_non_null(
        strstr(text, "tether_server_call_duration_seconds_count{method=\"T.Echo\"} 10\n"));
    assert_non_null(strstr(text, "tether_server_request_bytes_total{method=\"T.Echo\"} 50\n"));
    assert_non_null(strstr(text, "tether_server_connections_accepted_total 1\n"));
    assert_null(strstr(text, "T.Nope"));
    assert_null(strstr(text, "tether_registry_")); /* no registry: no series */
    tether_free(text);

    /* Counters only: no listener to report. */
    assert_int_equal(tether_server_metrics_address(srv, addr, sizeof addr), TETHER_ENOENT);
    tether_server_destroy(srv);
}

struct load {
    const char *addr;
    int calls;
};

static void *
load_main(void *arg)
{
    struct load *l = arg;
    tether_client *c = NULL;
    if (tether_client_create(l->addr, NULL, &c) != TETHER_OK) {
        return (void *)1;
    }
    for (int i = 0; i < l->calls; i++) {
        uint8_t *out = NULL;
        size_t n = 0;
        if (tether_client_call_raw(c, "T.Echo", "x", 1, &out, &n, NULL, NULL) != TETHER_OK) {
            tether_client_destroy(c);
            return (void *)1;
        }
        tether_free(out);
    }
    tether_client_destroy(c);
    return NULL;
}

/* Several connections spread over several I/O threads, each thread with
 * its own block of counters: the sum is exact. */
static void
test_counts_summed_over_threads(void **state)
{
    (void)state;
    char addr[128];
    tether_server *srv = start_server(3, addr, sizeof addr);
    enum { NT = 6, CALLS = 300 };
    pthread_t th[NT];
    struct load l = {addr, CALLS};
    for (int i = 0; i < NT; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, load_main, &l), 0);
    }
    for (int i = 0; i < NT; i++) {
        void *r = NULL;
        pthread_join(th[i], &r);
        assert_null(r);
    }
    wait_timed(srv, "T.Echo", NT * CALLS);
    tether_method_stats st;
    assert_true(find_method(srv, "T.Echo", &st));
    assert_int_equal(st.calls, NT * CALLS);
    assert_int_equal(st.by_code[TETHER_OK], NT * CALLS);
    assert_int_equal(bucket_total(&st), NT * CALLS);
    assert_int_equal(st.bytes_in, NT * CALLS);
    assert_int_equal(st.in_flight, 0);
    tether_server_stats ss;
    tether_server_get_stats(srv, &ss);
    assert_int_equal(ss.connections_accepted, NT);
    tether_server_destroy(srv);
}

static void
test_bucket_bounds(void **state)
{
    (void)state;
    assert_int_equal(tether_metrics_bucket_bound_ns(0), 1000);
    assert_int_equal(tether_metrics_bucket_bound_ns(1), 2500);
    assert_int_equal(tether_metrics_bucket_bound_ns(TETHER_METRICS_BUCKETS - 1), 10000000000ull);
    assert_true(tether_metrics_bucket_bound_ns(TETHER_METRICS_BUCKETS) == UINT64_MAX);
    for (size_t i = 1; i < TETHER_METRICS_BUCKETS; i++) {
        assert_true(tether_metrics_bucket_bound_ns(i) > tether_metrics_bucket_bound_ns(i - 1));
    }
}

static tether_err
nop_before(tether_call *call, const char **why, void *arg)
{
    (void)call;
    (void)why;
    (void)arg;
    return TETHER_OK;
}

static void
test_errors(void **state)
{
    (void)state;
    tether_method_stats st;
    char *text = NULL;
    char buf[128];
    assert_int_equal(tether_server_enable_metrics(NULL), TETHER_EINVAL);
    assert_int_equal(tether_server_method_stats(NULL, 0, &st), TETHER_EINVAL);
    assert_int_equal(tether_server_metrics_text(NULL, &text, NULL), TETHER_EINVAL);
    assert_int_equal(tether_registry_get_stats(NULL, NULL), TETHER_EINVAL);

    /* Metrics off: nothing to read, and the address is unknown. */
    tether_server *srv = NULL;
    H_OK(tether_server_create(NULL, &srv));
    H_OK(tether_server_add_raw_method(srv, "T.Echo", on_echo, 0, NULL));
    H_OK(tether_server_listen(srv, "127.0.0.1:0"));
    H_OK(tether_server_start(srv));
    assert_int_equal(tether_server_method_stats(srv, 0, &st), TETHER_ESTATE);
    assert_int_equal(tether_server_metrics_text(srv, &text, NULL), TETHER_ESTATE);
    assert_int_equal(tether_server_metrics_address(srv, buf, sizeof buf), TETHER_ENOENT);
    assert_int_equal(tether_server_enable_metrics(srv), TETHER_ESTATE);
    tether_server_destroy(srv);

    /* Metrics take none of the 16 interceptor places. */
    H_OK(tether_server_create(NULL, &srv));
    H_OK(tether_server_enable_metrics(srv));
    H_OK(tether_server_add_raw_method(srv, "T.Echo", on_echo, 0, NULL));
    H_OK(tether_server_listen(srv, "127.0.0.1:0"));
    tether_server_interceptor ic = {nop_before, NULL, NULL};
    for (int i = 0; i < 16; i++) {
        H_OK(tether_server_add_interceptor(srv, &ic));
    }
    H_OK(tether_server_start(srv));
    H_OK(tether_server_get_address(srv, 0, buf, sizeof buf));
    tether_client *c = NULL;
    H_OK(tether_client_create(buf, NULL, &c));
    call_n(c, "T.Echo", 3, TETHER_OK);
    tether_client_destroy(c);
    assert_true(find_method(srv, "T.Echo", &st));
    assert_int_equal(st.calls, 3);
    tether_server_destroy(srv);

    /* A bad or taken listener address fails the start, with a reason. */
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.metrics_addr = "no-port-here";
    H_OK(tether_server_create(&cfg, &srv));
    H_OK(tether_server_listen(srv, "127.0.0.1:0"));
    assert_int_equal(tether_server_start(srv), TETHER_EADDRINVAL);
    assert_non_null(strstr(tether_server_get_errmsg(srv), "metrics address"));
    tether_server_destroy(srv);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char taken[64];
    snprintf(taken, sizeof taken, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    /* The config's string is copied at create: this one may change after. */
    char copy[64];
    snprintf(copy, sizeof copy, "%s", taken);
    cfg.metrics_addr = copy;
    H_OK(tether_server_create(&cfg, &srv));
    memset(copy, 'x', sizeof copy - 1);
    H_OK(tether_server_listen(srv, "127.0.0.1:0"));
    assert_int_equal(tether_server_start(srv), TETHER_EADDRINUSE);
    tether_server_destroy(srv);
    close(fd);

    /* A free port works, and tells where it listens. */
    cfg.metrics_addr = "127.0.0.1:0";
    H_OK(tether_server_create(&cfg, &srv));
    H_OK(tether_server_listen(srv, "127.0.0.1:0"));
    H_OK(tether_server_start(srv));
    H_OK(tether_server_metrics_address(srv, buf, sizeof buf));
    assert_int_equal(strncmp(buf, "127.0.0.1:", 10), 0);
    assert_true(strtol(buf + 10, NULL, 10) > 0);
    assert_int_equal(tether_server_metrics_address(srv, buf, 4), TETHER_EMSGSIZE);
    tether_server_destroy(srv);
}

int
main(int argc, char **argv)
{
    h_child_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_by_method_and_code),
        cmocka_unit_test(test_counts_summed_over_threads),
        cmocka_unit_test(test_bucket_bounds),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
