/*
 * gob.c - Go net/rpc's default codec (encoding/gob): framing, the type
 * definitions of each stream, and the Request/Response headers (contract
 * in gob.h).  Values are mapped to and from messages in gob_decode.c
 * and gob_encode.c.
 */
#include "codec/gob/gob.h"

#include <stdio.h>
#include <string.h>

#include "codec/gob/gob_int.h"
#include "core/alloc.h"

static const char empty_method[] = "";

const char *
tt_gob_last_error(const void *state)
{
    return ((const gob_state *)state)->err;
}

/* A message's length prefix at p[0..n): TETHER_OK with *hdr prefix bytes
 * and *len payload bytes all present; EAGAIN; EMSGSIZE; EPROTO. */
static tether_err
frame_at(const gob_state *s, const uint8_t *p, size_t n, size_t *hdr, size_t *len)
{
    if (n == 0) {
        return TETHER_EAGAIN;
    }
    size_t need = p[0] < 0x80 ? 1 : 1 + (size_t)(256 - p[0]);
    if (need > 9) {
        return TETHER_EPROTO;
    }
    if (n < need) {
        return TETHER_EAGAIN;
    }
    gob_reader r = {p, p + need};
    uint64_t l;
    if (!tt_gob_read_uint(&r, &l) || l == 0) {
        return TETHER_EPROTO;
    }
    if (s->max_msg != 0 && l > s->max_msg) {
        return TETHER_EMSGSIZE;
    }
    if (l > n - need) {
        return TETHER_EAGAIN;
    }
    *hdr = need;
    *len = (size_t)l;
    return TETHER_OK;
}

static int
gob_probe(const uint8_t *p, size_t n)
{
    /* A gob client starts with a definition (its Request type): a small
     * length, then a negative user type id.  tether's native preface
     * (0xF5...) is no valid length; jsonrpc's '{' and whitespace give
     * ids that are positive or below 64. */
    size_t off = 0;
    for (int i = 0; i < 2; i++) {
        if (off >= n) {
            return -1;
        }
        size_t need = p[off] < 0x80 ? 1 : 1 + (size_t)(256 - p[off]);
        if (need > 9) {
            return 0;
        }
        if (n - off < need) {
            return -1;
        }
        gob_reader r = {p + off, p + off + need};
        if (i == 0) {
            uint64_t l;
            if (!tt_gob_read_uint(&r, &l) || l == 0) {
                return 0;
            }
        } else {
            int64_t id;
            if (!tt_gob_read_int(&r, &id)) {
                return 0;
            }
            return id <= -GOB_FIRST_USER ? 1 : 0;
        }
        off += need;
    }
    return 0;
}

static tether_err
gob_init(void *state, size_t max_msg)
{
    gob_state *s = state;
    memset(s, 0, sizeof(*s));
    s->max_msg = max_msg;
    return TETHER_OK;
}

static void
free_wtype(gob_wtype *t)
{
    tt_free(t->fields); /* the names live in the same block */
}

size_t
tt_gob_held_types(const void *state, size_t *bytes)
{
    const gob_state *s = state;
    if (bytes != NULL) {
        *bytes = s->in_bytes;
    }
    return s->n_in;
}

static void
gob_fini(void *state)
{
    gob_state *s = state;
    for (size_t i = 0; i < s->n_in; i++) {
        free_wtype(&s->in[i]);
    }
    tt_free(s->in);
    tt_free(s->out);
    memset(s, 0, sizeof(*s));
}

/* --- reading type definitions --- */

/* Read a struct's next field number: *field advances by the delta; false
 * at the end mark (0) or on error (*bad). */
static bool
next_field(gob_reader *r, int64_t *field, bool *bad)
{
    uint64_t delta;
    if (!tt_gob_read_uint(r, &delta) || delta > 64) {
        *bad = true;
        return false;
    }
    if (delta == 0) {
        return false;
    }
    *field += (int64_t)delta;
    return true;
}

static bool
read_type_id(gob_reader *r, int64_t *id)
{
    return tt_gob_read_int(r, id) && *id > 0 && *id <= INT32_MAX;
}

/* CommonType{Name string; Id typeId}: only checked, the name is unused. */
static bool
read_common(gob_reader *r)
{
    int64_t field = -1;
    bool bad = false;
    while (next_field(r, &field, &bad)) {
        const uint8_t *b;
        size_t n;
        int64_t id;
        if (field == 0) {
            if (!tt_gob_read_bytes(r, &b, &n)) {
                return false;
            }
        } else if (field == 1) {
            if (!tt_gob_read_int(r, &id)) {
                return false;
            }
        } else {
            return false;
        }
    }
    return !bad;
}

