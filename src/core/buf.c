/*
 * buf.c - growable byte buffer.
 */
#include "core/buf.h"

#include <string.h>

#include "core/alloc.h"

tether_err
tt_buf_reserve_slow(tt_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra) {
        return TETHER_OK;
    }
    size_t held = b->len - b->off;
    /* Compacting is cheaper than growing when the held part is small. */
    if (b->off > 0 && b->cap - held >= extra) {
        memmove(b->data, b->data + b->off, held);
        b->off = 0;
        b->len = held;
        return TETHER_OK;
    }
    if (extra > SIZE_MAX / 2 - held) {
        return TETHER_ENOMEM;
    }
    size_t want = held + extra;
    size_t cap = b->cap < 256 ? 256 : b->cap;
    while (cap < want) {
        cap *= 2;
    }
    uint8_t *p;
    if (b->off == 0) {
        p = tt_realloc(b->data, cap);
        if (p == NULL) {
            return TETHER_ENOMEM;
        }
    } else {
        p = tt_malloc(cap);
        if (p == NULL) {
            return TETHER_ENOMEM;
        }
        memcpy(p, b->data + b->off, held);
        tt_free(b->data);
    }
    b->data = p;
    b->cap = cap;
    b->off = 0;
    b->len = held;
    return TETHER_OK;
}

tether_err
tt_buf_append(tt_buf *b, const void *p, size_t n)
{
    tether_err rc = tt_buf_reserve(b, n);
    if (rc != TETHER_OK) {
        return rc;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return TETHER_OK;
}

void
tt_buf_free(tt_buf *b)
{
    tt_free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}
