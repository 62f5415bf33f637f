/*
 * balance.h - picking one instance among candidates.  A balancer knows
 * nothing of connections or registries: it is handed the candidates (with
 * weight, calls in flight and a stable id) and a mask of those allowed this
 * time (not tried yet, not set aside), and returns an index.
 */
#ifndef TT_BALANCE_BALANCE_H
#define TT_BALANCE_BALANCE_H

#include <stddef.h>
#include <stdint.h>

typedef struct tt_cand {
    uint32_t weight;   /* >= 1 */
    size_t inflight;   /* calls in flight to it now */
    uint64_t id_hash;  /* hash of a stable identity (its address) */
    int ok;            /* may be picked this time */
} tt_cand;

typedef struct tt_balance_ops {
    const char *name;
    /* pick - index of the chosen candidate among c[0..n-1] with ok set, or
     * -1 if none is ok.  *state is the balancer's state (a counter or a
     * random seed) owned by the caller, updated under the caller's lock.
     * key/key_len matter only to hashing balancers. */
    int (*pick)(const tt_cand *c, size_t n, uint64_t *state, const char *key, size_t key_len);
    /* sticky - the choice must not depend on which instances happen to be
     * connected right now (a key keeps its instance): instances still
     * connecting are candidates too, and a call to one waits for it. */
    int sticky;
} tt_balance_ops;

extern const tt_balance_ops tt_balance_roundrobin;
extern const tt_balance_ops tt_balance_random;
extern const tt_balance_ops tt_balance_p2c;
extern const tt_balance_ops tt_balance_hash;

/* tt_hash64 - a 64-bit FNV-1a hash, mixed (stable across processes). */
uint64_t tt_hash64(const void *p, size_t n, uint64_t seed);

#endif