/* One fieldType{Name string; Id typeId} at r: its name and id. */
static tether_err
read_field(gob_reader *r, const uint8_t **name, size_t *name_len, int64_t *id)
{
    int64_t field = -1;
    bool bad = false;
    bool named = false;
    *name = NULL;
    *name_len = 0;
    *id = 0;
    while (next_field(r, &field, &bad)) {
        if (field == 0 && !named) {
            if (!tt_gob_read_bytes(r, name, name_len)) {
                return TETHER_EPROTO;
            }
            named = true;
        } else if (field == 1) {
            if (!read_type_id(r, id)) {
                return TETHER_EPROTO;
            }
        } else {
            return TETHER_EPROTO;
        }
    }
    return bad || *id == 0 ? TETHER_EPROTO : TETHER_OK;
}

/*
 * structType's Field []*fieldType{Name string; Id typeId}.  Two passes
 * over the bytes: the first checks them and sizes the names, the second
 * fills one block holding the fields and their names (the wire form is
 * about 3 bytes a field; held, a field costs 16 bytes plus its name).
 */
static tether_err
read_fields(gob_state *s, gob_reader *r, gob_wtype *t)
{
    uint64_t n;
    if (!tt_gob_read_uint(r, &n) || n > (uint64_t)(r->end - r->p)) {
        return TETHER_EPROTO;
    }
    if (n > TT_GOB_MAX_FIELDS) {
        snprintf(s->err, sizeof(s->err), "gob: a struct definition with %llu fields (the limit is %d)",
                 (unsigned long long)n, TT_GOB_MAX_FIELDS);
        return TETHER_ELIMIT;
    }
    if (s->in_fields + n > TT_GOB_MAX_TOTAL_FIELDS) {
        snprintf(s->err, sizeof(s->err), "gob: type definitions with more than %d fields in all",
                 TT_GOB_MAX_TOTAL_FIELDS);
        return TETHER_ELIMIT;
    }
    if (n == 0) {
        return TETHER_OK;
    }
    gob_reader scan = *r;
    size_t names = 0;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *b;
        size_t len;
        int64_t id;
        tether_err err = read_field(&scan, &b, &len, &id);
        if (err != TETHER_OK) {
            return err;
        }
        names += len;
    }
    size_t size = (size_t)n * sizeof(gob_field) + names;
    if (s->in_bytes + sizeof(gob_wtype) + size > TT_GOB_TYPE_BUDGET) {
        snprintf(s->err, sizeof(s->err), "gob: type definitions holding more than %u bytes",
                 TT_GOB_TYPE_BUDGET);
        return TETHER_ELIMIT;
    }
    t->fields = tt_malloc(size);
    if (t->fields == NULL) {
        return TETHER_ENOMEM;
    }
    char *nb = (char *)(t->fields + n);
    t->names = nb;
    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *b;
        size_t len;
        int64_t id;
        (void)read_field(r, &b, &len, &id); /* checked above */
        gob_field *f = &t->fields[i];
        if (len > 0) {
            memcpy(nb + off, b, len);
        }
        f->name_off = (uint32_t)off;
        f->name_len = (uint32_t)len;
        f->id = (int32_t)id;
        f->match = GOB_MATCH_UNSET;
        off += len;
    }
    t->n_fields = (size_t)n;
    return TETHER_OK;
}

