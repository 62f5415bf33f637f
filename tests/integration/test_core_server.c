/*
 * test_core_server.c - server features against real processes: blocking
 * methods on the worker pool, typed handlers that answer from another
 * thread, IPv4/IPv6/unix listeners, and the per-connection limits (calls
 * in flight, frame size).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calculator.pb-c.h"
#include "harness.h"

static h_proc srv;

static int
teardown(void **state)
{
    (void)state;
    return h_stop(&srv);
}

static long
port_of(const char *s)
{
    return strtol(s, NULL, 10);
}

struct done_slot {
    _Atomic int *done;
    atomic_int calls;
    tether_err err;
    int64_t got;
    size_t len;
};

static void
on_reply(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    struct done_slot *s = arg;
    s->err = r->err;
    s->len = r->len;
    if (r->err == TETHER_OK && r->msg != NULL) {
        s->got = ((Google__Protobuf__Int64Value *)r->msg)->value;
    }
    tether_msg_free(r->msg);
    atomic_fetch_add(&s->calls, 1);
    atomic_fetch_add(s->done, 1);
}

/* Blocking handlers run on the worker pool: with a single I/O thread,
 * four handlers wait inside Test.Block at the same time while the I/O
 * thread still answers Test.Blocked and Test.Open on the same connection.
 * (Were they run on the I/O thread, the first would stall everything and
 * the wait below would time out.) */
static void
test_blocking_methods_on_worker_pool(void **state)
{
    (void)state;
    enum { N = 4 };
    h_server_opts opts = {.listen = {"127.0.0.1:0"}, .io_threads = 1, .worker_threads = N};
    h_spawn_server(&srv, &opts);
    tether_client *c = h_client(srv.addr[0]);
    struct done_slot s[N];
    _Atomic int done = 0;
    memset(s, 0, sizeof(s));
    for (int i = 0; i < N; i++) {
        s[i].done = &done;
        H_OK(tether_client_call_async_raw(c, "Test.Block", "blk", 3, TETHER_CALL_TIMEOUT(H_CALL_MS),
                                          on_reply, &s[i]));
    }
    H_WAIT(h_raw_u32(c, "Test.Blocked") == N, "four handlers blocked at once on the pool");
    /* Other methods, typed ones included, are still served meanwhile. */
    assert_int_equal(h_add(c, 2, 2), 4);
    assert_int_equal(atomic_load(&done), 0);
    assert_int_equal(h_raw_u32(c, "Test.Open"), 0);
    H_WAIT(atomic_load(&done) == N, "blocked calls to finish");
    for (int i = 0; i < N; i++) {
        H_OK(s[i].err);
        assert_int_equal(s[i].len, 3);
    }

    /* A typed blocking method (Calculator.Mul) answers correctly, many at
     * once. */
    enum { M = 200 };
    struct done_slot *m = calloc(M, sizeof(*m));
    assert_non_null(m);
    _Atomic int mdone = 0;
    for (int i = 0; i < M; i++) {
        Args a = ARGS__INIT;
        a.a = i;
        a.b = -3;
        m[i].done = &mdone;
        H_OK(tether_client_call_async(c, "Calculator.Mul", &a.base,
                                      &google__protobuf__int64_value__descriptor,
                                      TETHER_CALL_TIMEOUT(H_CALL_MS), on_reply, &m[i]));
    }
    H_WAIT(atomic_load(&mdone) == M, "blocking typed calls");
    for (int i = 0; i < M; i++) {
        H_OK(m[i].err);
        assert_int_equal(m[i].got, -3 * i);
    }
    tether_client_destroy(c);
    free(m);
}

/* A typed handler that answers later from a thread of its own
 * (Calculator.Sub in the test server). */
static void
test_typed_reply_from_other_thread(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    tether_client *c = h_client(srv.addr[0]);
    enum { N = 300 };
    struct done_slot *s = calloc(N, sizeof(*s));
    assert_non_null(s);
    _Atomic int done = 0;
    for (int i = 0; i < N; i++) {
        Args a = ARGS__INIT;
        a.a = 1000;
        a.b = i;
        s[i].done = &done;
        H_OK(tether_client_call_async(c, "Calculator.Sub", &a.base,
                                      &google__protobuf__int64_value__descriptor,
                                      TETHER_CALL_TIMEOUT(H_CALL_MS), on_reply, &s[i]));
    }
    H_WAIT(atomic_load(&done) == N, "replies from the handler threads");
    for (int i = 0; i < N; i++) {
        H_OK(s[i].err);
        assert_int_equal(s[i].got, 1000 - i);
    }
    /* And a sync one. */
    Args a = ARGS__INIT;
    a.a = 5;
    a.b = 8;
    ProtobufCMessage *reply = NULL;
    H_OK(tether_client_call(c, "Calculator.Sub", &a.base,
                            &google__protobuf__int64_value__descriptor, &reply,
                            TETHER_CALL_TIMEOUT(H_CALL_MS), NULL));
    assert_int_equal(((Google__Protobuf__Int64Value *)reply)->value, -3);
    tether_msg_free(reply);
    tether_client_destroy(c);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&s[i].calls), 1);
    }
    free(s);
}

