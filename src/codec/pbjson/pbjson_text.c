/*
 * pbjson_text.c - JSON text primitives: Go-compatible string escaping,
 * number formatting, and a validating value scanner that can tell
 * "incomplete" from "invalid" (the jsonrpc codec reads a stream).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson/pbjson.h"
#include "core/alloc.h"
#include "core/text.h"

static const char hexdig[] = "0123456789abcdef";

/*
 * decode_rune - decode one UTF-8 sequence at s[0..n) the way Go's
 * utf8.DecodeRune does: overlong forms, surrogates and values above
 * U+10FFFF are invalid.  Returns the code point and its length in *size,
 * or -1 with *size = 1 for an invalid or truncated sequence.
 */
static int32_t
decode_rune(const uint8_t *s, size_t n, size_t *size)
{
    *size = 1;
    uint8_t c = s[0];
    if (c < 0x80) {
        return c;
    }
    size_t need;
    int32_t cp;
    int32_t min;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return -1;
    }
    if (n < need) {
        return -1;
    }
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return -1;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return -1;
    }
    *size = need;
    return cp;
}

/* Bytes Go's encoder writes unchanged inside a string literal. */
static inline bool
str_safe(uint8_t c)
{
    return c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' && c < 0x80;
}

tether_err
tt_json_write_string(tt_buf *out, const char *str, size_t n)
{
    const uint8_t *s = (const uint8_t *)str;
    /* Worst case is 6 output bytes per input byte (\u00XX), plus quotes. */
    if (n > (SIZE_MAX - 2) / 6) {
        return TETHER_ENOMEM;
    }
    tether_err err = tt_buf_reserve(out, n * 6 + 2);
    if (err != TETHER_OK) {
        return err;
    }
    uint8_t *w = out->data + out->len;
    *w++ = '"';
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (str_safe(c)) {
            *w++ = c;
            i++;
            continue;
        }
        if (c < 0x80) {
            *w++ = '\\';
            switch (c) {
            case '"':
            case '\\':
                *w++ = c;
                break;
            case '\n':
                *w++ = 'n';
                break;
            case '\r':
                *w++ = 'r';
                break;
            case '\t':
                *w++ = 't';
                break;
            default:
                /* Go 1.19 writes \b and \f as \u0008 and \u000c as well. */
                *w++ = 'u';
                *w++ = '0';
                *w++ = '0';
                *w++ = (uint8_t)hexdig[c >> 4];
                *w++ = (uint8_t)hexdig[c & 0xF];
                break;
            }
            i++;
            continue;
        }
        size_t size;
        int32_t cp = decode_rune(s + i, n - i, &size);
        if (cp < 0) {
            memcpy(w, "\\ufffd", 6);
            w += 6;
        } else if (cp == 0x2028 || cp == 0x2029) {
            memcpy(w, "\\u202", 5);
            w += 5;
            *w++ = (uint8_t)hexdig[cp & 0xF];
        } else {
            memcpy(w, s + i, size);
            w += size;
        }
        i += size;
    }
    *w++ = '"';
    out->len = (size_t)(w - out->data);
    return TETHER_OK;
}

tether_err
tt_json_compact(tt_buf *out, const char *text, size_t n)
{
    const uint8_t *s = (const uint8_t *)text;
    tether_err err = tt_buf_reserve(out, n * 6);
    if (err != TETHER_OK) {
        return err;
    }
    uint8_t *w = out->data + out->len;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (!in_str && tt_json_is_ws(c)) {
            continue;
        }
        if (c == '<' || c == '>' || c == '&') {
            memcpy(w, "\\u00", 4);
            w += 4;
            *w++ = (uint8_t)hexdig[c >> 4];
            *w++ = (uint8_t)hexdig[c & 0xF];
            continue;
        }
        /* U+2028 and U+2029 are E2 80 A8 / E2 80 A9. */
        if (c == 0xE2 && i + 2 < n && s[i + 1] == 0x80 && (s[i + 2] == 0xA8 || s[i + 2] == 0xA9)) {
            memcpy(w, "\\u202", 5);
            w += 5;
            *w++ = s[i + 2] == 0xA8 ? '8' : '9';
            i += 2;
            continue;
        }
        if (in_str && c == '\\' && i + 1 < n) {
            *w++ = c;
            *w++ = s[++i];
            continue;
        }
        if (c == '"') {
            in_str = !in_str;
        }
        *w++ = c;
    }
    out->len = (size_t)(w - out->data);
    return TETHER_OK;
}

tether_err
tt_json_write_u64(tt_buf *out, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return tt_buf_append(out, tmp + i, sizeof(tmp) - i);
}

tether_err
tt_json_write_i64(tt_buf *out, int64_t v)
{
    if (v < 0) {
        tether_err err = tt_buf_append(out, "-", 1);
        if (err != TETHER_OK) {
            return err;
        }
        /* Negate in unsigned arithmetic so INT64_MIN does not overflow. */
        return tt_json_write_u64(out, (uint64_t)0 - (uint64_t)v);
    }
    return tt_json_write_u64(out, (uint64_t)v);
}

