/*
 * balance.c - the four balancing policies, each a const ops table.
 */
#include "balance/balance.h"

#include <math.h>

uint64_t
tt_hash64(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    /* Final avalanche (splitmix64) so close inputs spread out. */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

static uint64_t
next_rand(uint64_t *state)
{
    /* xorshift64*: the state is per client, under its lock. */
    uint64_t x = *state != 0 ? *state : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 2685821657736338717ull;
}

static uint64_t
total_weight(const tt_cand *c, size_t n)
{
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].ok) {
            w += c[i].weight;
        }
    }
    return w;
}

/* The candidate that owns slot x of the weighted line of ok candidates,
 * leaving out candidate skip (-1: none). */
static int
weighted_slot(const tt_cand *c, size_t n, uint64_t x, int skip)
{
    for (size_t i = 0; i < n; i++) {
        if (!c[i].ok || (int)i == skip) {
            continue;
        }
        if (x < c[i].weight) {
            return (int)i;
        }
        x -= c[i].weight;
    }
    return -1;
}

static int
pick_rr(const tt_cand *c, size_t n, uint64_t *state, const char *key, size_t key_len)
{
    (void)key;
    (void)key_len;
    uint64_t w = total_weight(c, n);
    if (w == 0) {
        return -1;
    }
    return weighted_slot(c, n, (*state)++ % w, -1);
}

static int
pick_random(const tt_cand *c, size_t n, uint64_t *state, const char *key, size_t key_len)
{
    (void)key;
    (void)key_len;
    uint64_t w = total_weight(c, n);
    if (w == 0) {
        return -1;
    }
    return weighted_slot(c, n, next_rand(state) % w, -1);
}

static int
pick_p2c(const tt_cand *c, size_t n, uint64_t *state, const char *key, size_t key_len)
{
    uint64_t w = total_weight(c, n);
    if (w == 0) {
        return -1;
    }
    (void)key;
    (void)key_len;
    int a = weighted_slot(c, n, next_rand(state) % w, -1);
    /* Two different choices: were the second drawn with the first put
     * back, the most loaded instance would still get (its share)^2 of the
     * calls, and one that answers nothing (alive but not serving) would
     * fill every slot a caller has, as in turn. */
    uint64_t rest = w - c[a].weight;
    if (rest == 0) {
        return a;
    }
    int b = weighted_slot(c, n, next_rand(state) % rest, a);
    /* Fewer calls in flight per unit of weight wins (cross-multiplied). */
    uint64_t la = (uint64_t)c[a].inflight * c[b].weight;
    uint64_t lb = (uint64_t)c[b].inflight * c[a].weight;
    return la <= lb ? a : b;
}

static int
pick_hash(const tt_cand *c, size_t n, uint64_t *state, const char *key, size_t key_len)
{
    (void)state;
    /* Weighted rendezvous hashing: score = -w / ln(u), u in (0,1) from
     * hash(key, instance).  Removing an instance moves only its keys. */
    uint64_t kh = tt_hash64(key != NULL ? key : "", key != NULL ? key_len : 0, 0);
    int best = -1;
    double best_score = 0;
    for (size_t i = 0; i < n; i++) {
        if (!c[i].ok) {
            continue;
        }
        uint64_t h = tt_hash64(&c[i].id_hash, sizeof c[i].id_hash, kh);
        double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0;
        double score = -(double)c[i].weight / log(u);
        if (best < 0 || score > best_score) {
            best = (int)i;
            best_score = score;
        }
    }
    return best;
}

const tt_balance_ops tt_balance_roundrobin = {.name = "round_robin", .pick = pick_rr};
const tt_balance_ops tt_balance_random = {.name = "random", .pick = pick_random};
const tt_balance_ops tt_balance_p2c = {.name = "p2c", .pick = pick_p2c};
const tt_balance_ops tt_balance_hash = {.name = "hash", .pick = pick_hash, .sticky = 1};
