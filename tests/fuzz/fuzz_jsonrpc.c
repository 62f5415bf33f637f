/*
 * fuzz_jsonrpc.c - libFuzzer target for the jsonrpc codec and the JSON
 * mapping under it: the input is decoded as a request stream and as a
 * reply stream, bodies are unpacked into the calculator's Args and the
 * richer codectest types, decoded requests are answered (encoder and id
 * echo), and the whole input is also read directly as a Rich message.
 *
 * The codec's .c files are compiled into this target (h2o style) so that
 * libFuzzer's coverage instrumentation sees them; the static library
 * supplies the rest (core), and its own copies of these files are never
 * pulled in because nothing else refers to them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../src/codec/jsonrpc/jsonrpc.c"
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
    &google__protobuf__int64_value__descriptor,
};

static void
run(const uint8_t *data, size_t size, bool reply)
{
    jsonrpc_state st;
    tt_buf out = {0};
    tt_codec_jsonrpc.init(&st, 1 << 16);
    size_t off = 0;
    for (int steps = 0; steps < 64 && off < size; steps++) {
        tt_rpc_msg m;
        size_t used = 0;
        tether_err e =
            reply ? tt_codec_jsonrpc.decode_reply(&st, data + off, size - off, &used, &m)
                  : tt_codec_jsonrpc.decode_request(&st, data + off, size - off, &used, &m);
        if (e != TETHER_OK || used == 0) {
            break;
        }
        off += used;
        if (!reply && m.method == NULL) {
            continue;
        }
        bool answered = false;
        for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
            ProtobufCMessage *pm = NULL;
            if (tt_codec_jsonrpc.unpack(&st, targets[i], m.body, m.body_len, &pm) == TETHER_OK) {
                out.len = 0;
                if (!reply && !answered) {
                    answered = tt_codec_jsonrpc.encode_reply(&st, &out, m.seq, m.method,
                                                             m.method_len, pm) == TETHER_OK;
                } else {
                    tt_codec_jsonrpc.encode_request(&st, &out, m.seq, "C.M", 3, pm);
                }
                tt_pb_free(pm);
            }
        }
        if (!reply && !answered) {
            out.len = 0;
            tt_codec_jsonrpc.encode_error(&st, &out, m.seq, m.method, m.method_len, TETHER_EREMOTE,
                                          tt_jsonrpc_last_error(&st));
        }
    }
    tt_buf_free(&out);
    tt_codec_jsonrpc.fini(&st);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)tt_codec_jsonrpc.probe(data, size);
    run(data, size, false);
    run(data, size, true);
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        ProtobufCMessage *pm = NULL;
        char err[TT_PBJSON_ERRLEN];
        if (tt_pbjson_decode(targets[i], (const char *)data, size, &pm, err, sizeof(err)) ==
            TETHER_OK) {
            tt_buf out = {0};
            tt_pbjson_encode(&out, pm);
            tt_buf_free(&out);
            tt_pb_free(pm);
        }
    }
    return 0;
}
