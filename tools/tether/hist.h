/*
 * hist.h - a latency histogram for `tether bench`: log-linear buckets
 * (32 per power of two, so any value is known to within about 3 %).  One
 * thread records into a histogram while others may read it: the counters
 * are atomics written with plain relaxed stores, so recording costs no
 * locked instruction.  Fixed size, no allocation per value.
 */
#ifndef TETHER_TOOL_HIST_H
#define TETHER_TOOL_HIST_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
/* Values up to 2^40 ns (about 18 minutes) are kept apart; larger ones
 * count in the last bucket. */
#define HIST_MAX_BITS 40
#define HIST_BUCKETS ((HIST_MAX_BITS - HIST_SUB_BITS) * HIST_SUB + HIST_SUB)

typedef struct hist {
    _Atomic uint64_t counts[HIST_BUCKETS];
    _Atomic uint64_t total;
    _Atomic uint64_t sum;
    _Atomic uint64_t min; /* UINT64_MAX while empty */
    _Atomic uint64_t max;
} hist;

/* hist_init - an empty histogram. */
void hist_init(hist *h);

/* hist_record - count one value (ns).  One recording thread per
 * histogram; reading at the same time is fine. */
void hist_record(hist *h, uint64_t v);

/* hist_merge - add src's counts to dst (not concurrently with records). */
void hist_merge(hist *dst, const hist *src);

/* hist_quantile - the value at quantile q (0..1), as the middle of its
 * bucket, clamped to [min, max]; 0 when empty. */
uint64_t hist_quantile(const hist *h, double q);

/* hist_print - rows "  LATENCY [COUNT] |#####" from min to max on a
 * geometric scale (at most rows rows), latencies in ms, to f. */
void hist_print(FILE *f, const hist *h, int rows);

#endif
