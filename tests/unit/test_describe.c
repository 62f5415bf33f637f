/*
 * test_describe.c - the checks on a received method description
 * (src/rpc/describe_client.c): every malformed or hostile description is
 * refused with a reason, and the descriptors built from valid ones pack
 * and unpack exactly as the generated code does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "calculator.pb-c.h"
#include "codec/pbjson/pbjson.h"
#include "codec/pbjson/pbutil.h"
#include "core/alloc.h"
#include "rpc/describe_int.h"

/* A description of one method "M.m" from TYPE (a JSON types list). */
#define DESC(types) "{\"method\":\"M.m\",\"input\":\"A\",\"output\":\"A\",\"types\":" types "}"
#define F(name, id, label, type)                                                                   \
    "{\"name\":\"" name "\",\"id\":" #id ",\"label\":\"" label "\",\"type\":\"" type "\"}"

static void
expect_bad(const char *text, const char *why)
{
    char err[TT_DESCRIBE_ERRLEN];
    err[0] = '\0';
    tt_dyn *dy = tt_dyn_parse(text, strlen(text), err, sizeof err);
    if (dy != NULL) {
        tt_dyn_free(dy);
        fail_msg("accepted: %s", text);
    }
    if (strstr(err, why) == NULL) {
        fail_msg("for %s: reason '%s', want '%s'", text, err, why);
    }
}

static tt_dyn *
expect_good(const char *text)
{
    char err[TT_DESCRIBE_ERRLEN] = "";
    tt_dyn *dy = tt_dyn_parse(text, strlen(text), err, sizeof err);
    if (dy == NULL) {
        fail_msg("refused (%s): %s", err, text);
    }
    return dy;
}

static void
test_refused(void **state)
{
    (void)state;
    expect_bad("", "not JSON");
    expect_bad("[1]", "not a JSON object");
    expect_bad("{\"raw\":1}", "\"raw\" is not a boolean");
    expect_bad("{\"method\":\"M.m\"}", "no \"types\" list");
    expect_bad(DESC("[]"), "no \"types\" list");
    expect_bad(DESC("[{\"name\":\"A\"}]"), "type A: no \"fields\" list");
    expect_bad(DESC("[{\"name\":\"1A\",\"fields\":[]}]"), "not a protobuf name");
    expect_bad(DESC("[{\"name\":\"a..b\",\"fields\":[]}]"), "not a protobuf name");
    expect_bad(DESC("[{\"name\":\"A.\",\"fields\":[]}]"), "not a protobuf name");
    expect_bad(DESC("[{\"name\":\"A\",\"short_name\":\"x y\",\"fields\":[]}]"),
               "short_name is not an identifier");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[]},{\"name\":\"A\",\"fields\":[]}]"),
               "type A is listed twice");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[1]}]"), "a field is not an object");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[" F("a\\u001b", 1, "none", "int32") "]}]"),
               "not an identifier");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[" F("a", 0, "none", "int32") "]}]"),
               "field A.a: its number is not an integer in 1..536870911");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[" F("a", 536870912, "none", "int32") "]}]"),
               "its number");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[" F("a", 1.5, "none", "int32") "]}]"),
               "its number");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[" F("a", 1, "none", "int128") "]}]"),
               "field A.a: unknown type");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[" F("a", 1, "twice", "int32") "]}]"),
               "field A.a: unknown label");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[" F("a", 1, "none", "int32") "," F(
                   "b", 1, "none", "int32") "]}]"),
               "type A: two fields have the number 1");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[" F("a", 1, "none", "int32") "," F(
                   "a", 2, "none", "int32") "]}]"),
               "type A: two fields are named a");
    /* packed: only on repeated packable scalars */
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[{\"name\":\"s\",\"id\":1,\"label\":"
                    "\"repeated\",\"type\":\"string\",\"packed\":true}]}]"),
               "only repeated scalar fields can be packed (not repeated string)");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[{\"name\":\"s\",\"id\":1,\"label\":"
                    "\"repeated\",\"type\":\"bytes\",\"packed\":true}]}]"),
               "can be packed");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[{\"name\":\"s\",\"id\":1,\"label\":"
                    "\"repeated\",\"type\":\"message\",\"ref\":\"A\",\"packed\":true}]}]"),
               "can be packed");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[{\"name\":\"s\",\"id\":1,\"label\":"
                    "\"none\",\"type\":\"int32\",\"packed\":true}]}]"),
               "can be packed (not none int32)");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[{\"name\":\"s\",\"id\":1,\"label\":"
                    "\"repeated\",\"type\":\"int32\",\"packed\":1}]}]"),
               "must be booleans");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[{\"name\":\"s\",\"id\":1,\"label\":"
                    "\"repeated\",\"type\":\"int32\",\"oneof\":true}]}]"),
               "a oneof member cannot be repeated");
    /* message references */
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[" F("m", 1, "none", "message") "]}]"),
               "field A.m: a message field needs a \"ref\" type name");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[{\"name\":\"m\",\"id\":1,\"label\":\"none\","
                    "\"type\":\"message\",\"ref\":\"B\"}]}]"),
               "field A.m: its type B is not in the description");
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[{\"name\":\"m\",\"id\":1,\"label\":\"none\","
                    "\"type\":\"int32\",\"ref\":\"A\"}]}]"),
               "\"ref\" on a int32 field");
    expect_bad("{\"input\":\"A\",\"output\":\"B\",\"types\":[{\"name\":\"A\",\"fields\":[]}]}",
               "the input or output type is missing");
    expect_bad("{\"output\":\"A\",\"types\":[{\"name\":\"A\",\"fields\":[]}]}",
               "the input or output type is missing");
    /* map entries need a key protobuf allows */
    expect_bad(DESC("[{\"name\":\"A\",\"fields\":[{\"name\":\"m\",\"id\":1,\"label\":"
                    "\"repeated\",\"type\":\"message\",\"ref\":\"A.MEntry\"}]},"
                    "{\"name\":\"A.MEntry\",\"short_name\":\"MEntry\",\"fields\":[" F(
                        "key", 1, "none", "double") "," F("value", 2, "none", "int32") "]}]"),
               "map field A.m: a double cannot be a map key");
}

