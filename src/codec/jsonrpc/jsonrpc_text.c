/*
 * jsonrpc_text.c - a jsonrpc request whose params[0] is JSON text given by
 * the caller (tether_client_call_json over jsonrpc: no schema is needed,
 * the text goes through as it is, whitespace aside).
 */
#include "codec/jsonrpc/jsonrpc.h"
#include "codec/pbjson/pbjson.h"

tether_err
tt_jsonrpc_encode_request_text(void *state, tt_buf *out, uint64_t seq, const char *method,
                               size_t method_len, const void *json, size_t len)
{
    (void)state;
    tt_json_reader r = {json, (const char *)json + len, 0, false};
    if (tt_json_skip(&r) != TETHER_OK) {
        return TETHER_EINVAL;
    }
    tt_json_skip_ws(&r);
    if (r.p != r.end) {
        return TETHER_EINVAL;
    }
    size_t before = out->len;
    tether_err rc = tt_buf_append(out, "{\"method\":", 10);
    if (rc == TETHER_OK) {
        rc = tt_json_write_string(out, method, method_len);
    }
    if (rc == TETHER_OK) {
        rc = tt_buf_append(out, ",\"params\":[", 11);
    }
    if (rc == TETHER_OK) {
        rc = tt_json_compact(out, json, len);
    }
    if (rc == TETHER_OK) {
        rc = tt_buf_append(out, "],\"id\":", 7);
    }
    if (rc == TETHER_OK) {
        rc = tt_json_write_u64(out, seq);
    }
    if (rc == TETHER_OK) {
        rc = tt_buf_append(out, "}\n", 2);
    }
    if (rc != TETHER_OK) {
        out->len = before;
    }
    return rc;
}
