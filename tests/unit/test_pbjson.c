/*
 * test_pbjson.c - protobuf <-> JSON mapping against Go encoding/json's
 * own output (tests/data/jsonrpc/rich_value.json, from
 * tests/interop/gen) and Go's decoding rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../proto/codectest_util.h"
#include "codec/pbjson/pbjson.h"
#include "codec/pbjson/pbutil.h"

static char *
encode_str(const ProtobufCMessage *m)
{
    tt_buf b = {0};
    assert_int_equal(tt_pbjson_encode(&b, m), TETHER_OK);
    char *s = strndup((const char *)b.data, b.len);
    tt_buf_free(&b);
    return s;
}

static ProtobufCMessage *
decode_ok(const ProtobufCMessageDescriptor *d, const char *text)
{
    ProtobufCMessage *m = NULL;
    char err[TT_PBJSON_ERRLEN];
    tether_err e = tt_pbjson_decode(d, text, strlen(text), &m, err, sizeof(err));
    if (e != TETHER_OK) {
        fail_msg("decode %s: %s", text, err);
    }
    return m;
}

static void
decode_fails(const ProtobufCMessageDescriptor *d, const char *text, const char *want)
{
    ProtobufCMessage *m = (ProtobufCMessage *)1;
    char err[TT_PBJSON_ERRLEN];
    assert_int_equal(tt_pbjson_decode(d, text, strlen(text), &m, err, sizeof(err)),
                     TETHER_EBADREQUEST);
    assert_null(m);
    if (want != NULL) {
        assert_string_equal(err, want);
    }
}

static void
test_args_roundtrip(void **state)
{
    Args a = ARGS__INIT;
    a.a = 1;
    a.b = 2;
    char *s = encode_str(&a.base);
    assert_string_equal(s, "{\"A\":1,\"B\":2}");
    free(s);
    Args *d = (Args *)decode_ok(&args__descriptor, " {\"A\":-5, \"B\" : 300}\n");
    assert_int_equal(d->a, -5);
    assert_int_equal(d->b, 300);
    tt_pb_free(&d->base);
}

static void
test_wrapper_bare(void **state)
{
    Google__Protobuf__Int64Value v = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    v.value = 3;
    char *s = encode_str(&v.base);
    assert_string_equal(s, "3");
    free(s);
    v.value = INT64_MIN;
    s = encode_str(&v.base);
    assert_string_equal(s, "-9223372036854775808");
    free(s);
    Google__Protobuf__Int64Value *d = (Google__Protobuf__Int64Value *)decode_ok(
        &google__protobuf__int64_value__descriptor, "295");
    assert_int_equal(d->value, 295);
    tt_pb_free(&d->base);
    Google__Protobuf__StringValue sv = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
    sv.value = "a<b";
    s = encode_str(&sv.base);
    assert_string_equal(s, "\"a\\u003cb\"");
    free(s);
    decode_fails(&google__protobuf__int64_value__descriptor, "\"x\"",
                 "json: cannot unmarshal string into Go value of type int64");
}

/* Byte-identical to Go's json.Marshal of the same value. */
static void
test_rich_matches_go(void **state)
{
    size_t len;
    unsigned char *want = read_vector("jsonrpc/rich_value.json", &len);
    assert_non_null(want);
    tt_buf b = {0};
    assert_int_equal(tt_pbjson_encode(&b, &rich_new()->base), TETHER_OK);
    assert_int_equal(b.len, len);
    assert_memory_equal(b.data, want, len);
    tt_buf_free(&b);

    /* And Go's text decodes back to the same value. */
    Codectest__Rich *r =
        (Codectest__Rich *)decode_ok(&codectest__rich__descriptor, (const char *)want);
    free(want);
    assert_true(rich_equal(r, rich_new()));
    assert_string_equal(r->name, "h\xc3\xa9llo <w> & \"q\" \\ \n\t\x01 \xe2\x80\xa8 \xef\xbf\xbd");
    tt_pb_free(&r->base);
}