/* Append s to b, keeping b NUL-terminated. */
static void
app(tt_buf *b, const char *s)
{
    assert_int_equal(tt_buf_append(b, s, strlen(s) + 1), TETHER_OK);
    b->len--;
}

static void
test_bounds(void **state)
{
    (void)state;
    /* Too many types, too many fields: refused before anything is built. */
    tt_buf b = {0};
    app(&b, "{\"input\":\"T0\",\"output\":\"T0\",\"types\":[");
    for (int i = 0; i <= TT_DESCRIBE_MAX_TYPES; i++) {
        char t[64];
        snprintf(t, sizeof t, "%s{\"name\":\"T%d\",\"fields\":[]}", i ? "," : "", i);
        app(&b, t);
    }
    app(&b, "]}");
    expect_bad((const char *)b.data, "more than 1024 types");
    b.len = 0;
    app(&b, "{\"input\":\"A\",\"output\":\"A\",\"types\":[{\"name\":\"A\",\"fields\":[");
    for (int i = 1; i <= TT_DESCRIBE_MAX_FIELDS + 1; i++) {
        char f[96];
        snprintf(f, sizeof f,
                 "%s{\"name\":\"f%d\",\"id\":%d,\"label\":\"none\",\"type\":\"int32\"}",
                 i > 1 ? "," : "", i, i);
        app(&b, f);
    }
    app(&b, "]}]}");
    expect_bad((const char *)b.data, "more than 1024 fields");
    tt_buf_free(&b);
    /* A name longer than the bound. */
    char big[600];
    memset(big, 'x', sizeof big);
    big[sizeof big - 1] = '\0';
    char text[800];
    snprintf(text, sizeof text, DESC("[{\"name\":\"%s\",\"fields\":[]}]"), big);
    expect_bad(text, "not a protobuf name");
}

