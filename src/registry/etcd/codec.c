/*
 * codec.c - what the etcd backend writes and reads: base64 keys and
 * values, prefix range ends, etcd's int64-as-string numbers, and the
 * registration value in etcd's naming/endpoints shape.
 *
 * Everything read here comes from the network and is treated as hostile:
 * every field is type-checked, every length bounded, and anything odd
 * makes the entry (never the process) go away, with a reason for the log.
 *
 * jansson allocates with its own (process-wide, application-owned)
 * allocator; its objects never outlive the functions that use them, and
 * every string handed on is copied with tt_strdup.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/base64.h"
#include "registry/etcd/etcd.h"

char *
tt_etcd_b64(const void *data, size_t len)
{
    char *out = tt_malloc(tt_base64_len(len) + 1);
    if (out == NULL) {
        return NULL;
    }
    tt_base64_encode(data, len, out);
    out[tt_base64_len(len)] = '\0';
    return out;
}

bool
tt_etcd_unb64(const char *text, char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    size_t n = strlen(text);
    /* etcd never wraps lines: a line break is as wrong as any other byte. */
    if (strpbrk(text, "\r\n") != NULL) {
        return false;
    }
    char *buf = tt_malloc(n / 4 * 3 + 1);
    if (buf == NULL) {
        return false;
    }
    size_t o = 0;
    if (!tt_base64_decode(text, n, (uint8_t *)buf, n / 4 * 3, &o)) {
        tt_free(buf);
        return false;
    }
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    return true;
}

char *
tt_etcd_prefix_end(const char *prefix)
{
    size_t n = strlen(prefix);
    unsigned char *end = (unsigned char *)tt_strndup(prefix, n);
    if (end == NULL) {
        return NULL;
    }
    /* The first key after every key that starts with prefix: increment the
     * last byte that is not 0xff, dropping those after it.  Our prefixes
     * end in '/', so the loop runs once. */
    while (n > 0 && end[n - 1] == 0xff) {
        n--;
    }
    char *out;
    if (n == 0) {
        /* All 0xff (or empty): every key from prefix on, "\0" in etcd. */
        out = tt_etcd_b64("", 1);
    } else {
        end[n - 1]++;
        out = tt_etcd_b64(end, n);
    }
    tt_free(end);
    return out;
}

bool
tt_etcd_int(const json_t *j, int64_t *v)
{
    if (j == NULL) {
        *v = 0;
        return true;
    }
    if (json_is_integer(j)) {
        *v = (int64_t)json_integer_value(j);
        return true;
    }
    if (!json_is_string(j)) {
        return false;
    }
    const char *s = json_string_value(j);
    /* strtoll would also take blanks and a '+'; etcd writes neither. */
    if (!((s[0] >= '0' && s[0] <= '9') || (s[0] == '-' && s[1] >= '0' && s[1] <= '9'))) {
        return false;
    }
    char *endp = NULL;
    errno = 0;
    long long x = strtoll(s, &endp, 10);
    if (errno != 0 || endp == s || *endp != '\0') {
        return false;
    }
    *v = (int64_t)x;
    return true;
}

