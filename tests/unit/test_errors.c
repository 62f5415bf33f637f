/*
 * test_errors.c - the error list in tether.h: every code has a distinct,
 * non-empty description and its own "TETHER_<X>" name; wrapped OS errors
 * give their errno back; unknown values still get constant, non-NULL
 * text (never a per-call or static scratch buffer).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tether/tether.h"

struct code {
    tether_err err;
    int num;
    const char *name;
    const char *text;
};

static const struct code codes[] = {
#define CODE_(name, num, text) {TETHER_##name, num, "TETHER_" #name, text},
    TETHER_ERRNO_MAP(CODE_)
#undef CODE_
};
#define NCODES (sizeof(codes) / sizeof(codes[0]))

static void
test_every_code_has_text_and_name(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCODES; i++) {
        const char *text = tether_strerror(codes[i].err);
        const char *name = tether_err_name(codes[i].err);
        assert_non_null(text);
        assert_non_null(name);
        assert_true(text[0] != '\0');
        /* The enum value is the number the list gives (values are part of
         * the ABI and never renumbered). */
        assert_int_equal((int)codes[i].err, codes[i].num);
        assert_string_equal(text, codes[i].text);
        assert_string_equal(name, codes[i].name);
        assert_int_equal(strncmp(name, "TETHER_", 7), 0);
        assert_true(strlen(name) > 7);
        /* Not wrapped OS errors. */
        assert_int_equal(tether_err_errno(codes[i].err), 0);
    }
}

static void
test_codes_distinct(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCODES; i++) {
        for (size_t j = i + 1; j < NCODES; j++) {
            if (codes[i].num == codes[j].num) {
                fail_msg("%s and %s share %d", codes[i].name, codes[j].name, codes[i].num);
            }
            if (strcmp(tether_strerror(codes[i].err), tether_strerror(codes[j].err)) == 0) {
                fail_msg("%s and %s share their text", codes[i].name, codes[j].name);
            }
            if (strcmp(tether_err_name(codes[i].err), tether_err_name(codes[j].err)) == 0) {
                fail_msg("%s and %s share their name", codes[i].name, codes[j].name);
            }
        }
    }
}

/* Values are append-only, so they run 0..N-1 without gaps, and OK is 0. */
static void
test_codes_dense(void **state)
{
    (void)state;
    assert_int_equal(TETHER_OK, 0);
    for (size_t i = 0; i < NCODES; i++) {
        assert_int_equal(codes[i].num, (int)i);
    }
    /* ESYSERR is a flag bit far above the list. */
    assert_true((unsigned)TETHER_ESYSERR > NCODES);
    assert_int_equal((unsigned)TETHER_ESYSERR & ((unsigned)TETHER_ESYSERR - 1), 0);
}

static void
test_syserr_round_trip(void **state)
{
    (void)state;
    static const int errnos[] = {EPERM, ENOENT, EINTR, EIO, EBADF, EAGAIN, EACCES, EMFILE,
                                 EPIPE, ECONNRESET, EADDRNOTAVAIL, ENOBUFS, ETIMEDOUT, 1, 4095};
    for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++) {
        tether_err e = (tether_err)((unsigned)TETHER_ESYSERR | (unsigned)errnos[i]);
        assert_int_equal(tether_err_errno(e), errnos[i]);
        assert_non_null(tether_strerror(e));
        assert_true(tether_strerror(e)[0] != '\0');
        assert_string_equal(tether_err_name(e), "TETHER_ESYSERR");
        /* A wrapped OS error is not mistaken for one of the list's codes. */
        for (size_t j = 0; j < NCODES; j++) {
            assert_string_not_equal(tether_err_name(e), codes[j].name);
        }
    }
    /* The bare flag wraps errno 0. */
    assert_int_equal(tether_err_errno(TETHER_ESYSERR), 0);
    assert_string_equal(tether_err_name(TETHER_ESYSERR), "TETHER_ESYSERR");
}

static void
test_unknown_codes(void **state)
{
    (void)state;
    static const int unknown[] = {(int)NCODES, (int)NCODES + 1, 1000, 0x0FFFFFFF, -1, INT32_MIN};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        tether_err e = (tether_err)unknown[i];
        const char *text = tether_strerror(e);
        const char *name = tether_err_name(e);
        assert_non_null(text);
        assert_non_null(name);
        assert_true(text[0] != '\0');
        assert_true(name[0] != '\0');
        if (((unsigned)e & (unsigned)TETHER_ESYSERR) == 0) {
            assert_int_equal(tether_err_errno(e), 0);
            /* Not the text or name of a real code. */
            for (size_t j = 0; j < NCODES; j++) {
                assert_string_not_equal(name, codes[j].name);
                assert_string_not_equal(text, codes[j].text);
            }
        }
        /* Constant strings: asking again gives the same pointer, so no
         * per-call allocation and no scratch buffer that a second call
         * would overwrite. */
        assert_ptr_equal(tether_strerror(e), text);
        assert_ptr_equal(tether_err_name(e), name);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_has_text_and_name),
        cmocka_unit_test(test_codes_distinct),
        cmocka_unit_test(test_codes_dense),
        cmocka_unit_test(test_syserr_round_trip),
        cmocka_unit_test(test_unknown_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
