/*
 * test_gob.c - the gob codec against Go's own bytes: protocol-notes 3.4
 * and the streams in tests/data/gob written by Go's net/rpc client and
 * server (tests/interop/gen).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../proto/codectest_util.h"
#include "codec/gob/gob.h"
#include "codec/gob/gob_int.h"
#include "codec/pbjson/pbutil.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

static void *
new_state(size_t max_msg)
{
    void *st = calloc(1, tt_codec_gob.state_size);
    assert_int_equal(tt_codec_gob.init(st, max_msg), TETHER_OK);
    return st;
}

static void
free_state(void *st)
{
    tt_codec_gob.fini(st);
    free(st);
}

/* Decode the next request or reply, looping over definition-only steps. */
static tether_err
next_msg(void *st, bool reply, const uint8_t *p, size_t n, size_t *off, tt_rpc_msg *m)
{
    for (;;) {
        size_t used;
        tether_err e = reply ? tt_codec_gob.decode_reply(st, p + *off, n - *off, &used, m)
                             : tt_codec_gob.decode_request(st, p + *off, n - *off, &used, m);
        if (e != TETHER_OK) {
            return e;
        }
        *off += used;
        if (m->method != NULL) {
            return TETHER_OK;
        }
    }
}

static void
test_probe(void **state)
{
    assert_int_equal(tt_codec_gob.probe(S("\x2f\xff\x81\x03")), 1);
    assert_int_equal(tt_codec_gob.probe(S("\x2f")), -1);
    assert_int_equal(tt_codec_gob.probe(S("\x2f\xff")), -1);
    assert_int_equal(tt_codec_gob.probe(S("")), -1);
    /* A long definition (length >= 128) and a large id. */
    assert_int_equal(tt_codec_gob.probe(S("\xff\x90\xfe\x0f\xa1")), 1);
    assert_int_equal(tt_codec_gob.probe(S("\xf5TETHER\x01")), 0);
    assert_int_equal(tt_codec_gob.probe(S("{\"method\"")), 0);
    assert_int_equal(tt_codec_gob.probe(S(" {")), 0);
    assert_int_equal(tt_codec_gob.probe(S("\n{")), 0);
    assert_int_equal(tt_codec_gob.probe(S("CONNECT ")), 0);
    /* A value (positive id) first is not how a client starts. */
    assert_int_equal(tt_codec_gob.probe(S("\x13\xff\x82")), 0);
}

struct call {
    const char *method;
    int64_t a, b;
    const char *err; /* the server's answer */
    int64_t reply;
};

static const struct call calc_calls[] = {
    {"Calculator.Add", 1, 2, NULL, 3},
    {"Calculator.Add", 1, 2, NULL, 3},
    {"Calculator.Add", -5, 300, NULL, 295},
    {"Calculator.Div", 1, 0, "divide by zero", 0},
    {"Calculator.Nope", 1, 2, "rpc: can't find method Calculator.Nope", 0},
    {"Calculator.Add", 0, 0, NULL, 0},
};

/* Serve Go's client stream; our replies equal Go's server's, byte for byte. */
static void
test_server_session(void **state)
{
    size_t len;
    size_t want_len;
    unsigned char *in = read_vector("gob/calc_client.bin", &len);
    unsigned char *want = read_vector("gob/calc_server.bin", &want_len);
    assert_non_null(in);
    assert_non_null(want);
    void *st = new_state(1 << 20);
    tt_buf out = {0};
    size_t off = 0;
    for (uint64_t i = 0; i < 6; i++) {
        const struct call *c = &calc_calls[i];
        tt_rpc_msg m;
        assert_int_equal(next_msg(st, false, in, len, &off, &m), TETHER_OK);
        assert_int_equal(m.seq, i);
        assert_int_equal(m.method_len, strlen(c->method));
        assert_memory_equal(m.method, c->method, m.method_len);
        ProtobufCMessage *pm;
        assert_int_equal(tt_codec_gob.unpack(st, &args__descriptor, m.body, m.body_len, &pm),
                         TETHER_OK);
        assert_int_equal(((Args *)pm)->a, c->a);
        assert_int_equal(((Args *)pm)->b, c->b);
        tt_pb_free(pm);
        if (c->err != NULL) {
            assert_int_equal(tt_codec_gob.encode_error(st, &out, m.seq, m.method, m.method_len,
                                                       TETHER_EREMOTE, c->err),
                             TETHER_OK);
        } else {
            Google__Protobuf__Int64Value r = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
            r.value = c->reply;
            assert_int_equal(
                tt_codec_gob.encode_reply(st, &out, m.seq, m.method, m.method_len, &r.base),
                TETHER_OK);
        }
    }
    assert_int_equal(off, len);
    size_t used;
    tt_rpc_msg m;
    assert_int_equal(tt_codec_gob.decode_request(st, in + len, 0, &used, &m), TETHER_EAGAIN);
    assert_int_equal(out.len, want_len);
    assert_memory_equal(out.data, want, want_len);
    tt_buf_free(&out);
    free(in);
    free(want);
    free_state(st);
}

