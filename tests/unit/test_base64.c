/*
 * test_base64.c - the shared base64 codec: RFC 4648 vectors both ways,
 * padding rules, and hostile input that must fail without writing past
 * the output buffer (every case runs under ASan in the test run).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base64.h"

static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
static const char *const coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};

static void
test_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        char enc[16] = {0};
        size_t n = strlen(plain[i]);
        assert_int_equal(tt_base64_len(n), strlen(coded[i]));
        tt_base64_encode(plain[i], n, enc);
        assert_memory_equal(enc, coded[i], strlen(coded[i]));
        uint8_t dec[16];
        size_t len = 99;
        assert_true(tt_base64_decode(coded[i], strlen(coded[i]), dec, sizeof dec, &len));
        assert_int_equal(len, n);
        assert_memory_equal(dec, plain[i], n);
    }
}

static void
test_line_breaks_skipped(void **state)
{
    (void)state;
    uint8_t dec[16];
    size_t len;
    assert_true(tt_base64_decode("Zm9v\r\nYmFy", 10, dec, sizeof dec, &len));
    assert_int_equal(len, 6);
    assert_memory_equal(dec, "foobar", 6);
}

static void
test_bad_input(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zg",       /* unpadded */
        "Zg=",      /* short padding */
        "Zm=v",     /* padding inside a group */
        "Z===",     /* too much padding */
        "Zg==Zg==", /* data after padding */
        "Zm-v",     /* URL-safe alphabet */
        "Zm9v!",    /* junk */
        "abc",      /* short group */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = strlen(bad[i]);
        /* An exact-size heap buffer, so ASan sees any write past it. */
        size_t cap = n / 4 * 3;
        uint8_t *out = malloc(cap + 1);
        size_t len;
        assert_false(tt_base64_decode(bad[i], n, out, cap, &len));
        free(out);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_line_breaks_skipped),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