/* The description the server writes for Calculator.Add builds Args with
 * the generated layout's wire behaviour. */
static void
test_calculator_roundtrip(void **state)
{
    (void)state;
    const char *text =
        "{\"method\":\"Calculator.Add\",\"input\":\"Args\",\"output\":"
        "\"google.protobuf.Int64Value\",\"types\":[{\"name\":\"Args\",\"short_name\":\"Args\","
        "\"fields\":[" F("A", 1, "none", "int64") "," F(
            "B", 2, "none", "int64") "]},{\"name\":\"google.protobuf.Int64Value\","
                                     "\"short_name\":\"Int64Value\",\"fields\":[" F(
                                         "value", 1, "none", "int64") "]}]}";
    tt_dyn *dy = expect_good(text);
    assert_false(tt_dyn_is_raw(dy));
    const ProtobufCMessageDescriptor *in = tt_dyn_input(dy);
    assert_string_equal(in->name, "Args");
    assert_non_null(tt_pb_wrapper_field(tt_dyn_output(dy)));
    ProtobufCMessage *m = NULL;
    char why[TT_PBJSON_ERRLEN];
    assert_int_equal(tt_pbjson_decode(in, "{\"A\":-5,\"B\":7}", 14, &m, why, sizeof why),
                     TETHER_OK);
    uint8_t buf[64];
    size_t n = protobuf_c_message_pack(m, buf);
    tt_pb_free(m);
    Args *a = args__unpack(NULL, n, buf);
    assert_non_null(a);
    assert_int_equal(a->a, -5);
    assert_int_equal(a->b, 7);
    args__free_unpacked(a, NULL);
    tt_dyn_free(dy);
}

/* A type with no fields, and a reply that carries field number 0 (invalid
 * on the wire, and not refused by protobuf-c): the message must keep its
 * descriptor.  Before, protobuf-c matched tag 0 against a zeroed
 * placeholder field and wrote the varint over the descriptor pointer
 * (found by fuzz_describe). */
static void
test_no_fields_tag_zero(void **state)
{
    (void)state;
    tt_dyn *dy = expect_good(DESC("[{\"name\":\"A\",\"fields\":[]}]"));
    const ProtobufCMessageDescriptor *out = tt_dyn_output(dy);
    assert_int_equal(out->n_fields, 0);
    static const uint8_t wire[] = {0x0a, 0x02, 0x05, 0x13, 0x80, 0x00, 0x00};
    ProtobufCMessage *m = protobuf_c_message_unpack(out, &tt_pb_allocator, sizeof wire, wire);
    if (m != NULL) {
        assert_ptr_equal(m->descriptor, out);
        tt_buf j = {0};
        assert_int_equal(tt_pbjson_encode(&j, m), TETHER_OK);
        tt_buf_free(&j);
        protobuf_c_message_free_unpacked(m, &tt_pb_allocator);
    }
    tt_dyn_free(dy);
}

/* Valid descriptions of every kind build, and messages of them survive a
 * pack/unpack/JSON round trip. */
