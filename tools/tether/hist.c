/*
 * hist.c - log-linear latency buckets (see hist.h).
 *
 * Values below 2*HIST_SUB get a bucket each; above, every power of two
 * [2^k, 2^(k+1)) is cut into HIST_SUB equal buckets, so the bucket width
 * grows with the value and the relative error stays under 1/HIST_SUB.
 * The same layout as HdrHistogram with one significant binary digit
 * group, written out because it is thirty lines.
 */
#include "hist.h"

#include <math.h>
#include <string.h>

static unsigned
bucket_of(uint64_t v)
{
    if (v < 2 * HIST_SUB) {
        return (unsigned)v;
    }
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    if (msb >= HIST_MAX_BITS) {
        return HIST_BUCKETS - 1;
    }
    unsigned shift = msb - HIST_SUB_BITS;
    return shift * HIST_SUB + (unsigned)(v >> shift);
}

/* The lowest value of bucket i and its width. */
static uint64_t
bucket_lo(unsigned i, uint64_t *width)
{
    if (i < 2 * HIST_SUB) {
        *width = 1;
        return i;
    }
    unsigned shift = i / HIST_SUB - 1;
    *width = 1ull << shift;
    return (uint64_t)(i % HIST_SUB + HIST_SUB) << shift;
}

void
hist_init(hist *h)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        atomic_init(&h->counts[i], 0);
    }
    atomic_init(&h->total, 0);
    atomic_init(&h->sum, 0);
    atomic_init(&h->min, UINT64_MAX);
    atomic_init(&h->max, 0);
}

/* Add n to a counter only this thread writes: a load and a store, no
 * locked read-modify-write. */
static inline void
bump(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

void
hist_record(hist *h, uint64_t v)
{
    bump(&h->counts[bucket_of(v)], 1);
    bump(&h->total, 1);
    bump(&h->sum, v);
    if (v < atomic_load_explicit(&h->min, memory_order_relaxed)) {
        atomic_store_explicit(&h->min, v, memory_order_relaxed);
    }
    if (v > atomic_load_explicit(&h->max, memory_order_relaxed)) {
        atomic_store_explicit(&h->max, v, memory_order_relaxed);
    }
}

void
hist_merge(hist *dst, const hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        atomic_fetch_add(&dst->counts[i], atomic_load(&src->counts[i]));
    }
    atomic_fetch_add(&dst->total, atomic_load(&src->total));
    atomic_fetch_add(&dst->sum, atomic_load(&src->sum));
    if (atomic_load(&src->min) < atomic_load(&dst->min)) {
        atomic_store(&dst->min, atomic_load(&src->min));
    }
    if (atomic_load(&src->max) > atomic_load(&dst->max)) {
        atomic_store(&dst->max, atomic_load(&src->max));
    }
}

uint64_t
hist_quantile(const hist *h, double q)
{
    uint64_t total = atomic_load(&h->total);
    if (total == 0) {
        return 0;
    }
    /* The rank of the value asked for, 1-based: q=0.5 of 4 values is the 2nd. */
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    if (rank < 1) {
        rank = 1;
    }
    uint64_t seen = 0, v = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += atomic_load(&h->counts[i]);
        if (seen >= rank) {
            uint64_t width;
            uint64_t lo = bucket_lo(i, &width);
            v = lo + width / 2;
            break;
        }
    }
    uint64_t min = atomic_load(&h->min), max = atomic_load(&h->max);
    return v < min ? min : v > max ? max : v;
}

void
hist_print(FILE *f, const hist *h, int rows)
{
    uint64_t min = atomic_load(&h->min), max = atomic_load(&h->max);
    if (atomic_load(&h->total) == 0 || rows < 1) {
        return;
    }
    if (max <= min) {
        fprintf(f, "  %10.3f ms [%10llu] |%s\n", (double)min / 1e6,
                (unsigned long long)atomic_load(&h->total),
                "########################################");
        return;
    }
    /* Row r holds the buckets whose low end lies in [edge(r), edge(r+1)):
     * a geometric scale, so the fast bulk and the slow tail both show. */
    uint64_t counts[64] = {0};
    if (rows > 64) {
        rows = 64;
    }
    double ratio = log((double)max / (double)(min > 0 ? min : 1)) / rows;
    double base = (double)(min > 0 ? min : 1);
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        uint64_t n = atomic_load(&h->counts[i]);
        if (n == 0) {
            continue;
        }
        uint64_t width;
        double lo = (double)bucket_lo(i, &width);
        int r = lo <= base ? 0 : (int)(log(lo / base) / ratio);
        counts[r < rows ? r : rows - 1] += n;
    }
    uint64_t top = 1;
    for (int r = 0; r < rows; r++) {
        top = counts[r] > top ? counts[r] : top;
    }
    for (int r = 0; r < rows; r++) {
        double edge = base * exp(ratio * (r + 1)); /* the row's upper end */
        int bar = (int)((counts[r] * 40 + top - 1) / top);
        char bars[41];
        memset(bars, '#', (size_t)bar);
        bars[bar] = '\0';
        fprintf(f, "  %10.3f ms [%10llu] |%s\n", (r == rows - 1 ? (double)max : edge) / 1e6,
                (unsigned long long)counts[r], bars);
    }
}
