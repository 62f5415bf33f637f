/*
 * lifebench.c - how fast a registry watcher learns that a server left, and
 * what a rolling restart costs a client (see README.md; run.sh builds and
 * runs it).
 *
 *   lifebench removal BIN_DIR REPS     SIGTERM -> removed, SIGKILL -> removed
 *   lifebench rolling BIN_DIR BEFORE_S one rolling restart of 3 instances
 *
 * removal: a calculator-server registers in a private local: registry; this
 * process watches the service with the C API.  The time runs from just
 * before kill(2) to the watch callback reporting the instance removed (both
 * read from CLOCK_MONOTONIC in this process).  Prints one line per kind:
 *   removal SIGTERM <us> <us> ...
 * rolling: three servers, two threads calling Calculator.Add back to back
 * through discovery (round robin) for BEFORE_S seconds, then each server in
 * turn is replaced (new one started and listed, old one SIGTERMed and
 * reaped) while the calls go on.  Prints
 *   rolling calls=N failed=F p99_before_us=X p99_during_us=Y restart_ms=Z
 * where "during" holds the calls started while the restart ran.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tether/client.h>
#include <tether/registry.h>
#include <tether/tether.h>

static tether_err bench_client_by_name(const char *url, const char *service, tether_client **c);

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
die(const char *what)
{
    fprintf(stderr, "lifebench: %s\n", what);
    exit(1);
}

static void
pause_short(void)
{
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ */
/* Registry and watch                                                  */

static char regdir[256];
static char regurl[300];

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* The watch's record: the latest event per address. */
#define MAXW 64
static pthread_mutex_t wmu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char addr[128];
    int added, removed;
    uint64_t removed_ns;
} wtab[MAXW];
static int nw;

static void
on_watch(tether_watch *watch, tether_watch_event ev, const tether_instance *inst, void *arg)
{
    (void)watch;
    uint64_t t = now_ns(); /* first thing: the moment we learn it */
    (void)arg;
    pthread_mutex_lock(&wmu);
    int i;
    for (i = 0; i < nw; i++) {
        if (strcmp(wtab[i].addr, inst->address) == 0) {
            break;
        }
    }
    if (i == nw) {
        if (nw == MAXW) {
            /* Recycle the oldest slot that is gone. */
            for (i = 0; i < nw && !wtab[i].removed; i++) {
            }
            if (i == nw) {
                pthread_mutex_unlock(&wmu);
                return;
            }
        } else {
            nw++;
        }
        memset(&wtab[i], 0, sizeof wtab[i]);
        snprintf(wtab[i].addr, sizeof wtab[i].addr, "%s", inst->address);
    }
    if (ev == TETHER_WATCH_ADDED) {
        wtab[i].added = 1;
        wtab[i].removed = 0;
    } else if (ev == TETHER_WATCH_REMOVED) {
        wtab[i].removed = 1;
        wtab[i].removed_ns = t;
    }
    pthread_mutex_unlock(&wmu);
}

/* 1 once addr is listed, 2 once it was removed (then *when gets the
 * time), 0 otherwise. */
static int
wstate(const char *addr, uint64_t *when)
{
    int st = 0;
    pthread_mutex_lock(&wmu);
    for (int i = 0; i < nw; i++) {
        if (strcmp(wtab[i].addr, addr) == 0) {
            st = wtab[i].removed ? 2 : wtab[i].added ? 1 : 0;
            if (when != NULL) {
                *when = wtab[i].removed_ns;
            }
        }
    }
    pthread_mutex_unlock(&wmu);
    return st;
}

static void
wait_state(const char *addr, int want)
{
    uint64_t end = now_ns() + 60000000000ull;
    while (wstate(addr, NULL) != want) {
        if (now_ns() > end) {
            die("timed out waiting for the watch");
        }
        pause_short();
    }
}

/* ------------------------------------------------------------------ */
/* Servers                                                             */

typedef struct srv {
    pid_t pid;
    int out;
    char addr[128];
} srv;

static const char *bin_dir;

