/*
 * jsonrpc.c - Go net/rpc/jsonrpc codec (contract in jsonrpc.h).
 *
 * Framing: a cheap resumable scan (brackets outside strings) finds where
 * the next top-level object ends; only then is the object walked once
 * with the validating reader, which records the text ranges of "method",
 * "params" and "id" (keys matched case-insensitively, the last duplicate
 * winning, as Go's decoder does).  Bodies stay JSON text until unpack().
 */
#include "codec/jsonrpc/jsonrpc.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "codec/pbjson/pbjson.h"
#include "core/alloc.h"

/* A non-numeric request id kept for echoing in the reply. */
typedef struct raw_id {
    uint64_t seq;
    char *text;
    size_t len;
} raw_id;

typedef struct jsonrpc_state {
    size_t max_msg;
    /* Resumable framing scan over the caller's unconsumed bytes. */
    size_t scan_pos;   /* next byte to look at */
    size_t scan_start; /* where the object's '{' is (after whitespace) */
    unsigned scan_depth;
    bool scan_in_str;
    bool scan_esc;
    bool scan_active; /* a '{' was seen and the object is not complete */
    /* Kept ids, in arrival order. */
    raw_id *ids;
    size_t n_ids;
    size_t cap_ids;
    size_t id_bytes; /* text held by ids[], counted against TT_JSONRPC_ID_BUDGET */
    uint64_t next_raw_seq;
    /* Decoded method / error text when the wire form had escapes. */
    char *method_buf;
    char *errtext_buf;
    char err[TT_PBJSON_ERRLEN];
} jsonrpc_state;

static const char empty_method[] = "";

/* Go's texts for params that cannot be read into [1]interface{}. */
static const char err_missing_params[] = "jsonrpc: request body missing params";

static const char *
params_kind_error(char c)
{
    switch (c) {
    case '{':
        return "json: cannot unmarshal object into Go value of type [1]interface {}";
    case '"':
        return "json: cannot unmarshal string into Go value of type [1]interface {}";
    case 't':
    case 'f':
        return "json: cannot unmarshal bool into Go value of type [1]interface {}";
    default:
        return "json: cannot unmarshal number into Go value of type [1]interface {}";
    }
}

static int
jsonrpc_probe(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!tt_json_is_ws(p[i])) {
            return p[i] == '{' ? 1 : 0;
        }
    }
    return -1;
}

static tether_err
jsonrpc_init(void *state, size_t max_msg)
{
    jsonrpc_state *s = state;
    memset(s, 0, sizeof(*s));
    s->max_msg = max_msg;
    s->next_raw_seq = (uint64_t)1 << 63;
    return TETHER_OK;
}

static void
jsonrpc_fini(void *state)
{
    jsonrpc_state *s = state;
    for (size_t i = 0; i < s->n_ids; i++) {
        tt_free(s->ids[i].text);
    }
    tt_free(s->ids);
    tt_free(s->method_buf);
    tt_free(s->errtext_buf);
    memset(s, 0, sizeof(*s));
}

const char *
tt_jsonrpc_last_error(const void *state)
{
    return ((const jsonrpc_state *)state)->err;
}

size_t
tt_jsonrpc_held_ids(const void *state, size_t *bytes)
{
    const jsonrpc_state *s = state;
    if (bytes != NULL) {
        *bytes = s->id_bytes;
    }
    return s->n_ids;
}

static void
scan_reset(jsonrpc_state *s)
{
    s->scan_pos = 0;
    s->scan_start = 0;
    s->scan_depth = 0;
    s->scan_in_str = false;
    s->scan_esc = false;
    s->scan_active = false;
}

/*
 * frame - find the next whole object in p[0..n).  TETHER_OK: it spans
 * p[*start..*end).  TETHER_EAGAIN: incomplete (*start = n when only
 * whitespace was seen).  Validation of the object comes later.
 */