/* Parse the wireType value of a definition into t. */
static tether_err
read_wiretype(gob_state *s, gob_reader *r, gob_wtype *t)
{
    uint64_t which;
    /* wireType has one field set; its number (delta from -1) is the kind. */
    if (!tt_gob_read_uint(r, &which) || which < GOB_K_ARRAY || which > GOB_K_TEXT) {
        return TETHER_EPROTO;
    }
    t->kind = (int)which;
    int64_t field = -1;
    bool bad = false;
    while (next_field(r, &field, &bad)) {
        if (field == 0) {
            if (!read_common(r)) {
                return TETHER_EPROTO;
            }
            continue;
        }
        tether_err err = TETHER_EPROTO;
        switch (t->kind) {
        case GOB_K_ARRAY:
            if (field == 1 && read_type_id(r, &t->elem)) {
                err = TETHER_OK;
            } else if (field == 2 && tt_gob_read_int(r, &t->len) && t->len >= 0) {
                err = TETHER_OK;
            }
            break;
        case GOB_K_SLICE:
            if (field == 1 && read_type_id(r, &t->elem)) {
                err = TETHER_OK;
            }
            break;
        case GOB_K_STRUCT:
            if (field == 1 && t->fields == NULL) {
                err = read_fields(s, r, t);
            }
            break;
        case GOB_K_MAP:
            if (field == 1 && read_type_id(r, &t->key)) {
                err = TETHER_OK;
            } else if (field == 2 && read_type_id(r, &t->elem)) {
                err = TETHER_OK;
            }
            break;
        default:
            break;
        }
        if (err != TETHER_OK) {
            return err;
        }
    }
    if (bad) {
        return TETHER_EPROTO;
    }
    if ((t->kind == GOB_K_ARRAY || t->kind == GOB_K_SLICE || t->kind == GOB_K_MAP) &&
        t->elem == 0) {
        return TETHER_EPROTO;
    }
    if (t->kind == GOB_K_MAP && t->key == 0) {
        return TETHER_EPROTO;
    }
    /* The end of wireType: exactly one kind was set. */
    uint64_t end;
    if (!tt_gob_read_uint(r, &end) || end != 0 || r->p != r->end) {
        return TETHER_EPROTO;
    }
    return TETHER_OK;
}

/* Record the definition of id whose wireType is r. */
static tether_err
define(gob_state *s, int64_t id, gob_reader *r)
{
    if (id < GOB_FIRST_USER || id > INT32_MAX) {
        return TETHER_EPROTO;
    }
    /* Go's decoder refuses a second definition of an id too. */
    if (tt_gob_lookup(s, id) != NULL) {
        return TETHER_EPROTO;
    }
    if (s->n_in >= TT_GOB_MAX_TYPES) {
        snprintf(s->err, sizeof(s->err), "gob: more than %d type definitions", TT_GOB_MAX_TYPES);
        return TETHER_ELIMIT;
    }
    gob_wtype t;
    memset(&t, 0, sizeof(t));
    t.id = id;
    tether_err err = read_wiretype(s, r, &t);
    if (err == TETHER_OK && t.n_fields == 0 &&
        s->in_bytes + sizeof(gob_wtype) > TT_GOB_TYPE_BUDGET) {
        snprintf(s->err, sizeof(s->err), "gob: type definitions holding more than %u bytes",
                 TT_GOB_TYPE_BUDGET);
        err = TETHER_ELIMIT;
    }
    if (err == TETHER_OK && s->n_in == s->cap_in) {
        size_t ncap = s->cap_in == 0 ? 8 : s->cap_in * 2;
        gob_wtype *na = tt_realloc(s->in, ncap * sizeof(*na));
        if (na == NULL) {
            err = TETHER_ENOMEM;
        } else {
            s->in = na;
            s->cap_in = ncap;
        }
    }
    if (err != TETHER_OK) {
        free_wtype(&t);
        return err;
    }
    /* Keep the table sorted by id for lookups. */
    size_t i = s->n_in;
    while (i > 0 && s->in[i - 1].id > id) {
        i--;
    }
    memmove(&s->in[i + 1], &s->in[i], (s->n_in - i) * sizeof(*s->in));
    s->in[i] = t;
    s->n_in++;
    s->in_fields += t.n_fields;
    s->in_bytes += sizeof(gob_wtype) + t.n_fields * sizeof(gob_field);
    for (size_t k = 0; k < t.n_fields; k++) {
        s->in_bytes += t.fields[k].name_len;
    }
    return TETHER_OK;
}

/* The signed type id at the start of a message payload. */
static tether_err
msg_id(const uint8_t *p, size_t len, int64_t *id, gob_reader *rest)
{
    rest->p = p;
    rest->end = p + len;
    /* Go's type ids are int32; anything wider is garbage (and could not
     * be negated). */
    if (!tt_gob_read_int(rest, id) || *id == 0 || *id < -INT32_MAX || *id > INT32_MAX) {
        return TETHER_EPROTO;
    }
    return TETHER_OK;
}

/* --- headers --- */

static bool
name_is(const gob_wtype *t, const gob_field *f, const char *want)
{
    return f->name_len == strlen(want) && memcmp(tt_gob_fname(t, f), want, f->name_len) == 0;
}

