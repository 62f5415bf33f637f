/*
 * test_registry_local.c - the local: registry backend, with real processes.
 *
 * Children are this same binary, re-executed with "--child MODE URL SERVICE
 * ADDRESS" (fork + exec, so no child runs in a copy of a multi-threaded
 * parent).  Every child is killed if needed and reaped by PID.  Waits are on
 * conditions with generous deadlines; nothing sleeps to synchronise.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/clock.h"
#include "registry/local/local.h"
#include "tether/registry.h"

static char self_exe[4096];

/* ---- helpers ------------------------------------------------------------ */

struct ctx {
    char dir[64];
    char url[96];
};

static int
setup_dir(void **state)
{
    struct ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    snprintf(c->dir, sizeof c->dir, "/tmp/tt-reg-XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    snprintf(c->url, sizeof c->url, "local:%s", c->dir);
    *state = c;
    return 0;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int
teardown_dir(void **state)
{
    struct ctx *c = *state;
    nftw(c->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(c);
    return 0;
}

/* Events recorded by a watch callback, waited on with a deadline. */
struct rec {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int added;
    int removed;
    int changed;
    int present; /* added - removed */
    uint64_t last_removed_ns;
    char last_addr[128];
    tether_instance_state last_state;
    tether_watch *self; /* for the stop-from-callback test */
    int stop_after;     /* stop from inside the callback after this many events */
};

static void
rec_init(struct rec *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cond, NULL);
}

static void
rec_fini(struct rec *r)
{
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->mu);
}

static void
on_event(tether_watch *watch, tether_watch_event ev, const tether_instance *inst, void *arg)
{
    (void)watch;
    struct rec *r = arg;
    uint64_t now = tt_now_ns();
    pthread_mutex_lock(&r->mu);
    switch (ev) {
    case TETHER_WATCH_ADDED:
        r->added++;
        r->present++;
        break;
    case TETHER_WATCH_REMOVED:
        r->removed++;
        r->present--;
        r->last_removed_ns = now;
        break;
    case TETHER_WATCH_CHANGED:
        r->changed++;
        break;
    }
    snprintf(r->last_addr, sizeof r->last_addr, "%s", inst->address);
    r->last_state = inst->state;
    int total = r->added + r->removed + r->changed;
    tether_watch *stop = r->stop_after > 0 && total == r->stop_after ? r->self : NULL;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
    /* r may be gone once the lock is released: only locals from here. */
    if (stop != NULL) {
        tether_watch_stop(stop);
    }
}

/* Wait until *field reaches at least want; false after timeout_ms. */
/* Waits for an event that must come: generous, so a loaded machine never
 * fails a test (the ones that check nothing comes use short waits). */
#define H_WAIT_MS 30000

static bool
rec_wait(struct rec *r, const int *field, int want, int timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->mu);
    while (*field < want) {
        if (pthread_cond_timedwait(&r->cond, &r->mu, &dl) == ETIMEDOUT) {
            break;
        }
    }
    bool ok = *field >= want;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static int
rec_get(struct rec *r, const int *field)
{
    pthread_mutex_lock(&r->mu);
    int v = *field;
    pthread_mutex_unlock(&r->mu);
    return v;
}

static size_t
list_count(tether_registry *reg, const char *service)
{
    tether_instance_list *l = NULL;
    assert_int_equal(tether_registry_list(reg, service, &l), TETHER_OK);
    size_t n = l->count;
    tether_instance_list_free(l);
    return n;
}

/* Start a child in mode (hold / exit / dereg).  For hold, *ready_fd gets a
 * pipe on which the child writes one byte once registered, and *stdin_fd a
 * pipe whose closing tells it to leave. */
static pid_t
spawn_child(const char *mode, const char *url, const char *service, const char *addr,
            int *ready_fd, int *stdin_fd)
{
    int out[2] = {-1, -1};
    int in[2] = {-1, -1};
    if (ready_fd != NULL) {
        assert_int_equal(pipe2(out, O_CLOEXEC), 0);
        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (ready_fd != NULL) {
            dup2(out[1], 1);
            dup2(in[0], 0);
        }
        char *argv[] = {self_exe, "--child", (char *)mode, (char *)url, (char *)service,
                        (char *)addr, NULL};
        execv(self_exe, argv);
        _exit(127);
    }
    if (ready_fd != NULL) {
        close(out[1]);
        close(in[0]);
        *ready_fd = out[0];
        *stdin_fd = in[1];
    }
    return pid;
}

/* Wait (with a deadline) for the child's "registered" byte. */
static void
wait_ready(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 10000), 1);
    char c = 0;
    assert_int_equal(read(fd, &c, 1), 1);
    assert_int_equal(c, 'R');
}

static int
child_main(int argc, char **argv)
{
    if (argc != 6) {
        return 2;
    }
    const char *mode = argv[2];
    tether_registry *r = NULL;
    if (tether_registry_open(argv[3], &r) != TETHER_OK) {
        return 3;
    }
    tether_meta meta[] = {{"child", "yes"}};
    tether_instance inst = {
        .service = argv[4], .address = argv[5], .meta = meta, .meta_count = 1};
    tether_registration *g = NULL;
    if (tether_registry_register(r, &inst, &g) != TETHER_OK) {
        return 4;
    }
    if (strcmp(mode, "exit") == 0) {
        /* Leave without deregistering, like a crash that closes files.
         * _exit: no leak report for the deliberately abandoned handle. */
        _exit(0);
    }
    if (strcmp(mode, "hold") == 0) {
        if (write(1, "R", 1) != 1) {
            return 5;
        }
        char c;
        while (read(0, &c, 1) > 0) {
        }
    }
    tether_registration_deregister(g);
    tether_registry_close(r);
    return 0;
}