static tether_err
frame(jsonrpc_state *s, const uint8_t *p, size_t n, size_t *start, size_t *end)
{
    if (s->scan_pos > n) {
        scan_reset(s);
    }
    size_t i = s->scan_pos;
    if (!s->scan_active) {
        while (i < n && tt_json_is_ws(p[i])) {
            i++;
        }
        if (i == n) {
            s->scan_pos = 0;
            *start = n;
            return TETHER_EAGAIN;
        }
        if (p[i] != '{') {
            return TETHER_EPROTO;
        }
        s->scan_start = i;
        s->scan_active = true;
        s->scan_depth = 0;
    }
    /* The limit counts the object only, not whitespace before it. */
    size_t limit = n;
    if (s->max_msg != 0 && n - s->scan_start > s->max_msg) {
        limit = s->scan_start + s->max_msg;
    }
    unsigned depth = s->scan_depth;
    bool in_str = s->scan_in_str;
    bool esc = s->scan_esc;
    for (; i < limit; i++) {
        uint8_t c = p[i];
        if (in_str) {
            if (esc) {
                esc = false;
            } else if (c == '\\') {
                esc = true;
            } else if (c == '"') {
                in_str = false;
            }
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            /* Mismatched kinds are caught by the validating walk. */
            if (--depth == 0) {
                *start = s->scan_start;
                *end = i + 1;
                scan_reset(s);
                return TETHER_OK;
            }
        }
    }
    if (limit < n) {
        snprintf(s->err, sizeof(s->err), "jsonrpc: object longer than %zu bytes", s->max_msg);
        return TETHER_EMSGSIZE;
    }
    s->scan_pos = i;
    s->scan_depth = depth;
    s->scan_in_str = in_str;
    s->scan_esc = esc;
    *start = s->scan_start;
    return TETHER_EAGAIN;
}

static bool
key_is(const char *k, size_t n, const char *want)
{
    size_t wl = strlen(want);
    if (n != wl) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (c >= 'A' && c <= 'Z') {
            c = (char)(c + 32);
        }
        if (c != want[i]) {
            return false;
        }
    }
    return true;
}

/* Text ranges of the members we care about (NULL: absent). */
typedef struct members {
    const char *v[3];
    size_t n[3];
} members;

enum { M_METHOD_OR_RESULT = 0, M_PARAMS_OR_ERROR = 1, M_ID = 2 };

/*
 * walk - validate the object p[0..n) and record the value ranges of the
 * keys k0, k1, "id".
 */
static tether_err
walk(const char *p, size_t n, const char *k0, const char *k1, members *m)
{
    tt_json_reader r = {p, p + n, 0, false};
    memset(m, 0, sizeof(*m));
    r.p++; /* '{' */
    r.depth = 1;
    tt_json_skip_ws(&r);
    if (r.p < r.end && *r.p == '}') {
        r.p++;
        goto done;
    }
    for (;;) {
        const char *ks;
        size_t kn;
        char *owned;
        tt_json_skip_ws(&r);
        tether_err err = tt_json_read_string(&r, &ks, &kn, &owned);
        if (err != TETHER_OK) {
            return err == TETHER_ENOMEM ? err : TETHER_EPROTO;
        }
        int which = key_is(ks, kn, k0) ? 0 : key_is(ks, kn, k1) ? 1 : key_is(ks, kn, "id") ? 2 : -1;
        tt_free(owned);
        tt_json_skip_ws(&r);
        if (r.p >= r.end || *r.p != ':') {
            return TETHER_EPROTO;
        }
        r.p++;
        tt_json_skip_ws(&r);
        const char *vs = r.p;
        err = tt_json_skip(&r);
        if (err != TETHER_OK) {
            return TETHER_EPROTO;
        }
        if (which >= 0) {
            m->v[which] = vs;
            m->n[which] = (size_t)(r.p - vs);
        }
        tt_json_skip_ws(&r);
        if (r.p >= r.end) {
            return TETHER_EPROTO;
        }
        if (*r.p == ',') {
            r.p++;
            continue;
        }
        if (*r.p == '}') {
            r.p++;
            break;
        }
        return TETHER_EPROTO;
    }
done:
    return r.p == r.end ? TETHER_OK : TETHER_EPROTO;
}