static void
test_empty_and_null(void **state)
{
    Codectest__Rich r = CODECTEST__RICH__INIT;
    char *s = encode_str(&r.base);
    assert_string_equal(s, "{\"Name\":\"\",\"Values\":[],\"Scores\":{},\"Child\":null,\"Tags\":[],"
                           "\"Data\":\"\",\"Ratio\":0,\"Ok\":false,\"Big\":0,\"Small\":0,"
                           "\"USmall\":0,\"F\":0,\"Color\":0,\"Items\":[],\"Labels\":{},"
                           "\"Opt\":null,\"S\":0,\"Ratios\":[]}");
    free(s);
    const char *texts[] = {"", "null", "{}", " {} ", "{\"Child\":null,\"Values\":null}"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        Codectest__Rich *d = (Codectest__Rich *)decode_ok(&codectest__rich__descriptor, texts[i]);
        assert_null(d->child);
        assert_int_equal(d->n_values, 0);
        tt_pb_free(&d->base);
    }
}

static void
test_go_rules(void **state)
{
    /* Case-insensitive names, unknown keys skipped, last duplicate wins. */
    Codectest__Rich *d = (Codectest__Rich *)decode_ok(
        &codectest__rich__descriptor,
        "{\"name\":\"a\",\"NAME\":\"b\",\"junk\":{\"x\":[1,{\"y\":null}]},\"values\":[1,2],"
        "\"Values\":[3],\"child\":{\"count\":4},\"Child\":{\"Name\":\"n\"},\"Opt\":null,"
        "\"Scores\":{\"k\":1},\"Scores\":{\"j\":2},\"Labels\":{\"10\":\"ten\",\"-2\":\"m\"},"
        "\"Data\":\"AAE=\",\"Items\":[null,{\"Count\":2}]}");
    assert_string_equal(d->name, "b");
    assert_int_equal(d->n_values, 1);
    assert_int_equal(d->values[0], 3);
    /* Go decodes into the existing struct: both keys contribute. */
    assert_int_equal(d->child->count, 4);
    assert_string_equal(d->child->name, "n");
    assert_null(d->opt);
    assert_int_equal(d->n_scores, 2);
    assert_int_equal(d->n_labels, 2);
    assert_int_equal(d->labels[0]->key, 10);
    assert_int_equal(d->labels[1]->key, -2);
    assert_int_equal(d->data.len, 2);
    assert_int_equal(d->n_items, 2);
    assert_int_equal(d->items[1]->count, 2);
    /* Map keys come out sorted as Go sorts them ("-2" < "10"). */
    char *s = encode_str(&d->base);
    assert_non_null(strstr(s, "\"Labels\":{\"-2\":\"m\",\"10\":\"ten\"}"));
    free(s);
    tt_pb_free(&d->base);

    /* A oneof: the last member given wins; only the active one is written. */
    Codectest__Pick *p = (Codectest__Pick *)decode_ok(&codectest__pick__descriptor,
                                                      "{\"Text\":\"t\",\"Num\":5,\"Label\":\"l\"}");
    assert_int_equal(p->choice_case, CODECTEST__PICK__CHOICE_NUM);
    assert_int_equal(p->num, 5);
    s = encode_str(&p->base);
    assert_string_equal(s, "{\"Label\":\"l\",\"Num\":5}");
    free(s);
    tt_pb_free(&p->base);
    p = (Codectest__Pick *)decode_ok(&codectest__pick__descriptor,
                                     "{\"Num\":5,\"Text\":\"t\",\"Text\":\"u\"}");
    assert_int_equal(p->choice_case, CODECTEST__PICK__CHOICE_TEXT);
    assert_string_equal(p->text, "u");
    tt_pb_free(&p->base);
}

/* null in a list of strings is Go's "" (a NULL element would crash
 * protobuf-c when the message is packed: found by fuzz_describe). */
static void
test_null_list_elements(void **state)
{
    (void)state;
    Codectest__Rich *d = (Codectest__Rich *)decode_ok(
        &codectest__rich__descriptor, "{\"Tags\":[\"x\",null],\"Values\":[null,2]}");
    assert_int_equal(d->n_tags, 2);
    assert_string_equal(d->tags[0], "x");
    assert_non_null(d->tags[1]);
    assert_string_equal(d->tags[1], "");
    assert_int_equal(d->n_values, 2);
    assert_int_equal(d->values[0], 0);
    size_t n = protobuf_c_message_get_packed_size(&d->base);
    uint8_t buf[64];
    assert_true(n <= sizeof buf);
    assert_int_equal(protobuf_c_message_pack(&d->base, buf), n);
    char *s = encode_str(&d->base);
    assert_non_null(strstr(s, "\"Tags\":[\"x\",\"\"]"));
    free(s);
    tt_pb_free(&d->base);
}

