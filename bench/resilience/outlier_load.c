/*
 * outlier_load.c - load for "alive but not serving": two clients by
 * service name call Calculator.Add continuously while a fault is injected
 * at a set time, and every call's outcome and latency is recorded.
 *
 *  - the sync client makes one call every --interval-ms (the next one at
 *    once when a call took longer);
 *  - the async client keeps --inflight calls in flight (each answer starts
 *    the next one from its callback).
 *
 * At --fault-at-ms the shell command --fault runs (SIGSTOP a server, add
 * a drop rule), at --heal-at-ms the command --heal (SIGCONT, remove it).
 * The library's log lines are watched for ejections and resumed instances.
 * One line per client goes to stdout, key=value pairs, for scripts:
 *
 *   client=sync calls=N failed=F healthy_per_s=R recovery_ms=T p99_us=P
 *   ejected_ms=E resumed_ms=S errors=NAME,NAME
 *
 * healthy_per_s is the rate before the fault (from 500 ms on, the warm-up
 * left out); recovery_ms the start of the first 50 ms window after the
 * fault from which four windows in a row average at least 80 % of that
 * rate, counted from the fault (0: never under; -1: not before the heal);
 * p99_us the 99th percentile latency of the
 * calls started in the first second after the fault; ejected_ms and
 * resumed_ms the first ejection after the fault and the first "calls
 * resume" after the heal, from the fault (-1: none).  Without a fault the
 * same run is the healthy reference.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "calculator.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "tether/client.h"
#include "tether/registry.h"
#include "tether/tether.h"

#define MAX_REC 1000000
#define WINDOW_MS 50

typedef struct rec {
    uint32_t start_ms; /* since the run began */
    uint32_t end_ms;
    uint32_t lat_us;
    int err;
} rec;

typedef struct side {
    const char *name;
    rec *r;
    atomic_size_t n;
    atomic_int outstanding;
    tether_client *c;
} side;

static struct {
    const char *registry, *service;
    uint32_t interval_ms, inflight, duration_ms, timeout_ms, backup_ms;
    uint32_t probe_ms, probe_timeout_ms, eject_base_ms, rate;
    int idempotent, async_idempotent, do_sync, do_async;
    uint32_t fault_at_ms, heal_at_ms;
    const char *fault, *heal;
    tether_balance balance;
} opt = {.interval_ms = 2,
         .inflight = 64,
         .duration_ms = 6000,
         .timeout_ms = 3000,
         .do_sync = 1,
         .do_async = 1};

static uint64_t t0_ns;
static atomic_int stopping;
static atomic_long ejected_at = -1, resumed_at = -1;
static atomic_int healed;

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t
since_ms(uint64_t ns)
{
    return (uint32_t)((ns - t0_ns) / 1000000ull);
}

static void
on_log(tether_log_level level, const char *msg, void *arg)
{
    (void)level;
    (void)arg;
    long t = (long)since_ms(now_ns());
    long none = -1;
    if (opt.fault != NULL && t >= (long)opt.fault_at_ms && strstr(msg, " ejected for ") != NULL) {
        atomic_compare_exchange_strong(&ejected_at, &none, t);
    }
    none = -1;
    if (atomic_load(&healed) && strstr(msg, "calls resume") != NULL) {
        atomic_compare_exchange_strong(&resumed_at, &none, t);
    }
    if (getenv("OUTLIER_LOG") != NULL) {
        fprintf(stderr, "%6ld ms %s\n", t, msg);
    }
}

static tether_call_opts
call_opts(int async)
{
    tether_call_opts o;
    memset(&o, 0, sizeof o);
    o.timeout_ms = opt.timeout_ms;
    o.flags = opt.idempotent || (async && opt.async_idempotent) ? TETHER_CALL_IDEMPOTENT : 0;
    return o;
}

static void
record(side *s, uint64_t start, tether_err err)
{
    uint64_t end = now_ns();
    size_t i = atomic_fetch_add(&s->n, 1);
    if (i < MAX_REC) {
        s->r[i] = (rec){.start_ms = since_ms(start),
                        .end_ms = since_ms(end),
                        .lat_us = (uint32_t)((end - start) / 1000),
                        .err = (int)err};
    }
}

