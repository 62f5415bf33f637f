/*
 * frame.c - native frame header encoding and decoding (see frame.h and
 * docs/protocol.md).
 */
#include "codec/native/frame.h"

tether_err
tt_frame_decode(const uint8_t *p, size_t n, size_t max_frame, tt_frame *f, size_t *need)
{
    if (n < TT_FRAME_HDR) {
        /* The length field alone already tells us about oversize frames,
         * so a peer cannot make us wait for a giant body. */
        if (n >= 4) {
            uint32_t len = tt_get_le32(p);
            if ((uint64_t)len + 4 > max_frame) {
                return TETHER_EMSGSIZE;
            }
            if (len < TT_FRAME_MIN_LEN) {
                return TETHER_EPROTO;
            }
        }
        if (need != NULL) {
            *need = TT_FRAME_HDR;
        }
        return TETHER_EAGAIN;
    }
    uint32_t len = tt_get_le32(p);
    if (len < TT_FRAME_MIN_LEN) {
        return TETHER_EPROTO;
    }
    uint64_t total = (uint64_t)len + 4;
    if (total > max_frame) {
        return TETHER_EMSGSIZE;
    }
    uint8_t type = p[4];
    uint8_t flags = p[5];
    size_t name_len = (size_t)p[6] | (size_t)p[7] << 8;
    if (type == 0 || type > TT_FRAME_TYPE_MAX || (flags & ~TT_FRAME_F_CTX) != 0) {
        return TETHER_EPROTO;
    }
    /* Context travels with calls and their answers only. */
    if ((flags & TT_FRAME_F_CTX) && type != TT_FRAME_REQUEST && type != TT_FRAME_REPLY &&
        type != TT_FRAME_ERROR) {
        return TETHER_EPROTO;
    }
    if (name_len > TT_FRAME_MAX_NAME || name_len > len - TT_FRAME_MIN_LEN) {
        return TETHER_EPROTO;
    }
    /* Only requests name a method. */
    if ((type == TT_FRAME_REQUEST) != (name_len > 0)) {
        return TETHER_EPROTO;
    }
    if (n < total) {
        if (need != NULL) {
            *need = (size_t)total;
        }
        return TETHER_EAGAIN;
    }
    f->type = type;
    f->flags = flags;
    f->seq = tt_get_le64(p + 8);
    f->status = tt_get_le32(p + 16);
    f->name = (const char *)p + TT_FRAME_HDR;
    f->name_len = name_len;
    size_t at = TT_FRAME_HDR + name_len;
    size_t rest = (size_t)total - at;
    f->ctx = NULL;
    f->ctx_len = 0;
    if (flags & TT_FRAME_F_CTX) {
        if (rest < 4) {
            return TETHER_EPROTO;
        }
        uint32_t clen = tt_get_le32(p + at);
        if (clen > TT_CTX_MAX || clen > rest - 4) {
            return TETHER_EPROTO;
        }
        f->ctx = p + at + 4;
        f->ctx_len = clen;
        at += 4 + clen;
        rest -= 4 + clen;
    }
    f->body = p + at;
    f->body_len = rest;
    f->total = (size_t)total;
    return TETHER_OK;
}

int
tt_ctx_meta_split_long(const uint8_t *v, size_t len)
{
    const uint8_t *nul = memchr(v, 0, len - 1);
    if (nul == NULL || nul == v || memchr(nul + 1, 0, len - 2 - (size_t)(nul - v)) != NULL) {
        return -1;
    }
    return (int)(nul - v);
}

size_t
tt_ctx_put_deadline(uint8_t *w, uint32_t ms)
{
    w[0] = TT_CTX_DEADLINE;
    w[1] = 4;
    w[2] = 0;
    tt_put_le32(w + 3, ms);
    return 7;
}

void
tt_frame_put_header_ctx(uint8_t *hdr, uint8_t type, uint64_t seq, uint32_t status, size_t name_len,
                        size_t ctx_len, size_t body_len)
{
    tt_frame_put_header(hdr, type, seq, status, name_len, 4 + ctx_len + body_len);
    hdr[5] = TT_FRAME_F_CTX;
    tt_put_le32(hdr + TT_FRAME_HDR + name_len, (uint32_t)ctx_len);
}

void
tt_frame_put_header(uint8_t *hdr, uint8_t type, uint64_t seq, uint32_t status, size_t name_len,
                    size_t body_len)
{
    tt_put_le32(hdr, (uint32_t)(TT_FRAME_MIN_LEN + name_len + body_len));
    hdr[4] = type;
    hdr[5] = 0;
    hdr[6] = (uint8_t)name_len;
    hdr[7] = (uint8_t)(name_len >> 8);
    tt_put_le64(hdr + 8, seq);
    tt_put_le32(hdr + 16, status);
}
