/*
 * pbutil.c - descriptor helpers shared by the JSON and gob mappings.
 */
#include "codec/pbjson/pbutil.h"

#include <stdatomic.h>
#include <string.h>

#include "core/alloc.h"

/* --- nesting depth --- */

#define DEPTH_DEEP UINT32_MAX

/* Depth of desc, with the descriptors on the current path in path[0..n). */
static uint32_t
depth_of(const ProtobufCMessageDescriptor *desc, const ProtobufCMessageDescriptor **path,
         unsigned n)
{
    if (n >= TT_PB_MAX_DEPTH) {
        return DEPTH_DEEP;
    }
    for (unsigned i = 0; i < n; i++) {
        if (path[i] == desc) {
            return DEPTH_DEEP; /* recursive */
        }
    }
    path[n] = desc;
    uint32_t best = 1;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
            continue;
        }
        uint32_t d = depth_of(f->descriptor, path, n + 1);
        if (d == DEPTH_DEEP) {
            return DEPTH_DEEP;
        }
        if (d + 1 > best) {
            best = d + 1;
        }
    }
    return best;
}

/* Cache of depths by descriptor: open addressing, slots written once.  The
 * value is stored before the key is published (release), so a reader that
 * sees the key (acquire) sees its value.  A full table just recomputes. */
#define DEPTH_SLOTS 512
static _Atomic(uintptr_t) depth_key[DEPTH_SLOTS];
static _Atomic uint32_t depth_val[DEPTH_SLOTS];

uint32_t
tt_pb_static_depth(const ProtobufCMessageDescriptor *desc)
{
    uintptr_t k = (uintptr_t)desc;
    size_t h = (size_t)((k >> 4) * 0x9E3779B97F4A7C15ull >> 55) % DEPTH_SLOTS;
    for (size_t i = 0; i < 16; i++) {
        size_t at = (h + i) % DEPTH_SLOTS;
        uintptr_t cur = atomic_load_explicit(&depth_key[at], memory_order_acquire);
        if (cur == k) {
            return atomic_load_explicit(&depth_val[at], memory_order_relaxed);
        }
        if (cur == 0) {
            break;
        }
    }
    const ProtobufCMessageDescriptor *path[TT_PB_MAX_DEPTH];
    uint32_t d = depth_of(desc, path, 0);
    for (size_t i = 0; i < 16; i++) {
        size_t at = (h + i) % DEPTH_SLOTS;
        uintptr_t cur = atomic_load_explicit(&depth_key[at], memory_order_acquire);
        if (cur == k) {
            break;
        }
        if (cur != 0) {
            continue;
        }
        /* Claim the slot with a value first: a placeholder key would let a
         * reader see a slot without its value. */
        uintptr_t zero = 0;
        atomic_store_explicit(&depth_val[at], d, memory_order_relaxed);
        if (atomic_compare_exchange_strong_explicit(&depth_key[at], &zero, k,
                                                    memory_order_release,
                                                    memory_order_relaxed)) {
            break;
        }
    }
    return d;
}

/* A varint at *p (before end); false if it runs past end or is too long. */
static bool
wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = r;
            return true;
        }
    }
    return false;
}

tether_err
tt_pb_check_depth(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                  unsigned max_depth)
{
    /* One entry per open message: where it ends and its type. */
    struct {
        const uint8_t *end;
        const ProtobufCMessageDescriptor *desc;
    } st[TT_PB_MAX_DEPTH + 1];
    if (max_depth > TT_PB_MAX_DEPTH) {
        max_depth = TT_PB_MAX_DEPTH;
    }
    unsigned n = 0;
    st[0].end = p + len;
    st[0].desc = desc;
    for (;;) {
        while (p >= st[n].end) {
            if (n == 0) {
                return TETHER_OK;
            }
            n--;
        }
        const uint8_t *end = st[n].end;
        uint64_t tag;
        uint64_t v;
        if (!wire_varint(&p, end, &tag)) {
            return TETHER_OK; /* malformed: unpack says so */
        }
        switch (tag & 7) {
        case 0:
            if (!wire_varint(&p, end, &v)) {
                return TETHER_OK;
            }
            break;
        case 1:
            if ((size_t)(end - p) < 8) {
                return TETHER_OK;
            }
            p += 8;
            break;
        case 5:
            if ((size_t)(end - p) < 4) {
                return TETHER_OK;
            }
            p += 4;
            break;
        case 2: {
            if (!wire_varint(&p, end, &v) || v > (uint64_t)(end - p)) {
                return TETHER_OK;
            }
            const ProtobufCFieldDescriptor *f =
                tag >> 3 <= UINT32_MAX
                    ? protobuf_c_message_descriptor_get_field(st[n].desc, (unsigned)(tag >> 3))
                    : NULL;
            if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (n + 2 > max_depth) {
                    return TETHER_ELIMIT;
                }
                n++;
                st[n].end = p + v;
                st[n].desc = f->descriptor;
            } else {
                p += v;
            }
            break;
        }
        default:
            return TETHER_OK; /* groups: protobuf-c refuses them */
        }
    }
}

