/*
 * gob_types.c - the type definitions we send: Go types for protobuf
 * messages and their fields, each sent once per connection before the
 * first value that uses it.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec/gob/gob_int.h"
#include "codec/pbjson/pbutil.h"
#include "core/alloc.h"

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


/* The type one value of f (ignoring repetition) travels as. */
static tether_err
elem_type(gob_state *s, const ProtobufCFieldDescriptor *f, int64_t *id)
{
    if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
        *id = tt_gob_scalar_id(f);
        return TETHER_OK;
    }
    const ProtobufCFieldDescriptor *wf = tt_pb_wrapper_field(f->descriptor);
    if (wf != NULL) {
        *id = tt_gob_scalar_id(wf);
        return TETHER_OK;
    }
    return tt_gob_struct_type(s, f->descriptor, id);
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
tether_err
tt_gob_struct_type(gob_state *s, const ProtobufCMessageDescriptor *desc, int64_t *id)
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

