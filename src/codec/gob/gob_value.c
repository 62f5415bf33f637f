/*
 * gob_value.c - gob primitives, and protobuf messages <-> gob values
 * (the mapping is described in gob.h and docs/codecs.md).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec/gob/gob_int.h"
#include "codec/pbjson/pbutil.h"
#include "core/alloc.h"

/* --- primitives --- */

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

/* Floats travel as their IEEE-754 bits with the bytes reversed, so that
 * small exponents make short encodings. */
static uint64_t
float_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    uint64_t r = 0;
    for (int i = 0; i < 8; i++) {
        r = (r << 8) | ((u >> (8 * i)) & 0xff);
    }
    return r;
}

static double
bits_float(uint64_t r)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) {
        u = (u << 8) | ((r >> (8 * i)) & 0xff);
    }
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
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

/* The gob type id a proto scalar type travels as. */
static int64_t
scalar_id(const ProtobufCFieldDescriptor *f)
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
    if (id != scalar_id(f)) {
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
        *(double *)slot = bits_float(u);
        return TETHER_OK;
    case PROTOBUF_C_TYPE_FLOAT: {
        if (!tt_gob_read_uint(&d->r, &u)) {
            return truncated(d);
        }
        double v = bits_float(u);
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

/* --- outgoing types --- */

static gob_otype *
otype(gob_state *s, int64_t id)
{
    return &s->out[id - GOB_FIRST_OUT_ID];
}

static tether_err
new_otype(gob_state *s, int64_t *id, gob_otype **t)
{
    if (s->n_out >= TT_GOB_MAX_TYPES) {
        return TETHER_ELIMIT;
    }
    if (s->n_out == s->cap_out) {
        size_t ncap = s->cap_out == 0 ? 8 : s->cap_out * 2;
        gob_otype *na = tt_realloc(s->out, ncap * sizeof(*na));
        if (na == NULL) {
            return TETHER_ENOMEM;
        }
        s->out = na;
        s->cap_out = ncap;
    }
    *t = &s->out[s->n_out];
    memset(*t, 0, sizeof(**t));
    *id = GOB_FIRST_OUT_ID + (int64_t)s->n_out;
    s->n_out++;
    return TETHER_OK;
}

tether_err
tt_gob_special_type(gob_state *s, int special, int64_t *id)
{
    for (size_t i = 0; i < s->n_out; i++) {
        if (s->out[i].kind == GOB_K_STRUCT && s->out[i].special == special) {
            *id = GOB_FIRST_OUT_ID + (int64_t)i;
            return TETHER_OK;
        }
    }
    gob_otype *t;
    tether_err err = new_otype(s, id, &t);
    if (err == TETHER_OK) {
        t->kind = GOB_K_STRUCT;
        t->special = special;
    }
    return err;
}

static tether_err struct_type(gob_state *s, const ProtobufCMessageDescriptor *desc, int64_t *id);

/* The type one value of f (ignoring repetition) travels as. */
static tether_err
elem_type(gob_state *s, const ProtobufCFieldDescriptor *f, int64_t *id)
{
    if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
        *id = scalar_id(f);
        return TETHER_OK;
    }
    const ProtobufCFieldDescriptor *wf = tt_pb_wrapper_field(f->descriptor);
    if (wf != NULL) {
        *id = scalar_id(wf);
        return TETHER_OK;
    }
    return struct_type(s, f->descriptor, id);
}

/* Find or create a slice or map type.  As in Go, its id comes after the
 * ids of the types it contains. */
static tether_err
container_type(gob_state *s, int kind, const ProtobufCFieldDescriptor *f, int64_t key, int64_t elem,
               int64_t *id)
{
    for (size_t i = 0; i < s->n_out; i++) {
        gob_otype *t = &s->out[i];
        if (t->kind == kind && t->key == key && t->elem == elem) {
            *id = GOB_FIRST_OUT_ID + (int64_t)i;
            return TETHER_OK;
        }
    }
    gob_otype *t;
    tether_err err = new_otype(s, id, &t);
    if (err == TETHER_OK) {
        t->kind = kind;
        t->field = f;
        t->key = key;
        t->elem = elem;
    }
    return err;
}

/* The type a whole field travels as. */
static tether_err
field_type(gob_state *s, const ProtobufCMessageDescriptor *parent,
           const ProtobufCFieldDescriptor *f, int64_t *id)
{
    tether_err err;
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
        return elem_type(s, f, id);
    }
    int64_t key = 0;
    int64_t elem;
    if (tt_pb_is_map(parent, f)) {
        const ProtobufCMessageDescriptor *ed = f->descriptor;
        err = elem_type(s, &ed->fields[0], &key);
        if (err == TETHER_OK) {
            err = elem_type(s, &ed->fields[1], &elem);
        }
        if (err == TETHER_OK) {
            err = container_type(s, GOB_K_MAP, f, key, elem, id);
        }
        return err;
    }
    err = elem_type(s, f, &elem);
    if (err == TETHER_OK) {
        err = container_type(s, GOB_K_SLICE, f, 0, elem, id);
    }
    return err;
}