/* As a client: our requests equal Go's client's; Go's replies decode,
 * also from a server whose ids do not start at 65. */
static void
test_client_session(void **state)
{
    size_t len;
    unsigned char *want = read_vector("gob/calc_client.bin", &len);
    assert_non_null(want);
    void *st = new_state(1 << 20);
    tt_buf out = {0};
    for (uint64_t i = 0; i < 6; i++) {
        Args a = ARGS__INIT;
        a.a = calc_calls[i].a;
        a.b = calc_calls[i].b;
        assert_int_equal(tt_codec_gob.encode_request(st, &out, i, calc_calls[i].method,
                                                     strlen(calc_calls[i].method), &a.base),
                         TETHER_OK);
    }
    assert_int_equal(out.len, len);
    assert_memory_equal(out.data, want, len);
    tt_buf_free(&out);
    free(want);
    free_state(st);

    const char *files[] = {"gob/calc_server.bin", "gob/calc_server_shifted.bin"};
    for (int f = 0; f < 2; f++) {
        unsigned char *in = read_vector(files[f], &len);
        assert_non_null(in);
        st = new_state(1 << 20);
        size_t off = 0;
        for (uint64_t i = 0; i < 6; i++) {
            tt_rpc_msg m;
            assert_int_equal(next_msg(st, true, in, len, &off, &m), TETHER_OK);
            assert_int_equal(m.seq, i);
            assert_memory_equal(m.method, calc_calls[i].method, m.method_len);
            if (calc_calls[i].err != NULL) {
                assert_int_equal(m.status, TETHER_EREMOTE);
                assert_int_equal(m.errtext_len, strlen(calc_calls[i].err));
                assert_memory_equal(m.errtext, calc_calls[i].err, m.errtext_len);
                continue;
            }
            assert_int_equal(m.status, TETHER_OK);
            ProtobufCMessage *pm;
            assert_int_equal(tt_codec_gob.unpack(st, &google__protobuf__int64_value__descriptor,
                                                 m.body, m.body_len, &pm),
                             TETHER_OK);
            assert_int_equal(((Google__Protobuf__Int64Value *)pm)->value, calc_calls[i].reply);
            tt_pb_free(pm);
        }
        assert_int_equal(off, len);
        free(in);
        free_state(st);
    }
}

/* Bytes arriving one at a time: requests come out whole, in order. */
static void
test_trickle(void **state)
{
    size_t len;
    unsigned char *in = read_vector("gob/calc_client.bin", &len);
    assert_non_null(in);
    void *st = new_state(1 << 20);
    size_t off = 0;
    uint64_t got = 0;
    int defs_only = 0;
    for (size_t avail = 1; avail <= len; avail++) {
        for (;;) {
            tt_rpc_msg m;
            size_t used;
            tether_err e = tt_codec_gob.decode_request(st, in + off, avail - off, &used, &m);
            if (e == TETHER_EAGAIN) {
                break;
            }
            assert_int_equal(e, TETHER_OK);
            off += used;
            if (m.method == NULL) {
                defs_only++;
                continue;
            }
            assert_int_equal(m.seq, got);
            got++;
        }
    }
    assert_int_equal(got, 6);
    assert_int_equal(off, len);
    /* The Request definition went on its own before its header came. */
    assert_true(defs_only >= 1);
    free(in);
    free_state(st);
}

/* Replace the first "[]main.Inner" definition name by "[]Inner" (Go
 * names element types with their package, which tether cannot know; the
 * name is informational only) and fix the message's length byte. */