/* One server on an IPv4 port, an IPv6 port and a unix socket, each bound
 * address read back and called. */
static void
test_listeners(void **state)
{
    (void)state;
    char unix_addr[300];
    h_unix_addr(unix_addr, sizeof(unix_addr), "listen.sock");
    h_server_opts opts = {.listen = {"127.0.0.1:0", "[::1]:0", unix_addr}};
    h_spawn_server(&srv, &opts);
    assert_int_equal(srv.naddr, 3);

    /* Port 0 was replaced by the chosen port. */
    assert_int_equal(strncmp(srv.addr[0], "127.0.0.1:", 10), 0);
    assert_true(port_of(srv.addr[0] + 10) > 0);
    assert_int_equal(strncmp(srv.addr[1], "[::1]:", 6), 0);
    assert_true(port_of(srv.addr[1] + 6) > 0);
    assert_string_equal(srv.addr[2], unix_addr);

    for (int i = 0; i < 3; i++) {
        tether_client *c = h_client(srv.addr[i]);
        assert_int_equal(h_add(c, i, 40), 40 + i);
        tether_client_destroy(c);
    }
}

/* More calls than max_inflight_per_conn: the excess get TETHER_ELIMIT,
 * the admitted ones complete normally, and the connection stays usable. */
static void
test_max_inflight_per_conn(void **state)
{
    (void)state;
    enum { LIMIT = 4, N = 10 };
    h_server_opts opts = {
        .listen = {"127.0.0.1:0"}, .io_threads = 1, .max_inflight_per_conn = LIMIT};
    h_spawn_server(&srv, &opts);
    tether_client *c = h_client(srv.addr[0]);
    tether_client *other = h_client(srv.addr[0]);
    struct done_slot s[N];
    _Atomic int done = 0;
    memset(s, 0, sizeof(s));
    for (int i = 0; i < N; i++) {
        s[i].done = &done;
        H_OK(tether_client_call_async_raw(c, "Test.Park", "p", 1, TETHER_CALL_TIMEOUT(H_CALL_MS),
                                          on_reply, &s[i]));
    }
    /* The requests arrive in order on one connection: the first LIMIT are
     * admitted and parked, the rest refused at once. */
    H_WAIT(atomic_load(&done) == N - LIMIT, "the excess calls to be refused");
    for (int i = 0; i < N; i++) {
        if (i < LIMIT) {
            assert_int_equal(atomic_load(&s[i].calls), 0);
        } else if (s[i].err != TETHER_ELIMIT) {
            fail_msg("call %d: got %s, want TETHER_ELIMIT", i, tether_err_name(s[i].err));
        }
    }
    /* Limits are per connection: another one is unaffected. */
    assert_int_equal(h_raw_u32(other, "Test.Parked"), LIMIT);
    assert_int_equal(h_add(other, 1, 1), 2);
    assert_int_equal(h_raw_u32(other, "Test.Release"), LIMIT);
    H_WAIT(atomic_load(&done) == N, "the admitted calls to complete");
    for (int i = 0; i < LIMIT; i++) {
        H_OK(s[i].err);
    }
    /* The refused calls did not hurt the connection. */
    assert_int_equal(h_add(c, 20, 3), 23);
    tether_client_destroy(other);
    tether_client_destroy(c);
}

/* A frame over max_frame_size closes that connection only; a frame of
 * exactly the limit is served. */