static void
test_accepted(void **state)
{
    (void)state;
    tt_dyn *dy = expect_good("{\"method\":\"X.Raw\",\"raw\":true}");
    assert_true(tt_dyn_is_raw(dy));
    assert_null(tt_dyn_input(dy));
    tt_dyn_free(dy);

    const char *rich =
        DESC("[{\"name\":\"A\",\"fields\":[{\"name\":\"v\",\"id\":3,\"label\":\"repeated\","
             "\"type\":\"sint32\",\"packed\":true}," F("s", 1, "none", "string") "," F(
                 "o", 7, "optional", "double") ",{\"name\":\"p\",\"id\":9,\"label\":\"none\","
                                               "\"type\":\"bytes\",\"oneof\":true},"
                                               "{\"name\":\"m\",\"id\":4,\"label\":\"repeated\","
                                               "\"type\":\"message\",\"ref\":\"A.MEntry\"},"
                                               "{\"name\":\"self\",\"id\":5,\"label\":\"none\","
                                               "\"type\":\"message\",\"ref\":\"A\"}]},"
                                               "{\"name\":\"A.MEntry\",\"short_name\":\"MEntry\","
                                               "\"fields\":[" F("key", 1, "none", "string") "," F(
                                                   "value", 2, "none", "int64") "]}]");
    dy = expect_good(rich);
    const ProtobufCMessageDescriptor *d = tt_dyn_input(dy);
    assert_ptr_equal(tt_dyn_find(dy, "A"), d);
    assert_null(tt_dyn_find(dy, "Nope"));
    const char *json = "{\"s\":\"hi\",\"v\":[1,-2,3],\"m\":{\"b\":2,\"a\":1},\"o\":0.5,"
                       "\"p\":\"AQI=\",\"self\":{\"s\":\"in\",\"v\":[],\"m\":{},\"o\":0,"
                       "\"p\":\"\",\"self\":null}}";
    ProtobufCMessage *m = NULL;
    char why[TT_PBJSON_ERRLEN];
    assert_int_equal(tt_pbjson_decode(d, json, strlen(json), &m, why, sizeof why), TETHER_OK);
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n);
    assert_int_equal(protobuf_c_message_pack(m, buf), n);
    tt_pb_free(m);
    assert_int_equal(tt_pb_check_depth(d, buf, n, TT_PB_MAX_DEPTH), TETHER_OK);
    m = protobuf_c_message_unpack(d, &tt_pb_allocator, n, buf);
    free(buf);
    assert_non_null(m);
    tt_buf out = {0};
    assert_int_equal(tt_pbjson_encode(&out, m), TETHER_OK);
    assert_int_equal(tt_buf_append(&out, "", 1), TETHER_OK);
    /* Written in field-number order. */
    assert_string_equal((const char *)out.data,
                        "{\"s\":\"hi\",\"v\":[1,-2,3],\"m\":{\"a\":1,\"b\":2},\"self\":{\"s\":"
                        "\"in\",\"v\":[],\"m\":{},\"self\":null,\"o\":0,\"p\":\"\"},\"o\":0.5,"
                        "\"p\":\"AQI=\"}");
    tt_buf_free(&out);
    tt_pb_free(m);
    tt_dyn_free(dy);
}

static void
test_list(void **state)
{
    (void)state;
    char err[TT_DESCRIBE_ERRLEN];
    const char *good = "{\"services\":[{\"name\":\"Calculator\",\"methods\":[{\"name\":\"Add\","
                       "\"input\":\"Args\",\"output\":\"google.protobuf.Int64Value\"}]},"
                       "{\"name\":\"my-raw\",\"methods\":[{\"name\":\"Do.It\",\"raw\":true}]}]}";
    assert_int_equal(tt_describe_check_list(good, strlen(good), err, sizeof err), 0);
    static const char *const bad[][2] = {
        {"{}", "no \"services\" list"},
        {"{\"services\":[{\"name\":\"\",\"methods\":[]}]}", "no printable name"},
        {"{\"services\":[{\"name\":\"S\"}]}", "no \"methods\" list"},
        {"{\"services\":[{\"name\":\"S\\n\",\"methods\":[]}]}", "no printable name"},
        {"{\"services\":[{\"name\":\"S\",\"methods\":[{\"name\":\"m\"}]}]}",
         "method S.m: no valid input and output type names"},
        {"{\"services\":[{\"name\":\"S\",\"methods\":[{\"name\":\"m\",\"raw\":\"yes\"}]}]}",
         "a method has no printable name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(tt_describe_check_list(bad[i][0], strlen(bad[i][0]), err, sizeof err), -1);
        if (strstr(err, bad[i][1]) == NULL) {
            fail_msg("%s: reason '%s', want '%s'", bad[i][0], err, bad[i][1]);
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_calculator_roundtrip),
        cmocka_unit_test(test_no_fields_tag_zero),
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
