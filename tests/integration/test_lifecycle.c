/*
 * test_lifecycle.c - a service's life with real processes: registration,
 * graceful stop, rolling restarts, the second signal, the drain deadline,
 * systemd notification and discovery failover.
 *
 * Servers are $TETHER_BIN_DIR/calculator-server processes registered in a
 * private local: registry (a temporary directory).  The test watches that
 * registry with the C API, calls the servers with the C client, and signals
 * and reaps them by PID.  Nothing sleeps to synchronise: every step waits
 * for a condition (a watch event, a process state, a reply) under a
 * generous deadline.
 *
 * "A handler is running" is read from /proc: calculator-server --delay-ms
 * sleeps in its handler (clock_nanosleep), and no other thread of the
 * server sleeps that way, so the number of the server's threads blocked in
 * that system call is the number of calls a handler has accepted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "calculator.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "tether/registry.h"

extern char **environ;

/* ------------------------------------------------------------------ */
/* Counting connection attempts                                        */

/*
 * The failover test must show that an instance refusing connections is
 * set aside rather than tried on every call.  A refused connect leaves no
 * trace anyone can count, so this binary interposes connect(): the
 * library's calls to it resolve here (an executable's definition comes
 * first in symbol lookup) and attempts towards one watched port are
 * counted before the real system call runs.
 */
static _Atomic int watched_port = -1;
static atomic_long watched_connects;

int
connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    int port = atomic_load(&watched_port);
    if (port >= 0 && sa != NULL && sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in) &&
        ntohs(((const struct sockaddr_in *)sa)->sin_port) == port) {
        atomic_fetch_add(&watched_connects, 1);
    }
    return (int)syscall(SYS_connect, fd, sa, len);
}

/* ------------------------------------------------------------------ */
/* Registry directory and watch log                                    */

static char regdir[256];
static char regurl[300];

static void
reg_setup(void)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0' || strlen(base) > 64) {
        base = "/tmp";
    }
    snprintf(regdir, sizeof regdir, "%s/tether-life-XXXXXX", base);
    if (mkdtemp(regdir) == NULL) {
        fail_msg("mkdtemp %s: errno %d", regdir, errno);
    }
    snprintf(regurl, sizeof regurl, "local:%s", regdir);
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void
reg_cleanup(void)
{
    if (regdir[0] != '\0') {
        nftw(regdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        regdir[0] = '\0';
    }
}

#define WLOG_MAX 256

/* Every event a watch reported, in order, with the time it arrived. */
typedef struct wlog {
    pthread_mutex_t mu;
    int n;
    struct {
        tether_watch_event ev;
        tether_instance_state state;
        char addr[128];
        uint64_t at_ms;
    } e[WLOG_MAX];
} wlog;

static void
on_watch(tether_watch *watch, tether_watch_event ev, const tether_instance *inst, void *arg)
{
    (void)watch;
    wlog *w = arg;
    pthread_mutex_lock(&w->mu);
    if (w->n < WLOG_MAX) {
        w->e[w->n].ev = ev;
        w->e[w->n].state = inst->state;
        snprintf(w->e[w->n].addr, sizeof w->e[w->n].addr, "%s", inst->address);
        w->e[w->n].at_ms = h_now_ms();
        w->n++;
    }
    pthread_mutex_unlock(&w->mu);
}

/* Number of events ev reported for addr. */
static int
wlog_count(wlog *w, tether_watch_event ev, const char *addr)
{
    int k = 0;
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < w->n; i++) {
        if (w->e[i].ev == ev && strcmp(w->e[i].addr, addr) == 0) {
            k++;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return k;
}

/* The test's one watch, stopped in teardown whatever happened. */
static tether_registry *the_reg;
static tether_watch *the_watch;
static wlog the_log = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void
watch_start(const char *service)
{
    pthread_mutex_lock(&the_log.mu);
    the_log.n = 0;
    pthread_mutex_unlock(&the_log.mu);
    H_OK(tether_registry_open(regurl, &the_reg));
    H_OK(tether_registry_watch(the_reg, service, on_watch, &the_log, &the_watch));
}

/* ------------------------------------------------------------------ */
/* calculator-server processes                                         */

typedef struct srv {
    pid_t pid;
    int out_fd;        /* its stdout, kept open while it runs */
    int status;        /* wait status once reaped */
    char addr[128];    /* "127.0.0.1:port" it listens on */
} srv;

#define MAX_PROCS 16
static srv *procs[MAX_PROCS]; /* every server started, for teardown */

static void
srv_reaped(srv *s, int st)
{
    s->status = st;
    s->pid = 0;
    if (s->out_fd >= 0) {
        close(s->out_fd);
        s->out_fd = -1;
    }
}

/* SIGKILL s if it still runs, and reap it. */
static void
srv_kill(srv *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        int st = 0;
        while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR) {
        }
        srv_reaped(s, st);
    }
}