/* Find or create a message's struct type.  As in Go, the struct takes
 * its id first, then its fields' types take theirs in field order. */
static tether_err
struct_type(gob_state *s, const ProtobufCMessageDescriptor *desc, int64_t *id)
{
    for (size_t i = 0; i < s->n_out; i++) {
        if (s->out[i].kind == GOB_K_STRUCT && s->out[i].desc == desc) {
            *id = GOB_FIRST_OUT_ID + (int64_t)i;
            return TETHER_OK;
        }
    }
    gob_otype *t;
    tether_err err = new_otype(s, id, &t);
    if (err != TETHER_OK) {
        return err;
    }
    t->kind = GOB_K_STRUCT;
    t->special = GOB_OT_MSG;
    t->desc = desc;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        int64_t fid;
        err = field_type(s, desc, &desc->fields[i], &fid);
        if (err != TETHER_OK) {
            return err;
        }
    }
    return TETHER_OK;
}

/* The Go spelling of a type, for CommonType.Name (informational only:
 * Go's decoder ignores it, but Go writes "[]int64" and the like). */
static void
go_name(const gob_state *s, int64_t id, const ProtobufCFieldDescriptor *f, char *buf, size_t cap)
{
    static const char *const basic[] = {"", "bool", "int", "uint", "float64", "[]uint8", "string"};
    if (f != NULL && f->type != PROTOBUF_C_TYPE_MESSAGE) {
        static const char *const names[] = {
            [PROTOBUF_C_TYPE_INT32] = "int32",    [PROTOBUF_C_TYPE_SINT32] = "int32",
            [PROTOBUF_C_TYPE_SFIXED32] = "int32", [PROTOBUF_C_TYPE_INT64] = "int64",
            [PROTOBUF_C_TYPE_SINT64] = "int64",   [PROTOBUF_C_TYPE_SFIXED64] = "int64",
            [PROTOBUF_C_TYPE_UINT32] = "uint32",  [PROTOBUF_C_TYPE_FIXED32] = "uint32",
            [PROTOBUF_C_TYPE_UINT64] = "uint64",  [PROTOBUF_C_TYPE_FIXED64] = "uint64",
            [PROTOBUF_C_TYPE_FLOAT] = "float32",  [PROTOBUF_C_TYPE_DOUBLE] = "float64",
            [PROTOBUF_C_TYPE_BOOL] = "bool",      [PROTOBUF_C_TYPE_ENUM] = "int32",
            [PROTOBUF_C_TYPE_STRING] = "string",  [PROTOBUF_C_TYPE_BYTES] = "[]uint8",
        };
        snprintf(buf, cap, "%s", names[f->type]);
        return;
    }
    if (f != NULL) {
        const ProtobufCFieldDescriptor *wf = tt_pb_wrapper_field(f->descriptor);
        if (wf != NULL) {
            char inner[32];
            go_name(s, 0, wf, inner, sizeof(inner));
            snprintf(buf, cap, "*%s", inner);
            return;
        }
        snprintf(buf, cap, "%s", ((const ProtobufCMessageDescriptor *)f->descriptor)->short_name);
        return;
    }
    snprintf(buf, cap, "%s", id >= 0 && id <= GOB_STRING ? basic[id] : "");
}

