/*
 * test_describe.c - _tether.Describe from the caller's side: the listing
 * and method descriptions of the calculator example (a real server
 * process), and a hostile server that answers Describe itself (a raw
 * method registered under that name replaces the built-in one) with
 * descriptions meant to crash the caller: a recursive type whose reply
 * nests 100000 levels deep (protobuf-c's unpack recursion overflows the
 * stack), "packed" on a repeated string (protobuf-c aborts packing it),
 * and malformed listings.  The caller must answer each with an error and
 * stay usable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static h_proc calc;
static char calc_addr[300];
static tether_server *evil;
static char evil_addr[128];

/* ---------------------------------------------------------------------- */
/* The hostile server (in this process)                                   */

static size_t
put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        p[n++] = b | (v != 0 ? 0x80 : 0);
    } while (v != 0);
    return n;
}

static const char deep_desc[] =
    "{\"method\":\"Evil.Deep\",\"input\":\"E\",\"output\":\"Node\",\"types\":["
    "{\"name\":\"E\",\"fields\":[]},"
    "{\"name\":\"Node\",\"fields\":[{\"name\":\"child\",\"id\":1,\"label\":\"none\","
    "\"type\":\"message\",\"ref\":\"Node\"}]}]}";

static const char packed_desc[] =
    "{\"method\":\"Evil.Packed\",\"input\":\"P\",\"output\":\"P\",\"types\":["
    "{\"name\":\"P\",\"fields\":[{\"name\":\"s\",\"id\":1,\"label\":\"repeated\","
    "\"type\":\"string\",\"packed\":true}]}]}";

/* Answers Describe as a StringValue (field 1, a string), by hand. */
static void
evil_describe(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    char name[256] = "";
    if (len >= 2 && req[0] == 0x0a && req[1] < 0x80 && (size_t)req[1] + 2 <= len) {
        memcpy(name, req + 2, req[1]);
        name[req[1]] = '\0';
    }
    const char *text;
    if (strcmp(name, "Evil.Deep") == 0 || strcmp(name, "Evil.Shallow") == 0) {
        text = deep_desc;
    } else if (strcmp(name, "Evil.Packed") == 0) {
        text = packed_desc;
    } else if (name[0] == '\0') {
        text = "{\"services\":[{\"name\":\"Evil\",\"methods\":[{\"name\":\"Deep\"}]}]}";
    } else {
        text = "{\"method\":\"x\",\"types\":[{\"name\":\"A\",\"fields\":[{\"name\":\"a\","
               "\"id\":1,\"label\":\"none\",\"type\":\"message\",\"ref\":\"Missing\"}]}],"
               "\"input\":\"A\",\"output\":\"A\"}";
    }
    size_t n = strlen(text);
    uint8_t *out = malloc(n + 16);
    assert_non_null(out);
    size_t k = 0;
    out[k++] = 0x0a;
    k += put_varint(out + k, n);
    memcpy(out + k, text, n);
    tether_call_reply_raw(call, out, k + n);
    free(out);
}

/* A Node nested levels deep (field 1 in each), built from the inside. */
static uint8_t *
nested(size_t levels, size_t *len)
{
    size_t cap = levels * 6 + 16;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    size_t start = cap, n = 0;
    for (size_t i = 0; i < levels; i++) {
        uint8_t v[10];
        size_t vl = put_varint(v, n);
        start -= vl;
        memcpy(buf + start, v, vl);
        buf[--start] = 0x0a;
        n += vl + 1;
    }
    memmove(buf, buf + start, n);
    *len = n;
    return buf;
}

static void
evil_deep(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    size_t levels = (size_t)(uintptr_t)arg, n;
    uint8_t *body = nested(levels, &n);
    tether_call_reply_raw(call, body, n);
    free(body);
}

static void
evil_echo(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    tether_call_reply_raw(call, req, len);
}