static void
srv_start(srv *s, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/calculator-server", bin_dir);
    char *argv[] = {path,   "--listen", "127.0.0.1:0", "--registry", regurl,
                    "--name", (char *)name, "--threads", "1", NULL};
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        die("pipe");
    }
    pid_t pid = fork();
    if (pid < 0) {
        die("fork");
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pfd[1], 1);
        execv(path, argv);
        _exit(127);
    }
    close(pfd[1]);
    s->pid = pid;
    s->out = pfd[0];
    char buf[512];
    size_t have = 0;
    for (;;) {
        buf[have] = '\0';
        char *l = strstr(buf, "listening on ");
        char *nl = l != NULL ? strchr(l, '\n') : NULL;
        if (nl != NULL) {
            *nl = '\0';
            snprintf(s->addr, sizeof s->addr, "%s", l + strlen("listening on "));
            return;
        }
        struct pollfd p = {s->out, POLLIN, 0};
        if (poll(&p, 1, 60000) <= 0) {
            die("calculator-server did not start");
        }
        ssize_t n = read(s->out, buf + have, sizeof buf - 1 - have);
        if (n <= 0 || have + (size_t)n + 1 >= sizeof buf) {
            die("calculator-server exited before listening");
        }
        have += (size_t)n;
    }
}

static void
srv_reap(srv *s)
{
    int st;
    while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR) {
    }
    close(s->out);
    s->pid = 0;
}

/* ------------------------------------------------------------------ */
/* removal                                                             */

static int
removal(int reps)
{
    static const int sigs[2] = {SIGTERM, SIGKILL};
    static const char *names[2] = {"SIGTERM", "SIGKILL"};
    tether_registry *reg;
    tether_watch *w;
    if (tether_registry_open(regurl, &reg) != TETHER_OK ||
        tether_registry_watch(reg, "bench-removal", on_watch, NULL, &w) != TETHER_OK) {
        die("cannot watch the registry");
    }
    for (int k = 0; k < 2; k++) {
        printf("removal %s", names[k]);
        for (int r = 0; r < reps; r++) {
            srv s;
            srv_start(&s, "bench-removal");
            wait_state(s.addr, 1);
            uint64_t t0 = now_ns();
            kill(s.pid, sigs[k]);
            wait_state(s.addr, 2);
            uint64_t t1 = 0;
            wstate(s.addr, &t1);
            printf(" %.1f", (double)(t1 - t0) / 1000.0);
            fflush(stdout);
            srv_reap(&s);
        }
        printf("\n");
    }
    tether_watch_stop(w);
    tether_registry_close(reg);
    return 0;
}

/* ------------------------------------------------------------------ */
/* rolling                                                             */

#define MAXLAT (1u << 22)

typedef struct lat {
    uint64_t start_ns;
    uint32_t us;
} lat;

static lat *lats;
static atomic_uint nlat;
static atomic_long nfailed;
static atomic_int stop;
static tether_client *cli;

