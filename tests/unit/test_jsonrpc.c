/*
 * test_jsonrpc.c - the Go net/rpc/jsonrpc codec against Go's own bytes
 * (protocol-notes section 4 and tests/data/jsonrpc from
 * tests/interop/gen).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../proto/codectest_util.h"
#include "codec/jsonrpc/jsonrpc.h"
#include "codec/pbjson/pbutil.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

static void *
new_state(size_t max_msg)
{
    void *st = calloc(1, tt_codec_jsonrpc.state_size);
    assert_int_equal(tt_codec_jsonrpc.init(st, max_msg), TETHER_OK);
    return st;
}

static void
free_state(void *st)
{
    tt_codec_jsonrpc.fini(st);
    free(st);
}

static void
expect_out(tt_buf *b, const char *want)
{
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(b->data, want, b->len);
    b->len = 0;
}

static void
test_probe(void **state)
{
    assert_int_equal(tt_codec_jsonrpc.probe(S("{\"method\"")), 1);
    assert_int_equal(tt_codec_jsonrpc.probe(S(" \r\n\t{")), 1);
    assert_int_equal(tt_codec_jsonrpc.probe(S("  ")), -1);
    assert_int_equal(tt_codec_jsonrpc.probe(S("")), -1);
    assert_int_equal(tt_codec_jsonrpc.probe(S("\x2f\xff\x81")), 0);
    assert_int_equal(tt_codec_jsonrpc.probe(S("\xf5TETHER")), 0);
    assert_int_equal(tt_codec_jsonrpc.probe(S("hello")), 0);
}

/* The Go client's requests (protocol-notes 4.1), answered as Go's server. */
static void
test_go_client_session(void **state)
{
    size_t len;
    unsigned char *in = read_vector("jsonrpc/calc_client.json", &len);
    assert_non_null(in);
    void *st = new_state(1 << 20);
    tt_buf out = {0};
    size_t off = 0;
    const char *methods[] = {"Calculator.Add", "Calculator.Add", "Calculator.Add", "Calculator.Div",
                             "Calculator.Nope"};
    int64_t as[] = {1, 1, -5, 1, 1};
    for (int i = 0; i < 5; i++) {
        tt_rpc_msg m;
        size_t used;
        assert_int_equal(tt_codec_jsonrpc.decode_request(st, in + off, len - off, &used, &m),
                         TETHER_OK);
        if (m.method == NULL) {
            /* The newline after the previous object. */
            off += used;
            i--;
            continue;
        }
        off += used;
        assert_int_equal(m.seq, (uint64_t)i);
        assert_int_equal(m.status, TETHER_OK);
        assert_int_equal(m.method_len, strlen(methods[i]));
        assert_memory_equal(m.method, methods[i], m.method_len);
        ProtobufCMessage *pm = NULL;
        assert_int_equal(tt_codec_jsonrpc.unpack(st, &args__descriptor, m.body, m.body_len, &pm),
                         TETHER_OK);
        Args *a = (Args *)pm;
        assert_int_equal(a->a, as[i]);
        if (i == 0) {
            Google__Protobuf__Int64Value r = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
            r.value = a->a + a->b;
            assert_int_equal(
                tt_codec_jsonrpc.encode_reply(st, &out, m.seq, m.method, m.method_len, &r.base),
                TETHER_OK);
            expect_out(&out, "{\"id\":0,\"result\":3,\"error\":null}\n");
        }
        if (i == 3) {
            assert_int_equal(tt_codec_jsonrpc.encode_error(st, &out, m.seq, m.method, m.method_len,
                                                           TETHER_EREMOTE, "divide by zero"),
                             TETHER_OK);
            expect_out(&out, "{\"id\":3,\"result\":null,\"error\":\"divide by zero\"}\n");
        }
        if (i == 4) {
            assert_int_equal(tt_codec_jsonrpc.encode_error(
                                 st, &out, m.seq, m.method, m.method_len, TETHER_ENOMETHOD,
                                 "rpc: can't find method Calculator.Nope"),
                             TETHER_OK);
            expect_out(&out, "{\"id\":4,\"result\":null,\"error\":\"rpc: can't find method "
                             "Calculator.Nope\"}\n");
        }
        tt_pb_free(pm);
    }
    /* The newline after each object went with it. */
    tt_rpc_msg m;
    size_t used;
    assert_int_equal(off, len);
    assert_int_equal(tt_codec_jsonrpc.decode_request(st, in + len, 0, &used, &m), TETHER_EAGAIN);
    /* Whitespace alone is consumed as "no request". */
    assert_int_equal(tt_codec_jsonrpc.decode_request(st, S(" \n"), &used, &m), TETHER_OK);
    assert_null(m.method);
    assert_int_equal(used, 2);
    tt_buf_free(&out);
    free(in);
    free_state(st);
}

