/*
 * test_frame.c - edge cases of the native frame decoder (frame.h,
 * docs/protocol.md): every truncation of a valid frame, oversized and
 * undersized length fields, unknown types, reserved flags, bad name
 * lengths, garbage, header encoding, and the byte vectors kept in
 * tests/data/native/.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec/native/frame.h"

#define MAX_FRAME (16u * 1024 * 1024)

/* A frame built into a caller buffer with tt_frame_put_header(), the way
 * the library's writers build them. */
static size_t
build_frame(uint8_t *out, uint8_t type, uint64_t seq, uint32_t status, const char *name,
            const void *body, size_t body_len)
{
    size_t name_len = name != NULL ? strlen(name) : 0;
    tt_frame_put_header(out, type, seq, status, name_len, body_len);
    if (name_len > 0) {
        memcpy(out + TT_FRAME_HDR, name, name_len);
    }
    if (body_len > 0) {
        memcpy(out + TT_FRAME_HDR + name_len, body, body_len);
    }
    return TT_FRAME_HDR + name_len + body_len;
}

/* A header written byte by byte, so that fields the encoder never
 * produces (bad types, flags, name lengths) can be tried. */
static void
raw_header(uint8_t *out, uint32_t length, uint8_t type, uint8_t flags, uint16_t name_len,
           uint64_t seq, uint32_t status)
{
    tt_put_le32(out, length);
    out[4] = type;
    out[5] = flags;
    out[6] = (uint8_t)name_len;
    out[7] = (uint8_t)(name_len >> 8);
    tt_put_le64(out + 8, seq);
    tt_put_le32(out + 16, status);
}

static tether_err
decode(const uint8_t *p, size_t n, size_t max, tt_frame *f, size_t *need)
{
    memset(f, 0xA5, sizeof(*f));
    *need = 0xDEAD;
    return tt_frame_decode(p, n, max, f, need);
}

static void
test_request_round_trip(void **state)
{
    (void)state;
    uint8_t buf[256];
    const uint8_t body[] = {0x08, 0x01, 0x10, 0x02};
    size_t n = build_frame(buf, TT_FRAME_REQUEST, 0x0102030405060708ull, 0, "Calculator.Add", body,
                           sizeof(body));
    tt_frame f;
    size_t need;
    assert_int_equal(decode(buf, n, MAX_FRAME, &f, &need), TETHER_OK);
    assert_int_equal(f.type, TT_FRAME_REQUEST);
    assert_int_equal(f.flags, 0);
    assert_true(f.seq == 0x0102030405060708ull);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.name_len, strlen("Calculator.Add"));
    assert_memory_equal(f.name, "Calculator.Add", f.name_len);
    assert_ptr_equal(f.name, (const char *)buf + TT_FRAME_HDR);
    assert_int_equal(f.body_len, sizeof(body));
    assert_memory_equal(f.body, body, sizeof(body));
    assert_int_equal(f.total, n);

    /* Trailing bytes of the next frame are not consumed. */
    uint8_t two[512];
    memcpy(two, buf, n);
    memcpy(two + n, buf, n);
    assert_int_equal(decode(two, n + 7, MAX_FRAME, &f, &need), TETHER_OK);
    assert_int_equal(f.total, n);
    assert_int_equal(decode(two + n, n, MAX_FRAME, &f, &need), TETHER_OK);
    assert_int_equal(f.total, n);
}

static void
test_every_type_round_trips(void **state)
{
    (void)state;
    static const uint8_t types[] = {TT_FRAME_REQUEST, TT_FRAME_REPLY, TT_FRAME_ERROR,
                                    TT_FRAME_GOAWAY,  TT_FRAME_PING,  TT_FRAME_PONG,
                                    TT_FRAME_CANCEL};
    for (size_t i = 0; i < sizeof(types); i++) {
        uint8_t buf[128];
        const char *name = types[i] == TT_FRAME_REQUEST ? "S.M" : NULL;
        uint32_t status = types[i] == TT_FRAME_ERROR ? (uint32_t)TETHER_ENOMETHOD : 0;
        size_t n = build_frame(buf, types[i], i, status, name, "xyz", 3);
        tt_frame f;
        size_t need;
        assert_int_equal(decode(buf, n, MAX_FRAME, &f, &need), TETHER_OK);
        assert_int_equal(f.type, types[i]);
        assert_true(f.seq == i);
        assert_int_equal(f.status, status);
        assert_int_equal(f.body_len, 3);
        assert_memory_equal(f.body, "xyz", 3);
        assert_int_equal(f.total, n);
    }
}