/* Decode a JSON string value v[0..n) into *s and *len, using *buf when it
 * needs unescaping (the previous *buf is freed). */
static tether_err
string_value(const char *v, size_t n, char **buf, const char **s, size_t *len)
{
    tt_json_reader r = {v, v + n, 0, false};
    char *owned;
    tether_err err = tt_json_read_string(&r, s, len, &owned);
    if (err != TETHER_OK) {
        return err == TETHER_ENOMEM ? err : TETHER_EPROTO;
    }
    if (owned != NULL) {
        tt_free(*buf);
        *buf = owned;
    }
    return TETHER_OK;
}

static raw_id *
find_id(jsonrpc_state *s, uint64_t seq)
{
    for (size_t i = 0; i < s->n_ids; i++) {
        if (s->ids[i].seq == seq) {
            return &s->ids[i];
        }
    }
    return NULL;
}

/* Keep a non-numeric id (compacted like Go's RawMessage output) and give
 * it a seq no kept id uses. */
static tether_err
keep_id(jsonrpc_state *s, const char *v, size_t n, uint64_t *seq)
{
    /* Go's client sends numbers; a string id of a sane length is echoed,
     * a longer one would be held (re-encoded, up to 6 times its size)
     * until its reply, so it breaks the stream instead. */
    if (n > TT_JSONRPC_MAX_ID_LEN) {
        snprintf(s->err, sizeof(s->err), "jsonrpc: request id of %zu bytes (the limit is %d)", n,
                 TT_JSONRPC_MAX_ID_LEN);
        return TETHER_ELIMIT;
    }
    if (s->n_ids >= TT_JSONRPC_MAX_IDS) {
        snprintf(s->err, sizeof(s->err), "jsonrpc: more than %d non-numeric ids waiting",
                 TT_JSONRPC_MAX_IDS);
        return TETHER_ELIMIT;
    }
    if (s->n_ids == s->cap_ids) {
        size_t ncap = s->cap_ids == 0 ? 8 : s->cap_ids * 2;
        raw_id *na = tt_realloc(s->ids, ncap * sizeof(*na));
        if (na == NULL) {
            return TETHER_ENOMEM;
        }
        s->ids = na;
        s->cap_ids = ncap;
    }
    tt_buf b = {0};
    tether_err err = v != NULL ? tt_json_compact(&b, v, n) : tt_buf_append(&b, "null", 4);
    if (err != TETHER_OK) {
        tt_buf_free(&b);
        return err;
    }
    if (s->id_bytes + b.len + sizeof(raw_id) > TT_JSONRPC_ID_BUDGET) {
        tt_buf_free(&b);
        snprintf(s->err, sizeof(s->err), "jsonrpc: non-numeric ids waiting hold more than %d bytes",
                 TT_JSONRPC_ID_BUDGET);
        return TETHER_ELIMIT;
    }
    s->id_bytes += b.len + sizeof(raw_id);
    uint64_t q = s->next_raw_seq;
    while (find_id(s, q) != NULL || q < ((uint64_t)1 << 63)) {
        q = q < ((uint64_t)1 << 63) ? (uint64_t)1 << 63 : q + 1;
    }
    s->next_raw_seq = q + 1;
    s->ids[s->n_ids].seq = q;
    s->ids[s->n_ids].text = (char *)b.data;
    s->ids[s->n_ids].len = b.len;
    s->n_ids++;
    *seq = q;
    return TETHER_OK;
}

static void
drop_id(jsonrpc_state *s, raw_id *id)
{
    s->id_bytes -= id->len + sizeof(raw_id);
    tt_free(id->text);
    size_t i = (size_t)(id - s->ids);
    memmove(&s->ids[i], &s->ids[i + 1], (s->n_ids - i - 1) * sizeof(*id));
    s->n_ids--;
}

/* Consume whitespace after an object too (Go's writers end each with
 * "\n"), saving the caller a call that would yield nothing. */
