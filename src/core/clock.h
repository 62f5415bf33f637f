/*
 * clock.h - monotonic time.  Deadlines are always monotonic.
 */
#ifndef TT_CORE_CLOCK_H
#define TT_CORE_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

static inline uint64_t
tt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A cheaper clock with a few milliseconds of resolution, for deadlines that
 * are checked by a periodic scan anyway (async call timeouts). */
static inline uint64_t
tt_now_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* tt_coarse_step_ns - the resolution of tt_now_coarse_ns(): a deadline
 * read from the coarse clock and padded by it never comes early. */
static inline uint64_t
tt_coarse_step_ns(void)
{
    static _Atomic uint64_t step;
    uint64_t v = atomic_load_explicit(&step, memory_order_relaxed);
    if (v == 0) {
        struct timespec ts;
        v = clock_getres(CLOCK_MONOTONIC_COARSE, &ts) == 0
                ? (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec
                : 10000000ull;
        v = v > 0 ? v : 1;
        atomic_store_explicit(&step, v, memory_order_relaxed);
    }
    return v;
}

/* tt_timespec_ns - a monotonic time in ns as a timespec, for the timed
 * waits (pthread_cond_timedwait on a CLOCK_MONOTONIC condition). */
static inline struct timespec
tt_timespec_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
                          .tv_nsec = (long)(ns % 1000000000ull)};
    return ts;
}

static inline uint64_t
tt_now_ms(void)
{
    return tt_now_ns() / 1000000ull;
}

#endif