static void
test_empty_body(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t n = build_frame(buf, TT_FRAME_REPLY, 7, 0, NULL, NULL, 0);
    assert_int_equal(n, TT_FRAME_HDR);
    assert_int_equal(tt_get_le32(buf), TT_FRAME_MIN_LEN);
    tt_frame f;
    size_t need;
    assert_int_equal(decode(buf, n, MAX_FRAME, &f, &need), TETHER_OK);
    assert_int_equal(f.body_len, 0);
    assert_int_equal(f.name_len, 0);
    assert_int_equal(f.total, TT_FRAME_HDR);
    /* An empty body still points inside (at the end of) the input. */
    assert_ptr_equal(f.body, buf + TT_FRAME_HDR);
}

/* Every proper prefix of a valid frame is "incomplete", and need says how
 * much to wait for: the header first, then the whole frame. */
static void
check_every_prefix(const uint8_t *buf, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        tt_frame f;
        size_t need;
        tether_err e = decode(buf, k, MAX_FRAME, &f, &need);
        if (e != TETHER_EAGAIN) {
            fail_msg("prefix of %zu/%zu bytes: got %s", k, n, tether_err_name(e));
        }
        size_t want = k < TT_FRAME_HDR ? TT_FRAME_HDR : n;
        if (need != want) {
            fail_msg("prefix of %zu/%zu bytes: need %zu, want %zu", k, n, need, want);
        }
        /* need may be NULL. */
        assert_int_equal(tt_frame_decode(buf, k, MAX_FRAME, &f, NULL), TETHER_EAGAIN);
    }
    tt_frame f;
    size_t need;
    assert_int_equal(decode(buf, n, MAX_FRAME, &f, &need), TETHER_OK);
    assert_int_equal(f.total, n);
}

static void
test_truncated_at_every_offset(void **state)
{
    (void)state;
    uint8_t buf[600];
    uint8_t body[300];
    for (size_t i = 0; i < sizeof(body); i++) {
        body[i] = (uint8_t)(i * 7);
    }
    check_every_prefix(buf, build_frame(buf, TT_FRAME_REQUEST, 1, 0, "Calculator.Add", body, 4));
    check_every_prefix(buf,
                       build_frame(buf, TT_FRAME_REQUEST, 2, 0, "Svc.Method", body, sizeof(body)));
    check_every_prefix(buf, build_frame(buf, TT_FRAME_REQUEST, 3, 0, "S.M", NULL, 0));
    check_every_prefix(buf, build_frame(buf, TT_FRAME_REPLY, 4, 0, NULL, body, 9));
    check_every_prefix(buf, build_frame(buf, TT_FRAME_REPLY, 5, 0, NULL, NULL, 0));
    check_every_prefix(
        buf, build_frame(buf, TT_FRAME_ERROR, 6, TETHER_EREMOTE, NULL, "divide by zero", 14));
    check_every_prefix(buf, build_frame(buf, TT_FRAME_PING, 7, 0, NULL, NULL, 0));
}

/* The length field alone is enough to refuse a frame that is too large:
 * a peer must not make us buffer a body we will refuse anyway. */