static size_t
skip_trailing_ws(const uint8_t *p, size_t n, size_t end)
{
    while (end < n && tt_json_is_ws(p[end])) {
        end++;
    }
    return end;
}

/*
 * next_object - frame the next JSON object of the stream and walk its
 * members k1, k2 (and the id) into *mb.  TETHER_OK with *obj == NULL and
 * *used set when only whitespace was there (it is consumed); otherwise the
 * framing or walking result, with *obj and *end describing the object.
 */
static tether_err
next_object(jsonrpc_state *s, const uint8_t *p, size_t n, size_t *used, const char *k1,
            const char *k2, const char **obj, size_t *end, members *mb)
{
    size_t start;
    *obj = NULL;
    *used = 0;
    tether_err err = frame(s, p, n, &start, end);
    if (err == TETHER_EAGAIN) {
        if (start == n && n > 0) {
            *used = n; /* only whitespace so far: consume it */
            return TETHER_OK;
        }
        return err;
    }
    if (err != TETHER_OK) {
        return err;
    }
    *obj = (const char *)p + start;
    return walk(*obj, *end - start, k1, k2, mb);
}

static tether_err
jsonrpc_decode_request(void *state, const uint8_t *p, size_t n, size_t *used, tt_rpc_msg *m)
{
    jsonrpc_state *s = state;
    size_t end;
    const char *obj;
    members mb;
    memset(m, 0, sizeof(*m));
    s->err[0] = '\0';
    tether_err err = next_object(s, p, n, used, "method", "params", &obj, &end, &mb);
    if (err != TETHER_OK || obj == NULL) {
        return err;
    }
    /* method: a string, or null/absent (empty name); anything else makes
     * Go's server close the connection. */
    m->method = empty_method;
    const char *mv = mb.v[M_METHOD_OR_RESULT];
    if (mv != NULL && *mv == '"') {
        err =
            string_value(mv, mb.n[M_METHOD_OR_RESULT], &s->method_buf, &m->method, &m->method_len);
        if (err != TETHER_OK) {
            return err;
        }
    } else if (mv != NULL && *mv != 'n') {
        return TETHER_EPROTO;
    }
    /* id: plain unsigned integers are the seq; anything else is kept. */
    uint64_t seq;
    const char *iv = mb.v[M_ID];
    if (iv != NULL && tt_json_parse_u64(iv, mb.n[M_ID], &seq) && find_id(s, seq) == NULL) {
        m->seq = seq;
    } else {
        err = keep_id(s, iv, mb.n[M_ID], &m->seq);
        if (err != TETHER_OK) {
            return err;
        }
    }
    /* params: the first element's text is the body. */
    const char *pv = mb.v[M_PARAMS_OR_ERROR];
    m->status = TETHER_OK;
    if (pv == NULL || *pv == 'n') {
        m->status = TETHER_EBADREQUEST;
        m->errtext = err_missing_params;
        m->errtext_len = sizeof(err_missing_params) - 1;
    } else if (*pv != '[') {
        m->status = TETHER_EBADREQUEST;
        m->errtext = params_kind_error(*pv);
        m->errtext_len = strlen(m->errtext);
    } else {
        tt_json_reader r = {pv + 1, pv + mb.n[M_PARAMS_OR_ERROR], 1, false};
        tt_json_skip_ws(&r);
        if (r.p < r.end && *r.p != ']') {
            const char *b = r.p;
            /* Already validated by walk(), so this cannot fail. */
            (void)tt_json_skip(&r);
            m->body = (const uint8_t *)b;
            m->body_len = (size_t)(r.p - b);
        }
    }
    *used = skip_trailing_ws(p, n, end);
    return TETHER_OK;
}

