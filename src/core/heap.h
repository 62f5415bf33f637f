/*
 * heap.h - an intrusive binary min-heap of 64-bit keys (timers, call
 * deadlines).  Elements embed a tt_heap_node; the heap holds pointers to
 * them in one growable array, so insert, remove and update are O(log n)
 * and need no allocation while the array has room.  Not thread-safe: the
 * owner's lock or thread protects it.
 */
#ifndef TT_CORE_HEAP_H
#define TT_CORE_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "tether/tether.h"

#define TT_HEAP_NONE ((size_t)-1)

typedef struct tt_heap_node {
    uint64_t key;
    size_t idx; /* place in the heap array; TT_HEAP_NONE when not in a heap */
} tt_heap_node;

typedef struct tt_heap {
    tt_heap_node **v;
    size_t n, cap;
} tt_heap;

/* tt_heap_node_init - mark n as in no heap (call once before first use). */
static inline void
tt_heap_node_init(tt_heap_node *n)
{
    n->idx = TT_HEAP_NONE;
}

/* tt_heap_linked - whether n is in a heap now. */
static inline int
tt_heap_linked(const tt_heap_node *n)
{
    return n->idx != TT_HEAP_NONE;
}

/* tt_heap_top - the node with the smallest key, or NULL if empty. */
static inline tt_heap_node *
tt_heap_top(const tt_heap *h)
{
    return h->n > 0 ? h->v[0] : NULL;
}

/* tt_heap_push - insert n (not in any heap) with key.  TETHER_ENOMEM if
 * the array cannot grow; the heap is then unchanged. */
tether_err tt_heap_push(tt_heap *h, tt_heap_node *n, uint64_t key);

/* tt_heap_remove - take n out of h (no-op if n is in no heap). */
void tt_heap_remove(tt_heap *h, tt_heap_node *n);

/* tt_heap_update - give n (in h) a new key. */
void tt_heap_update(tt_heap *h, tt_heap_node *n, uint64_t key);

/* tt_heap_fini - release the array (the nodes are the caller's). */
void tt_heap_fini(tt_heap *h);

#endif