/* Wait up to ms for s to exit and reap it; false if it still runs. */
static bool
srv_wait_exit(srv *s, uint64_t ms)
{
    uint64_t end = h_now_ms() + ms;
    while (s->pid > 0) {
        int st = 0;
        pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == s->pid) {
            srv_reaped(s, st);
            break;
        }
        if (h_now_ms() > end) {
            return false;
        }
        h_pause();
    }
    return true;
}

/*
 * Start calculator-server on a free loopback port, registered as name in
 * the test registry, with extra arguments (NULL-terminated, may be NULL)
 * and NOTIFY_SOCKET set to notify (or unset when NULL).  Returns once it
 * printed "listening on ADDR" (it registers right after, before it runs).
 */
static void
srv_start(srv *s, const char *name, const char *const *extra, const char *notify)
{
    memset(s, 0, sizeof *s);
    s->out_fd = -1;
    const char *bin = getenv("TETHER_BIN_DIR");
    if (bin == NULL) {
        fail_msg("TETHER_BIN_DIR is not set (run the tests through ctest)");
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/calculator-server", bin);
    if (access(path, X_OK) != 0) {
        fail_msg("%s is missing", path);
    }
    /* argv and envp are built before fork: the child only calls
     * async-signal-safe functions before exec. */
    char *argv[24];
    int n = 0;
    argv[n++] = path;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--registry";
    argv[n++] = regurl;
    argv[n++] = "--name";
    argv[n++] = (char *)name;
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 22; i++) {
        argv[n++] = (char *)extra[i];
    }
    argv[n] = NULL;
    size_t nenv = 0;
    while (environ[nenv] != NULL) {
        nenv++;
    }
    char **envp = calloc(nenv + 2, sizeof *envp);
    char notify_var[300];
    assert_non_null(envp);
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++) {
        if (strncmp(environ[i], "NOTIFY_SOCKET=", 14) != 0) {
            envp[k++] = environ[i];
        }
    }
    if (notify != NULL) {
        snprintf(notify_var, sizeof notify_var, "NOTIFY_SOCKET=%s", notify);
        envp[k++] = notify_var;
    }
    envp[k] = NULL;
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        fail_msg("pipe: errno %d", errno);
    }
    pid_t pid = h_spawn(argv, envp, -1, pfd[1], -1);
    free(envp);
    close(pfd[1]);
    s->pid = pid;
    s->out_fd = pfd[0];
    for (int i = 0; i < MAX_PROCS; i++) {
        if (procs[i] == NULL || procs[i]->pid <= 0) {
            procs[i] = s;
            break;
        }
    }
    /* Read its stdout up to "listening on ADDR\n". */
    char buf[512];
    size_t have = 0;
    uint64_t end = h_now_ms() + H_TIMEOUT_MS;
    for (;;) {
        buf[have] = '\0';
        char *l = strstr(buf, "listening on ");
        char *nl = l != NULL ? strchr(l, '\n') : NULL;
        if (nl != NULL) {
            *nl = '\0';
            snprintf(s->addr, sizeof s->addr, "%s", l + strlen("listening on "));
            return;
        }
        uint64_t now = h_now_ms();
        if (now > end || have + 1 >= sizeof buf) {
            srv_kill(s);
            fail_msg("calculator-server did not report its address: %s", buf);
        }
        struct pollfd p = {s->out_fd, POLLIN, 0};
        int r = poll(&p, 1, (int)(end - now));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        ssize_t got = r > 0 ? read(s->out_fd, buf + have, sizeof buf - 1 - have) : 0;
        if (r > 0 && got <= 0) {
            srv_kill(s);
            fail_msg("calculator-server exited before listening: %s", buf);
        }
        have += (size_t)(got > 0 ? got : 0);
    }
}