static void
test_oversized_refused_from_length_field(void **state)
{
    (void)state;
    uint8_t hdr[TT_FRAME_HDR];
    raw_header(hdr, 0xFFFFFFFFu, TT_FRAME_REQUEST, 0, 3, 1, 0);
    tt_frame f;
    size_t need;
    /* Fewer than 4 bytes: the length is not known yet. */
    for (size_t k = 0; k < 4; k++) {
        assert_int_equal(decode(hdr, k, MAX_FRAME, &f, &need), TETHER_EAGAIN);
        assert_int_equal(need, TT_FRAME_HDR);
    }
    for (size_t k = 4; k <= TT_FRAME_HDR; k++) {
        assert_int_equal(decode(hdr, k, MAX_FRAME, &f, &need), TETHER_EMSGSIZE);
    }

    /* Just over and exactly at the limit (the limit counts the whole
     * frame, length field included). */
    size_t max = 1000;
    raw_header(hdr, (uint32_t)(max - 4 + 1), TT_FRAME_REPLY, 0, 0, 1, 0);
    for (size_t k = 4; k <= TT_FRAME_HDR; k++) {
        assert_int_equal(decode(hdr, k, max, &f, &need), TETHER_EMSGSIZE);
    }
    raw_header(hdr, (uint32_t)(max - 4), TT_FRAME_REPLY, 0, 0, 1, 0);
    for (size_t k = 4; k < TT_FRAME_HDR; k++) {
        assert_int_equal(decode(hdr, k, max, &f, &need), TETHER_EAGAIN);
        assert_int_equal(need, TT_FRAME_HDR);
    }
    assert_int_equal(decode(hdr, TT_FRAME_HDR, max, &f, &need), TETHER_EAGAIN);
    assert_int_equal(need, max);

    /* A whole valid frame one byte over a small limit. */
    uint8_t buf[64];
    size_t n = build_frame(buf, TT_FRAME_REQUEST, 1, 0, "A.B", "12345", 5);
    assert_int_equal(decode(buf, n, n, &f, &need), TETHER_OK);
    assert_int_equal(decode(buf, n, n - 1, &f, &need), TETHER_EMSGSIZE);

    /* The largest length field must not overflow the size arithmetic even
     * with an unlimited max_frame. */
    raw_header(hdr, 0xFFFFFFFFu, TT_FRAME_REPLY, 0, 0, 1, 0);
    assert_int_equal(decode(hdr, TT_FRAME_HDR, SIZE_MAX, &f, &need), TETHER_EAGAIN);
    assert_true(need == (size_t)0xFFFFFFFFu + 4);
}

/* Lengths below the fixed part (zero-length frames included) are
 * malformed, whether or not the rest of the header has arrived. */
static void
test_length_below_minimum(void **state)
{
    (void)state;
    for (uint32_t len = 0; len < TT_FRAME_MIN_LEN; len++) {
        uint8_t hdr[TT_FRAME_HDR];
        raw_header(hdr, len, TT_FRAME_REPLY, 0, 0, 1, 0);
        for (size_t k = 4; k <= TT_FRAME_HDR; k++) {
            tt_frame f;
            size_t need;
            tether_err e = decode(hdr, k, MAX_FRAME, &f, &need);
            if (e != TETHER_EPROTO) {
                fail_msg("length %u with %zu bytes: got %s", len, k, tether_err_name(e));
            }
        }
    }
}

static void
test_unknown_type(void **state)
{
    (void)state;
    for (unsigned type = 0; type < 256; type++) {
        if (type >= 1 && type <= TT_FRAME_TYPE_MAX) {
            continue;
        }
        uint8_t buf[64];
        raw_header(buf, TT_FRAME_MIN_LEN + 4, (uint8_t)type, 0, 0, 1, 0);
        memcpy(buf + TT_FRAME_HDR, "body", 4);
        tt_frame f;
        size_t need;
        assert_int_equal(decode(buf, TT_FRAME_HDR + 4, MAX_FRAME, &f, &need), TETHER_EPROTO);
        /* Refused from the header alone: the body is not awaited. */
        assert_int_equal(decode(buf, TT_FRAME_HDR, MAX_FRAME, &f, &need), TETHER_EPROTO);
        /* Same with a name, as a request would carry. */
        raw_header(buf, TT_FRAME_MIN_LEN + 4, (uint8_t)type, 0, 4, 1, 0);
        assert_int_equal(decode(buf, TT_FRAME_HDR + 4, MAX_FRAME, &f, &need), TETHER_EPROTO);
    }
}

static void
test_nonzero_flags(void **state)
{
    (void)state;
    for (unsigned flags = 1; flags < 256; flags++) {
        uint8_t buf[64];
        raw_header(buf, TT_FRAME_MIN_LEN + 3, TT_FRAME_REQUEST, (uint8_t)flags, 3, 1, 0);
        memcpy(buf + TT_FRAME_HDR, "A.B", 3);
        tt_frame f;
        size_t need;
        /* TT_FRAME_F_CTX is the one flag: here it promises a context
         * section the frame has no room for. */
        assert_int_equal(decode(buf, TT_FRAME_HDR + 3, MAX_FRAME, &f, &need), TETHER_EPROTO);
        assert_int_equal(decode(buf, TT_FRAME_HDR, MAX_FRAME, &f, &need),
                         flags == TT_FRAME_F_CTX ? TETHER_EAGAIN : TETHER_EPROTO);
    }
}

