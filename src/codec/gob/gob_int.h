/*
 * gob_int.h - internals shared by gob.c (framing, headers, type tables)
 * and the files that map messages to gob values: gob_wire.c (primitives,
 * the peer's types, skipping), gob_decode.c, gob_types.c (our type
 * definitions) and gob_encode.c.
 */
#ifndef TT_CODEC_GOB_GOB_INT_H
#define TT_CODEC_GOB_GOB_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/gob/gob.h"
#include "core/buf.h"

/* Predefined type ids (encoding/gob type.go). */
enum {
    GOB_BOOL = 1,
    GOB_INT = 2,
    GOB_UINT = 3,
    GOB_FLOAT = 4,
    GOB_BYTES = 5,
    GOB_STRING = 6,
    GOB_COMPLEX = 7,
    GOB_INTERFACE = 8,
    GOB_FIRST_USER = 64 /* ids below are reserved for the predefined types */
};

/* wireType's fields: which kind a definition is. */
enum {
    GOB_K_ARRAY = 1,
    GOB_K_SLICE = 2,
    GOB_K_STRUCT = 3,
    GOB_K_MAP = 4,
    GOB_K_GOBENC = 5,
    GOB_K_BINARY = 6,
    GOB_K_TEXT = 7
};

/* A field of an incoming struct definition: 16 bytes, its name kept in
 * the type's names block (one allocation per type holds both). */
typedef struct gob_field {
    uint32_t name_off; /* into the type's names */
    uint32_t name_len;
    int32_t id;
    /* The proto field this wire field matched for the type's cache_desc:
     * index + 1, 0 for none, GOB_MATCH_UNSET when not looked up yet. */
    uint32_t match;
} gob_field;

#define GOB_MATCH_UNSET UINT32_MAX

/* An incoming type definition. */
typedef struct gob_wtype {
    int64_t id;
    int kind;
    int64_t elem;
    int64_t key;
    int64_t len; /* arrays */
    gob_field *fields; /* n_fields entries, then the names (one allocation) */
    const char *names;
    size_t n_fields;
    /* The descriptor the fields' match values are for. */
    const ProtobufCMessageDescriptor *cache_desc;
} gob_wtype;

/* A field's name (not NUL-terminated). */
static inline const char *
tt_gob_fname(const gob_wtype *t, const gob_field *f)
{
    return t->names + f->name_off;
}

/* Header types the codec itself defines on its outgoing stream. */
enum { GOB_OT_MSG = 0, GOB_OT_REQUEST, GOB_OT_RESPONSE, GOB_OT_EMPTY };

/* An outgoing type; its id is 65 + its index in the table. */
typedef struct gob_otype {
    int kind;                               /* GOB_K_STRUCT, GOB_K_SLICE, GOB_K_MAP */
    int special;                            /* GOB_OT_* for structs */
    const ProtobufCMessageDescriptor *desc; /* GOB_OT_MSG structs */
    const ProtobufCFieldDescriptor *field;  /* slices and maps: the proto field */
    int64_t elem;
    int64_t key;
    bool sent;
    uint32_t sent_call; /* which encode call sent it (undone on failure) */
} gob_otype;

typedef struct gob_state {
    size_t max_msg;
    gob_wtype *in; /* sorted by id */
    size_t n_in;
    size_t cap_in;
    size_t in_bytes;  /* memory the definitions hold, within TT_GOB_TYPE_BUDGET */
    size_t in_fields; /* their fields, within TT_GOB_MAX_TOTAL_FIELDS */
    /* Resumable scan of the messages after a header (decode_common): when
     * the last call ended in TETHER_EAGAIN with a header at the start of
     * its input, the definitions up to scan_pos were already checked and
     * counted (scan_defs), so the next call (same bytes plus more)
     * continues there instead of rescanning from the header. */
    size_t scan_pos;
    size_t scan_defs;
    uint64_t scan_steps; /* messages looked at behind headers, in all (tests) */
    gob_otype *out;
    size_t n_out;
    size_t cap_out;
    uint32_t call;
    char err[160];
} gob_state;

#define GOB_FIRST_OUT_ID 65

/* A bounded reader over one message. */
typedef struct gob_reader {
    const uint8_t *p;
    const uint8_t *end;
} gob_reader;

bool tt_gob_read_uint(gob_reader *r, uint64_t *v);
bool tt_gob_read_int(gob_reader *r, int64_t *v);
bool tt_gob_read_bytes(gob_reader *r, const uint8_t **b, size_t *n);

/* GOB_TRY - evaluate expr into the caller's `tether_err err` and return it
 * on failure. */
#define GOB_TRY(expr)                                                                              \
    do {                                                                                           \
        err = (expr);                                                                              \
        if (err != TETHER_OK) {                                                                    \
            return err;                                                                            \
        }                                                                                          \
    } while (0)

tether_err tt_gob_put_uint(tt_buf *b, uint64_t v);
tether_err tt_gob_put_int(tt_buf *b, int64_t v);
tether_err tt_gob_put_bytes(tt_buf *b, const void *p, size_t n);

/* The incoming definition of id, or NULL. */
const gob_wtype *tt_gob_lookup(const gob_state *s, int64_t id);

/* Begin / end one length-prefixed message in out (mark from begin). */
tether_err tt_gob_msg_begin(tt_buf *out, size_t *mark);
tether_err tt_gob_msg_end(tt_buf *out, size_t mark);

/*
 * tt_gob_decode_value - decode the value message payload p[0..n) (type id
 * and value) into a new message of type desc.  EBADREQUEST with s->err
 * set, or ENOMEM.
 */
tether_err tt_gob_decode_value(gob_state *s, const ProtobufCMessageDescriptor *desc,
                               const uint8_t *p, size_t n, ProtobufCMessage **out);

/*
 * tt_gob_skip - skip one value of type id at r (depth: current nesting).
 * false if malformed, of an unsupported kind, or too deep.
 */
bool tt_gob_skip(const gob_state *s, gob_reader *r, int64_t id, unsigned depth);

/*
 * tt_gob_encode_value - append the definitions msg's type still needs and
 * the value message for msg.  On error the caller rolls back out and the
 * sent flags (call_end in gob.c).
 */
tether_err tt_gob_encode_value(gob_state *s, tt_buf *out, const ProtobufCMessage *msg);

/* Outgoing type helpers used by gob.c for the header types. */
tether_err tt_gob_special_type(gob_state *s, int special, int64_t *id);
tether_err tt_gob_send_types(gob_state *s, tt_buf *out, int64_t id, unsigned depth);

#include <string.h>

/* gob_wire.c: the gob type id a protobuf scalar field travels as. */
int64_t tt_gob_scalar_id(const ProtobufCFieldDescriptor *f);
/* gob_types.c: the id of our type definition for desc, made on first use. */
tether_err tt_gob_struct_type(gob_state *s, const ProtobufCMessageDescriptor *desc, int64_t *id);

/* Floats travel as their IEEE-754 bits with the bytes reversed, so that
 * small exponents make short encodings. */
static inline uint64_t
tt_gob_float_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    uint64_t r = 0;
    for (int i = 0; i < 8; i++) {
        r = (r << 8) | ((u >> (8 * i)) & 0xff);
    }
    return r;
}

static inline double
tt_gob_bits_float(uint64_t r)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) {
        u = (u << 8) | ((r >> (8 * i)) & 0xff);
    }
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}


#endif