size_t
tt_pb_elem_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

const ProtobufCFieldDescriptor *
tt_pb_wrapper_field(const ProtobufCMessageDescriptor *desc)
{
    static const char *const names[] = {
        "google.protobuf.Int64Value",  "google.protobuf.Int32Value",  "google.protobuf.UInt64Value",
        "google.protobuf.UInt32Value", "google.protobuf.DoubleValue", "google.protobuf.FloatValue",
        "google.protobuf.BoolValue",   "google.protobuf.StringValue", "google.protobuf.BytesValue",
    };
    /* Cheap reject first: every wrapper has exactly one field, number 1. */
    if (desc == NULL || desc->n_fields != 1 || desc->fields[0].id != 1 ||
        desc->fields[0].label == PROTOBUF_C_LABEL_REPEATED) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(desc->name, names[i]) == 0) {
            return &desc->fields[0];
        }
    }
    return NULL;
}

bool
tt_pb_is_map(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f)
{
    if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label != PROTOBUF_C_LABEL_REPEATED) {
        return false;
    }
    const ProtobufCMessageDescriptor *e = f->descriptor;
    /* protobuf-c has no map-entry flag, so recognise protoc's synthetic
     * type: nested directly in the parent, named "...Entry", fields
     * key = 1 and value = 2. */
    if (e == NULL || e->n_fields != 2 || e->fields[0].id != 1 || e->fields[1].id != 2 ||
        strcmp(e->fields[0].name, "key") != 0 || strcmp(e->fields[1].name, "value") != 0 ||
        e->fields[0].label == PROTOBUF_C_LABEL_REPEATED ||
        e->fields[1].label == PROTOBUF_C_LABEL_REPEATED) {
        return false;
    }
    size_t pl = strlen(parent->name);
    size_t sl = strlen(e->short_name);
    if (sl < 5 || strcmp(e->short_name + sl - 5, "Entry") != 0) {
        return false;
    }
    return strncmp(e->name, parent->name, pl) == 0 && e->name[pl] == '.' &&
           strcmp(e->name + pl + 1, e->short_name) == 0;
}

bool
tt_pb_field_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        return *(const uint32_t *)tt_pb_quant_ptr(msg, f) == f->id;
    }
    return true;
}

/* Whether a singular field has a protobuf_c_boolean has_ flag: proto2
 * optional scalars and proto3 "optional" ones (pointer types carry
 * presence in the pointer instead). */
static bool
has_flag(const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_OPTIONAL || (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) {
        return false;
    }
    return f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE;
}

static void
clear_value(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    void *p = tt_pb_field_ptr(msg, f);
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        char **s = p;
        if (*s != NULL && *s != f->default_value) {
            tt_free(*s);
        }
        *s = (char *)f->default_value;
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = p;
        const ProtobufCBinaryData *def = f->default_value;
        if (b->data != NULL && (def == NULL || def->data != b->data)) {
            tt_free(b->data);
        }
        if (def != NULL) {
            *b = *def;
        } else {
            b->data = NULL;
            b->len = 0;
        }
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        ProtobufCMessage **m = p;
        if (*m != NULL && *m != f->default_value) {
            tt_pb_free(*m);
        }
        *m = NULL;
        break;
    }
    default:
        memset(p, 0, tt_pb_elem_size(f));
        break;
    }
}