static void *
sync_main(void *arg)
{
    side *s = arg;
    Args a = ARGS__INIT;
    a.a = 1;
    a.b = 2;
    tether_call_opts o = call_opts(0);
    uint64_t next = now_ns();
    while (since_ms(now_ns()) < opt.duration_ms) {
        uint64_t start = now_ns();
        ProtobufCMessage *reply = NULL;
        tether_err err =
            tether_client_call(s->c, "Calculator.Add", &a.base,
                               &google__protobuf__int64_value__descriptor, &reply, &o, NULL);
        if (err == TETHER_OK && ((Google__Protobuf__Int64Value *)reply)->value != 3) {
            err = TETHER_EBADREPLY;
        }
        tether_msg_free(reply);
        record(s, start, err);
        next += (uint64_t)opt.interval_ms * 1000000ull;
        uint64_t now = now_ns();
        if (next > now) {
            struct timespec ts = {.tv_sec = (time_t)((next - now) / 1000000000ull),
                                  .tv_nsec = (long)((next - now) % 1000000000ull)};
            nanosleep(&ts, NULL);
        } else {
            next = now;
        }
    }
    return NULL;
}

typedef struct acall {
    side *s;
    uint64_t start;
} acall;

static void start_async(acall *ac);

static void
on_reply(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    acall *ac = arg;
    tether_err err = r->err;
    if (err == TETHER_OK &&
        (r->msg == NULL || ((Google__Protobuf__Int64Value *)r->msg)->value != 3)) {
        err = TETHER_EBADREPLY;
    }
    tether_msg_free(r->msg);
    record(ac->s, ac->start, err);
    if (atomic_load(&stopping) || opt.rate != 0) {
        /* Paced: the pacer starts the next one. */
        atomic_fetch_sub(&ac->s->outstanding, 1);
        free(ac);
        return;
    }
    start_async(ac);
}

static void
start_async(acall *ac)
{
    static Args a = ARGS__INIT;
    a.a = 1;
    a.b = 2;
    tether_call_opts o = call_opts(1);
    for (;;) {
        ac->start = now_ns();
        tether_err err =
            tether_client_call_async(ac->s->c, "Calculator.Add", &a.base,
                                     &google__protobuf__int64_value__descriptor, &o, on_reply, ac);
        if (err == TETHER_OK) {
            return;
        }
        /* Refused at once (no instance ready): that call failed too. */
        record(ac->s, ac->start, err);
        if (atomic_load(&stopping) || opt.rate != 0) {
            atomic_fetch_sub(&ac->s->outstanding, 1);
            free(ac);
            return;
        }
        usleep(1000);
    }
}

/* --rate: calls start at that rate, as long as fewer than --inflight
 * are out (a call that would exceed it is skipped, not queued). */
