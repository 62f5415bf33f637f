/*
 * test_registry_etcd.c - the etcd backend's pure parts: the URL, base64,
 * range ends, etcd's int64 strings, and the registration value both ways
 * (ours, the Go pattern's plain "host:port", and garbage).  Everything
 * that talks to etcd is tested against a real one in
 * tests/integration/test_etcd_*.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "registry/etcd/etcd.h"

static void
test_url_defaults(void **state)
{
    (void)state;
    struct tt_etcd_cfg cfg;
    assert_int_equal(tt_etcd_parse_url("etcd://127.0.0.1:2379", "//127.0.0.1:2379", &cfg),
                     TETHER_OK);
    assert_int_equal(cfg.nendpoints, 1);
    assert_string_equal(cfg.endpoints[0], "http://127.0.0.1:2379");
    assert_string_equal(cfg.prefix, "/services");
    assert_int_equal(cfg.ttl_s, 10);
    assert_int_equal(cfg.timeout_ms, TT_ETCD_DEFAULT_TIMEOUT_MS);
    assert_null(cfg.user);
    tt_etcd_cfg_free(&cfg);
}

static void
test_url_full(void **state)
{
    (void)state;
    struct tt_etcd_cfg cfg;
    const char *rest = "//localhost,127.0.0.1:23790,[::1]:2381/my/prefix//"
                       "?ttl=3&timeout_ms=250&user=root&password=a%26b%3D";
    assert_int_equal(tt_etcd_parse_url("etcd:x", rest, &cfg), TETHER_OK);
    assert_int_equal(cfg.nendpoints, 3);
    assert_string_equal(cfg.endpoints[0], "http://localhost:2379");
    assert_string_equal(cfg.endpoints[1], "http://127.0.0.1:23790");
    assert_string_equal(cfg.endpoints[2], "http://[::1]:2381");
    assert_string_equal(cfg.prefix, "/my/prefix");
    assert_int_equal(cfg.ttl_s, 3);
    assert_int_equal(cfg.timeout_ms, 250);
    assert_string_equal(cfg.user, "root");
    assert_string_equal(cfg.password, "a&b=");
    tt_etcd_cfg_free(&cfg);

    assert_int_equal(tt_etcd_parse_url("etcd:x", "//127.0.0.1/?cacert=%2Fca.pem", &cfg),
                     TETHER_OK);
    assert_string_equal(cfg.endpoints[0], "https://127.0.0.1:2379");
    assert_string_equal(cfg.prefix, "");
    assert_string_equal(cfg.cacert, "/ca.pem");
    tt_etcd_cfg_free(&cfg);

    /* tls takes the usual spellings, and means https. */
    static const char *const on[] = {"//h:1?tls=1", "//h:1?tls=true", "//h:1?tls=yes"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(tt_etcd_parse_url("etcd:x", on[i], &cfg), TETHER_OK);
        assert_string_equal(cfg.endpoints[0], "https://h:1");
        tt_etcd_cfg_free(&cfg);
    }
    assert_int_equal(tt_etcd_parse_url("etcd:x", "//h:1?tls=false", &cfg), TETHER_OK);
    assert_string_equal(cfg.endpoints[0], "http://h:1");
    tt_etcd_cfg_free(&cfg);
}

/* The crash guardian is on unless guardian=0; the password may come from
 * a file (first line) or from $TETHER_ETCD_PASSWORD. */
static void
test_url_guardian_password(void **state)
{
    (void)state;
    struct tt_etcd_cfg cfg;
    assert_int_equal(tt_etcd_parse_url("etcd:x", "//h:1", &cfg), TETHER_OK);
    assert_true(cfg.guardian);
    tt_etcd_cfg_free(&cfg);
    assert_int_equal(tt_etcd_parse_url("etcd:x", "//h:1?guardian=0", &cfg), TETHER_OK);
    assert_false(cfg.guardian);
    tt_etcd_cfg_free(&cfg);

    char path[] = "/tmp/tt-pwfile-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "fr0m&file\nsecond line\n", 22), 22);
    close(fd);
    char rest[128];
    snprintf(rest, sizeof rest, "//h:1?user=u&password_file=%s", path);
    assert_int_equal(tt_etcd_parse_url("etcd:x", rest, &cfg), TETHER_OK);
    assert_string_equal(cfg.password, "fr0m&file");
    tt_etcd_cfg_free(&cfg);
    /* Both at once is ambiguous; a file without a user is refused. */
    snprintf(rest, sizeof rest, "//h:1?user=u&password=p&password_file=%s", path);
    assert_int_equal(tt_etcd_parse_url("etcd:x", rest, &cfg), TETHER_EINVAL);
    snprintf(rest, sizeof rest, "//h:1?password_file=%s", path);
    assert_int_equal(tt_etcd_parse_url("etcd:x", rest, &cfg), TETHER_EINVAL);
    /* An empty file holds no password. */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    close(fd);
    snprintf(rest, sizeof rest, "//h:1?user=u&password_file=%s", path);
    assert_int_equal(tt_etcd_parse_url("etcd:x", rest, &cfg), TETHER_EINVAL);
    unlink(path);
    assert_int_equal(tt_etcd_parse_url("etcd:x", rest, &cfg), TETHER_EINVAL);

    /* The environment, only with a user and no password in the URL. */
    setenv("TETHER_ETCD_PASSWORD", "fr0m-env", 1);
    assert_int_equal(tt_etcd_parse_url("etcd:x", "//h:1?user=u", &cfg), TETHER_OK);
    assert_string_equal(cfg.password, "fr0m-env");
    tt_etcd_cfg_free(&cfg);
    assert_int_equal(tt_etcd_parse_url("etcd:x", "//h:1?user=u&password=url", &cfg), TETHER_OK);
    assert_string_equal(cfg.password, "url");
    tt_etcd_cfg_free(&cfg);
    assert_int_equal(tt_etcd_parse_url("etcd:x", "//h:1", &cfg), TETHER_OK);
    assert_null(cfg.password);
    tt_etcd_cfg_free(&cfg);
    unsetenv("TETHER_ETCD_PASSWORD");
}

