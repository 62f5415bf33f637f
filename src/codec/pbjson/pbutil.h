/*
 * pbutil.h - descriptor-driven helpers shared by the JSON and gob mappings:
 * field access, message creation with tt_pb_allocator, growing repeated
 * fields, and recognising map entries and wrapper types.
 *
 * Every message these helpers build can be freed with
 * protobuf_c_message_free_unpacked(msg, &tt_pb_allocator): strings, bytes,
 * arrays and sub-messages are all separate tt_malloc blocks, exactly as
 * protobuf_c_message_unpack() lays them out.
 */
#ifndef TT_CODEC_PBJSON_PBUTIL_H
#define TT_CODEC_PBJSON_PBUTIL_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tether/tether.h"

/* Deepest message nesting any mapping accepts or produces. */
#define TT_PB_MAX_DEPTH 64

/* Address of a field inside a message. */
static inline void *
tt_pb_field_ptr(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    return (char *)msg + f->offset;
}

/* Address of a field's quantifier (n_ count, has_ flag or oneof case). */
static inline void *
tt_pb_quant_ptr(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    return (char *)msg + f->quantifier_offset;
}

/* tt_pb_elem_size - bytes one value of f's type occupies in a message or
 * in a repeated array. */
size_t tt_pb_elem_size(const ProtobufCFieldDescriptor *f);

/* tt_pb_wrapper_field - if desc is one of the google.protobuf wrapper types
 * (Int64Value, Int32Value, UInt64Value, UInt32Value, DoubleValue,
 * FloatValue, BoolValue, StringValue, BytesValue), its "value" field;
 * otherwise NULL. */
const ProtobufCFieldDescriptor *tt_pb_wrapper_field(const ProtobufCMessageDescriptor *desc);

/* tt_pb_is_map - true if f is a map field: protoc emits those as repeated
 * messages of a nested "<Name>Entry" type with fields key = 1, value = 2. */
bool tt_pb_is_map(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f);

/* tt_pb_field_present - whether a singular field takes part in encoding:
 * false only for oneof members that are not the active case. */
bool tt_pb_field_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f);

/* tt_pb_mark_set - record that a singular field got a value: sets the
 * has_ flag of proto2/proto3-optional scalars or the oneof case (freeing
 * the previous oneof member first). */
void tt_pb_mark_set(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f);

/* tt_pb_new - allocate and initialise an empty message of type desc. */
ProtobufCMessage *tt_pb_new(const ProtobufCMessageDescriptor *desc);

/* tt_pb_repeated_push - grow repeated field f of msg by one zeroed element
 * and return its address (NULL: out of memory, or more than max_elems
 * elements).  Capacity doubles, so n pushes cost O(n). */
void *tt_pb_repeated_push(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                          size_t max_elems);

/* tt_pb_clear_field - free what field f holds and reset it to its
 * initial value (used when a later duplicate key replaces an earlier one). */
void tt_pb_clear_field(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f);

/* tt_pb_field_by_name - find a field by exact name, else by ASCII
 * case-insensitive name (Go's encoding/json and our gob mapping both fall
 * back to that).  NULL if none. */
const ProtobufCFieldDescriptor *tt_pb_field_by_name(const ProtobufCMessageDescriptor *desc,
                                                    const char *name, size_t len);

/*
 * tt_pb_static_depth - the deepest nesting of messages desc's fields allow
 * (1 for a message without message-typed fields), or UINT32_MAX if desc is
 * recursive or nests deeper than TT_PB_MAX_DEPTH.  Cached per descriptor
 * after the first call (lock-free, no allocation), so it is cheap on every
 * request.
 */
uint32_t tt_pb_static_depth(const ProtobufCMessageDescriptor *desc);

/*
 * tt_pb_check_depth - walk the protobuf wire bytes p[0..len) of a message
 * of type desc, following its message-typed fields, and tell whether they
 * nest deeper than max_depth messages (max_depth <= TT_PB_MAX_DEPTH).
 * TETHER_OK, or TETHER_ELIMIT when too deep.  Malformed bytes are
 * TETHER_OK: protobuf_c_message_unpack() reports those.  Iterative, no
 * allocation; protobuf-c's own unpack recurses without a limit, so call
 * this first when tt_pb_static_depth(desc) > max_depth.
 */
tether_err tt_pb_check_depth(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                             unsigned max_depth);

/* tt_pb_free - free a message built by these helpers; NULL is a no-op. */
void tt_pb_free(ProtobufCMessage *msg);

#endif