/* As a client: the request bytes equal Go's client's. */
static void
test_client_side(void **state)
{
    size_t len;
    unsigned char *want = read_vector("jsonrpc/calc_client.json", &len);
    assert_non_null(want);
    void *st = new_state(1 << 20);
    tt_buf out = {0};
    struct {
        const char *m;
        int64_t a, b;
    } calls[] = {{"Calculator.Add", 1, 2},
                 {"Calculator.Add", 1, 2},
                 {"Calculator.Add", -5, 300},
                 {"Calculator.Div", 1, 0},
                 {"Calculator.Nope", 1, 2}};
    for (uint64_t i = 0; i < 5; i++) {
        Args a = ARGS__INIT;
        a.a = calls[i].a;
        a.b = calls[i].b;
        assert_int_equal(
            tt_codec_jsonrpc.encode_request(st, &out, i, calls[i].m, strlen(calls[i].m), &a.base),
            TETHER_OK);
    }
    assert_int_equal(out.len, len);
    assert_memory_equal(out.data, want, len);
    free(want);

    /* Replies as Go's server sends them, and the shapes of notes 4.3. */
    tt_rpc_msg m;
    size_t used;
    assert_int_equal(
        tt_codec_jsonrpc.decode_reply(st, S("{\"id\":0,\"result\":3,\"error\":null}\n"), &used, &m),
        TETHER_OK);
    assert_int_equal(m.seq, 0);
    assert_int_equal(m.status, TETHER_OK);
    ProtobufCMessage *pm;
    assert_int_equal(tt_codec_jsonrpc.unpack(st, &google__protobuf__int64_value__descriptor, m.body,
                                             m.body_len, &pm),
                     TETHER_OK);
    assert_int_equal(((Google__Protobuf__Int64Value *)pm)->value, 3);
    tt_pb_free(pm);
    assert_int_equal(used, 33);
    assert_int_equal(
        tt_codec_jsonrpc.decode_reply(
            st, S("{\"id\":1,\"result\":null,\"error\":\"divide by zero\"}"), &used, &m),
        TETHER_OK);
    assert_int_equal(m.seq, 1);
    assert_int_equal(m.status, TETHER_EREMOTE);
    assert_int_equal(m.errtext_len, 14);
    assert_memory_equal(m.errtext, "divide by zero", 14);
    assert_int_equal(tt_codec_jsonrpc.decode_reply(st, S("{\"id\":0,\"result\":7}"), &used, &m),
                     TETHER_OK);
    assert_int_equal(m.status, TETHER_OK);
    assert_int_equal(tt_codec_jsonrpc.decode_reply(st, S("{\"id\":0,\"error\":\"\"}"), &used, &m),
                     TETHER_OK);
    assert_int_equal(m.status, TETHER_EREMOTE);
    assert_memory_equal(m.errtext, "unspecified error", m.errtext_len);
    assert_int_equal(
        tt_codec_jsonrpc.decode_reply(st, S("{\"id\":2,\"error\":\"a\\nb\"}"), &used, &m),
        TETHER_OK);
    assert_memory_equal(m.errtext, "a\nb", 3);
    /* What makes Go's client drop the connection. */
    assert_int_equal(tt_codec_jsonrpc.decode_reply(
                         st, S("{\"id\":0,\"result\":null,\"error\":null}"), &used, &m),
                     TETHER_EPROTO);
    assert_int_equal(tt_codec_jsonrpc.decode_reply(
                         st, S("{\"id\":0,\"result\":1,\"error\":{\"code\":1}}"), &used, &m),
                     TETHER_EPROTO);
    assert_int_equal(tt_codec_jsonrpc.decode_reply(st, S("{\"id\":\"0\",\"result\":1}"), &used, &m),
                     TETHER_EPROTO);
    tt_buf_free(&out);
    free_state(st);
}