bool
tt_json_parse_u64(const char *p, size_t n, uint64_t *v)
{
    if (n == 0 || n > 20 || (p[0] == '0' && n > 1)) {
        return false;
    }
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        unsigned d = (unsigned)(p[i] - '0');
        if (x > (UINT64_MAX - d) / 10) {
            return false;
        }
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

void
tt_json_skip_ws(tt_json_reader *r)
{
    while (r->p < r->end && tt_json_is_ws((uint8_t)*r->p)) {
        r->p++;
    }
}

/* Skip one or more digits at *pp (a fraction's or an exponent's); none yet
 * at the end of input is EAGAIN. */
static tether_err
skip_digits(const char **pp, const char *e)
{
    const char *p = *pp;
    if (p >= e) {
        return TETHER_EAGAIN;
    }
    if (*p < '0' || *p > '9') {
        return TETHER_EPROTO;
    }
    while (p < e && *p >= '0' && *p <= '9') {
        p++;
    }
    *pp = p;
    return TETHER_OK;
}

/* Skip a number token, validating JSON's grammar.  At the end of input a
 * number may continue, so that is EAGAIN. */
static tether_err
skip_number(tt_json_reader *r)
{
    const char *p = r->p;
    const char *e = r->end;
    if (p < e && *p == '-') {
        p++;
    }
    if (p >= e) {
        return TETHER_EAGAIN;
    }
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < e && *p >= '0' && *p <= '9') {
            p++;
        }
    } else {
        return TETHER_EPROTO;
    }
    tether_err err;
    if (p < e && *p == '.') {
        p++;
        if ((err = skip_digits(&p, e)) != TETHER_OK) {
            return err;
        }
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) {
            p++;
        }
        if ((err = skip_digits(&p, e)) != TETHER_OK) {
            return err;
        }
    }
    if (p >= e) {
        /* "12" at the very end might be "123" once more bytes come. */
        r->eof = true;
    }
    r->p = p;
    return TETHER_OK;
}

static tether_err
skip_literal(tt_json_reader *r, const char *lit, size_t n)
{
    size_t avail = (size_t)(r->end - r->p);
    size_t k = avail < n ? avail : n;
    if (memcmp(r->p, lit, k) != 0) {
        return TETHER_EPROTO;
    }
    if (k < n) {
        return TETHER_EAGAIN;
    }
    r->p += n;
    return TETHER_OK;
}

/*
 * scan_string - find the end of the string literal at r->p ('"'),
 * checking escapes and control bytes.  *simple: no escapes and valid
 * UTF-8, so the bytes can be used as they are.
 */
static tether_err
scan_string(tt_json_reader *r, const char **endq, bool *simple)
{
    const uint8_t *p = (const uint8_t *)r->p + 1;
    const uint8_t *e = (const uint8_t *)r->end;
    *simple = true;
    while (p < e) {
        uint8_t c = *p;
        if (c == '"') {
            *endq = (const char *)p;
            return TETHER_OK;
        }
        if (c < 0x20) {
            return TETHER_EPROTO;
        }
        if (c == '\\') {
            *simple = false;
            if (p + 1 >= e) {
                return TETHER_EAGAIN;
            }
            uint8_t x = p[1];
            if (x == 'u') {
                if (p + 6 > e) {
                    return TETHER_EAGAIN;
                }
                for (int i = 2; i < 6; i++) {
                    if (tt_hexval((char)p[i]) < 0) {
                        return TETHER_EPROTO;
                    }
                }
                p += 6;
                continue;
            }
            if (x != '"' && x != '\\' && x != '/' && x != 'b' && x != 'f' && x != 'n' && x != 'r' &&
                x != 't') {
                return TETHER_EPROTO;
            }
            p += 2;
            continue;
        }
        if (c >= 0x80) {
            size_t size;
            /* A multi-byte sequence cut by the end of input is not yet
             * known to be invalid; the string is unfinished anyway. */
            if (decode_rune(p, (size_t)(e - p), &size) < 0) {
                *simple = false;
            }
            p += size;
            continue;
        }
        p++;
    }
    return TETHER_EAGAIN;
}

static void
put_utf8(uint8_t **w, uint32_t cp)
{
    uint8_t *o = *w;
    if (cp < 0x80) {
        *o++ = (uint8_t)cp;
    } else if (cp < 0x800) {
        *o++ = (uint8_t)(0xC0 | (cp >> 6));
        *o++ = (uint8_t)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (uint8_t)(0xE0 | (cp >> 12));
        *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (uint8_t)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (uint8_t)(0xF0 | (cp >> 18));
        *o++ = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (uint8_t)(0x80 | (cp & 0x3F));
    }
    *w = o;
}

static uint32_t
hex4(const uint8_t *p)
{
    /* The digits were checked by scan_string(); unsigned shifts keep even
     * a bad one defined. */
    return (uint32_t)tt_hexval((char)p[0]) << 12 | (uint32_t)tt_hexval((char)p[1]) << 8 |
           (uint32_t)tt_hexval((char)p[2]) << 4 | (uint32_t)tt_hexval((char)p[3]);
}

