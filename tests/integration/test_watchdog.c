/*
 * test_watchdog.c - "alive but not serving": the serving watchdog takes a
 * stalled server out of the registry and brings it back, the built-in
 * _tether.Health.Check answers on every codec, `tether health` exits as
 * documented, and systemd's WATCHDOG=1 stops while an I/O thread is
 * blocked.
 *
 * The servers run in this process (real sockets, a real local: registry
 * in a private directory, real etcd when TETHER_TEST_ETCD_PORT is set by
 * test_etcd_watchdog.sh), so a test knows to the millisecond when its
 * handler began to block.  Test.Sleep is an inline raw method that sleeps
 * the milliseconds its 4-byte request says, blocking its I/O thread;
 * Test.SleepPool does the same on the worker pool.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "tether/health.h"
#include "tether/registry.h"

#define STALL_MS 500u
#define SERVICE "wdtest"

static _Atomic uint64_t sleep_began_ms; /* when the latest Test.Sleep began */

static void
sleep_ms(uint32_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint32_t
req_ms(const uint8_t *req, size_t len)
{
    return len == 4 ? h_le32(req) : 0;
}

static void
do_sleep(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    atomic_store(&sleep_began_ms, h_now_ms());
    sleep_ms(req_ms(req, len));
    tether_call_reply_raw(call, "ok", 2);
}

typedef struct fixture {
    tether_server *srv;
    tether_registry *reg;
    char url[512];
    char addr[128];
} fixture;

static fixture F;

/* The registry URL this run uses: local: in the test's directory, or the
 * etcd the wrapper script started. */
static void
registry_url(char *buf, size_t cap)
{
    const char *port = getenv("TETHER_TEST_ETCD_PORT");
    if (port != NULL && port[0] != '\0') {
        snprintf(buf, cap, "etcd://127.0.0.1:%s/wdtest%ld?ttl=5", port, (long)getpid());
    } else {
        snprintf(buf, cap, "local:%s/reg", h_tmpdir());
    }
}

static void
start_server(uint32_t stall_ms, int io_threads, int workers, uint32_t grace_ms)
{
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.stall_ms = stall_ms;
    cfg.io_threads = io_threads;
    cfg.worker_threads = workers;
    cfg.grace_ms = grace_ms;
    H_OK(tether_server_create(&cfg, &F.srv));
    H_OK(tether_server_add_raw_method(F.srv, "Test.Sleep", do_sleep, 0, NULL));
    H_OK(tether_server_add_raw_method(F.srv, "Test.SleepPool", do_sleep, TETHER_METHOD_BLOCKING,
                                      NULL));
    H_OK(tether_server_listen(F.srv, "127.0.0.1:0"));
    H_OK(tether_server_get_address(F.srv, 0, F.addr, sizeof F.addr));
    registry_url(F.url, sizeof F.url);
    H_OK(tether_registry_open(F.url, &F.reg));
    tether_instance tmpl = {.service = SERVICE};
    H_OK(tether_server_set_registry(F.srv, F.reg, &tmpl));
    H_OK(tether_server_start(F.srv));
}

static int
teardown(void **state)
{
    (void)state;
    if (F.srv != NULL) {
        tether_server_destroy(F.srv);
    }
    tether_registry_close(F.reg);
    memset(&F, 0, sizeof F);
    return 0;
}

/* Whether the registry lists our address now. */
static bool
listed(void)
{
    tether_instance_list *l = NULL;
    if (tether_registry_list(F.reg, SERVICE, &l) != TETHER_OK) {
        return false;
    }
    bool found = false;
    for (size_t i = 0; i < l->count; i++) {
        found |= strcmp(l->items[i].address, F.addr) == 0;
    }
    tether_instance_list_free(l);
    return found;
}

typedef struct done_flag {
    _Atomic int done;
    _Atomic int err;
} done_flag;

static void
on_done(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    done_flag *d = arg;
    atomic_store(&d->err, (int)r->err);
    atomic_store(&d->done, 1);
}

static void
call_sleep_async(tether_client *c, const char *method, uint32_t ms, done_flag *d)
{
    uint8_t req[4] = {(uint8_t)ms, (uint8_t)(ms >> 8), (uint8_t)(ms >> 16), (uint8_t)(ms >> 24)};
    H_OK(tether_client_call_async_raw(c, method, req, sizeof req, TETHER_CALL_TIMEOUT(H_CALL_MS),
                                      on_done, d));
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* f: an inline handler blocks the only I/O thread; the watchdog takes the
 * instance out within stall_ms + a little, and it comes back after the
 * handler returns.  Several rounds; the median is printed. */
/* A client whose connections never ping: the handlers here block their
 * I/O thread on purpose, which a pinging client would take for a dead
 * server (client.h, probe_ms) and fail the call; this test is about the
 * server's watchdog. */
static tether_client *
client_no_probe(const char *addr)
{
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.probe_ms = TETHER_OFF;
    tether_client *c = NULL;
    H_OK(tether_client_create(addr, &cfg, &c));
    return c;
}

static void
test_stall_leaves_registry(void **state)
{
    (void)state;
    start_server(STALL_MS, 1, 0, 0);
    H_WAIT(listed(), "the instance to be listed");
    tether_client *c = client_no_probe(F.addr);
    enum { ROUNDS = 5 };
    uint64_t out_ms[ROUNDS], back_ms[ROUNDS];
    /* Long enough that a loaded machine still sees the stall while it
     * lasts. */
    const uint32_t block = 4000;
    for (int r = 0; r < ROUNDS; r++) {
        atomic_store(&sleep_began_ms, 0);
        done_flag d = {0, 0};
        call_sleep_async(c, "Test.Sleep", block, &d);
        H_WAIT(atomic_load(&sleep_began_ms) != 0, "the handler to begin");
        uint64_t t0 = atomic_load(&sleep_began_ms);
        H_WAIT(!listed(), "the stalled instance to leave the registry");
        out_ms[r] = h_now_ms() - t0;
        assert_int_equal(tether_server_health(F.srv, NULL), TETHER_HEALTH_NOT_SERVING);
        const char *port = getenv("TETHER_TEST_ETCD_PORT");
        if (r == 0 && port != NULL && port[0] != '\0') {
            /* etcd: the key went, the lease stays (kept alive for the way
             * back). */
            char ep[64], out[4096], err[1024];
            snprintf(ep, sizeof ep, "--endpoints=127.0.0.1:%s", port);
            char *argv[] = {"/usr/bin/env", "ETCDCTL_API=3", "etcdctl", ep, "lease", "list", NULL};
            assert_int_equal(h_run(argv, out, err, sizeof out), 0);
            printf("# etcd while stalled: %s", out);
            assert_non_null(strstr(out, "found 1 leases"));
        }
        H_WAIT(atomic_load(&d.done), "the blocking call to finish");
        H_OK((tether_err)atomic_load(&d.err));
        H_WAIT(listed(), "the instance to come back");
        back_ms[r] = h_now_ms() - t0;
        assert_int_equal(tether_server_health(F.srv, NULL), TETHER_HEALTH_SERVING);
        printf("# round %d: out of the registry %llu ms after the handler blocked, back at "
               "%llu ms (handler returned at %u ms)\n",
               r, (unsigned long long)out_ms[r], (unsigned long long)back_ms[r], block);
        /* Out while it blocked, not after. */
        assert_true(out_ms[r] < block);
        assert_true(back_ms[r] >= block);
    }
    qsort(out_ms, ROUNDS, sizeof out_ms[0], cmp_u64);
    printf(
        "# stall -> out of the registry (%s): median %llu ms, min %llu, max %llu "
        "(stall_ms %u)\n",
        strncmp(F.url, "etcd", 4) == 0 ? "etcd" : "local:", (unsigned long long)out_ms[ROUNDS / 2],
        (unsigned long long)out_ms[0], (unsigned long long)out_ms[ROUNDS - 1], STALL_MS);
    /* Generous: stall_ms + 500 ms is the goal, sanitizers and a loaded
     * machine get more. */
    assert_true(out_ms[ROUNDS / 2] < STALL_MS + 1500);
    tether_server_stats st;
    tether_server_get_stats(F.srv, &st);
    assert_int_equal(st.stalls, ROUNDS);
    tether_client_destroy(c);
}

/* A watcher sees the stall as REMOVED and the recovery as ADDED. */
typedef struct wcount {
    _Atomic int added, removed;
} wcount;

static void
on_watch(tether_watch *w, tether_watch_event ev, const tether_instance *inst, void *arg)
{
    (void)w;
    wcount *n = arg;
    if (strcmp(inst->address, F.addr) != 0) {
        return;
    }
    if (ev == TETHER_WATCH_ADDED) {
        atomic_fetch_add(&n->added, 1);
    } else if (ev == TETHER_WATCH_REMOVED) {
        atomic_fetch_add(&n->removed, 1);
    }
}

static void
test_stall_watch_events(void **state)
{
    (void)state;
    start_server(STALL_MS, 1, 0, 0);
    wcount n = {0, 0};
    tether_watch *w = NULL;
    H_OK(tether_registry_watch(F.reg, SERVICE, on_watch, &n, &w));
    H_WAIT(atomic_load(&n.added) == 1, "the watch to report the instance");
    tether_client *c = h_client(F.addr);
    done_flag d = {0, 0};
    call_sleep_async(c, "Test.Sleep", 4000, &d);
    H_WAIT(atomic_load(&n.removed) == 1, "the watch to see the stalled instance go");
    H_WAIT(atomic_load(&d.done), "the blocking call to finish");
    H_WAIT(atomic_load(&n.added) == 2, "the watch to see it come back");
    tether_watch_stop(w);
    tether_client_destroy(c);
}

/* The worker pool: one long job with a worker to spare is no stall; jobs
 * queued behind busy workers are. */
static void
test_pool_stall(void **state)
{
    (void)state;
    start_server(STALL_MS, 1, 2, 0);
    H_WAIT(listed(), "the instance to be listed");
    tether_client *c = h_client(F.addr);
    done_flag d[3] = {{0, 0}, {0, 0}, {0, 0}};
    call_sleep_async(c, "Test.SleepPool", 2000, &d[0]);
    sleep_ms(3 * STALL_MS);
    assert_true(listed());
    tether_server_stats st;
    tether_server_get_stats(F.srv, &st);
    assert_int_equal(st.stalls, 0);
    H_WAIT(atomic_load(&d[0].done), "the long job to finish");
    /* Two workers, three jobs: the third waits for 4 s. */
    for (int i = 0; i < 3; i++) {
        call_sleep_async(c, "Test.SleepPool", 4000, &d[i]);
    }
    uint64_t t0 = h_now_ms();
    H_WAIT(!listed(), "the instance to leave while jobs wait for a worker");
    printf("# pool stall: out of the registry %llu ms after the jobs were sent\n",
           (unsigned long long)(h_now_ms() - t0));
    for (int i = 0; i < 3; i++) {
        H_WAIT(atomic_load(&d[i].done), "the jobs to finish");
        H_OK((tether_err)atomic_load(&d[i].err));
    }
    H_WAIT(listed(), "the instance to come back");
    tether_client_destroy(c);
}

/* stall_ms 0: no watchdog, the instance stays listed while blocked. */
static void
test_stall_off(void **state)
{
    (void)state;
    start_server(0, 1, 0, 0);
    H_WAIT(listed(), "the instance to be listed");
    tether_client *c = h_client(F.addr);
    done_flag d = {0, 0};
    call_sleep_async(c, "Test.Sleep", 1500, &d);
    H_WAIT(atomic_load(&sleep_began_ms) != 0, "the handler to begin");
    sleep_ms(1000);
    assert_true(listed());
    assert_int_equal(tether_server_health(F.srv, NULL), TETHER_HEALTH_SERVING);
    H_WAIT(atomic_load(&d.done), "the blocking call to finish");
    tether_client_destroy(c);
}

/* ---- health ------------------------------------------------------------ */

static tether_health_status
check_with(tether_codec codec, const char *service)
{
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.codec = codec;
    tether_client *c = NULL;
    H_OK(tether_client_create(F.addr, &cfg, &c));
    tether_health_status st = TETHER_HEALTH_SERVING;
    H_OK(tether_client_health_check(c, service, TETHER_CALL_TIMEOUT(H_CALL_MS), &st));
    tether_client_destroy(c);
    return st;
}

/* Go's net/rpc/jsonrpc by hand over a raw socket: one request line, one
 * answer line; returns the "result" string (or "error: ...") in buf. */
static void
jsonrpc_raw(const char *service, char *buf, size_t cap)
{
    int fd = h_raw_connect(F.addr);
    char req[256];
    int n =
        snprintf(req, sizeof req,
                 "{\"method\":\"_tether.Health.Check\",\"params\":[\"%s\"],\"id\":7}\n", service);
    assert_int_equal(h_raw_send(fd, req, (size_t)n), 0);
    char line[512];
    size_t got = 0;
    uint64_t end = h_now_ms() + H_TIMEOUT_MS;
    while (got < sizeof line - 1 && memchr(line, '\n', got) == NULL && h_now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) {
            continue;
        }
        ssize_t r = read(fd, line + got, sizeof line - 1 - got);
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
    }
    line[got] = '\0';
    close(fd);
    const char *res = strstr(line, "\"result\":\"");
    if (res == NULL) {
        snprintf(buf, cap, "error: %.200s", line);
        return;
    }
    res += 10;
    const char *q = strchr(res, '"');
    snprintf(buf, cap, "%.*s", q != NULL ? (int)(q - res) : 0, res);
    assert_non_null(strstr(line, "\"id\":7"));
}

static int
run_tether_health(const char *a1, const char *a2, const char *a3, char *out, size_t cap)
{
    char bin[1024];
    snprintf(bin, sizeof bin, "%s/tether", getenv("TETHER_BIN_DIR"));
    char *argv[] = {bin, "health", (char *)a1, (char *)a2, (char *)a3, NULL};
    char err[1024];
    int rc = h_run(argv, out, err, cap);
    printf("# tether health %s %s %s -> %d: %s", a1, a2 != NULL ? a2 : "", a3 != NULL ? a3 : "", rc,
           out);
    return rc;
}

static void
test_health_codecs(void **state)
{
    (void)state;
    start_server(STALL_MS, 2, 0, 60000);
    const tether_codec codecs[] = {TETHER_CODEC_NATIVE, TETHER_CODEC_GOB, TETHER_CODEC_JSONRPC};
    char buf[256];
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(check_with(codecs[i], ""), TETHER_HEALTH_SERVING);
        assert_int_equal(check_with(codecs[i], "Test"), TETHER_HEALTH_SERVING);
        assert_int_equal(check_with(codecs[i], "Nope"), TETHER_HEALTH_UNKNOWN);
    }
    jsonrpc_raw("", buf, sizeof buf);
    assert_string_equal(buf, "SERVING");
    jsonrpc_raw("Nope", buf, sizeof buf);
    assert_string_equal(buf, "UNKNOWN");
    char out[1024];
    assert_int_equal(run_tether_health(F.addr, NULL, NULL, out, sizeof out), 0);
    assert_non_null(strstr(out, "SERVING"));
    assert_int_equal(run_tether_health(F.addr, "--service", "Nope", out, sizeof out), 4);
    assert_non_null(strstr(out, "UNKNOWN"));
    assert_int_equal(run_tether_health(SERVICE, "--registry", F.url, out, sizeof out), 0);
    assert_int_equal(run_tether_health(F.addr, "--codec", "gob", out, sizeof out), 0);
    assert_int_equal(run_tether_health(F.addr, "--bogus", NULL, out, sizeof out), 2);

    /* The application says "not serving": every codec hears it, the
     * registry drops the instance, and it comes back. */
    H_OK(tether_server_set_serving(F.srv, 0));
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(check_with(codecs[i], ""), TETHER_HEALTH_NOT_SERVING);
    }
    jsonrpc_raw("", buf, sizeof buf);
    assert_string_equal(buf, "NOT_SERVING");
    H_WAIT(!listed(), "a not-serving instance to leave the registry");
    assert_int_equal(run_tether_health(F.addr, NULL, NULL, out, sizeof out), 4);
    assert_non_null(strstr(out, "NOT_SERVING"));
    /* Listed nowhere: by service name there is nobody to ask. */
    assert_int_equal(run_tether_health(SERVICE, "--registry", F.url, out, sizeof out), 1);
    H_OK(tether_server_set_serving(F.srv, 1));
    H_WAIT(listed(), "the instance to come back");
    assert_int_equal(check_with(TETHER_CODEC_NATIVE, ""), TETHER_HEALTH_SERVING);

    /* Stopping: during the grace period (60 s, cut short below) health
     * checks still get an answer, DRAINING, while other calls are
     * refused. */
    tether_server_shutdown(F.srv);
    H_WAIT(tether_server_health(F.srv, NULL) == TETHER_HEALTH_DRAINING, "the stop to begin");
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(check_with(codecs[i], ""), TETHER_HEALTH_DRAINING);
    }
    jsonrpc_raw("", buf, sizeof buf);
    assert_string_equal(buf, "DRAINING");
    assert_int_equal(run_tether_health(F.addr, NULL, NULL, out, sizeof out), 4);
    assert_non_null(strstr(out, "DRAINING"));
    tether_server_shutdown(F.srv); /* the rest of the grace period at once */
    H_OK(tether_server_wait(F.srv));
    /* Gone: nobody answers. */
    assert_int_equal(run_tether_health(F.addr, "--timeout", "2000", out, sizeof out), 1);
}

