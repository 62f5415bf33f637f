/*
 * describe_server.c - the built-in method _tether.Describe that every
 * server serves, so that callers without generated code (the `tether
 * call` and `tether describe` tools) learn the message types.
 *
 * It takes a name as google.protobuf.StringValue and answers a
 * StringValue holding JSON (docs/call.md):
 *  - "Service.Method": that method's input and output types and every
 *    message type they reach,
 *      {"method":"Calculator.Add","input":"Args","output":"...Int64Value",
 *       "types":[{"name":"Args","short_name":"Args","fields":[{"name":"A",
 *                 "id":1,"label":"none","type":"int64"}, ...]}, ...]}
 *    or {"method":...,"raw":true} for a raw method;
 *  - "" (empty): the services and their methods,
 *      {"services":[{"name":"Calculator","methods":[{"name":"Add",
 *        "input":"Args","output":"google.protobuf.Int64Value"}, ...]}, ...]}
 * A StringValue is a bare string in jsonrpc and a gob singleton, so every
 * codec can ask, and a Go client could too.
 */
#include <jansson.h>
#include <string.h>

#include "codec/pbjson/pbutil.h"
#include "core/alloc.h"
#include "rpc/describe_int.h"
#include "rpc/server_int.h"

/* ---------------------------------------------------------------------- */
/* google.protobuf.StringValue, without linking the generated code        */

static void
strval_init(ProtobufCMessage *m)
{
    tt_strval_init((tt_strval *)m);
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
/* One method                                                             */

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
        const char *label = tt_describe_label_name(f->label);
        const char *type = tt_describe_type_name(f->type);
        json_t *jf =
            json_pack("{s:s, s:I, s:s, s:s}", "name", f->name, "id", (json_int_t)f->id, "label",
                      label != NULL ? label : "none", "type", type != NULL ? type : "bytes");
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

static json_t *
describe_method(const method_ent *m)
{
    if (m->md == NULL) {
        return json_pack("{s:s, s:b}", "method", m->name, "raw", 1);
    }
    json_t *types = json_array();
    json_t *root = json_pack("{s:s, s:s, s:s, s:o}", "method", m->name, "input", m->md->input->name,
                             "output", m->md->output->name, "types", types);
    if (root != NULL && (describe_type(types, m->md->input, 0) != 0 ||
                         describe_type(types, m->md->output, 0) != 0)) {
        json_decref(root);
        root = NULL;
    }
    return root;
}

/* ---------------------------------------------------------------------- */
/* The listing                                                            */

/* The service a method belongs to: the longest registered service name
 * that prefixes "Service." (raw names split at their first dot, so a
 * service name never holds the method's dot). */
static const char *
service_of(const tether_server *srv, const method_ent *m)
{
    const char *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < srv->nservices; i++) {
        size_t l = strlen(srv->services[i]);
        if (l < m->name_len && m->name[l] == '.' && memcmp(m->name, srv->services[i], l) == 0 &&
            l >= best_len) {
            best = srv->services[i];
            best_len = l;
        }
    }
    return best;
}

static json_t *
describe_list(const tether_server *srv)
{
    json_t *services = json_array();
    json_t *root = json_pack("{s:o}", "services", services);
    if (root == NULL) {
        return NULL;
    }
    /* Services in the order they were added; methods sorted by name (the
     * table is sorted at start and never changes while serving). */
    for (size_t i = 0; i < srv->nservices; i++) {
        const char *svc = srv->services[i];
        size_t sl = strlen(svc);
        json_t *methods = json_array();
        json_t *js = json_pack("{s:s, s:o}", "name", svc, "methods", methods);
        if (js == NULL || json_array_append_new(services, js) != 0) {
            goto fail;
        }
        for (size_t k = 0; k < srv->nmethods; k++) {
            const method_ent *m = &srv->methods[k];
            if (service_of(srv, m) != svc) {
                continue;
            }
            const char *mname = m->name + sl + 1;
            json_t *jm = m->md == NULL
                             ? json_pack("{s:s, s:b}", "name", mname, "raw", 1)
                             : json_pack("{s:s, s:s, s:s}", "name", mname, "input",
                                         m->md->input->name, "output", m->md->output->name);
            if (jm == NULL || json_array_append_new(methods, jm) != 0) {
                goto fail;
            }
        }
    }
    return root;

fail:
    json_decref(root);
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* The built-in method                                                    */

static void
do_describe(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    tether_server *srv = arg;
    const char *name = ((const tt_strval *)req)->value;
    json_t *root;
    if (name[0] == '\0') {
        root = describe_list(srv);
    } else {
        /* The describer answers for the method asked about exactly as a
         * call of it would be answered: the same lookup, code and text. */
        char text[TT_DESCRIBE_MAX_NAME + 64];
        tether_err code;
        const method_ent *m = tt_server_lookup(srv, name, strlen(name), &code, text, sizeof text);
        if (m == NULL) {
            tether_call_fail_code(call, code, text);
            return;
        }
        root = describe_method(m);
    }
    char *text = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (text == NULL) {
        tether_call_fail(call, "rpc: cannot describe the method (out of memory, or its types "
                               "nest too deeply)");
        return;
    }
    tt_strval out;
    tt_strval_init(&out);
    out.value = text;
    tether_call_reply(call, &out.base);
    /* json_dumps allocates with jansson's functions, which are tt_malloc
     * once an allocator is set (core/alloc.c), plain malloc before. */
    json_free_t jfree;
    json_get_alloc_funcs(NULL, &jfree);
    jfree(text);
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
