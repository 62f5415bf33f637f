/*
 * frame.h - tether's native wire format (docs/protocol.md).
 *
 * A connection starts with the client's 8-byte preface TT_PREFACE, then
 * both sides exchange frames:
 *
 *   off size field
 *    0   4   length    bytes that follow this field
 *    4   1   type      TT_FRAME_*
 *    5   1   flags     TT_FRAME_F_CTX or 0; other bits reserved
 *    6   2   name_len  method name length (requests), else 0
 *    8   8   seq       call sequence number chosen by the client
 *   16   4   status    tether_err of an error frame, else 0
 *   20   -   name      "Service.Method" (name_len bytes, no NUL)
 *    -   4   ctx_len   with TT_FRAME_F_CTX only: bytes of context that follow
 *    -   -   ctx       context entries (requests, replies, errors)
 *    -   -   body      protobuf (request/reply) or UTF-8 text (error)
 *
 * A context entry is tag (1 byte), len (2 bytes), value (len bytes):
 *   TT_CTX_DEADLINE  value: u32, the caller's remaining time in ms
 *   TT_CTX_META      value: key NUL value NUL (request metadata, reply
 *                    trailers); key non-empty, neither holds a NUL
 * Unknown tags are skipped, so later versions can add entries.
 *
 * All integers little-endian.  The decoder works on a byte range and never
 * reads past it; every length is checked against limits before use.
 */
#ifndef TT_CODEC_NATIVE_FRAME_H
#define TT_CODEC_NATIVE_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tether/tether.h"

#define TT_PREFACE "\xF5TETHER\x02"
#define TT_PREFACE_LEN 8
#define TT_PROTOCOL_VERSION 2  /* the preface's last byte */
#define TT_FRAME_HDR 20        /* fixed header bytes, length field included */
#define TT_FRAME_MIN_LEN 16    /* smallest value of the length field */
#define TT_FRAME_MAX_NAME 1024 /* longest method name accepted */

#define TT_FRAME_F_CTX 0x01u    /* a context section follows the name */
#define TT_CTX_MAX (64u * 1024) /* largest context section the decoder takes */

enum tt_ctx_tag { TT_CTX_DEADLINE = 1, TT_CTX_META = 2 };

enum tt_frame_type {
    TT_FRAME_REQUEST = 1,  /* client -> server: call name with body */
    TT_FRAME_REPLY = 2,    /* server -> client: body is the answer */
    TT_FRAME_ERROR = 3,    /* server -> client: status + text; seq 0 = connection error */
    TT_FRAME_GOAWAY = 4,   /* server -> client: send no new calls here */
    TT_FRAME_PING = 5,     /* either way: answer with PONG, same seq */
    TT_FRAME_PONG = 6,
    TT_FRAME_CANCEL = 7,   /* client -> server: the caller gave up on seq */
    TT_FRAME_TYPE_MAX = 7
};

typedef struct tt_frame {
    uint8_t type;
    uint8_t flags;
    uint64_t seq;
    uint32_t status;
    const char *name; /* points into the input; not NUL-terminated */
    size_t name_len;
    const uint8_t *ctx; /* context entries (NULL, 0 without TT_FRAME_F_CTX) */
    size_t ctx_len;
    const uint8_t *body; /* points into the input */
    size_t body_len;
    size_t total; /* bytes the whole frame occupies */
} tt_frame;

/* One context entry, as tt_ctx_next() walks them. */
typedef struct tt_ctx_entry {
    uint8_t tag;
    const uint8_t *val;
    size_t len;
    /* TT_CTX_META: key and value, NUL-terminated in the input. */
    const char *key;
    const char *value;
} tt_ctx_entry;

/* tt_ctx_meta_split_long - tt_ctx_meta_split() for entries of 32 bytes and
 * more, with memchr(). */
int tt_ctx_meta_split_long(const uint8_t *v, size_t len);

/*
 * tt_ctx_meta_split - check that v[0..len) is "key\0value\0" (exactly two
 * NULs, a key of one byte or more, the last byte a NUL) and return the
 * key's length, or -1.  Short entries, the common case, are checked in
 * one pass over their bytes, inline: two memchr() calls cost more than
 * the bytes of a small pair.
 */
static inline int
tt_ctx_meta_split(const uint8_t *v, size_t len)
{
    if (len < 3 || v[len - 1] != 0) {
        return -1;
    }
    if (len >= 32) {
        return tt_ctx_meta_split_long(v, len);
    }
    size_t k = 0;
    while (v[k] != 0) { /* stops at the last byte at the latest */
        k++;
    }
    if (k == 0 || k == len - 1) {
        return -1;
    }
    for (size_t i = k + 1; i < len - 1; i++) {
        if (v[i] == 0) {
            return -1;
        }
    }
    return (int)k;
}

