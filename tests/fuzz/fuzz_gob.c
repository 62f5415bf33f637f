/*
 * fuzz_gob.c - libFuzzer target for the gob codec: the input is a byte
 * stream as a peer would send it, decoded both as client requests and as
 * server replies; every body is unpacked into the calculator's Args, the
 * richer codectest types and Int64Value, and decoded requests are
 * answered, which exercises the encoder on whatever decoded.
 *
 * The codec's .c files are compiled into this target (h2o style) so that
 * libFuzzer's coverage instrumentation sees them; the static library
 * supplies the rest (core), and its own copies of these files are never
 * pulled in because nothing else refers to them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../src/codec/gob/gob.c"
#include "../../src/codec/gob/gob_decode.c"
#include "../../src/codec/gob/gob_encode.c"
#include "../../src/codec/gob/gob_types.c"
#include "../../src/codec/gob/gob_wire.c"
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
    gob_state st;
    gob_state out_st;
    tt_buf out = {0};
    tt_codec_gob.init(&st, 1 << 16);
    tt_codec_gob.init(&out_st, 1 << 16);
    size_t off = 0;
    for (int steps = 0; steps < 64 && off < size; steps++) {
        tt_rpc_msg m;
        size_t used = 0;
        tether_err e = reply ? tt_codec_gob.decode_reply(&st, data + off, size - off, &used, &m)
                             : tt_codec_gob.decode_request(&st, data + off, size - off, &used, &m);
        if (e != TETHER_OK || used == 0) {
            break;
        }
        off += used;
        if (m.method == NULL) {
            continue;
        }
        for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
            ProtobufCMessage *pm = NULL;
            if (tt_codec_gob.unpack(&st, targets[i], m.body, m.body_len, &pm) == TETHER_OK) {
                out.len = 0;
                if (reply) {
                    tt_codec_gob.encode_request(&out_st, &out, m.seq, m.method, m.method_len, pm);
                } else {
                    tt_codec_gob.encode_reply(&out_st, &out, m.seq, m.method, m.method_len, pm);
                }
                tt_pb_free(pm);
            }
        }
        if (!reply) {
            out.len = 0;
            tt_codec_gob.encode_error(&out_st, &out, m.seq, m.method, m.method_len, TETHER_EREMOTE,
                                      "fuzz");
        }
    }
    tt_buf_free(&out);
    tt_codec_gob.fini(&out_st);
    tt_codec_gob.fini(&st);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)tt_codec_gob.probe(data, size);
    run(data, size, false);
    run(data, size, true);
    return 0;
}
