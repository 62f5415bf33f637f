/*
 * describe_client.c - the caller's side of _tether.Describe: message
 * descriptors built at run time from a server's description, and
 * tether_client_call_json() and tether_client_describe() on top of them.
 *
 * A description comes from the peer, so it is untrusted: protobuf-c
 * trusts its descriptors completely (a "packed" string field aborts in
 * its packer, a bad offset writes anywhere), so every description is
 * checked in full before a descriptor is built from it (describe_int.h
 * lists the rules).  Recursive types are legal protobuf, and
 * protobuf-c's unpack recurses once per nesting level without a limit:
 * replies are unpacked here, after tt_pb_check_depth() bounded their
 * nesting, rather than by the client's generic path.
 *
 * The C layout of each type is computed as protoc-c lays out structs, so
 * protobuf-c packs and unpacks the messages and the jsonrpc, gob and JSON
 * mappings work on them unchanged.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson/pbjson.h"
#include "codec/pbjson/pbutil.h"
#include "core/alloc.h"
#include "rpc/describe_int.h"

/* ---------------------------------------------------------------------- */
/* Checking names                                                         */

static int bad(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
bad(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int
ident_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int
ident_char(unsigned char c)
{
    return ident_start(c) || (c >= '0' && c <= '9');
}

/* A protobuf identifier (dots: a full name, "pkg.Type"). */
static int
is_name(const char *s, int dotted)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > TT_DESCRIBE_MAX_IDENT) {
        return 0;
    }
    int at_start = 1;
    for (const char *p = s; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '.' && dotted && !at_start) {
            at_start = 1;
            continue;
        }
        if (at_start ? !ident_start(c) : !ident_char(c)) {
            return 0;
        }
        at_start = 0;
    }
    return !at_start;
}

/* A service or method name as a server may spell it (raw methods take
 * any name): printable, bounded. */
static int
is_wire_name(const char *s)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > TT_DESCRIBE_MAX_NAME) {
        return 0;
    }
    for (const char *p = s; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < ' ' || c == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* An optional boolean member: 0 absent or false, 1 true, -1 not a bool. */
static int
get_flag(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        return 0;
    }
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

/* ---------------------------------------------------------------------- */
/* Descriptors from a description                                         */

typedef struct dyn_type {
    ProtobufCMessageDescriptor d;
    ProtobufCFieldDescriptor *fields;
    unsigned *by_name;
    ProtobufCIntRange *ranges;
    json_t *jfields; /* borrowed from the description while building */
} dyn_type;

struct tt_dyn {
    dyn_type *types;
    size_t n;
    json_t *root; /* owns every name string */
    int raw;
    const dyn_type *in, *out;
};

void
tt_dyn_free(tt_dyn *dy)
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
    json_decref(dy->root);
    tt_free(dy);
}

int
tt_dyn_is_raw(const tt_dyn *dy)
{
    return dy->raw;
}

const ProtobufCMessageDescriptor *
tt_dyn_input(const tt_dyn *dy)
{
    return dy->in != NULL ? &dy->in->d : NULL;
}