/* Decode a Request or Response header value (payload after the id). */
static tether_err
read_header(gob_state *s, int64_t id, gob_reader *r, bool reply, tt_rpc_msg *m)
{
    const gob_wtype *t = tt_gob_lookup(s, id);
    if (t == NULL || t->kind != GOB_K_STRUCT) {
        return TETHER_EPROTO;
    }
    /* Go compiles its decoder against the wire type, so a header field of
     * the wrong kind (Seq declared as int) breaks the connection even when
     * the value leaves it out. */
    for (size_t i = 0; i < t->n_fields; i++) {
        const gob_field *f = &t->fields[i];
        if ((name_is(t, f, "ServiceMethod") && f->id != GOB_STRING) ||
            (name_is(t, f, "Seq") && f->id != GOB_UINT) ||
            (reply && name_is(t, f, "Error") && f->id != GOB_STRING)) {
            return TETHER_EPROTO;
        }
    }
    m->method = empty_method;
    int64_t field = -1;
    for (;;) {
        uint64_t delta;
        if (!tt_gob_read_uint(r, &delta)) {
            return TETHER_EPROTO;
        }
        if (delta == 0) {
            break;
        }
        if (delta > t->n_fields || field + (int64_t)delta >= (int64_t)t->n_fields) {
            return TETHER_EPROTO;
        }
        field += (int64_t)delta;
        const gob_field *f = &t->fields[field];
        const uint8_t *b;
        size_t n;
        /* Go checks the kinds: Seq declared as int makes its server drop
         * the connection, so it is a protocol error here too. */
        if (name_is(t, f, "ServiceMethod")) {
            if (f->id != GOB_STRING || !tt_gob_read_bytes(r, &b, &n)) {
                return TETHER_EPROTO;
            }
            m->method = (const char *)b;
            m->method_len = n;
        } else if (name_is(t, f, "Seq")) {
            if (f->id != GOB_UINT || !tt_gob_read_uint(r, &m->seq)) {
                return TETHER_EPROTO;
            }
        } else if (reply && name_is(t, f, "Error")) {
            if (f->id != GOB_STRING || !tt_gob_read_bytes(r, &b, &n)) {
                return TETHER_EPROTO;
            }
            if (n > 0) {
                m->status = TETHER_EREMOTE;
                m->errtext = (const char *)b;
                m->errtext_len = n;
            }
        } else if (!tt_gob_skip(s, r, f->id, 1)) {
            return TETHER_EPROTO;
        }
    }
    return r->p == r->end ? TETHER_OK : TETHER_EPROTO;
}

static tether_err
decode_common(gob_state *s, const uint8_t *p, size_t n, size_t *used, tt_rpc_msg *m, bool reply)
{
    size_t pos = 0;
    size_t h;
    size_t l;
    int64_t id;
    gob_reader rest;
    tether_err err;
    memset(m, 0, sizeof(*m));
    *used = 0;
    s->err[0] = '\0';

    /* Leading definitions are recorded as soon as they are complete. */
    for (;;) {
        err = frame_at(s, p + pos, n - pos, &h, &l);
        if (err == TETHER_EAGAIN) {
            break;
        }
        if (err != TETHER_OK) {
            return err;
        }
        err = msg_id(p + pos + h, l, &id, &rest);
        if (err != TETHER_OK) {
            return err;
        }
        if (id > 0) {
            break;
        }
        err = define(s, -id, &rest);
        if (err != TETHER_OK) {
            return err;
        }
        pos += h + l;
        s->scan_pos = 0; /* the input's start moves: no scan to resume */
    }
    size_t defs_end = pos;
    if (err == TETHER_EAGAIN) {
        goto partial;
    }

    /* The header value, then (definitions and) the body value: take them
     * only when all are here, so nothing is recorded twice.  The messages
     * already checked by an earlier call that ended in EAGAIN (same input,
     * header at its start) are not looked at again. */
    size_t hpos = pos;
    size_t hh = h;
    size_t hl = l;
    pos += h + l;
    size_t ndefs = 0;
    if (hpos == 0 && s->scan_pos > pos && s->scan_pos <= n) {
        pos = s->scan_pos;
        ndefs = s->scan_defs;
    }
    s->scan_pos = 0;
    s->scan_defs = 0;
    size_t bpos;
    for (;;) {
        s->scan_steps++;
        err = frame_at(s, p + pos, n - pos, &h, &l);
        if (err == TETHER_EAGAIN) {
            if (hpos == 0) {
                s->scan_pos = pos;
                s->scan_defs = ndefs;
            }
            goto partial;
        }
        if (err != TETHER_OK) {
            return err;
        }
        err = msg_id(p + pos + h, l, &id, &rest);
        if (err != TETHER_OK) {
            return err;
        }
        if (id > 0) {
            bpos = pos;
            break;
        }
        /* Definitions waiting for their body count against the limits
         * already, or a peer could park any number of them. */
        if (++ndefs + s->n_in > TT_GOB_MAX_TYPES) {
            snprintf(s->err, sizeof(s->err),
                     "gob: more than %d type definitions (some waiting for a body)",
                     TT_GOB_MAX_TYPES);
            return TETHER_ELIMIT;
        }
        pos += h + l;
    }
    for (size_t q = hpos + hh + hl; q < bpos;) {
        (void)frame_at(s, p + q, n - q, &h, &l);
        (void)msg_id(p + q + h, l, &id, &rest);
        err = define(s, -id, &rest);
        if (err != TETHER_OK) {
            return err;
        }
        q += h + l;
    }
    err = msg_id(p + hpos + hh, hl, &id, &rest);
    if (err == TETHER_OK) {
        err = read_header(s, id, &rest, reply, m);
    }
    if (err != TETHER_OK) {
        return err;
    }
    (void)frame_at(s, p + bpos, n - bpos, &h, &l);
    m->body = p + bpos + h;
    m->body_len = l;
    *used = bpos + h + l;
    return TETHER_OK;

partial:
    if (defs_end > 0) {
        *used = defs_end;
        return TETHER_OK;
    }
    return TETHER_EAGAIN;
}

