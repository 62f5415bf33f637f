/*
 * cmd_bench.c - `tether bench`: load a method with calls and measure it.
 *
 *   tether bench ADDR|SERVICE Service.Method ['{"A":1,"B":2}'] [-c 64] [--conns 4] [-d 10s]
 *                [--codec native|gob|jsonrpc] [--registry URL] [--timeout MS]
 *                [--wait DURATION] [-v]
 *
 * -c calls stay in flight in total, spread over --conns clients (one
 * connection each by address; by service name each client follows every
 * instance).  Every completion callback starts the next call on its
 * client, so the window stays full with no scheduling thread.  The JSON
 * request is converted once (tether_json_request_create: the path
 * `tether call` takes) and then sent as the same bytes every time, so what
 * is measured is the RPC path, not JSON.
 *
 * stderr gets a progress line once a second; stdout the summary: calls/s,
 * errors by code, latency quantiles and a histogram.  Exit 0 when at least
 * one call succeeded, 1 when none did or the setup failed, 2 on usage.
 * SIGINT/SIGTERM end the run early with the summary so far.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tether/client.h>
#include <tether/tether.h>

#include "cli.h"
#include "hist.h"
#include "report.h"

#define MAX_CONNS 1024
#define MAX_INFLIGHT 100000
/* Error codes counted one by one; others (ESYSERR|errno) share the last. */
#define NCODES 32

struct bench;

/* One call in flight: the slot is the callback's argument, so a
 * completion knows when its call started without any lookup.  A cache
 * line each: slots of clients on different I/O threads must not share
 * one, or every call start would pull the line from the other thread. */
struct slot {
    _Alignas(64) struct conn *conn;
    uint64_t t0;
    atomic_int idle; /* its call could not start: the main loop retries it */
};

/* One client and the calls it carries. */
struct conn {
    struct bench *b;
    tether_client *client;
};

/*
 * What one thread counted.  Completions run on the I/O threads; each
 * thread counts into its own block (written by it alone, read by the
 * main thread), so the hot path has no shared cache line and no locked
 * instruction: the measuring costs the measured calls nothing worth
 * reporting.
 */
struct tstats {
    hist lat; /* successful calls only */
    _Atomic uint64_t errors[NCODES];
    _Atomic uint64_t failed;
    struct tstats *next;
};

struct bench {
    tether_json_request *rq;
    const tether_call_opts *opts;
    atomic_int stop; /* set at the end: completions start no new call */
    pthread_mutex_t mu;
    struct tstats *stats;               /* every thread's block, under mu */
    _Atomic(char *) first_text[NCODES]; /* the first server text seen per code */
};

static _Thread_local struct tstats *my_stats;

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned
code_slot(tether_err err)
{
    return (unsigned)err < NCODES - 1 ? (unsigned)err : NCODES - 1;
}

/* This thread's block, made on its first count (NULL without memory:
 * that thread's counts are lost, the run goes on). */
static struct tstats *
stats_of(struct bench *b)
{
    if (my_stats == NULL) {
        struct tstats *s = calloc(1, sizeof *s);
        if (s == NULL) {
            return NULL;
        }
        hist_init(&s->lat);
        pthread_mutex_lock(&b->mu);
        s->next = b->stats;
        b->stats = s;
        pthread_mutex_unlock(&b->mu);
        my_stats = s;
    }
    return my_stats;
}