static void *
pacer_main(void *arg)
{
    side *s = arg;
    uint64_t started = 0;
    while (since_ms(now_ns()) < opt.duration_ms) {
        uint64_t due = (uint64_t)since_ms(now_ns()) * opt.rate / 1000;
        while (started < due) {
            started++;
            if ((uint32_t)atomic_load(&s->outstanding) >= opt.inflight) {
                continue;
            }
            acall *ac = calloc(1, sizeof *ac);
            ac->s = s;
            atomic_fetch_add(&s->outstanding, 1);
            start_async(ac);
        }
        usleep(500);
    }
    return NULL;
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void
report(side *s)
{
    size_t n = atomic_load(&s->n);
    if (n > MAX_REC) {
        n = MAX_REC;
    }
    size_t failed = 0;
    char errs[256] = "";
    size_t nwin = opt.duration_ms / WINDOW_MS + 2;
    uint32_t *win = calloc(nwin, sizeof *win);
    uint32_t *lat = calloc(n + 1, sizeof *lat);
    size_t nlat = 0;
    for (size_t i = 0; i < n; i++) {
        rec *r = &s->r[i];
        if (r->err != TETHER_OK) {
            failed++;
            const char *name = tether_err_name((tether_err)r->err);
            if (strstr(errs, name) == NULL && strlen(errs) + strlen(name) + 2 < sizeof errs) {
                if (errs[0] != '\0') {
                    strcat(errs, ",");
                }
                strcat(errs, name);
            }
        } else if (r->end_ms / WINDOW_MS < nwin) {
            win[r->end_ms / WINDOW_MS]++;
        }
        if (opt.fault != NULL && r->start_ms >= opt.fault_at_ms &&
            r->start_ms < opt.fault_at_ms + 1000) {
            lat[nlat++] = r->lat_us;
        }
    }
    /* Healthy rate: from 500 ms to the fault (or the whole run). */
    uint32_t from = 500 / WINDOW_MS;
    uint32_t to = (opt.fault != NULL ? opt.fault_at_ms : opt.duration_ms) / WINDOW_MS;
    double sum = 0;
    for (uint32_t w = from; w < to; w++) {
        sum += win[w];
    }
    double per_win = to > from ? sum / (to - from) : 0;
    if (getenv("OUTLIER_WINDOWS") != NULL) {
        for (size_t w = 0; w < nwin; w++) {
            fprintf(stderr, "%s %5zu ms %u\n", s->name, w * WINDOW_MS, win[w]);
        }
    }
    long recovery = 0;
    if (opt.fault != NULL) {
        uint32_t end = (opt.heal != NULL ? opt.heal_at_ms : opt.duration_ms) / WINDOW_MS;
        /* The first window from which the next four (200 ms) carry at
         * least 80 % of the healthy rate: one slow window of a busy
         * machine is not a fault. */
        recovery = -1;
        for (uint32_t w = opt.fault_at_ms / WINDOW_MS; w + 4 <= end && w + 4 <= nwin; w++) {
            double m = (win[w] + win[w + 1] + win[w + 2] + win[w + 3]) / 4.0;
            if (m >= 0.8 * per_win) {
                recovery = (long)(w * WINDOW_MS) - (long)opt.fault_at_ms;
                break;
            }
        }
    }
    uint32_t p99 = 0;
    if (nlat > 0) {
        qsort(lat, nlat, sizeof *lat, cmp_u32);
        p99 = lat[(nlat * 99) / 100 < nlat ? (nlat * 99) / 100 : nlat - 1];
    }
    long ej = atomic_load(&ejected_at), rs = atomic_load(&resumed_at);
    printf("client=%s calls=%zu failed=%zu healthy_per_s=%.0f recovery_ms=%ld p99_us=%u "
           "ejected_ms=%ld resumed_ms=%ld errors=%s\n",
           s->name, n, failed, per_win * (1000.0 / WINDOW_MS), recovery, p99,
           ej >= 0 ? ej - (long)opt.fault_at_ms : -1, rs >= 0 ? rs - (long)opt.fault_at_ms : -1,
           errs[0] != '\0' ? errs : "-");
    free(win);
    free(lat);
}

static void
run_cmd(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "outlier-load: '%s' exited with %d\n", cmd, rc);
    }
}