static int
group_setup(void **state)
{
    (void)state;
    h_unix_addr(calc_addr, sizeof(calc_addr), "calc.sock");
    h_spawn_calculator(&calc, calc_addr);

    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.max_frame_size = 16u << 20;
    H_OK(tether_server_create(&cfg, &evil));
    H_OK(tether_server_add_raw_method(evil, "_tether.Describe", evil_describe, 0, NULL));
    H_OK(tether_server_add_raw_method(evil, "Evil.Deep", evil_deep, 0, (void *)(uintptr_t)100000));
    H_OK(tether_server_add_raw_method(evil, "Evil.Shallow", evil_deep, 0, (void *)(uintptr_t)3));
    H_OK(tether_server_add_raw_method(evil, "Evil.Packed", evil_echo, 0, NULL));
    H_OK(tether_server_add_raw_method(evil, "Evil.Other", evil_echo, 0, NULL));
    H_OK(tether_server_listen(evil, "127.0.0.1:0"));
    H_OK(tether_server_start(evil));
    H_OK(tether_server_get_address(evil, 0, evil_addr, sizeof evil_addr));
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    tether_server_shutdown(evil);
    tether_server_wait(evil);
    tether_server_destroy(evil);
    h_kill(&calc);
    h_cleanup();
    return 0;
}

static tether_client *
client_for(const char *addr, tether_codec codec)
{
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.codec = codec;
    cfg.max_frame_size = 16u << 20;
    tether_client *c = NULL;
    H_OK(tether_client_create(addr, &cfg, &c));
    return c;
}

/* call_json must fail with want and a text holding what. */
static void
expect_call_err(tether_client *c, const char *method, const char *json, tether_err want,
                const char *what)
{
    char *out = NULL, *err = NULL;
    tether_err rc =
        tether_client_call_json(c, method, json, &out, TETHER_CALL_TIMEOUT(H_CALL_MS), &err);
    if (rc != want || err == NULL || strstr(err, what) == NULL) {
        fail_msg("%s: got %s '%s' (out '%s'), want %s '%s'", method, tether_err_name(rc),
                 err != NULL ? err : "", out != NULL ? out : "", tether_err_name(want), what);
    }
    tether_free(err);
    tether_free(out);
}

/* ---------------------------------------------------------------------- */

static void
test_hostile_deep_reply(void **state)
{
    (void)state;
    tether_client *c = client_for(evil_addr, TETHER_CODEC_NATIVE);
    /* A recursive type is fine while the reply is shallow... */
    char *out = NULL, *err = NULL;
    H_OK(tether_client_call_json(c, "Evil.Shallow", "{}", &out, TETHER_CALL_TIMEOUT(H_CALL_MS),
                                 &err));
    assert_string_equal(out, "{\"child\":{\"child\":{\"child\":{\"child\":null}}}}");
    tether_free(out);
    /* ...and refused, not a stack overflow, when it nests too deeply. */
    expect_call_err(c, "Evil.Deep", "{}", TETHER_EBADREPLY, "nests deeper than");
    /* The client is still usable. */
    H_OK(tether_client_call_json(c, "Evil.Shallow", "{}", &out, TETHER_CALL_TIMEOUT(H_CALL_MS),
                                 &err));
    tether_free(out);
    tether_client_destroy(c);
}

static void
test_hostile_packed_string(void **state)
{
    (void)state;
    /* (Native only: raw methods, such as this Describe, take no gob.) */
    tether_client *c = client_for(evil_addr, TETHER_CODEC_NATIVE);
    expect_call_err(c, "Evil.Packed", "{\"s\":[\"a\",\"b\"]}", TETHER_EBADREPLY,
                    "only repeated scalar fields can be packed");
    tether_client_destroy(c);
}

