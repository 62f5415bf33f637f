/*
 * describe.c - method descriptions for callers that have no generated
 * code (the `tether call` tool): the built-in method _tether.Describe on
 * every server, message descriptors built at run time from its answer,
 * and tether_client_call_json() on top of both.
 *
 * _tether.Describe takes a method name as google.protobuf.StringValue and
 * answers a StringValue holding JSON (docs/call.md):
 *   {"method":"Calculator.Add","input":"Args","output":"google.protobuf.Int64Value",
 *    "types":[{"name":"Args","fields":[{"name":"A","id":1,"label":"none",
 *              "type":"int64"}, ...]}, ...]}
 * Raw methods answer {"method":...,"raw":true}.  A StringValue is a bare
 * string in jsonrpc and a gob singleton, so every codec can ask, and a Go
 * client could too.
 *
 * The caller's side rebuilds a ProtobufCMessageDescriptor per type, with
 * a C layout computed here (the same layout rules protoc-c follows), so
 * protobuf-c packs and unpacks the messages and the jsonrpc, gob and JSON
 * mappings work on them unchanged.
 */
#include <jansson.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson/pbjson.h"
#include "codec/pbjson/pbutil.h"
#include "core/alloc.h"
#include "rpc/client_int.h"
#include "rpc/server_int.h"

/* ---------------------------------------------------------------------- */
/* google.protobuf.StringValue, without linking the generated code        */

typedef struct tt_strval {
    ProtobufCMessage base;
    char *value;
} tt_strval;

static void
strval_init(ProtobufCMessage *m)
{
    memset(m, 0, sizeof(tt_strval));
    m->descriptor = &tt_string_value_descriptor;
    ((tt_strval *)m)->value = (char *)protobuf_c_empty_string;
}

static const ProtobufCFieldDescriptor strval_fields[1] = {
    {"value", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, offsetof(tt_strval, value), NULL,
     &protobuf_c_empty_string, 0, 0, NULL, NULL},
};
static const unsigned strval_by_name[1] = {0};
static const ProtobufCIntRange strval_ranges[2] = {{1, 0}, {0, 1}};

const ProtobufCMessageDescriptor tt_string_value_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "google.protobuf.StringValue",
    "StringValue",
    "Google__Protobuf__StringValue",
    "google.protobuf",
    sizeof(tt_strval),
    1,
    strval_fields,
    strval_by_name,
    1,
    strval_ranges,
    strval_init,
    NULL,
    NULL,
    NULL,
};

/* ---------------------------------------------------------------------- */
/* Server side: the built-in method                                       */

static const char *const type_names[] = {
    [PROTOBUF_C_TYPE_INT32] = "int32",       [PROTOBUF_C_TYPE_SINT32] = "sint32",
    [PROTOBUF_C_TYPE_SFIXED32] = "sfixed32", [PROTOBUF_C_TYPE_INT64] = "int64",
    [PROTOBUF_C_TYPE_SINT64] = "sint64",     [PROTOBUF_C_TYPE_SFIXED64] = "sfixed64",
    [PROTOBUF_C_TYPE_UINT32] = "uint32",     [PROTOBUF_C_TYPE_FIXED32] = "fixed32",
    [PROTOBUF_C_TYPE_UINT64] = "uint64",     [PROTOBUF_C_TYPE_FIXED64] = "fixed64",
    [PROTOBUF_C_TYPE_FLOAT] = "float",       [PROTOBUF_C_TYPE_DOUBLE] = "double",
    [PROTOBUF_C_TYPE_BOOL] = "bool",         [PROTOBUF_C_TYPE_ENUM] = "enum",
    [PROTOBUF_C_TYPE_STRING] = "string",     [PROTOBUF_C_TYPE_BYTES] = "bytes",
    [PROTOBUF_C_TYPE_MESSAGE] = "message",
};
#define NTYPES (sizeof type_names / sizeof type_names[0])

static const char *const label_names[] = {
    [PROTOBUF_C_LABEL_REQUIRED] = "required",
    [PROTOBUF_C_LABEL_OPTIONAL] = "optional",
    [PROTOBUF_C_LABEL_REPEATED] = "repeated",
    [PROTOBUF_C_LABEL_NONE] = "none",
};
#define NLABELS (sizeof label_names / sizeof label_names[0])