/* A request with a context section: the deadline and two metadata pairs
 * come back entry by entry, and the body starts after them. */
static void
test_ctx_section(void **state)
{
    (void)state;
    uint8_t ctx[64];
    size_t n = tt_ctx_put_deadline(ctx, 1500);
    n += tt_ctx_put_meta(ctx + n, "trace", 5, "abc", 3);
    n += tt_ctx_put_meta(ctx + n, "k", 1, "", 0);
    uint8_t buf[256];
    tt_frame_put_header_ctx(buf, TT_FRAME_REQUEST, 9, 0, 3, n, 2);
    memcpy(buf + TT_FRAME_HDR, "A.B", 3);
    memcpy(buf + TT_FRAME_HDR + 3 + 4, ctx, n);
    memcpy(buf + TT_FRAME_HDR + 3 + 4 + n, "\x08\x01", 2);
    size_t total = TT_FRAME_HDR + 3 + 4 + n + 2;
    tt_frame f;
    size_t need;
    assert_int_equal(decode(buf, total, MAX_FRAME, &f, &need), TETHER_OK);
    assert_int_equal(f.total, total);
    assert_int_equal(f.ctx_len, n);
    assert_int_equal(f.body_len, 2);
    assert_memory_equal(f.body, "\x08\x01", 2);
    size_t off = 0;
    tt_ctx_entry e = {0};
    assert_int_equal(tt_ctx_next(f.ctx, f.ctx_len, &off, &e), 1);
    assert_int_equal(e.tag, TT_CTX_DEADLINE);
    assert_int_equal(tt_get_le32(e.val), 1500);
    assert_int_equal(tt_ctx_next(f.ctx, f.ctx_len, &off, &e), 1);
    assert_string_equal(e.key, "trace");
    assert_string_equal(e.value, "abc");
    assert_int_equal(tt_ctx_next(f.ctx, f.ctx_len, &off, &e), 1);
    assert_string_equal(e.key, "k");
    assert_string_equal(e.value, "");
    assert_int_equal(tt_ctx_next(f.ctx, f.ctx_len, &off, &e), 0);

    /* ctx_len past the frame's end. */
    tt_put_le32(buf + TT_FRAME_HDR + 3, (uint32_t)(n + 3));
    assert_int_equal(decode(buf, total, MAX_FRAME, &f, &need), TETHER_EPROTO);
    /* Context on a frame type that takes none. */
    uint8_t ping[TT_FRAME_HDR + 4];
    tt_frame_put_header_ctx(ping, TT_FRAME_PING, 1, 0, 0, 0, 0);
    assert_int_equal(decode(ping, sizeof ping, MAX_FRAME, &f, &need), TETHER_EPROTO);
}

/* Malformed entries: cut short, a deadline of the wrong size, metadata
 * without its NULs, an empty key, a NUL too many. */
static void
test_ctx_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"\x01\x04\x00\x10", 4},
        {"\x01\x02\x00\x10\x27", 5},
        {"\x02\x03\x00"
         "abc",
         6},
        {"\x02\x03\x00"
         "\0b\0",
         6},
        {"\x02\x04\x00"
         "a\0\0\0",
         7},
        {"\x02\x02\x00"
         "a\0",
         5},
        {"\x02", 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t off = 0;
        tt_ctx_entry e;
        assert_int_equal(tt_ctx_next((const uint8_t *)bad[i].bytes, bad[i].len, &off, &e), -1);
    }
    /* An unknown tag is skipped, not refused. */
    size_t off = 0;
    tt_ctx_entry e;
    assert_int_equal(tt_ctx_next((const uint8_t *)"\x09\x01\x00z", 4, &off, &e), 1);
    assert_int_equal(e.tag, 9);
    assert_int_equal(off, 4);
}

/* The META check takes short entries (one pass) and long ones (memchr)
 * apart: every length from 1 to 80 bytes, with the NULs placed every way
 * that matters, must be judged as the rule says (exactly two NULs, a key
 * of one byte or more, the last byte a NUL). */