static tether_err
put_common(tt_buf *b, const char *name, int64_t id)
{
    tether_err err;
    size_t n = strlen(name);
    /* CommonType{Name, Id}: an empty Name is left out like any zero. */
    if (n > 0) {
        GOB_TRY(tt_gob_put_uint(b, 1));
        GOB_TRY(tt_gob_put_bytes(b, name, n));
    }
    GOB_TRY(tt_gob_put_uint(b, n > 0 ? 1 : 2));
    GOB_TRY(tt_gob_put_int(b, id));
    return tt_gob_put_uint(b, 0);
}

static tether_err
put_field_def(tt_buf *b, const char *name, int64_t id)
{
    tether_err err;
    GOB_TRY(tt_gob_put_uint(b, 1));
    GOB_TRY(tt_gob_put_bytes(b, name, strlen(name)));
    GOB_TRY(tt_gob_put_uint(b, 1));
    GOB_TRY(tt_gob_put_int(b, id));
    return tt_gob_put_uint(b, 0);
}

/* The definition message of outgoing type id. */
static tether_err
put_definition(gob_state *s, tt_buf *out, int64_t id)
{
    gob_otype *t = otype(s, id);
    tether_err err;
    size_t mark;
    GOB_TRY(tt_gob_msg_begin(out, &mark));
    GOB_TRY(tt_gob_put_int(out, -id));
    GOB_TRY(tt_gob_put_uint(out, (uint64_t)t->kind));
    GOB_TRY(tt_gob_put_uint(out, 1));
    if (t->kind == GOB_K_STRUCT) {
        static const char *const req[] = {"ServiceMethod", "Seq"};
        static const char *const resp[] = {"ServiceMethod", "Seq", "Error"};
        static const int64_t req_ids[] = {GOB_STRING, GOB_UINT};
        static const int64_t resp_ids[] = {GOB_STRING, GOB_UINT, GOB_STRING};
        switch (t->special) {
        case GOB_OT_REQUEST:
            GOB_TRY(put_common(out, "Request", id));
            GOB_TRY(tt_gob_put_uint(out, 1));
            GOB_TRY(tt_gob_put_uint(out, 2));
            for (int i = 0; i < 2; i++) {
                GOB_TRY(put_field_def(out, req[i], req_ids[i]));
            }
            break;
        case GOB_OT_RESPONSE:
            GOB_TRY(put_common(out, "Response", id));
            GOB_TRY(tt_gob_put_uint(out, 1));
            GOB_TRY(tt_gob_put_uint(out, 3));
            for (int i = 0; i < 3; i++) {
                GOB_TRY(put_field_def(out, resp[i], resp_ids[i]));
            }
            break;
        case GOB_OT_EMPTY:
            GOB_TRY(put_common(out, "", id));
            break;
        default: {
            const ProtobufCMessageDescriptor *d = t->desc;
            GOB_TRY(put_common(out, d->short_name, id));
            if (d->n_fields > 0) {
                GOB_TRY(tt_gob_put_uint(out, 1));
                GOB_TRY(tt_gob_put_uint(out, d->n_fields));
                for (unsigned i = 0; i < d->n_fields; i++) {
                    int64_t fid;
                    GOB_TRY(field_type(s, d, &d->fields[i], &fid));
                    GOB_TRY(put_field_def(out, d->fields[i].name, fid));
                }
            }
            break;
        }
        }
    } else {
        char name[256];
        char kname[96];
        char ename[96];
        const ProtobufCFieldDescriptor *f = t->field;
        if (t->kind == GOB_K_MAP) {
            const ProtobufCMessageDescriptor *ed = f->descriptor;
            go_name(s, t->key, &ed->fields[0], kname, sizeof(kname));
            go_name(s, t->elem, &ed->fields[1], ename, sizeof(ename));
            snprintf(name, sizeof(name), "map[%s]%s", kname, ename);
        } else {
            go_name(s, t->elem, f, ename, sizeof(ename));
            snprintf(name, sizeof(name), "[]%s", ename);
        }
        GOB_TRY(put_common(out, name, id));
        if (t->kind == GOB_K_MAP) {
            GOB_TRY(tt_gob_put_uint(out, 1));
            GOB_TRY(tt_gob_put_int(out, t->key));
        }
        GOB_TRY(tt_gob_put_uint(out, 1));
        GOB_TRY(tt_gob_put_int(out, t->elem));
    }
    GOB_TRY(tt_gob_put_uint(out, 0)); /* end of structType / sliceType / mapType */
    GOB_TRY(tt_gob_put_uint(out, 0)); /* end of wireType */
    return tt_gob_msg_end(out, mark);
}