char *
tt_etcd_dump(const json_t *j)
{
    size_t n = json_dumpb(j, NULL, 0, JSON_COMPACT);
    if (n == 0) {
        return NULL;
    }
    char *buf = tt_malloc(n + 1);
    if (buf == NULL) {
        return NULL;
    }
    if (json_dumpb(j, buf, n, JSON_COMPACT) != n) {
        tt_free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

const char *
tt_etcd_err_text(const struct tt_etcd_reply *rep)
{
    if (rep->json == NULL) {
        return "the answer is not JSON";
    }
    if (!json_is_object(rep->json)) {
        return "the answer is not a JSON object";
    }
    const json_t *e = json_object_get(rep->json, "error");
    if (json_is_string(e)) {
        return json_string_value(e);
    }
    const json_t *m = json_object_get(rep->json, "message");
    if (json_is_string(m)) {
        return json_string_value(m);
    }
    if (json_is_object(e)) {
        m = json_object_get(e, "message");
        if (json_is_string(m)) {
            return json_string_value(m);
        }
    }
    return "unexpected answer";
}

char *
tt_etcd_service_prefix(const struct tt_etcd_cfg *cfg, const char *service)
{
    size_t n = strlen(cfg->prefix) + strlen(service) + 3;
    char *s = tt_malloc(n);
    if (s != NULL) {
        snprintf(s, n, "%s/%s/", cfg->prefix, service);
    }
    return s;
}

tether_err
tt_etcd_encode_value(const tether_instance *inst, char **out)
{
    *out = NULL;
    tether_err err = TETHER_ENOMEM;
    json_t *meta = json_object();
    json_t *md = json_object();
    json_t *v = json_object();
    if (meta == NULL || md == NULL || v == NULL) {
        goto done;
    }
    for (size_t i = 0; i < inst->meta_count; i++) {
        /* json_string() refuses text that is not UTF-8. */
        json_t *s = json_string(inst->meta[i].value);
        if (s == NULL || json_object_set_new(meta, inst->meta[i].key, s) != 0) {
            err = TETHER_EINVAL;
            goto done;
        }
    }
    json_t *addr = json_string(inst->address);
    if (addr == NULL) {
        err = TETHER_EINVAL;
        goto done;
    }
    /* Go's naming/endpoints.Update: Op 0 is Add; Metadata is free-form,
     * and holds what tether readers need beyond the address. */
    if (json_object_set_new(v, "Op", json_integer(0)) != 0 ||
        json_object_set_new(v, "Addr", addr) != 0 ||
        json_object_set_new(md, "id", json_string(inst->id != NULL ? inst->id : "")) != 0 ||
        json_object_set_new(md, "pid", json_integer(inst->pid)) != 0 ||
        json_object_set_new(md, "state",
                            json_string(tether_instance_state_name(inst->state))) != 0 ||
        json_object_set_new(md, "weight", json_integer(inst->weight)) != 0) {
        goto done;
    }
    if (inst->meta_count > 0) {
        if (json_object_set(md, "meta", meta) != 0) {
            goto done;
        }
    }
    if (json_object_set(v, "Metadata", md) != 0) {
        goto done;
    }
    char *text = tt_etcd_dump(v);
    if (text == NULL) {
        goto done;
    }
    if (strlen(text) > TT_REGISTRY_MAX_ENTRY) {
        tt_free(text);
        err = TETHER_EMSGSIZE;
        goto done;
    }
    *out = text;
    err = TETHER_OK;

done:
    json_decref(meta);
    json_decref(md);
    json_decref(v);
    return err;
}

/* Fill inst's address, service and id; -1 on ENOMEM. */
static int
fill_names(tether_instance *inst, const char *service, const char *address, const char *id)
{
    inst->service = tt_strdup(service);
    inst->address = tt_strdup(address);
    inst->id = tt_strdup(id);
    if (inst->service == NULL || inst->address == NULL || inst->id == NULL) {
        tt_instance_clear(inst);
        return -1;
    }
    return 0;
}

/* The Metadata object of a value we (or a compatible writer) wrote. */
static int
decode_metadata(const json_t *md, tether_instance *inst, char *why, size_t whycap)
{
    const json_t *state = json_object_get(md, "state");
    if (json_is_string(state)) {
        const char *s = json_string_value(state);
        if (strcmp(s, "draining") == 0) {
            inst->state = TETHER_INSTANCE_DRAINING;
        } else if (strcmp(s, "serving") != 0) {
            snprintf(why, whycap, "unknown state '%.40s'", s);
            return 0;
        }
    }
    const json_t *weight = json_object_get(md, "weight");
    if (weight != NULL) {
        if (!json_is_integer(weight) || json_integer_value(weight) < 1 ||
            json_integer_value(weight) > (json_int_t)UINT32_MAX) {
            snprintf(why, whycap, "weight is not an integer in 1..4294967295");
            return 0;
        }
        inst->weight = (uint32_t)json_integer_value(weight);
    }
    const json_t *pid = json_object_get(md, "pid");
    if (json_is_integer(pid)) {
        inst->pid = (int64_t)json_integer_value(pid);
    }
    const json_t *meta = json_object_get(md, "meta");
    if (!json_is_object(meta) || json_object_size(meta) == 0) {
        return 1;
    }
    size_t n = json_object_size(meta);
    tether_meta *m = tt_calloc(n, sizeof *m);
    if (m == NULL) {
        return -1;
    }
    inst->meta = m;
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)meta, k, val)
    {
        if (!json_is_string(val) || k[0] == '\0') {
            continue; /* only string pairs are metadata; skip the rest */
        }
        m[inst->meta_count].key = tt_strdup(k);
        m[inst->meta_count].value = tt_strdup(json_string_value(val));
        inst->meta_count++;
        if (m[inst->meta_count - 1].key == NULL || m[inst->meta_count - 1].value == NULL) {
            return -1;
        }
    }
    return 1;
}

