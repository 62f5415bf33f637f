/*
 * pbjson_dec.c - JSON text -> protobuf message, with Go encoding/json's
 * rules: keys matched exactly, then ASCII case-insensitively; unknown
 * keys skipped; missing keys left zero; null leaves scalars unchanged and
 * clears lists, maps and messages; numbers must fit the field's type.
 * Errors carry Go's wording so that a jsonrpc caller sees familiar text.
 */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson/pbjson.h"
#include "codec/pbjson/pbutil.h"
#include "core/alloc.h"
#include "core/base64.h"

typedef struct dec {
    tt_json_reader r;
    const char *start; /* for offsets in syntax errors */
    char *err;
    size_t errlen;
} dec;

/* Where a value sits, for error texts ("Go struct field Args.A"). */
typedef struct where {
    const ProtobufCMessageDescriptor *msg; /* NULL at top level */
    const char *field;
} where;

static tether_err
fail(dec *d, const char *fmt, ...)
{
    if (d->err != NULL && d->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->err, d->errlen, fmt, ap);
        va_end(ap);
    }
    return TETHER_EBADREQUEST;
}

static tether_err
syntax(dec *d)
{
    return fail(d, "json: invalid JSON at offset %zu", (size_t)(d->r.p - d->start));
}

/* The Go type name of a field's values, for error texts. */
static const char *
go_type(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return "int32";
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return "uint32";
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return "int64";
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return "uint64";
    case PROTOBUF_C_TYPE_FLOAT:
        return "float32";
    case PROTOBUF_C_TYPE_DOUBLE:
        return "float64";
    case PROTOBUF_C_TYPE_BOOL:
        return "bool";
    case PROTOBUF_C_TYPE_STRING:
        return "string";
    case PROTOBUF_C_TYPE_BYTES:
        return "[]uint8";
    case PROTOBUF_C_TYPE_MESSAGE:
        return ((const ProtobufCMessageDescriptor *)f->descriptor)->short_name;
    }
    return "?";
}

/* Go's UnmarshalTypeError text.  what: "string", "number 1.5", ... */
static tether_err
mismatch(dec *d, const where *w, const char *what, int what_len, const char *type)
{
    if (w->msg != NULL) {
        return fail(d, "json: cannot unmarshal %.*s into Go struct field %s.%s of type %s",
                    what_len, what, w->msg->short_name, w->field, type);
    }
    return fail(d, "json: cannot unmarshal %.*s into Go value of type %s", what_len, what, type);
}

/* The JSON kind at the cursor, as Go names it in errors. */
static const char *
kind_name(char c)
{
    switch (c) {
    case '"':
        return "string";
    case '{':
        return "object";
    case '[':
        return "array";
    case 't':
    case 'f':
        return "bool";
    default:
        return "number";
    }
}

/* Peek at the first byte of the next value. */
static tether_err
peek(dec *d, char *c)
{
    tt_json_skip_ws(&d->r);
    if (d->r.p >= d->r.end) {
        return syntax(d);
    }
    *c = *d->r.p;
    return TETHER_OK;
}

/* Skip one value of any kind; the text is complete, so EAGAIN is a
 * syntax error too. */
static tether_err
skip(dec *d)
{
    unsigned depth = d->r.depth;
    tether_err err = tt_json_skip(&d->r);
    d->r.depth = depth;
    if (err == TETHER_EAGAIN && d->r.eof) {
        return TETHER_OK;
    }
    return err == TETHER_OK ? TETHER_OK : syntax(d);
}


/* A string value into a string or bytes field slot. */
static tether_err
set_string(dec *d, const where *w, const ProtobufCFieldDescriptor *f, void *slot)
{
    const char *s;
    size_t n;
    char *owned;
    tether_err err = tt_json_read_string(&d->r, &s, &n, &owned);
    if (err == TETHER_ENOMEM) {
        return err;
    }
    if (err != TETHER_OK) {
        return syntax(d);
    }
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        char *copy = tt_strndup(s, n);
        tt_free(owned);
        if (copy == NULL) {
            return TETHER_ENOMEM;
        }
        *(char **)slot = copy;
        return TETHER_OK;
    }
    if (f->type != PROTOBUF_C_TYPE_BYTES) {
        tt_free(owned);
        return mismatch(d, w, "string", 6, go_type(f));
    }
    uint8_t *data = tt_malloc(n / 4 * 3 + 3);
    size_t len = 0;
    if (data == NULL) {
        tt_free(owned);
        return TETHER_ENOMEM;
    }
    if (!tt_base64_decode(s, n, data, n / 4 * 3 + 3, &len)) {
        tt_free(owned);
        tt_free(data);
        return fail(d, "illegal base64 data in field %s", w->field != NULL ? w->field : "value");
    }
    tt_free(owned);
    ProtobufCBinaryData *b = slot;
    if (len == 0) {
        tt_free(data);
        data = NULL;
    }
    b->data = data;
    b->len = len;
    return TETHER_OK;
}