/* Send the definition of id if this stream has not had it, then those of
 * the types it uses: Go's Encoder.sendType order. */
tether_err
tt_gob_send_types(gob_state *s, tt_buf *out, int64_t id, unsigned depth)
{
    tether_err err;
    if (id < GOB_FIRST_OUT_ID) {
        return TETHER_OK;
    }
    gob_otype *t = otype(s, id);
    if (t->sent) {
        return TETHER_OK;
    }
    if (depth > TT_GOB_MAX_DEPTH) {
        return TETHER_ELIMIT;
    }
    GOB_TRY(put_definition(s, out, id));
    t = otype(s, id);
    t->sent = true;
    t->sent_call = s->call;
    if (t->kind == GOB_K_STRUCT && t->special == GOB_OT_MSG) {
        const ProtobufCMessageDescriptor *d = t->desc;
        for (unsigned i = 0; i < d->n_fields; i++) {
            int64_t fid;
            GOB_TRY(field_type(s, d, &d->fields[i], &fid));
            GOB_TRY(tt_gob_send_types(s, out, fid, depth + 1));
        }
    } else if (t->kind == GOB_K_MAP) {
        int64_t key = t->key;
        int64_t elem = t->elem;
        GOB_TRY(tt_gob_send_types(s, out, key, depth + 1));
        GOB_TRY(tt_gob_send_types(s, out, elem, depth + 1));
    } else if (t->kind == GOB_K_SLICE) {
        GOB_TRY(tt_gob_send_types(s, out, t->elem, depth + 1));
    }
    return TETHER_OK;
}

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
        return tt_gob_put_uint(b, float_bits(*(const float *)p));
    case PROTOBUF_C_TYPE_DOUBLE:
        return tt_gob_put_uint(b, float_bits(*(const double *)p));
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
        GOB_TRY(tt_gob_put_int(out, scalar_id(wf)));
        GOB_TRY(tt_gob_put_uint(out, 0));
        GOB_TRY(enc_scalar(out, wf, tt_pb_field_ptr(msg, wf)));
        return tt_gob_msg_end(out, mark);
    }
    int64_t id;
    GOB_TRY(struct_type(s, msg->descriptor, &id));
    GOB_TRY(tt_gob_send_types(s, out, id, 0));
    GOB_TRY(tt_gob_msg_begin(out, &mark));
    GOB_TRY(tt_gob_put_int(out, id));
    GOB_TRY(enc_struct(out, msg, 0));
    return tt_gob_msg_end(out, mark);
}
