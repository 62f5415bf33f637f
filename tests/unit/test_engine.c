/*
 * test_engine.c - the client engine against a real in-process server: a
 * pending table that grows past its first buckets with answers coming
 * back in reverse order, asynchronous deadlines from the loop's timer
 * (and late answers dropped), connect errors (refused, and a listener
 * whose accept queue is full, which times out), sync and async calls of
 * one engine mixed from several threads.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec/codec.h"
#include "core/clock.h"
#include "rpc/engine.h"
#include "tether/server.h"

/* The server side: Park holds calls until Flush answers them all, newest
 * first, each with its own request bytes. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct held {
    tether_call *call;
    uint8_t req[16];
    size_t len;
} held[4096];
static int nheld;

static void
m_park(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    struct held *h = &held[nheld++];
    h->call = call;
    h->len = len < sizeof h->req ? len : sizeof h->req;
    memcpy(h->req, req, h->len);
    pthread_mutex_unlock(&mu);
}

static void
m_flush(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    pthread_mutex_lock(&mu);
    int n = nheld;
    for (int i = n - 1; i >= 0; i--) {
        tether_call_reply_raw(held[i].call, held[i].req, held[i].len);
    }
    nheld = 0;
    pthread_mutex_unlock(&mu);
    uint32_t v = (uint32_t)n;
    tether_call_reply_raw(call, &v, sizeof v);
}

static void
m_echo(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    tether_call_reply_raw(call, req, len);
}

static tether_server *srv;
static tt_addr srv_addr;

static int
setup(void **state)
{
    (void)state;
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.io_threads = 1;
    if (tether_server_create(&cfg, &srv) != TETHER_OK ||
        tether_server_add_raw_method(srv, "T.Park", m_park, 0, NULL) != TETHER_OK ||
        tether_server_add_raw_method(srv, "T.Flush", m_flush, 0, NULL) != TETHER_OK ||
        tether_server_add_raw_method(srv, "T.Echo", m_echo, 0, NULL) != TETHER_OK ||
        tether_server_listen(srv, "127.0.0.1:0") != TETHER_OK ||
        tether_server_start(srv) != TETHER_OK) {
        return -1;
    }
    char addr[128];
    tether_server_get_address(srv, 0, addr, sizeof addr);
    return tt_addr_parse(addr, &srv_addr) == TETHER_OK ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < nheld; i++) {
        tether_call_fail(held[i].call, "test over");
    }
    nheld = 0;
    pthread_mutex_unlock(&mu);
    tether_server_shutdown(srv);
    tether_server_wait(srv);
    tether_server_destroy(srv);
    return 0;
}

static tt_engine *
engine_to(const tt_addr *a, uint32_t connect_ms)
{
    tt_engine_config cfg = {
        .ops = &tt_codec_native, .max_frame = 1 << 20, .connect_timeout_ms = connect_ms};
    tt_engine *e = NULL;
    assert_int_equal(tt_engine_create(a, &cfg, &e), TETHER_OK);
    return e;
}

static tt_call_req
req(const char *method, const void *data, size_t len, uint32_t ms)
{
    tt_call_req r = {
        .method = method, .method_len = strlen(method), .data = data, .len = len, .timeout_ms = ms};
    return r;
}

struct outcome {
    atomic_int done;
    atomic_int bad;
    atomic_int timedout;
};

static void
on_answer(tether_client *owner, const tether_reply *r, void *arg)
{
    struct outcome *o = (struct outcome *)owner;
    uintptr_t want = (uintptr_t)arg;
    if (r->err == TETHER_ETIMEDOUT) {
        atomic_fetch_add(&o->timedout, 1);
    } else if (r->err != TETHER_OK || r->len != sizeof want ||
               memcmp(r->data, &want, sizeof want) != 0) {
        atomic_fetch_add(&o->bad, 1);
    }
    atomic_fetch_add(&o->done, 1);
}

static void
wait_for(atomic_int *v, int want)
{
    uint64_t end = tt_now_ns() + 60ull * 1000000000ull;
    while (atomic_load(v) < want && tt_now_ns() < end) {
        usleep(1000);
    }
    assert_int_equal(atomic_load(v), want);
}

/* 3,000 calls in flight (the table starts with 16 buckets), answered in
 * reverse order: each callback gets its own bytes back. */
static void
test_many_pending_out_of_order(void **state)
{
    (void)state;
    enum { N = 3000 };
    tt_engine *e = engine_to(&srv_addr, 5000);
    assert_int_equal(tt_engine_connect_wait(e), TETHER_OK);
    static struct outcome o;
    for (uintptr_t i = 0; i < N; i++) {
        tt_call_req r = req("T.Park", &i, sizeof i, 60000);
        assert_int_equal(
            tt_engine_call_async(e, &r, on_answer, (tether_client *)&o, (void *)i, NULL),
            TETHER_OK);
    }
    uint64_t end = tt_now_ns() + 60ull * 1000000000ull;
    for (;;) {
        pthread_mutex_lock(&mu);
        int n = nheld;
        pthread_mutex_unlock(&mu);
        if (n == N || tt_now_ns() > end) {
            break;
        }
        usleep(1000);
    }
    assert_int_equal(tt_engine_pending(e), N);
    tt_call_req f = req("T.Flush", "", 0, 60000);
    tt_call_result res;
    assert_int_equal(tt_engine_call(e, &f, &res), TETHER_OK);
    uint32_t flushed;
    memcpy(&flushed, res.data, sizeof flushed);
    assert_int_equal(flushed, N);
    tt_call_result_clear(&res);
    wait_for(&o.done, N);
    assert_int_equal(atomic_load(&o.bad), 0);
    assert_int_equal(atomic_load(&o.timedout), 0);
    assert_int_equal(tt_engine_pending(e), 0);
    tt_engine_destroy(e);
}