static void
test_ctx_meta_lengths(void **state)
{
    (void)state;
    uint8_t buf[3 + 80];
    for (size_t len = 1; len <= 80; len++) {
        /* nul: where a first NUL goes (len: none); extra: a third NUL. */
        for (size_t nul = 0; nul <= len; nul++) {
            for (int extra = 0; extra < 3; extra++) {
                for (int last = 0; last < 2; last++) {
                    memset(buf + 3, 'x', len);
                    if (nul < len) {
                        buf[3 + nul] = 0;
                    }
                    if (last) {
                        buf[3 + len - 1] = 0;
                    }
                    if (extra == 1 && len > 2) {
                        buf[3 + len - 2] = 0; /* an empty value, or a NUL too many */
                    } else if (extra == 2 && nul + 1 < len) {
                        buf[3 + nul + 1] = 0;
                    }
                    size_t nuls = 0;
                    size_t first = len;
                    for (size_t i = 0; i < len; i++) {
                        if (buf[3 + i] == 0) {
                            nuls++;
                            first = first < len ? first : i;
                        }
                    }
                    int ok = nuls == 2 && first > 0 && buf[3 + len - 1] == 0;
                    buf[0] = TT_CTX_META;
                    buf[1] = (uint8_t)len;
                    buf[2] = 0;
                    size_t off = 0;
                    tt_ctx_entry e = {0};
                    int r = tt_ctx_next(buf, 3 + len, &off, &e);
                    assert_int_equal(r, ok ? 1 : -1);
                    if (ok) {
                        assert_ptr_equal(e.key, (const char *)buf + 3);
                        assert_ptr_equal(e.value, (const char *)buf + 3 + first + 1);
                        assert_int_equal(off, 3 + len);
                    }
                }
            }
        }
    }
}

static void
test_name_len_beyond_length(void **state)
{
    (void)state;
    uint8_t buf[128];
    tt_frame f;
    size_t need;
    memset(buf, 'x', sizeof(buf));
    /* The name would run past the end of the frame by one byte. */
    raw_header(buf, TT_FRAME_MIN_LEN + 10, TT_FRAME_REQUEST, 0, 11, 1, 0);
    assert_int_equal(decode(buf, sizeof(buf), MAX_FRAME, &f, &need), TETHER_EPROTO);
    assert_int_equal(decode(buf, TT_FRAME_HDR, MAX_FRAME, &f, &need), TETHER_EPROTO);
    /* A name filling the whole frame (empty body) is fine. */
    raw_header(buf, TT_FRAME_MIN_LEN + 10, TT_FRAME_REQUEST, 0, 10, 1, 0);
    assert_int_equal(decode(buf, TT_FRAME_HDR + 10, MAX_FRAME, &f, &need), TETHER_OK);
    assert_int_equal(f.name_len, 10);
    assert_int_equal(f.body_len, 0);
    /* The largest name_len with the smallest frame. */
    raw_header(buf, TT_FRAME_MIN_LEN, TT_FRAME_REQUEST, 0, 0xFFFF, 1, 0);
    assert_int_equal(decode(buf, TT_FRAME_HDR, MAX_FRAME, &f, &need), TETHER_EPROTO);
}

static void
test_name_only_on_requests(void **state)
{
    (void)state;
    uint8_t buf[64];
    tt_frame f;
    size_t need;
    /* A request must name its method. */
    raw_header(buf, TT_FRAME_MIN_LEN + 2, TT_FRAME_REQUEST, 0, 0, 1, 0);
    assert_int_equal(decode(buf, TT_FRAME_HDR + 2, MAX_FRAME, &f, &need), TETHER_EPROTO);
    /* Nothing else may carry a name. */
    for (uint8_t type = TT_FRAME_REPLY; type <= TT_FRAME_TYPE_MAX; type++) {
        raw_header(buf, TT_FRAME_MIN_LEN + 3, type, 0, 3, 1, 0);
        memcpy(buf + TT_FRAME_HDR, "A.B", 3);
        assert_int_equal(decode(buf, TT_FRAME_HDR + 3, MAX_FRAME, &f, &need), TETHER_EPROTO);
    }
}