static size_t
patch_inner_name(unsigned char *b, size_t len)
{
    static const char from[] = "\x0c[]main.Inner";
    for (size_t i = 0; i + sizeof(from) - 1 <= len; i++) {
        if (memcmp(b + i, from, sizeof(from) - 1) == 0) {
            /* The definition message starts 6 bytes earlier: len, ff xx, 02 01 01. */
            assert_int_equal(b[i - 6], 0x1b);
            b[i - 6] -= 5;
            b[i] = 7;
            memmove(b + i + 3, b + i + 8, len - i - 8);
            memcpy(b + i + 1, "[]", 2);
            return len - 5;
        }
    }
    fail_msg("no []main.Inner in vector");
    return len;
}

static void
test_rich(void **state)
{
    size_t len;
    unsigned char *in = read_vector("gob/rich_client.bin", &len);
    size_t elen;
    unsigned char *empty = read_vector("gob/rich_client_empty.bin", &elen);
    assert_non_null(in);
    assert_non_null(empty);
    void *st = new_state(1 << 20);
    size_t off = 0;
    tt_rpc_msg m;
    assert_int_equal(next_msg(st, false, in, len, &off, &m), TETHER_OK);
    assert_int_equal(off, len);
    assert_memory_equal(m.method, "Codec.Echo", m.method_len);
    ProtobufCMessage *pm;
    assert_int_equal(tt_codec_gob.unpack(st, &codectest__rich__descriptor, m.body, m.body_len, &pm),
                     TETHER_OK);
    assert_true(rich_equal((Codectest__Rich *)pm, rich_new()));
    assert_string_equal(((Codectest__Rich *)pm)->name, rich_new()->name);
    tt_pb_free(pm);
    /* The second call reuses the first call's definitions. */
    off = 0;
    assert_int_equal(next_msg(st, false, empty, elen, &off, &m), TETHER_OK);
    assert_int_equal(m.seq, 1);
    assert_int_equal(tt_codec_gob.unpack(st, &codectest__rich__descriptor, m.body, m.body_len, &pm),
                     TETHER_OK);
    Codectest__Rich *e = (Codectest__Rich *)pm;
    assert_int_equal(e->n_values, 0);
    assert_null(e->child);
    assert_int_equal(e->big, 0);
    tt_pb_free(pm);

    /* Our reply is Go's server's reply (but for the package in one name). */
    size_t wlen;
    unsigned char *want = read_vector("gob/rich_server.bin", &wlen);
    assert_non_null(want);
    wlen = patch_inner_name(want, wlen);
    void *srv = new_state(1 << 20);
    tt_buf out = {0};
    assert_int_equal(tt_codec_gob.encode_reply(srv, &out, 0, "Codec.Echo", 10, &rich_new()->base),
                     TETHER_OK);
    Codectest__Rich zero = CODECTEST__RICH__INIT;
    assert_int_equal(tt_codec_gob.encode_reply(srv, &out, 1, "Codec.Echo", 10, &zero.base),
                     TETHER_OK);
    assert_int_equal(out.len, wlen);
    assert_memory_equal(out.data, want, wlen);

    /* Our request is Go's client's likewise. */
    void *cli = new_state(1 << 20);
    out.len = 0;
    assert_int_equal(tt_codec_gob.encode_request(cli, &out, 0, "Codec.Echo", 10, &rich_new()->base),
                     TETHER_OK);
    size_t ilen = patch_inner_name(in, len);
    assert_int_equal(out.len, ilen);
    assert_memory_equal(out.data, in, ilen);
    tt_buf_free(&out);
    free_state(cli);
    free_state(srv);
    free(want);
    free(in);
    free(empty);
    free_state(st);
}