static void
usage(void)
{
    fprintf(stderr, "usage: tether-outlier-load --registry URL --name SERVICE [--duration-ms N]\n"
                    "       [--interval-ms N] [--inflight N] [--timeout-ms N] [--idempotent]\n"
                    "       [--async-idempotent]\n"
                    "       [--backup-ms N|p95] [--probe-ms N] [--probe-timeout-ms N]\n"
                    "       [--eject-base-ms N] [--only sync|async] [--rate CALLS_PER_S]\n"
                    "       [--fault-at-ms N --fault CMD] [--heal-at-ms N --heal CMD]\n"
                    "       [--balance rr|p2c]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NUM(flag, field)                                                                           \
    if (strcmp(a, flag) == 0 && v != NULL) {                                                       \
        opt.field = (uint32_t)strtoul(v, NULL, 10);                                                \
        i++;                                                                                       \
        continue;                                                                                  \
    }
        NUM("--duration-ms", duration_ms)
        NUM("--interval-ms", interval_ms)
        NUM("--inflight", inflight)
        NUM("--timeout-ms", timeout_ms)
        NUM("--probe-ms", probe_ms)
        NUM("--probe-timeout-ms", probe_timeout_ms)
        NUM("--eject-base-ms", eject_base_ms)
        NUM("--fault-at-ms", fault_at_ms)
        NUM("--heal-at-ms", heal_at_ms)
        NUM("--rate", rate)
#undef NUM
        if (strcmp(a, "--backup-ms") == 0 && v != NULL) {
            opt.backup_ms = strcmp(v, "p95") == 0 ? TETHER_BACKUP_P95 : (uint32_t)atoi(v);
            i++;
        } else if (strcmp(a, "--registry") == 0 && v != NULL) {
            opt.registry = argv[++i];
        } else if (strcmp(a, "--name") == 0 && v != NULL) {
            opt.service = argv[++i];
        } else if (strcmp(a, "--fault") == 0 && v != NULL) {
            opt.fault = argv[++i];
        } else if (strcmp(a, "--heal") == 0 && v != NULL) {
            opt.heal = argv[++i];
        } else if (strcmp(a, "--only") == 0 && v != NULL) {
            opt.do_sync = strcmp(v, "sync") == 0;
            opt.do_async = strcmp(v, "async") == 0;
            i++;
        } else if (strcmp(a, "--balance") == 0 && v != NULL) {
            if (strcmp(v, "rr") == 0) {
                opt.balance = TETHER_BALANCE_ROUND_ROBIN;
            } else if (strcmp(v, "p2c") == 0) {
                opt.balance = TETHER_BALANCE_P2C;
            } else {
                usage();
            }
            i++;
        } else if (strcmp(a, "--idempotent") == 0) {
            opt.idempotent = 1;
        } else if (strcmp(a, "--async-idempotent") == 0) {
            opt.async_idempotent = 1;
        } else {
            usage();
        }
    }
    if (opt.registry == NULL || opt.service == NULL) {
        usage();
    }
    t0_ns = now_ns();
    tether_log_set_handler(on_log, TETHER_LOG_INFO, NULL);
    tether_registry *reg = NULL;
    tether_err rc = tether_registry_open(opt.registry, &reg);
    if (rc != TETHER_OK) {
        fprintf(stderr, "outlier-load: registry %s: %s\n", opt.registry, tether_strerror(rc));
        return 1;
    }
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.call_timeout_ms = opt.timeout_ms;
    cfg.backup_ms = opt.backup_ms;
    cfg.balance = opt.balance;
    if (opt.probe_ms != 0) {
        cfg.probe_ms = opt.probe_ms;
    }
    if (opt.probe_timeout_ms != 0) {
        cfg.probe_timeout_ms = opt.probe_timeout_ms;
    }
    if (opt.eject_base_ms != 0) {
        cfg.eject_base_ms = opt.eject_base_ms;
    }
    side sides[2] = {{.name = "sync"}, {.name = "async"}};
    for (int k = 0; k < 2; k++) {
        sides[k].r = calloc(MAX_REC, sizeof(rec));
        rc = sides[k].r != NULL ? tether_client_create_service(reg, opt.service, &cfg, &sides[k].c)
                                : TETHER_ENOMEM;
        if (rc != TETHER_OK) {
            fprintf(stderr, "outlier-load: client: %s\n", tether_strerror(rc));
            return 1;
        }
    }
    tether_registry_close(reg);
    t0_ns = now_ns();
    pthread_t st;
    if (opt.do_sync) {
        pthread_create(&st, NULL, sync_main, &sides[0]);
    }
    pthread_t pt;
    if (opt.do_async && opt.rate != 0) {
        sides[1].outstanding = 0;
        pthread_create(&pt, NULL, pacer_main, &sides[1]);
    } else if (opt.do_async) {
        atomic_store(&sides[1].outstanding, (int)opt.inflight);
        for (uint32_t i = 0; i < opt.inflight; i++) {
            acall *ac = calloc(1, sizeof *ac);
            ac->s = &sides[1];
            start_async(ac);
        }
    }
    int faulted = 0, did_heal = 0;
    while (since_ms(now_ns()) < opt.duration_ms) {
        uint32_t t = since_ms(now_ns());
        if (opt.fault != NULL && !faulted && t >= opt.fault_at_ms) {
            faulted = 1;
            run_cmd(opt.fault);
        }
        if (opt.heal != NULL && faulted && !did_heal && t >= opt.heal_at_ms) {
            did_heal = 1;
            atomic_store(&healed, 1);
            run_cmd(opt.heal);
        }
        usleep(1000);
    }
    atomic_store(&stopping, 1);
    if (opt.do_sync) {
        pthread_join(st, NULL);
    }
    if (opt.do_async && opt.rate != 0) {
        pthread_join(pt, NULL);
    }
    while (opt.do_async && atomic_load(&sides[1].outstanding) > 0) {
        usleep(1000);
    }
    if (opt.do_sync) {
        report(&sides[0]);
    }
    if (opt.do_async) {
        report(&sides[1]);
    }
    for (int k = 0; k < 2; k++) {
        tether_client_destroy(sides[k].c);
        free(sides[k].r);
    }
    return 0;
}
