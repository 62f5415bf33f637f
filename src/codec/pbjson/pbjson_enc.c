/*
 * pbjson_enc.c - protobuf message -> JSON text, byte for byte what Go's
 * encoding/json writes for the matching Go value (see pbjson.h).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson/pbjson.h"
#include "codec/pbjson/pbutil.h"
#include "core/alloc.h"
#include "core/base64.h"

#define PUT(out, lit) tt_buf_append((out), (lit), sizeof(lit) - 1)
#define CHECK(expr)                                                                                \
    do {                                                                                           \
        tether_err err_ = (expr);                                                                  \
        if (err_ != TETHER_OK) {                                                                   \
            return err_;                                                                           \
        }                                                                                          \
    } while (0)

/*
 * shortest_digits - the shortest decimal that reads back as v (as a
 * double, or as a float when is32), in C's "%.*e" form.  Go's
 * strconv.FormatFloat(v, fmt, -1, bits) prints the same digits.
 */
static void
shortest_digits(double v, bool is32, char *buf, size_t cap)
{
    for (int prec = 0; prec < 17; prec++) {
        snprintf(buf, cap, "%.*e", prec, v);
        if (is32) {
            if (strtof(buf, NULL) == (float)v) {
                return;
            }
        } else if (strtod(buf, NULL) == v) {
            return;
        }
    }
    snprintf(buf, cap, "%.17e", v);
}

/*
 * write_float - Go's float encoding: shortest digits, 'f' notation unless
 * |v| < 1e-6 or >= 1e21, then 'e' with a two-digit exponent cut to one
 * ("1e-07" -> "1e-7").  C's "%e" uses the current locale's decimal point;
 * only the digits and the exponent are taken from it, so that is harmless.
 */
static tether_err
write_float(tt_buf *out, double v, bool is32)
{
    if (isnan(v) || isinf(v)) {
        return TETHER_EINVAL;
    }
    char sci[64];
    shortest_digits(v, is32, sci, sizeof(sci));
    /* Split "-d.ddde+XX" into sign, digits and exponent. */
    const char *p = sci;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    char digits[32];
    size_t nd = 0;
    while (*p != '\0' && *p != 'e' && *p != 'E') {
        if (*p >= '0' && *p <= '9' && nd < sizeof(digits)) {
            digits[nd++] = *p;
        }
        p++;
    }
    if (nd == 0) {
        digits[nd++] = '0'; /* never expected from the shortest search */
    }
    int exp10 = 0;
    if (*p == 'e' || *p == 'E') {
        exp10 = (int)strtol(p + 1, NULL, 10);
    }
    /* Drop trailing zeros of the mantissa ("1.0e+00" cannot occur from the
     * shortest search, but "0e+00" for zero can). */
    while (nd > 1 && digits[nd - 1] == '0') {
        nd--;
    }
    char res[64];
    size_t n = 0;
    if (neg) {
        res[n++] = '-';
    }
    double a = fabs(v);
    bool efmt =
        a != 0 && (is32 ? ((float)a < 1e-6f || (float)a >= 1e21f) : (a < 1e-6 || a >= 1e21));
    if (efmt) {
        res[n++] = digits[0];
        if (nd > 1) {
            res[n++] = '.';
            memcpy(res + n, digits + 1, nd - 1);
            n += nd - 1;
        }
        int e = exp10;
        res[n++] = 'e';
        res[n++] = e < 0 ? '-' : '+';
        if (e < 0) {
            e = -e;
        }
        /* Go writes at least two exponent digits, then json cuts "e-0X"
         * to "e-X" (only for negative exponents). */
        char ebuf[8];
        int en = snprintf(ebuf, sizeof(ebuf), exp10 < 0 ? "%d" : "%02d", e);
        memcpy(res + n, ebuf, (size_t)en);
        n += (size_t)en;
    } else if (exp10 >= (int)nd - 1) {
        /* Integer value: digits then zeros. */
        memcpy(res + n, digits, nd);
        n += nd;
        for (int i = 0; i < exp10 - ((int)nd - 1); i++) {
            res[n++] = '0';
        }
    } else if (exp10 >= 0) {
        memcpy(res + n, digits, (size_t)exp10 + 1);
        n += (size_t)exp10 + 1;
        res[n++] = '.';
        memcpy(res + n, digits + exp10 + 1, nd - (size_t)exp10 - 1);
        n += nd - (size_t)exp10 - 1;
    } else {
        res[n++] = '0';
        res[n++] = '.';
        for (int i = 0; i < -exp10 - 1; i++) {
            res[n++] = '0';
        }
        memcpy(res + n, digits, nd);
        n += nd;
    }
    return tt_buf_append(out, res, n);
}