/* Encode then decode every field kind through our own codec. */
static void
test_roundtrip(void **state)
{
    void *cli = new_state(1 << 20);
    void *srv = new_state(1 << 20);
    tt_buf out = {0};
    Codectest__Rich *r = rich_new();
    assert_int_equal(tt_codec_gob.encode_request(cli, &out, 77, "Codec.Echo", 10, &r->base),
                     TETHER_OK);
    tt_rpc_msg m;
    size_t off = 0;
    assert_int_equal(next_msg(srv, false, out.data, out.len, &off, &m), TETHER_OK);
    assert_int_equal(m.seq, 77);
    ProtobufCMessage *pm;
    assert_int_equal(
        tt_codec_gob.unpack(srv, &codectest__rich__descriptor, m.body, m.body_len, &pm), TETHER_OK);
    Codectest__Rich *d = (Codectest__Rich *)pm;
    assert_true(rich_equal(d, r));
    tt_pb_free(pm);
    /* Decoding into a different but name-compatible type: Inner from Rich
     * takes Name, and field names match case-insensitively. */
    assert_int_equal(
        tt_codec_gob.unpack(srv, &codectest__inner__descriptor, m.body, m.body_len, &pm),
        TETHER_OK);
    assert_string_equal(((Codectest__Inner *)pm)->name, r->name);
    tt_pb_free(pm);
    /* A struct cannot become an Int64Value, nor an int become Args. */
    assert_int_equal(tt_codec_gob.unpack(srv, &google__protobuf__int64_value__descriptor, m.body,
                                         m.body_len, &pm),
                     TETHER_EBADREQUEST);
    assert_non_null(strstr(tt_gob_last_error(srv), "gob:"));
    assert_int_equal(tt_codec_gob.unpack(srv, &args__descriptor, S("\x04\x00\x06"), &pm),
                     TETHER_EBADREQUEST);

    /* A oneof member travels as a plain field. */
    Codectest__Pick pick = CODECTEST__PICK__INIT;
    pick.choice_case = CODECTEST__PICK__CHOICE_TEXT;
    pick.text = "chosen";
    out.len = 0;
    assert_int_equal(tt_codec_gob.encode_request(cli, &out, 78, "Codec.Pick", 10, &pick.base),
                     TETHER_OK);
    off = 0;
    assert_int_equal(next_msg(srv, false, out.data, out.len, &off, &m), TETHER_OK);
    assert_int_equal(
        tt_codec_gob.unpack(srv, &codectest__pick__descriptor, m.body, m.body_len, &pm), TETHER_OK);
    assert_int_equal(((Codectest__Pick *)pm)->choice_case, CODECTEST__PICK__CHOICE_TEXT);
    assert_string_equal(((Codectest__Pick *)pm)->text, "chosen");
    tt_pb_free(pm);
    tt_buf_free(&out);
    free_state(cli);
    free_state(srv);
}

static void
test_errors(void **state)
{
    void *st = new_state(1 << 20);
    tt_rpc_msg m;
    size_t used;
    /* Not gob at all. */
    assert_int_equal(tt_codec_gob.decode_request(st, S("\xf5TETHER\x01"), &used, &m),
                     TETHER_EPROTO);
    free_state(st);

    /* A definition alone is consumed; defining its id again is refused. */
    static const uint8_t def[] = "\x0c\xff\x81\x02\x01\x02\xff\x82\x00\x01\x04\x00\x00";
    st = new_state(1 << 20);
    assert_int_equal(tt_codec_gob.decode_request(st, def, sizeof(def) - 1, &used, &m), TETHER_OK);
    assert_null(m.method);
    assert_int_equal(used, sizeof(def) - 1);
    assert_int_equal(tt_codec_gob.decode_request(st, def, sizeof(def) - 1, &used, &m),
                     TETHER_EPROTO);
    free_state(st);

    /* Too many definitions. */
    st = new_state(1 << 20);
    tether_err e = TETHER_OK;
    for (int id = 65; e == TETHER_OK; id++) {
        tt_buf b = {0};
        size_t mark;
        extern tether_err tt_gob_msg_begin(tt_buf *, size_t *);
        extern tether_err tt_gob_msg_end(tt_buf *, size_t);
        extern tether_err tt_gob_put_int(tt_buf *, int64_t);
        extern tether_err tt_gob_put_uint(tt_buf *, uint64_t);
        tt_gob_msg_begin(&b, &mark);
        tt_gob_put_int(&b, -id);
        tt_gob_put_uint(&b, 2); /* slice */
        tt_gob_put_uint(&b, 1); /* its CommonType */
        tt_gob_put_uint(&b, 2); /* CommonType.Id, no name */
        tt_gob_put_int(&b, id);
        tt_gob_put_uint(&b, 0);
        tt_gob_put_uint(&b, 1); /* Elem int */
        tt_gob_put_int(&b, 2);
        tt_gob_put_uint(&b, 0);
        tt_gob_put_uint(&b, 0);
        tt_gob_msg_end(&b, mark);
        e = tt_codec_gob.decode_request(st, b.data, b.len, &used, &m);
        tt_buf_free(&b);
        if (id > 65 + TT_GOB_MAX_TYPES + 5) {
            break;
        }
    }
    assert_int_equal(e, TETHER_ELIMIT);
    free_state(st);

    /* Oversized message: refused from its length prefix alone. */
    st = new_state(100);
    assert_int_equal(tt_codec_gob.decode_request(st, S("\xfe\x10\x00\xff\x81"), &used, &m),
                     TETHER_EMSGSIZE);
    free_state(st);

    /* A Request header whose Seq is an int: Go's server drops such a
     * client, so do we. */
    static const uint8_t badseq[] =
        "\x2f\xff\x81\x03\x01\x01\x07Request\x01\xff\x82\x00\x01\x02"
        "\x01\x0dServiceMethod\x01\x0c\x00\x01\x03Seq\x01\x04\x00\x00\x00"
        "\x06\xff\x82\x01\x01\x41\x00"
        "\x03\x04\x00\x06";
    st = new_state(1 << 20);
    size_t off = 0;
    assert_int_equal(next_msg(st, false, badseq, sizeof(badseq) - 1, &off, &m), TETHER_EPROTO);
    free_state(st);

    /* Truncated and malformed values fail cleanly in unpack. */
    size_t len;
    unsigned char *in = read_vector("gob/rich_client.bin", &len);
    assert_non_null(in);
    st = new_state(1 << 20);
    off = 0;
    assert_int_equal(next_msg(st, false, in, len, &off, &m), TETHER_OK);
    for (size_t cut = 0; cut < m.body_len; cut++) {
        ProtobufCMessage *pm = NULL;
        tether_err r = tt_codec_gob.unpack(st, &codectest__rich__descriptor, m.body, cut, &pm);
        assert_int_equal(r, TETHER_EBADREQUEST);
        assert_null(pm);
    }
    free(in);
    free_state(st);
}

