/*
 * log.c - the log hook.  The handler, its level and its argument are
 * published together under a mutex; the level is also kept in an atomic so
 * that disabled lines cost no lock.
 */
#include <time.h>
#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static tether_log_fn log_fn;
static void *log_arg;
/* Lowest level that is formatted; above every level while no handler is set. */
static _Atomic int log_min = 100;

void
tether_log_set_handler(tether_log_fn fn, tether_log_level min_level, void *arg)
{
    pthread_mutex_lock(&log_mu);
    log_fn = fn;
    log_arg = arg;
    atomic_store(&log_min, fn != NULL ? (int)min_level : 100);
    pthread_mutex_unlock(&log_mu);
}

void
tether_log_stderr(tether_log_level level, const char *msg, void *arg)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    (void)arg;
    fprintf(stderr, "tether: %s: %s\n", names[(unsigned)level & 3u], msg);
}

int
tt_log_enabled(tether_log_level level)
{
    return (int)level >= atomic_load_explicit(&log_min, memory_order_relaxed);
}

void
tt_log(tether_log_level level, const char *fmt, ...)
{
    if (!tt_log_enabled(level)) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_mu);
    if (log_fn != NULL) {
        log_fn(level, line, log_arg);
    }
    pthread_mutex_unlock(&log_mu);
}

int
tt_log_gate_pass(tt_log_gate *g, unsigned long *dropped)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    long now = (long)ts.tv_sec;
    long prev = atomic_load_explicit(&g->last, memory_order_relaxed);
    if (prev == now ||
        !atomic_compare_exchange_strong_explicit(&g->last, &prev, now, memory_order_relaxed,
                                                 memory_order_relaxed)) {
        atomic_fetch_add_explicit(&g->dropped, 1, memory_order_relaxed);
        return 0;
    }
    *dropped = atomic_exchange_explicit(&g->dropped, 0, memory_order_relaxed);
    return 1;
}