/* Go's server on odd requests (protocol-notes 4.2). */
static void
test_odd_requests(void **state)
{
    void *st = new_state(1 << 20);
    tt_buf out = {0};
    tt_rpc_msg m;
    size_t used;
    Google__Protobuf__Int64Value r = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    r.value = 3;

    /* Ids of other kinds are echoed as Go re-encodes them. */
    struct {
        const char *req;
        const char *reply;
    } ids[] = {
        {"{\"method\":\"C.A\",\"params\":[{}],\"id\":\"abc\"}", "{\"id\":\"abc\",\"result\":3,"},
        {"{\"method\":\"C.A\",\"params\":[{}],\"id\": { \"x\" : [ 1 ] } }",
         "{\"id\":{\"x\":[1]},\"result\":3,"},
        {"{\"method\":\"C.A\",\"params\":[{}],\"id\":null}", "{\"id\":null,\"result\":3,"},
        {"{\"method\":\"C.A\",\"params\":[{}]}", "{\"id\":null,\"result\":3,"},
        {"{\"method\":\"C.A\",\"params\":[{}],\"id\":-1}", "{\"id\":-1,\"result\":3,"},
        {"{\"method\":\"C.A\",\"params\":[{}],\"id\":\"<&>\"}",
         "{\"id\":\"\\u003c\\u0026\\u003e\",\"result\":3,"},
        {"{\"method\":\"C.A\",\"params\":[{}],\"id\":18446744073709551615}",
         "{\"id\":18446744073709551615,\"result\":3,"},
        {"{\"method\":\"C.A\",\"params\":[{}],\"id\":18446744073709551616}",
         "{\"id\":18446744073709551616,\"result\":3,"},
    };
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        size_t n = strlen(ids[i].req);
        assert_int_equal(
            tt_codec_jsonrpc.decode_request(st, (const uint8_t *)ids[i].req, n, &used, &m),
            TETHER_OK);
        assert_int_equal(used, n);
        assert_int_equal(
            tt_codec_jsonrpc.encode_reply(st, &out, m.seq, m.method, m.method_len, &r.base),
            TETHER_OK);
        assert_true(out.len > strlen(ids[i].reply));
        assert_memory_equal(out.data, ids[i].reply, strlen(ids[i].reply));
        out.len = 0;
    }

    /* Params that cannot be read: method usable, status carries Go's text. */
    assert_int_equal(
        tt_codec_jsonrpc.decode_request(st, S("{\"method\":\"C.A\",\"id\":3}"), &used, &m),
        TETHER_OK);
    assert_int_equal(m.status, TETHER_EBADREQUEST);
    assert_memory_equal(m.errtext, "jsonrpc: request body missing params", m.errtext_len);
    assert_int_equal(tt_codec_jsonrpc.encode_error(st, &out, m.seq, m.method, m.method_len,
                                                   m.status,
                                                   "jsonrpc: request body missing params"),
                     TETHER_OK);
    expect_out(&out,
               "{\"id\":3,\"result\":null,\"error\":\"jsonrpc: request body missing params\"}\n");
    assert_int_equal(tt_codec_jsonrpc.decode_request(
                         st, S("{\"method\":\"C.A\",\"params\":{\"A\":1},\"id\":4}"), &used, &m),
                     TETHER_OK);
    assert_int_equal(m.status, TETHER_EBADREQUEST);
    assert_memory_equal(m.errtext,
                        "json: cannot unmarshal object into Go value of type [1]interface {}",
                        m.errtext_len);
    /* Two params: the first one is used; an empty list gives an empty body. */
    assert_int_equal(
        tt_codec_jsonrpc.decode_request(st,
                                        S("{\"params\":[ {\"a\":1,\"b\":2} , "
                                          "5],\"jsonrpc\":\"2.0\",\"METHOD\":\"C.A\",\"id\":5}"),
                                        &used, &m),
        TETHER_OK);
    assert_int_equal(m.status, TETHER_OK);
    assert_int_equal(m.body_len, 13);
    ProtobufCMessage *pm;
    assert_int_equal(tt_codec_jsonrpc.unpack(st, &args__descriptor, m.body, m.body_len, &pm),
                     TETHER_OK);
    assert_int_equal(((Args *)pm)->b, 2);
    tt_pb_free(pm);
    assert_int_equal(tt_codec_jsonrpc.decode_request(
                         st, S("{\"method\":\"C.A\",\"params\":[],\"id\":6}"), &used, &m),
                     TETHER_OK);
    assert_int_equal(m.body_len, 0);
    assert_int_equal(tt_codec_jsonrpc.unpack(st, &args__descriptor, m.body, m.body_len, &pm),
                     TETHER_OK);
    tt_pb_free(pm);
    /* A wrong field type: unpack fails with Go's text for the reply. */
    assert_int_equal(
        tt_codec_jsonrpc.decode_request(
            st, S("{\"method\":\"C.A\",\"params\":[{\"A\":\"x\"}],\"id\":7}"), &used, &m),
        TETHER_OK);
    assert_int_equal(tt_codec_jsonrpc.unpack(st, &args__descriptor, m.body, m.body_len, &pm),
                     TETHER_EBADREQUEST);
    assert_string_equal(tt_jsonrpc_last_error(st),
                        "json: cannot unmarshal string into Go struct field Args.A of type int64");
    /* No method, an escaped method. */
    assert_int_equal(
        tt_codec_jsonrpc.decode_request(st, S("{\"params\":[{}],\"id\":8}"), &used, &m), TETHER_OK);
    assert_non_null(m.method);
    assert_int_equal(m.method_len, 0);
    assert_int_equal(tt_codec_jsonrpc.decode_request(
                         st, S("{\"method\":\"C.\\u0041dd\",\"params\":[{}],\"id\":9}"), &used, &m),
                     TETHER_OK);
    assert_int_equal(m.method_len, 5);
    assert_memory_equal(m.method, "C.Add", 5);
    /* Connection-breaking input. */
    assert_int_equal(tt_codec_jsonrpc.decode_request(st, S("hello\n"), &used, &m), TETHER_EPROTO);
    free_state(st);
    st = new_state(1 << 20);
    assert_int_equal(
        tt_codec_jsonrpc.decode_request(st, S("{\"method\":1,\"params\":[{}]}"), &used, &m),
        TETHER_EPROTO);
    free_state(st);
    st = new_state(1 << 20);
    assert_int_equal(tt_codec_jsonrpc.decode_request(st, S("{\"method\":\"a\" \"b\"}"), &used, &m),
                     TETHER_EPROTO);
    free_state(st);
    st = new_state(1 << 20);
    assert_int_equal(tt_codec_jsonrpc.decode_request(st, S("{\"method\":\"a\"]"), &used, &m),
                     TETHER_EPROTO);
    tt_buf_free(&out);
    free_state(st);
}