/* Errors sent twice define struct{} once; a failed encode leaves no trace. */
static void
test_encode_limits(void **state)
{
    void *st = new_state(64);
    tt_buf out = {0};
    Codectest__Inner in = CODECTEST__INNER__INIT;
    in.name = "a name long enough to pass the sixty-four byte limit of this state";
    assert_int_equal(tt_codec_gob.encode_reply(st, &out, 1, "C.A", 3, &in.base), TETHER_EMSGSIZE);
    assert_int_equal(out.len, 0);
    /* The definitions of the failed call are sent again next time. */
    in.name = "short";
    assert_int_equal(tt_codec_gob.encode_reply(st, &out, 1, "C.A", 3, &in.base), TETHER_EMSGSIZE);
    free_state(st);

    st = new_state(1 << 20);
    in.name = "short";
    assert_int_equal(tt_codec_gob.encode_reply(st, &out, 1, "C.A", 3, &in.base), TETHER_OK);
    /* Decoding our own reply stream. */
    void *cli = new_state(1 << 20);
    tt_rpc_msg m;
    size_t off = 0;
    assert_int_equal(next_msg(cli, true, out.data, out.len, &off, &m), TETHER_OK);
    ProtobufCMessage *pm;
    assert_int_equal(
        tt_codec_gob.unpack(cli, &codectest__inner__descriptor, m.body, m.body_len, &pm),
        TETHER_OK);
    assert_string_equal(((Codectest__Inner *)pm)->name, "short");
    tt_pb_free(pm);
    out.len = 0;
    assert_int_equal(tt_codec_gob.encode_error(st, &out, 2, "C.A", 3, TETHER_EREMOTE, "x"),
                     TETHER_OK);
    size_t first = out.len;
    assert_int_equal(tt_codec_gob.encode_error(st, &out, 3, "C.A", 3, TETHER_EREMOTE, "x"),
                     TETHER_OK);
    /* Second time: no struct{} definition (11 bytes). */
    assert_int_equal(out.len - first, first - 11);
    assert_int_equal(tt_codec_gob.encode_error(st, &out, 4, "C.A", 3, TETHER_EREMOTE, NULL),
                     TETHER_OK);
    off = 0;
    assert_int_equal(next_msg(cli, true, out.data, out.len, &off, &m), TETHER_OK);
    assert_int_equal(m.status, TETHER_EREMOTE);
    assert_int_equal(next_msg(cli, true, out.data, out.len, &off, &m), TETHER_OK);
    assert_int_equal(m.seq, 3);
    assert_int_equal(next_msg(cli, true, out.data, out.len, &off, &m), TETHER_OK);
    assert_memory_equal(m.errtext, tether_strerror(TETHER_EREMOTE), m.errtext_len);
    assert_int_equal(off, out.len);
    free_state(cli);
    tt_buf_free(&out);
    free_state(st);
}