static tether_err
jsonrpc_decode_reply(void *state, const uint8_t *p, size_t n, size_t *used, tt_rpc_msg *m)
{
    jsonrpc_state *s = state;
    size_t end;
    const char *obj;
    members mb;
    memset(m, 0, sizeof(*m));
    tether_err err = next_object(s, p, n, used, "result", "error", &obj, &end, &mb);
    if (err != TETHER_OK || obj == NULL) {
        return err;
    }
    /* Go's client decodes the id into a uint64. */
    if (mb.v[M_ID] == NULL || !tt_json_parse_u64(mb.v[M_ID], mb.n[M_ID], &m->seq)) {
        return TETHER_EPROTO;
    }
    const char *ev = mb.v[M_PARAMS_OR_ERROR];
    const char *rv = mb.v[M_METHOD_OR_RESULT];
    if (ev != NULL && *ev == '"') {
        m->status = TETHER_EREMOTE;
        err = string_value(ev, mb.n[M_PARAMS_OR_ERROR], &s->errtext_buf, &m->errtext,
                           &m->errtext_len);
        if (err != TETHER_OK) {
            return err;
        }
        if (m->errtext_len == 0) {
            m->errtext = "unspecified error";
            m->errtext_len = strlen(m->errtext);
        }
    } else if (ev != NULL && *ev != 'n') {
        /* Go: "invalid error ...", and the connection is shut down. */
        return TETHER_EPROTO;
    } else if (rv == NULL || *rv == 'n') {
        return TETHER_EPROTO;
    } else {
        m->status = TETHER_OK;
        m->body = (const uint8_t *)rv;
        m->body_len = mb.n[M_METHOD_OR_RESULT];
    }
    *used = skip_trailing_ws(p, n, end);
    return TETHER_OK;
}

static tether_err
jsonrpc_unpack(void *state, const ProtobufCMessageDescriptor *desc, const uint8_t *body, size_t len,
               ProtobufCMessage **out)
{
    jsonrpc_state *s = state;
    s->err[0] = '\0';
    return tt_pbjson_decode(desc, (const char *)body, len, out, s->err, sizeof(s->err));
}

#define PUT(out, lit) tt_buf_append((out), (lit), sizeof(lit) - 1)

/* Write the reply's id: the kept text for that seq, else the number. */
static tether_err
put_id(jsonrpc_state *s, tt_buf *out, uint64_t seq, raw_id **kept)
{
    *kept = find_id(s, seq);
    if (*kept != NULL) {
        return tt_buf_append(out, (*kept)->text, (*kept)->len);
    }
    return tt_json_write_u64(out, seq);
}

/* Finish a reply: check its size, drop the kept id once it is written.
 * A failed encode_reply keeps the id for the encode_error that follows
 * (too large, out of memory); an error reply is the last word on its call,
 * so it drops the id whether it could be written or not (last). */
static tether_err
finish(jsonrpc_state *s, tt_buf *out, size_t mark, tether_err err, raw_id *kept, bool last)
{
    if (err == TETHER_OK && s->max_msg != 0 && out->len - mark > s->max_msg) {
        err = TETHER_EMSGSIZE;
    }
    if (err != TETHER_OK) {
        out->len = mark;
    }
    if (kept != NULL && (err == TETHER_OK || last)) {
        drop_id(s, kept);
    }
    return err;
}

static tether_err
jsonrpc_encode_reply(void *state, tt_buf *out, uint64_t seq, const char *method, size_t method_len,
                     const ProtobufCMessage *msg)
{
    jsonrpc_state *s = state;
    raw_id *kept = NULL;
    size_t mark = out->len;
    /* Go's client shuts the connection on "result":null with no error. */
    if (msg == NULL) {
        return TETHER_EINVAL;
    }
    tether_err err = PUT(out, "{\"id\":");
    if (err == TETHER_OK) {
        err = put_id(s, out, seq, &kept);
    }
    if (err == TETHER_OK) {
        err = PUT(out, ",\"result\":");
    }
    if (err == TETHER_OK) {
        err = tt_pbjson_encode(out, msg);
    }
    if (err == TETHER_OK) {
        err = PUT(out, ",\"error\":null}\n");
    }
    return finish(s, out, mark, err, kept, false);
}