/*
 * The number of s's threads blocked in the sleep of a --delay-ms handler,
 * read from /proc/PID/task/TID/syscall (first field: the system call
 * number, while the thread is blocked in one).
 */
static int
handlers_sleeping(const srv *s)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)s->pid);
    DIR *d = opendir(dir);
    if (d == NULL) {
        return 0;
    }
    int k = 0;
    int readable = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }
        char path[128];
        snprintf(path, sizeof path, "%s/%.32s/syscall", dir, de->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        char buf[64];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) {
            continue;
        }
        readable = 1;
        buf[n] = '\0';
        long nr = strtol(buf, NULL, 10);
        if (nr == SYS_clock_nanosleep
#ifdef SYS_nanosleep
            || nr == SYS_nanosleep
#endif
        ) {
            k++;
        }
    }
    closedir(d);
    if (!readable && s->pid > 0 && kill(s->pid, 0) == 0) {
        fail_msg("cannot read %s/*/syscall: /proc must show the test's own children", dir);
    }
    return k;
}

/* One TCP connect to addr ("127.0.0.1:port"): 0 or -errno. */
static int
probe_connect(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    assert_non_null(colon);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)strtoul(colon + 1, NULL, 10));
    char host[64];
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    assert_int_equal(inet_pton(AF_INET, host, &sin.sin_addr), 1);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int r = connect(fd, (struct sockaddr *)&sin, sizeof sin);
    int e = errno;
    close(fd);
    return r == 0 ? 0 : -e;
}

/* ------------------------------------------------------------------ */
/* Asynchronous calls                                                  */

typedef struct acall {
    atomic_int done;
    tether_err err;
    int64_t value;
    uint64_t at_ms;
} acall;

static void
on_reply(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    acall *a = arg;
    a->err = r->err;
    if (r->msg != NULL) {
        a->value = ((Google__Protobuf__Int64Value *)r->msg)->value;
        tether_msg_free(r->msg);
    }
    a->at_ms = h_now_ms();
    atomic_store(&a->done, 1);
}

static void
add_async(tether_client *c, int64_t a, int64_t b, acall *out)
{
    Args args = ARGS__INIT;
    args.a = a;
    args.b = b;
    atomic_store(&out->done, 0);
    H_OK(tether_client_call_async(c, "Calculator.Add", &args.base,
                                  &google__protobuf__int64_value__descriptor,
                                  TETHER_CALL_TIMEOUT(H_CALL_MS), on_reply, out));
}

static int
count_done(acall *a, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        k += atomic_load(&a[i].done);
    }
    return k;
}

/* A sync Add: the error, and *sum on success. */
static tether_err
add_sync(tether_client *c, int64_t a, int64_t b, uint32_t timeout_ms, int64_t *sum)
{
    Args args = ARGS__INIT;
    args.a = a;
    args.b = b;
    ProtobufCMessage *reply = NULL;
    tether_err e = tether_client_call(c, "Calculator.Add", &args.base,
                                      &google__protobuf__int64_value__descriptor, &reply,
                                      TETHER_CALL_TIMEOUT(timeout_ms), NULL);
    if (e == TETHER_OK) {
        *sum = ((Google__Protobuf__Int64Value *)reply)->value;
        tether_msg_free(reply);
    }
    return e;
}

/* ------------------------------------------------------------------ */
/* Setup and teardown                                                  */