static void
test_max_name(void **state)
{
    (void)state;
    size_t cap = TT_FRAME_HDR + TT_FRAME_MAX_NAME + 2 + 8;
    uint8_t *buf = malloc(cap);
    char *name = malloc(TT_FRAME_MAX_NAME + 2);
    assert_non_null(buf);
    assert_non_null(name);
    memset(name, 'm', TT_FRAME_MAX_NAME + 1);
    name[TT_FRAME_MAX_NAME] = '\0';
    tt_frame f;
    size_t need;

    size_t n = build_frame(buf, TT_FRAME_REQUEST, 9, 0, name, "b", 1);
    assert_int_equal(decode(buf, n, MAX_FRAME, &f, &need), TETHER_OK);
    assert_int_equal(f.name_len, TT_FRAME_MAX_NAME);
    assert_int_equal(f.body_len, 1);
    assert_int_equal(f.body[0], 'b');

    name[TT_FRAME_MAX_NAME] = 'm';
    name[TT_FRAME_MAX_NAME + 1] = '\0';
    n = build_frame(buf, TT_FRAME_REQUEST, 9, 0, name, "b", 1);
    assert_int_equal(decode(buf, n, MAX_FRAME, &f, &need), TETHER_EPROTO);
    free(name);
    free(buf);
}

/* Pseudo-random bytes (fixed seed, so failures reproduce): the decoder
 * answers one of its documented results, and whatever it accepts is
 * self-consistent and inside the input. */
static void
test_garbage(void **state)
{
    (void)state;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    uint8_t buf[256];
    unsigned ok = 0;
    for (int iter = 0; iter < 200000; iter++) {
        size_t n = (size_t)(x % sizeof(buf));
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
        /* Make plausible headers common enough that the later checks run. */
        if (n >= 8 && (iter & 1)) {
            tt_put_le32(buf, (uint32_t)(TT_FRAME_MIN_LEN + (x >> 8) % 64));
            buf[4] = (uint8_t)(1 + (x >> 16) % 8);
            buf[5] = (iter & 2) ? 0 : buf[5];
            buf[6] = (uint8_t)((x >> 24) % 8);
            buf[7] = 0;
        }
        tt_frame f;
        size_t need;
        tether_err e = decode(buf, n, 4096, &f, &need);
        switch (e) {
        case TETHER_OK:
            ok++;
            assert_true(f.total <= n);
            assert_true(f.total >= TT_FRAME_HDR);
            assert_int_equal(f.total, TT_FRAME_HDR + f.name_len + f.body_len);
            assert_true(f.type >= 1 && f.type <= TT_FRAME_TYPE_MAX);
            assert_int_equal(f.flags, 0);
            assert_true((f.type == TT_FRAME_REQUEST) == (f.name_len > 0));
            assert_ptr_equal(f.name, (const char *)buf + TT_FRAME_HDR);
            assert_ptr_equal(f.body, buf + TT_FRAME_HDR + f.name_len);
            break;
        case TETHER_EAGAIN:
            assert_true(need > n);
            assert_true(need >= TT_FRAME_HDR && need <= 4096);
            break;
        case TETHER_EMSGSIZE:
        case TETHER_EPROTO:
            break;
        default:
            fail_msg("unexpected %s", tether_err_name(e));
        }
        x += 0x9E3779B97F4A7C15ull;
    }
    /* The plausible-header half must have produced accepted frames, or the
     * checks above never ran. */
    assert_true(ok > 100);

    /* Text protocols spoken at a tether port: "GET " read as a length is
     * about 540 MB, far over any limit. */
    const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    tt_frame f;
    size_t need;
    assert_int_equal(decode((const uint8_t *)http, strlen(http), MAX_FRAME, &f, &need),
                     TETHER_EMSGSIZE);
    /* A JSON-RPC request: '{"me' is also a huge length. */
    const char *json = "{\"method\":\"Calculator.Add\",\"params\":[{\"A\":1}],\"id\":0}\n";
    assert_int_equal(decode((const uint8_t *)json, strlen(json), MAX_FRAME, &f, &need),
                     TETHER_EMSGSIZE);
    /* All zeros: a zero length field. */
    uint8_t zeros[32] = {0};
    assert_int_equal(decode(zeros, sizeof(zeros), MAX_FRAME, &f, &need), TETHER_EPROTO);
    assert_int_equal(decode(zeros, 4, MAX_FRAME, &f, &need), TETHER_EPROTO);
    /* All 0xFF. */
    uint8_t ones[32];
    memset(ones, 0xFF, sizeof(ones));
    assert_int_equal(decode(ones, sizeof(ones), MAX_FRAME, &f, &need), TETHER_EMSGSIZE);
}