/* Append the definition of struct type id with fields names[i] of type
 * ids[i] (names NULL: n fields with two-letter names, all int). */
static void
put_struct_def(tt_buf *b, int64_t id, const char *const *names, const int64_t *ids, size_t n)
{
    size_t mark;
    assert_int_equal(tt_gob_msg_begin(b, &mark), TETHER_OK);
    tt_gob_put_int(b, -id);
    tt_gob_put_uint(b, GOB_K_STRUCT); /* wireType.StructT */
    tt_gob_put_uint(b, 1);            /* structType.CommonType */
    tt_gob_put_uint(b, 1);
    tt_gob_put_bytes(b, "T", 1);
    tt_gob_put_uint(b, 1);
    tt_gob_put_int(b, id);
    tt_gob_put_uint(b, 0);
    if (n > 0) {
        tt_gob_put_uint(b, 1); /* structType.Field */
        tt_gob_put_uint(b, n);
        for (size_t i = 0; i < n; i++) {
            char nm[2] = {(char)('A' + i % 26), (char)('a' + (i / 26) % 26)};
            tt_gob_put_uint(b, 1);
            if (names != NULL) {
                tt_gob_put_bytes(b, names[i], strlen(names[i]));
            } else {
                tt_gob_put_bytes(b, nm, 2);
            }
            tt_gob_put_uint(b, 1);
            tt_gob_put_int(b, ids != NULL ? ids[i] : GOB_INT);
            tt_gob_put_uint(b, 0);
        }
    }
    tt_gob_put_uint(b, 0);
    tt_gob_put_uint(b, 0);
    assert_int_equal(tt_gob_msg_end(b, mark), TETHER_OK);
}

/* The Request definition (id 65) and a header for method "C.A". */
static void
put_request_header(tt_buf *b)
{
    static const char *const names[] = {"ServiceMethod", "Seq"};
    static const int64_t ids[] = {GOB_STRING, GOB_UINT};
    put_struct_def(b, 65, names, ids, 2);
    size_t mark;
    tt_gob_msg_begin(b, &mark);
    tt_gob_put_int(b, 65);
    tt_gob_put_uint(b, 1);
    tt_gob_put_bytes(b, "C.A", 3);
    tt_gob_put_uint(b, 0);
    tt_gob_msg_end(b, mark);
}

/* An empty struct value of type 65 as the body. */
static void
put_body(tt_buf *b)
{
    size_t mark;
    tt_gob_msg_begin(b, &mark);
    tt_gob_put_int(b, 65);
    tt_gob_put_uint(b, 0);
    tt_gob_msg_end(b, mark);
}

/* A header, many definitions behind it, then the body, arriving a byte at
 * a time: every call resumes the scan, so the messages looked at stay
 * linear in the bytes (a rescan from the header each time is quadratic). */
static void
test_trickle_behind_header(void **state)
{
    tt_buf b = {0};
    put_request_header(&b);
    for (int i = 0; i < 300; i++) {
        put_struct_def(&b, 100 + i, NULL, NULL, 1);
    }
    put_body(&b);
    void *st = new_state(1 << 20);
    size_t off = 0;
    int got = 0;
    for (size_t avail = 1; avail <= b.len; avail++) {
        for (;;) {
            tt_rpc_msg m;
            size_t used;
            tether_err e = tt_codec_gob.decode_request(st, b.data + off, avail - off, &used, &m);
            if (e == TETHER_EAGAIN) {
                break;
            }
            assert_int_equal(e, TETHER_OK);
            off += used;
            if (m.method != NULL) {
                assert_memory_equal(m.method, "C.A", 3);
                got++;
            }
        }
    }
    assert_int_equal(got, 1);
    assert_int_equal(off, b.len);
    assert_int_equal(tt_gob_held_types(st, NULL), 301);
    gob_state *gs = st;
    print_message("%zu bytes in, %llu messages looked at behind the header\n", b.len,
                  (unsigned long long)gs->scan_steps);
    assert_true(gs->scan_steps <= 2 * b.len);
    free_state(st);
    tt_buf_free(&b);
}

