/*
 * buf.h - a growable byte buffer.  Valid bytes are data[off..len); space
 * after len is free.  Used for connection input and output.
 */
#ifndef TT_CORE_BUF_H
#define TT_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "tether/tether.h"

typedef struct tt_buf {
    uint8_t *data;
    size_t off; /* first unread byte */
    size_t len; /* end of valid bytes */
    size_t cap;
} tt_buf;

/* Bytes held. */
static inline size_t
tt_buf_size(const tt_buf *b)
{
    return b->len - b->off;
}

/* First held byte (NULL for a buffer that never had storage). */
static inline uint8_t *
tt_buf_head(const tt_buf *b)
{
    return b->data != NULL ? b->data + b->off : NULL;
}

/* tt_buf_reserve - make room for extra more bytes after len (moving held
 * bytes to the front first when that suffices).  TETHER_ENOMEM on failure,
 * the buffer unchanged. */
tether_err tt_buf_reserve_slow(tt_buf *b, size_t extra);
static inline tether_err
tt_buf_reserve(tt_buf *b, size_t extra)
{
    /* Inline: the hot path (an answer into a buffer with room) is one test. */
    return b->cap - b->len >= extra ? TETHER_OK : tt_buf_reserve_slow(b, extra);
}

/* tt_buf_append - copy n bytes to the end. */
tether_err tt_buf_append(tt_buf *b, const void *p, size_t n);

/* tt_buf_consume - drop n held bytes from the front; empties to offset 0. */
static inline void
tt_buf_consume(tt_buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len) {
        b->off = 0;
        b->len = 0;
    }
}

/* tt_buf_free - release the storage; the buffer becomes empty. */
void tt_buf_free(tt_buf *b);

#endif
