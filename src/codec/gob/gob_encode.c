/*
 * gob_encode.c - protobuf messages into gob values of the types
 * gob_types.c defined.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec/gob/gob_int.h"
#include "codec/pbjson/pbutil.h"
#include "core/alloc.h"

/* --- encoding values --- */

/* Whether a singular field holds its zero value (gob leaves those out). */
static bool
is_zero(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    const void *p = tt_pb_field_ptr(msg, f);
    if (!tt_pb_field_present(msg, f)) {
        return true;
    }
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        return *(const size_t *)tt_pb_quant_ptr(msg, f) == 0 || *(void *const *)p == NULL;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s == NULL || s[0] == '\0';
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        const ProtobufCFieldDescriptor *wf = tt_pb_wrapper_field(f->descriptor);
        /* A nil pointer is left out; so is a pointer to a zero scalar. */
        return m == NULL || (wf != NULL && is_zero(m, wf));
    }
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)p == 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)p == 0;
    default: {
        uint8_t zero[8] = {0};
        return memcmp(p, zero, tt_pb_elem_size(f)) == 0;
    }
    }
}

static tether_err
enc_scalar(tt_buf *b, const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return tt_gob_put_int(b, *(const int32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return tt_gob_put_int(b, *(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return tt_gob_put_uint(b, *(const uint32_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return tt_gob_put_uint(b, *(const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return tt_gob_put_uint(b, tt_gob_float_bits(*(const float *)p));
    case PROTOBUF_C_TYPE_DOUBLE:
        return tt_gob_put_uint(b, tt_gob_float_bits(*(const double *)p));
    case PROTOBUF_C_TYPE_BOOL:
        return tt_gob_put_uint(b, *(const protobuf_c_boolean *)p ? 1 : 0);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s == NULL ? tt_gob_put_uint(b, 0) : tt_gob_put_bytes(b, s, strlen(s));
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *d = p;
        return tt_gob_put_bytes(b, d->data, d->data == NULL ? 0 : d->len);
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        break;
    }
    return TETHER_EINVAL;
}

static tether_err enc_struct(tt_buf *b, const ProtobufCMessage *msg, unsigned depth);

/* One value of f's element type at p. */
static tether_err
enc_elem(tt_buf *b, const ProtobufCFieldDescriptor *f, const void *p, unsigned depth)
{
    if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
        return enc_scalar(b, f, p);
    }
    const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
    const ProtobufCFieldDescriptor *wf = tt_pb_wrapper_field(f->descriptor);
    if (wf != NULL) {
        if (m == NULL) {
            /* A nil element cannot be sent; its zero value is the closest. */
            uint8_t zero[sizeof(ProtobufCBinaryData)] = {0};
            return enc_scalar(b, wf, zero);
        }
        return enc_scalar(b, wf, tt_pb_field_ptr(m, wf));
    }
    if (m == NULL) {
        return tt_gob_put_uint(b, 0); /* an empty struct */
    }
    return enc_struct(b, m, depth + 1);
}

static tether_err
enc_field(tt_buf *b, const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, unsigned depth)
{
    tether_err err;
    const void *p = tt_pb_field_ptr(msg, f);
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
        return enc_elem(b, f, p, depth);
    }
    size_t n = *(const size_t *)tt_pb_quant_ptr(msg, f);
    const char *arr = *(char *const *)p;
    GOB_TRY(tt_gob_put_uint(b, n));
    if (tt_pb_is_map(msg->descriptor, f)) {
        const ProtobufCMessageDescriptor *ed = f->descriptor;
        for (size_t i = 0; i < n; i++) {
            const ProtobufCMessage *e = ((ProtobufCMessage *const *)arr)[i];
            if (e == NULL) {
                return TETHER_EINVAL;
            }
            GOB_TRY(enc_elem(b, &ed->fields[0], tt_pb_field_ptr(e, &ed->fields[0]), depth));
            GOB_TRY(enc_elem(b, &ed->fields[1], tt_pb_field_ptr(e, &ed->fields[1]), depth));
        }
        return TETHER_OK;
    }
    size_t es = tt_pb_elem_size(f);
    for (size_t i = 0; i < n; i++) {
        GOB_TRY(enc_elem(b, f, arr + i * es, depth));
    }
    return TETHER_OK;
}

static tether_err
enc_struct(tt_buf *b, const ProtobufCMessage *msg, unsigned depth)
{
    tether_err err;
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    if (depth > TT_GOB_MAX_DEPTH) {
        return TETHER_ELIMIT;
    }
    unsigned prev = 0; /* field number + 1 of the last field sent */
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (is_zero(msg, f)) {
            continue;
        }
        GOB_TRY(tt_gob_put_uint(b, i + 1 - prev));
        prev = i + 1;
        GOB_TRY(enc_field(b, msg, f, depth));
    }
    return tt_gob_put_uint(b, 0);
}

tether_err
tt_gob_encode_value(gob_state *s, tt_buf *out, const ProtobufCMessage *msg)
{
    tether_err err;
    size_t mark;
    const ProtobufCFieldDescriptor *wf = tt_pb_wrapper_field(msg->descriptor);
    if (wf != NULL) {
        /* A singleton of a predefined type: no definitions; the value is
         * sent even when zero. */
        GOB_TRY(tt_gob_msg_begin(out, &mark));
        GOB_TRY(tt_gob_put_int(out, tt_gob_scalar_id(wf)));
        GOB_TRY(tt_gob_put_uint(out, 0));
        GOB_TRY(enc_scalar(out, wf, tt_pb_field_ptr(msg, wf)));
        return tt_gob_msg_end(out, mark);
    }
    int64_t id;
    GOB_TRY(tt_gob_struct_type(s, msg->descriptor, &id));
    GOB_TRY(tt_gob_send_types(s, out, id, 0));
    GOB_TRY(tt_gob_msg_begin(out, &mark));
    GOB_TRY(tt_gob_put_int(out, id));
    GOB_TRY(enc_struct(out, msg, 0));
    return tt_gob_msg_end(out, mark);
}