static int
setup(void **state)
{
    (void)state;
    reg_setup();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    atomic_store(&watched_port, -1);
    for (int i = 0; i < MAX_PROCS; i++) {
        if (procs[i] != NULL) {
            srv_kill(procs[i]);
            procs[i] = NULL;
        }
    }
    tether_watch_stop(the_watch);
    the_watch = NULL;
    tether_registry_close(the_reg);
    the_reg = NULL;
    reg_cleanup();
    return 0;
}

/* ------------------------------------------------------------------ */
/* 1. SIGTERM with slow calls in flight                                */

/*
 * Four calls are inside their (1 s) handlers when SIGTERM arrives.  The
 * registry entry must go first: when the watch reports it removed, the
 * listening socket still accepts TCP connections (drain.c closes it only
 * after the calls drained).  Every accepted call completes with its
 * answer, and the server then exits cleanly.
 */
static void
test_sigterm_calls_in_flight(void **state)
{
    (void)state;
    enum { N = 4 }; /* the server's default worker pool: all run at once */
    watch_start("life-term");
    srv s;
    const char *extra[] = {"--delay-ms", "1000", NULL};
    srv_start(&s, "life-term", extra, NULL);
    H_WAIT(wlog_count(&the_log, TETHER_WATCH_ADDED, s.addr) == 1, "the watch to list the server");
    tether_client *c = h_client(s.addr);
    acall calls[N];
    for (int i = 0; i < N; i++) {
        add_async(c, i, 1000, &calls[i]);
    }
    H_WAIT(handlers_sleeping(&s) == N, "every call to be inside its handler");
    assert_int_equal(kill(s.pid, SIGTERM), 0);
    H_WAIT(wlog_count(&the_log, TETHER_WATCH_REMOVED, s.addr) == 1,
           "the watch to report the server removed");
    /* Deregistered, and the listener is still open. */
    int pr = probe_connect(s.addr);
    if (pr != 0) {
        fail_msg("connect to %s right after REMOVED: errno %d (listener closed before the "
                 "registry entry went away?)",
                 s.addr, -pr);
    }
    H_WAIT(count_done(calls, N) == N, "every call to complete");
    for (int i = 0; i < N; i++) {
        if (calls[i].err != TETHER_OK) {
            fail_msg("call %d: %s", i, tether_err_name(calls[i].err));
        }
        assert_int_equal(calls[i].value, i + 1000);
    }
    assert_true(srv_wait_exit(&s, H_TIMEOUT_MS));
    assert_true(WIFEXITED(s.status));
    assert_int_equal(WEXITSTATUS(s.status), 0);
    /* Gone for good: nothing listens, nothing is listed. */
    assert_int_equal(probe_connect(s.addr), -ECONNREFUSED);
    tether_instance_list *list = NULL;
    H_OK(tether_registry_list(the_reg, "life-term", &list));
    assert_int_equal(list->count, 0);
    tether_instance_list_free(list);
    tether_client_destroy(c);
}

/* ------------------------------------------------------------------ */
/* 2. Rolling restart under continuous calls                           */

typedef struct load {
    tether_client *c;
    atomic_int stop;
    atomic_long ok, failed, outstanding;
    tether_err first_err;
    long first_at; /* calls that had succeeded before the first failure */
    pthread_mutex_t mu;
} load;

static void
load_fail(load *l, tether_err e)
{
    pthread_mutex_lock(&l->mu);
    if (atomic_fetch_add(&l->failed, 1) == 0) {
        l->first_err = e;
        l->first_at = atomic_load(&l->ok);
    }
    pthread_mutex_unlock(&l->mu);
}

typedef struct lcall {
    load *l;
    int64_t want;
} lcall;

static void
on_load_reply(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    lcall *lc = arg;
    load *l = lc->l;
    if (r->err != TETHER_OK) {
        load_fail(l, r->err);
    } else if (((Google__Protobuf__Int64Value *)r->msg)->value != lc->want) {
        load_fail(l, TETHER_EBADREPLY);
    } else {
        atomic_fetch_add(&l->ok, 1);
    }
    tether_msg_free(r->msg);
    free(lc);
    atomic_fetch_sub(&l->outstanding, 1);
}