/* ---- systemd's watchdog -------------------------------------------------- */

static int
open_notify_socket(char *path, size_t cap)
{
    snprintf(path, cap, "%s/notify.sock", h_tmpdir());
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%.100s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof un), 0);
    return fd;
}

/* WATCHDOG=1 datagrams that arrive within ms. */
static int
count_pings(int fd, uint32_t ms)
{
    int n = 0;
    uint64_t end = h_now_ms() + ms;
    for (uint64_t now = h_now_ms(); now < end; now = h_now_ms()) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(end - now)) <= 0) {
            continue;
        }
        char buf[256];
        ssize_t r = recv(fd, buf, sizeof buf - 1, 0);
        if (r > 0) {
            buf[r] = '\0';
            n += strstr(buf, "WATCHDOG=1") != NULL;
        }
    }
    return n;
}

static void
test_systemd_watchdog(void **state)
{
    (void)state;
    char path[512];
    int fd = open_notify_socket(path, sizeof path);
    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "400000", 1); /* a ping every 200 ms */
    start_server(STALL_MS, 1, 0, 0);
    int healthy = count_pings(fd, 1200);
    printf("# WATCHDOG=1 while serving: %d in 1200 ms\n", healthy);
    assert_true(healthy >= 2);
    tether_client *c = client_no_probe(F.addr);
    done_flag d = {0, 0};
    call_sleep_async(c, "Test.Sleep", 6000, &d);
    H_WAIT(tether_server_health(F.srv, NULL) == TETHER_HEALTH_NOT_SERVING, "the stall");
    count_pings(fd, 50); /* one sent just before the stall showed */
    int stalled = count_pings(fd, 1500);
    printf("# WATCHDOG=1 while an I/O thread is blocked: %d in 1500 ms\n", stalled);
    assert_int_equal(stalled, 0);
    H_WAIT(atomic_load(&d.done), "the blocking call to finish");
    int again = count_pings(fd, 1200);
    printf("# WATCHDOG=1 after it returned: %d in 1200 ms\n", again);
    assert_true(again >= 2);
    tether_client_destroy(c);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    close(fd);
    unlink(path);
}