/* ---- tests -------------------------------------------------------------- */

static void
test_register_list_deregister(void **state)
{
    struct ctx *c = *state;
    tether_registry *reg = NULL;
    assert_int_equal(tether_registry_open(c->url, &reg), TETHER_OK);

    assert_int_equal(list_count(reg, "calc"), 0);

    tether_meta meta[] = {{"zone", "a"}, {"version", "1.2"}};
    tether_instance a = {.service = "calc",
                         .address = "127.0.0.1:8080",
                         .meta = meta,
                         .meta_count = 2,
                         .weight = 5};
    tether_instance b = {.service = "calc", .address = "unix:/run/calc.sock"};
    tether_registration *ga = NULL;
    tether_registration *gb = NULL;
    assert_int_equal(tether_registry_register(reg, &a, &ga), TETHER_OK);
    assert_int_equal(tether_registry_register(reg, &b, &gb), TETHER_OK);

    tether_instance_list *l = NULL;
    assert_int_equal(tether_registry_list(reg, "calc", &l), TETHER_OK);
    assert_int_equal(l->count, 2);
    /* Sorted by address. */
    assert_string_equal(l->items[0].address, "127.0.0.1:8080");
    assert_string_equal(l->items[0].service, "calc");
    assert_int_equal(l->items[0].weight, 5);
    assert_int_equal(l->items[0].state, TETHER_INSTANCE_SERVING);
    assert_int_equal(l->items[0].pid, getpid());
    assert_int_equal(l->items[0].meta_count, 2);
    assert_string_equal(l->items[0].meta[0].key, "zone");
    assert_string_equal(l->items[0].meta[0].value, "a");
    assert_string_equal(l->items[0].meta[1].key, "version");
    assert_string_equal(l->items[0].meta[1].value, "1.2");
    assert_non_null(l->items[0].id);
    assert_string_equal(l->items[1].address, "unix:/run/calc.sock");
    assert_int_equal(l->items[1].weight, 1);
    tether_instance_list_free(l);

    /* Other services are separate. */
    assert_int_equal(list_count(reg, "other"), 0);

    assert_int_equal(tether_registration_set_state(ga, TETHER_INSTANCE_DRAINING), TETHER_OK);
    assert_int_equal(tether_registry_list(reg, "calc", &l), TETHER_OK);
    assert_int_equal(l->count, 2);
    assert_int_equal(l->items[0].state, TETHER_INSTANCE_DRAINING);
    tether_instance_list_free(l);

    assert_int_equal(tether_registration_deregister(ga), TETHER_OK);
    assert_int_equal(list_count(reg, "calc"), 1);
    /* The registry handle may go before its registrations. */
    tether_registry_close(reg);
    assert_int_equal(tether_registration_deregister(gb), TETHER_OK);

    assert_int_equal(tether_registry_open(c->url, &reg), TETHER_OK);
    assert_int_equal(list_count(reg, "calc"), 0);
    tether_registry_close(reg);
}

static void
test_default_dir(void **state)
{
    struct ctx *c = *state;
    /* "local:", "" and NULL all mean $XDG_RUNTIME_DIR/tether. */
    char *old = getenv("XDG_RUNTIME_DIR") != NULL ? strdup(getenv("XDG_RUNTIME_DIR")) : NULL;
    assert_int_equal(setenv("XDG_RUNTIME_DIR", c->dir, 1), 0);
    const char *urls[] = {"local:", "", NULL};
    for (size_t i = 0; i < 3; i++) {
        tether_registry *reg = NULL;
        assert_int_equal(tether_registry_open(urls[i], &reg), TETHER_OK);
        tether_instance in = {.service = "calc", .address = "h:1"};
        tether_registration *g = NULL;
        assert_int_equal(tether_registry_register(reg, &in, &g), TETHER_OK);
        char p[256];
        snprintf(p, sizeof p, "%s/tether/calc", c->dir);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
        assert_int_equal(list_count(reg, "calc"), 1);
        assert_int_equal(tether_registration_deregister(g), TETHER_OK);
        tether_registry_close(reg);
    }
    if (old != NULL) {
        setenv("XDG_RUNTIME_DIR", old, 1);
        free(old);
    } else {
        unsetenv("XDG_RUNTIME_DIR");
    }
}

static void
test_invalid_arguments(void **state)
{
    struct ctx *c = *state;
    tether_registry *reg = NULL;
    tether_registration *g = NULL;
    assert_int_equal(tether_registry_open(c->url, NULL), TETHER_EINVAL);
    assert_int_equal(tether_registry_open("nosuchscheme:x", &reg), TETHER_ENOTSUP);
    assert_null(reg);
    assert_int_equal(tether_registry_open("no-colon", &reg), TETHER_EINVAL);
    assert_int_equal(tether_registry_open(c->url, &reg), TETHER_OK);

    const char *bad_addrs[] = {"", "nohost", "h:0", "h:65536", "h:80x", ":80", "::1:80",
                               "[::1]80", "unix:", "a b:80"};
    for (size_t i = 0; i < sizeof bad_addrs / sizeof bad_addrs[0]; i++) {
        tether_instance in = {.service = "svc", .address = bad_addrs[i]};
        assert_int_equal(tether_registry_register(reg, &in, &g), TETHER_EINVAL);
        assert_null(g);
    }
    const char *bad_svcs[] = {"", ".", "..", "a/b", "a b", ".hidden"};
    for (size_t i = 0; i < sizeof bad_svcs / sizeof bad_svcs[0]; i++) {
        tether_instance in = {.service = bad_svcs[i], .address = "h:1"};
        assert_int_equal(tether_registry_register(reg, &in, &g), TETHER_EINVAL);
        tether_instance_list *l = NULL;
        assert_int_equal(tether_registry_list(reg, bad_svcs[i], &l), TETHER_EINVAL);
    }
    tether_instance ok6 = {.service = "svc", .address = "[::1]:80"};
    assert_int_equal(tether_registry_register(reg, &ok6, &g), TETHER_OK);
    assert_int_equal(tether_registration_set_state(g, (tether_instance_state)7), TETHER_EINVAL);
    assert_int_equal(tether_registration_deregister(g), TETHER_OK);
    assert_int_equal(tether_registration_deregister(NULL), TETHER_OK);
    tether_watch_stop(NULL);
    tether_registry_close(NULL);
    tether_instance_list_free(NULL);
    tether_registry_close(reg);
}

