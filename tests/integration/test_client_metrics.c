/*
 * test_client_metrics.c - what a client knows of its instances: calls in
 * flight per instance (a parked call shows, then goes), the series as
 * Prometheus text (checked by promtool when it is there), and the same
 * series served with a server's own.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "tether/metrics.h"

static h_proc srv;

static int
teardown(void **state)
{
    (void)state;
    return h_stop(&srv);
}

static void
on_reply(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    (void)r;
    atomic_fetch_add((_Atomic int *)arg, 1);
}

static uint64_t
outstanding_of(tether_client *c, const char *addr)
{
    tether_client_instance_stats st[4];
    size_t n = 0;
    H_OK(tether_client_get_instance_stats(c, st, 4, &n));
    for (size_t i = 0; i < n && i < 4; i++) {
        if (strcmp(st[i].address, addr) == 0) {
            return st[i].outstanding;
        }
    }
    fail_msg("instance %s not in the client's stats", addr);
    return 0;
}

static void
test_instance_stats(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    const char *good = srv.addr[0];
    char url[512];
    snprintf(url, sizeof url, "static:%s,127.0.0.1:1", good);
    tether_client *c = NULL;
    H_OK(h_client_by_name(url, "calc", NULL, &c));

    tether_client_instance_stats st[4];
    size_t n = 0;
    H_OK(tether_client_get_instance_stats(c, st, 4, &n));
    assert_int_equal(n, 2);
    assert_int_equal(tether_client_get_instance_stats(NULL, st, 4, &n), TETHER_EINVAL);

    /* A parked call is in flight on the instance that took it. */
    _Atomic int done = 0;
    H_OK(tether_client_call_async_raw(c, "Test.Park", "p", 1, TETHER_CALL_TIMEOUT(H_CALL_MS),
                                      on_reply, &done));
    H_WAIT(outstanding_of(c, good) == 1, "the parked call to show as outstanding");
    tether_client *direct = h_client(good);
    /* The client counts the call once it is sent; release it only once
     * the server holds it. */
    H_WAIT(h_raw_u32(direct, "Test.Parked") == 1, "the call parked on the server");
    assert_int_equal(h_raw_u32(direct, "Test.Release"), 1);
    H_WAIT(atomic_load(&done) == 1, "the parked call's answer");
    H_WAIT(outstanding_of(c, good) == 0, "no call outstanding");

    /* A client by address has one instance: its address. */
    H_OK(tether_client_get_instance_stats(direct, st, 4, &n));
    assert_int_equal(n, 1);
    assert_string_equal(st[0].address, good);

    char *text = NULL;
    H_OK(tether_client_metrics_text(c, "calc \"x\"", &text));
    char want[400];
    snprintf(want, sizeof want,
             "tether_client_outstanding_calls{client=\"calc \\\"x\\\"\",instance=\"%s\"} 0", good);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "# TYPE tether_client_ejections_total counter"));
    assert_non_null(strstr(text, "tether_client_retries_total{client="));
    assert_non_null(strstr(text, "tether_client_ejected{client="));
    /* promtool (Debian's prometheus) accepts the text. */
    char path[256];
    snprintf(path, sizeof path, "%s/client-metrics.txt", h_tmpdir());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    if (system("command -v promtool >/dev/null 2>&1") == 0) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "promtool check metrics < '%s'", path);
        assert_int_equal(system(cmd), 0);
    }
    tether_free(text);

    /* Served with a server's own series. */
    tether_server *s = NULL;
    H_OK(tether_server_create(NULL, &s));
    H_OK(tether_server_enable_metrics(s));
    H_OK(tether_server_add_client_metrics(s, c, "calc"));
    H_OK(tether_server_listen(s, "127.0.0.1:0"));
    H_OK(tether_server_start(s));
    assert_int_equal(tether_server_add_client_metrics(s, c, "late"), TETHER_ESTATE);
    char *all = NULL;
    H_OK(tether_server_metrics_text(s, &all, NULL));
    assert_non_null(strstr(all, "tether_server_"));
    assert_non_null(strstr(all, "tether_client_outstanding_calls{client=\"calc\""));
    tether_free(all);
    tether_server_destroy(s);

    tether_client_destroy(direct);
    tether_client_destroy(c);
}

int
main(int argc, char **argv)
{
    h_child_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_instance_stats, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