/* Sync calls back to back, with up to four async calls kept in flight. */
static void *
load_main(void *arg)
{
    load *l = arg;
    for (int64_t k = 0; !atomic_load(&l->stop); k++) {
        if (atomic_load(&l->outstanding) < 4) {
            lcall *lc = malloc(sizeof *lc);
            Args args = ARGS__INIT;
            args.a = k;
            args.b = 7;
            lc->l = l;
            lc->want = k + 7;
            atomic_fetch_add(&l->outstanding, 1);
            tether_err e = tether_client_call_async(l->c, "Calculator.Add", &args.base,
                                                    &google__protobuf__int64_value__descriptor,
                                                    TETHER_CALL_TIMEOUT(30000), on_load_reply, lc);
            if (e != TETHER_OK) {
                free(lc);
                atomic_fetch_sub(&l->outstanding, 1);
                load_fail(l, e);
            }
        }
        int64_t sum = 0;
        tether_err e = add_sync(l->c, k, 1, 30000, &sum);
        if (e != TETHER_OK) {
            load_fail(l, e);
        } else if (sum != k + 1) {
            load_fail(l, TETHER_EBADREPLY);
        } else {
            atomic_fetch_add(&l->ok, 1);
        }
    }
    return NULL;
}

static void
test_rolling_restart(void **state)
{
    (void)state;
    enum { N = 3 };
    watch_start("life-roll");
    /* A little work per call keeps calls in flight while servers drain. */
    const char *extra[] = {"--delay-ms", "5", NULL};
    srv old[N], fresh[N];
    for (int i = 0; i < N; i++) {
        srv_start(&old[i], "life-roll", extra, NULL);
    }
    for (int i = 0; i < N; i++) {
        H_WAIT(wlog_count(&the_log, TETHER_WATCH_ADDED, old[i].addr) == 1, "3 servers listed");
    }
    load l;
    memset(&l, 0, sizeof l);
    pthread_mutex_init(&l.mu, NULL);
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.call_timeout_ms = 30000;
    H_OK(h_client_by_name(regurl, "life-roll", &cfg, &l.c));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, load_main, &l), 0);
    H_WAIT(atomic_load(&l.ok) >= 50, "calls before the restart");
    for (int i = 0; i < N; i++) {
        srv_start(&fresh[i], "life-roll", extra, NULL);
        H_WAIT(wlog_count(&the_log, TETHER_WATCH_ADDED, fresh[i].addr) == 1,
               "the new instance listed");
        assert_int_equal(kill(old[i].pid, SIGTERM), 0);
        if (!srv_wait_exit(&old[i], H_TIMEOUT_MS)) {
            fail_msg("server %s did not exit after SIGTERM", old[i].addr);
        }
        assert_true(WIFEXITED(old[i].status));
        assert_int_equal(WEXITSTATUS(old[i].status), 0);
        long before = atomic_load(&l.ok);
        H_WAIT(atomic_load(&l.ok) >= before + 30, "calls after a restart step");
    }
    atomic_store(&l.stop, 1);
    pthread_join(th, NULL);
    H_WAIT(atomic_load(&l.outstanding) == 0, "async calls to finish");
    long failed = atomic_load(&l.failed);
    if (failed != 0) {
        fail_msg("%ld of %ld calls failed during the rolling restart (first: %s, after %ld "
                 "good calls)",
                 failed, failed + atomic_load(&l.ok), tether_err_name(l.first_err), l.first_at);
    }
    print_message("rolling restart: %ld calls, 0 failed\n", atomic_load(&l.ok));
    tether_client_destroy(l.c);
    pthread_mutex_destroy(&l.mu);
    for (int i = 0; i < N; i++) {
        srv_kill(&fresh[i]);
    }
}

/* ------------------------------------------------------------------ */
/* 3. A second signal stops at once                                    */

