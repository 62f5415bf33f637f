/*
 * gob_decode.c - gob values the peer sent into protobuf messages, matched
 * field by field against the peer's type definitions (gob.h and
 * docs/codecs.md describe the mapping).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec/gob/gob_int.h"
#include "codec/pbjson/pbutil.h"
#include "core/alloc.h"

/* --- decoding into protobuf messages --- */

typedef struct vdec {
    gob_state *s;
    gob_reader r;
} vdec;

static tether_err
vfail(vdec *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->s->err, sizeof(d->s->err), fmt, ap);
    va_end(ap);
    return TETHER_EBADREQUEST;
}

static tether_err
truncated(vdec *d)
{
    return vfail(d, "gob: malformed or truncated value");
}


static const char *
wire_name(int64_t id)
{
    static const char *const names[] = {"?",      "bool",   "int",     "uint",     "float",
                                        "[]byte", "string", "complex", "interface"};
    return id >= 0 && id <= GOB_INTERFACE ? names[id] : "a user type";
}

static tether_err
mismatch(vdec *d, const ProtobufCFieldDescriptor *f, int64_t id)
{
    return vfail(d, "gob: cannot decode %s into field %s", wire_name(id), f->name);
}

/* One scalar of wire type id into f's storage at slot. */
static tether_err
dec_scalar(vdec *d, int64_t id, const ProtobufCFieldDescriptor *f, void *slot)
{
    if (id != tt_gob_scalar_id(f)) {
        return mismatch(d, f, id);
    }
    uint64_t u;
    int64_t i;
    const uint8_t *b;
    size_t n;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        if (!tt_gob_read_int(&d->r, &i)) {
            return truncated(d);
        }
        if (i < INT32_MIN || i > INT32_MAX) {
            return vfail(d, "gob: value out of range for field %s", f->name);
        }
        *(int32_t *)slot = (int32_t)i;
        return TETHER_OK;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (!tt_gob_read_int(&d->r, &i)) {
            return truncated(d);
        }
        *(int64_t *)slot = i;
        return TETHER_OK;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (!tt_gob_read_uint(&d->r, &u)) {
            return truncated(d);
        }
        if (u > UINT32_MAX) {
            return vfail(d, "gob: value out of range for field %s", f->name);
        }
        *(uint32_t *)slot = (uint32_t)u;
        return TETHER_OK;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (!tt_gob_read_uint(&d->r, &u)) {
            return truncated(d);
        }
        *(uint64_t *)slot = u;
        return TETHER_OK;
    case PROTOBUF_C_TYPE_DOUBLE:
        if (!tt_gob_read_uint(&d->r, &u)) {
            return truncated(d);
        }
        *(double *)slot = tt_gob_bits_float(u);
        return TETHER_OK;
    case PROTOBUF_C_TYPE_FLOAT: {
        if (!tt_gob_read_uint(&d->r, &u)) {
            return truncated(d);
        }
        double v = tt_gob_bits_float(u);
        /* Go refuses a float64 that overflows a float32 field. */
        if (!isinf(v) && !isnan(v) && isinf((float)v)) {
            return vfail(d, "gob: value out of range for field %s", f->name);
        }
        *(float *)slot = (float)v;
        return TETHER_OK;
    }
    case PROTOBUF_C_TYPE_BOOL:
        if (!tt_gob_read_uint(&d->r, &u)) {
            return truncated(d);
        }
        *(protobuf_c_boolean *)slot = u != 0;
        return TETHER_OK;
    case PROTOBUF_C_TYPE_STRING: {
        if (!tt_gob_read_bytes(&d->r, &b, &n)) {
            return truncated(d);
        }
        char *str = tt_strndup((const char *)b, n);
        if (str == NULL) {
            return TETHER_ENOMEM;
        }
        char **sp = slot;
        if (*sp != NULL && *sp != f->default_value) {
            tt_free(*sp);
        }
        *sp = str;
        return TETHER_OK;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        if (!tt_gob_read_bytes(&d->r, &b, &n)) {
            return truncated(d);
        }
        ProtobufCBinaryData *bd = slot;
        const ProtobufCBinaryData *def = f->default_value;
        if (bd->data != NULL && (def == NULL || def->data != bd->data)) {
            tt_free(bd->data);
        }
        bd->data = NULL;
        bd->len = 0;
        if (n > 0) {
            bd->data = tt_malloc(n);
            if (bd->data == NULL) {
                return TETHER_ENOMEM;
            }
            memcpy(bd->data, b, n);
            bd->len = n;
        }
        return TETHER_OK;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        break;
    }
    return mismatch(d, f, id);
}

