/*
 * test_core_calls.c - calls against real server processes: many
 * concurrent async calls on one connection, out-of-order completion, every
 * server-side error kind (the connection staying usable after each), and
 * the calculator example's two binaries.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calculator.pb-c.h"
#include "harness.h"

static h_proc calc;   /* bin/calculator-server, the example binary */
static h_proc tsrv;   /* the test server (harness.h) */
static char calc_addr[300];

static int
group_setup(void **state)
{
    (void)state;
    h_unix_addr(calc_addr, sizeof(calc_addr), "calc.sock");
    h_spawn_calculator(&calc, calc_addr);
    h_spawn_server(&tsrv, NULL);
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    int a = h_stop(&calc);
    int b = h_stop(&tsrv);
    h_cleanup();
    return a != 0 ? a : b;
}

/* One asynchronous call and what its callback saw. */
struct slot {
    _Atomic int *done; /* shared count of completed calls */
    _Atomic int *order; /* shared completion counter */
    atomic_int calls;   /* callback runs for this call */
    int when;           /* completion rank (from *order) */
    int64_t want;
    int64_t got;
    tether_err err;
    char text[64];
    uint8_t data[64];
    size_t len;
};

static void
on_typed(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    struct slot *s = arg;
    s->err = r->err;
    if (r->err == TETHER_OK && r->msg != NULL &&
        r->msg->descriptor == &google__protobuf__int64_value__descriptor) {
        s->got = ((Google__Protobuf__Int64Value *)r->msg)->value;
    } else {
        s->got = INT64_MIN;
    }
    tether_msg_free(r->msg);
    snprintf(s->text, sizeof(s->text), "%s", r->errtext != NULL ? r->errtext : "");
    s->when = atomic_fetch_add(s->order, 1);
    atomic_fetch_add(&s->calls, 1);
    /* Last: the test thread reads the fields above once it sees this. */
    atomic_fetch_add(s->done, 1);
}

static void
on_raw(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    struct slot *s = arg;
    s->err = r->err;
    s->len = r->len < sizeof(s->data) ? r->len : sizeof(s->data);
    if (r->data != NULL && s->len > 0) {
        memcpy(s->data, r->data, s->len);
    }
    snprintf(s->text, sizeof(s->text), "%s", r->errtext != NULL ? r->errtext : "");
    s->when = atomic_fetch_add(s->order, 1);
    atomic_fetch_add(&s->calls, 1);
    atomic_fetch_add(s->done, 1);
}

/* (a) 1,000 async calls in flight on one connection, each with its own
 * arguments: every callback runs exactly once with the right sum. */
static void
test_thousand_async_calls(void **state)
{
    (void)state;
    enum { N = 1000 };
    struct slot *slots = calloc(N, sizeof(*slots));
    assert_non_null(slots);
    _Atomic int done = 0;
    _Atomic int order = 0;
    tether_client *c = h_client(calc_addr);
    for (int i = 0; i < N; i++) {
        Args a = ARGS__INIT;
        a.a = (int64_t)i * 1000003 - 7;
        a.b = -(int64_t)i * 31 + 123456789;
        slots[i].want = a.a + a.b;
        slots[i].done = &done;
        slots[i].order = &order;
        H_OK(tether_client_call_async(c, "Calculator.Add", &a.base,
                                      &google__protobuf__int64_value__descriptor,
                                      TETHER_CALL_TIMEOUT(H_CALL_MS), on_typed, &slots[i]));
    }
    H_WAIT(atomic_load(&done) == N, "1000 async replies");
    for (int i = 0; i < N; i++) {
        if (slots[i].err != TETHER_OK) {
            fail_msg("call %d: %s %s", i, tether_err_name(slots[i].err), slots[i].text);
        }
        if (slots[i].got != slots[i].want) {
            fail_msg("call %d: got %lld, want %lld", i, (long long)slots[i].got,
                     (long long)slots[i].want);
        }
    }
    assert_int_equal(tether_client_get_pending(c), 0);
    /* Destroying the client would complete anything still pending, so a
     * duplicate or stray callback shows up in the counts after it. */
    tether_client_destroy(c);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&slots[i].calls), 1);
    }
    assert_int_equal(atomic_load(&done), N);
    free(slots);
}

/* (b) Slow calls (answered later, from another server thread) issued
 * before fast ones (answered inline) on the same connection: the fast
 * ones complete first, and the slow ones still get their own answers. */