static void
test_watch_added_changed_removed(void **state)
{
    struct ctx *c = *state;
    tether_registry *reg = NULL;
    assert_int_equal(tether_registry_open(c->url, &reg), TETHER_OK);

    /* One instance exists before the watch starts: reported ADDED first. */
    tether_instance pre = {.service = "calc", .address = "10.0.0.1:1"};
    tether_registration *gpre = NULL;
    assert_int_equal(tether_registry_register(reg, &pre, &gpre), TETHER_OK);

    struct rec r;
    rec_init(&r);
    tether_watch *w = NULL;
    assert_int_equal(tether_registry_watch(reg, "calc", on_event, &r, &w), TETHER_OK);
    assert_true(rec_wait(&r, &r.added, 1, H_WAIT_MS));
    assert_string_equal(r.last_addr, "10.0.0.1:1");

    tether_instance in = {.service = "calc", .address = "10.0.0.2:2"};
    tether_registration *g = NULL;
    assert_int_equal(tether_registry_register(reg, &in, &g), TETHER_OK);
    assert_true(rec_wait(&r, &r.added, 2, H_WAIT_MS));
    assert_string_equal(r.last_addr, "10.0.0.2:2");

    assert_int_equal(tether_registration_set_state(g, TETHER_INSTANCE_DRAINING), TETHER_OK);
    assert_true(rec_wait(&r, &r.changed, 1, H_WAIT_MS));
    assert_int_equal(r.last_state, TETHER_INSTANCE_DRAINING);

    assert_int_equal(tether_registration_deregister(g), TETHER_OK);
    assert_true(rec_wait(&r, &r.removed, 1, H_WAIT_MS));
    assert_string_equal(r.last_addr, "10.0.0.2:2");

    assert_int_equal(tether_registration_deregister(gpre), TETHER_OK);
    assert_true(rec_wait(&r, &r.removed, 2, H_WAIT_MS));
    tether_watch_stop(w);
    /* A rewrite is one CHANGED, never a REMOVED+ADDED pair. */
    assert_int_equal(r.added, 2);
    assert_int_equal(r.changed, 1);
    assert_int_equal(r.removed, 2);
    rec_fini(&r);
    tether_registry_close(reg);
}

static void
test_watch_stop_from_callback(void **state)
{
    struct ctx *c = *state;
    tether_registry *reg = NULL;
    assert_int_equal(tether_registry_open(c->url, &reg), TETHER_OK);
    tether_instance in = {.service = "calc", .address = "10.0.0.3:3"};
    tether_registration *g1 = NULL;
    tether_registration *g2 = NULL;
    assert_int_equal(tether_registry_register(reg, &in, &g1), TETHER_OK);
    assert_int_equal(tether_registry_register(reg, &in, &g2), TETHER_OK);

    /* Static: the callback may still be returning when the test ends. */
    static struct rec r;
    rec_init(&r);
    r.stop_after = 1;
    /* The callback needs the handle: publish it under the lock before the
     * first event can look at it. */
    pthread_mutex_lock(&r.mu);
    tether_watch *w = NULL;
    assert_int_equal(tether_registry_watch(reg, "calc", on_event, &r, &w), TETHER_OK);
    r.self = w;
    pthread_mutex_unlock(&r.mu);
    assert_true(rec_wait(&r, &r.added, 1, H_WAIT_MS));
    /* The registry handle goes too: the detached watch thread keeps what it
     * needs until it has freed itself. */
    tether_registry_close(reg);
    assert_int_equal(tether_registration_deregister(g1), TETHER_OK);
    assert_int_equal(tether_registration_deregister(g2), TETHER_OK);
    /* Two instances existed, but the watch stopped inside the first
     * callback: the second is never reported. */
    assert_int_equal(rec_get(&r, &r.added), 1);
}

static void
test_sigkill_is_removed_fast(void **state)
{
    struct ctx *c = *state;
    tether_registry *reg = NULL;
    assert_int_equal(tether_registry_open(c->url, &reg), TETHER_OK);
    struct rec r;
    rec_init(&r);
    tether_watch *w = NULL;
    assert_int_equal(tether_registry_watch(reg, "calc", on_event, &r, &w), TETHER_OK);

    double worst = 0;
    for (int round = 1; round <= 5; round++) {
        int ready = -1;
        int keep = -1;
        pid_t pid = spawn_child("hold", c->url, "calc", "127.0.0.1:9000", &ready, &keep);
        wait_ready(ready);
        assert_true(rec_wait(&r, &r.added, round, H_WAIT_MS));
        assert_int_equal(list_count(reg, "calc"), 1);

        uint64_t t0 = tt_now_ns();
        assert_int_equal(kill(pid, SIGKILL), 0);
        bool seen = rec_wait(&r, &r.removed, round, H_WAIT_MS);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        close(ready);
        close(keep);
        assert_true(seen);
        pthread_mutex_lock(&r.mu);
        double ms = (double)(r.last_removed_ns - t0) / 1e6;
        pthread_mutex_unlock(&r.mu);
        print_message("SIGKILL -> REMOVED round %d: %.3f ms\n", round, ms);
        worst = ms > worst ? ms : worst;
        /* The watcher removed the dead entry: a list finds nothing. */
        assert_int_equal(list_count(reg, "calc"), 0);
    }
    print_message("SIGKILL -> REMOVED worst of 5: %.3f ms\n", worst);
    /* Milliseconds in practice (printed above; bench/ has the figure); the
     * bound only shows the watch is woken by the death, not by a timer,
     * and leaves room for a loaded machine. */
    assert_true(worst < 5000.0);
    tether_watch_stop(w);
    rec_fini(&r);
    tether_registry_close(reg);
}