static size_t
put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static void *
load_main(void *arg)
{
    uint64_t k = (uint64_t)(uintptr_t)arg * 1000000000ull;
    while (!atomic_load(&stop)) {
        /* Args{a: k, b: 1} packed by hand: the call is raw bytes. */
        uint8_t req[32];
        size_t n = 0;
        req[n++] = 0x08;
        n += put_varint(req + n, k);
        req[n++] = 0x10;
        n += put_varint(req + n, 1);
        uint8_t *out = NULL;
        size_t out_len = 0;
        uint64_t t0 = now_ns();
        tether_err e = tether_client_call_raw(cli, "Calculator.Add", req, n, &out, &out_len,
                                              TETHER_CALL_TIMEOUT(30000), NULL);
        uint64_t t1 = now_ns();
        if (e != TETHER_OK) {
            atomic_fetch_add(&nfailed, 1);
            fprintf(stderr, "lifebench: call failed: %s\n", tether_err_name(e));
        }
        tether_free(out);
        unsigned i = atomic_fetch_add(&nlat, 1);
        if (i < MAXLAT) {
            lats[i].start_ns = t0;
            lats[i].us = (uint32_t)((t1 - t0) / 1000);
        }
        k++;
    }
    return NULL;
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* p99 of the calls that started in [from, to). */
static uint32_t
p99(uint64_t from, uint64_t to, size_t *count)
{
    unsigned n = atomic_load(&nlat);
    if (n > MAXLAT) {
        n = MAXLAT;
    }
    uint32_t *v = malloc(sizeof *v * (n + 1));
    size_t m = 0;
    for (unsigned i = 0; i < n; i++) {
        if (lats[i].start_ns >= from && lats[i].start_ns < to) {
            v[m++] = lats[i].us;
        }
    }
    *count = m;
    if (m == 0) {
        free(v);
        return 0;
    }
    qsort(v, m, sizeof *v, cmp_u32);
    uint32_t r = v[(m * 99) / 100 < m ? (m * 99) / 100 : m - 1];
    free(v);
    return r;
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* prestart: start the new instances before the measured window, so that
 * it holds only the stop of the old ones (SIGTERM, deregister, drain,
 * close), not the start-up of new processes on the same cores. */
static int
rolling(double before_s, int prestart)
{
    enum { N = 3, THREADS = 2 };
    lats = calloc(MAXLAT, sizeof *lats);
    tether_registry *reg;
    tether_watch *w;
    if (lats == NULL || tether_registry_open(regurl, &reg) != TETHER_OK ||
        tether_registry_watch(reg, "bench-roll", on_watch, NULL, &w) != TETHER_OK) {
        die("cannot watch the registry");
    }
    srv old[N], fresh[N];
    for (int i = 0; i < N; i++) {
        srv_start(&old[i], "bench-roll");
        wait_state(old[i].addr, 1);
    }
    if (bench_client_by_name(regurl, "bench-roll", &cli) != TETHER_OK) {
        die("cannot create the client");
    }
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        pthread_create(&th[i], NULL, load_main, (void *)(uintptr_t)i);
    }
    /* Warm up (connections, caches), then measure "before". */
    sleep_ms(300);
    uint64_t b0 = now_ns();
    sleep_ms((long)(before_s * 1000));
    if (prestart) {
        for (int i = 0; i < N; i++) {
            srv_start(&fresh[i], "bench-roll");
            wait_state(fresh[i].addr, 1);
        }
        sleep_ms(200); /* let the client connect to them first */
    }
    uint64_t r0 = now_ns();
    for (int i = 0; i < N; i++) {
        if (!prestart) {
            srv_start(&fresh[i], "bench-roll");
            wait_state(fresh[i].addr, 1);
        }
        kill(old[i].pid, SIGTERM);
        srv_reap(&old[i]);
    }
    uint64_t r1 = now_ns();
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    size_t nb, nd;
    uint32_t pb = p99(b0, r0, &nb);
    uint32_t pd = p99(r0, r1, &nd);
    printf("rolling calls=%u failed=%ld p99_before_us=%u p99_during_us=%u restart_ms=%.1f "
           "calls_before=%zu calls_during=%zu\n",
           atomic_load(&nlat), atomic_load(&nfailed), pb, pd, (double)(r1 - r0) / 1e6, nb, nd);
    tether_client_destroy(cli);
    for (int i = 0; i < N; i++) {
        kill(fresh[i].pid, SIGKILL);
        srv_reap(&fresh[i]);
    }
    tether_watch_stop(w);
    tether_registry_close(reg);
    free(lats);
    return 0;
}

/* A client by name: the registry handle goes with the client. */
static tether_err
bench_client_by_name(const char *url, const char *service, tether_client **c)
{
    tether_registry *reg = NULL;
    tether_err rc = tether_registry_open(url, &reg);
    if (rc == TETHER_OK) {
        rc = tether_client_create_service(reg, service, NULL, c);
        tether_registry_close(reg);
    }
    return rc;
}

int
main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: lifebench removal BIN_DIR REPS | "
                        "rolling BIN_DIR BEFORE_S [full|prestart]\n");
        return 2;
    }
    bin_dir = argv[2];
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0' || strlen(base) > 64) {
        base = "/tmp";
    }
    snprintf(regdir, sizeof regdir, "%s/tether-lifebench-XXXXXX", base);
    if (mkdtemp(regdir) == NULL) {
        die("mkdtemp");
    }
    snprintf(regurl, sizeof regurl, "local:%s", regdir);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    int rc;
    if (strcmp(argv[1], "removal") == 0) {
        rc = removal((int)strtol(argv[3], NULL, 10));
    } else if (strcmp(argv[1], "rolling") == 0) {
        rc = rolling(strtod(argv[3], NULL), argc > 4 && strcmp(argv[4], "prestart") == 0);
    } else {
        rc = 2;
    }
    nftw(regdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