int
main(int argc, char **argv)
{
    h_child_main(argc, argv);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest all[] = {
        cmocka_unit_test_teardown(test_stall_leaves_registry, teardown),
        cmocka_unit_test_teardown(test_stall_watch_events, teardown),
        cmocka_unit_test_teardown(test_pool_stall, teardown),
        cmocka_unit_test_teardown(test_stall_off, teardown),
        cmocka_unit_test_teardown(test_health_codecs, teardown),
        cmocka_unit_test_teardown(test_systemd_watchdog, teardown),
    };
    /* Against etcd (test_etcd_watchdog.sh) the registry tests run again. */
    const struct CMUnitTest etcd[] = {
        cmocka_unit_test_teardown(test_stall_leaves_registry, teardown),
        cmocka_unit_test_teardown(test_stall_watch_events, teardown),
        cmocka_unit_test_teardown(test_health_codecs, teardown),
    };
    const char *filter = getenv("TETHER_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0') {
        cmocka_set_test_filter(filter);
    }
    const char *port = getenv("TETHER_TEST_ETCD_PORT");
    int rc = port != NULL && port[0] != '\0'
                 ? cmocka_run_group_tests_name("watchdog-etcd", etcd, NULL, NULL)
                 : cmocka_run_group_tests_name("watchdog", all, NULL, NULL);
    h_cleanup();
    return rc;
}