/* tt_frame_put_header writes exactly the layout of docs/protocol.md. */
static void
test_put_header_layout(void **state)
{
    (void)state;
    uint8_t hdr[TT_FRAME_HDR];
    tt_frame_put_header(hdr, TT_FRAME_ERROR, 0x1122334455667788ull, 0xA1B2C3D4u, 0x0102, 0x030405);
    static const uint8_t want[TT_FRAME_HDR] = {
        0x17, 0x05, 0x03, 0x00,                         /* 16 + 0x0102 + 0x030405 */
        0x03,                                           /* type */
        0x00,                                           /* flags */
        0x02, 0x01,                                     /* name_len */
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* seq */
        0xD4, 0xC3, 0xB2, 0xA1,                         /* status */
    };
    assert_memory_equal(hdr, want, sizeof(want));
}

static void
test_put_header_round_trip(void **state)
{
    (void)state;
    static const uint64_t seqs[] = {0, 1, 0xFFFFFFFFull, 0x100000000ull, UINT64_MAX};
    static const uint32_t statuses[] = {0, TETHER_EREMOTE, UINT32_MAX};
    static const size_t names[] = {1, 14, 255, 256, TT_FRAME_MAX_NAME};
    static const size_t bodies[] = {0, 1, 65535, 65536, 16u * 1024 * 1024 - 2048};
    for (size_t a = 0; a < sizeof(seqs) / sizeof(seqs[0]); a++) {
        for (size_t b = 0; b < sizeof(statuses) / sizeof(statuses[0]); b++) {
            for (size_t c = 0; c < sizeof(names) / sizeof(names[0]); c++) {
                for (size_t d = 0; d < sizeof(bodies) / sizeof(bodies[0]); d++) {
                    uint8_t hdr[TT_FRAME_HDR];
                    tt_frame_put_header(hdr, TT_FRAME_REQUEST, seqs[a], statuses[b], names[c],
                                        bodies[d]);
                    size_t total = TT_FRAME_HDR + names[c] + bodies[d];
                    /* The header alone says how much is coming. */
                    tt_frame f;
                    size_t need;
                    assert_int_equal(decode(hdr, TT_FRAME_HDR, MAX_FRAME, &f, &need),
                                     TETHER_EAGAIN);
                    assert_int_equal(need, total);
                    assert_int_equal(tt_get_le32(hdr), total - 4);
                    assert_int_equal(hdr[4], TT_FRAME_REQUEST);
                    assert_int_equal(hdr[5], 0);
                    assert_int_equal(hdr[6] | hdr[7] << 8, names[c]);
                    assert_true(tt_get_le64(hdr + 8) == seqs[a]);
                    assert_true(tt_get_le32(hdr + 16) == statuses[b]);
                }
            }
        }
    }
    /* A full decode of a large frame, checking each decoded field. */
    size_t body_len = 70000;
    uint8_t *buf = calloc(1, TT_FRAME_HDR + 5 + body_len);
    assert_non_null(buf);
    tt_frame_put_header(buf, TT_FRAME_REQUEST, UINT64_MAX, UINT32_MAX, 5, body_len);
    memcpy(buf + TT_FRAME_HDR, "Ab.Cd", 5);
    buf[TT_FRAME_HDR + 5 + body_len - 1] = 0x5A;
    tt_frame f;
    size_t need;
    assert_int_equal(decode(buf, TT_FRAME_HDR + 5 + body_len, MAX_FRAME, &f, &need), TETHER_OK);
    assert_true(f.seq == UINT64_MAX);
    assert_true(f.status == UINT32_MAX);
    assert_int_equal(f.name_len, 5);
    assert_int_equal(f.body_len, body_len);
    assert_int_equal(f.body[body_len - 1], 0x5A);
    free(buf);
}

/* Decoding a stream split at every possible point gives the same frames
 * as decoding it whole, as a connection reading in odd chunks would. */