/* URLs are shown without their passwords. */
static void
test_url_redact(void **state)
{
    (void)state;
    char buf[128];
    tether_registry_url_redact("etcd://h:1?user=root&password=s3cr%26t&ttl=3", buf, sizeof buf);
    assert_string_equal(buf, "etcd://h:1?user=root&password=***&ttl=3");
    tether_registry_url_redact("etcd://h:1?password=x", buf, sizeof buf);
    assert_string_equal(buf, "etcd://h:1?password=***");
    tether_registry_url_redact("etcd://h:1?xpassword=keep", buf, sizeof buf);
    assert_string_equal(buf, "etcd://h:1?xpassword=keep");
    tether_registry_url_redact("etcd://root:s3cret@h:1,h:2/p?ttl=3", buf, sizeof buf);
    assert_string_equal(buf, "etcd://root:***@h:1,h:2/p?ttl=3");
    tether_registry_url_redact("etcd://h:1/a@b:c", buf, sizeof buf);
    assert_string_equal(buf, "etcd://h:1/a@b:c");
    tether_registry_url_redact("etcd://h:1?password=abcdef", buf, 12);
    assert_int_equal(strlen(buf), 11);
}

static void
test_url_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "127.0.0.1:2379",           /* no // */
        "//",                       /* no endpoint */
        "//,,/p",                   /* no endpoint either */
        "//127.0.0.1:0",            /* port 0 */
        "//127.0.0.1:65536",        /* port too big */
        "//127.0.0.1:23x",          /* not a port */
        "//ho st:1",                /* blank in a host */
        "//[::1",                   /* unclosed bracket */
        "//h:1?ttl=1",              /* under etcd's minimum */
        "//h:1?ttl=abc",            /* not a number */
        "//h:1?timeout_ms=5",       /* too short */
        "//h:1?colour=red",         /* unknown option */
        "//h:1?ttl",                /* no value */
        "//h:1?password=x",         /* password without user */
        "//h:1?user=a%2",           /* truncated escape */
        "//h:1?user=a%00b",         /* NUL */
        "//h:1/pre fix",            /* blank in the prefix */
        "//h:1?tls=ture",           /* a tls value nobody knows (was plaintext) */
        "//h:1?tls=",               /* no tls value */
        "//h:1?guardian=yes",       /* guardian takes 1 or 0 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct tt_etcd_cfg cfg;
        tether_err err = tt_etcd_parse_url("etcd:test", bad[i], &cfg);
        if (err != TETHER_EINVAL) {
            fail_msg("'%s' gave %s, want EINVAL", bad[i], tether_err_name(err));
        }
    }
}

static void
test_b64(void **state)
{
    (void)state;
    /* Values from protocol-notes (etcd's own answers). */
    char *s = tt_etcd_b64("svc/calc/", 9);
    assert_string_equal(s, "c3ZjL2NhbGMv");
    tt_free(s);
    s = tt_etcd_b64("svc/calc/127.0.0.1:9000", 23);
    assert_string_equal(s, "c3ZjL2NhbGMvMTI3LjAuMC4xOjkwMDA=");
    tt_free(s);
    s = tt_etcd_b64("", 1); /* one zero byte: "the whole key space" */
    assert_string_equal(s, "AA==");
    tt_free(s);
    s = tt_etcd_prefix_end("svc/calc/");
    assert_string_equal(s, "c3ZjL2NhbGMw");
    tt_free(s);

    /* Round trips of every length mod 3, with every byte value. */
    unsigned char buf[256];
    for (int i = 0; i < 256; i++) {
        buf[i] = (unsigned char)(255 - i);
    }
    for (size_t n = 0; n < 10; n++) {
        char *enc = tt_etcd_b64(buf + 100, n);
        char *dec = NULL;
        size_t len = 0;
        assert_true(tt_etcd_unb64(enc, &dec, &len));
        assert_int_equal(len, n);
        assert_memory_equal(dec, buf + 100, n);
        tt_free(enc);
        tt_free(dec);
    }
    /* etcd sends standard padded base64 only; anything else is refused. */
    static const char *const bad[] = {"Zm9vMQ", "Zm9v-_==", "Zm=v", "Z===", "Zm9v\n", "====",
                                      "Zg==Zg=="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *dec = NULL;
        size_t len = 0;
        if (tt_etcd_unb64(bad[i], &dec, &len)) {
            fail_msg("'%s' decoded", bad[i]);
        }
        assert_null(dec);
    }
}