/* Pipelined requests and byte-by-byte arrival. */
static void
test_stream(void **state)
{
    static const char two[] = "{\"method\":\"C.A\",\"params\":[{\"A\":\"}{[\\\"\"}],\"id\":1}"
                              "{\"method\":\"C.B\",\"params\":[{}],\"id\":2}";
    void *st = new_state(1 << 20);
    tt_rpc_msg m;
    size_t used;
    size_t n = sizeof(two) - 1;
    size_t off = 0;
    int got = 0;
    /* Offer one more byte each time, as a slow sender would. */
    for (size_t avail = 1; avail <= n; avail++) {
        tether_err e =
            tt_codec_jsonrpc.decode_request(st, (const uint8_t *)two + off, avail - off, &used, &m);
        if (e == TETHER_EAGAIN) {
            continue;
        }
        assert_int_equal(e, TETHER_OK);
        assert_non_null(m.method);
        off += used;
        got++;
        assert_int_equal(m.seq, (uint64_t)got);
    }
    assert_int_equal(got, 2);
    assert_int_equal(off, n);
    free_state(st);
}

static void
test_limits(void **state)
{
    void *st = new_state(64);
    tt_rpc_msg m;
    size_t used;
    char big[200];
    memset(big, ' ', sizeof(big));
    memcpy(big, "{\"method\":\"C.A\",\"params\":[{}],\"x\":\"", 36);
    assert_int_equal(tt_codec_jsonrpc.decode_request(st, (const uint8_t *)big, 60, &used, &m),
                     TETHER_EAGAIN);
    assert_int_equal(
        tt_codec_jsonrpc.decode_request(st, (const uint8_t *)big, sizeof(big), &used, &m),
        TETHER_EMSGSIZE);
    free_state(st);

    /* Replies larger than max_msg are refused and leave out unchanged. */
    st = new_state(20);
    tt_buf out = {0};
    Codectest__Inner in = CODECTEST__INNER__INIT;
    in.name = "a rather long name that does not fit";
    assert_int_equal(tt_codec_jsonrpc.encode_reply(st, &out, 1, "C.A", 3, &in.base),
                     TETHER_EMSGSIZE);
    assert_int_equal(out.len, 0);
    assert_int_equal(tt_codec_jsonrpc.encode_reply(st, &out, 1, "C.A", 3, NULL), TETHER_EINVAL);
    tt_buf_free(&out);
    free_state(st);

    /* Kept (non-numeric) ids are bounded. */
    st = new_state(1 << 20);
    tether_err e = TETHER_OK;
    for (int i = 0; i <= TT_JSONRPC_MAX_IDS && e == TETHER_OK; i++) {
        e = tt_codec_jsonrpc.decode_request(
            st, S("{\"method\":\"C.A\",\"params\":[],\"id\":\"s\"}"), &used, &m);
    }
    assert_int_equal(e, TETHER_ELIMIT);
    free_state(st);

    /* Nesting beyond the limit is a protocol error. */
    st = new_state(1 << 20);
    char deep[300];
    size_t n = (size_t)snprintf(deep, sizeof(deep), "{\"method\":\"C.A\",\"params\":");
    for (int i = 0; i < 100; i++) {
        deep[n++] = '[';
    }
    for (int i = 0; i < 100; i++) {
        deep[n++] = ']';
    }
    deep[n++] = '}';
    assert_int_equal(tt_codec_jsonrpc.decode_request(st, (const uint8_t *)deep, n, &used, &m),
                     TETHER_EPROTO);
    free_state(st);
}