/* Parse the integer literal p[0..n) (optional '-', digits only). */
static bool
parse_int(const char *p, size_t n, bool *neg, uint64_t *mag)
{
    *neg = false;
    if (n > 0 && *p == '-') {
        *neg = true;
        p++;
        n--;
    }
    if (n == 0) {
        return false;
    }
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        unsigned dg = (unsigned)(p[i] - '0');
        if (x > (UINT64_MAX - dg) / 10) {
            return false;
        }
        x = x * 10 + dg;
    }
    *mag = x;
    return true;
}

/* strtod on a copy of the literal, with '.' swapped for the locale's
 * decimal point (as jansson does), since JSON always uses '.'. */
static bool
parse_double(const char *p, size_t n, double *v)
{
    char stack[128];
    char *buf = n < sizeof(stack) ? stack : tt_malloc(n + 1);
    if (buf == NULL) {
        return false;
    }
    memcpy(buf, p, n);
    buf[n] = '\0';
    const struct lconv *lc = localeconv();
    if (lc != NULL && lc->decimal_point != NULL && lc->decimal_point[0] != '.' &&
        lc->decimal_point[0] != '\0' && lc->decimal_point[1] == '\0') {
        char *dot = strchr(buf, '.');
        if (dot != NULL) {
            *dot = lc->decimal_point[0];
        }
    }
    errno = 0;
    char *end;
    *v = strtod(buf, &end);
    bool ok = end == buf + n && !isinf(*v);
    if (buf != stack) {
        tt_free(buf);
    }
    return ok;
}

/* A number literal into a numeric field slot. */
static tether_err
set_number(dec *d, const where *w, const ProtobufCFieldDescriptor *f, void *slot)
{
    const char *start = d->r.p;
    tether_err err = skip(d);
    if (err != TETHER_OK) {
        return err;
    }
    size_t n = (size_t)(d->r.p - start);
    int shown = n > 64 ? 64 : (int)n;
    char what[80];
    snprintf(what, sizeof(what), "number %.*s", shown, start);
    bool is_int = memchr(start, '.', n) == NULL && memchr(start, 'e', n) == NULL &&
                  memchr(start, 'E', n) == NULL;
    bool neg = false;
    uint64_t mag = 0;
    bool ok = is_int && parse_int(start, n, &neg, &mag);
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        if (!ok || (neg ? mag > (uint64_t)INT32_MAX + 1 : mag > INT32_MAX)) {
            break;
        }
        *(int32_t *)slot = neg ? (int32_t)(0 - mag) : (int32_t)mag;
        return TETHER_OK;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (!ok || (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > INT64_MAX)) {
            break;
        }
        *(int64_t *)slot = neg ? (int64_t)(0 - mag) : (int64_t)mag;
        return TETHER_OK;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (!ok || neg || mag > UINT32_MAX) {
            break;
        }
        *(uint32_t *)slot = (uint32_t)mag;
        return TETHER_OK;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (!ok || neg) {
            break;
        }
        *(uint64_t *)slot = mag;
        return TETHER_OK;
    case PROTOBUF_C_TYPE_DOUBLE: {
        double v;
        if (!parse_double(start, n, &v)) {
            break;
        }
        *(double *)slot = v;
        return TETHER_OK;
    }
    case PROTOBUF_C_TYPE_FLOAT: {
        double v;
        /* Go parses with 32-bit precision and refuses what overflows it. */
        if (!parse_double(start, n, &v) || isinf((float)v)) {
            break;
        }
        *(float *)slot = (float)v;
        return TETHER_OK;
    }
    default:
        return mismatch(d, w, "number", 6, go_type(f));
    }
    return mismatch(d, w, what, (int)strlen(what), go_type(f));
}

/* One scalar (non-message) value at the cursor into slot; JSON null
 * leaves the slot as it is, like Go. */