void
tt_pb_mark_set(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *c = tt_pb_quant_ptr(msg, f);
        if (*c != 0 && *c != f->id) {
            /* Another member of the oneof is active: free it before its
             * storage (shared with ours) is overwritten. */
            const ProtobufCMessageDescriptor *d = msg->descriptor;
            for (unsigned i = 0; i < d->n_fields; i++) {
                if (d->fields[i].id == *c &&
                    d->fields[i].quantifier_offset == f->quantifier_offset) {
                    clear_value(msg, &d->fields[i]);
                    break;
                }
            }
            /* The members share storage: start ours from all-zero, not
             * from the other member's reset value. */
            memset(tt_pb_field_ptr(msg, f), 0, tt_pb_elem_size(f));
        } else if (*c == 0) {
            memset(tt_pb_field_ptr(msg, f), 0, tt_pb_elem_size(f));
        }
        *c = f->id;
    } else if (has_flag(f)) {
        *(protobuf_c_boolean *)tt_pb_quant_ptr(msg, f) = 1;
    }
}

ProtobufCMessage *
tt_pb_new(const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = tt_malloc(desc->sizeof_message);
    if (m == NULL) {
        return NULL;
    }
    if (desc->message_init != NULL) {
        protobuf_c_message_init(desc, m);
        return m;
    }
    /* Descriptors built at run time have no generated init function;
     * protobuf-c's own unpack falls back to a generic one for them, and so
     * do we: zero, the descriptor, and string defaults. */
    memset(m, 0, desc->sizeof_message);
    m->descriptor = desc;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (f->type == PROTOBUF_C_TYPE_STRING && f->label != PROTOBUF_C_LABEL_REPEATED &&
            f->default_value != NULL) {
            *(const char **)tt_pb_field_ptr(m, f) = f->default_value;
        }
    }
    return m;
}

void *
tt_pb_repeated_push(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, size_t max_elems)
{
    size_t *n = tt_pb_quant_ptr(msg, f);
    void **arr = tt_pb_field_ptr(msg, f);
    size_t es = tt_pb_elem_size(f);
    if (*n >= max_elems) {
        return NULL;
    }
    /* The capacity is implied by the count (a power of two, at least 4),
     * since protobuf-c keeps no capacity field.  Grow when full. */
    size_t cap = 0;
    if (*n > 0) {
        cap = 4;
        while (cap < *n) {
            cap *= 2;
        }
    }
    if (*n == cap) {
        size_t ncap = cap == 0 ? 4 : cap * 2;
        if (ncap > SIZE_MAX / es) {
            return NULL;
        }
        void *na = tt_realloc(*arr, ncap * es);
        if (na == NULL) {
            return NULL;
        }
        *arr = na;
    }
    char *slot = (char *)*arr + *n * es;
    memset(slot, 0, es);
    (*n)++;
    return slot;
}

void
tt_pb_clear_field(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
        clear_value(msg, f);
        return;
    }
    size_t *n = tt_pb_quant_ptr(msg, f);
    void **arr = tt_pb_field_ptr(msg, f);
    for (size_t i = 0; i < *n && *arr != NULL; i++) {
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            tt_free(((char **)*arr)[i]);
        } else if (f->type == PROTOBUF_C_TYPE_BYTES) {
            tt_free(((ProtobufCBinaryData *)*arr)[i].data);
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            tt_pb_free(((ProtobufCMessage **)*arr)[i]);
        }
    }
    tt_free(*arr);
    *arr = NULL;
    *n = 0;
}

static bool
ascii_eq_fold(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i];
        unsigned char y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z') {
            x = (unsigned char)(x + 32);
        }
        if (y >= 'A' && y <= 'Z') {
            y = (unsigned char)(y + 32);
        }
        if (x != y) {
            return false;
        }
    }
    return true;
}

const ProtobufCFieldDescriptor *
tt_pb_field_by_name(const ProtobufCMessageDescriptor *desc, const char *name, size_t len)
{
    const ProtobufCFieldDescriptor *fold = NULL;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (strlen(f->name) != len) {
            continue;
        }
        if (memcmp(f->name, name, len) == 0) {
            return f;
        }
        if (fold == NULL && ascii_eq_fold(f->name, name, len)) {
            fold = f;
        }
    }
    return fold;
}

void
tt_pb_free(ProtobufCMessage *msg)
{
    if (msg != NULL) {
        protobuf_c_message_free_unpacked(msg, &tt_pb_allocator);
    }
}
