/*
 * fuzz_frame.c - libFuzzer target for the native frame decoder and the
 * calculator body decoders behind it.
 *
 * The input is treated as the bytes of one connection after the preface.
 * It is decoded twice: once whole, frame after frame, and once delivered
 * in small chunks (sizes derived from the input, so runs reproduce) the
 * way a reader appends to its buffer.  Both must see the same frames and
 * stop with the same error, and every accepted frame must lie inside the
 * bytes given.  Bodies of calculator requests and replies go through
 * protobuf-c's unpack, as the server and client do.
 *
 * The static library is not instrumented, so the decoder's source is
 * compiled into this target.  Its symbols are then already defined when
 * the linker reaches libtether.a, which therefore pulls no member with a
 * second copy.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/native/frame.c"

#include "calculator.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"

#define FUZZ_MAX_FRAME 4096 /* small, so oversize paths are reachable */
#define FUZZ_MAX_FRAMES 4096

struct seen {
    tether_err end; /* how decoding stopped: EAGAIN at the end, or an error */
    size_t count;
    size_t consumed;
    uint64_t seqs[FUZZ_MAX_FRAMES];
    size_t totals[FUZZ_MAX_FRAMES];
};

static void
check_frame(const uint8_t *p, size_t n, const tt_frame *f)
{
    /* Everything the decoder hands out must lie inside [p, p+n): the
     * name, the context section (with TT_FRAME_F_CTX) and the body, in
     * that order and back to back. */
    int has_ctx = (f->flags & TT_FRAME_F_CTX) != 0;
    size_t ctx_part = has_ctx ? 4 + f->ctx_len : 0;
    if (f->total > n || f->total < TT_FRAME_HDR ||
        f->total != TT_FRAME_HDR + f->name_len + ctx_part + f->body_len ||
        (const uint8_t *)f->name != p + TT_FRAME_HDR ||
        f->body != p + TT_FRAME_HDR + f->name_len + ctx_part || f->type == 0 ||
        f->type > TT_FRAME_TYPE_MAX || (f->flags & ~TT_FRAME_F_CTX) != 0 ||
        (has_ctx && (f->ctx != p + TT_FRAME_HDR + f->name_len + 4 || f->ctx_len > TT_CTX_MAX)) ||
        (!has_ctx && (f->ctx != NULL || f->ctx_len != 0)) || f->name_len > TT_FRAME_MAX_NAME ||
        (f->type == TT_FRAME_REQUEST) != (f->name_len > 0)) {
        abort();
    }
    /* The context entries: each inside the section, META strings ending in
     * it, and the walk always ends. */
    size_t off = 0;
    tt_ctx_entry e;
    int r;
    while ((r = tt_ctx_next(f->ctx, f->ctx_len, &off, &e)) == 1) {
        if (e.val < f->ctx || e.val + e.len > f->ctx + f->ctx_len || off > f->ctx_len) {
            abort();
        }
        if (e.tag == TT_CTX_META && (strlen(e.key) + strlen(e.value) + 2 != e.len)) {
            abort();
        }
    }
    /* The body decoders the calculator service runs on these frames. */
    if (f->type == TT_FRAME_REQUEST && f->name_len > 11 &&
        memcmp(f->name, "Calculator.", 11) == 0) {
        Args *a = args__unpack(NULL, f->body_len, f->body);
        if (a != NULL) {
            /* Re-encoding what was accepted must work and stay bounded: the
             * two known fields take at most 22 bytes, unknown fields are
             * kept as they came (so more than 64 bytes is fine). */
            size_t need = args__get_packed_size(a);
            if (need > f->body_len + 22) {
                abort();
            }
            uint8_t *out = malloc(need > 0 ? need : 1);
            if (out != NULL && args__pack(a, out) != need) {
                abort();
            }
            free(out);
            args__free_unpacked(a, NULL);
        }
    } else if (f->type == TT_FRAME_REPLY) {
        Google__Protobuf__Int64Value *v =
            google__protobuf__int64_value__unpack(NULL, f->body_len, f->body);
        if (v != NULL) {
            google__protobuf__int64_value__free_unpacked(v, NULL);
        }
    }
}

/* Decode p[0..n) as one buffer that already holds everything. */
static void
decode_whole(const uint8_t *p, size_t n, struct seen *s)
{
    s->count = 0;
    s->consumed = 0;
    for (;;) {
        tt_frame f;
        size_t need = 0;
        tether_err e = tt_frame_decode(p + s->consumed, n - s->consumed, FUZZ_MAX_FRAME, &f,
                                       &need);
        if (e != TETHER_OK) {
            if (e == TETHER_EAGAIN &&
                (need <= n - s->consumed || need < TT_FRAME_HDR || need > FUZZ_MAX_FRAME)) {
                abort();
            }
            if (e != TETHER_EAGAIN && e != TETHER_EMSGSIZE && e != TETHER_EPROTO) {
                abort();
            }
            s->end = e;
            return;
        }
        check_frame(p + s->consumed, n - s->consumed, &f);
        if (s->count < FUZZ_MAX_FRAMES) {
            s->seqs[s->count] = f.seq;
            s->totals[s->count] = f.total;
        }
        s->count++;
        s->consumed += f.total;
    }
}

/* Deliver p[0..n) in chunks into a buffer of exactly the bytes received
 * so far (a fresh copy each time, so reading past it is caught), decoding
 * whenever the decoder said enough has arrived. */
static void
decode_chunked(const uint8_t *p, size_t n, struct seen *s)
{
    uint8_t *in = NULL;
    size_t have = 0;
    size_t off = 0;
    size_t fed = 0;
    uint32_t x = 2166136261u;
    for (size_t i = 0; i < n && i < 16; i++) {
        x = (x ^ p[i]) * 16777619u;
    }
    s->count = 0;
    s->consumed = 0;
    for (;;) {
        tt_frame f;
        size_t need = 0;
        uint8_t *view = malloc(have - off + 1);
        if (view == NULL) {
            abort();
        }
        if (have > off) {
            memcpy(view, in + off, have - off);
        }
        tether_err e = tt_frame_decode(view, have - off, FUZZ_MAX_FRAME, &f, &need);
        if (e == TETHER_OK) {
            check_frame(view, have - off, &f);
            if (s->count < FUZZ_MAX_FRAMES) {
                s->seqs[s->count] = f.seq;
                s->totals[s->count] = f.total;
            }
            s->count++;
            off += f.total;
            s->consumed = off;
            free(view);
            continue;
        }
        free(view);
        if (e != TETHER_EAGAIN || fed == n) {
            s->end = e;
            break;
        }
        /* Feed between 1 and 64 more bytes. */
        x = x * 1103515245u + 12345u;
        size_t chunk = 1 + (x >> 16) % 64;
        if (chunk > n - fed) {
            chunk = n - fed;
        }
        uint8_t *grown = realloc(in, have + chunk);
        if (grown == NULL) {
            abort();
        }
        in = grown;
        memcpy(in + have, p + fed, chunk);
        have += chunk;
        fed += chunk;
    }
    free(in);
}

static struct seen whole;
static struct seen chunked;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode_whole(data, size, &whole);
    decode_chunked(data, size, &chunked);
    if (whole.end != chunked.end || whole.count != chunked.count ||
        whole.consumed != chunked.consumed) {
        abort();
    }
    size_t k = whole.count < FUZZ_MAX_FRAMES ? whole.count : FUZZ_MAX_FRAMES;
    for (size_t i = 0; i < k; i++) {
        if (whole.seqs[i] != chunked.seqs[i] || whole.totals[i] != chunked.totals[i]) {
            abort();
        }
    }
    return 0;
}