static tether_err dec_struct(vdec *d, const gob_wtype *t, ProtobufCMessage *msg, unsigned depth);

/* One singular value of field f (any type) from wire type id. */
static tether_err
dec_elem(vdec *d, int64_t id, const ProtobufCFieldDescriptor *f, void *slot, unsigned depth)
{
    if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
        return dec_scalar(d, id, f, slot);
    }
    const ProtobufCMessageDescriptor *desc = f->descriptor;
    ProtobufCMessage **mp = slot;
    const ProtobufCFieldDescriptor *wf = tt_pb_wrapper_field(desc);
    const gob_wtype *t = NULL;
    if (wf == NULL) {
        t = tt_gob_lookup(d->s, id);
        if (t == NULL || t->kind != GOB_K_STRUCT) {
            return mismatch(d, f, id);
        }
    }
    if (*mp == NULL) {
        *mp = tt_pb_new(desc);
        if (*mp == NULL) {
            return TETHER_ENOMEM;
        }
    }
    if (wf != NULL) {
        /* Go's *int64 field: the pointer is flattened to the value. */
        return dec_scalar(d, id, wf, tt_pb_field_ptr(*mp, wf));
    }
    return dec_struct(d, t, *mp, depth + 1);
}

static tether_err
read_count(vdec *d, uint64_t *n)
{
    if (!tt_gob_read_uint(&d->r, n) || *n > (uint64_t)(d->r.end - d->r.p)) {
        return truncated(d);
    }
    if (*n > TT_GOB_MAX_ELEMS) {
        return vfail(d, "gob: more than %u elements", TT_GOB_MAX_ELEMS);
    }
    return TETHER_OK;
}

static tether_err
dec_repeated(vdec *d, int64_t id, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
             unsigned depth)
{
    const gob_wtype *t = tt_gob_lookup(d->s, id);
    bool is_map = tt_pb_is_map(msg->descriptor, f);
    if (t == NULL ||
        (is_map ? t->kind != GOB_K_MAP : (t->kind != GOB_K_SLICE && t->kind != GOB_K_ARRAY))) {
        return mismatch(d, f, id);
    }
    if (depth > TT_GOB_MAX_DEPTH) {
        return vfail(d, "gob: nesting deeper than %d", TT_GOB_MAX_DEPTH);
    }
    uint64_t n = 0;
    tether_err err = read_count(d, &n);
    if (err != TETHER_OK) {
        return err;
    }
    if (!is_map) {
        tt_pb_clear_field(msg, f);
    }
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    for (uint64_t i = 0; i < n; i++) {
        void *slot = tt_pb_repeated_push(msg, f, TT_GOB_MAX_ELEMS);
        if (slot == NULL) {
            return TETHER_ENOMEM;
        }
        if (is_map) {
            ProtobufCMessage *e = tt_pb_new(ed);
            if (e == NULL) {
                (*(size_t *)tt_pb_quant_ptr(msg, f))--;
                return TETHER_ENOMEM;
            }
            *(ProtobufCMessage **)slot = e;
            err = dec_elem(d, t->key, &ed->fields[0], tt_pb_field_ptr(e, &ed->fields[0]), depth);
            if (err == TETHER_OK) {
                err =
                    dec_elem(d, t->elem, &ed->fields[1], tt_pb_field_ptr(e, &ed->fields[1]), depth);
            }
        } else {
            err = dec_elem(d, t->elem, f, slot, depth);
            if (err == TETHER_OK && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                *(ProtobufCMessage **)slot == NULL) {
                *(ProtobufCMessage **)slot = tt_pb_new(ed);
                err = *(ProtobufCMessage **)slot == NULL ? TETHER_ENOMEM : TETHER_OK;
            }
        }
        if (err != TETHER_OK) {
            return err;
        }
    }
    return TETHER_OK;
}

