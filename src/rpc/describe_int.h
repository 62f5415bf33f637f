/*
 * describe_int.h - what the two halves of _tether.Describe share: the
 * server's built-in method (describe_server.c) writes descriptions, the
 * caller's side (describe_client.c) reads them back into protobuf-c
 * descriptors.  The JSON form is in docs/call.md.
 */
#ifndef TT_RPC_DESCRIBE_INT_H
#define TT_RPC_DESCRIBE_INT_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <string.h>

#include "rpc/client_int.h"

/* google.protobuf.StringValue without the generated code: the request and
 * the reply of _tether.Describe (tt_string_value_descriptor). */
typedef struct tt_strval {
    ProtobufCMessage base;
    char *value;
} tt_strval;

static inline void
tt_strval_init(tt_strval *m)
{
    memset(m, 0, sizeof *m);
    m->base.descriptor = &tt_string_value_descriptor;
    m->value = (char *)protobuf_c_empty_string;
}

/* The names a description uses for protobuf-c's types and labels (NULL
 * for a value without one). */
static inline const char *
tt_describe_type_name(unsigned t)
{
    static const char *const names[] = {
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
    return t < sizeof names / sizeof names[0] ? names[t] : NULL;
}

static inline const char *
tt_describe_label_name(unsigned l)
{
    static const char *const names[] = {
        [PROTOBUF_C_LABEL_REQUIRED] = "required",
        [PROTOBUF_C_LABEL_OPTIONAL] = "optional",
        [PROTOBUF_C_LABEL_REPEATED] = "repeated",
        [PROTOBUF_C_LABEL_NONE] = "none",
    };
    return l < sizeof names / sizeof names[0] ? names[l] : NULL;
}

/* Bounds on a received description: a server cannot make the caller build
 * more than this (the text itself is also bounded by the reply size). */
#define TT_DESCRIBE_MAX_TYPES 1024
#define TT_DESCRIBE_MAX_FIELDS 1024      /* per message type */
#define TT_DESCRIBE_MAX_ALL_FIELDS 16384 /* over all types */
#define TT_DESCRIBE_MAX_IDENT 256        /* a name's length */
#define TT_DESCRIBE_MAX_TEXT (8u << 20)  /* the JSON text */
#define TT_DESCRIBE_ERRLEN 200

/*
 * tt_dyn - the message descriptors of one received method description,
 * validated so that protobuf-c and the JSON and gob mappings can use them
 * on any input: every name is an identifier, field numbers are in range
 * and unique, types and labels are known, "packed" only on repeated
 * packable scalars, oneof members are singular, every message reference
 * resolves, map entries have a scalar or string key, and the counts are
 * bounded.  Recursive types are allowed (protobuf allows them): messages
 * of such types must be depth-checked before protobuf-c unpacks them.
 */
typedef struct tt_dyn tt_dyn;

/*
 * tt_dyn_parse - read the description text[0..len) (the answer of
 * _tether.Describe for one method).  *out is the descriptors (free with
 * tt_dyn_free); for a raw method *out has none (tt_dyn_is_raw).  NULL and
 * a reason in err[0..errlen) if the text is not a valid description.
 */
tt_dyn *tt_dyn_parse(const char *text, size_t len, char *err, size_t errlen);
void tt_dyn_free(tt_dyn *dy);
int tt_dyn_is_raw(const tt_dyn *dy);
/* The method's request and reply types (NULL for a raw method). */
const ProtobufCMessageDescriptor *tt_dyn_input(const tt_dyn *dy);
const ProtobufCMessageDescriptor *tt_dyn_output(const tt_dyn *dy);
/* A type by full name, or NULL. */
const ProtobufCMessageDescriptor *tt_dyn_find(const tt_dyn *dy, const char *name);

/*
 * tt_describe_check_list - whether text[0..len) is a valid answer to the
 * listing request (an empty name): {"services":[{"name":S,"methods":
 * [{"name":M,"input":T,"output":T} or {"name":M,"raw":true}, ...]}, ...]}
 * with identifiers for names and bounded counts.  0, or -1 with a reason.
 */
int tt_describe_check_list(const char *text, size_t len, char *err, size_t errlen);

#endif