/* Definitions parked behind a header that has no body yet count against
 * the type limit: the stream breaks instead of buffering them all. */
static void
test_pending_definitions(void **state)
{
    tt_buf b = {0};
    put_request_header(&b);
    for (int i = 0; i < TT_GOB_MAX_TYPES + 1; i++) {
        put_struct_def(&b, 100 + i, NULL, NULL, 0);
    }
    void *st = new_state(16u << 20);
    tt_rpc_msg m;
    size_t used;
    assert_int_equal(tt_codec_gob.decode_request(st, b.data, b.len, &used, &m), TETHER_ELIMIT);
    assert_non_null(strstr(tt_gob_last_error(st), "waiting for a body"));
    free_state(st);
    tt_buf_free(&b);
}

/* Type definitions: compact (16 bytes a field plus its name, one block a
 * type) and bounded per stream in fields and in bytes held. */
static void
test_definition_budget(void **state)
{
    void *st = new_state(16u << 20);
    tt_buf b = {0};
    tt_rpc_msg m;
    size_t used;
    size_t held;
    put_struct_def(&b, 100, NULL, NULL, TT_GOB_MAX_FIELDS);
    assert_int_equal(tt_codec_gob.decode_request(st, b.data, b.len, &used, &m), TETHER_OK);
    assert_int_equal(used, b.len);
    assert_int_equal(tt_gob_held_types(st, &held), 1);
    print_message("one type of %d fields: %zu wire bytes, %zu bytes held\n", TT_GOB_MAX_FIELDS,
                  b.len, held);
    assert_true(held <= sizeof(gob_wtype) + TT_GOB_MAX_FIELDS * (sizeof(gob_field) + 2));
    assert_true(sizeof(gob_field) <= 16);
    /* More such types: refused once the stream's field total is reached,
     * never holding more than the budget. */
    tether_err e = TETHER_OK;
    int types = 1;
    while (e == TETHER_OK && types < TT_GOB_MAX_TYPES) {
        b.len = 0;
        put_struct_def(&b, 100 + types, NULL, NULL, TT_GOB_MAX_FIELDS);
        e = tt_codec_gob.decode_request(st, b.data, b.len, &used, &m);
        if (e == TETHER_OK) {
            types++;
        }
        tt_gob_held_types(st, &held);
        assert_true(held <= TT_GOB_TYPE_BUDGET);
    }
    assert_int_equal(e, TETHER_ELIMIT);
    assert_int_equal(types, TT_GOB_MAX_TOTAL_FIELDS / TT_GOB_MAX_FIELDS);
    assert_non_null(strstr(tt_gob_last_error(st), "fields in all"));
    free_state(st);

    /* Long names: the byte budget stops them. */
    st = new_state(16u << 20);
    static char longname[4000];
    memset(longname, 'n', sizeof(longname) - 1);
    const char *names[64];
    int64_t ids[64];
    for (int i = 0; i < 64; i++) {
        names[i] = longname;
        ids[i] = GOB_INT;
    }
    e = TETHER_OK;
    types = 0;
    while (e == TETHER_OK && types < TT_GOB_MAX_TYPES) {
        b.len = 0;
        put_struct_def(&b, 100 + types, names, ids, 64);
        e = tt_codec_gob.decode_request(st, b.data, b.len, &used, &m);
        if (e == TETHER_OK) {
            types++;
        }
        tt_gob_held_types(st, &held);
        assert_true(held <= TT_GOB_TYPE_BUDGET);
    }
    assert_int_equal(e, TETHER_ELIMIT);
    assert_non_null(strstr(tt_gob_last_error(st), "bytes"));
    free_state(st);
    tt_buf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe),          cmocka_unit_test(test_server_session),
        cmocka_unit_test(test_client_session), cmocka_unit_test(test_trickle),
        cmocka_unit_test(test_rich),           cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_errors),         cmocka_unit_test(test_encode_limits),
        cmocka_unit_test(test_trickle_behind_header),
        cmocka_unit_test(test_pending_definitions),
        cmocka_unit_test(test_definition_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