/* Append desc and every message type it reaches to types (once each). */
static int
describe_type(json_t *types, const ProtobufCMessageDescriptor *desc, int depth)
{
    if (depth > TT_PB_MAX_DEPTH) {
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(types, i, v)
    {
        if (strcmp(json_string_value(json_object_get(v, "name")), desc->name) == 0) {
            return 0;
        }
    }
    json_t *fields = json_array();
    json_t *t = json_pack("{s:s, s:s, s:o}", "name", desc->name, "short_name", desc->short_name,
                          "fields", fields);
    if (t == NULL || json_array_append_new(types, t) != 0) {
        return -1;
    }
    for (unsigned k = 0; k < desc->n_fields; k++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[k];
        json_t *jf =
            json_pack("{s:s, s:i, s:s, s:s}", "name", f->name, "id", (json_int_t)f->id, "label",
                      (unsigned)f->label < NLABELS ? label_names[f->label] : "none", "type",
                      (unsigned)f->type < NTYPES ? type_names[f->type] : "bytes");
        if (jf == NULL || json_array_append_new(fields, jf) != 0) {
            return -1;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_PACKED) {
            json_object_set_new(jf, "packed", json_true());
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            json_object_set_new(jf, "oneof", json_true());
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            const ProtobufCMessageDescriptor *sub = f->descriptor;
            json_object_set_new(jf, "ref", json_string(sub->name));
            if (describe_type(types, sub, depth + 1) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* The description of method m as JSON text (tt_malloc'd), or NULL. */
static char *
describe_method(const method_ent *m)
{
    json_t *root;
    if (m->md == NULL) {
        root = json_pack("{s:s, s:b}", "method", m->name, "raw", 1);
    } else {
        json_t *types = json_array();
        root = json_pack("{s:s, s:s, s:s, s:o}", "method", m->name, "input", m->md->input->name,
                         "output", m->md->output->name, "types", types);
        if (root != NULL && (describe_type(types, m->md->input, 0) != 0 ||
                             describe_type(types, m->md->output, 0) != 0)) {
            json_decref(root);
            root = NULL;
        }
    }
    if (root == NULL) {
        return NULL;
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (text == NULL) {
        return NULL;
    }
    char *out = tt_strdup(text);
    free(text); /* jansson's allocator */
    return out;
}

static void
do_describe(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    tether_server *srv = arg;
    const char *name = ((const tt_strval *)req)->value;
    /* The describer answers for the method asked about exactly as a call
     * of it would be answered: the same lookup, code and text. */
    char text[TT_DESCRIBE_MAX_NAME + 64];
    tether_err code;
    const method_ent *m = tt_server_lookup(srv, name, strlen(name), &code, text, sizeof text);
    if (m == NULL) {
        tether_call_fail_code(call, code, text);
        return;
    }
    tt_strval out;
    strval_init(&out.base);
    out.value = describe_method(m);
    if (out.value == NULL) {
        tether_call_fail(call, "rpc: out of memory describing the method");
        return;
    }
    tether_call_reply(call, &out.base);
    tt_free(out.value);
}

static const ProtobufCMethodDescriptor describe_methods[1] = {
    {"Describe", &tt_string_value_descriptor, &tt_string_value_descriptor},
};
static const unsigned describe_by_name[1] = {0};
static const ProtobufCServiceDescriptor describe_service = {
    PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC,
    TT_DESCRIBE_SERVICE,
    TT_DESCRIBE_SERVICE,
    "_tether",
    "",
    1,
    describe_methods,
    describe_by_name,
};

tether_err
tt_server_add_builtins(tether_server *srv)
{
    for (size_t i = 0; i < srv->nservices; i++) {
        if (strcmp(srv->services[i], TT_DESCRIBE_SERVICE) == 0) {
            return TETHER_OK; /* a start that failed earlier added it */
        }
    }
    const tether_method m = {"Describe", do_describe, 0};
    return tether_server_add_service(srv, &describe_service, &m, 1, srv);
}

/* ---------------------------------------------------------------------- */
/* Caller side: descriptors from a description                            */

typedef struct dyn_type {
    ProtobufCMessageDescriptor d;
    ProtobufCFieldDescriptor *fields;
    unsigned *by_name;
    ProtobufCIntRange *ranges;
    char *name, *short_name;
    json_t *jfields; /* borrowed from the description while building */
} dyn_type;

typedef struct tt_dyn {
    dyn_type *types;
    size_t n;
    json_t *root; /* owns every field name string */
} tt_dyn;

static void
dyn_free(tt_dyn *dy)
{
    if (dy == NULL) {
        return;
    }
    for (size_t i = 0; i < dy->n; i++) {
        tt_free(dy->types[i].fields);
        tt_free(dy->types[i].by_name);
        tt_free(dy->types[i].ranges);
    }
    tt_free(dy->types);
    if (dy->root != NULL) {
        json_decref(dy->root);
    }
    tt_free(dy);
}

static int
parse_type(const char *s, ProtobufCType *t)
{
    for (unsigned i = 0; i < NTYPES; i++) {
        if (type_names[i] != NULL && strcmp(type_names[i], s) == 0) {
            *t = (ProtobufCType)i;
            return 0;
        }
    }
    return -1;
}

static int
parse_label(const char *s, ProtobufCLabel *l)
{
    for (unsigned i = 0; i < NLABELS; i++) {
        if (label_names[i] != NULL && strcmp(label_names[i], s) == 0) {
            *l = (ProtobufCLabel)i;
            return 0;
        }
    }
    return -1;
}

static size_t
align_up(size_t off, size_t a)
{
    return (off + a - 1) / a * a;
}

static const dyn_type *
dyn_find(const tt_dyn *dy, const char *name)
{
    for (size_t i = 0; i < dy->n; i++) {
        if (strcmp(dy->types[i].d.name, name) == 0) {
            return &dy->types[i];
        }
    }
    return NULL;
}

static int
by_id(const void *a, const void *b)
{
    const ProtobufCFieldDescriptor *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Lay out and describe one message type; refs resolved later. */
static int
build_one(dyn_type *t)
{
    size_t n = json_array_size(t->jfields);
    if (n > 4096) {
        return -1;
    }
    t->fields = tt_calloc(n + 1, sizeof *t->fields);
    t->by_name = tt_calloc(n + 1, sizeof *t->by_name);
    t->ranges = tt_calloc(n + 1, sizeof *t->ranges);
    if (t->fields == NULL || t->by_name == NULL || t->ranges == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *jf = json_array_get(t->jfields, i);
        ProtobufCFieldDescriptor *f = &t->fields[i];
        const char *name = json_string_value(json_object_get(jf, "name"));
        json_int_t id = json_integer_value(json_object_get(jf, "id"));
        const char *type = json_string_value(json_object_get(jf, "type"));
        const char *label = json_string_value(json_object_get(jf, "label"));
        if (name == NULL || type == NULL || label == NULL || id < 1 || id > 536870911 ||
            parse_type(type, &f->type) != 0 || parse_label(label, &f->label) != 0) {
            return -1;
        }
        f->name = name;
        f->id = (uint32_t)id;
        if (json_is_true(json_object_get(jf, "packed"))) {
            f->flags |= PROTOBUF_C_FIELD_FLAG_PACKED;
        }
        if (json_is_true(json_object_get(jf, "oneof"))) {
            /* Members of a oneof become optional fields of their own: the
             * same wire form, without the shared case slot. */
            f->label = PROTOBUF_C_LABEL_OPTIONAL;
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            /* Resolved once every type exists; the name is kept meanwhile. */
            f->descriptor = json_string_value(json_object_get(jf, "ref"));
            if (f->descriptor == NULL) {
                return -1;
            }
        }
        if (f->type == PROTOBUF_C_TYPE_STRING && f->label != PROTOBUF_C_LABEL_REPEATED) {
            f->default_value = &protobuf_c_empty_string;
        }
    }
    qsort(t->fields, n, sizeof *t->fields, by_id);
    /* The C layout: ProtobufCMessage, then per field its quantifier (n_
     * count or has_ flag) and its value, each naturally aligned. */
    size_t off = sizeof(ProtobufCMessage);
    unsigned nranges = 0;
    for (size_t i = 0; i < n; i++) {
        ProtobufCFieldDescriptor *f = &t->fields[i];
        if (i > 0 && f->id == t->fields[i - 1].id) {
            return -1;
        }
        size_t es = tt_pb_elem_size(f);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            off = align_up(off, alignof(size_t));
            f->quantifier_offset = (unsigned)off;
            off += sizeof(size_t);
            off = align_up(off, alignof(void *));
            f->offset = (unsigned)off;
            off += sizeof(void *);
        } else {
            if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
                f->type != PROTOBUF_C_TYPE_MESSAGE) {
                off = align_up(off, alignof(protobuf_c_boolean));
                f->quantifier_offset = (unsigned)off;
                off += sizeof(protobuf_c_boolean);
            }
            off = align_up(off, es >= 8 ? 8 : es);
            f->offset = (unsigned)off;
            off += es;
        }
        if (i == 0 || f->id != t->fields[i - 1].id + 1) {
            t->ranges[nranges].start_value = (int)f->id;
            t->ranges[nranges].orig_index = (unsigned)i;
            nranges++;
        }
    }
    t->ranges[nranges].start_value = 0;
    t->ranges[nranges].orig_index = (unsigned)n;
    for (size_t i = 0; i < n; i++) {
        t->by_name[i] = (unsigned)i;
    }
    /* Insertion sort by name: few fields, and qsort has no context. */
    for (size_t i = 1; i < n; i++) {
        unsigned v = t->by_name[i];
        size_t j = i;
        while (j > 0 && strcmp(t->fields[t->by_name[j - 1]].name, t->fields[v].name) > 0) {
            t->by_name[j] = t->by_name[j - 1];
            j--;
        }
        t->by_name[j] = v;
    }
    t->d.magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC;
    t->d.sizeof_message = align_up(off, alignof(max_align_t));
    t->d.n_fields = (unsigned)n;
    t->d.fields = t->fields;
    t->d.fields_sorted_by_name = t->by_name;
    t->d.n_field_ranges = nranges;
    t->d.field_ranges = t->ranges;
    t->d.message_init = NULL; /* protobuf-c and tt_pb_new() init generically */
    return 0;
}

/* Build every type of a description; NULL if it is malformed. */
static tt_dyn *
dyn_build(json_t *root)
{
    json_t *types = json_object_get(root, "types");
    size_t n = json_array_size(types);
    if (!json_is_array(types) || n == 0 || n > 4096) {
        return NULL;
    }
    tt_dyn *dy = tt_calloc(1, sizeof *dy);
    if (dy == NULL) {
        return NULL;
    }
    dy->root = json_incref(root);
    dy->types = tt_calloc(n, sizeof *dy->types);
    if (dy->types == NULL) {
        goto fail;
    }
    dy->n = n;
    for (size_t i = 0; i < n; i++) {
        json_t *jt = json_array_get(types, i);
        dyn_type *t = &dy->types[i];
        const char *name = json_string_value(json_object_get(jt, "name"));
        const char *sn = json_string_value(json_object_get(jt, "short_name"));
        t->jfields = json_object_get(jt, "fields");
        if (name == NULL || !json_is_array(t->jfields)) {
            goto fail;
        }
        t->d.name = name;
        t->d.short_name = sn != NULL ? sn : name;
        t->d.c_name = t->d.short_name;
        t->d.package_name = "";
        if (build_one(t) != 0) {
            goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        dyn_type *t = &dy->types[i];
        for (unsigned k = 0; k < t->d.n_fields; k++) {
            ProtobufCFieldDescriptor *f = &t->fields[k];
            if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                const dyn_type *ref = dyn_find(dy, f->descriptor);
                if (ref == NULL) {
                    goto fail;
                }
                f->descriptor = &ref->d;
            }
        }
    }
    return dy;

fail:
    dyn_free(dy);
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* tether_client_call_json and tether_json_request                        */

/* A request converted from JSON: what both the one-off call and the
 * prepared request (`tether bench`) send, so both take one path. */
struct tether_json_request {
    tether_codec codec;
    char *method;
    tt_dyn *dy;                                   /* typed methods: the descriptors */
    ProtobufCMessage *msg;                        /* typed methods: the request */
    const ProtobufCMessageDescriptor *reply_desc; /* typed methods: the reply type */
    uint8_t *data; /* native: msg packed; raw methods and jsonrpc: the JSON text */
    size_t len;
};

/*
 * json_prepare - convert json_in for method on c into *p: jsonrpc keeps
 * the text (it is the wire form); native and gob ask the server's
 * _tether.Describe for the message types and build the request.  On
 * error *errtext (if not NULL) may say why.
 */
static tether_err
json_prepare(tether_client *c, const char *method, const char *json_in,
             const tether_call_opts *opts, struct tether_json_request *p, char **errtext)
{
    memset(p, 0, sizeof *p);
    p->codec = tt_client_codec_kind(c);
    p->method = tt_strdup(method);
    if (p->method == NULL) {
        return TETHER_ENOMEM;
    }
    if (p->codec != TETHER_CODEC_JSONRPC) {
        /* Ask the server what the method's messages look like. */
        tt_strval q;
        strval_init(&q.base);
        q.value = (char *)method;
        ProtobufCMessage *ans = NULL;
        char *etext = NULL;
        tether_err rc = tether_client_call(
            c, TT_DESCRIBE_SERVICE ".Describe", &q.base, &tt_string_value_descriptor, &ans,
            TETHER_CALL_TIMEOUT(opts != NULL ? opts->timeout_ms : 0), &etext);
        if (rc != TETHER_OK) {
            if ((rc == TETHER_ENOSERVICE || rc == TETHER_ENOMETHOD) && etext != NULL &&
                strstr(etext, TT_DESCRIBE_SERVICE) != NULL) {
                tt_free(etext);
                etext = tt_strdup("the server does not describe its methods (not a tether "
                                  "server?): use the jsonrpc codec");
                rc = TETHER_ENOTSUP;
            }
            if (errtext != NULL) {
                *errtext = etext;
            } else {
                tt_free(etext);
            }
            return rc;
        }
        json_error_t jerr;
        json_t *root = json_loads(((tt_strval *)ans)->value, 0, &jerr);
        protobuf_c_message_free_unpacked(ans, &tt_pb_allocator);
        if (root == NULL) {
            return TETHER_EBADREPLY;
        }
        if (!json_is_true(json_object_get(root, "raw"))) {
            p->dy = dyn_build(root);
            const char *in_name = json_string_value(json_object_get(root, "input"));
            const char *out_name = json_string_value(json_object_get(root, "output"));
            const dyn_type *tin =
                p->dy != NULL && in_name != NULL ? dyn_find(p->dy, in_name) : NULL;
            const dyn_type *tout =
                p->dy != NULL && out_name != NULL ? dyn_find(p->dy, out_name) : NULL;
            json_decref(root);
            if (tin == NULL || tout == NULL) {
                return TETHER_EBADREPLY;
            }
            char why[TT_PBJSON_ERRLEN];
            rc = tt_pbjson_decode(&tin->d, json_in, strlen(json_in), &p->msg, why, sizeof why);
            if (rc != TETHER_OK) {
                if (errtext != NULL) {
                    *errtext = tt_strdup(why);
                }
                return rc == TETHER_EBADREQUEST ? TETHER_EINVAL : rc;
            }
            p->reply_desc = &tout->d;
            if (p->codec == TETHER_CODEC_NATIVE) {
                p->len = protobuf_c_message_get_packed_size(p->msg);
                p->data = tt_malloc(p->len > 0 ? p->len : 1);
                if (p->data == NULL) {
                    return TETHER_ENOMEM;
                }
                protobuf_c_message_pack(p->msg, p->data);
            }
            return TETHER_OK;
        }
        /* A raw method: the text goes as bytes, the reply comes back as is. */
        json_decref(root);
    }
    p->len = strlen(json_in);
    p->data = (uint8_t *)tt_strndup(json_in, p->len);
    return p->data != NULL ? TETHER_OK : TETHER_ENOMEM;
}

static void
json_request_clear(struct tether_json_request *p)
{
    if (p->msg != NULL) {
        protobuf_c_message_free_unpacked(p->msg, &tt_pb_allocator);
    }
    dyn_free(p->dy);
    tt_free(p->data);
    tt_free(p->method);
    memset(p, 0, sizeof *p);
}

tether_err
tether_client_call_json(tether_client *c, const char *method, const char *json_in, char **json_out,
                        const tether_call_opts *opts, char **errtext)
{
    if (errtext != NULL) {
        *errtext = NULL;
    }
    if (c == NULL || method == NULL || json_out == NULL) {
        return TETHER_EINVAL;
    }
    *json_out = NULL;
    if (json_in == NULL || json_in[0] == '\0') {
        json_in = "{}";
    }
    if (tt_client_codec_kind(c) == TETHER_CODEC_JSONRPC) {
        /* JSON in, JSON out: nothing to describe. */
        return tt_client_call_json_text(c, method, json_in, json_out, opts, errtext);
    }
    struct tether_json_request p;
    tether_err rc = json_prepare(c, method, json_in, opts, &p, errtext);
    if (rc != TETHER_OK) {
        json_request_clear(&p);
        return rc;
    }
    if (p.msg == NULL) {
        /* A raw method: the text goes as bytes, the reply comes back as is. */
        uint8_t *out = NULL;
        size_t out_len = 0;
        rc = tether_client_call_raw(c, method, p.data, p.len, &out, &out_len, opts, errtext);
        if (rc == TETHER_OK) {
            *json_out = tt_strndup((const char *)out, out_len);
            tether_free(out);
            rc = *json_out != NULL ? TETHER_OK : TETHER_ENOMEM;
        }
        json_request_clear(&p);
        return rc;
    }
    ProtobufCMessage *reply = NULL;
    rc = tether_client_call(c, method, p.msg, p.reply_desc, &reply, opts, errtext);
    if (rc == TETHER_OK) {
        tt_buf out = {0};
        rc = tt_pbjson_encode(&out, reply);
        if (rc == TETHER_OK) {
            rc = tt_buf_append(&out, "", 1);
        }
        if (rc == TETHER_OK) {
            *json_out = (char *)out.data;
        } else {
            tt_buf_free(&out);
        }
        protobuf_c_message_free_unpacked(reply, &tt_pb_allocator);
    }
    json_request_clear(&p);
    return rc;
}

tether_err
tether_json_request_create(tether_client *c, const char *method, const char *json_in,
                           const tether_call_opts *opts, tether_json_request **out, char **errtext)
{
    if (errtext != NULL) {
        *errtext = NULL;
    }
    if (out != NULL) {
        *out = NULL;
    }
    if (c == NULL || method == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    if (json_in == NULL || json_in[0] == '\0') {
        json_in = "{}";
    }
    tether_json_request *p = tt_malloc(sizeof *p);
    if (p == NULL) {
        return TETHER_ENOMEM;
    }
    tether_err rc = json_prepare(c, method, json_in, opts, p, errtext);
    if (rc != TETHER_OK) {
        json_request_clear(p);
        tt_free(p);
        return rc;
    }
    *out = p;
    return TETHER_OK;
}

tether_err
tether_client_call_async_json(tether_client *c, const tether_json_request *rq,
                              const tether_call_opts *opts, tether_reply_fn fn, void *arg)
{
    if (c == NULL || rq == NULL || fn == NULL) {
        return TETHER_EINVAL;
    }
    tether_codec codec = tt_client_codec_kind(c);
    if (codec != rq->codec) {
        return TETHER_EINVAL;
    }
    if (codec == TETHER_CODEC_GOB && rq->msg != NULL) {
        /* gob describes its types per connection: the bytes are not fixed. */
        return tether_client_call_async(c, rq->method, rq->msg, rq->reply_desc, opts, fn, arg);
    }
    if (codec == TETHER_CODEC_GOB) {
        return TETHER_ENOTSUP; /* raw methods have no gob form */
    }
    /* native: the packed request (or a raw method's text); jsonrpc: the text. */
    return tt_client_call_async_bytes(c, rq->method, rq->data, rq->len, opts, fn, arg);
}

void
tether_json_request_free(tether_json_request *rq)
{
    if (rq != NULL) {
        json_request_clear(rq);
        tt_free(rq);
    }
}