static tether_err
gob_decode_request(void *state, const uint8_t *p, size_t n, size_t *used, tt_rpc_msg *m)
{
    return decode_common(state, p, n, used, m, false);
}

static tether_err
gob_decode_reply(void *state, const uint8_t *p, size_t n, size_t *used, tt_rpc_msg *m)
{
    return decode_common(state, p, n, used, m, true);
}

static tether_err
gob_unpack(void *state, const ProtobufCMessageDescriptor *desc, const uint8_t *body, size_t len,
           ProtobufCMessage **out)
{
    return tt_gob_decode_value(state, desc, body, len, out);
}

/* --- writing --- */

tether_err
tt_gob_msg_begin(tt_buf *out, size_t *mark)
{
    /* Room for the longest length prefix; the payload is moved down to
     * the real prefix size at the end. */
    static const uint8_t room[9] = {0};
    *mark = out->len;
    return tt_buf_append(out, room, sizeof(room));
}

tether_err
tt_gob_msg_end(tt_buf *out, size_t mark)
{
    size_t len = out->len - mark - 9;
    uint8_t pre[9];
    size_t n = 1;
    if (len < 0x80) {
        pre[0] = (uint8_t)len;
    } else {
        /* Same form as tt_gob_put_uint: negated byte count, big-endian. */
        size_t k = 0;
        for (uint64_t x = len; x != 0; x >>= 8) {
            k++;
        }
        pre[0] = (uint8_t)(256 - k);
        for (size_t i = 0; i < k; i++) {
            pre[k - i] = (uint8_t)((uint64_t)len >> (8 * i));
        }
        n = k + 1;
    }
    memmove(out->data + mark + n, out->data + mark + 9, len);
    memcpy(out->data + mark, pre, n);
    out->len = mark + n + len;
    return TETHER_OK;
}

static void
call_begin(gob_state *s)
{
    s->call++;
}

/* Undo a failed encode call: its bytes, and the "sent" marks of the
 * definitions it wrote (the peer never saw them). */
static tether_err
call_end(gob_state *s, tt_buf *out, size_t mark, tether_err err)
{
    if (err == TETHER_OK && s->max_msg != 0 && out->len - mark > s->max_msg) {
        err = TETHER_EMSGSIZE;
    }
    if (err != TETHER_OK) {
        out->len = mark;
        for (size_t i = 0; i < s->n_out; i++) {
            if (s->out[i].sent && s->out[i].sent_call == s->call) {
                s->out[i].sent = false;
            }
        }
    }
    return err;
}

