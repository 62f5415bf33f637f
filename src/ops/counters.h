/*
 * counters.h - per-method call counters kept per I/O thread.
 *
 * A tt_counters holds one block per writer thread, each an array of one
 * tt_mcell per method.  Only the block's own thread writes it (relaxed
 * load + store, no read-modify-write, no lock), so the call path touches
 * no cache line another thread writes.  Readers sum the blocks; every
 * cell is padded to whole cache lines so two threads' cells never share
 * one.
 */
#ifndef TT_OPS_COUNTERS_H
#define TT_OPS_COUNTERS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "tether/metrics.h"

/* One method's counters in one thread's block. */
typedef struct tt_mcell {
    _Alignas(64) _Atomic uint64_t started;
    _Atomic uint64_t codes[TETHER_METRICS_CODES + 1]; /* the last: any other code */
    _Atomic uint64_t hist[TETHER_METRICS_BUCKETS + 1];
    _Atomic uint64_t sum_ns;
    _Atomic uint64_t bytes_in;
    _Atomic uint64_t bytes_out;
} tt_mcell;

typedef struct tt_counters {
    size_t nmethods;
    int nblocks;
    tt_mcell **blocks; /* [nblocks], each [nmethods], 64-byte aligned */
    void **raw;        /* what was allocated for each block */
} tt_counters;

/* The finite bucket bounds, ascending, in ns. */
extern const uint64_t tt_hist_bounds_ns[TETHER_METRICS_BUCKETS];

/* tt_counters_create - nblocks blocks of nmethods cells, zeroed.  NULL
 * without memory. */
tt_counters *tt_counters_create(size_t nmethods, int nblocks);
void tt_counters_destroy(tt_counters *k);

/* The first bucket that may hold a latency of 2^k..2^(k+1)-1 ns, for each
 * k: a power-of-two range spans at most two bounds, so the walk from
 * there takes at most three compares, all well predicted. */
extern const uint8_t tt_hist_start[64];

/* The bucket a latency of ns falls in (0 .. TETHER_METRICS_BUCKETS). */
static inline size_t
tt_hist_bucket(uint64_t ns)
{
    size_t i = tt_hist_start[63 - __builtin_clzll(ns | 1)];
    while (i < TETHER_METRICS_BUCKETS && ns > tt_hist_bounds_ns[i]) {
        i++;
    }
    return i;
}

/* Single-writer add: only the cell's own thread writes it. */
static inline void
tt_counter_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline tt_mcell *
tt_counters_cell(tt_counters *k, int block, size_t method)
{
    return &k->blocks[block][method];
}

/* A call of the cell's method started. */
static inline void
tt_counters_begin(tt_mcell *c)
{
    tt_counter_add(&c->started, 1);
}

/* A call of the cell's method finished with code. */
static inline void
tt_counters_finish(tt_mcell *c, int code, uint64_t in, uint64_t out)
{
    size_t ci = code >= 0 && code < TETHER_METRICS_CODES ? (size_t)code : TETHER_METRICS_CODES;
    tt_counter_add(&c->codes[ci], 1);
    tt_counter_add(&c->bytes_in, in);
    tt_counter_add(&c->bytes_out, out);
}

/* A call of the cell's method took ns (its latency, for the histogram). */
static inline void
tt_counters_time(tt_mcell *c, uint64_t ns)
{
    tt_counter_add(&c->hist[tt_hist_bucket(ns)], 1);
    tt_counter_add(&c->sum_ns, ns);
}

/* n calls of the cell's method took ns each. */
static inline void
tt_counters_time_n(tt_mcell *c, uint64_t ns, uint64_t n)
{
    tt_counter_add(&c->hist[tt_hist_bucket(ns)], n);
    tt_counter_add(&c->sum_ns, ns * n);
}

/* Both at once. */
static inline void
tt_counters_end(tt_mcell *c, int code, uint64_t ns, uint64_t in, uint64_t out)
{
    tt_counters_finish(c, code, in, out);
    tt_counters_time(c, ns);
}

/* tt_counters_read - method's counters summed over every block into out
 * (all but out->method).  Any thread. */
void tt_counters_read(const tt_counters *k, size_t method, tether_method_stats *out);

/* tt_hist_quantile_ns - the q-quantile (0 < q < 1) of buckets b[0..N],
 * interpolated inside its bucket; 0 when empty. */
uint64_t tt_hist_quantile_ns(const uint64_t *b, double q);

#endif