static void
write_file(const char *dir, const char *name, const char *text, size_t len, bool lock,
           int *fd_out)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    if (lock) {
        assert_int_equal(flock(fd, LOCK_EX), 0);
        *fd_out = fd;
    } else {
        close(fd);
    }
}

static void
test_garbage_is_skipped(void **state)
{
    struct ctx *c = *state;
    tether_registry *reg = NULL;
    assert_int_equal(tether_registry_open(c->url, &reg), TETHER_OK);
    tether_instance in = {.service = "calc", .address = "10.0.0.4:4"};
    tether_registration *g = NULL;
    assert_int_equal(tether_registry_register(reg, &in, &g), TETHER_OK);

    char sdir[128];
    snprintf(sdir, sizeof sdir, "%s/calc", c->dir);
    int fds[5];
    const char junk[] = "\x01\x02garbage{{{";
    /* Unlocked garbage: nobody owns it, so it is dead, but it is not an
     * entry this backend wrote (name and content), so it stays. */
    write_file(sdir, "dead.json", junk, sizeof junk - 1, false, NULL);
    /* Locked garbage, bad JSON, a wrong field type, an oversized entry:
     * owned by a live process (us), so skipped and left alone. */
    write_file(sdir, "junk.json", junk, sizeof junk - 1, true, &fds[0]);
    const char bad[] = "{\"address\": 5}";
    write_file(sdir, "bad.json", bad, sizeof bad - 1, true, &fds[1]);
    const char badw[] = "{\"address\":\"h:1\",\"weight\":-3}";
    write_file(sdir, "badweight.json", badw, sizeof badw - 1, true, &fds[2]);
    size_t big = 100 * 1024;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, ' ', big);
    memcpy(huge, "{\"address\":\"h:1\"", 16);
    huge[big - 1] = '}';
    write_file(sdir, "huge.json", huge, big, true, &fds[3]);
    free(huge);
    /* The plain host:port form is accepted. */
    const char plain[] = "10.0.0.9:99\n";
    write_file(sdir, "plain", plain, sizeof plain - 1, true, &fds[4]);
    /* Not regular files: skipped without being opened. */
    char p[256];
    snprintf(p, sizeof p, "%s/subdir", sdir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/fifo.json", sdir);
    assert_int_equal(mkfifo(p, 0600), 0);
    snprintf(p, sizeof p, "%s/link.json", sdir);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    /* Temporary files are never entries. */
    write_file(sdir, ".x.json.tmp", plain, sizeof plain - 1, false, NULL);

    tether_instance_list *l = NULL;
    assert_int_equal(tether_registry_list(reg, "calc", &l), TETHER_OK);
    assert_int_equal(l->count, 2);
    assert_string_equal(l->items[0].address, "10.0.0.4:4");
    assert_string_equal(l->items[1].address, "10.0.0.9:99");
    assert_string_equal(l->items[1].id, "plain");
    tether_instance_list_free(l);
    snprintf(p, sizeof p, "%s/dead.json", sdir);
    assert_int_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/junk.json", sdir);
    assert_int_equal(access(p, F_OK), 0);

    /* A watch reports the same two, and keeps working. */
    struct rec r;
    rec_init(&r);
    tether_watch *w = NULL;
    assert_int_equal(tether_registry_watch(reg, "calc", on_event, &r, &w), TETHER_OK);
    assert_true(rec_wait(&r, &r.added, 2, H_WAIT_MS));
    /* Releasing a garbage file's lock makes it dead: it was never
     * reported, so no REMOVED (and, not being an entry, it stays). */
    close(fds[0]);
    tether_instance in2 = {.service = "calc", .address = "10.0.0.5:5"};
    tether_registration *g2 = NULL;
    assert_int_equal(tether_registry_register(reg, &in2, &g2), TETHER_OK);
    assert_true(rec_wait(&r, &r.added, 3, H_WAIT_MS));
    assert_int_equal(rec_get(&r, &r.removed), 0);
    /* The plain entry's owner goes away: REMOVED. */
    close(fds[4]);
    assert_true(rec_wait(&r, &r.removed, 1, H_WAIT_MS));
    assert_string_equal(r.last_addr, "10.0.0.9:99");
    tether_watch_stop(w);
    assert_int_equal(rec_get(&r, &r.added), 3);
    rec_fini(&r);
    for (int i = 1; i < 4; i++) {
        close(fds[i]);
    }
    assert_int_equal(tether_registration_deregister(g2), TETHER_OK);
    assert_int_equal(tether_registration_deregister(g), TETHER_OK);
    assert_int_equal(list_count(reg, "calc"), 0);
    tether_registry_close(reg);
}

/* Whether path exists (without following a final symlink). */
static bool
exists(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return lstat(p, &st) == 0;
}

/* An entry's text as this backend writes it. */
static const char entry_text[] =
    "{\"version\":1,\"service\":\"calc\",\"address\":\"127.0.0.1:1\",\"state\":\"serving\","
    "\"weight\":1,\"pid\":1,\"meta\":{}}\n";