static void
test_out_of_order(void **state)
{
    (void)state;
    enum { N = 10 };
    struct slot slow[N];
    struct slot fast[N];
    memset(slow, 0, sizeof(slow));
    memset(fast, 0, sizeof(fast));
    _Atomic int slow_done = 0;
    _Atomic int fast_done = 0;
    _Atomic int order = 0;
    tether_client *c = h_client(tsrv.addr[0]);
    for (int i = 0; i < N; i++) {
        char tag[32];
        slow[i].done = &slow_done;
        slow[i].order = &order;
        fast[i].done = &fast_done;
        fast[i].order = &order;
        int n = snprintf(tag, sizeof(tag), "slow-%d", i);
        H_OK(tether_client_call_async_raw(c, "Test.Park", tag, (size_t)n,
                                          TETHER_CALL_TIMEOUT(H_CALL_MS), on_raw, &slow[i]));
        n = snprintf(tag, sizeof(tag), "fast-%d", i);
        H_OK(tether_client_call_async_raw(c, "Test.Echo", tag, (size_t)n,
                                          TETHER_CALL_TIMEOUT(H_CALL_MS), on_raw, &fast[i]));
    }
    H_WAIT(atomic_load(&fast_done) == N, "the fast replies");
    /* Nothing has released the slow calls yet. */
    assert_int_equal(atomic_load(&slow_done), 0);
    H_WAIT(h_raw_u32(c, "Test.Parked") == N, "all slow calls parked on the server");
    assert_int_equal(atomic_load(&slow_done), 0);
    assert_int_equal(h_raw_u32(c, "Test.Release"), N);
    H_WAIT(atomic_load(&slow_done) == N, "the slow replies");

    int last_fast = -1;
    int first_slow = 1 << 30;
    for (int i = 0; i < N; i++) {
        char tag[32];
        H_OK(fast[i].err);
        H_OK(slow[i].err);
        int n = snprintf(tag, sizeof(tag), "fast-%d", i);
        assert_int_equal(fast[i].len, n);
        assert_memory_equal(fast[i].data, tag, (size_t)n);
        n = snprintf(tag, sizeof(tag), "slow-%d", i);
        assert_int_equal(slow[i].len, n);
        assert_memory_equal(slow[i].data, tag, (size_t)n);
        last_fast = fast[i].when > last_fast ? fast[i].when : last_fast;
        first_slow = slow[i].when < first_slow ? slow[i].when : first_slow;
    }
    assert_true(last_fast < first_slow);
    tether_client_destroy(c);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&slow[i].calls), 1);
        assert_int_equal(atomic_load(&fast[i].calls), 1);
    }
}

/* A sync typed call; returns its error and leaves the server's text in
 * text (empty if none). */
static tether_err
call_calc(tether_client *c, const char *method, int64_t a, int64_t b, int64_t *out, char *text,
          size_t cap)
{
    Args args = ARGS__INIT;
    args.a = a;
    args.b = b;
    ProtobufCMessage *reply = NULL;
    char *errtext = NULL;
    tether_err e =
        tether_client_call(c, method, &args.base, &google__protobuf__int64_value__descriptor,
                           &reply, TETHER_CALL_TIMEOUT(H_CALL_MS), &errtext);
    snprintf(text, cap, "%s", errtext != NULL ? errtext : "");
    tether_free(errtext);
    if (e == TETHER_OK) {
        assert_non_null(reply);
        *out = ((Google__Protobuf__Int64Value *)reply)->value;
        tether_msg_free(reply);
    } else {
        /* No reply object comes with an error. */
        assert_null(reply);
    }
    return e;
}

/* (c) Each error the server can report reaches the caller as its own code,
 * and the connection serves the next call. */