static void
test_second_signal(void **state)
{
    (void)state;
    watch_start("life-twice");
    srv s;
    const char *extra[] = {"--delay-ms", "5000", NULL};
    srv_start(&s, "life-twice", extra, NULL);
    H_WAIT(wlog_count(&the_log, TETHER_WATCH_ADDED, s.addr) == 1, "the server listed");
    tether_client *c = h_client(s.addr);
    acall call;
    add_async(c, 1, 2, &call);
    H_WAIT(handlers_sleeping(&s) == 1, "the call inside its handler");
    assert_int_equal(kill(s.pid, SIGTERM), 0);
    /* The first signal was taken (signals do not queue): the stop began. */
    H_WAIT(wlog_count(&the_log, TETHER_WATCH_REMOVED, s.addr) == 1, "the server deregistered");
    uint64_t t2 = h_now_ms();
    assert_int_equal(kill(s.pid, SIGTERM), 0);
    bool exited = srv_wait_exit(&s, 10000);
    uint64_t took = h_now_ms() - t2;
    if (!exited || took >= 2500) {
        fail_msg("after the second SIGTERM the server took %llu ms to exit%s (its handler "
                 "sleeps 5000 ms; it should exit at once)",
                 (unsigned long long)took, exited ? "" : " and still runs");
    }
    /* Exits cleanly (under ASan a leak report would make it 23). */
    if (!WIFEXITED(s.status) || WEXITSTATUS(s.status) != 0) {
        fail_msg("after the second SIGTERM the server ended with wait status 0x%x",
                 (unsigned)s.status);
    }
    H_WAIT(atomic_load(&call.done), "the call to end");
    /* The stop was immediate: the call never got an answer. */
    assert_int_not_equal(call.err, TETHER_OK);
    print_message("second signal: exited %llu ms after it; in-flight call: %s\n",
                  (unsigned long long)took, tether_err_name(call.err));
    tether_client_destroy(c);
}

/* ------------------------------------------------------------------ */
/* 4. The drain deadline holds against a handler that never returns    */

static void
test_drain_deadline(void **state)
{
    (void)state;
    watch_start("life-stuck");
    srv s;
    const char *extra[] = {"--delay-ms", "60000", "--drain-ms", "500", NULL};
    srv_start(&s, "life-stuck", extra, NULL);
    H_WAIT(wlog_count(&the_log, TETHER_WATCH_ADDED, s.addr) == 1, "the server listed");
    tether_client *c = h_client(s.addr);
    acall call;
    add_async(c, 1, 2, &call);
    H_WAIT(handlers_sleeping(&s) == 1, "the call inside its handler");
    uint64_t t0 = h_now_ms();
    assert_int_equal(kill(s.pid, SIGTERM), 0);
    /* The call is answered canceled at the deadline, not before. */
    H_WAIT(atomic_load(&call.done), "the call to end");
    assert_int_equal(call.err, TETHER_ECANCELED);
    assert_true(call.at_ms - t0 >= 490);
    bool exited = srv_wait_exit(&s, 10000);
    uint64_t took = h_now_ms() - t0;
    if (!exited || took >= 5000) {
        fail_msg("with --drain-ms 500 the server took %llu ms to exit after SIGTERM%s "
                 "(its handler sleeps 60 s)",
                 (unsigned long long)took, exited ? "" : " and still runs");
    }
    assert_true(WIFEXITED(s.status));
    assert_int_equal(WEXITSTATUS(s.status), 0);
    print_message("drain deadline: canceled after %llu ms, exited after %llu ms\n",
                  (unsigned long long)(call.at_ms - t0), (unsigned long long)took);
    tether_client_destroy(c);
}

/* ------------------------------------------------------------------ */
/* 5. systemd readiness and stopping notification                      */

/* Receive one datagram on fd into buf within ms; its length or -1. */
static ssize_t
recv_notify(int fd, char *buf, size_t cap, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    int r;
    do {
        r = poll(&p, 1, ms);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
        return -1;
    }
    ssize_t n = recv(fd, buf, cap - 1, MSG_DONTWAIT);
    if (n >= 0) {
        buf[n] = '\0';
    }
    return n;
}

