/*
 * gob.h - the codec for Go's default net/rpc codec (encoding/gob), server
 * and client side, byte-compatible with Go 1.19.  See docs/codecs.md.
 *
 * A connection carries one gob stream per direction.  Each message is a
 * length-prefixed (type id, payload) pair; negative ids define types.
 * Type ids are per stream: incoming definitions are kept in the state
 * (any ids >= 64, forward references allowed, none redefined), and
 * outgoing types get their own ids from 65 up, each definition sent once,
 * in the order Go's encoder sends them (outer type first, then the types
 * its fields use, depth first).
 *
 * Mapping (details in docs/codecs.md): a message is a gob struct whose
 * fields match proto fields by name (exact, else ASCII case-insensitive);
 * signed integers and enums are gob int, unsigned ones gob uint, float
 * and double gob float, bytes []byte, repeated fields slices, map fields
 * maps, nested messages nested structs (pointers flattened, as in Go), and
 * google.protobuf wrapper types the bare value, so a reply message of type
 * Int64Value is the singleton int Go's *int reply is.
 *
 * decode_request / decode_reply: complete leading type definitions are
 * consumed and recorded; when a header, the definitions after it and its
 * body value are all present, they are consumed together and *m is filled
 * (m->method points into the input: gob strings have no escapes; m->body
 * is the body value message without its length prefix).  When only
 * definitions could be consumed the result is TETHER_OK with m->method
 * NULL; with nothing complete, TETHER_EAGAIN (after which the next call
 * must pass the same bytes plus more: the scan resumes where it stopped,
 * so a request that trickles in costs O(n) in all).  Errors:
 * TETHER_EMSGSIZE (a message longer than max_msg), TETHER_ELIMIT (more
 * than TT_GOB_MAX_TYPES definitions, counting those waiting behind a
 * header for its body; more than TT_GOB_MAX_TOTAL_FIELDS fields or
 * TT_GOB_TYPE_BUDGET bytes of definitions; the reason is in
 * tt_gob_last_error()), TETHER_EPROTO (anything malformed, a
 * redefined id, a header of the wrong shape: Go's server closes the
 * connection on those too), TETHER_ENOMEM.
 * Replies: m->status TETHER_EREMOTE with m->errtext for an Error header.
 *
 * unpack: decodes a body with the connection's type table; on failure
 * TETHER_EBADREQUEST and tt_gob_last_error() says why.
 */
#ifndef TT_CODEC_GOB_GOB_H
#define TT_CODEC_GOB_GOB_H

#include "codec/codec.h"

/* Most type definitions per stream and direction. */
#define TT_GOB_MAX_TYPES 1024
/* Most fields in one struct definition. */
#define TT_GOB_MAX_FIELDS 1024
/* Most fields in all the definitions of one stream. */
#define TT_GOB_MAX_TOTAL_FIELDS 65536
/* Most memory the definitions of one stream may hold (their table entries,
 * fields and names). */
#define TT_GOB_TYPE_BUDGET (2u * 1024 * 1024)
/* Deepest value nesting (structs, slices, maps) decoded or skipped. */
#define TT_GOB_MAX_DEPTH 64
/* Most elements in one slice or map. */
#define TT_GOB_MAX_ELEMS (1u << 22)

extern const tt_codec_ops tt_codec_gob;

/*
 * tt_gob_last_error - the text of the last unpack() failure on this state
 * ("" if none).  Valid until the next call on the state.
 */
const char *tt_gob_last_error(const void *state);

/*
 * tt_gob_held_types - how many incoming type definitions this state holds
 * and (bytes, may be NULL) the memory they count against
 * TT_GOB_TYPE_BUDGET.
 */
size_t tt_gob_held_types(const void *state, size_t *bytes);

#endif
