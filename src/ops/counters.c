/*
 * counters.c - per-thread counter blocks and the latency histogram.
 */
#include "ops/counters.h"

#include <string.h>

#include "core/alloc.h"

/* TETHER_METRICS_CODES must cover every tether_err of this version, so a
 * new code gets its own counter instead of falling into "other". */
#define TT_COUNT_CODE_(name, num, text) +1
_Static_assert((0 TETHER_ERRNO_MAP(TT_COUNT_CODE_)) == TETHER_METRICS_CODES,
               "TETHER_METRICS_CODES must match TETHER_ERRNO_MAP");
#undef TT_COUNT_CODE_

/* Log-linear: 1, 2.5, 5, 7.5 per decade from 1 us to 10 s.  Four steps per
 * decade keep the quantile error under about 25 % at any scale while a
 * method's histogram stays at 30 series. */
const uint64_t tt_hist_bounds_ns[TETHER_METRICS_BUCKETS] = {
    1000ull,       2500ull,       5000ull,       7500ull,       10000ull,       25000ull,
    50000ull,      75000ull,      100000ull,     250000ull,     500000ull,      750000ull,
    1000000ull,    2500000ull,    5000000ull,    7500000ull,    10000000ull,    25000000ull,
    50000000ull,   75000000ull,   100000000ull,  250000000ull,  500000000ull,   750000000ull,
    1000000000ull, 2500000000ull, 5000000000ull, 7500000000ull, 10000000000ull,
};

/* tt_hist_start[k]: the first bucket whose bound is >= 2^k (made by
 * walking the bounds above; tests/unit/test_ops.c checks it against a
 * plain search). */
const uint8_t tt_hist_start[64] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  1,  1,  2,  4,  5,  6,  7,  9,  10, 11, 13, 13,
    14, 16, 17, 18, 19, 21, 22, 23, 25, 25, 26, 28, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29,
    29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29,
};

uint64_t
tether_metrics_bucket_bound_ns(size_t i)
{
    return i < TETHER_METRICS_BUCKETS ? tt_hist_bounds_ns[i] : UINT64_MAX;
}

tt_counters *
tt_counters_create(size_t nmethods, int nblocks)
{
    tt_counters *k = tt_calloc(1, sizeof *k);
    if (k == NULL) {
        return NULL;
    }
    k->nmethods = nmethods;
    k->blocks = tt_calloc((size_t)nblocks, sizeof *k->blocks);
    k->raw = tt_calloc((size_t)nblocks, sizeof *k->raw);
    if (k->blocks == NULL || k->raw == NULL) {
        tt_free(k->blocks);
        tt_free(k->raw);
        tt_free(k);
        return NULL;
    }
    k->nblocks = nblocks;
    for (int b = 0; b < nblocks; b++) {
        /* aligned_alloc would bypass the allocator hooks: over-allocate
         * and align by hand, so each cell starts a cache line (its
         * _Alignas(64)) and no two threads' blocks share one. */
        k->raw[b] = tt_calloc(1, (nmethods > 0 ? nmethods : 1) * sizeof(tt_mcell) + 64);
        if (k->raw[b] == NULL) {
            tt_counters_destroy(k);
            return NULL;
        }
        uintptr_t p = ((uintptr_t)k->raw[b] + 63) & ~(uintptr_t)63;
        k->blocks[b] = (tt_mcell *)p;
    }
    return k;
}

void
tt_counters_destroy(tt_counters *k)
{
    if (k == NULL) {
        return;
    }
    for (int b = 0; b < k->nblocks; b++) {
        tt_free(k->raw[b]);
    }
    tt_free(k->raw);
    tt_free(k->blocks);
    tt_free(k);
}

static uint64_t
rd(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

void
tt_counters_read(const tt_counters *k, size_t method, tether_method_stats *out)
{
    const char *name = out->method;
    memset(out, 0, sizeof *out);
    out->method = name;
    if (k == NULL || method >= k->nmethods) {
        return;
    }
    uint64_t started = 0;
    for (int b = 0; b < k->nblocks; b++) {
        const tt_mcell *c = &k->blocks[b][method];
        /* Finished counts first, then started: a call finishing between
         * the two reads can only make in_flight look one too high, never
         * negative. */
        for (size_t i = 0; i < TETHER_METRICS_CODES; i++) {
            out->by_code[i] += rd(&c->codes[i]);
        }
        out->calls_other += rd(&c->codes[TETHER_METRICS_CODES]);
        for (size_t i = 0; i <= TETHER_METRICS_BUCKETS; i++) {
            out->latency_buckets[i] += rd(&c->hist[i]);
        }
        out->latency_sum_ns += rd(&c->sum_ns);
        out->bytes_in += rd(&c->bytes_in);
        out->bytes_out += rd(&c->bytes_out);
    }
    for (int b = 0; b < k->nblocks; b++) {
        started += rd(&k->blocks[b][method].started);
    }
    for (size_t i = 0; i < TETHER_METRICS_CODES; i++) {
        out->calls += out->by_code[i];
    }
    out->calls += out->calls_other;
    out->in_flight = started > out->calls ? started - out->calls : 0;
}

uint64_t
tt_hist_quantile_ns(const uint64_t *b, double q)
{
    uint64_t total = 0;
    for (size_t i = 0; i <= TETHER_METRICS_BUCKETS; i++) {
        total += b[i];
    }
    if (total == 0) {
        return 0;
    }
    double want = q * (double)total;
    uint64_t seen = 0;
    for (size_t i = 0; i <= TETHER_METRICS_BUCKETS; i++) {
        if (b[i] > 0 && (double)(seen + b[i]) >= want) {
            if (i == TETHER_METRICS_BUCKETS) {
                /* Past the last bound nothing is known but "slower". */
                return tt_hist_bounds_ns[TETHER_METRICS_BUCKETS - 1];
            }
            /* Linear inside the bucket, as Prometheus's
             * histogram_quantile() does. */
            double lo = i == 0 ? 0.0 : (double)tt_hist_bounds_ns[i - 1];
            double hi = (double)tt_hist_bounds_ns[i];
            double frac = (want - (double)seen) / (double)b[i];
            return (uint64_t)(lo + (hi - lo) * frac);
        }
        seen += b[i];
    }
    return tt_hist_bounds_ns[TETHER_METRICS_BUCKETS - 1];
}