static void
test_systemd_notify(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/notify", regdir);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    assert_true(strlen(path) < sizeof un.sun_path);
    memcpy(un.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&un, sizeof un), 0);
    watch_start("life-sd");
    srv s;
    const char *extra[] = {"--delay-ms", "1500", NULL};
    srv_start(&s, "life-sd", extra, path);
    char msg[256];
    ssize_t n = recv_notify(fd, msg, sizeof msg, (int)H_TIMEOUT_MS);
    assert_true(n > 0);
    assert_string_equal(msg, "READY=1");
    /* Ready means listening and registered. */
    assert_int_equal(probe_connect(s.addr), 0);
    tether_instance_list *list = NULL;
    H_OK(tether_registry_list(the_reg, "life-sd", &list));
    assert_int_equal(list->count, 1);
    assert_string_equal(list->items[0].address, s.addr);
    assert_int_equal(list->items[0].state, TETHER_INSTANCE_SERVING);
    tether_instance_list_free(list);
    /* One call in flight, so the stop has something to drain. */
    tether_client *c = h_client(s.addr);
    acall call;
    add_async(c, 20, 22, &call);
    H_WAIT(handlers_sleeping(&s) == 1, "the call inside its handler");
    assert_int_equal(kill(s.pid, SIGTERM), 0);
    n = recv_notify(fd, msg, sizeof msg, (int)H_TIMEOUT_MS);
    assert_true(n > 0);
    assert_string_equal(msg, "STOPPING=1");
    /* STOPPING=1 comes when the stop begins, not when it ends: the
     * drained call (1.5 s handler) is still running. */
    assert_false(atomic_load(&call.done));
    H_WAIT(atomic_load(&call.done), "the call to complete");
    assert_int_equal(call.err, TETHER_OK);
    assert_int_equal(call.value, 42);
    assert_true(srv_wait_exit(&s, H_TIMEOUT_MS));
    assert_true(WIFEXITED(s.status));
    assert_int_equal(WEXITSTATUS(s.status), 0);
    /* Nothing more was sent. */
    assert_int_equal(recv_notify(fd, msg, sizeof msg, 0), -1);
    assert_int_equal(wlog_count(&the_log, TETHER_WATCH_REMOVED, s.addr), 1);
    tether_client_destroy(c);
    close(fd);
    unlink(path);
}

/* ------------------------------------------------------------------ */
/* 7. Failover away from an instance that refuses connections          */