/* A Request or Response header, with its definition the first time. */
static tether_err
put_header(gob_state *s, tt_buf *out, int special, uint64_t seq, const char *method,
           size_t method_len, const char *errtext)
{
    tether_err err;
    int64_t id;
    size_t mark;
    GOB_TRY(tt_gob_special_type(s, special, &id));
    GOB_TRY(tt_gob_send_types(s, out, id, 0));
    GOB_TRY(tt_gob_msg_begin(out, &mark));
    GOB_TRY(tt_gob_put_int(out, id));
    /* Fields 0 ServiceMethod, 1 Seq, 2 Error; zero values left out. */
    int prev = -1;
    if (method_len > 0) {
        GOB_TRY(tt_gob_put_uint(out, (uint64_t)(0 - prev)));
        GOB_TRY(tt_gob_put_bytes(out, method, method_len));
        prev = 0;
    }
    if (seq != 0) {
        GOB_TRY(tt_gob_put_uint(out, (uint64_t)(1 - prev)));
        GOB_TRY(tt_gob_put_uint(out, seq));
        prev = 1;
    }
    if (errtext != NULL && errtext[0] != '\0') {
        GOB_TRY(tt_gob_put_uint(out, (uint64_t)(2 - prev)));
        GOB_TRY(tt_gob_put_bytes(out, errtext, strlen(errtext)));
    }
    GOB_TRY(tt_gob_put_uint(out, 0));
    return tt_gob_msg_end(out, mark);
}

/* A Request or Response: header, then msg as the body. */
static tether_err
encode_message(gob_state *s, tt_buf *out, int special, uint64_t seq, const char *method,
               size_t method_len, const ProtobufCMessage *msg)
{
    if (msg == NULL) {
        return TETHER_EINVAL;
    }
    size_t mark = out->len;
    call_begin(s);
    tether_err err = put_header(s, out, special, seq, method, method_len, NULL);
    if (err == TETHER_OK) {
        err = tt_gob_encode_value(s, out, msg);
    }
    return call_end(s, out, mark, err);
}

static tether_err
gob_encode_reply(void *state, tt_buf *out, uint64_t seq, const char *method, size_t method_len,
                 const ProtobufCMessage *msg)
{
    return encode_message(state, out, GOB_OT_RESPONSE, seq, method, method_len, msg);
}

static tether_err
encode_error_body(gob_state *s, tt_buf *out, uint64_t seq, const char *method, size_t method_len,
                  const char *text)
{
    tether_err err;
    int64_t id;
    size_t mark;
    GOB_TRY(put_header(s, out, GOB_OT_RESPONSE, seq, method, method_len, text));
    /* Go's server follows an error with its invalidRequest, struct{}{}. */
    GOB_TRY(tt_gob_special_type(s, GOB_OT_EMPTY, &id));
    GOB_TRY(tt_gob_send_types(s, out, id, 0));
    GOB_TRY(tt_gob_msg_begin(out, &mark));
    GOB_TRY(tt_gob_put_int(out, id));
    GOB_TRY(tt_gob_put_uint(out, 0));
    return tt_gob_msg_end(out, mark);
}

static tether_err
gob_encode_error(void *state, tt_buf *out, uint64_t seq, const char *method, size_t method_len,
                 tether_err code, const char *text)
{
    gob_state *s = state;
    /* An empty Error would read as success on the Go side. */
    if (text == NULL || text[0] == '\0') {
        text = tether_strerror(code);
    }
    size_t mark = out->len;
    call_begin(s);
    tether_err err = encode_error_body(s, out, seq, method, method_len, text);
    return call_end(s, out, mark, err);
}

static tether_err
gob_encode_request(void *state, tt_buf *out, uint64_t seq, const char *method, size_t method_len,
                   const ProtobufCMessage *msg)
{
    return encode_message(state, out, GOB_OT_REQUEST, seq, method, method_len, msg);
}

static tether_err
gob_encode_answer(void *state, tt_buf *out, const tt_answer *a)
{
    return tt_codec_go_answer(&tt_codec_gob, state, out, a);
}

const tt_codec_ops tt_codec_gob = {
    .name = "gob",
    .state_size = sizeof(gob_state),
    .probe = gob_probe,
    .init = gob_init,
    .fini = gob_fini,
    .decode_request = gob_decode_request,
    .decode_reply = gob_decode_reply,
    .unpack = gob_unpack,
    .encode_reply = gob_encode_reply,
    .encode_error = gob_encode_error,
    .encode_answer = gob_encode_answer,
    .encode_request = gob_encode_request,
    .last_error = tt_gob_last_error,
    .reply_status = tt_codec_go_reply_status,
};
