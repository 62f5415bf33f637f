/*
 * test_no_wait.c - TETHER_CALL_NO_WAIT: a call by service name with no
 * instance to take it fails at once with a code that says why, where a
 * plain call waits for one until its deadline.
 */
#include <stdio.h>
#include <string.h>

#include "calculator.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "harness.h"
#include "tether/client.h"

static h_proc srv;

static int
teardown(void **state)
{
    (void)state;
    h_kill(&srv);
    return 0;
}

static tether_err
add(tether_client *c, unsigned flags, uint32_t timeout_ms)
{
    Args a = ARGS__INIT;
    a.a = 2;
    a.b = 3;
    ProtobufCMessage *reply = NULL;
    tether_call_opts o = {.timeout_ms = timeout_ms, .flags = flags};
    tether_err rc = tether_client_call(
        c, "Calculator.Add", &a.base, &google__protobuf__int64_value__descriptor, &reply, &o, NULL);
    if (rc == TETHER_OK) {
        assert_int_equal(((Google__Protobuf__Int64Value *)reply)->value, 5);
        tether_msg_free(reply);
    }
    return rc;
}

/* No instance listed: ENOENT at once with the flag, after the deadline
 * without it. */
static void
test_none_listed(void **state)
{
    (void)state;
    char url[512];
    snprintf(url, sizeof url, "local:%s/reg", h_tmpdir());
    tether_client *c = NULL;
    H_OK(h_client_by_name(url, "nosuch", NULL, &c));
    uint64_t t0 = h_now_ms();
    H_ERR(add(c, TETHER_CALL_NO_WAIT, H_CALL_MS), TETHER_ENOENT);
    /* Generous: "at once" only has to be far below the deadline. */
    assert_true(h_now_ms() - t0 < 5000);
    t0 = h_now_ms();
    H_ERR(add(c, 0, 300), TETHER_ENOENT);
    assert_true(h_now_ms() - t0 >= 290);
    tether_client_destroy(c);
}

/* Listed but refusing: EAGAIN or the connect error at once, not a wait. */
static void
test_none_reachable(void **state)
{
    (void)state;
    tether_client *c = NULL;
    H_OK(h_client_by_name("static:127.0.0.1:1", "calculator", NULL, &c));
    uint64_t t0 = h_now_ms();
    tether_err rc = add(c, TETHER_CALL_NO_WAIT, H_CALL_MS);
    print_message("no instance reachable: %s\n", tether_err_name(rc));
    /* The connect is tried in the background (EAGAIN: none reachable), or
     * at once and its failure given (refused). */
    assert_true(rc == TETHER_EAGAIN || rc == TETHER_ECONNREFUSED);
    assert_true(h_now_ms() - t0 < 5000);
    tether_client_destroy(c);
}

/* With an instance the flag changes nothing. */
static void
test_instance_present(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    char url[300];
    snprintf(url, sizeof url, "static:%s", srv.addr[0]);
    tether_client *c = NULL;
    H_OK(h_client_by_name(url, "calculator", NULL, &c));
    for (int i = 0; i < 10; i++) {
        H_OK(add(c, TETHER_CALL_NO_WAIT, H_CALL_MS));
    }
    tether_client_destroy(c);
}

int
main(int argc, char **argv)
{
    h_child_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_none_listed, teardown),
        cmocka_unit_test_teardown(test_none_reachable, teardown),
        cmocka_unit_test_teardown(test_instance_present, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    h_cleanup();
    return rc;
}
