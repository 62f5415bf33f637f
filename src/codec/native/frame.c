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
    if (type == 0 || type > TT_FRAME_TYPE_MAX || flags != 0) {
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
    f->body = p + TT_FRAME_HDR + name_len;
    f->body_len = (size_t)total - TT_FRAME_HDR - name_len;
    f->total = (size_t)total;
    return TETHER_OK;
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