tether_err
tt_json_read_string(tt_json_reader *r, const char **s, size_t *n, char **owned)
{
    const char *endq;
    bool simple;
    *owned = NULL;
    if (r->p >= r->end) {
        return TETHER_EAGAIN;
    }
    if (*r->p != '"') {
        return TETHER_EPROTO;
    }
    tether_err err = scan_string(r, &endq, &simple);
    if (err != TETHER_OK) {
        return err;
    }
    const uint8_t *p = (const uint8_t *)r->p + 1;
    const uint8_t *e = (const uint8_t *)endq;
    r->p = endq + 1;
    if (simple) {
        *s = (const char *)p;
        *n = (size_t)(e - p);
        return TETHER_OK;
    }
    /* Unescaping never grows the text except for invalid bytes, each of
     * which becomes U+FFFD (3 bytes), as Go's decoder replaces them. */
    size_t in = (size_t)(e - p);
    uint8_t *buf = tt_malloc(in * 3 + 1);
    if (buf == NULL) {
        return TETHER_ENOMEM;
    }
    uint8_t *w = buf;
    while (p < e) {
        uint8_t c = *p;
        if (c == '\\') {
            uint8_t x = p[1];
            p += 2;
            switch (x) {
            case 'b':
                *w++ = '\b';
                break;
            case 'f':
                *w++ = '\f';
                break;
            case 'n':
                *w++ = '\n';
                break;
            case 'r':
                *w++ = '\r';
                break;
            case 't':
                *w++ = '\t';
                break;
            case 'u': {
                uint32_t cp = hex4(p);
                p += 4;
                if (cp >= 0xD800 && cp < 0xDC00) {
                    /* A high surrogate pairs with a following \uDC00-DFFF;
                     * alone it is U+FFFD, as in Go. */
                    if (p + 6 <= e && p[0] == '\\' && p[1] == 'u') {
                        uint32_t lo = hex4(p + 2);
                        if (lo >= 0xDC00 && lo < 0xE000) {
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                            p += 6;
                        } else {
                            cp = 0xFFFD;
                        }
                    } else {
                        cp = 0xFFFD;
                    }
                } else if (cp >= 0xDC00 && cp < 0xE000) {
                    cp = 0xFFFD;
                }
                put_utf8(&w, cp);
                break;
            }
            default: /* '"', '\\', '/' */
                *w++ = x;
                break;
            }
            continue;
        }
        if (c < 0x80) {
            *w++ = c;
            p++;
            continue;
        }
        size_t size;
        if (decode_rune(p, (size_t)(e - p), &size) < 0) {
            put_utf8(&w, 0xFFFD);
        } else {
            memcpy(w, p, size);
            w += size;
        }
        p += size;
    }
    *w = '\0';
    *s = (const char *)buf;
    *n = (size_t)(w - buf);
    *owned = (char *)buf;
    return TETHER_OK;
}

static tether_err
skip_value(tt_json_reader *r)
{
    tt_json_skip_ws(r);
    if (r->p >= r->end) {
        return TETHER_EAGAIN;
    }
    tether_err err;
    char c = *r->p;
    switch (c) {
    case '"': {
        const char *endq;
        bool simple;
        err = scan_string(r, &endq, &simple);
        if (err == TETHER_OK) {
            r->p = endq + 1;
        }
        return err;
    }
    case 't':
        return skip_literal(r, "true", 4);
    case 'f':
        return skip_literal(r, "false", 5);
    case 'n':
        return skip_literal(r, "null", 4);
    case '{':
    case '[': {
        char close = c == '{' ? '}' : ']';
        if (r->depth >= TT_JSON_MAX_DEPTH) {
            return TETHER_EPROTO;
        }
        r->depth++;
        r->p++;
        tt_json_skip_ws(r);
        if (r->p >= r->end) {
            return TETHER_EAGAIN;
        }
        if (*r->p == close) {
            r->p++;
            r->depth--;
            return TETHER_OK;
        }
        for (;;) {
            if (c == '{') {
                tt_json_skip_ws(r);
                if (r->p >= r->end) {
                    return TETHER_EAGAIN;
                }
                if (*r->p != '"') {
                    return TETHER_EPROTO;
                }
                err = skip_value(r);
                if (err != TETHER_OK) {
                    return err;
                }
                tt_json_skip_ws(r);
                if (r->p >= r->end) {
                    return TETHER_EAGAIN;
                }
                if (*r->p != ':') {
                    return TETHER_EPROTO;
                }
                r->p++;
            }
            err = skip_value(r);
            if (err != TETHER_OK) {
                return err;
            }
            tt_json_skip_ws(r);
            if (r->p >= r->end) {
                return TETHER_EAGAIN;
            }
            if (*r->p == ',') {
                r->p++;
                continue;
            }
            if (*r->p == close) {
                r->p++;
                r->depth--;
                /* A number ending at the input's end was complete after all. */
                r->eof = false;
                return TETHER_OK;
            }
            return TETHER_EPROTO;
        }
    }
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            return skip_number(r);
        }
        return TETHER_EPROTO;
    }
}

tether_err
tt_json_skip(tt_json_reader *r)
{
    r->eof = false;
    return skip_value(r);
}