static void
test_hostile_descriptions(void **state)
{
    (void)state;
    tether_client *c = client_for(evil_addr, TETHER_CODEC_NATIVE);
    expect_call_err(c, "Evil.Other", "{}", TETHER_EBADREPLY, "Missing is not in the description");
    char *out = NULL, *err = NULL;
    /* A listing whose method has neither types nor "raw". */
    H_ERR(tether_client_describe(c, NULL, &out, TETHER_CALL_TIMEOUT(H_CALL_MS), &err),
          TETHER_EBADREPLY);
    assert_null(out);
    assert_non_null(strstr(err, "no valid input and output"));
    tether_free(err);
    H_ERR(tether_client_describe(c, "Evil.Packed", &out, TETHER_CALL_TIMEOUT(H_CALL_MS), &err),
          TETHER_EBADREPLY);
    tether_free(err);
    tether_client_destroy(c);
}

static void
test_calculator_describe(void **state)
{
    (void)state;
    static const tether_codec codecs[] = {TETHER_CODEC_NATIVE, TETHER_CODEC_GOB,
                                          TETHER_CODEC_JSONRPC};
    for (size_t i = 0; i < 3; i++) {
        tether_client *c = client_for(calc_addr, codecs[i]);
        char *out = NULL, *err = NULL;
        H_OK(tether_client_describe(c, NULL, &out, TETHER_CALL_TIMEOUT(H_CALL_MS), &err));
        assert_non_null(strstr(out, "{\"name\":\"Calculator\",\"methods\":[{\"name\":\"Add\","
                                    "\"input\":\"Args\",\"output\":"
                                    "\"google.protobuf.Int64Value\"}"));
        assert_non_null(strstr(out, "{\"name\":\"_tether\",\"methods\":[{\"name\":\"Describe\""));
        tether_free(out);
        H_OK(tether_client_describe(c, "Calculator.Div", &out, TETHER_CALL_TIMEOUT(H_CALL_MS),
                                    &err));
        assert_non_null(strstr(out, "\"method\":\"Calculator.Div\",\"input\":\"Args\""));
        assert_non_null(strstr(out, "{\"name\":\"B\",\"id\":2,\"label\":\"none\","
                                    "\"type\":\"int64\"}"));
        tether_free(out);
        H_ERR(tether_client_describe(c, "Calculator.Nope", &out, TETHER_CALL_TIMEOUT(H_CALL_MS),
                                     &err),
              TETHER_ENOMETHOD);
        assert_string_equal(err, "rpc: can't find method Calculator.Nope");
        tether_free(err);
        H_ERR(tether_client_describe(c, "Nope.X", &out, TETHER_CALL_TIMEOUT(H_CALL_MS), &err),
              TETHER_ENOSERVICE);
        tether_free(err);
        tether_client_destroy(c);
    }
}

/* Many calls without generated code on one gob client: its codec keeps
 * per-connection state by descriptor, which must stay right from call to
 * call (the descriptors of a description are kept for gob). */
static void
test_gob_call_json_repeated(void **state)
{
    (void)state;
    tether_client *c = client_for(calc_addr, TETHER_CODEC_GOB);
    for (int i = 0; i < 50; i++) {
        char *out = NULL, *err = NULL, want[32];
        const char *method = i % 2 ? "Calculator.Mul" : "Calculator.Add";
        char json[64];
        snprintf(json, sizeof json, "{\"A\":%d,\"B\":3}", i);
        H_OK(tether_client_call_json(c, method, json, &out, TETHER_CALL_TIMEOUT(H_CALL_MS), &err));
        snprintf(want, sizeof want, "%d", i % 2 ? i * 3 : i + 3);
        assert_string_equal(out, want);
        tether_free(out);
        expect_call_err(c, "Calculator.Div", "{\"A\":1,\"B\":0}", TETHER_EREMOTE, "divide by zero");
    }
    tether_client_destroy(c);
}

int
main(int argc, char **argv)
{
    h_child_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_deep_reply),     cmocka_unit_test(test_hostile_packed_string),
        cmocka_unit_test(test_hostile_descriptions),   cmocka_unit_test(test_calculator_describe),
        cmocka_unit_test(test_gob_call_json_repeated),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