static tether_err
write_base64(tt_buf *out, const uint8_t *d, size_t n)
{
    CHECK(tt_buf_reserve(out, tt_base64_len(n) + 2));
    char *w = (char *)out->data + out->len;
    *w++ = '"';
    tt_base64_encode(d, n, w);
    w += tt_base64_len(n);
    *w++ = '"';
    out->len += tt_base64_len(n) + 2;
    return TETHER_OK;
}

static tether_err encode_message(tt_buf *out, const ProtobufCMessage *msg, unsigned depth);

/* One value of field f's type stored at p. */
static tether_err
encode_value(tt_buf *out, const ProtobufCFieldDescriptor *f, const void *p, unsigned depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return tt_json_write_i64(out, *(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return tt_json_write_u64(out, *(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return tt_json_write_i64(out, *(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return tt_json_write_u64(out, *(const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return write_float(out, *(const float *)p, true);
    case PROTOBUF_C_TYPE_DOUBLE:
        return write_float(out, *(const double *)p, false);
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)p ? PUT(out, "true") : PUT(out, "false");
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s == NULL ? PUT(out, "\"\"") : tt_json_write_string(out, s, strlen(s));
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        return write_base64(out, b->data, b->data == NULL ? 0 : b->len);
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        if (m == NULL) {
            return PUT(out, "null");
        }
        return encode_message(out, m, depth + 1);
    }
    }
    return TETHER_EINVAL;
}

/* A map entry's key as the object key Go would write. */
typedef struct map_key {
    const ProtobufCMessage *entry;
    size_t index;
    char num[24]; /* numeric and bool keys, formatted */
    const char *s;
    size_t n;
} map_key;

/* The key text: numeric keys live in the struct itself (s is NULL), so
 * they stay valid while qsort moves the structs around. */
static const char *
key_str(const map_key *k)
{
    return k->s != NULL ? k->s : k->num;
}

static int
map_key_cmp(const void *a, const void *b)
{
    const map_key *x = a;
    const map_key *y = b;
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(key_str(x), key_str(y), n);
    if (c != 0) {
        return c;
    }
    if (x->n != y->n) {
        return x->n < y->n ? -1 : 1;
    }
    /* Equal keys keep their order so that the last one can win. */
    return x->index < y->index ? -1 : (x->index > y->index ? 1 : 0);
}

static void
format_key(map_key *k, const ProtobufCFieldDescriptor *kf)
{
    const void *p = tt_pb_field_ptr(k->entry, kf);
    int64_t i = 0;
    uint64_t u = 0;
    bool is_signed = true;
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING:
        k->s = *(char *const *)p;
        if (k->s == NULL) {
            k->s = "";
        }
        k->n = strlen(k->s);
        return;
    case PROTOBUF_C_TYPE_BOOL:
        k->s = *(const protobuf_c_boolean *)p ? "true" : "false";
        k->n = strlen(k->s);
        return;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        i = *(const int64_t *)p;
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        u = *(const uint64_t *)p;
        is_signed = false;
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        u = *(const uint32_t *)p;
        is_signed = false;
        break;
    default:
        i = *(const int32_t *)p;
        break;
    }
    int n = is_signed ? snprintf(k->num, sizeof(k->num), "%lld", (long long)i)
                      : snprintf(k->num, sizeof(k->num), "%llu", (unsigned long long)u);
    k->s = NULL;
    k->n = (size_t)n;
}

/* A map field: a JSON object with keys sorted bytewise, as Go sorts them;
 * of duplicate keys (possible in protobuf-c's entry list) the last wins,
 * as it would in a Go map. */
static tether_err
encode_map(tt_buf *out, const ProtobufCFieldDescriptor *f, ProtobufCMessage *const *entries,
           size_t n, unsigned depth)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0];
    const ProtobufCFieldDescriptor *vf = &ed->fields[1];
    if (n == 0) {
        return PUT(out, "{}");
    }
    map_key *keys = tt_calloc(n, sizeof(*keys));
    if (keys == NULL) {
        return TETHER_ENOMEM;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (entries[i] == NULL) {
            continue;
        }
        keys[m].entry = entries[i];
        keys[m].index = i;
        format_key(&keys[m], kf);
        m++;
    }
    qsort(keys, m, sizeof(*keys), map_key_cmp);
    tether_err err = PUT(out, "{");
    bool first = true;
    for (size_t i = 0; i < m && err == TETHER_OK; i++) {
        if (i + 1 < m && keys[i].n == keys[i + 1].n &&
            memcmp(key_str(&keys[i]), key_str(&keys[i + 1]), keys[i].n) == 0) {
            continue;
        }
        if (!first) {
            err = PUT(out, ",");
        }
        first = false;
        if (err == TETHER_OK) {
            err = tt_json_write_string(out, key_str(&keys[i]), keys[i].n);
        }
        if (err == TETHER_OK) {
            err = PUT(out, ":");
        }
        if (err == TETHER_OK) {
            err = encode_value(out, vf, tt_pb_field_ptr(keys[i].entry, vf), depth);
        }
    }
    if (err == TETHER_OK) {
        err = PUT(out, "}");
    }
    tt_free(keys);
    return err;
}

static tether_err
encode_field(tt_buf *out, const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
             unsigned depth)
{
    const void *p = tt_pb_field_ptr(msg, f);
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
        return encode_value(out, f, p, depth);
    }
    size_t n = *(const size_t *)tt_pb_quant_ptr(msg, f);
    const char *arr = *(char *const *)p;
    if (arr == NULL) {
        n = 0;
    }
    if (tt_pb_is_map(msg->descriptor, f)) {
        return encode_map(out, f, (ProtobufCMessage *const *)arr, n, depth + 1);
    }
    size_t es = tt_pb_elem_size(f);
    CHECK(PUT(out, "["));
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            CHECK(PUT(out, ","));
        }
        CHECK(encode_value(out, f, arr + i * es, depth + 1));
    }
    return PUT(out, "]");
}