static void
test_max_frame_size(void **state)
{
    (void)state;
    enum { LIMIT = 64 * 1024 };
    h_server_opts opts = {.listen = {"127.0.0.1:0"}, .io_threads = 1, .max_frame_size = LIMIT};
    h_spawn_server(&srv, &opts);
    tether_client *bystander = h_client(srv.addr[0]);
    tether_client *c = h_client(srv.addr[0]);
    assert_int_equal(h_add(c, 1, 1), 2);

    /* Request frame = 20-byte header + name + context + body. */
    const char *name = "Test.Echo";
    size_t at_limit = LIMIT - H_FRAME_HDR - strlen(name) - H_CALL_CTX;
    uint8_t *body = malloc(at_limit + 1);
    assert_non_null(body);
    memset(body, 'z', at_limit + 1);
    uint8_t *out = NULL;
    size_t out_len = 0;
    H_OK(tether_client_call_raw(c, name, body, at_limit, &out, &out_len,
                                TETHER_CALL_TIMEOUT(H_CALL_MS), NULL));
    assert_int_equal(out_len, at_limit);
    tether_free(out);
    out = NULL;

    /* One byte more: the server refuses it and drops the connection; the
     * call fails (it must not hang until its timeout). */
    uint64_t t0 = h_now_ms();
    tether_err e = tether_client_call_raw(c, name, body, at_limit + 1, &out, &out_len,
                                          TETHER_CALL_TIMEOUT(H_CALL_MS), NULL);
    if (e != TETHER_ECONNRESET && e != TETHER_EMSGSIZE) {
        fail_msg("oversized call: got %s, want TETHER_ECONNRESET or TETHER_EMSGSIZE",
                 tether_err_name(e));
    }
    assert_true(h_now_ms() - t0 < H_CALL_MS);
    tether_free(out);

    /* The other connection never noticed; the offending client reconnects
     * on its next call. */
    assert_int_equal(h_add(bystander, 3, 4), 7);
    assert_int_equal(h_add(c, 5, 6), 11);

    /* The same from a raw socket that announces a too-large frame and
     * sends it whole. */
    int fd = h_raw_connect(srv.addr[0]);
    size_t big = LIMIT + 100;
    uint8_t *frame = malloc(big);
    assert_non_null(frame);
    size_t n = h_put_frame(frame, 1, 1, name, NULL, 0);
    /* The length field announces the full size; the body is all 'z'. */
    memset(frame + n, 'z', big - n);
    frame[0] = (uint8_t)(big - 4);
    frame[1] = (uint8_t)((big - 4) >> 8);
    frame[2] = (uint8_t)((big - 4) >> 16);
    frame[3] = (uint8_t)((big - 4) >> 24);
    assert_int_equal(h_raw_send(fd, H_PREFACE, H_PREFACE_LEN), 0);
    h_raw_send(fd, frame, big);
    assert_true(h_raw_closed(fd, H_TIMEOUT_MS));
    close(fd);
    free(frame);
    free(body);

    assert_int_equal(h_add(bystander, 8, 9), 17);
    assert_true(h_alive(&srv));
    tether_client_destroy(c);
    tether_client_destroy(bystander);
}

/* The server's large allocations (Test.Allocs): made so far, held now. */
static void
big_allocs(tether_client *c, uint64_t *made, uint64_t *held)
{
    uint8_t *out = NULL;
    size_t len = 0;
    H_OK(tether_client_call_raw(c, "Test.Allocs", NULL, 0, &out, &len,
                                TETHER_CALL_TIMEOUT(H_CALL_MS), NULL));
    assert_int_equal(len, 16);
    *made = h_le64(out);
    *held = h_le64(out + 8);
    tether_free(out);
}

/* Large messages one after another reuse the I/O thread's large buffers
 * (before: each 1 MiB echo mapped, faulted in and unmapped a fresh input
 * and a fresh output buffer), and an idle server gives them back. */
static void
test_large_message_buffers(void **state)
{
    (void)state;
    h_server_opts opts = {.io_threads = 1, .count_allocs = 1};
    h_spawn_server(&srv, &opts);
    tether_client *c = h_client(srv.addr[0]);
    uint64_t made0, held0, made, held;
    big_allocs(c, &made0, &held0);

    enum { SIZE = 1024 * 1024, CALLS = 20 };
    uint8_t *body = malloc(SIZE);
    assert_non_null(body);
    for (size_t i = 0; i < SIZE; i++) {
        body[i] = (uint8_t)(i * 7);
    }
    for (int i = 0; i < CALLS + 2; i++) {
        if (i == 2) { /* after warming up */
            big_allocs(c, &made0, &held);
        }
        uint8_t *out = NULL;
        size_t len = 0;
        H_OK(tether_client_call_raw(c, "Test.Echo", body, SIZE, &out, &len,
                                    TETHER_CALL_TIMEOUT(H_CALL_MS), NULL));
        assert_int_equal(len, SIZE);
        assert_memory_equal(out, body, SIZE);
        tether_free(out);
    }
    big_allocs(c, &made, &held);
    print_message("large buffers: %llu large allocations in the server for %d 1 MiB echoes\n",
                  (unsigned long long)(made - made0), CALLS);
    /* Before: two or more per call.  A few are allowed for a buffer that
     * grows past what the warm-up left. */
    if (made - made0 > 4) {
        fail_msg("%llu large allocations for %d echoes", (unsigned long long)(made - made0), CALLS);
    }
    assert_true(held > held0);

    /* Idle: the spares go within about a second. */
    uint64_t t0 = h_now_ms();
    H_WAIT((big_allocs(c, &made, &held), held == held0), "the server's large buffers to go");
    print_message("large buffers: given back %llu ms after the last echo\n",
                  (unsigned long long)(h_now_ms() - t0));
    free(body);
    tether_client_destroy(c);
}