static void
test_server_error_kinds(void **state)
{
    (void)state;
    tether_client *c = h_client(calc_addr);
    char text[256];
    int64_t v = 0;

    assert_int_equal(h_add(c, 1, 2), 3);

    H_ERR(call_calc(c, "Nope.Add", 1, 2, &v, text, sizeof(text)), TETHER_ENOSERVICE);
    assert_int_equal(h_add(c, 2, 3), 5);

    H_ERR(call_calc(c, "Calculator.Nope", 1, 2, &v, text, sizeof(text)), TETHER_ENOMETHOD);
    assert_int_equal(h_add(c, 3, 4), 7);

    /* Bytes protobuf cannot decode as Args: field 1 as a varint that never
     * ends. */
    static const uint8_t garbage[] = {0x08, 0xff, 0xff};
    uint8_t *out = NULL;
    size_t out_len = 0;
    char *errtext = NULL;
    H_ERR(tether_client_call_raw(c, "Calculator.Add", garbage, sizeof(garbage), &out, &out_len,
                                 TETHER_CALL_TIMEOUT(H_CALL_MS), &errtext),
          TETHER_EBADREQUEST);
    tether_free(errtext);
    tether_free(out);
    assert_int_equal(h_add(c, 4, 5), 9);

    H_ERR(call_calc(c, "Calculator.Div", 1, 0, &v, text, sizeof(text)), TETHER_EREMOTE);
    assert_string_equal(text, "divide by zero");
    assert_int_equal(h_add(c, 5, 6), 11);

    H_OK(call_calc(c, "Calculator.Div", 7, 2, &v, text, sizeof(text)));
    assert_int_equal(v, 3);
    H_OK(call_calc(c, "Calculator.Sub", 7, 10, &v, text, sizeof(text)));
    assert_int_equal(v, -3);
    H_OK(call_calc(c, "Calculator.Mul", -6, 7, &v, text, sizeof(text)));
    assert_int_equal(v, -42);

    /* The same errors through async calls, all in flight together with
     * good calls. */
    enum { K = 6 };
    struct slot s[K];
    memset(s, 0, sizeof(s));
    _Atomic int done = 0;
    _Atomic int order = 0;
    static const char *methods[K] = {"Nope.Add",       "Calculator.Nope", "Calculator.Div",
                                     "Calculator.Add", "Calculator.Div",  "Calculator.Add"};
    static const tether_err want[K] = {TETHER_ENOSERVICE, TETHER_ENOMETHOD, TETHER_EREMOTE,
                                       TETHER_OK,         TETHER_OK,        TETHER_EBADREQUEST};
    for (int i = 0; i < K; i++) {
        s[i].done = &done;
        s[i].order = &order;
        if (i == K - 1) {
            H_OK(tether_client_call_async_raw(c, methods[i], garbage, sizeof(garbage),
                                              TETHER_CALL_TIMEOUT(H_CALL_MS), on_raw, &s[i]));
            continue;
        }
        Args a = ARGS__INIT;
        a.a = 40 + i;
        a.b = i == 2 ? 0 : 2;
        H_OK(tether_client_call_async(c, methods[i], &a.base,
                                      &google__protobuf__int64_value__descriptor,
                                      TETHER_CALL_TIMEOUT(H_CALL_MS), on_typed, &s[i]));
    }
    H_WAIT(atomic_load(&done) == K, "async error replies");
    for (int i = 0; i < K; i++) {
        if (s[i].err != want[i]) {
            fail_msg("async %s: got %s, want %s", methods[i], tether_err_name(s[i].err),
                     tether_err_name(want[i]));
        }
    }
    assert_string_equal(s[2].text, "divide by zero");
    assert_int_equal(s[3].got, 45);
    assert_int_equal(s[4].got, 22);

    assert_int_equal(h_add(c, 100, 23), 123);
    tether_client_destroy(c);
}

/* The example's client binary against the example's server. */
static void
test_calculator_binaries(void **state)
{
    (void)state;
    const char *bin = getenv("TETHER_BIN_DIR");
    assert_non_null(bin);
    char path[1024];
    snprintf(path, sizeof(path), "%s/calculator-client", bin);
    char out[4096];
    char err[4096];

    char *add[] = {path, "--addr", calc_addr, "add", "1", "2", NULL};
    int st = h_run(add, out, err, sizeof(out));
    if (st != 0) {
        fail_msg("calculator-client add: exit %d, stderr: %s", st, err);
    }
    assert_string_equal(out, "3\n");

    char *div[] = {path, "--addr", calc_addr, "div", "1", "0", NULL};
    st = h_run(div, out, err, sizeof(out));
    assert_int_not_equal(st, 0);
    assert_true(st < 128); /* an error exit, not a crash */
    if (strstr(err, "divide by zero") == NULL) {
        fail_msg("calculator-client div 1 0: stderr \"%s\" lacks the server's error", err);
    }
}

/* Mixed use of one client: a thread making synchronous calls (which read
 * the socket themselves when nothing else is pending) while other threads
 * start asynchronous calls whose answers that reader must hand to the
 * I/O thread.  Every call must complete; nothing may hang. */
struct mixed {
    tether_client *c;
    atomic_int async_done;
    atomic_int async_bad;
    atomic_int stop;
};

static void
on_mixed(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    struct mixed *m = arg;
    if (r->err != TETHER_OK || r->msg == NULL) {
        atomic_fetch_add(&m->async_bad, 1);
    }
    tether_msg_free(r->msg);
    atomic_fetch_add(&m->async_done, 1);
}