/* Async deadlines come from the loop's timer; the late answer is dropped
 * (it finds no pending call) and the engine carries on. */
static void
test_async_deadline(void **state)
{
    (void)state;
    tt_engine *e = engine_to(&srv_addr, 5000);
    static struct outcome o;
    uintptr_t v = 42;
    for (int i = 0; i < 5; i++) {
        tt_call_req r = req("T.Park", &v, sizeof v, (uint32_t)(50 + 20 * i));
        assert_int_equal(
            tt_engine_call_async(e, &r, on_answer, (tether_client *)&o, (void *)v, NULL),
            TETHER_OK);
    }
    wait_for(&o.timedout, 5);
    assert_int_equal(tt_engine_pending(e), 0);
    /* The five answers arrive now and are dropped. */
    tt_call_req f = req("T.Flush", "", 0, 60000);
    tt_call_result res;
    assert_int_equal(tt_engine_call(e, &f, &res), TETHER_OK);
    tt_call_result_clear(&res);
    tt_call_req echo = req("T.Echo", "abc", 3, 60000);
    assert_int_equal(tt_engine_call(e, &echo, &res), TETHER_OK);
    assert_int_equal(res.len, 3);
    assert_memory_equal(res.data, "abc", 3);
    tt_call_result_clear(&res);
    assert_int_equal(atomic_load(&o.done), 5);
    tt_engine_destroy(e);
}

static void
test_connect_refused_and_timeout(void **state)
{
    (void)state;
    /* A port with no listener. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    getsockname(s, (struct sockaddr *)&sa, &sl);
    tt_addr closed = {.len = sizeof sa};
    memcpy(&closed.ss, &sa, sizeof sa);
    tt_engine *e = engine_to(&closed, 5000);
    assert_int_equal(tt_engine_connect_wait(e), TETHER_ECONNREFUSED);
    tt_call_req r = req("T.Echo", "x", 1, 1000);
    tt_call_result res;
    assert_int_equal(tt_engine_call(e, &r, &res), TETHER_ECONNREFUSED);
    tt_call_result_clear(&res);
    tt_engine_destroy(e);
    /* A listener with a full accept queue: connects hang, and the
     * engine's timer ends them. */
    assert_int_equal(listen(s, 0), 0);
    int fill[8];
    for (int i = 0; i < 8; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&sa, sizeof sa);
    }
    e = engine_to(&closed, 200);
    assert_int_equal(tt_engine_connect_wait(e), TETHER_ETIMEDOUT);
    assert_int_equal(tt_engine_state(e), TT_ENGINE_IDLE);
    tt_engine_destroy(e);
    for (int i = 0; i < 8; i++) {
        close(fill[i]);
    }
    close(s);
}

struct mixer {
    tt_engine *e;
    atomic_int *bad;
    int id;
};

static void *
mix_main(void *arg)
{
    struct mixer *m = arg;
    for (uintptr_t i = 0; i < 300; i++) {
        uintptr_t v = (uintptr_t)m->id << 20 | i;
        tt_call_req r = req("T.Echo", &v, sizeof v, 60000);
        tt_call_result res;
        tether_err rc = tt_engine_call(m->e, &r, &res);
        if (rc != TETHER_OK || res.len != sizeof v || memcmp(res.data, &v, sizeof v) != 0) {
            atomic_fetch_add(m->bad, 1);
        }
        tt_call_result_clear(&res);
    }
    return NULL;
}

/* Four threads of sync calls and a stream of async calls on one engine:
 * the reader changes hands all the time, and every answer reaches its
 * own caller. */
static void
test_sync_and_async_mixed(void **state)
{
    (void)state;
    tt_engine *e = engine_to(&srv_addr, 5000);
    atomic_int bad = 0;
    struct mixer m[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        m[i] = (struct mixer){e, &bad, i + 1};
        assert_int_equal(pthread_create(&th[i], NULL, mix_main, &m[i]), 0);
    }
    static struct outcome o;
    for (uintptr_t i = 0; i < 1000; i++) {
        tt_call_req r = req("T.Echo", &i, sizeof i, 60000);
        assert_int_equal(
            tt_engine_call_async(e, &r, on_answer, (tether_client *)&o, (void *)i, NULL),
            TETHER_OK);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    wait_for(&o.done, 1000);
    assert_int_equal(atomic_load(&o.bad), 0);
    assert_int_equal(atomic_load(&bad), 0);
    tt_engine_destroy(e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_pending_out_of_order),
        cmocka_unit_test(test_async_deadline),
        cmocka_unit_test(test_connect_refused_and_timeout),
        cmocka_unit_test(test_sync_and_async_mixed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
