/*
 * base64.c - standard padded base64, shared by the JSON mapping and the
 * etcd backend.
 */
#include "core/base64.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void
tt_base64_encode(const void *data, size_t n, char *out)
{
    const uint8_t *d = data;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = alphabet[(v >> 6) & 63];
        *out++ = alphabet[v & 63];
    }
    if (i < n) {
        /* Always padded: etcd refuses unpadded base64. */
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0);
        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
}

static bool
value_of(uint8_t c, uint32_t *v)
{
    if (c >= 'A' && c <= 'Z') {
        *v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
        *v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
        *v = c - '0' + 52;
    } else if (c == '+') {
        *v = 62;
    } else if (c == '/') {
        *v = 63;
    } else {
        return false;
    }
    return true;
}

bool
tt_base64_decode(const char *s, size_t n, uint8_t *out, size_t cap, size_t *outlen)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    size_t pad = 0;
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c == '\r' || c == '\n') {
            continue;
        }
        chars++;
        if (c == '=') {
            pad++;
            continue;
        }
        uint32_t v;
        if (pad > 0 || !value_of(c, &v)) {
            return false;
        }
        acc = (acc << 6) | v;
        bits += 6;
        if (bits >= 8) {
            if (o == cap) {
                return false;
            }
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (chars % 4 != 0 || pad > 2) {
        return false;
    }
    /* The padding must match the leftover: 2 chars + "==" or 3 + "=". */
    if ((pad == 2 && bits != 4) || (pad == 1 && bits != 2) || (pad == 0 && bits != 0)) {
        return false;
    }
    *outlen = o;
    return true;
}