static tether_err
dec_scalar(dec *d, const where *w, const ProtobufCFieldDescriptor *f, void *slot)
{
    char c = 0;
    tether_err err = peek(d, &c);
    if (err != TETHER_OK) {
        return err;
    }
    switch (c) {
    case 'n':
        return skip(d);
    case '"':
        if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_BYTES) {
            /* Drop an earlier value of the same key first. */
            if (f->type == PROTOBUF_C_TYPE_STRING) {
                char **s = slot;
                if (*s != NULL && *s != f->default_value) {
                    tt_free(*s);
                }
                *s = NULL;
            } else {
                ProtobufCBinaryData *b = slot;
                const ProtobufCBinaryData *def = f->default_value;
                if (b->data != NULL && (def == NULL || def->data != b->data)) {
                    tt_free(b->data);
                }
                b->data = NULL;
                b->len = 0;
            }
        }
        return set_string(d, w, f, slot);
    case 't':
    case 'f':
        if (f->type != PROTOBUF_C_TYPE_BOOL) {
            return mismatch(d, w, "bool", 4, go_type(f));
        }
        err = skip(d);
        if (err == TETHER_OK) {
            *(protobuf_c_boolean *)slot = c == 't';
        }
        return err;
    case '{':
    case '[': {
        const char *k = kind_name(c);
        return mismatch(d, w, k, (int)strlen(k), go_type(f));
    }
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            return set_number(d, w, f, slot);
        }
        return syntax(d);
    }
}

static tether_err dec_message(dec *d, const where *w, const ProtobufCMessageDescriptor *desc,
                              ProtobufCMessage **slot);

/* A value for field f (singular, any type) into slot. */
static tether_err
dec_value(dec *d, const where *w, const ProtobufCFieldDescriptor *f, void *slot)
{
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        return dec_message(d, w, f->descriptor, slot);
    }
    return dec_scalar(d, w, f, slot);
}

/* Open a container: check depth, step over the bracket, and tell whether
 * it is empty. */
static tether_err
open_container(dec *d, bool *empty, char close)
{
    if (d->r.depth >= TT_JSON_MAX_DEPTH) {
        return fail(d, "json: exceeded max depth %d", TT_JSON_MAX_DEPTH);
    }
    d->r.depth++;
    d->r.p++;
    tt_json_skip_ws(&d->r);
    if (d->r.p >= d->r.end) {
        return syntax(d);
    }
    *empty = *d->r.p == close;
    if (*empty) {
        d->r.p++;
        d->r.depth--;
    }
    return TETHER_OK;
}

/* After a member: ',' continues (returns true in *more), close ends. */
static tether_err
next_member(dec *d, char close, bool *more)
{
    tt_json_skip_ws(&d->r);
    if (d->r.p >= d->r.end) {
        return syntax(d);
    }
    if (*d->r.p == ',') {
        d->r.p++;
        *more = true;
        return TETHER_OK;
    }
    if (*d->r.p == close) {
        d->r.p++;
        d->r.depth--;
        *more = false;
        return TETHER_OK;
    }
    return syntax(d);
}

/* Read an object key and the ':' after it. */
static tether_err
read_key(dec *d, const char **s, size_t *n, char **owned)
{
    tt_json_skip_ws(&d->r);
    tether_err err = tt_json_read_string(&d->r, s, n, owned);
    if (err == TETHER_ENOMEM) {
        return err;
    }
    if (err != TETHER_OK) {
        return syntax(d);
    }
    tt_json_skip_ws(&d->r);
    if (d->r.p >= d->r.end || *d->r.p != ':') {
        tt_free(*owned);
        *owned = NULL;
        return syntax(d);
    }
    d->r.p++;
    return TETHER_OK;
}

/* A map key (object key text) into the entry's key field; Go parses
 * integer keys with strconv.ParseInt/ParseUint. */