/* One large async call of test_large_bodies_in_order. */
struct big_call {
    uint8_t *req;
    size_t len;
    atomic_int done;
    tether_err err;
    int same; /* the reply is the request, byte for byte */
};

static void
on_big_reply(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    struct big_call *b = arg;
    b->err = r->err;
    b->same = r->err == TETHER_OK && r->len == b->len && memcmp(r->data, b->req, b->len) == 0;
    atomic_store(&b->done, 1);
}

static uint8_t *
pattern(size_t len, unsigned seed)
{
    uint8_t *p = malloc(len);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)(i * 31u + seed * 7u + (i >> 11));
    }
    return p;
}

/* Large raw bodies go from the caller's memory to the socket (the
 * client's requests, the server's answers, from the I/O thread and from a
 * worker) and only what the socket does not take at once is copied:
 * whatever the split, every byte arrives, in order.  Sizes around the
 * threshold one at a time, then many large calls in flight at once with
 * small ones between them, so the socket fills and the rest of a body
 * waits in the output buffer behind the frames queued before it. */
static void
test_large_bodies_in_order(void **state)
{
    (void)state;
    h_server_opts opts = {.io_threads = 1};
    h_spawn_server(&srv, &opts);
    tether_client *c = h_client(srv.addr[0]);
    static const char *const methods[] = {"Test.Echo", "Test.EchoBlocking"};
    static const size_t sizes[] = {65535, 65536, 65537, 300001, 1024 * 1024};
    for (size_t m = 0; m < 2; m++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            uint8_t *req = pattern(sizes[i], (unsigned)(m * 10 + i));
            uint8_t *out = NULL;
            size_t len = 0;
            H_OK(tether_client_call_raw(c, methods[m], req, sizes[i], &out, &len,
                                        TETHER_CALL_TIMEOUT(H_CALL_MS), NULL));
            assert_int_equal(len, sizes[i]);
            assert_memory_equal(out, req, sizes[i]);
            tether_free(out);
            free(req);
        }
    }

    enum { N = 32 };
    static struct big_call big[N];
    static struct big_call small[N];
    for (int i = 0; i < N; i++) {
        big[i] = (struct big_call){.len = 256 * 1024 + (size_t)i * 4099};
        big[i].req = pattern(big[i].len, 100u + (unsigned)i);
        H_OK(tether_client_call_async_raw(c, methods[i % 2], big[i].req, big[i].len,
                                          TETHER_CALL_TIMEOUT(H_CALL_MS), on_big_reply, &big[i]));
        small[i] = (struct big_call){.len = 1 + (size_t)i};
        small[i].req = pattern(small[i].len, 200u + (unsigned)i);
        H_OK(tether_client_call_async_raw(c, "Test.Echo", small[i].req, small[i].len,
                                          TETHER_CALL_TIMEOUT(H_CALL_MS), on_big_reply,
                                          &small[i]));
    }
    for (int i = 0; i < N; i++) {
        H_WAIT(atomic_load(&big[i].done) && atomic_load(&small[i].done), "the large echoes");
        H_OK(big[i].err);
        H_OK(small[i].err);
        assert_true(big[i].same);
        assert_true(small[i].same);
        free(big[i].req);
        free(small[i].req);
    }
    assert_int_equal(h_add(c, 2, 3), 5); /* the connection is still in step */
    tether_client_destroy(c);
}

int
main(int argc, char **argv)
{
    h_child_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_blocking_methods_on_worker_pool, teardown),
        cmocka_unit_test_teardown(test_typed_reply_from_other_thread, teardown),
        cmocka_unit_test_teardown(test_listeners, teardown),
        cmocka_unit_test_teardown(test_max_inflight_per_conn, teardown),
        cmocka_unit_test_teardown(test_max_frame_size, teardown),
        cmocka_unit_test_teardown(test_large_message_buffers, teardown),
        cmocka_unit_test_teardown(test_large_bodies_in_order, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    h_cleanup();
    return rc;
}