const ProtobufCMessageDescriptor *
tt_dyn_output(const tt_dyn *dy)
{
    return dy->out != NULL ? &dy->out->d : NULL;
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

const ProtobufCMessageDescriptor *
tt_dyn_find(const tt_dyn *dy, const char *name)
{
    const dyn_type *t = dyn_find(dy, name);
    return t != NULL ? &t->d : NULL;
}

static int
parse_type(const char *s, ProtobufCType *t)
{
    for (unsigned i = 0; i <= PROTOBUF_C_TYPE_MESSAGE; i++) {
        const char *n = tt_describe_type_name(i);
        if (n != NULL && strcmp(n, s) == 0) {
            *t = (ProtobufCType)i;
            return 0;
        }
    }
    return -1;
}

static int
parse_label(const char *s, ProtobufCLabel *l)
{
    for (unsigned i = 0; i <= PROTOBUF_C_LABEL_NONE; i++) {
        const char *n = tt_describe_label_name(i);
        if (n != NULL && strcmp(n, s) == 0) {
            *l = (ProtobufCLabel)i;
            return 0;
        }
    }
    return -1;
}

/* Wire types protobuf packs: the varint and fixed-size scalars. */
static int
packable(ProtobufCType t)
{
    return t != PROTOBUF_C_TYPE_STRING && t != PROTOBUF_C_TYPE_BYTES &&
           t != PROTOBUF_C_TYPE_MESSAGE;
}

/* Map keys: any integral type, bool or string (protobuf's rule). */
static int
map_key_ok(ProtobufCType t)
{
    return t != PROTOBUF_C_TYPE_FLOAT && t != PROTOBUF_C_TYPE_DOUBLE &&
           t != PROTOBUF_C_TYPE_BYTES && t != PROTOBUF_C_TYPE_ENUM && t != PROTOBUF_C_TYPE_MESSAGE;
}

static size_t
align_up(size_t off, size_t a)
{
    return (off + a - 1) / a * a;
}

static int
by_id(const void *a, const void *b)
{
    const ProtobufCFieldDescriptor *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Check one field of the description into f (its message reference, if
 * any, left as the name: resolved once every type exists). */
static int
build_field(const dyn_type *t, const json_t *jf, ProtobufCFieldDescriptor *f, char *err,
            size_t errlen)
{
    const char *tn = t->d.name;
    if (!json_is_object(jf)) {
        return bad(err, errlen, "type %s: a field is not an object", tn);
    }
    const char *name = json_string_value(json_object_get(jf, "name"));
    if (!is_name(name, 0)) {
        return bad(err, errlen, "type %s: a field name is missing or not an identifier", tn);
    }
    const json_t *jid = json_object_get(jf, "id");
    json_int_t id = json_integer_value(jid);
    if (!json_is_integer(jid) || id < 1 || id > 536870911) {
        return bad(err, errlen, "field %s.%s: its number is not an integer in 1..536870911", tn,
                   name);
    }
    const char *type = json_string_value(json_object_get(jf, "type"));
    const char *label = json_string_value(json_object_get(jf, "label"));
    if (type == NULL || parse_type(type, &f->type) != 0) {
        return bad(err, errlen, "field %s.%s: unknown type", tn, name);
    }
    if (label == NULL || parse_label(label, &f->label) != 0) {
        return bad(err, errlen, "field %s.%s: unknown label", tn, name);
    }
    f->name = name;
    f->id = (uint32_t)id;
    int packed = get_flag(jf, "packed");
    int oneof = get_flag(jf, "oneof");
    if (packed < 0 || oneof < 0) {
        return bad(err, errlen, "field %s.%s: \"packed\" and \"oneof\" must be booleans", tn, name);
    }
    if (packed) {
        if (f->label != PROTOBUF_C_LABEL_REPEATED || !packable(f->type)) {
            return bad(err, errlen,
                       "field %s.%s: only repeated scalar fields can be packed (not %s %s)", tn,
                       name, label, type);
        }
        f->flags |= PROTOBUF_C_FIELD_FLAG_PACKED;
    }
    if (oneof) {
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            return bad(err, errlen, "field %s.%s: a oneof member cannot be repeated", tn, name);
        }
        /* Members of a oneof become optional fields of their own: the
         * same wire form, without the shared case slot. */
        f->label = PROTOBUF_C_LABEL_OPTIONAL;
    }
    const json_t *jref = json_object_get(jf, "ref");
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        const char *ref = json_string_value(jref);
        if (!is_name(ref, 1)) {
            return bad(err, errlen, "field %s.%s: a message field needs a \"ref\" type name", tn,
                       name);
        }
        f->descriptor = ref;
    } else if (jref != NULL) {
        return bad(err, errlen, "field %s.%s: \"ref\" on a %s field", tn, name, type);
    }
    if (f->type == PROTOBUF_C_TYPE_STRING && f->label != PROTOBUF_C_LABEL_REPEATED) {
        f->default_value = &protobuf_c_empty_string;
    }
    return 0;
}