static void
test_number_limits(void **state)
{
    const ProtobufCMessageDescriptor *rd = &codectest__rich__descriptor;
    Codectest__Rich *d = (Codectest__Rich *)decode_ok(
        rd, "{\"Big\":18446744073709551615,\"Small\":-2147483648,\"USmall\":4294967295,"
            "\"S\":-9223372036854775808,\"F\":3.4e38,\"Ratio\":-1.5e-300}");
    assert_true(d->big == UINT64_MAX);
    assert_int_equal(d->small, INT32_MIN);
    assert_int_equal(d->usmall, UINT32_MAX);
    assert_true(d->s == INT64_MIN);
    assert_true(d->ratio == -1.5e-300);
    tt_pb_free(&d->base);
    decode_fails(rd, "{\"Big\":18446744073709551616}",
                 "json: cannot unmarshal number 18446744073709551616 into Go struct field "
                 "Rich.Big of type uint64");
    decode_fails(rd, "{\"Big\":-1}", NULL);
    decode_fails(rd, "{\"Small\":2147483648}", NULL);
    decode_fails(rd, "{\"S\":1.5}",
                 "json: cannot unmarshal number 1.5 into Go struct field Rich.S of type int64");
    decode_fails(rd, "{\"S\":1e2}", NULL);
    decode_fails(rd, "{\"F\":3.5e38}", NULL);
    decode_fails(rd, "{\"Ratio\":1e400}", NULL);
    decode_fails(rd, "{\"S\":\"1\"}",
                 "json: cannot unmarshal string into Go struct field Rich.S of type int64");
    decode_fails(rd, "{\"Name\":1}", NULL);
    decode_fails(rd, "{\"Ok\":1}", NULL);
    decode_fails(rd, "{\"Values\":{}}", NULL);
    decode_fails(rd, "{\"Child\":[]}", NULL);
    decode_fails(rd, "{\"Data\":\"A\"}", NULL);
    decode_fails(rd, "{\"Labels\":{\"x\":\"y\"}}", NULL);
    decode_fails(rd, "[1]", NULL);
}

static void
test_syntax_and_depth(void **state)
{
    const ProtobufCMessageDescriptor *rd = &codectest__rich__descriptor;
    const char *bad[] = {"{",          "{\"A\"",      "{\"A\":}",        "{\"A\":1,}",
                         "{\"A\":1}x", "{\"A\":01}",  "{\"A\":tru}",     "{\"A\":\"\x01\"}",
                         "{'A':1}",    "{\"A\":1 2}", "{\"A\":\"\\x\"}", "{\"A\":-}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        decode_fails(&args__descriptor, bad[i], NULL);
    }
    /* Deep nesting in an ignored field stops at the depth limit. */
    char deep[400];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof(deep), "{\"junk\":");
    for (int i = 0; i < 100; i++) {
        deep[n++] = '[';
    }
    for (int i = 0; i < 100; i++) {
        deep[n++] = ']';
    }
    deep[n++] = '}';
    deep[n] = '\0';
    decode_fails(rd, deep, NULL);
}

static void
test_strings(void **state)
{
    Codectest__Inner in = CODECTEST__INNER__INIT;
    in.name = "\b\f\x7f\xed\xa0\x80\xf0\x9f\x98\x80";
    char *s = encode_str(&in.base);
    /* Go 1.19: \b and \f as \u0008/\u000c, DEL raw, a surrogate's bytes invalid. */
    assert_string_equal(s, "{\"Name\":\"\\u0008\\u000c\x7f\\ufffd\\ufffd\\ufffd\xf0\x9f\x98\x80\","
                           "\"Count\":0}");
    free(s);
    Codectest__Inner *d = (Codectest__Inner *)decode_ok(
        &codectest__inner__descriptor, "{\"Name\":\"\\ud83d\\ude00\\u00e9\\/\\ud800x\\n\\\"\"}");
    assert_string_equal(d->name, "\xf0\x9f\x98\x80\xc3\xa9/\xef\xbf\xbdx\n\"");
    tt_pb_free(&d->base);
}

