/*
 * test_client_pool.c - the client side's shared I/O: a by-name client over
 * a thousand instances keeps a fixed number of threads, an instance whose
 * connects hang (a listener with a full accept queue, on loopback) delays
 * no caller, async calls hashed by key spread over the instances, and Go
 * codec clients add no threads either.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
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

static int
thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

static long
rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
        }
    }
    fclose(f);
    return kb;
}

static int
port_of(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    assert_non_null(colon);
    return (int)strtol(colon + 1, NULL, 10);
}

/* A by-name client over N instances (one server listening on the wildcard
 * address, instances 127.0.X.Y:PORT) keeps its thread count fixed: the
 * shared pool and the registry's watch, however many instances. */
static void
test_thousand_instances_fixed_threads(void **state)
{
    (void)state;
    enum { N = 1000 };
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 4 * N) {
        rl.rlim_cur = rl.rlim_max < 4 * N ? rl.rlim_max : 4 * N;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    /* Both sides need a descriptor per instance. */
    assert_true(rl.rlim_cur >= N + 64);
    h_server_opts opts = {.listen = {":0"}, .io_threads = 1};
    h_spawn_server(&srv, &opts);
    int port = port_of(srv.addr[0]);
    size_t cap = (size_t)N * 24 + 16;
    char *url = malloc(cap);
    assert_non_null(url);
    size_t off = (size_t)snprintf(url, cap, "static:");
    for (int i = 0; i < N; i++) {
        /* 127.0.1.1 ... 127.0.4.232: all loopback. */
        off += (size_t)snprintf(url + off, cap - off, "%s127.0.%d.%d:%d", i ? "," : "", 1 + i / 250,
                                1 + i % 250, port);
    }
    H_OK(tether_client_set_io_threads(2));
    int before = thread_count();
    long rss_before = rss_kb();
    tether_client *c = NULL;
    H_OK(h_client_by_name(url, "calculator", NULL, &c));
    /* Every instance gets calls: round robin goes through all of them. */
    for (int i = 0; i < 2 * N; i++) {
        assert_int_equal(h_add(c, i, 1), i + 1);
    }
    int during = thread_count();
    long rss_after = rss_kb();
    printf("# %d instances: %d threads before, %d with the client; client RSS %+ld KB "
           "(%.2f KB per instance)\n",
           N, before, during, rss_after - rss_before, (double)(rss_after - rss_before) / N);
    /* Two pool threads and the static registry's watch thread. */
    assert_true(during - before <= 2 + 2);
    tether_client_destroy(c);
    H_OK(tether_client_set_io_threads(0));
    /* The pool stops with its last client. */
    H_WAIT(thread_count() == before, "the pool threads to stop");
    free(url);
}

/* A listener that takes no more connections: its accept queue is full, so
 * the kernel drops further SYNs and a connect to it hangs. */
static int
blackhole(int *port)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(l, 0), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return l;
}

static void
test_blackholed_instance_delays_nobody(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    int port;
    int l = blackhole(&port);
    /* Fill the accept queue (backlog 0 still takes one or two). */
    int fill[8];
    for (int i = 0; i < 8; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        connect(fill[i], (struct sockaddr *)&sa, sizeof sa);
    }
    char url[512];
    snprintf(url, sizeof url, "static:127.0.0.1:%d,%s", port, srv.addr[0]);
    /* A connect timeout far longer than the test may take: a caller that
     * waited for the blackholed instance even once would blow the bound
     * below. */
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.connect_timeout_ms = 120000;
    uint64_t t0 = h_now_ms();
    tether_client *c = NULL;
    H_OK(h_client_by_name(url, "calculator", &cfg, &c));
    for (int i = 0; i < 200; i++) {
        assert_int_equal(h_add(c, i, 2), i + 2);
    }
    uint64_t took = h_now_ms() - t0;
    printf("# create + 200 calls with a blackholed instance: %llu ms\n", (unsigned long long)took);
    assert_true(took < 60000);
    /* A client by address to the blackholed instance gives up at its own
     * connect timeout, and meanwhile the by-name client still serves. */
    tether_client_destroy(c);
    for (int i = 0; i < 8; i++) {
        close(fill[i]);
    }
    close(l);
}

/* Async calls carry their balancing key: under hashing, one key always
 * lands on one instance, and many keys reach both. */
static h_proc srv2;

static int
teardown2(void **state)
{
    (void)state;
    int a = h_stop(&srv);
    int b = h_stop(&srv2);
    return a != 0 ? a : b;
}

static atomic_int async_done;

