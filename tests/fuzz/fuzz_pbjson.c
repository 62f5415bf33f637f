/*
 * fuzz_pbjson.c - libFuzzer target for the JSON <-> protobuf mapping on
 * its own (src/codec/pbjson/): the input is read as a message of several
 * types (flat, rich, oneof, wrapper, recursive), each decoded message is
 * written back as JSON and read again, which must succeed and give the
 * same JSON text (the writer's output is always valid input); the input
 * is also parsed by jansson and mapped with tt_pbjson_from_json and
 * tt_pbjson_to_json, and packed with protobuf-c.
 *
 * As in fuzz_jsonrpc.c the mapping's .c files are compiled in so that
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
#include "calculator.pb-c.h"
#include "codectest.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"

static const ProtobufCMessageDescriptor *const targets[] = {
    &args__descriptor,
    &codectest__rich__descriptor,
    &codectest__pick__descriptor,
    &codectest__node__descriptor,
    &google__protobuf__int64_value__descriptor,
    &google__protobuf__string_value__descriptor,
};

static void
roundtrip(const ProtobufCMessageDescriptor *desc, const ProtobufCMessage *pm)
{
    tt_buf a = {0};
    tt_buf b = {0};
    tether_err e = tt_pbjson_encode(&a, pm);
    if (e == TETHER_OK) {
        ProtobufCMessage *again = NULL;
        char err[TT_PBJSON_ERRLEN];
        e = tt_pbjson_decode(desc, (const char *)a.data, a.len, &again, err, sizeof(err));
        if (e == TETHER_ENOMEM) {
            goto out;
        }
        if (e != TETHER_OK) {
            abort(); /* our own output must read back */
        }
        if (tt_pbjson_encode(&b, again) != TETHER_OK || a.len != b.len ||
            memcmp(a.data, b.data, a.len) != 0) {
            abort(); /* and give the same text again */
        }
        tt_pb_free(again);
    }
    /* The decoded message must also pack (protobuf-c walks every field). */
    size_t sz = protobuf_c_message_get_packed_size(pm);
    if (sz < (1u << 20)) {
        uint8_t *buf = malloc(sz + 1);
        if (buf != NULL) {
            (void)protobuf_c_message_pack(pm, buf);
            free(buf);
        }
    }
out:
    tt_buf_free(&a);
    tt_buf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        ProtobufCMessage *pm = NULL;
        char err[TT_PBJSON_ERRLEN];
        if (tt_pbjson_decode(targets[i], (const char *)data, size, &pm, err, sizeof(err)) ==
            TETHER_OK) {
            roundtrip(targets[i], pm);
            tt_pb_free(pm);
        }
        if (j != NULL) {
            pm = NULL;
            if (tt_pbjson_from_json(targets[i], j, &pm, err, sizeof(err)) == TETHER_OK) {
                json_t *back = NULL;
                if (tt_pbjson_to_json(pm, &back) == TETHER_OK) {
                    json_decref(back);
                }
                tt_pb_free(pm);
            }
        }
    }
    json_decref(j);
    return 0;
}