/* Count one failed call with code err on this thread. */
static void
count_error(struct bench *b, tether_err err)
{
    struct tstats *s = stats_of(b);
    if (s != NULL) {
        unsigned k = code_slot(err);
        atomic_store_explicit(&s->errors[k],
                              atomic_load_explicit(&s->errors[k], memory_order_relaxed) + 1,
                              memory_order_relaxed);
        atomic_store_explicit(&s->failed,
                              atomic_load_explicit(&s->failed, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    }
}

static void on_reply(tether_client *c, const tether_reply *r, void *arg);

/* Start the slot's next call; a call that cannot start counts as failed. */
static void
start(struct slot *s)
{
    struct conn *cn = s->conn;
    s->t0 = now_ns();
    tether_err err = tether_client_call_async_json(cn->client, cn->b->rq, cn->b->opts, on_reply, s);
    if (err != TETHER_OK) {
        /* No callback will come (a reconnect failed, say): count it and
         * leave the slot to the main loop, which tries again each second,
         * so a server that comes back gets the whole window again. */
        count_error(cn->b, err);
        atomic_store(&s->idle, 1);
    }
}

static void
on_reply(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    struct slot *s = arg;
    struct conn *cn = s->conn;
    struct bench *b = cn->b;
    tether_msg_free(r->msg); /* gob hands over the unpacked reply */
    if (atomic_load_explicit(&b->stop, memory_order_relaxed)) {
        return; /* the run is over: a late answer is not counted */
    }
    if (r->err == TETHER_OK) {
        struct tstats *st = stats_of(b);
        if (st != NULL) {
            hist_record(&st->lat, now_ns() - s->t0);
        }
    } else {
        unsigned k = code_slot(r->err);
        count_error(b, r->err);
        if (r->errtext != NULL &&
            atomic_load_explicit(&b->first_text[k], memory_order_relaxed) == NULL) {
            char *t = strdup(r->errtext), *none = NULL;
            if (!atomic_compare_exchange_strong(&b->first_text[k], &none, t)) {
                free(t); /* another thread was first */
            }
        }
    }
    start(s);
}

static int
usage(FILE *f)
{
    fprintf(f, "usage: tether bench ADDR|SERVICE Service.Method ['{\"A\":1,\"B\":2}'] [-c CALLS] "
               "[--conns N]\n"
               "                    [-d DURATION] [--codec native|gob|jsonrpc] [--registry URL]\n"
               "                    [--timeout MS] [--wait DURATION] [-v]\n"
               "  -c CALLS        calls in flight in total (default 64)\n"
               "  --conns N       clients (connections) they are spread over (default 4)\n"
               "  -d DURATION     how long to run: 500ms, 10s, 1m (default 10s)\n"
               "  --timeout MS    deadline of each call (default 10000)\n"
               "  --wait DURATION by service name: wait this long for an instance (default: "
               "fail at once)\n");
    return f == stdout ? 0 : 2;
}

/* The value of option a at argv[*i] ("-c 8" or "-c=8"/"--conns=8"), or NULL. */
static const char *
opt_value(int argc, char **argv, int *i, const char *name, const char *alt)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strcmp(a, name) == 0 || (alt != NULL && strcmp(a, alt) == 0)) {
        if (*i + 1 >= argc) {
            fprintf(stderr, "tether bench: %s needs a value\n", a);
            exit(2);
        }
        return argv[++*i];
    }
    if (strncmp(a, name, n) == 0 && a[n] == '=') {
        return a + n + 1;
    }
    return NULL;
}

static int
parse_count(const char *opt, const char *v, long max, long *out)
{
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (end == v || *end != '\0' || n < 1 || n > max) {
        fprintf(stderr, "tether bench: %s wants a number from 1 to %ld, not '%s'\n", opt, max, v);
        return -1;
    }
    *out = n;
    return 0;
}

/* Sum every thread's counts; ok is the calls that succeeded. */
static void
totals(struct bench *b, uint64_t *ok, uint64_t *bad)
{
    *ok = *bad = 0;
    pthread_mutex_lock(&b->mu);
    for (struct tstats *s = b->stats; s != NULL; s = s->next) {
        *ok += atomic_load_explicit(&s->lat.total, memory_order_relaxed);
        *bad += atomic_load_explicit(&s->failed, memory_order_relaxed);
    }
    pthread_mutex_unlock(&b->mu);
}