static void
test_stream_split_anywhere(void **state)
{
    (void)state;
    uint8_t stream[512];
    size_t n = 0;
    n += build_frame(stream + n, TT_FRAME_REQUEST, 1, 0, "Calculator.Add", "\x08\x01", 2);
    n += build_frame(stream + n, TT_FRAME_REPLY, 1, 0, NULL, "\x08\x03", 2);
    n += build_frame(stream + n, TT_FRAME_ERROR, 2, TETHER_EREMOTE, NULL, "divide by zero", 14);
    n += build_frame(stream + n, TT_FRAME_PING, 3, 0, NULL, NULL, 0);
    n += build_frame(stream + n, TT_FRAME_GOAWAY, 0, 0, NULL, NULL, 0);
    static const uint64_t seqs[] = {1, 1, 2, 3, 0};

    for (size_t split = 0; split <= n; split++) {
        /* Feed [0, split) first, then the rest, the way a reader appends
         * to its input buffer. */
        uint8_t in[512];
        size_t have = 0;
        size_t off = 0;
        size_t got = 0;
        size_t fed = 0;
        while (got < 5) {
            tt_frame f;
            size_t need;
            tether_err e = decode(in + off, have - off, MAX_FRAME, &f, &need);
            if (e == TETHER_EAGAIN) {
                assert_true(need > have - off);
                size_t chunk = fed < split ? split - fed : n - fed;
                assert_true(chunk > 0);
                memcpy(in + have, stream + fed, chunk);
                have += chunk;
                fed += chunk;
                continue;
            }
            assert_int_equal(e, TETHER_OK);
            assert_true(f.seq == seqs[got]);
            off += f.total;
            got++;
        }
        assert_int_equal(off, n);
    }
}

/* Byte vectors in tests/data/native/: <expect>_<what>.bin, where expect is
 * ok, eagain, emsgsize or eproto, decoded with a 1 MiB limit. */
static void
test_data_vectors(void **state)
{
    (void)state;
    const char *root = getenv("TETHER_TEST_DATA");
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/native", root != NULL ? root : "tests/data");
    DIR *d = opendir(dir);
    if (d == NULL) {
        fail_msg("cannot open %s (set TETHER_TEST_DATA)", dir);
    }
    unsigned count = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".bin") != 0) {
            continue;
        }
        tether_err want = TETHER_EINTERNAL;
        if (strncmp(de->d_name, "ok_", 3) == 0) {
            want = TETHER_OK;
        } else if (strncmp(de->d_name, "eagain_", 7) == 0) {
            want = TETHER_EAGAIN;
        } else if (strncmp(de->d_name, "emsgsize_", 9) == 0) {
            want = TETHER_EMSGSIZE;
        } else if (strncmp(de->d_name, "eproto_", 7) == 0) {
            want = TETHER_EPROTO;
        } else {
            fail_msg("%s: unknown expectation prefix", de->d_name);
        }
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *fp = fopen(path, "rb");
        assert_non_null(fp);
        static uint8_t buf[1 << 16];
        size_t n = fread(buf, 1, sizeof(buf), fp);
        fclose(fp);
        tt_frame f;
        size_t need;
        tether_err e = decode(buf, n, 1u << 20, &f, &need);
        if (e != want) {
            fail_msg("%s: got %s, want %s", de->d_name, tether_err_name(e), tether_err_name(want));
        }
        if (e == TETHER_OK) {
            /* Each "ok" vector is exactly one frame. */
            assert_int_equal(f.total, n);
        }
        count++;
    }
    closedir(d);
    assert_true(count >= 8);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_round_trip),
        cmocka_unit_test(test_every_type_round_trips),
        cmocka_unit_test(test_empty_body),
        cmocka_unit_test(test_truncated_at_every_offset),
        cmocka_unit_test(test_oversized_refused_from_length_field),
        cmocka_unit_test(test_length_below_minimum),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_nonzero_flags),
        cmocka_unit_test(test_ctx_section),
        cmocka_unit_test(test_ctx_malformed),
        cmocka_unit_test(test_ctx_meta_lengths),
        cmocka_unit_test(test_name_len_beyond_length),
        cmocka_unit_test(test_name_only_on_requests),
        cmocka_unit_test(test_max_name),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_put_header_layout),
        cmocka_unit_test(test_put_header_round_trip),
        cmocka_unit_test(test_stream_split_anywhere),
        cmocka_unit_test(test_data_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
