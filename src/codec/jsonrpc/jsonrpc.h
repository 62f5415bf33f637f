/*
 * jsonrpc.h - the codec for Go's net/rpc/jsonrpc (JSON-RPC 1.0 shapes as
 * Go writes them), server and client side.  See docs/codecs.md.
 *
 * Wire format: a stream of JSON objects, any whitespace between them.
 *   request  {"method":"Calculator.Add","params":[{"A":1,"B":2}],"id":0}\n
 *   reply    {"id":0,"result":3,"error":null}\n
 *   error    {"id":1,"result":null,"error":"divide by zero"}\n
 *
 * decode_request:
 *  - m->method / m->method_len: the method string (pointing into the
 *    input, or into the codec state when it had escapes; valid until the
 *    next call on this state).  A request without "method" (or with null)
 *    gets an empty, non-NULL method, which net/rpc answers with
 *    "rpc: service/method request ill-formed: ".
 *  - m->body: the raw text of params[0]; empty for "params":[].
 *  - m->seq: the id.  An id that is a plain unsigned integer is used as
 *    the seq directly.  Any other id (string, object, negative, 1.0, null,
 *    missing) is kept, compacted the way Go's encoder re-writes a
 *    json.RawMessage, and replaced by a seq from 2^63 up; encode_reply and
 *    encode_error echo the kept text for that seq, as Go's server does.  At
 *    most TT_JSONRPC_MAX_IDS such ids, none longer than
 *    TT_JSONRPC_MAX_ID_LEN bytes and together within TT_JSONRPC_ID_BUDGET,
 *    may wait for their reply (TETHER_ELIMIT beyond, with the reason in
 *    tt_jsonrpc_last_error()).  A successful encode_reply or any
 *    encode_error (written or not) releases the id; a failed encode_reply
 *    keeps it for the encode_error that must follow.  A client that mixes numeric ids >= 2^63 with
 *    such ids in flight can get its own replies' ids swapped; Go's client
 *    numbers from 0.
 *  - m->status: TETHER_OK, or TETHER_EBADREQUEST when the request has a
 *    usable method but unusable params (missing, null, or not an array);
 *    m->errtext then holds Go's error text.  Go checks the method first:
 *    the server should report an unknown method first and else answer
 *    encode_error(errtext).
 *  - Leading whitespace alone is consumed with TETHER_OK, m->method NULL.
 *  - TETHER_EMSGSIZE: the object is longer than max_msg.  TETHER_EPROTO:
 *    not a JSON object, or "method" is neither a string nor null (Go's
 *    server closes the connection in both cases).
 * After TETHER_EAGAIN the next call must pass the same bytes plus more:
 *    the scanner resumes where it stopped instead of rescanning.
 *
 * decode_reply: m->seq = id (must be an unsigned integer, as Go's client
 * requires); m->method NULL; success: m->body = raw text of "result";
 * error string: m->status TETHER_EREMOTE, m->errtext its text ("" becomes
 * "unspecified error", as in Go).  Replies Go's client rejects with a
 * broken connection ("error" null with no result, a non-string error, a
 * non-numeric id) give TETHER_EPROTO.
 *
 * unpack: the body text through tt_pbjson_decode(); on TETHER_EBADREQUEST
 * tt_jsonrpc_last_error() gives Go-style text for the error reply.
 */
#ifndef TT_CODEC_JSONRPC_JSONRPC_H
#define TT_CODEC_JSONRPC_JSONRPC_H

#include "codec/codec.h"

/* Non-numeric ids waiting for their reply, per connection. */
#define TT_JSONRPC_MAX_IDS 4096
/* Longest non-numeric id accepted, as sent (before re-encoding). */
#define TT_JSONRPC_MAX_ID_LEN 256
/* Bytes the waiting non-numeric ids of one connection may hold (their
 * re-encoded text plus bookkeeping). */
#define TT_JSONRPC_ID_BUDGET (256 * 1024)

extern const tt_codec_ops tt_codec_jsonrpc;

/*
 * tt_jsonrpc_last_error - the text of the last unpack() failure on this
 * connection state ("" if none).  Valid until the next call on the state.
 */
const char *tt_jsonrpc_last_error(const void *state);


/*
 * tt_jsonrpc_held_ids - how many non-numeric ids this state keeps for
 * replies not yet written, and (bytes, may be NULL) the bytes they count
 * against TT_JSONRPC_ID_BUDGET.
 */
size_t tt_jsonrpc_held_ids(const void *state, size_t *bytes);

#endif