static void
on_parked_reply(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    (void)arg;
    (void)r;
    atomic_fetch_add(&async_done, 1);
}

/* Each server counts the calls parked on it (Test.Parked), which tells
 * where the hashed calls went. */
static void
test_async_hash_spreads_by_key(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    h_spawn_server(&srv2, NULL);
    char url[600];
    snprintf(url, sizeof url, "static:%s,%s", srv.addr[0], srv2.addr[0]);
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.balance = TETHER_BALANCE_HASH;
    tether_client *c = NULL;
    H_OK(h_client_by_name(url, "calculator", &cfg, &c));
    tether_client *a = h_client(srv.addr[0]);
    tether_client *b = h_client(srv2.addr[0]);
    /* Park one async call per key; each server counts what it holds. */
    enum { KEYS = 64 };
    for (int k = 0; k < KEYS; k++) {
        char key[32];
        snprintf(key, sizeof key, "user-%d", k);
        tether_call_opts o = {.timeout_ms = H_CALL_MS, .key = key};
        H_OK(tether_client_call_async_raw(c, "Test.Park", "p", 1, &o, on_parked_reply, NULL));
    }
    H_WAIT(h_raw_u32(a, "Test.Parked") + h_raw_u32(b, "Test.Parked") == KEYS,
           "every call parked on some instance");
    uint32_t on_a = h_raw_u32(a, "Test.Parked");
    uint32_t on_b = h_raw_u32(b, "Test.Parked");
    printf("# %d keys: %u on one instance, %u on the other\n", KEYS, on_a, on_b);
    /* 64 keys on two instances: both get some (all on one has odds 2^-63). */
    assert_true(on_a > 0 && on_b > 0);
    h_raw_u32(a, "Test.Release");
    h_raw_u32(b, "Test.Release");
    H_WAIT(atomic_load(&async_done) == KEYS, "every parked call answered");

    /* The same key again: all its calls land where the first did. */
    atomic_store(&async_done, 0);
    for (int i = 0; i < 16; i++) {
        tether_call_opts o = {.timeout_ms = H_CALL_MS, .key = "user-7"};
        H_OK(tether_client_call_async_raw(c, "Test.Park", "p", 1, &o, on_parked_reply, NULL));
    }
    H_WAIT(h_raw_u32(a, "Test.Parked") + h_raw_u32(b, "Test.Parked") == 16,
           "the same key's calls parked");
    on_a = h_raw_u32(a, "Test.Parked");
    on_b = h_raw_u32(b, "Test.Parked");
    assert_true((on_a == 16 && on_b == 0) || (on_a == 0 && on_b == 16));
    h_raw_u32(a, "Test.Release");
    h_raw_u32(b, "Test.Release");
    H_WAIT(atomic_load(&async_done) == 16, "the same key's calls answered");
    tether_client_destroy(c);
    tether_client_destroy(a);
    tether_client_destroy(b);
}

/* Go-codec clients run on the same pool: no reader thread per client. */
static void
test_codec_clients_add_no_threads(void **state)
{
    (void)state;
    h_spawn_server(&srv, NULL);
    H_OK(tether_client_set_io_threads(2));
    int before = thread_count();
    tether_client *cs[12];
    for (int i = 0; i < 12; i++) {
        tether_client_config cfg;
        tether_client_config_init(&cfg);
        cfg.codec = (tether_codec)(i % 3);
        H_OK(tether_client_create(srv.addr[0], &cfg, &cs[i]));
        Args req = ARGS__INIT;
        req.a = i;
        req.b = 1;
        ProtobufCMessage *reply = NULL;
        H_OK(tether_client_call(cs[i], "Calculator.Add", &req.base,
                                &google__protobuf__int64_value__descriptor, &reply,
                                TETHER_CALL_TIMEOUT(H_CALL_MS), NULL));
        assert_int_equal(((Google__Protobuf__Int64Value *)reply)->value, i + 1);
        tether_msg_free(reply);
    }
    assert_true(thread_count() - before <= 2);
    for (int i = 0; i < 12; i++) {
        tether_client_destroy(cs[i]);
    }
    H_OK(tether_client_set_io_threads(0));
}

int
main(int argc, char **argv)
{
    h_child_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_thousand_instances_fixed_threads, teardown),
        cmocka_unit_test_teardown(test_blackholed_instance_delays_nobody, teardown),
        cmocka_unit_test_teardown(test_async_hash_spreads_by_key, teardown2),
        cmocka_unit_test_teardown(test_codec_clients_add_no_threads, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    h_cleanup();
    return rc;
}