/*
 * tt_ctx_next - the entry at ctx[*off..n), advancing *off.  1: *e is the
 * next entry; 0: no more; -1: malformed (an entry running past the end, a
 * DEADLINE that is not 4 bytes, a META entry not "key\0value\0").  Inline:
 * the server walks every request's context with it.
 */
static inline int
tt_ctx_next(const uint8_t *ctx, size_t n, size_t *off, tt_ctx_entry *e)
{
    size_t o = *off;
    if (o >= n) {
        return 0;
    }
    if (n - o < 3) {
        return -1;
    }
    size_t len = (size_t)ctx[o + 1] | (size_t)ctx[o + 2] << 8;
    if (len > n - o - 3) {
        return -1;
    }
    e->tag = ctx[o];
    e->val = ctx + o + 3;
    e->len = len;
    e->key = e->value = NULL;
    if (e->tag == TT_CTX_DEADLINE && len != 4) {
        return -1;
    }
    if (e->tag == TT_CTX_META) {
        int klen = tt_ctx_meta_split(e->val, len);
        if (klen < 0) {
            return -1;
        }
        e->key = (const char *)e->val;
        e->value = (const char *)e->val + klen + 1;
    }
    *off = o + 3 + len;
    return 1;
}

/* tt_ctx_size_meta - bytes one META entry for key and value takes. */
static inline size_t
tt_ctx_size_meta(size_t klen, size_t vlen)
{
    return 3 + klen + 1 + vlen + 1;
}

/* Copy n bytes; a short copy (a metadata key or value, typically) inline,
 * where a call to memcpy() costs more than the bytes. */
static inline void
tt_ctx_copy(uint8_t *dst, const char *src, size_t n)
{
    if (n > 16) {
        memcpy(dst, src, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        dst[i] = (uint8_t)src[i];
    }
}

/* tt_ctx_put_deadline / tt_ctx_put_meta - write one entry at w; return
 * the bytes written (7, or tt_ctx_size_meta()). */
size_t tt_ctx_put_deadline(uint8_t *w, uint32_t ms);

static inline size_t
tt_ctx_put_meta(uint8_t *w, const char *key, size_t klen, const char *value, size_t vlen)
{
    size_t len = klen + 1 + vlen + 1;
    w[0] = TT_CTX_META;
    w[1] = (uint8_t)len;
    w[2] = (uint8_t)(len >> 8);
    tt_ctx_copy(w + 3, key, klen);
    w[3 + klen] = 0;
    tt_ctx_copy(w + 4 + klen, value, vlen);
    w[4 + klen + vlen] = 0;
    return 3 + len;
}

/*
 * tt_frame_decode - decode the frame at p[0..n).
 *  TETHER_OK:       *f describes it; f->total bytes are consumed.
 *  TETHER_EAGAIN:   incomplete; *need (if not NULL) is the whole frame's
 *                   size when the header is there, else TT_FRAME_HDR.
 *  TETHER_EMSGSIZE: the frame is larger than max_frame.
 *  TETHER_EPROTO:   malformed (short length, bad type, flags, name length).
 */
tether_err tt_frame_decode(const uint8_t *p, size_t n, size_t max_frame, tt_frame *f,
                           size_t *need);

/*
 * tt_frame_put_header - write the 20-byte header for a frame with the given
 * fields into hdr (no context section).
 */
void tt_frame_put_header(uint8_t *hdr, uint8_t type, uint64_t seq, uint32_t status,
                         size_t name_len, size_t body_len);

/*
 * tt_frame_put_header_ctx - the header of a frame with a context section
 * of ctx_len bytes: the 20-byte header and the 4-byte ctx_len after a name
 * of name_len bytes go at hdr and hdr + 20 + name_len.
 */
void tt_frame_put_header_ctx(uint8_t *hdr, uint8_t type, uint64_t seq, uint32_t status,
                             size_t name_len, size_t ctx_len, size_t body_len);

static inline uint32_t
tt_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t
tt_get_le64(const uint8_t *p)
{
    return (uint64_t)tt_get_le32(p) | (uint64_t)tt_get_le32(p + 4) << 32;
}

static inline void
tt_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void
tt_put_le64(uint8_t *p, uint64_t v)
{
    tt_put_le32(p, (uint32_t)v);
    tt_put_le32(p + 4, (uint32_t)(v >> 32));
}

#endif