static tether_err
set_map_key(dec *d, const ProtobufCFieldDescriptor *kf, ProtobufCMessage *entry, const char *s,
            size_t n)
{
    void *slot = tt_pb_field_ptr(entry, kf);
    if (kf->type == PROTOBUF_C_TYPE_STRING) {
        char *copy = tt_strndup(s, n);
        if (copy == NULL) {
            return TETHER_ENOMEM;
        }
        *(char **)slot = copy;
        return TETHER_OK;
    }
    if (kf->type == PROTOBUF_C_TYPE_BOOL) {
        if (n == 4 && memcmp(s, "true", 4) == 0) {
            *(protobuf_c_boolean *)slot = 1;
            return TETHER_OK;
        }
        if (n == 5 && memcmp(s, "false", 5) == 0) {
            return TETHER_OK;
        }
    } else {
        /* Reuse the number path on the key text itself. */
        dec sub = *d;
        sub.r.p = s;
        sub.r.end = s + n;
        sub.start = s;
        where w = {NULL, NULL};
        if (n > 0 && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))) {
            tether_err err = set_number(&sub, &w, kf, slot);
            if (err == TETHER_OK && sub.r.p == sub.r.end) {
                return TETHER_OK;
            }
        }
    }
    return fail(d, "json: cannot unmarshal number %.*s into Go value of type %s",
                (int)(n > 64 ? 64 : n), s, go_type(kf));
}

static tether_err
dec_map(dec *d, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0];
    const ProtobufCFieldDescriptor *vf = &ed->fields[1];
    bool empty = false;
    tether_err err = open_container(d, &empty, '}');
    if (err != TETHER_OK || empty) {
        return err;
    }
    where vw = {ed, "value"};
    for (bool more = true; more;) {
        const char *ks;
        size_t kn;
        char *owned;
        err = read_key(d, &ks, &kn, &owned);
        if (err != TETHER_OK) {
            return err;
        }
        ProtobufCMessage **slot = tt_pb_repeated_push(msg, f, TT_PBJSON_MAX_ELEMS);
        ProtobufCMessage *entry = slot == NULL ? NULL : tt_pb_new(ed);
        if (entry == NULL) {
            tt_free(owned);
            if (slot == NULL && *(size_t *)tt_pb_quant_ptr(msg, f) >= TT_PBJSON_MAX_ELEMS) {
                return fail(d, "json: more than %u map entries", TT_PBJSON_MAX_ELEMS);
            }
            if (slot != NULL) {
                (*(size_t *)tt_pb_quant_ptr(msg, f))--;
            }
            return TETHER_ENOMEM;
        }
        *slot = entry;
        err = set_map_key(d, kf, entry, ks, kn);
        tt_free(owned);
        if (err == TETHER_OK) {
            err = dec_value(d, &vw, vf, tt_pb_field_ptr(entry, vf));
        }
        if (err == TETHER_OK) {
            err = next_member(d, '}', &more);
        }
        if (err != TETHER_OK) {
            return err;
        }
    }
    return TETHER_OK;
}

static tether_err
dec_repeated(dec *d, const where *w, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    char c = 0;
    tether_err err = peek(d, &c);
    if (err != TETHER_OK) {
        return err;
    }
    bool is_map = tt_pb_is_map(msg->descriptor, f);
    if (c == 'n') {
        tt_pb_clear_field(msg, f);
        return skip(d);
    }
    if (is_map) {
        if (c != '{') {
            const char *k = kind_name(c);
            return mismatch(d, w, k, (int)strlen(k), "map");
        }
        return dec_map(d, msg, f);
    }
    if (c != '[') {
        char type[96];
        const char *k = kind_name(c);
        snprintf(type, sizeof(type), "[]%s", go_type(f));
        return mismatch(d, w, k, (int)strlen(k), type);
    }
    /* A list replaces what an earlier duplicate key put there, as in Go. */
    tt_pb_clear_field(msg, f);
    bool empty;
    err = open_container(d, &empty, ']');
    if (err != TETHER_OK || empty) {
        return err;
    }
    for (bool more = true; more;) {
        void *slot = tt_pb_repeated_push(msg, f, TT_PBJSON_MAX_ELEMS);
        if (slot == NULL) {
            if (*(size_t *)tt_pb_quant_ptr(msg, f) >= TT_PBJSON_MAX_ELEMS) {
                return fail(d, "json: more than %u elements in field %s", TT_PBJSON_MAX_ELEMS,
                            f->name);
            }
            return TETHER_ENOMEM;
        }
        err = dec_value(d, w, f, slot);
        /* protobuf-c cannot hold a NULL list element (packing a string
         * list calls strlen on each): null is an empty message or Go's
         * "" instead. */
        if (err == TETHER_OK && f->type == PROTOBUF_C_TYPE_MESSAGE &&
            *(ProtobufCMessage **)slot == NULL) {
            *(ProtobufCMessage **)slot = tt_pb_new(f->descriptor);
            if (*(ProtobufCMessage **)slot == NULL) {
                err = TETHER_ENOMEM;
            }
        } else if (err == TETHER_OK && f->type == PROTOBUF_C_TYPE_STRING &&
                   *(char **)slot == NULL) {
            *(char **)slot = tt_strndup("", 0);
            if (*(char **)slot == NULL) {
                err = TETHER_ENOMEM;
            }
        }
        if (err == TETHER_OK) {
            err = next_member(d, ']', &more);
        }
        if (err != TETHER_OK) {
            return err;
        }
    }
    return TETHER_OK;
}