int
tt_etcd_decode_value(const char *key, const char *service, const char *value, size_t len,
                     tether_instance *inst, char *why, size_t whycap)
{
    memset(inst, 0, sizeof *inst);
    inst->weight = 1;
    inst->state = TETHER_INSTANCE_SERVING;
    why[0] = '\0';
    if (len > TT_REGISTRY_MAX_ENTRY) {
        snprintf(why, whycap, "value of %zu bytes is over the %d byte limit", len,
                 TT_REGISTRY_MAX_ENTRY);
        return 0;
    }
    if (memchr(value, '\0', len) != NULL) {
        snprintf(why, whycap, "value holds a NUL byte");
        return 0;
    }
    size_t s = 0;
    while (s < len && (value[s] == ' ' || value[s] == '\t' || value[s] == '\n' ||
                       value[s] == '\r')) {
        s++;
    }
    size_t e = len;
    while (e > s && (value[e - 1] == ' ' || value[e - 1] == '\t' || value[e - 1] == '\n' ||
                     value[e - 1] == '\r')) {
        e--;
    }
    if (s == e) {
        snprintf(why, whycap, "empty value");
        return 0;
    }
    if (value[s] != '{') {
        /* The Go pattern's plain "host:port". */
        char addr[TT_REGISTRY_MAX_ADDRESS + 1];
        if (e - s > TT_REGISTRY_MAX_ADDRESS) {
            snprintf(why, whycap, "plain value is too long for an address");
            return 0;
        }
        memcpy(addr, value + s, e - s);
        addr[e - s] = '\0';
        if (!tt_registry_address_valid(addr)) {
            snprintf(why, whycap, "plain value '%.60s' is not host:port", addr);
            return 0;
        }
        return fill_names(inst, service, addr, key) == 0 ? 1 : -1;
    }

    json_error_t jerr;
    json_t *root = json_loadb(value + s, e - s, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(why, whycap, "not JSON: %.80s", jerr.text);
        return 0;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        snprintf(why, whycap, "JSON value is not an object");
        goto done;
    }
    const json_t *op = json_object_get(root, "Op");
    if (op != NULL && !json_is_integer(op)) {
        snprintf(why, whycap, "Op is not an integer");
        goto done;
    }
    if (op != NULL && json_integer_value(op) != 0) {
        /* 1 is naming.Delete: not an instance, nothing to complain about. */
        if (json_integer_value(op) != 1) {
            snprintf(why, whycap, "unknown Op %lld", (long long)json_integer_value(op));
        }
        goto done;
    }
    const json_t *addr = json_object_get(root, "Addr");
    if (!json_is_string(addr) || !tt_registry_address_valid(json_string_value(addr))) {
        snprintf(why, whycap, "Addr is missing or not host:port");
        goto done;
    }
    const json_t *md = json_object_get(root, "Metadata");
    const json_t *id = json_is_object(md) ? json_object_get(md, "id") : NULL;
    const char *idtext = json_is_string(id) && json_string_length(id) > 0
                             ? json_string_value(id)
                             : key;
    if (fill_names(inst, service, json_string_value(addr), idtext) != 0) {
        rc = -1;
        goto done;
    }
    if (json_is_object(md)) {
        rc = decode_metadata(md, inst, why, whycap);
        if (rc != 1) {
            tt_instance_clear(inst);
        }
        goto done;
    }
    rc = 1;

done:
    json_decref(root);
    return rc;
}

bool
tt_etcd_kv(const json_t *kv, char **key, char **value, size_t *vlen, int64_t *mod_rev,
           bool *enomem)
{
    *key = NULL;
    *value = NULL;
    *vlen = 0;
    *enomem = false;
    const json_t *k = json_object_get(kv, "key");
    const json_t *v = json_object_get(kv, "value");
    size_t klen = 0;
    if (!json_is_object(kv) || !json_is_string(k) || (v != NULL && !json_is_string(v)) ||
        !tt_etcd_int(json_object_get(kv, "mod_revision"), mod_rev)) {
        return false;
    }
    if (!tt_etcd_unb64(json_string_value(k), key, &klen) ||
        !tt_etcd_unb64(v != NULL ? json_string_value(v) : "", value, vlen)) {
        /* Bad base64, or (rarely) no memory: either way skip the kv. */
        tt_free(*key);
        tt_free(*value);
        *key = NULL;
        *value = NULL;
        return false;
    }
    if (memchr(*key, '\0', klen) != NULL) {
        tt_free(*key);
        tt_free(*value);
        *key = NULL;
        *value = NULL;
        return false; /* never one of ours */
    }
    return true;
}