static void
test_floats(void **state)
{
    struct {
        double v;
        const char *want;
    } cases[] = {{0.1, "0.1"},         {1e21, "1e+21"},      {1e20, "100000000000000000000"},
                 {1e-7, "1e-7"},       {1e-6, "0.000001"},   {-0.0, "-0"},
                 {123.456, "123.456"}, {1.5e-10, "1.5e-10"}, {2.5e300, "2.5e+300"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Google__Protobuf__DoubleValue v = GOOGLE__PROTOBUF__DOUBLE_VALUE__INIT;
        v.value = cases[i].v;
        char *s = encode_str(&v.base);
        assert_string_equal(s, cases[i].want);
        free(s);
    }
    Google__Protobuf__FloatValue f = GOOGLE__PROTOBUF__FLOAT_VALUE__INIT;
    f.value = 3.14f;
    char *s = encode_str(&f.base);
    assert_string_equal(s, "3.14");
    free(s);
    f.value = NAN;
    tt_buf b = {0};
    assert_int_equal(tt_pbjson_encode(&b, &f.base), TETHER_EINVAL);
    tt_buf_free(&b);
}

static void
test_jansson_bridge(void **state)
{
    json_t *j = NULL;
    assert_int_equal(tt_pbjson_to_json(&rich_new()->base, &j), TETHER_OK);
    assert_true(json_number_value(json_object_get(j, "Small")) == -5);
    ProtobufCMessage *m = NULL;
    char err[TT_PBJSON_ERRLEN];
    /* Big (UINT64_MAX) made every number a real: exact ones still fit. */
    json_object_set_new(j, "Big", json_integer(7));
    json_object_del(j, "Values");
    json_object_del(j, "Ratios");
    json_t *scores = json_object_get(j, "Scores");
    json_object_set_new(scores, "a", json_integer(1));
    json_t *labels = json_object_get(j, "Labels");
    json_object_set_new(labels, "-3", json_string("neg"));
    json_object_set_new(j, "Opt", json_integer(42));
    json_t *child = json_object_get(j, "Child");
    json_object_set_new(child, "Count", json_integer(7));
    json_t *items = json_object_get(j, "Items");
    json_object_set_new(json_array_get(items, 0), "Count", json_integer(1));
    json_object_set_new(json_array_get(items, 1), "Count", json_integer(0));
    json_object_set_new(j, "Small", json_integer(-5));
    json_object_set_new(j, "USmall", json_integer(7));
    json_object_set_new(j, "Color", json_integer(2));
    json_object_set_new(j, "S", json_integer(-9));
    assert_int_equal(tt_pbjson_from_json(&codectest__rich__descriptor, j, &m, err, sizeof(err)),
                     TETHER_OK);
    Codectest__Rich *r = (Codectest__Rich *)m;
    assert_int_equal(r->big, 7);
    assert_int_equal(r->small, -5);
    assert_int_equal(r->opt->value, 42);
    tt_pb_free(m);
    json_decref(j);
}

/* Every allocation failure gives ENOMEM and leaks nothing (checked by
 * ASan's leak detector in the sanitizer build). */
static int fail_at;
static int alloc_count;

static void *
chaos_malloc(size_t n)
{
    if (++alloc_count == fail_at) {
        return NULL;
    }
    return malloc(n);
}

static void *
chaos_realloc(void *p, size_t n)
{
    if (++alloc_count == fail_at) {
        return NULL;
    }
    return realloc(p, n);
}

static void
test_alloc_failures(void **state)
{
    size_t len;
    unsigned char *text = read_vector("jsonrpc/rich_value.json", &len);
    assert_non_null(text);
    tether_allocator a = {chaos_malloc, chaos_realloc, free};
    tether_set_allocator(&a);
    for (fail_at = 1;; fail_at++) {
        alloc_count = 0;
        ProtobufCMessage *m = NULL;
        tether_err e =
            tt_pbjson_decode(&codectest__rich__descriptor, (const char *)text, len, &m, NULL, 0);
        if (e == TETHER_OK) {
            tt_pb_free(m);
            break;
        }
        assert_int_equal(e, TETHER_ENOMEM);
    }
    for (fail_at = 1;; fail_at++) {
        alloc_count = 0;
        tt_buf b = {0};
        tether_err e = tt_pbjson_encode(&b, &rich_new()->base);
        tt_buf_free(&b);
        if (e == TETHER_OK) {
            break;
        }
        assert_int_equal(e, TETHER_ENOMEM);
    }
    tether_set_allocator(NULL);
    free(text);
}

/* Wire bytes of a Node nested depth deep (Child inside Child ...). */
static size_t
nested_node(uint8_t *buf, size_t cap, unsigned depth)
{
    /* Built from the inside out: each level is tag 0x12 (field 2, length
     * delimited), a varint length, then the inner bytes. */
    size_t n = 0;
    uint8_t *tmp = malloc(cap);
    assert_non_null(tmp);
    buf[n++] = 0x08; /* V = 1 in the innermost */
    buf[n++] = 0x01;
    for (unsigned i = 1; i < depth; i++) {
        size_t k = 0;
        tmp[k++] = 0x12;
        size_t l = n;
        do {
            tmp[k++] = (uint8_t)((l & 0x7f) | (l > 0x7f ? 0x80 : 0));
            l >>= 7;
        } while (l != 0);
        assert_true(k + n <= cap);
        memcpy(tmp + k, buf, n);
        n += k;
        memcpy(buf, tmp, n);
    }
    free(tmp);
    return n;
}

/* Native nesting: recursive and deep types are walked before protobuf-c
 * (which recurses without limit) sees them; flat ones are not. */
static void
test_pb_depth(void **state)
{
    assert_int_equal(tt_pb_static_depth(&args__descriptor), 1);
    assert_int_equal(tt_pb_static_depth(&codectest__rich__descriptor), 2);
    assert_int_equal(tt_pb_static_depth(&codectest__node__descriptor), UINT32_MAX);
    assert_int_equal(tt_pb_static_depth(&codectest__node__descriptor), UINT32_MAX); /* cached */
    static uint8_t buf[1 << 16];
    size_t n = nested_node(buf, sizeof buf, TT_PB_MAX_DEPTH);
    assert_int_equal(tt_pb_check_depth(&codectest__node__descriptor, buf, n, TT_PB_MAX_DEPTH),
                     TETHER_OK);
    ProtobufCMessage *m = protobuf_c_message_unpack(&codectest__node__descriptor, NULL, n, buf);
    assert_non_null(m);
    protobuf_c_message_free_unpacked(m, NULL);
    n = nested_node(buf, sizeof buf, TT_PB_MAX_DEPTH + 1);
    assert_int_equal(tt_pb_check_depth(&codectest__node__descriptor, buf, n, TT_PB_MAX_DEPTH),
                     TETHER_ELIMIT);
    n = nested_node(buf, sizeof buf, 5000);
    assert_int_equal(tt_pb_check_depth(&codectest__node__descriptor, buf, n, TT_PB_MAX_DEPTH),
                     TETHER_ELIMIT);
    /* Deep through the repeated field too (Kids, field 3). */
    n = nested_node(buf, sizeof buf, TT_PB_MAX_DEPTH + 1);
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == 0x12) {
            buf[i] = 0x1a;
            break;
        }
    }
    assert_int_equal(tt_pb_check_depth(&codectest__node__descriptor, buf, n, TT_PB_MAX_DEPTH),
                     TETHER_ELIMIT);
    /* Malformed bytes are left for unpack to refuse. */
    static const uint8_t bad[] = {0x12, 0x7f, 0x08};
    assert_int_equal(
        tt_pb_check_depth(&codectest__node__descriptor, bad, sizeof bad, TT_PB_MAX_DEPTH),
        TETHER_OK);
}