static tether_err
dec_field(dec *d, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    where w = {msg->descriptor, f->name};
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        return dec_repeated(d, &w, msg, f);
    }
    /* Taking a oneof member frees the member that was active. */
    tt_pb_mark_set(msg, f);
    return dec_value(d, &w, f, tt_pb_field_ptr(msg, f));
}

/* A message value at the cursor into *slot (created if NULL, merged into
 * otherwise, as Go decodes into an existing struct). */
static tether_err
dec_message(dec *d, const where *w, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **slot)
{
    char c = 0;
    tether_err err = peek(d, &c);
    if (err != TETHER_OK) {
        return err;
    }
    if (c == 'n') {
        /* null sets a Go pointer to nil. */
        tt_pb_free(*slot);
        *slot = NULL;
        return skip(d);
    }
    if (*slot == NULL) {
        *slot = tt_pb_new(desc);
        if (*slot == NULL) {
            return TETHER_ENOMEM;
        }
    }
    const ProtobufCFieldDescriptor *wf = tt_pb_wrapper_field(desc);
    if (wf != NULL) {
        /* A wrapper is its bare value (Go's *int64 and friends). */
        return dec_scalar(d, w, wf, tt_pb_field_ptr(*slot, wf));
    }
    if (c != '{') {
        const char *k = kind_name(c);
        return mismatch(d, w, k, (int)strlen(k), desc->short_name);
    }
    bool empty = false;
    err = open_container(d, &empty, '}');
    if (err != TETHER_OK || empty) {
        return err;
    }
    for (bool more = true; more;) {
        const char *ks;
        size_t kn;
        char *owned;
        err = read_key(d, &ks, &kn, &owned);
        if (err != TETHER_OK) {
            return err;
        }
        const ProtobufCFieldDescriptor *f = tt_pb_field_by_name(desc, ks, kn);
        tt_free(owned);
        err = f != NULL ? dec_field(d, *slot, f) : skip(d);
        if (err == TETHER_OK) {
            err = next_member(d, '}', &more);
        }
        if (err != TETHER_OK) {
            return err;
        }
    }
    return TETHER_OK;
}

tether_err
tt_pbjson_decode(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
                 ProtobufCMessage **out, char *err, size_t errlen)
{
    if (text == NULL) {
        /* An empty body may come as (NULL, 0). */
        text = "";
        len = 0;
    }
    dec d = {{text, text + len, 0, false}, text, err, errlen};
    ProtobufCMessage *m = NULL;
    tether_err e = TETHER_OK;
    *out = NULL;
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    tt_json_skip_ws(&d.r);
    if (d.r.p < d.r.end) {
        where w = {NULL, NULL};
        e = dec_message(&d, &w, desc, &m);
        if (e == TETHER_OK) {
            tt_json_skip_ws(&d.r);
            if (d.r.p != d.r.end) {
                e = syntax(&d);
            }
        }
    }
    if (e == TETHER_OK && m == NULL) {
        m = tt_pb_new(desc);
        if (m == NULL) {
            e = TETHER_ENOMEM;
        }
    }
    if (e != TETHER_OK) {
        tt_pb_free(m);
        return e;
    }
    *out = m;
    return TETHER_OK;
}

tether_err
tt_pbjson_from_json(const ProtobufCMessageDescriptor *desc, const json_t *j, ProtobufCMessage **out,
                    char *err, size_t errlen)
{
    *out = NULL;
    /* Serialise into our own allocation (json_dumps would use jansson's
     * allocator), then read it back with the one decoder. */
    size_t need = json_dumpb(j, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    if (need == 0) {
        return TETHER_EINVAL;
    }
    char *text = tt_malloc(need);
    if (text == NULL) {
        return TETHER_ENOMEM;
    }
    json_dumpb(j, text, need, JSON_COMPACT | JSON_ENCODE_ANY);
    tether_err e = tt_pbjson_decode(desc, text, need, out, err, errlen);
    tt_free(text);
    return e;
}