static void
test_symlinked_service_dir_is_refused(void **state)
{
    struct ctx *c = *state;
    /* Somebody else's directory of files nobody holds a lock on, planted
     * as a service directory through a symlink. */
    char victim[128];
    snprintf(victim, sizeof victim, "%s/victim", c->dir);
    assert_int_equal(mkdir(victim, 0700), 0);
    write_file(victim, "app.conf", "x=1\n", 4, false, NULL);
    write_file(victim, "127.0.0.1_1@1.0123456789abcdef.json", entry_text, sizeof entry_text - 1,
               false, NULL);
    char base[128];
    snprintf(base, sizeof base, "%s/reg", c->dir);
    assert_int_equal(mkdir(base, 0700), 0);
    char link[160];
    snprintf(link, sizeof link, "%s/calc", base);
    assert_int_equal(symlink(victim, link), 0);
    char url[192];
    snprintf(url, sizeof url, "local:%s", base);
    tether_registry *reg = NULL;
    assert_int_equal(tether_registry_open(url, &reg), TETHER_OK);

    tether_instance_list *l = NULL;
    assert_int_equal(tether_registry_list(reg, "calc", &l), TETHER_EREGISTRY);
    assert_null(l);
    struct rec r;
    rec_init(&r);
    tether_watch *w = NULL;
    assert_int_equal(tether_registry_watch(reg, "calc", on_event, &r, &w), TETHER_EREGISTRY);
    assert_null(w);
    rec_fini(&r);
    tether_instance in = {.service = "calc", .address = "h:1"};
    tether_registration *g = NULL;
    assert_int_equal(tether_registry_register(reg, &in, &g), TETHER_EREGISTRY);
    assert_null(g);
    /* Nothing in the victim directory was touched. */
    assert_true(exists(victim, "app.conf"));
    assert_true(exists(victim, "127.0.0.1_1@1.0123456789abcdef.json"));

    /* A service directory others can write is refused too. */
    char sdir[192];
    snprintf(sdir, sizeof sdir, "%s/open", base);
    assert_int_equal(mkdir(sdir, 0700), 0);
    assert_int_equal(chmod(sdir, 0777), 0);
    assert_int_equal(tether_registry_list(reg, "open", &l), TETHER_EREGISTRY);
    if (geteuid() == 0) {
        /* And one owned by another user (only root can make one). */
        snprintf(sdir, sizeof sdir, "%s/theirs", base);
        assert_int_equal(mkdir(sdir, 0700), 0);
        assert_int_equal(chown(sdir, 65534, 65534), 0);
        assert_int_equal(tether_registry_list(reg, "theirs", &l), TETHER_EREGISTRY);
    }
    tether_registry_close(reg);
}