/* A request with a string id of idlen bytes on the wire (quotes
 * included), made of '<' so that re-encoding makes it six times longer. */
static size_t
id_request(char *buf, size_t cap, size_t idlen)
{
    size_t n = (size_t)snprintf(buf, cap, "{\"method\":\"C.A\",\"params\":[{}],\"id\":\"");
    assert_true(n + idlen + 2 < cap);
    memset(buf + n, '<', idlen - 2);
    n += idlen - 2;
    memcpy(buf + n, "\"}", 2);
    return n + 2;
}

/* Non-numeric ids: bounded in length and in the bytes they hold, and
 * released by the error reply even when that reply cannot be written. */
static void
test_id_bounds(void **state)
{
    static char req[4096];
    tt_rpc_msg m;
    size_t used;
    size_t held;
    void *st = new_state(1 << 20);
    size_t n = id_request(req, sizeof(req), TT_JSONRPC_MAX_ID_LEN);
    assert_int_equal(tt_codec_jsonrpc.decode_request(st, (const uint8_t *)req, n, &used, &m),
                     TETHER_OK);
    assert_int_equal(tt_jsonrpc_held_ids(st, &held), 1);
    /* Re-encoded: each '<' is \u003c. */
    assert_true(held >= 6 * (TT_JSONRPC_MAX_ID_LEN - 2) + 2);
    assert_true(held <= 6 * (TT_JSONRPC_MAX_ID_LEN - 2) + 2 + 64);
    tt_buf out = {0};
    assert_int_equal(tt_codec_jsonrpc.encode_error(st, &out, m.seq, "C.A", 3, TETHER_EREMOTE, "x"),
                     TETHER_OK);
    out.len = 0;
    assert_int_equal(tt_jsonrpc_held_ids(st, &held), 0);
    assert_int_equal(held, 0);
    /* One byte longer: refused, with a reason, and nothing kept. */
    n = id_request(req, sizeof(req), TT_JSONRPC_MAX_ID_LEN + 1);
    assert_int_equal(tt_codec_jsonrpc.decode_request(st, (const uint8_t *)req, n, &used, &m),
                     TETHER_ELIMIT);
    assert_non_null(strstr(tt_jsonrpc_last_error(st), "request id"));
    assert_int_equal(tt_jsonrpc_held_ids(st, NULL), 0);
    free_state(st);

    /* The reply does not fit the message limit, nor does the error reply
     * (the echoed id alone is over it): the id is released all the same. */
    st = new_state(1000);
    n = id_request(req, sizeof(req), TT_JSONRPC_MAX_ID_LEN);
    assert_int_equal(tt_codec_jsonrpc.decode_request(st, (const uint8_t *)req, n, &used, &m),
                     TETHER_OK);
    Codectest__Inner in = CODECTEST__INNER__INIT;
    in.name = "x";
    assert_int_equal(tt_codec_jsonrpc.encode_reply(st, &out, m.seq, "C.A", 3, &in.base),
                     TETHER_EMSGSIZE);
    assert_int_equal(tt_jsonrpc_held_ids(st, NULL), 1); /* kept for the error reply */
    assert_int_equal(tt_codec_jsonrpc.encode_error(st, &out, m.seq, "C.A", 3, TETHER_EMSGSIZE,
                                                   "rpc: reply larger than the message limit"),
                     TETHER_EMSGSIZE);
    assert_int_equal(tt_jsonrpc_held_ids(st, &held), 0);
    assert_int_equal(held, 0);
    assert_int_equal(out.len, 0);
    free_state(st);

    /* Many sane ids waiting: the byte budget stops them long before the
     * count limit, and the bytes held never pass it. */
    st = new_state(1 << 20);
    n = id_request(req, sizeof(req), TT_JSONRPC_MAX_ID_LEN);
    tether_err e = TETHER_OK;
    int kept = 0;
    while (e == TETHER_OK && kept <= TT_JSONRPC_MAX_IDS) {
        e = tt_codec_jsonrpc.decode_request(st, (const uint8_t *)req, n, &used, &m);
        if (e == TETHER_OK) {
            kept++;
        }
        tt_jsonrpc_held_ids(st, &held);
        assert_true(held <= TT_JSONRPC_ID_BUDGET);
    }
    assert_int_equal(e, TETHER_ELIMIT);
    assert_true(kept < TT_JSONRPC_MAX_IDS);
    assert_true(kept >= TT_JSONRPC_ID_BUDGET / (6 * TT_JSONRPC_MAX_ID_LEN + 64));
    assert_non_null(strstr(tt_jsonrpc_last_error(st), "bytes"));
    tt_buf_free(&out);
    free_state(st);
}