static void
test_failover_refused(void **state)
{
    (void)state;
    /* A bound socket that does not listen: connects to it are refused, and
     * nobody else can take the port while the test holds it. */
    int dead = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(dead >= 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(dead, (struct sockaddr *)&sin, sizeof sin), 0);
    socklen_t sl = sizeof sin;
    assert_int_equal(getsockname(dead, (struct sockaddr *)&sin, &sl), 0);
    int dead_port = ntohs(sin.sin_port);
    char dead_addr[64];
    snprintf(dead_addr, sizeof dead_addr, "127.0.0.1:%d", dead_port);

    watch_start("life-fail");
    tether_instance inst;
    memset(&inst, 0, sizeof inst);
    inst.service = "life-fail";
    inst.address = dead_addr;
    inst.weight = 1;
    inst.state = TETHER_INSTANCE_SERVING;
    tether_registration *reg = NULL;
    H_OK(tether_registry_register(the_reg, &inst, &reg));
    srv s;
    srv_start(&s, "life-fail", NULL, NULL);
    H_WAIT(wlog_count(&the_log, TETHER_WATCH_ADDED, s.addr) == 1, "the live server listed");
    H_WAIT(wlog_count(&the_log, TETHER_WATCH_ADDED, dead_addr) == 1, "the dead instance listed");

    atomic_store(&watched_connects, 0);
    atomic_store(&watched_port, dead_port);
    tether_client *c = NULL;
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.call_timeout_ms = 30000;
    H_OK(h_client_by_name(regurl, "life-fail", &cfg, &c));
    /* Calls for at least 1.5 s: with a growing backoff from 100 ms, the
     * refusing instance gets a handful of connection attempts; tried on
     * every pick it would get about one per two calls. */
    long calls = 0;
    uint64_t start = h_now_ms();
    acall ac[8];
    while (calls < 400 || h_now_ms() - start < 1500) {
        int64_t sum = 0;
        tether_err e = add_sync(c, calls, 1, 30000, &sum);
        if (e != TETHER_OK) {
            fail_msg("call %ld failed: %s", calls, tether_err_name(e));
        }
        assert_int_equal(sum, calls + 1);
        if (calls % 100 == 0) {
            /* The asynchronous path fails over too. */
            for (int i = 0; i < 8; i++) {
                add_async(c, i, calls, &ac[i]);
            }
            H_WAIT(count_done(ac, 8) == 8, "async calls");
            for (int i = 0; i < 8; i++) {
                if (ac[i].err != TETHER_OK) {
                    fail_msg("async call failed: %s", tether_err_name(ac[i].err));
                }
                assert_int_equal(ac[i].value, i + calls);
            }
        }
        calls++;
    }
    uint64_t took = h_now_ms() - start;
    long attempts = atomic_load(&watched_connects);
    atomic_store(&watched_port, -1);
    print_message("failover: %ld calls in %llu ms, %ld connection attempts on the refusing "
                  "instance\n",
                  calls, (unsigned long long)took, attempts);
    assert_true(attempts >= 1);
    /* Backoff of 100, 200, 400, 800, 1600... ms allows about log2(ms/100)
     * attempts (5 in 1.5 s, 8 in 20 s); every other call would be ~200+. */
    if (attempts > 12) {
        fail_msg("the refusing instance got %ld connection attempts in %llu ms", attempts,
                 (unsigned long long)took);
    }
    tether_client_destroy(c);
    H_OK(tether_registration_deregister(reg));
    close(dead);
    srv_kill(&s);
}

/* ------------------------------------------------------------------ */
/* 8. An asynchronous call right after creating a client by name       */

/*
 * The watch reports the instances from its own thread; an asynchronous
 * call cannot wait for an endpoint, so a client by service name must know
 * the instances listed at creation before tether_client_create_service()
 * returns.  Repeated, because a lost race shows only now and then.
 */
static void
test_async_right_after_create(void **state)
{
    (void)state;
    srv s[2];
    for (int i = 0; i < 2; i++) {
        srv_start(&s[i], "life-first", NULL, NULL);
    }
    watch_start("life-first");
    for (int i = 0; i < 2; i++) {
        H_WAIT(wlog_count(&the_log, TETHER_WATCH_ADDED, s[i].addr) == 1, "servers listed");
    }
    for (int round = 0; round < 30; round++) {
        tether_client *c = NULL;
        H_OK(h_client_by_name(regurl, "life-first", NULL, &c));
        acall call;
        add_async(c, round, 1, &call);
        H_WAIT(atomic_load(&call.done), "the first call");
        if (call.err != TETHER_OK) {
            fail_msg("round %d: the first async call failed: %s", round,
                     tether_err_name(call.err));
        }
        assert_int_equal(call.value, round + 1);
        tether_client_destroy(c);
    }
    for (int i = 0; i < 2; i++) {
        srv_kill(&s[i]);
    }
}

int
main(int argc, char **argv)
{
    h_child_main(argc, argv);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sigterm_calls_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rolling_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_signal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_systemd_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failover_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_right_after_create, setup, teardown),
    };
    /* TETHER_TEST_FILTER=test_drain* runs only the matching tests. */
    const char *filter = getenv("TETHER_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0') {
        cmocka_set_test_filter(filter);
    }
    int rc = cmocka_run_group_tests_name("lifecycle", tests, NULL, NULL);
    h_cleanup();
    return rc;
}
