/*
 * fuzz_describe.c - libFuzzer target for the caller's side of
 * _tether.Describe (src/rpc/describe_client.c): the input is a method
 * description as a server would answer it, then a NUL byte, a JSON
 * request, a NUL byte and the bytes of a reply.  Whatever the description
 * says, building descriptors from it must either fail cleanly or give
 * descriptors that protobuf-c and the JSON mapping handle without a crash:
 * the request is read from JSON into the input type, packed, unpacked and
 * written back; the reply bytes are depth-checked and, if they pass,
 * unpacked into the output type, written as JSON and packed again (as
 * tether_client_call_json does).  The description is also checked as a
 * service listing.
 *
 * As in fuzz_pbjson.c the .c files under test are compiled in so that
 * libFuzzer's coverage instrumentation sees them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/codec/pbjson/pbjson_dec.c"
#include "../../src/codec/pbjson/pbjson_enc.c"
#include "../../src/codec/pbjson/pbjson_text.c"
#include "../../src/codec/pbjson/pbutil.c"
#include "../../src/rpc/describe_client.c"

/* Pack m, unpack it again (depth-checked first) and write both as JSON. */
static void
roundtrip(const ProtobufCMessage *m)
{
    tt_buf j = {0};
    (void)tt_pbjson_encode(&j, m);
    tt_buf_free(&j);
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > (1u << 20)) {
        return;
    }
    uint8_t *buf = malloc(n + 1);
    if (buf == NULL) {
        return;
    }
    if (protobuf_c_message_pack(m, buf) != n) {
        abort(); /* the size and the packing must agree */
    }
    if (tt_pb_check_depth(m->descriptor, buf, n, TT_PB_MAX_DEPTH) == TETHER_OK) {
        ProtobufCMessage *again =
            protobuf_c_message_unpack(m->descriptor, &tt_pb_allocator, n, buf);
        if (again != NULL) {
            tt_buf_free(&j);
            (void)tt_pbjson_encode(&j, again);
            tt_buf_free(&j);
            protobuf_c_message_free_unpacked(again, &tt_pb_allocator);
        }
    }
    free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *end = data + size;
    const uint8_t *z1 = memchr(data, 0, size);
    const uint8_t *req = z1 != NULL ? z1 + 1 : end;
    const uint8_t *z2 = req < end ? memchr(req, 0, (size_t)(end - req)) : NULL;
    const uint8_t *rep = z2 != NULL ? z2 + 1 : end;
    size_t desc_len = (size_t)((z1 != NULL ? z1 : end) - data);
    size_t req_len = (size_t)((z2 != NULL ? z2 : end) - req);
    size_t rep_len = (size_t)(end - rep);

    char err[TT_DESCRIBE_ERRLEN];
    (void)tt_describe_check_list((const char *)data, desc_len, err, sizeof err);
    tt_dyn *dy = tt_dyn_parse((const char *)data, desc_len, err, sizeof err);
    if (dy == NULL) {
        if (memchr(err, 0, sizeof err) == NULL) {
            abort(); /* the reason is always a C string */
        }
        return 0;
    }
    if (tt_dyn_is_raw(dy)) {
        tt_dyn_free(dy);
        return 0;
    }
    ProtobufCMessage *m = NULL;
    char why[TT_PBJSON_ERRLEN];
    if (tt_pbjson_decode(tt_dyn_input(dy), (const char *)req, req_len, &m, why, sizeof why) ==
        TETHER_OK) {
        roundtrip(m);
        protobuf_c_message_free_unpacked(m, &tt_pb_allocator);
    }
    const ProtobufCMessageDescriptor *out = tt_dyn_output(dy);
    if (tt_pb_check_depth(out, rep, rep_len, TT_PB_MAX_DEPTH) == TETHER_OK) {
        m = protobuf_c_message_unpack(out, &tt_pb_allocator, rep_len, rep);
        if (m != NULL) {
            roundtrip(m);
            protobuf_c_message_free_unpacked(m, &tt_pb_allocator);
        }
    }
    /* Every type, not only the method's two, from an empty JSON object. */
    for (size_t i = 0; i < dy->n; i++) {
        if (tt_pbjson_decode(&dy->types[i].d, "{}", 2, &m, why, sizeof why) == TETHER_OK) {
            roundtrip(m);
            protobuf_c_message_free_unpacked(m, &tt_pb_allocator);
        }
    }
    tt_dyn_free(dy);
    return 0;
}