/* The rich message through Go's client request and Go's server reply. */
static void
test_rich_vectors(void **state)
{
    size_t len;
    unsigned char *req = read_vector("jsonrpc/rich_client.json", &len);
    assert_non_null(req);
    void *st = new_state(1 << 20);
    tt_rpc_msg m;
    size_t used;
    assert_int_equal(tt_codec_jsonrpc.decode_request(st, req, len, &used, &m), TETHER_OK);
    assert_memory_equal(m.method, "Codec.Echo", m.method_len);
    ProtobufCMessage *pm;
    assert_int_equal(
        tt_codec_jsonrpc.unpack(st, &codectest__rich__descriptor, m.body, m.body_len, &pm),
        TETHER_OK);
    assert_true(rich_equal((Codectest__Rich *)pm, rich_new()));

    /* Our client's request for the same value is Go's, byte for byte. */
    tt_buf out = {0};
    assert_int_equal(
        tt_codec_jsonrpc.encode_request(st, &out, 0, "Codec.Echo", 10, &rich_new()->base),
        TETHER_OK);
    assert_int_equal(out.len, len);
    assert_memory_equal(out.data, req, len);
    out.len = 0;

    /* And our reply with the decoded value is Go's server's reply. */
    unsigned char *rep = read_vector("jsonrpc/rich_server.json", &len);
    assert_non_null(rep);
    assert_int_equal(tt_codec_jsonrpc.encode_reply(st, &out, m.seq, m.method, m.method_len, pm),
                     TETHER_OK);
    assert_int_equal(out.len, len);
    assert_memory_equal(out.data, rep, len);
    tt_pb_free(pm);
    assert_int_equal(tt_codec_jsonrpc.decode_reply(st, rep, len, &used, &m), TETHER_OK);
    assert_int_equal(used, len);
    assert_int_equal(
        tt_codec_jsonrpc.unpack(st, &codectest__rich__descriptor, m.body, m.body_len, &pm),
        TETHER_OK);
    assert_true(rich_equal((Codectest__Rich *)pm, rich_new()));
    tt_pb_free(pm);
    tt_buf_free(&out);
    free(req);
    free(rep);
    free_state(st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe),        cmocka_unit_test(test_go_client_session),
        cmocka_unit_test(test_client_side),  cmocka_unit_test(test_odd_requests),
        cmocka_unit_test(test_stream),       cmocka_unit_test(test_limits),
        cmocka_unit_test(test_rich_vectors), cmocka_unit_test(test_id_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