static void
test_only_own_dead_entries_are_removed(void **state)
{
    struct ctx *c = *state;
    tether_registry *reg = NULL;
    assert_int_equal(tether_registry_open(c->url, &reg), TETHER_OK);
    tether_instance in = {.service = "calc", .address = "10.0.0.4:4"};
    tether_registration *g = NULL;
    assert_int_equal(tether_registry_register(reg, &in, &g), TETHER_OK);
    char sdir[128];
    snprintf(sdir, sizeof sdir, "%s/calc", c->dir);

    /* Unlocked, so "dead"; only the last is an entry this backend wrote. */
    write_file(sdir, "config.txt", "a=1\n", 4, false, NULL);
    write_file(sdir, "h_1@12.0123456789abcdef.json", "a=1\n", 4, false, NULL);
    write_file(sdir, "h_1@12.0123456789abcdeX.json", entry_text, sizeof entry_text - 1, false,
               NULL);
    write_file(sdir, "h_2@12.0123456789abcdef.json", entry_text, sizeof entry_text - 1, false,
               NULL);
    /* Stale temporary files: only one with our name form goes. */
    write_file(sdir, ".notes.tmp", "", 0, false, NULL);
    write_file(sdir, ".h_3@12.0123456789abcdef.json.tmp", "", 0, false, NULL);
    struct timespec old[2] = {{.tv_sec = time(NULL) - 3600}, {.tv_sec = time(NULL) - 3600}};
    assert_int_equal(utimensat(AT_FDCWD, sdir, old, 0), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/.notes.tmp", sdir);
    assert_int_equal(utimensat(AT_FDCWD, p, old, 0), 0);
    snprintf(p, sizeof p, "%s/.h_3@12.0123456789abcdef.json.tmp", sdir);
    assert_int_equal(utimensat(AT_FDCWD, p, old, 0), 0);

    assert_int_equal(list_count(reg, "calc"), 1);
    assert_true(exists(sdir, "config.txt"));
    assert_true(exists(sdir, "h_1@12.0123456789abcdef.json"));
    assert_true(exists(sdir, "h_1@12.0123456789abcdeX.json"));
    assert_false(exists(sdir, "h_2@12.0123456789abcdef.json"));
    assert_true(exists(sdir, ".notes.tmp"));
    assert_false(exists(sdir, ".h_3@12.0123456789abcdef.json.tmp"));

    /* A watch leaves them alone as well, and still sees ours. */
    write_file(sdir, "h_4@12.0123456789abcdef.json", entry_text, sizeof entry_text - 1, false,
               NULL);
    struct rec r;
    rec_init(&r);
    tether_watch *w = NULL;
    assert_int_equal(tether_registry_watch(reg, "calc", on_event, &r, &w), TETHER_OK);
    assert_true(rec_wait(&r, &r.added, 1, H_WAIT_MS));
    /* The first scan reports ours and reaps h_4 in directory order: give
     * it the time to reach h_4 when ours came first. */
    for (int i = 0; i < 500 && exists(sdir, "h_4@12.0123456789abcdef.json"); i++) {
        usleep(10000);
    }
    tether_watch_stop(w);
    rec_fini(&r);
    assert_false(exists(sdir, "h_4@12.0123456789abcdef.json"));
    assert_true(exists(sdir, "config.txt"));
    assert_true(exists(sdir, "h_1@12.0123456789abcdef.json"));

    assert_true(tt_local_entry_name_valid("127.0.0.1_8080@4242.9f3c0123456789ab.json", false));
    assert_true(tt_local_entry_name_valid(".unix__run_x.sock@1.9f3c0123456789ab.json.tmp", true));
    assert_false(tt_local_entry_name_valid("passwd", false));
    assert_false(tt_local_entry_name_valid("a@1.9f3c0123456789ab.json.bak", false));
    assert_false(tt_local_entry_name_valid("a/b@1.9f3c0123456789ab.json", false));
    assert_false(tt_local_entry_name_valid("@1.9f3c0123456789ab.json", false));
    assert_false(tt_local_entry_name_valid("a@.9f3c0123456789ab.json", false));
    assert_false(tt_local_entry_name_valid("a@1.9f3c0123456789a.json", false));
    assert_false(tt_local_entry_name_valid(".x.tmp", true));
    assert_int_equal(tether_registration_deregister(g), TETHER_OK);
    tether_registry_close(reg);
}

static void
test_untrusted_entries_are_skipped(void **state)
{
    struct ctx *c = *state;
    if (geteuid() != 0) {
        /* Only root can make a file owned by somebody else. */
        skip();
    }
    tether_registry *reg = NULL;
    assert_int_equal(tether_registry_open(c->url, &reg), TETHER_OK);
    tether_instance in = {.service = "calc", .address = "10.0.0.4:4"};
    tether_registration *g = NULL;
    assert_int_equal(tether_registry_register(reg, &in, &g), TETHER_OK);
    char sdir[128];
    snprintf(sdir, sizeof sdir, "%s/calc", c->dir);
    /* A live entry (locked) and a dead one, both another user's. */
    int fd = -1;
    write_file(sdir, "h_5@12.0123456789abcdef.json", entry_text, sizeof entry_text - 1, true,
               &fd);
    assert_int_equal(fchown(fd, 65534, 65534), 0);
    write_file(sdir, "h_6@12.0123456789abcdef.json", entry_text, sizeof entry_text - 1, false,
               NULL);
    char p[256];
    snprintf(p, sizeof p, "%s/h_6@12.0123456789abcdef.json", sdir);
    assert_int_equal(chown(p, 65534, 65534), 0);
    assert_int_equal(list_count(reg, "calc"), 1);
    assert_true(exists(sdir, "h_6@12.0123456789abcdef.json"));
    tether_registry_close(reg);

    /* Trusting their group: the live one is listed. */
    char url[160];
    snprintf(url, sizeof url, "%s?group=65534", c->url);
    assert_int_equal(tether_registry_open(url, &reg), TETHER_OK);
    assert_int_equal(list_count(reg, "calc"), 2);
    tether_registry_close(reg);
    close(fd);

    /* Options are checked. */
    snprintf(url, sizeof url, "%s?grup=65534", c->url);
    assert_int_equal(tether_registry_open(url, &reg), TETHER_EINVAL);
    snprintf(url, sizeof url, "%s?group=no-such-group-here", c->url);
    assert_int_equal(tether_registry_open(url, &reg), TETHER_EINVAL);
    snprintf(url, sizeof url, "%s?group", c->url);
    assert_int_equal(tether_registry_open(url, &reg), TETHER_EINVAL);
    assert_int_equal(tether_registration_deregister(g), TETHER_OK);
}

static void
test_default_dir_prefers_run(void **state)
{
    struct ctx *c = *state;
    char *old = getenv("XDG_RUNTIME_DIR") != NULL ? strdup(getenv("XDG_RUNTIME_DIR")) : NULL;
    assert_int_equal(unsetenv("XDG_RUNTIME_DIR"), 0);
    unsigned long uid = (unsigned long)geteuid();
    char got[512];
    char want[512];
    /* Nothing in /run: /tmp, the last resort. */
    assert_int_equal(tt_local_default_dir(c->dir, got, sizeof got), TETHER_OK);
    snprintf(want, sizeof want, "%s/tmp/tether-%lu", c->dir, uid);
    assert_string_equal(got, want);
    /* The user's runtime directory, where it exists. */
    char p[512];
    snprintf(p, sizeof p, "%s/run/user/%lu", c->dir, uid);
    assert_int_equal(tt_local_mkdirs(p), 0);
    assert_int_equal(tt_local_default_dir(c->dir, got, sizeof got), TETHER_OK);
    snprintf(want, sizeof want, "%s/run/user/%lu/tether", c->dir, uid);
    assert_string_equal(got, want);
    /* /run/tether first, when it is there and writable. */
    snprintf(p, sizeof p, "%s/run/tether", c->dir);
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(tt_local_default_dir(c->dir, got, sizeof got), TETHER_OK);
    assert_string_equal(got, p);
    /* XDG_RUNTIME_DIR wins over all. */
    assert_int_equal(setenv("XDG_RUNTIME_DIR", "/x", 1), 0);
    assert_int_equal(tt_local_default_dir(c->dir, got, sizeof got), TETHER_OK);
    assert_string_equal(got, "/x/tether");
    if (old != NULL) {
        setenv("XDG_RUNTIME_DIR", old, 1);
        free(old);
    } else {
        unsetenv("XDG_RUNTIME_DIR");
    }
}

static void
test_unusable_dir_is_an_error(void **state)
{
    struct ctx *c = *state;
    /* Tests may run as root, for whom permissions are no obstacle: a path
     * through a regular file is unusable for everyone. */
    char file[128];
    snprintf(file, sizeof file, "%s/plainfile", c->dir);
    int fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    char url[256];
    tether_registry *reg = NULL;
    snprintf(url, sizeof url, "local:%s", file);
    assert_int_equal(tether_registry_open(url, &reg), TETHER_EREGISTRY);
    assert_null(reg);
    snprintf(url, sizeof url, "local:%s/below", file);
    assert_int_equal(tether_registry_open(url, &reg), TETHER_EREGISTRY);

    /* A good base directory whose service directory is a regular file:
     * register, list and watch all fail cleanly. */
    assert_int_equal(tether_registry_open(c->url, &reg), TETHER_OK);
    tether_instance in = {.service = "plainfile", .address = "h:1"};
    tether_registration *g = NULL;
    assert_int_equal(tether_registry_register(reg, &in, &g), TETHER_EREGISTRY);
    assert_null(g);
    tether_instance_list *l = NULL;
    assert_int_equal(tether_registry_list(reg, "plainfile", &l), TETHER_EREGISTRY);
    assert_null(l);
    struct rec r;
    rec_init(&r);
    tether_watch *w = NULL;
    assert_int_equal(tether_registry_watch(reg, "plainfile", on_event, &r, &w),
                     TETHER_EREGISTRY);
    assert_null(w);
    rec_fini(&r);
    tether_registry_close(reg);
}

static void
test_many_children_leave_nothing(void **state)
{
    struct ctx *c = *state;
    enum { CHILDREN = 200, IN_FLIGHT = 64 };
    tether_registry *reg = NULL;
    assert_int_equal(tether_registry_open(c->url, &reg), TETHER_OK);
    struct rec r;
    rec_init(&r);
    tether_watch *w = NULL;
    assert_int_equal(tether_registry_watch(reg, "calc", on_event, &r, &w), TETHER_OK);

    pid_t pids[CHILDREN];
    int started = 0;
    int reaped = 0;
    int failed = 0;
    uint64_t t0 = tt_now_ns();
    /* Up to IN_FLIGHT children run at once; half leave by exiting without
     * deregistering, half deregister. */
    while (reaped < CHILDREN) {
        while (started < CHILDREN && started - reaped < IN_FLIGHT) {
            char addr[32];
            snprintf(addr, sizeof addr, "127.0.0.1:%d", 20000 + started);
            pids[started] = spawn_child(started % 2 == 0 ? "exit" : "dereg", c->url, "calc",
                                        addr, NULL, NULL);
            started++;
        }
        int status = 0;
        pid_t p = waitpid(pids[reaped], &status, 0);
        assert_int_equal(p, pids[reaped]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            failed++;
        }
        reaped++;
    }
    print_message("200 children registered and left in %.0f ms\n",
                  (double)(tt_now_ns() - t0) / 1e6);
    assert_int_equal(failed, 0);
    assert_int_equal(list_count(reg, "calc"), 0);

    /* inotify delivers in order: once the watch reports a marker registered
     * now, it has handled every earlier event, so it must hold exactly the
     * marker. */
    tether_instance marker = {.service = "calc", .address = "127.0.0.1:1"};
    tether_registration *g = NULL;
    int added_before = rec_get(&r, &r.added);
    assert_int_equal(tether_registry_register(reg, &marker, &g), TETHER_OK);
    assert_true(rec_wait(&r, &r.added, added_before + 1, H_WAIT_MS));
    assert_int_equal(rec_get(&r, &r.present), 1);
    assert_int_equal(tether_registration_deregister(g), TETHER_OK);
    assert_true(rec_wait(&r, &r.removed, rec_get(&r, &r.added), H_WAIT_MS));
    assert_int_equal(rec_get(&r, &r.present), 0);
    print_message("watch saw %d added / %d removed\n", r.added, r.removed);
    tether_watch_stop(w);
    rec_fini(&r);

    char sdir[128];
    snprintf(sdir, sizeof sdir, "%s/calc", c->dir);
    DIR *d = opendir(sdir);
    assert_non_null(d);
    int files = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        files += de->d_name[0] != '.';
    }
    closedir(d);
    assert_int_equal(files, 0);
    tether_registry_close(reg);
}

