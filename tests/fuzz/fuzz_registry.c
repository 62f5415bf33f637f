/*
 * fuzz_registry.c - libFuzzer target for what the registry backends read
 * from outside: local: entry files (another process, or anyone who can
 * write the directory, wrote them), etcd's JSON answers (a range answer's
 * key-values and the watch stream's event lines, as the gateway sends
 * them), and registry URLs (command lines, configuration).  The first
 * byte of the input picks the parser, the rest is its input:
 *   0  a local: entry file            tt_local_decode
 *   1  an etcd range answer           json -> kvs[] -> tt_etcd_kv -> tt_etcd_decode_value
 *   2  an etcd watch line             json -> result.events[].kv (and errors, cancels)
 *   3  an etcd URL ("etcd:" + rest)   tt_etcd_parse_url, and the redaction of any URL
 *   4  an address                     tt_registry_address_valid, service names
 *
 * As in the other targets the parsers' .c files are compiled in so that
 * libFuzzer's coverage instrumentation sees them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/registry/etcd/codec.c"
#include "../../src/registry/etcd/url.c"
#include "../../src/registry/local/entry.c"

static char *
text_of(const uint8_t *data, size_t size)
{
    char *t = malloc(size + 1);
    if (t != NULL) {
        memcpy(t, data, size);
        t[size] = '\0';
    }
    return t;
}

static void
one_kv(const json_t *kv)
{
    char *key = NULL;
    char *value = NULL;
    size_t vlen = 0;
    int64_t rev = 0;
    bool enomem = false;
    if (!tt_etcd_kv(kv, &key, &value, &vlen, &rev, &enomem)) {
        return;
    }
    tether_instance inst;
    memset(&inst, 0, sizeof inst);
    char why[160];
    if (tt_etcd_decode_value(key, "calculator", value, vlen, &inst, why, sizeof why) == 1) {
        tt_instance_clear(&inst);
    }
    tt_free(key);
    tt_free(value);
}

static void
etcd_range(const char *text, size_t len)
{
    json_error_t jerr;
    json_t *j = json_loadb(text, len, 0, &jerr);
    if (j == NULL) {
        return;
    }
    struct tt_etcd_reply rep = {200, j};
    (void)tt_etcd_err_text(&rep);
    int64_t v;
    (void)tt_etcd_int(json_object_get(json_object_get(j, "header"), "revision"), &v);
    (void)tt_etcd_int(json_object_get(j, "ID"), &v);
    (void)tt_etcd_int(json_object_get(j, "TTL"), &v);
    const json_t *kvs = json_object_get(j, "kvs");
    size_t i;
    const json_t *kv;
    json_array_foreach(kvs, i, kv)
    {
        one_kv(kv);
    }
    json_decref(j);
}

static void
etcd_watch_line(const char *text, size_t len)
{
    json_error_t jerr;
    json_t *j = json_loadb(text, len, 0, &jerr);
    if (j == NULL) {
        return;
    }
    struct tt_etcd_reply rep = {200, j};
    (void)tt_etcd_err_text(&rep);
    const json_t *res = json_object_get(j, "result");
    int64_t v;
    (void)tt_etcd_int(json_object_get(res, "compact_revision"), &v);
    const json_t *events = json_object_get(res, "events");
    size_t i;
    const json_t *ev;
    json_array_foreach(events, i, ev)
    {
        one_kv(json_object_get(ev, "kv"));
        one_kv(json_object_get(ev, "prev_kv"));
    }
    json_decref(j);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t mode = data[0] % 5;
    char *t = text_of(data + 1, size - 1);
    if (t == NULL) {
        return 0;
    }
    size_t n = size - 1;
    switch (mode) {
    case 0: {
        tether_instance inst;
        memset(&inst, 0, sizeof inst);
        char why[160];
        if (tt_local_decode(t, n, "calculator", "e1", &inst, why, sizeof why)) {
            tt_instance_clear(&inst);
        }
        break;
    }
    case 1:
        etcd_range(t, n);
        break;
    case 2:
        etcd_watch_line(t, n);
        break;
    case 3: {
        char *url = malloc(n + 6);
        if (url != NULL) {
            memcpy(url, "etcd:", 5);
            memcpy(url + 5, t, n + 1);
            struct tt_etcd_cfg cfg;
            memset(&cfg, 0, sizeof cfg);
            if (tt_etcd_parse_url(url, url + 5, &cfg) == TETHER_OK) {
                tt_etcd_cfg_free(&cfg);
            }
            char shown[512];
            tether_registry_url_redact(url, shown, sizeof shown);
            tether_registry_url_redact(t, shown, sizeof shown);
            free(url);
        }
        break;
    }
    default:
        (void)tt_registry_address_valid(t);
        (void)tt_registry_service_valid(t);
        break;
    }
    free(t);
    return 0;
}
