/*
 * clock.h - monotonic time.  Deadlines are always monotonic.
 */
#ifndef TT_CORE_CLOCK_H
#define TT_CORE_CLOCK_H

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

static inline uint64_t
tt_now_ms(void)
{
    return tt_now_ns() / 1000000ull;
}

#endif