/* The JSON mapping refuses a Node nested past the limit. */
static void
test_json_node_depth(void **state)
{
    char text[2048];
    size_t n = 0;
    for (int i = 0; i < TT_JSON_MAX_DEPTH + 1; i++) {
        n += (size_t)snprintf(text + n, sizeof text - n, "{\"Child\":");
    }
    n += (size_t)snprintf(text + n, sizeof text - n, "null");
    for (int i = 0; i < TT_JSON_MAX_DEPTH + 1; i++) {
        text[n++] = '}';
    }
    ProtobufCMessage *m = NULL;
    char err[TT_PBJSON_ERRLEN];
    assert_int_equal(tt_pbjson_decode(&codectest__node__descriptor, text, n, &m, err, sizeof err),
                     TETHER_EBADREQUEST);
    assert_null(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pb_depth), cmocka_unit_test(test_json_node_depth),
        cmocka_unit_test(test_args_roundtrip),   cmocka_unit_test(test_wrapper_bare),
        cmocka_unit_test(test_rich_matches_go),  cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_null_list_elements),
        cmocka_unit_test(test_go_rules),         cmocka_unit_test(test_number_limits),
        cmocka_unit_test(test_syntax_and_depth), cmocka_unit_test(test_strings),
        cmocka_unit_test(test_floats),           cmocka_unit_test(test_jansson_bridge),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