static void *
mixed_async_thread(void *arg)
{
    struct mixed *m = arg;
    for (int i = 0; i < 2000; i++) {
        Args a = ARGS__INIT;
        a.a = i;
        a.b = 1;
        if (tether_client_call_async(m->c, "Calculator.Add", &a.base,
                                     &google__protobuf__int64_value__descriptor,
                                     TETHER_CALL_TIMEOUT(20000), on_mixed, m) != TETHER_OK) {
            atomic_fetch_add(&m->async_bad, 1);
            atomic_fetch_add(&m->async_done, 1);
        }
    }
    return NULL;
}

static void
test_mixed_sync_and_async(void **state)
{
    (void)state;
    struct mixed m;
    memset(&m, 0, sizeof m);
    m.c = h_client(calc_addr);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, mixed_async_thread, &m), 0);
    }
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(h_add(m.c, i, 2), i + 2);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    H_WAIT(atomic_load(&m.async_done) == 4000, "4000 async completions");
    assert_int_equal(atomic_load(&m.async_bad), 0);
    tether_client_destroy(m.c);
}

/* A synchronous call that reads the socket itself (nothing else was
 * pending when it started) while asynchronous answers arrive on the same
 * connection: the reader hands them to the I/O thread in bursts.  All of
 * them must reach their callbacks (a hand-off queued twice would wedge the
 * I/O thread). */
struct parked_sync {
    tether_client *c;
    tether_err err;
};

static void *
parked_sync_thread(void *arg)
{
    struct parked_sync *ps = arg;
    uint8_t *out = NULL;
    size_t len = 0;
    ps->err = tether_client_call_raw(ps->c, "Test.Park", "x", 1, &out, &len,
                                     TETHER_CALL_TIMEOUT(60000), NULL);
    tether_free(out);
    return NULL;
}

static void
test_sync_reader_hands_async_answers_over(void **state)
{
    (void)state;
    tether_client *ctl = h_client(tsrv.addr[0]);
    struct mixed m;
    memset(&m, 0, sizeof m);
    m.c = h_client(tsrv.addr[0]);
    struct parked_sync ps = {m.c, TETHER_EINTERNAL};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, parked_sync_thread, &ps), 0);
    H_WAIT(h_raw_u32(ctl, "Test.Parked") == 1, "the sync call parked on the server");
    for (int round = 0; round < 20; round++) {
        int base = atomic_load(&m.async_done);
        for (int i = 0; i < 64; i++) {
            Args a = ARGS__INIT;
            a.a = i;
            a.b = 1;
            H_OK(tether_client_call_async(m.c, "Calculator.Add", &a.base,
                                          &google__protobuf__int64_value__descriptor,
                                          TETHER_CALL_TIMEOUT(20000), on_mixed, &m));
        }
        H_WAIT(atomic_load(&m.async_done) == base + 64, "a burst of async completions");
    }
    assert_int_equal(atomic_load(&m.async_bad), 0);
    assert_int_equal(h_raw_u32(ctl, "Test.Release"), 1);
    pthread_join(th, NULL);
    H_OK(ps.err);
    tether_client_destroy(m.c);
    tether_client_destroy(ctl);
}

/* Calls the client refuses before sending anything: the error comes back,
 * *errtext is NULL, nothing is freed that was never allocated, and the
 * client still works. */
static void
test_refused_arguments(void **state)
{
    (void)state;
    tether_client *c = h_client(calc_addr);
    Args a = ARGS__INIT;
    for (int i = 0; i < 100; i++) {
        ProtobufCMessage *reply = NULL;
        char *et = NULL;
        H_ERR(tether_client_call(c, "NoDot", &a.base, &google__protobuf__int64_value__descriptor,
                                 &reply, TETHER_CALL_TIMEOUT(1000), &et),
              TETHER_EINVAL);
        assert_null(reply);
        assert_null(et);
        uint8_t *out = NULL;
        size_t len = 0;
        H_ERR(tether_client_call_raw(c, "", "x", 1, &out, &len, TETHER_CALL_TIMEOUT(1000), &et),
              TETHER_EINVAL);
        assert_null(out);
        assert_null(et);
    }
    assert_int_equal(h_add(c, 20, 22), 42);
    tether_client_destroy(c);
}

int
main(int argc, char **argv)
{
    h_child_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thousand_async_calls),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_server_error_kinds),
        cmocka_unit_test(test_calculator_binaries),
        cmocka_unit_test(test_mixed_sync_and_async),
        cmocka_unit_test(test_sync_reader_hands_async_answers_over),
        cmocka_unit_test(test_refused_arguments),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