static void
report(FILE *f, struct bench *b, long nconns, double secs, const char *target, const char *method,
       const char *codec, long depth)
{
    static hist all;
    hist_init(&all);
    uint64_t errors[NCODES] = {0};
    pthread_mutex_lock(&b->mu);
    for (struct tstats *s = b->stats; s != NULL; s = s->next) {
        hist_merge(&all, &s->lat);
        for (unsigned k = 0; k < NCODES; k++) {
            errors[k] += atomic_load(&s->errors[k]);
        }
    }
    pthread_mutex_unlock(&b->mu);
    uint64_t ok, bad;
    totals(b, &ok, &bad);
    fprintf(f, "target:    %s %s (%s, %ld calls in flight over %ld connection%s)\n", target, method,
            codec, depth, nconns, nconns == 1 ? "" : "s");
    fprintf(f, "duration:  %.2f s\n", secs);
    fprintf(f, "calls:     %llu ok, %.0f calls/s\n", (unsigned long long)ok,
            secs > 0 ? (double)ok / secs : 0.0);
    fprintf(f, "errors:    %llu\n", (unsigned long long)bad);
    for (unsigned k = 0; k < NCODES; k++) {
        if (errors[k] == 0) {
            continue;
        }
        tether_err e = k == NCODES - 1 ? TETHER_ESYSERR : (tether_err)k;
        fprintf(f, "  %-20s %llu (%s", tether_err_name(e), (unsigned long long)errors[k],
                k == NCODES - 1 ? "other" : tether_strerror(e));
        char *text = atomic_load(&b->first_text[k]);
        if (text != NULL) {
            fputs(": ", f);
            cli_print_text(f, text);
        }
        fputs(")\n", f);
    }
    if (ok == 0) {
        return;
    }
    fprintf(f, "latency:   min %.3f ms, mean %.3f ms, max %.3f ms\n",
            (double)atomic_load(&all.min) / 1e6,
            (double)atomic_load(&all.sum) / (double)atomic_load(&all.total) / 1e6,
            (double)atomic_load(&all.max) / 1e6);
    static const struct {
        const char *name;
        double q;
    } qs[] = {{"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}, {"p99.9", 0.999}};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        fprintf(f, "  %-6s %10.3f ms\n", qs[i].name, (double)hist_quantile(&all, qs[i].q) / 1e6);
    }
    fprintf(f, "histogram:\n");
    hist_print(f, &all, 12);
}

int
tether_cmd_bench(int argc, char **argv)
{
    const char *target = NULL, *method = NULL, *json = NULL, *reg_flag = NULL;
    const char *codec = "native";
    long depth = 64, nconns = 4, timeout_ms = 10000;
    uint64_t dur_ms = 10000, wait_ms = 0;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if ((v = opt_value(argc, argv, &i, "-c", "--calls")) != NULL) {
            if (parse_count("-c", v, MAX_INFLIGHT, &depth) != 0) {
                return 2;
            }
        } else if ((v = opt_value(argc, argv, &i, "--conns", NULL)) != NULL) {
            if (parse_count("--conns", v, MAX_CONNS, &nconns) != 0) {
                return 2;
            }
        } else if ((v = opt_value(argc, argv, &i, "-d", "--duration")) != NULL) {
            if (cli_parse_duration(v, &dur_ms) != 0 || dur_ms == 0) {
                fprintf(stderr,
                        "tether bench: -d wants a duration such as 500ms, 10s or 1m, "
                        "not '%s'\n",
                        v);
                return 2;
            }
        } else if ((v = opt_value(argc, argv, &i, "--wait", NULL)) != NULL) {
            if (cli_parse_duration(v, &wait_ms) != 0) {
                fprintf(stderr, "tether bench: --wait wants a duration such as 5s, not '%s'\n", v);
                return 2;
            }
        } else if ((v = opt_value(argc, argv, &i, "--timeout", NULL)) != NULL) {
            if (parse_count("--timeout", v, 86400000L, &timeout_ms) != 0) {
                return 2;
            }
        } else if ((v = opt_value(argc, argv, &i, "--codec", NULL)) != NULL) {
            codec = v;
        } else if ((v = opt_value(argc, argv, &i, "--registry", "-r")) != NULL) {
            reg_flag = v;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            return usage(stdout);
        } else if (a[0] == '-' && a[1] != '\0' && !(a[1] >= '0' && a[1] <= '9')) {
            fprintf(stderr, "tether bench: unknown option %s\n", a);
            return 2;
        } else if (target == NULL) {
            target = a;
        } else if (method == NULL) {
            method = a;
        } else if (json == NULL) {
            json = a;
        } else {
            fprintf(stderr, "tether bench: unexpected argument %s\n", a);
            return 2;
        }
    }
    if (target == NULL || method == NULL) {
        return usage(stderr);
    }
    if (nconns > depth) {
        nconns = depth; /* a client with no call in flight measures nothing */
    }
    cli_log_init(verbose);
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    if (cli_parse_codec("bench", codec, &cfg) != 0) {
        return 2;
    }
    int by_name = strchr(target, ':') == NULL;
    if (by_name && cfg.codec != TETHER_CODEC_NATIVE) {
        fprintf(stderr,
                "tether bench: calls by service name speak native; give an address for "
                "--codec %s\n",
                codec);
        return 2;
    }
    /* A closed pipe on stdout is a write error, not a silent death. */
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, NULL);
    /* SIGINT/SIGTERM end the run: blocked here (and so in every I/O
     * thread started below) and taken by sigtimedwait() in the loop. */
    sigset_t stopset;
    sigemptyset(&stopset);
    sigaddset(&stopset, SIGINT);
    sigaddset(&stopset, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stopset, NULL);

    static struct bench b;
    pthread_mutex_init(&b.mu, NULL);
    tether_call_opts opts = {.timeout_ms = (uint32_t)timeout_ms};
    b.opts = &opts;
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    struct slot *slots = aligned_alloc(_Alignof(struct slot), (size_t)depth * sizeof *slots);
    if (slots != NULL) {
        memset(slots, 0, (size_t)depth * sizeof *slots);
    }
    if (conns == NULL || slots == NULL) {
        fprintf(stderr, "tether bench: out of memory\n");
        return 1;
    }
    int rc = 1;
    tether_registry *reg = NULL;
    if (by_name) {
        const char *url = cli_registry_url(reg_flag);
        reg = cli_open_registry("bench", url);
        if (reg == NULL) {
            goto out;
        }
        if (cli_await_instance("bench", reg, target, reg_flag, wait_ms) != 0) {
            goto out;
        }
    }
    for (long i = 0; i < nconns; i++) {
        conns[i].b = &b;
        cli_reason_begin();
        tether_err err = by_name ? tether_client_create_service(reg, target, &cfg, &conns[i].client)
                                 : tether_client_create(target, &cfg, &conns[i].client);
        if (err != TETHER_OK) {
            cli_fail("bench", err, "cannot connect to %s", target);
            goto out;
        }
        cli_reason_end();
    }
    char *errtext = NULL;
    tether_err err =
        tether_json_request_create(conns[0].client, method, json, b.opts, &b.rq, &errtext);
    if (err != TETHER_OK) {
        fprintf(stderr, "tether bench: %s: %s", method, tether_err_name(err));
        if (errtext != NULL) {
            fputs(": ", stderr);
            cli_print_text(stderr, errtext);
        } else {
            fprintf(stderr, " (%s)", tether_strerror(err));
        }
        fputc('\n', stderr);
        tether_free(errtext);
        goto out;
    }

    uint64_t t0 = now_ns();
    for (long k = 0; k < depth; k++) {
        /* Client i carries calls [i*depth/nconns, (i+1)*depth/nconns). */
        slots[k].conn = &conns[k * nconns / depth];
        start(&slots[k]);
    }
    /* Once a second a progress line; the run ends at the deadline or on
     * a signal.  On a terminal the line redraws itself. */
    int tty = isatty(STDERR_FILENO);
    uint64_t end = t0 + dur_ms * 1000000ull, next = t0 + 1000000000ull, last_ok = 0;
    uint64_t last_t = t0;
    for (;;) {
        uint64_t now = now_ns();
        if (now >= end) {
            break;
        }
        uint64_t until = next < end ? next : end;
        struct timespec ts = {(time_t)((until - now) / 1000000000ull),
                              (long)((until - now) % 1000000000ull)};
        if (sigtimedwait(&stopset, NULL, &ts) > 0) {
            break;
        }
        now = now_ns();
        if (now >= next && now < end) {
            uint64_t ok, bad;
            totals(&b, &ok, &bad);
            fprintf(stderr, "%s%6.1fs %10.0f calls/s %10llu calls %8llu errors%s", tty ? "\r" : "",
                    (double)(now - t0) / 1e9,
                    (double)(ok - last_ok) / ((double)(now - last_t) / 1e9), (unsigned long long)ok,
                    (unsigned long long)bad, tty ? "" : "\n");
            fflush(stderr);
            last_ok = ok;
            last_t = now;
            next += 1000000000ull;
            for (long k = 0; k < depth; k++) {
                if (atomic_exchange(&slots[k].idle, 0)) {
                    start(&slots[k]);
                }
            }
        }
    }
    atomic_store(&b.stop, 1);
    uint64_t t1 = now_ns();
    if (tty) {
        fputc('\n', stderr);
    }
    /* The calls still in flight complete (uncounted) before the clients
     * go, so none ends as TETHER_ECLOSED; bounded by their deadline. */
    uint64_t drain_until = now_ns() + (uint64_t)timeout_ms * 1000000ull + 1000000000ull;
    for (long i = 0; i < nconns; i++) {
        while (tether_client_get_pending(conns[i].client) > 0 && now_ns() < drain_until) {
            struct timespec ms = {0, 1000000L};
            nanosleep(&ms, NULL);
        }
    }
    report(stdout, &b, nconns, (double)(t1 - t0) / 1e9, target, method, codec, depth);
    uint64_t ok, bad;
    totals(&b, &ok, &bad);
    rc = ok > 0 ? 0 : 1;
    if (fflush(stdout) != 0) {
        fprintf(stderr, "tether bench: cannot write the output\n");
        rc = 1;
    }
out:
    for (long i = 0; i < nconns; i++) {
        tether_client_destroy(conns[i].client);
    }
    tether_json_request_free(b.rq);
    tether_registry_close(reg);
    for (unsigned k = 0; k < NCODES; k++) {
        free(atomic_load(&b.first_text[k]));
    }
    /* The I/O threads are idle now (every client is gone) and count no more. */
    while (b.stats != NULL) {
        struct tstats *s = b.stats;
        b.stats = s->next;
        free(s);
    }
    my_stats = NULL;
    free(conns);
    free(slots);
    return rc;
}