static void
test_int(void **state)
{
    (void)state;
    int64_t v = 42;
    assert_true(tt_etcd_int(NULL, &v));
    assert_int_equal(v, 0); /* missing means zero */
    json_t *j = json_string("7587899124804544543");
    assert_true(tt_etcd_int(j, &v));
    assert_true(v == 7587899124804544543LL);
    json_decref(j);
    j = json_integer(9);
    assert_true(tt_etcd_int(j, &v));
    assert_int_equal(v, 9);
    json_decref(j);
    static const char *const bad[] = {"", "12x", "x", "99999999999999999999", " 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        j = json_string(bad[i]);
        assert_false(tt_etcd_int(j, &v));
        json_decref(j);
    }
    j = json_true();
    assert_false(tt_etcd_int(j, &v));
    json_decref(j);
}

static void
test_value_round_trip(void **state)
{
    (void)state;
    tether_meta meta[] = {{"zone", "a"}, {"version", "1.2"}};
    tether_instance in = {.service = "calc",
                          .address = "127.0.0.1:8080",
                          .meta = meta,
                          .meta_count = 2,
                          .weight = 5,
                          .state = TETHER_INSTANCE_DRAINING,
                          .id = "42.00ff",
                          .pid = 42};
    char *text = NULL;
    assert_int_equal(tt_etcd_encode_value(&in, &text), TETHER_OK);
    /* Go's naming/endpoints.Update reads Op and Addr. */
    assert_non_null(strstr(text, "\"Op\":0"));
    assert_non_null(strstr(text, "\"Addr\":\"127.0.0.1:8080\""));
    assert_non_null(strstr(text, "\"Metadata\":{"));

    tether_instance out;
    char why[160];
    assert_int_equal(tt_etcd_decode_value("/services/calc/127.0.0.1:8080", "calc", text,
                                          strlen(text), &out, why, sizeof why),
                     1);
    assert_string_equal(out.service, "calc");
    assert_string_equal(out.address, "127.0.0.1:8080");
    assert_string_equal(out.id, "42.00ff");
    assert_int_equal(out.pid, 42);
    assert_int_equal(out.weight, 5);
    assert_int_equal(out.state, TETHER_INSTANCE_DRAINING);
    assert_int_equal(out.meta_count, 2);
    tt_free(text);
    tt_instance_clear(&out);
}

static void
test_value_foreign(void **state)
{
    (void)state;
    tether_instance out;
    char why[160];
    /* The Go pattern's plain value, with the newline a shell adds. */
    const char *plain = "127.0.0.1:9000\n";
    assert_int_equal(tt_etcd_decode_value("/services/calc/127.0.0.1:9000", "calc", plain,
                                          strlen(plain), &out, why, sizeof why),
                     1);
    assert_string_equal(out.address, "127.0.0.1:9000");
    assert_string_equal(out.id, "/services/calc/127.0.0.1:9000");
    assert_int_equal(out.weight, 1);
    assert_int_equal(out.state, TETHER_INSTANCE_SERVING);
    tt_instance_clear(&out);

    /* Go's resolver writes Metadata of any shape: ignored. */
    const char *go = "{\"Op\":0,\"Addr\":\"[::1]:7\",\"Metadata\":\"x\"}";
    assert_int_equal(tt_etcd_decode_value("k", "calc", go, strlen(go), &out, why, sizeof why),
                     1);
    assert_string_equal(out.address, "[::1]:7");
    assert_string_equal(out.id, "k");
    tt_instance_clear(&out);

    /* Op 1 (naming.Delete) is no instance, and no complaint either. */
    const char *del = "{\"Op\":1,\"Addr\":\"127.0.0.1:7\"}";
    assert_int_equal(tt_etcd_decode_value("k", "calc", del, strlen(del), &out, why, sizeof why),
                     0);
    assert_string_equal(why, "");
}