/* Check, lay out and describe one message type. */
static int
build_type(dyn_type *t, char *err, size_t errlen)
{
    size_t n = json_array_size(t->jfields);
    t->fields = tt_calloc(n + 1, sizeof *t->fields);
    t->by_name = tt_calloc(n + 1, sizeof *t->by_name);
    t->ranges = tt_calloc(n + 1, sizeof *t->ranges);
    if (t->fields == NULL || t->by_name == NULL || t->ranges == NULL) {
        return bad(err, errlen, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if (build_field(t, json_array_get(t->jfields, i), &t->fields[i], err, errlen) != 0) {
            return -1;
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
            return bad(err, errlen, "type %s: two fields have the number %u", t->d.name,
                       (unsigned)f->id);
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
    /* Insertion sort by name (bounded field count; qsort has no context),
     * then equal neighbours are duplicates. */
    for (size_t i = 1; i < n; i++) {
        unsigned v = t->by_name[i];
        size_t j = i;
        while (j > 0 && strcmp(t->fields[t->by_name[j - 1]].name, t->fields[v].name) > 0) {
            t->by_name[j] = t->by_name[j - 1];
            j--;
        }
        t->by_name[j] = v;
    }
    for (size_t i = 1; i < n; i++) {
        const char *a = t->fields[t->by_name[i - 1]].name;
        if (strcmp(a, t->fields[t->by_name[i]].name) == 0) {
            return bad(err, errlen, "type %s: two fields are named %s", t->d.name, a);
        }
    }
    t->d.magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC;
    t->d.sizeof_message = align_up(off, alignof(max_align_t));
    t->d.n_fields = (unsigned)n;
    /* No fields: no field array.  protobuf-c's unpack starts from
     * fields[0] as "the last field seen" without looking at n_fields, so
     * a zeroed placeholder there (number 0) matched a tag of field number
     * 0 on the wire, and the varint was stored at offset 0: over the
     * message's descriptor pointer (found by fuzz_describe). */
    t->d.fields = n > 0 ? t->fields : NULL;
    t->d.fields_sorted_by_name = t->by_name;
    t->d.n_field_ranges = nranges;
    t->d.field_ranges = t->ranges;
    t->d.message_init = NULL; /* protobuf-c and tt_pb_new() init generically */
    return 0;
}

/* Resolve t's message references, and check its map fields' entries. */
static int
link_type(const tt_dyn *dy, dyn_type *t, char *err, size_t errlen)
{
    for (unsigned k = 0; k < t->d.n_fields; k++) {
        ProtobufCFieldDescriptor *f = &t->fields[k];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
            continue;
        }
        const dyn_type *ref = dyn_find(dy, f->descriptor);
        if (ref == NULL) {
            return bad(err, errlen, "field %s.%s: its type %s is not in the description", t->d.name,
                       f->name, (const char *)f->descriptor);
        }
        f->descriptor = &ref->d;
    }
    return 0;
}

static int
check_maps(dyn_type *t, char *err, size_t errlen)
{
    for (unsigned k = 0; k < t->d.n_fields; k++) {
        const ProtobufCFieldDescriptor *f = &t->fields[k];
        if (tt_pb_is_map(&t->d, f)) {
            const ProtobufCMessageDescriptor *e = f->descriptor;
            if (!map_key_ok(e->fields[0].type)) {
                return bad(err, errlen, "map field %s.%s: a %s cannot be a map key", t->d.name,
                           f->name, tt_describe_type_name(e->fields[0].type));
            }
        }
    }
    return 0;
}

static int
parse_types(tt_dyn *dy, const json_t *types, char *err, size_t errlen)
{
    size_t n = json_array_size(types);
    if (!json_is_array(types) || n == 0) {
        return bad(err, errlen, "no \"types\" list");
    }
    if (n > TT_DESCRIBE_MAX_TYPES) {
        return bad(err, errlen, "more than %d types", TT_DESCRIBE_MAX_TYPES);
    }
    dy->types = tt_calloc(n, sizeof *dy->types);
    if (dy->types == NULL) {
        return bad(err, errlen, "out of memory");
    }
    dy->n = n;
    size_t all = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *jt = json_array_get(types, i);
        dyn_type *t = &dy->types[i];
        const char *name = json_string_value(json_object_get(jt, "name"));
        const json_t *jsn = json_object_get(jt, "short_name");
        const char *sn = json_string_value(jsn);
        if (!json_is_object(jt) || !is_name(name, 1)) {
            return bad(err, errlen, "a type has no name, or it is not a protobuf name");
        }
        if ((jsn != NULL && !is_name(sn, 0))) {
            return bad(err, errlen, "type %s: its short_name is not an identifier", name);
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(dy->types[k].d.name, name) == 0) {
                return bad(err, errlen, "type %s is listed twice", name);
            }
        }
        t->jfields = json_object_get(jt, "fields");
        if (!json_is_array(t->jfields)) {
            return bad(err, errlen, "type %s: no \"fields\" list", name);
        }
        size_t nf = json_array_size(t->jfields);
        all += nf;
        if (nf > TT_DESCRIBE_MAX_FIELDS || all > TT_DESCRIBE_MAX_ALL_FIELDS) {
            return bad(err, errlen, "type %s: more than %d fields in a type or %d in all", name,
                       TT_DESCRIBE_MAX_FIELDS, TT_DESCRIBE_MAX_ALL_FIELDS);
        }
        t->d.name = name;
        t->d.short_name = sn != NULL ? sn : name;
        t->d.c_name = t->d.short_name;
        t->d.package_name = "";
    }
    for (size_t i = 0; i < n; i++) {
        if (build_type(&dy->types[i], err, errlen) != 0) {
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (link_type(dy, &dy->types[i], err, errlen) != 0) {
            return -1;
        }
    }
    /* Map entries are recognised through their resolved types. */
    for (size_t i = 0; i < n; i++) {
        if (check_maps(&dy->types[i], err, errlen) != 0) {
            return -1;
        }
    }
    return 0;
}

/* The description's root object, or NULL with a reason. */
static json_t *
load_root(const char *text, size_t len, char *err, size_t errlen)
{
    if (len > TT_DESCRIBE_MAX_TEXT) {
        bad(err, errlen, "larger than %u bytes", TT_DESCRIBE_MAX_TEXT);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        bad(err, errlen, "not JSON (%s)", jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        bad(err, errlen, "not a JSON object");
        return NULL;
    }
    return root;
}

tt_dyn *
tt_dyn_parse(const char *text, size_t len, char *err, size_t errlen)
{
    json_t *root = load_root(text, len, err, errlen);
    if (root == NULL) {
        return NULL;
    }
    tt_dyn *dy = tt_calloc(1, sizeof *dy);
    if (dy == NULL) {
        json_decref(root);
        bad(err, errlen, "out of memory");
        return NULL;
    }
    dy->root = root;
    int raw = get_flag(root, "raw");
    if (raw < 0) {
        bad(err, errlen, "\"raw\" is not a boolean");
        goto fail;
    }
    if (raw) {
        dy->raw = 1;
        return dy;
    }
    if (parse_types(dy, json_object_get(root, "types"), err, errlen) != 0) {
        goto fail;
    }
    const char *in = json_string_value(json_object_get(root, "input"));
    const char *out = json_string_value(json_object_get(root, "output"));
    dy->in = in != NULL ? dyn_find(dy, in) : NULL;
    dy->out = out != NULL ? dyn_find(dy, out) : NULL;
    if (dy->in == NULL || dy->out == NULL) {
        bad(err, errlen, "the input or output type is missing from the description");
        goto fail;
    }
    return dy;

fail:
    tt_dyn_free(dy);
    return NULL;
}

int
tt_describe_check_list(const char *text, size_t len, char *err, size_t errlen)
{
    json_t *root = load_root(text, len, err, errlen);
    if (root == NULL) {
        return -1;
    }
    int rc = -1;
    const json_t *services = json_object_get(root, "services");
    if (!json_is_array(services)) {
        bad(err, errlen, "no \"services\" list");
        goto out;
    }
    size_t total = 0;
    size_t i;
    const json_t *js;
    json_array_foreach(services, i, js)
    {
        const char *sname = json_string_value(json_object_get(js, "name"));
        const json_t *methods = json_object_get(js, "methods");
        if (!is_wire_name(sname) || !json_is_array(methods)) {
            bad(err, errlen, "a service has no printable name or no \"methods\" list");
            goto out;
        }
        total += 1 + json_array_size(methods);
        if (total > TT_DESCRIBE_MAX_ALL_FIELDS) {
            bad(err, errlen, "more than %d services and methods", TT_DESCRIBE_MAX_ALL_FIELDS);
            goto out;
        }
        size_t k;
        const json_t *jm;
        json_array_foreach(methods, k, jm)
        {
            const char *mname = json_string_value(json_object_get(jm, "name"));
            int raw = get_flag(jm, "raw");
            if (!is_wire_name(mname) || raw < 0) {
                bad(err, errlen, "service %s: a method has no printable name", sname);
                goto out;
            }
            if (!raw && (!is_name(json_string_value(json_object_get(jm, "input")), 1) ||
                         !is_name(json_string_value(json_object_get(jm, "output")), 1))) {
                bad(err, errlen, "method %s.%s: no valid input and output type names", sname,
                    mname);
                goto out;
            }
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Asking the server                                                      */

static void
set_errtext(char **errtext, char *text)
{
    if (errtext != NULL) {
        *errtext = text;
    } else {
        tt_free(text);
    }
}

static char *errtext_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
errtext_printf(const char *fmt, ...)
{
    char buf[TT_DESCRIBE_ERRLEN + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return tt_strdup(buf);
}

/* _tether.Describe(name): its answer text (tt_malloc'd) in *text. */
static tether_err
ask(tether_client *c, const char *name, char **text, const tether_call_opts *opts, char **errtext)
{
    tt_strval q;
    tt_strval_init(&q);
    q.value = (char *)name;
    ProtobufCMessage *ans = NULL;
    char *etext = NULL;
    *text = NULL;
    tether_err rc =
        tether_client_call(c, TT_DESCRIBE_SERVICE ".Describe", &q.base, &tt_string_value_descriptor,
                           &ans, TETHER_CALL_TIMEOUT(opts != NULL ? opts->timeout_ms : 0), &etext);
    if (rc != TETHER_OK) {
        if ((rc == TETHER_ENOSERVICE || rc == TETHER_ENOMETHOD) && etext != NULL &&
            strstr(etext, TT_DESCRIBE_SERVICE) != NULL) {
            tt_free(etext);
            etext = tt_strdup("the server does not describe its methods (not a tether server?): "
                              "use the jsonrpc codec");
            rc = TETHER_ENOTSUP;
        } else if (name[0] == '\0' && rc == TETHER_ENOMETHOD) {
            tt_free(etext);
            etext = tt_strdup("the server does not list its services (an older tether?): name "
                              "a Service.Method");
            rc = TETHER_ENOTSUP;
        }
        set_errtext(errtext, etext);
        return rc;
    }
    *text = tt_strdup(((tt_strval *)ans)->value);
    protobuf_c_message_free_unpacked(ans, &tt_pb_allocator);
    return *text != NULL ? TETHER_OK : TETHER_ENOMEM;
}

tether_err
tether_client_describe(tether_client *c, const char *name, char **json_out,
                       const tether_call_opts *opts, char **errtext)
{
    if (errtext != NULL) {
        *errtext = NULL;
    }
    if (c == NULL || json_out == NULL) {
        return TETHER_EINVAL;
    }
    *json_out = NULL;
    if (name == NULL) {
        name = "";
    }
    char *text = NULL;
    tether_err rc = ask(c, name, &text, opts, errtext);
    if (rc != TETHER_OK) {
        return rc;
    }
    char why[TT_DESCRIBE_ERRLEN];
    int ok;
    if (name[0] == '\0') {
        ok = tt_describe_check_list(text, strlen(text), why, sizeof why) == 0;
    } else {
        tt_dyn *dy = tt_dyn_parse(text, strlen(text), why, sizeof why);
        ok = dy != NULL;
        tt_dyn_free(dy);
    }
    if (!ok) {
        tt_free(text);
        set_errtext(errtext, errtext_printf("bad description from the server: %s", why));
        return TETHER_EBADREPLY;
    }
    *json_out = text;
    return TETHER_OK;
}

/* ---------------------------------------------------------------------- */
/* tether_client_call_json                                                */

/* A native call with descriptors from a description: packed here and
 * unpacked here, after the reply's nesting was checked (the types may be
 * recursive). */
static tether_err
call_native(tether_client *c, const char *method, const ProtobufCMessage *req,
            const ProtobufCMessageDescriptor *out_desc, ProtobufCMessage **reply,
            const tether_call_opts *opts, char **errtext)
{
    size_t n = protobuf_c_message_get_packed_size(req);
    uint8_t *body = tt_malloc(n + 1);
    if (body == NULL) {
        return TETHER_ENOMEM;
    }
    protobuf_c_message_pack(req, body);
    uint8_t *out = NULL;
    size_t out_len = 0;
    tether_err rc = tether_client_call_raw(c, method, body, n, &out, &out_len, opts, errtext);
    tt_free(body);
    if (rc != TETHER_OK) {
        return rc;
    }
    if (tt_pb_check_depth(out_desc, out, out_len, TT_PB_MAX_DEPTH) != TETHER_OK) {
        set_errtext(errtext, errtext_printf("the reply of %.*s nests deeper than %d messages",
                                            TT_DESCRIBE_ERRLEN, method, TT_PB_MAX_DEPTH));
        rc = TETHER_EBADREPLY;
    } else {
        *reply = protobuf_c_message_unpack(out_desc, &tt_pb_allocator, out_len, out);
        if (*reply == NULL) {
            set_errtext(errtext, errtext_printf("the reply of %.*s does not decode as %s",
                                                TT_DESCRIBE_ERRLEN, method, out_desc->name));
            rc = TETHER_EBADREPLY;
        }
    }
    tether_free(out);
    return rc;
}

/* The gob codec remembers per connection which descriptors it has sent
 * and matched, by address.  Descriptors freed after one call could come
 * back at the same address as different types in the next call on the
 * same client, so gob calls use descriptors that live as long as the
 * process: one set per distinct description text, kept here (bounded). */
#define GOB_KEEP_MAX 256

static struct {
    pthread_mutex_t mu;
    size_t n;
    struct kept {
        char *text;
        tt_dyn *dy;
    } e[GOB_KEEP_MAX];
} gob_keep = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* The kept set for text (taking over dy, or freeing it when an equal one
 * is kept already); NULL when the table is full. */
static tt_dyn *
keep_for_gob(const char *text, tt_dyn *dy)
{
    pthread_mutex_lock(&gob_keep.mu);
    tt_dyn *out = NULL;
    for (size_t i = 0; i < gob_keep.n && out == NULL; i++) {
        if (strcmp(gob_keep.e[i].text, text) == 0) {
            out = gob_keep.e[i].dy;
        }
    }
    if (out == NULL && gob_keep.n < GOB_KEEP_MAX) {
        char *copy = tt_strdup(text);
        if (copy != NULL) {
            gob_keep.e[gob_keep.n].text = copy;
            gob_keep.e[gob_keep.n].dy = dy;
            gob_keep.n++;
            out = dy;
            dy = NULL;
        }
    }
    pthread_mutex_unlock(&gob_keep.mu);
    tt_dyn_free(dy);
    return out;
}

/* A request converted from JSON: what both the one-off call and the
 * prepared request (`tether bench`) send, so both take one path. */
struct tether_json_request {
    tether_codec codec;
    char *method;
    tt_dyn *dy;   /* typed methods: the descriptors */
    int kept;     /* dy is kept for gob's connections: not freed here */
    ProtobufCMessage *msg;                        /* typed methods: the request */
    const ProtobufCMessageDescriptor *reply_desc; /* typed methods: the reply type */
    uint8_t *data; /* native: msg packed; raw methods and jsonrpc: the JSON text */
    size_t len;
};

static void
json_request_clear(struct tether_json_request *p)
{
    if (p->msg != NULL) {
        protobuf_c_message_free_unpacked(p->msg, &tt_pb_allocator);
    }
    if (!p->kept) {
        tt_dyn_free(p->dy);
    }
    tt_free(p->data);
    tt_free(p->method);
    memset(p, 0, sizeof *p);
}

/*
 * json_prepare - convert json_in for method on c into *p: jsonrpc keeps
 * the text (it is the wire form); native and gob ask the server's
 * _tether.Describe for the message types (checked in full) and build the
 * request; a raw method takes the text as its bytes.  On error *errtext
 * (if not NULL) may say why; *p is to be cleared either way.
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
        if (method[0] == '\0') {
            return TETHER_EINVAL; /* an empty name asks Describe for the listing */
        }
        char *text = NULL;
        tether_err rc = ask(c, method, &text, opts, errtext);
        if (rc != TETHER_OK) {
            return rc;
        }
        char why[TT_DESCRIBE_ERRLEN];
        p->dy = tt_dyn_parse(text, strlen(text), why, sizeof why);
        if (p->dy == NULL) {
            tt_free(text);
            set_errtext(errtext, errtext_printf("bad description from the server: %s", why));
            return TETHER_EBADREPLY;
        }
        if (p->codec == TETHER_CODEC_GOB && !tt_dyn_is_raw(p->dy)) {
            p->dy = keep_for_gob(text, p->dy);
            if (p->dy == NULL) {
                tt_free(text);
                set_errtext(errtext, errtext_printf("more than %d distinct methods called over "
                                                    "gob without generated code in one process",
                                                    GOB_KEEP_MAX));
                return TETHER_ELIMIT;
            }
            p->kept = 1;
        }
        tt_free(text);
        if (!tt_dyn_is_raw(p->dy)) {
            char jwhy[TT_PBJSON_ERRLEN];
            rc = tt_pbjson_decode(tt_dyn_input(p->dy), json_in, strlen(json_in), &p->msg, jwhy,
                                  sizeof jwhy);
            if (rc != TETHER_OK) {
                if (rc == TETHER_EBADREQUEST) {
                    set_errtext(errtext, tt_strdup(jwhy));
                }
                return rc == TETHER_EBADREQUEST ? TETHER_EINVAL : rc;
            }
            p->reply_desc = tt_dyn_output(p->dy);
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
    }
    /* jsonrpc, or a raw method: the text goes as bytes. */
    p->len = strlen(json_in);
    p->data = (uint8_t *)tt_strndup(json_in, p->len);
    return p->data != NULL ? TETHER_OK : TETHER_ENOMEM;
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
    if (p.codec == TETHER_CODEC_NATIVE) {
        rc = call_native(c, method, p.msg, p.reply_desc, &reply, opts, errtext);
    } else {
        /* gob: its decoder bounds the nesting itself. */
        rc = tether_client_call(c, method, p.msg, p.reply_desc, &reply, opts, errtext);
    }
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
