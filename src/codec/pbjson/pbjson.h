/*
 * pbjson.h - protobuf messages <-> JSON text, the way Go's encoding/json
 * reads and writes the matching Go structs.
 *
 * The mapping is driven by the protobuf-c descriptor (docs/codecs.md):
 *  - object keys are the field names exactly as written in the .proto;
 *    decoding also accepts an ASCII case-insensitive match, as Go does;
 *  - every field is written, in field-number order, zero values included
 *    (Go has no omitempty on net/rpc argument types); oneof members only
 *    when active;
 *  - integers (int64 too) are bare numbers, floats use Go's shortest
 *    format, bytes are standard base64 with padding, enums are numbers;
 *  - repeated fields are arrays ([] when empty, never null), map fields
 *    are objects with keys sorted as Go sorts them, nested messages are
 *    objects (null when absent);
 *  - google.protobuf wrapper types (Int64Value, ...) are the bare value,
 *    so a reply can be Go's *int.
 * Decoding ignores unknown keys, treats missing keys as zero, and rejects
 * numbers that do not fit the field (Go's error texts, e.g. "json: cannot
 * unmarshal number 1.5 into Go struct field Args.A of type int64").
 *
 * This is a purpose-built reader and writer rather than jansson: jansson
 * cannot hold uint64 values above INT64_MAX (Go sends them), reports no
 * byte positions (the jsonrpc codec needs the raw text of params[0] and of
 * ids) and allocates a node per value on the hot path.
 * tt_pbjson_to_json()/tt_pbjson_from_json() bridge to jansson for tools.
 */
#ifndef TT_CODEC_PBJSON_PBJSON_H
#define TT_CODEC_PBJSON_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "tether/tether.h"

/* Deepest JSON nesting accepted anywhere (objects and arrays). */
#define TT_JSON_MAX_DEPTH 64

/* Most elements one repeated or map field may receive from JSON. */
#define TT_PBJSON_MAX_ELEMS (1u << 22)

/* Room for a decode error text; longer texts are cut. */
#define TT_PBJSON_ERRLEN 160

/*
 * tt_pbjson_encode - append msg as JSON text to out.  Returns TETHER_OK,
 * TETHER_ENOMEM, TETHER_EINVAL (a NaN or infinite float: Go refuses them
 * too) or TETHER_ELIMIT (nesting deeper than TT_JSON_MAX_DEPTH).  On error
 * out may hold a partial value past its old length; callers reset len.
 */
tether_err tt_pbjson_encode(tt_buf *out, const ProtobufCMessage *msg);

/*
 * tt_pbjson_decode - parse text[0..len) (one JSON value, surrounding
 * whitespace allowed) as a message of type desc, allocated with
 * tt_pb_allocator into *out (free with protobuf_c_message_free_unpacked(m,
 * &tt_pb_allocator)).  JSON null and an empty text give an empty message.
 * Returns TETHER_OK, TETHER_ENOMEM, or TETHER_EBADREQUEST with a
 * NUL-terminated reason in err[0..errlen) (err may be NULL).  *out is
 * NULL on error.
 */
tether_err tt_pbjson_decode(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
                            ProtobufCMessage **out, char *err, size_t errlen);

/*
 * tt_pbjson_to_json - msg as a new jansson value (caller owns the
 * reference).  If a uint64 value exceeds INT64_MAX, which jansson cannot
 * hold as an integer, every number of that message is read as a real.  TETHER_OK, TETHER_ENOMEM,
 * TETHER_EINVAL.
 */
tether_err tt_pbjson_to_json(const ProtobufCMessage *msg, json_t **out);

/*
 * tt_pbjson_from_json - like tt_pbjson_decode() from a jansson value
 * (borrowed).
 */
tether_err tt_pbjson_from_json(const ProtobufCMessageDescriptor *desc, const json_t *j,
                               ProtobufCMessage **out, char *err, size_t errlen);

/* --- JSON text helpers shared with the jsonrpc codec --- */

/* tt_json_is_ws - JSON insignificant whitespace. */
static inline bool
tt_json_is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * tt_json_write_string - append s[0..n) as a JSON string literal escaped
 * exactly as Go's encoding/json does (HTML-safe: <, >, & as \u003c...;
 * control bytes as \u00XX except \n \r \t; invalid UTF-8 as \ufffd;
 * U+2028/U+2029 escaped).  TETHER_OK or TETHER_ENOMEM.
 */
tether_err tt_json_write_string(tt_buf *out, const char *s, size_t n);

/*
 * tt_json_compact - append the JSON value text p[0..n) with whitespace
 * outside strings removed and <, >, &, U+2028, U+2029 escaped, as Go's
 * encoder writes a json.RawMessage.  The text must be valid JSON.
 */
tether_err tt_json_compact(tt_buf *out, const char *p, size_t n);

/*
 * tt_json_reader - a cursor over JSON text used to walk values without
 * building a tree.
 */
typedef struct tt_json_reader {
    const char *p;
    const char *end;
    unsigned depth;
    bool eof; /* set when a value ran past end (more input may complete it) */
} tt_json_reader;

/*
 * tt_json_skip - skip one complete, valid JSON value (after optional
 * whitespace).  TETHER_OK; TETHER_EAGAIN if the text ends inside the
 * value; TETHER_EPROTO if it is not JSON or nests deeper than
 * TT_JSON_MAX_DEPTH.  r->p is left after the value on success.
 */
tether_err tt_json_skip(tt_json_reader *r);

/* tt_json_skip_ws - advance over whitespace. */
void tt_json_skip_ws(tt_json_reader *r);

/*
 * tt_json_read_string - read the string literal at r->p (which must be
 * '"').  *s, *n: its decoded bytes, pointing into the text when it needs
 * no unescaping (*owned NULL), else into a tt_malloc block the caller
 * frees (*owned).  TETHER_OK, TETHER_EAGAIN, TETHER_EPROTO, TETHER_ENOMEM.
 */
tether_err tt_json_read_string(tt_json_reader *r, const char **s, size_t *n, char **owned);

/*
 * tt_json_parse_u64 - p[0..n) as a canonical JSON unsigned integer (no
 * sign, fraction, exponent or leading zero) that fits uint64.
 */
bool tt_json_parse_u64(const char *p, size_t n, uint64_t *v);

/*
 * tt_json_write_u64 / tt_json_write_i64 - append a decimal number.
 */
tether_err tt_json_write_u64(tt_buf *out, uint64_t v);
tether_err tt_json_write_i64(tt_buf *out, int64_t v);

#endif