/* Two watchers in one process and a lister: their own opens and closes
 * must not feed each other events forever.  After a quiet period marked by
 * a registration, the number of callbacks is exactly what happened. */
static void
test_watchers_do_not_echo(void **state)
{
    struct ctx *c = *state;
    tether_registry *reg = NULL;
    assert_int_equal(tether_registry_open(c->url, &reg), TETHER_OK);
    tether_instance in = {.service = "calc", .address = "10.0.0.6:6"};
    tether_registration *g = NULL;
    assert_int_equal(tether_registry_register(reg, &in, &g), TETHER_OK);
    struct rec r1;
    struct rec r2;
    rec_init(&r1);
    rec_init(&r2);
    tether_watch *w1 = NULL;
    tether_watch *w2 = NULL;
    assert_int_equal(tether_registry_watch(reg, "calc", on_event, &r1, &w1), TETHER_OK);
    assert_int_equal(tether_registry_watch(reg, "calc", on_event, &r2, &w2), TETHER_OK);
    assert_true(rec_wait(&r1, &r1.added, 1, H_WAIT_MS));
    assert_true(rec_wait(&r2, &r2.added, 1, H_WAIT_MS));
    for (int i = 0; i < 20; i++) {
        assert_int_equal(list_count(reg, "calc"), 1);
    }
    /* Measure CPU over a marker round trip: an echo loop would burn it. */
    struct timespec c0;
    struct timespec c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    tether_instance m = {.service = "calc", .address = "10.0.0.7:7"};
    tether_registration *gm = NULL;
    assert_int_equal(tether_registry_register(reg, &m, &gm), TETHER_OK);
    assert_true(rec_wait(&r1, &r1.added, 2, H_WAIT_MS));
    assert_true(rec_wait(&r2, &r2.added, 2, H_WAIT_MS));
    assert_int_equal(tether_registration_deregister(gm), TETHER_OK);
    assert_true(rec_wait(&r1, &r1.removed, 1, H_WAIT_MS));
    assert_true(rec_wait(&r2, &r2.removed, 1, H_WAIT_MS));
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    tether_watch_stop(w1);
    tether_watch_stop(w2);
    assert_int_equal(r1.added + r1.removed + r1.changed, 3);
    assert_int_equal(r2.added + r2.removed + r2.changed, 3);
    double cpu_ms = (double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e6;
    print_message("CPU for a register/deregister round trip with 2 watchers: %.2f ms\n", cpu_ms);
    rec_fini(&r1);
    rec_fini(&r2);
    assert_int_equal(tether_registration_deregister(g), TETHER_OK);
    tether_registry_close(reg);
}

/* The tether tool's path, from TETHER_BIN_DIR (set by ctest). */
static void
tool_path(char *buf, size_t cap)
{
    const char *bin = getenv("TETHER_BIN_DIR");
    /* A missing tool is a failure, never a silent skip. */
    assert_non_null(bin);
    snprintf(buf, cap, "%s/tether", bin);
    assert_int_equal(access(buf, X_OK), 0);
}

/* Read one line from fd (blocking with a deadline); false on timeout/EOF. */
static bool
read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t n = 0;
    uint64_t deadline = tt_now_ms() + (uint64_t)timeout_ms;
    while (n + 1 < cap) {
        uint64_t now = tt_now_ms();
        if (now >= deadline) {
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - now)) != 1) {
            break;
        }
        char ch;
        if (read(fd, &ch, 1) != 1) {
            break;
        }
        if (ch == '\n') {
            buf[n] = '\0';
            return true;
        }
        buf[n++] = ch;
    }
    buf[n] = '\0';
    return false;
}

