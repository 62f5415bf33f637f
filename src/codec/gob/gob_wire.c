/*
 * gob_wire.c - gob's primitives (unsigned and signed integers, byte
 * strings), the table of the peer's type definitions, and skipping a value
 * of any type the peer defined (docs/codecs.md).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec/gob/gob_int.h"
#include "codec/pbjson/pbutil.h"
#include "core/alloc.h"


bool
tt_gob_read_uint(gob_reader *r, uint64_t *v)
{
    if (r->p >= r->end) {
        return false;
    }
    uint8_t b = *r->p++;
    if (b < 0x80) {
        *v = b;
        return true;
    }
    /* A byte count, negated: 0xff = 1 byte ... 0xf8 = 8 bytes. */
    unsigned n = (unsigned)(256 - b);
    if (n > 8 || (size_t)(r->end - r->p) < n) {
        return false;
    }
    uint64_t x = 0;
    for (unsigned i = 0; i < n; i++) {
        x = (x << 8) | *r->p++;
    }
    *v = x;
    return true;
}

bool
tt_gob_read_int(gob_reader *r, int64_t *v)
{
    uint64_t u;
    if (!tt_gob_read_uint(r, &u)) {
        return false;
    }
    /* Bit 0 is the sign: set means the rest is the complement. */
    *v = (u & 1) ? (int64_t) ~(u >> 1) : (int64_t)(u >> 1);
    return true;
}

bool
tt_gob_read_bytes(gob_reader *r, const uint8_t **b, size_t *n)
{
    uint64_t len;
    if (!tt_gob_read_uint(r, &len) || len > (uint64_t)(r->end - r->p)) {
        return false;
    }
    *b = r->p;
    *n = (size_t)len;
    r->p += len;
    return true;
}

tether_err
tt_gob_put_uint(tt_buf *b, uint64_t v)
{
    uint8_t tmp[9];
    if (v < 0x80) {
        tmp[0] = (uint8_t)v;
        return tt_buf_append(b, tmp, 1);
    }
    unsigned n = 0;
    for (uint64_t x = v; x != 0; x >>= 8) {
        n++;
    }
    tmp[0] = (uint8_t)(256 - n);
    for (unsigned i = 0; i < n; i++) {
        tmp[n - i] = (uint8_t)(v >> (8 * i));
    }
    return tt_buf_append(b, tmp, n + 1);
}

tether_err
tt_gob_put_int(tt_buf *b, int64_t v)
{
    uint64_t u = v < 0 ? (~(uint64_t)v << 1) | 1 : (uint64_t)v << 1;
    return tt_gob_put_uint(b, u);
}

tether_err
tt_gob_put_bytes(tt_buf *b, const void *p, size_t n)
{
    tether_err err = tt_gob_put_uint(b, n);
    return err != TETHER_OK ? err : tt_buf_append(b, p, n);
}

const gob_wtype *
tt_gob_lookup(const gob_state *s, int64_t id)
{
    size_t lo = 0;
    size_t hi = s->n_in;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->in[mid].id == id) {
            return &s->in[mid];
        }
        if (s->in[mid].id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

/* --- skipping values of any defined type --- */

bool
tt_gob_skip(const gob_state *s, gob_reader *r, int64_t id, unsigned depth)
{
    uint64_t u;
    const uint8_t *b;
    size_t n;
    if (depth > TT_GOB_MAX_DEPTH) {
        return false;
    }
    switch (id) {
    case GOB_BOOL:
    case GOB_INT:
    case GOB_UINT:
    case GOB_FLOAT:
        return tt_gob_read_uint(r, &u);
    case GOB_BYTES:
    case GOB_STRING:
        return tt_gob_read_bytes(r, &b, &n);
    case GOB_COMPLEX:
        return tt_gob_read_uint(r, &u) && tt_gob_read_uint(r, &u);
    default:
        break;
    }
    /* Interface values embed their own type definitions; unsupported. */
    const gob_wtype *t = tt_gob_lookup(s, id);
    if (t == NULL) {
        return false;
    }
    switch (t->kind) {
    case GOB_K_STRUCT: {
        int64_t field = -1;
        for (;;) {
            if (!tt_gob_read_uint(r, &u)) {
                return false;
            }
            if (u == 0) {
                return true;
            }
            if (u > t->n_fields || field + (int64_t)u >= (int64_t)t->n_fields) {
                return false;
            }
            field += (int64_t)u;
            if (!tt_gob_skip(s, r, t->fields[field].id, depth + 1)) {
                return false;
            }
        }
    }
    case GOB_K_SLICE:
    case GOB_K_ARRAY:
    case GOB_K_MAP:
        /* Every element takes at least one byte, which bounds the count. */
        if (!tt_gob_read_uint(r, &u) || u > (uint64_t)(r->end - r->p)) {
            return false;
        }
        for (uint64_t i = 0; i < u; i++) {
            if (t->kind == GOB_K_MAP && !tt_gob_skip(s, r, t->key, depth + 1)) {
                return false;
            }
            if (!tt_gob_skip(s, r, t->elem, depth + 1)) {
                return false;
            }
        }
        return true;
    default:
        /* GobEncoder and the marshalers: a byte slice. */
        return tt_gob_read_bytes(r, &b, &n);
    }
}

/* The gob type id a proto scalar type travels as. */
int64_t
tt_gob_scalar_id(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_ENUM:
        return GOB_INT;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return GOB_UINT;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        return GOB_FLOAT;
    case PROTOBUF_C_TYPE_BOOL:
        return GOB_BOOL;
    case PROTOBUF_C_TYPE_STRING:
        return GOB_STRING;
    case PROTOBUF_C_TYPE_BYTES:
        return GOB_BYTES;
    case PROTOBUF_C_TYPE_MESSAGE:
        break;
    }
    return 0;
}