static void
test_value_garbage(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "   \n",
        "not an address",
        "host:port:port",
        "{",
        "{\"Addr\":5}",
        "{\"Op\":\"0\",\"Addr\":\"127.0.0.1:1\"}",
        "{\"Op\":7,\"Addr\":\"127.0.0.1:1\"}",
        "{\"Addr\":\"127.0.0.1:1\",\"Metadata\":{\"weight\":0}}",
        "{\"Addr\":\"127.0.0.1:1\",\"Metadata\":{\"weight\":\"5\"}}",
        "{\"Addr\":\"127.0.0.1:1\",\"Metadata\":{\"state\":\"sleeping\"}}",
        "{\"Addr\":\"127.0.0.1:1\",\"Addr\":\"127.0.0.1:2\"}",
        "[\"127.0.0.1:1\"]",
        "{\"Addr\":\"127.0.0.1:99999\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tether_instance out;
        char why[160];
        int rc = tt_etcd_decode_value("k", "calc", bad[i], strlen(bad[i]), &out, why,
                                      sizeof why);
        if (rc != 0 || why[0] == '\0') {
            fail_msg("'%s' gave %d ('%s'), want 0 with a reason", bad[i], rc, why);
        }
    }
    /* A NUL inside, and a value over the entry limit. */
    tether_instance out;
    char why[160];
    assert_int_equal(tt_etcd_decode_value("k", "c", "1.2.3.4:5\0x", 11, &out, why, sizeof why),
                     0);
    size_t big = TT_REGISTRY_MAX_ENTRY + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, ' ', big);
    assert_int_equal(tt_etcd_decode_value("k", "c", huge, big, &out, why, sizeof why), 0);
    free(huge);
}

static void
test_kv(void **state)
{
    (void)state;
    json_error_t jerr;
    json_t *kv = json_loads("{\"key\":\"c3ZjL2NhbGMvMTI3LjAuMC4xOjkwMDA=\",\"create_revision\":"
                            "\"4\",\"mod_revision\":\"6\",\"version\":\"1\",\"value\":\"djI=\"}",
                            0, &jerr);
    assert_non_null(kv);
    char *key = NULL;
    char *value = NULL;
    size_t vlen = 0;
    int64_t mod = 0;
    bool enomem = false;
    assert_true(tt_etcd_kv(kv, &key, &value, &vlen, &mod, &enomem));
    assert_string_equal(key, "svc/calc/127.0.0.1:9000");
    assert_string_equal(value, "v2");
    assert_int_equal(mod, 6);
    tt_free(key);
    tt_free(value);
    json_decref(kv);
    /* A DELETE's kv has no value at all. */
    kv = json_loads("{\"key\":\"Zm9v\",\"mod_revision\":\"12\"}", 0, &jerr);
    assert_true(tt_etcd_kv(kv, &key, &value, &vlen, &mod, &enomem));
    assert_int_equal(vlen, 0);
    tt_free(key);
    tt_free(value);
    json_decref(kv);
    static const char *const bad[] = {"{}", "{\"key\":5}", "{\"key\":\"Zm9\"}",
                                      "{\"key\":\"Zm9v\",\"value\":1}",
                                      "{\"key\":\"Zm9v\",\"mod_revision\":\"x\"}", "[]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kv = json_loads(bad[i], JSON_DECODE_ANY, &jerr);
        assert_non_null(kv);
        assert_false(tt_etcd_kv(kv, &key, &value, &vlen, &mod, &enomem));
        json_decref(kv);
    }
}

static void
test_open_needs_no_server(void **state)
{
    (void)state;
    /* Nothing listens on port 1: opening must still work, and reading
     * must fail with a registry error, quickly, without a crash. */
    tether_registry *r = NULL;
    assert_int_equal(tether_registry_open("etcd://127.0.0.1:1?timeout_ms=200", &r), TETHER_OK);
    tether_instance_list *list = NULL;
    assert_int_equal(tether_registry_list(r, "calc", &list), TETHER_EREGISTRY);
    assert_null(list);
    tether_registry_close(r);
    assert_int_equal(tether_registry_open("etcd:127.0.0.1", &r), TETHER_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_defaults),
        cmocka_unit_test(test_url_full),
        cmocka_unit_test(test_url_bad),
        cmocka_unit_test(test_url_redact),
        cmocka_unit_test(test_url_guardian_password),
        cmocka_unit_test(test_b64),
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_value_round_trip),
        cmocka_unit_test(test_value_foreign),
        cmocka_unit_test(test_value_garbage),
        cmocka_unit_test(test_kv),
        cmocka_unit_test(test_open_needs_no_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
