/*
 * heap.c - the binary min-heap behind timers and deadlines.
 */
#include "core/heap.h"
#include "core/alloc.h"

static void
place(tt_heap *h, size_t i, tt_heap_node *n)
{
    h->v[i] = n;
    n->idx = i;
}

static void
sift_up(tt_heap *h, size_t i)
{
    tt_heap_node *n = h->v[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->v[parent]->key <= n->key) {
            break;
        }
        place(h, i, h->v[parent]);
        i = parent;
    }
    place(h, i, n);
}

static void
sift_down(tt_heap *h, size_t i)
{
    tt_heap_node *n = h->v[i];
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= h->n) {
            break;
        }
        size_t m = l + 1 < h->n && h->v[l + 1]->key < h->v[l]->key ? l + 1 : l;
        if (n->key <= h->v[m]->key) {
            break;
        }
        place(h, i, h->v[m]);
        i = m;
    }
    place(h, i, n);
}

tether_err
tt_heap_push(tt_heap *h, tt_heap_node *n, uint64_t key)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        tt_heap_node **v = tt_realloc(h->v, cap * sizeof *v);
        if (v == NULL) {
            return TETHER_ENOMEM;
        }
        h->v = v;
        h->cap = cap;
    }
    n->key = key;
    place(h, h->n++, n);
    sift_up(h, n->idx);
    return TETHER_OK;
}

void
tt_heap_remove(tt_heap *h, tt_heap_node *n)
{
    size_t i = n->idx;
    if (i == TT_HEAP_NONE) {
        return;
    }
    n->idx = TT_HEAP_NONE;
    tt_heap_node *last = h->v[--h->n];
    if (i == h->n) {
        return; /* n was the last element */
    }
    place(h, i, last);
    /* The moved element may belong above or below its new place. */
    if (i > 0 && h->v[(i - 1) / 2]->key > last->key) {
        sift_up(h, i);
    } else {
        sift_down(h, i);
    }
}

void
tt_heap_update(tt_heap *h, tt_heap_node *n, uint64_t key)
{
    uint64_t old = n->key;
    n->key = key;
    if (key < old) {
        sift_up(h, n->idx);
    } else {
        sift_down(h, n->idx);
    }
}

void
tt_heap_fini(tt_heap *h)
{
    tt_free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}