static tether_err
encode_message(tt_buf *out, const ProtobufCMessage *msg, unsigned depth)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    if (depth > TT_JSON_MAX_DEPTH) {
        return TETHER_ELIMIT;
    }
    const ProtobufCFieldDescriptor *wf = tt_pb_wrapper_field(d);
    if (wf != NULL) {
        return encode_value(out, wf, tt_pb_field_ptr(msg, wf), depth);
    }
    CHECK(PUT(out, "{"));
    bool first = true;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!tt_pb_field_present(msg, f)) {
            continue;
        }
        if (!first) {
            CHECK(PUT(out, ","));
        }
        first = false;
        CHECK(tt_json_write_string(out, f->name, strlen(f->name)));
        CHECK(PUT(out, ":"));
        CHECK(encode_field(out, msg, f, depth));
    }
    return PUT(out, "}");
}

tether_err
tt_pbjson_encode(tt_buf *out, const ProtobufCMessage *msg)
{
    if (msg == NULL) {
        return PUT(out, "null");
    }
    return encode_message(out, msg, 0);
}

tether_err
tt_pbjson_to_json(const ProtobufCMessage *msg, json_t **out)
{
    tt_buf b = {0};
    *out = NULL;
    tether_err err = tt_pbjson_encode(&b, msg);
    if (err == TETHER_OK) {
        json_error_t je;
        /* JSON_DECODE_ANY: a wrapper type is a bare number or string. */
        *out = json_loadb((const char *)b.data, b.len, JSON_DECODE_ANY, &je);
        if (*out == NULL) {
            /* jansson refuses integers above INT64_MAX; read those as reals. */
            *out = json_loadb((const char *)b.data, b.len,
                              JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);
        }
        if (*out == NULL) {
            err = TETHER_ENOMEM;
        }
    }
    tt_buf_free(&b);
    return err;
}
