/*
 * test_eject.c - outlier ejection bookkeeping (src/balance/eject.c):
 * consecutive failures eject, successes reset the count, the ejection time
 * doubles per ejection in a row up to the cap and starts over after a
 * healthy spell, a failed probe ejects again for longer, a passed one
 * admits, and never more than the set share of instances is out at once
 * (but one always may be).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "balance/eject.h"

static const tt_eject_cfg cfg = {.failures = 3, .base_ms = 100, .max_ms = 1000, .max_percent = 50};

static void
test_failures_in_a_row(void **state)
{
    (void)state;
    tt_eject e;
    memset(&e, 0, sizeof e);
    assert_false(tt_eject_failure(&e, &cfg));
    assert_false(tt_eject_failure(&e, &cfg));
    tt_eject_success(&e); /* not in a row any more */
    assert_false(tt_eject_failure(&e, &cfg));
    assert_false(tt_eject_failure(&e, &cfg));
    assert_true(tt_eject_failure(&e, &cfg));
    assert_int_equal(tt_eject_start(&e, &cfg, 1000), 100);
    assert_int_equal(e.state, TT_EJECT_OUT);
    /* Failures of an instance that is out count for nothing. */
    assert_false(tt_eject_failure(&e, &cfg));
    tt_eject_cfg never = cfg;
    never.failures = 0;
    tt_eject f;
    memset(&f, 0, sizeof f);
    for (int i = 0; i < 100; i++) {
        assert_false(tt_eject_failure(&f, &never));
    }
}

static void
test_doubling_and_cap(void **state)
{
    (void)state;
    tt_eject e;
    memset(&e, 0, sizeof e);
    uint64_t now = 5000;
    static const uint32_t want[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        uint32_t ms = i == 0 ? tt_eject_start(&e, &cfg, now) : tt_eject_probed(&e, &cfg, 0, now);
        assert_int_equal(ms, want[i]);
        assert_int_equal(e.until_ms, now + ms);
        /* Not due a moment before its time, due at it: then probing. */
        assert_false(tt_eject_due(&e, now + ms - 1));
        assert_int_equal(e.state, TT_EJECT_OUT);
        assert_true(tt_eject_due(&e, now + ms));
        assert_int_equal(e.state, TT_EJECT_PROBING);
        assert_false(tt_eject_due(&e, now + ms)); /* one probe at a time */
        now += ms;
    }
    /* A passed probe admits it. */
    assert_int_equal(tt_eject_probed(&e, &cfg, 1, now), 0);
    assert_int_equal(e.state, TT_EJECT_NONE);
    /* Ejected again soon after: the doubling goes on (capped). */
    assert_int_equal(tt_eject_start(&e, &cfg, now + 10), 1000);
    assert_true(tt_eject_due(&e, now + 1010));
    assert_int_equal(tt_eject_probed(&e, &cfg, 1, now + 1010), 0);
    /* Healthy for max_ms: it starts over from base_ms. */
    assert_int_equal(tt_eject_start(&e, &cfg, now + 1010 + cfg.max_ms), 100);
}

static void
test_max_share(void **state)
{
    (void)state;
    /* One always may go, even where 50 % rounds to none. */
    assert_true(tt_eject_allowed(&cfg, 1, 0));
    assert_true(tt_eject_allowed(&cfg, 3, 0));
    assert_false(tt_eject_allowed(&cfg, 3, 1)); /* 2 of 3 > 50 % */
    assert_false(tt_eject_allowed(&cfg, 0, 0));
    assert_true(tt_eject_allowed(&cfg, 4, 1)); /* 2 of 4 = 50 % */
    assert_false(tt_eject_allowed(&cfg, 4, 2));
    assert_true(tt_eject_allowed(&cfg, 10, 4));
    assert_false(tt_eject_allowed(&cfg, 10, 5));
    tt_eject_cfg all = cfg;
    all.max_percent = 100;
    assert_true(tt_eject_allowed(&all, 3, 2));
    assert_false(tt_eject_allowed(&all, 3, 3));
    tt_eject_cfg tenth = cfg;
    tenth.max_percent = 10;
    assert_true(tt_eject_allowed(&tenth, 3, 0));
    assert_false(tt_eject_allowed(&tenth, 3, 1));
    assert_true(tt_eject_allowed(&tenth, 20, 1));
    assert_false(tt_eject_allowed(&tenth, 20, 2));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failures_in_a_row),
        cmocka_unit_test(test_doubling_and_cap),
        cmocka_unit_test(test_max_share),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