static tether_err
jsonrpc_encode_error(void *state, tt_buf *out, uint64_t seq, const char *method, size_t method_len,
                     tether_err code, const char *text)
{
    jsonrpc_state *s = state;
    raw_id *kept = NULL;
    size_t mark = out->len;
    if (text == NULL || text[0] == '\0') {
        /* An empty error string reads as success-less "unspecified error"
         * in Go; say what happened instead. */
        text = tether_strerror(code);
    }
    tether_err err = PUT(out, "{\"id\":");
    if (err == TETHER_OK) {
        err = put_id(s, out, seq, &kept);
    }
    if (err == TETHER_OK) {
        err = PUT(out, ",\"result\":null,\"error\":");
    }
    if (err == TETHER_OK) {
        err = tt_json_write_string(out, text, strlen(text));
    }
    if (err == TETHER_OK) {
        err = PUT(out, "}\n");
    }
    return finish(s, out, mark, err, kept, true);
}

static tether_err put_request(jsonrpc_state *s, tt_buf *out, uint64_t seq, const char *method,
                              size_t method_len, const ProtobufCMessage *msg, const void *json,
                              size_t len);

static tether_err
jsonrpc_encode_request(void *state, tt_buf *out, uint64_t seq, const char *method,
                       size_t method_len, const ProtobufCMessage *msg)
{
    return put_request(state, out, seq, method, method_len, msg, NULL, 0);
}

static tether_err
jsonrpc_encode_request_text(void *state, tt_buf *out, uint64_t seq, const char *method,
                            size_t method_len, const void *json, size_t len)
{
    /* The caller's text must be one JSON value (it goes in as params[0]). */
    tt_json_reader r = {json, (const char *)json + len, 0, false};
    if (tt_json_skip(&r) != TETHER_OK) {
        return TETHER_EINVAL;
    }
    tt_json_skip_ws(&r);
    if (r.p != r.end) {
        return TETHER_EINVAL;
    }
    return put_request(state, out, seq, method, method_len, NULL, json, len);
}

/* A request: params[0] is msg in the JSON mapping, or (msg NULL) the JSON
 * text json[0..len) as given, whitespace aside. */
static tether_err
put_request(jsonrpc_state *s, tt_buf *out, uint64_t seq, const char *method, size_t method_len,
            const ProtobufCMessage *msg, const void *json, size_t len)
{
    size_t mark = out->len;
    tether_err err = PUT(out, "{\"method\":");
    if (err == TETHER_OK) {
        err = tt_json_write_string(out, method, method_len);
    }
    if (err == TETHER_OK) {
        err = PUT(out, ",\"params\":[");
    }
    if (err == TETHER_OK) {
        err = msg != NULL ? tt_pbjson_encode(out, msg) : tt_json_compact(out, json, len);
    }
    if (err == TETHER_OK) {
        err = PUT(out, "],\"id\":");
    }
    if (err == TETHER_OK) {
        err = tt_json_write_u64(out, seq);
    }
    if (err == TETHER_OK) {
        err = PUT(out, "}\n");
    }
    return finish(s, out, mark, err, NULL, false);
}

static tether_err
jsonrpc_encode_answer(void *state, tt_buf *out, const tt_answer *a)
{
    return tt_codec_go_answer(&tt_codec_jsonrpc, state, out, a);
}

const tt_codec_ops tt_codec_jsonrpc = {
    .name = "jsonrpc",
    .state_size = sizeof(jsonrpc_state),
    .probe = jsonrpc_probe,
    .init = jsonrpc_init,
    .fini = jsonrpc_fini,
    .decode_request = jsonrpc_decode_request,
    .decode_reply = jsonrpc_decode_reply,
    .unpack = jsonrpc_unpack,
    .encode_reply = jsonrpc_encode_reply,
    .encode_error = jsonrpc_encode_error,
    .encode_answer = jsonrpc_encode_answer,
    .encode_request = jsonrpc_encode_request,
    .encode_request_raw = jsonrpc_encode_request_text,
    .last_error = tt_jsonrpc_last_error,
    .reply_status = tt_codec_go_reply_status,
};