/* The proto field a wire field maps to, cached in the field for the
 * type's last descriptor (the table is the state's own memory, so the
 * const of the lookup is cast away here only). */
static const ProtobufCFieldDescriptor *
match_field(const gob_wtype *ct, gob_field *wf, const ProtobufCMessageDescriptor *desc)
{
    gob_wtype *t = (gob_wtype *)ct;
    if (t->cache_desc != desc) {
        for (size_t i = 0; i < t->n_fields; i++) {
            t->fields[i].match = GOB_MATCH_UNSET;
        }
        t->cache_desc = desc;
    }
    if (wf->match == GOB_MATCH_UNSET) {
        const ProtobufCFieldDescriptor *f =
            tt_pb_field_by_name(desc, tt_gob_fname(t, wf), wf->name_len);
        wf->match = f == NULL ? 0 : (uint32_t)(f - desc->fields) + 1;
    }
    return wf->match == 0 ? NULL : &desc->fields[wf->match - 1];
}

static tether_err
dec_struct(vdec *d, const gob_wtype *t, ProtobufCMessage *msg, unsigned depth)
{
    if (depth > TT_GOB_MAX_DEPTH) {
        return vfail(d, "gob: nesting deeper than %d", TT_GOB_MAX_DEPTH);
    }
    int64_t field = -1;
    for (;;) {
        uint64_t delta;
        if (!tt_gob_read_uint(&d->r, &delta)) {
            return truncated(d);
        }
        if (delta == 0) {
            return TETHER_OK;
        }
        if (delta > t->n_fields || field + (int64_t)delta >= (int64_t)t->n_fields) {
            return vfail(d, "gob: field number out of range");
        }
        field += (int64_t)delta;
        gob_field *wf = &t->fields[field];
        const ProtobufCFieldDescriptor *pf = match_field(t, wf, msg->descriptor);
        tether_err err;
        if (pf == NULL) {
            /* Fields the message does not have are skipped, as Go does. */
            err = tt_gob_skip(d->s, &d->r, wf->id, depth + 1)
                      ? TETHER_OK
                      : vfail(d, "gob: cannot skip field %.*s", (int)wf->name_len,
                              tt_gob_fname(t, wf));
        } else if (pf->label == PROTOBUF_C_LABEL_REPEATED) {
            err = dec_repeated(d, wf->id, msg, pf, depth + 1);
        } else {
            tt_pb_mark_set(msg, pf);
            err = dec_elem(d, wf->id, pf, tt_pb_field_ptr(msg, pf), depth);
        }
        if (err != TETHER_OK) {
            return err;
        }
    }
}

tether_err
tt_gob_decode_value(gob_state *s, const ProtobufCMessageDescriptor *desc, const uint8_t *p,
                    size_t n, ProtobufCMessage **out)
{
    vdec d = {s, {p, p + n}};
    int64_t id;
    s->err[0] = '\0';
    *out = NULL;
    if (!tt_gob_read_int(&d.r, &id) || id <= 0) {
        return truncated(&d);
    }
    ProtobufCMessage *m = tt_pb_new(desc);
    if (m == NULL) {
        return TETHER_ENOMEM;
    }
    tether_err err;
    const ProtobufCFieldDescriptor *wf = tt_pb_wrapper_field(desc);
    const gob_wtype *t = tt_gob_lookup(s, id);
    if (t != NULL && t->kind == GOB_K_STRUCT) {
        err = wf != NULL ? vfail(&d, "gob: cannot decode a struct into %s", desc->short_name)
                         : dec_struct(&d, t, m, 0);
    } else {
        /* A singleton: delta 0, then the value. */
        uint64_t delta;
        if (!tt_gob_read_uint(&d.r, &delta) || delta != 0) {
            err = truncated(&d);
        } else if (wf != NULL) {
            err = dec_scalar(&d, id, wf, tt_pb_field_ptr(m, wf));
        } else {
            err = vfail(&d, "gob: cannot decode %s into %s", wire_name(id), desc->short_name);
        }
    }
    if (err == TETHER_OK && d.r.p != d.r.end) {
        err = vfail(&d, "gob: extra data in value");
    }
    if (err != TETHER_OK) {
        tt_pb_free(m);
        return err;
    }
    *out = m;
    return TETHER_OK;
}

