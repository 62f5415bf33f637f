/*
 * frame.h - tether's native wire format (docs/protocol.md).
 *
 * A connection starts with the client's 8-byte preface TT_PREFACE, then
 * both sides exchange frames:
 *
 *   off size field
 *    0   4   length    bytes that follow this field (16 + name_len + body)
 *    4   1   type      TT_FRAME_*
 *    5   1   flags     0 (reserved)
 *    6   2   name_len  method name length (requests), else 0
 *    8   8   seq       call sequence number chosen by the client
 *   16   4   status    tether_err of an error frame, else 0
 *   20   -   name      "Service.Method" (name_len bytes, no NUL)
 *    -   -   body      protobuf (request/reply) or UTF-8 text (error)
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

#define TT_PREFACE "\xF5TETHER\x01"
#define TT_PREFACE_LEN 8
#define TT_FRAME_HDR 20       /* fixed header bytes, length field included */
#define TT_FRAME_MIN_LEN 16   /* smallest value of the length field */
#define TT_FRAME_MAX_NAME 1024 /* longest method name accepted */

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
    const uint8_t *body; /* points into the input */
    size_t body_len;
    size_t total; /* bytes the whole frame occupies */
} tt_frame;

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
 * fields into hdr.
 */
void tt_frame_put_header(uint8_t *hdr, uint8_t type, uint64_t seq, uint32_t status,
                         size_t name_len, size_t body_len);

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