/* The id (file name) of the one instance of "calc". */
static const char *
g_id(tether_registry *reg)
{
    static char id[256];
    tether_instance_list *l = NULL;
    assert_int_equal(tether_registry_list(reg, "calc", &l), TETHER_OK);
    assert_int_equal(l->count, 1);
    snprintf(id, sizeof id, "%s", l->items[0].id);
    tether_instance_list_free(l);
    return id;
}

static void
test_cli_list_and_watch(void **state)
{
    struct ctx *c = *state;
    char tool[4096];
    tool_path(tool, sizeof tool);
    tether_registry *reg = NULL;
    assert_int_equal(tether_registry_open(c->url, &reg), TETHER_OK);
    tether_meta meta[] = {{"zone", "a b"}};
    tether_instance in = {.service = "calc",
                          .address = "127.0.0.1:8080",
                          .meta = meta,
                          .meta_count = 1,
                          .weight = 2};
    tether_registration *g = NULL;
    assert_int_equal(tether_registry_register(reg, &in, &g), TETHER_OK);

    /* list: one line per instance, exit 0. */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' list calc --registry '%s'", tool, c->url);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[512];
    char want[512];
    snprintf(want, sizeof want, "127.0.0.1:8080 serving weight=2 zone=\"a b\" pid=%d\n",
             (int)getpid());
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, want);
    assert_null(fgets(line, sizeof line, f));
    int st = pclose(f);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* An unusable registry (a directory below a regular file): exit 1 with
     * a message on stderr. */
    snprintf(cmd, sizeof cmd, "'%s' list calc --registry 'local:%s/calc/%s/x' 2>/dev/null", tool,
             c->dir, g_id(reg));
    st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);

    /* watch: the existing instance as added, then changes as they happen,
     * exit 0 on SIGTERM. */
    int out[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        char *argv[] = {tool, "watch", "calc", "--registry", c->url, NULL};
        execv(tool, argv);
        _exit(127);
    }
    close(out[1]);
    assert_true(read_line(out[0], line, sizeof line, 5000));
    /* "YYYY-MM-DDTHH:MM:SS.mmmZ added ..." */
    assert_int_equal(strlen(line) > 25, 1);
    assert_int_equal(line[10], 'T');
    assert_int_equal(line[23], 'Z');
    assert_non_null(strstr(line, " added 127.0.0.1:8080 serving weight=2"));
    assert_int_equal(tether_registration_set_state(g, TETHER_INSTANCE_DRAINING), TETHER_OK);
    assert_true(read_line(out[0], line, sizeof line, 5000));
    assert_non_null(strstr(line, " changed 127.0.0.1:8080 draining"));
    assert_int_equal(tether_registration_deregister(g), TETHER_OK);
    assert_true(read_line(out[0], line, sizeof line, 5000));
    assert_non_null(strstr(line, " removed 127.0.0.1:8080"));
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(out[0]);
    tether_registry_close(reg);
}

int
main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0) {
        return child_main(argc, argv);
    }
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0) {
        fprintf(stderr, "cannot find own executable\n");
        return 1;
    }
    self_exe[n] = '\0';
    if (getenv("TETHER_TEST_VERBOSE") != NULL) {
        tether_log_set_handler(tether_log_stderr, TETHER_LOG_DEBUG, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_register_list_deregister, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_invalid_arguments, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_default_dir, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_watch_added_changed_removed, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_watch_stop_from_callback, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_sigkill_is_removed_fast, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_garbage_is_skipped, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_unusable_dir_is_an_error, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_symlinked_service_dir_is_refused, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_only_own_dead_entries_are_removed, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_untrusted_entries_are_skipped, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_default_dir_prefers_run, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_many_children_leave_nothing, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_watchers_do_not_echo, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_cli_list_and_watch, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
