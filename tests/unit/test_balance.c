/*
 * test_balance.c - the four balancing policies (src/balance/balance.c):
 * weights honoured by round robin and random, power of two choices
 * preferring fewer calls in flight, consistent hashing stable per key and
 * moving only the keys of an instance that leaves, and no pick at all when
 * no candidate may be picked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "balance/balance.h"

static const tt_balance_ops *const all_ops[] = {&tt_balance_roundrobin, &tt_balance_random,
                                                &tt_balance_p2c, &tt_balance_hash};

/* n candidates with the given weights, all ok, nothing in flight. */
static void
make_cands(tt_cand *c, size_t n, const uint32_t *weights)
{
    for (size_t i = 0; i < n; i++) {
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.1:%zu", 9000 + i);
        c[i].weight = weights != NULL ? weights[i] : 1;
        c[i].inflight = 0;
        c[i].id_hash = tt_hash64(addr, strlen(addr), 0);
        c[i].ok = 1;
    }
}

static void
test_roundrobin_weights(void **state)
{
    (void)state;
    static const uint32_t w[] = {1, 2, 3, 4};
    tt_cand c[4];
    make_cands(c, 4, w);
    uint64_t st = 12345;
    size_t count[4] = {0};
    /* Round robin is exact: every full turn of 10 picks gives each
     * candidate exactly its weight. */
    for (int i = 0; i < 1000; i++) {
        int k = tt_balance_roundrobin.pick(c, 4, &st, NULL, 0);
        assert_in_range(k, 0, 3);
        count[k]++;
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(count[i], 100 * w[i]);
    }
    /* Only the ok ones share the picks, still by weight. */
    c[3].ok = 0;
    memset(count, 0, sizeof count);
    for (int i = 0; i < 600; i++) {
        count[tt_balance_roundrobin.pick(c, 4, &st, NULL, 0)]++;
    }
    assert_int_equal(count[0], 100);
    assert_int_equal(count[1], 200);
    assert_int_equal(count[2], 300);
    assert_int_equal(count[3], 0);
}

static void
test_roundrobin_turns(void **state)
{
    (void)state;
    /* Equal weights: strictly in turn. */
    tt_cand c[3];
    make_cands(c, 3, NULL);
    uint64_t st = 0;
    int prev = tt_balance_roundrobin.pick(c, 3, &st, NULL, 0);
    for (int i = 0; i < 30; i++) {
        int k = tt_balance_roundrobin.pick(c, 3, &st, NULL, 0);
        assert_int_equal(k, (prev + 1) % 3);
        prev = k;
    }
}

static void
test_random_proportional(void **state)
{
    (void)state;
    static const uint32_t w[] = {1, 3, 6};
    tt_cand c[3];
    make_cands(c, 3, w);
    uint64_t st = 0x1234567887654321ull;
    size_t count[3] = {0};
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        int k = tt_balance_random.pick(c, 3, &st, NULL, 0);
        assert_in_range(k, 0, 2);
        count[k]++;
    }
    /* Expected 10%, 30%, 60%; a fixed seed makes this deterministic, and
     * +-2 points is far outside any sane generator's noise at n=100000. */
    for (int i = 0; i < 3; i++) {
        double share = (double)count[i] / n;
        double want = w[i] / 10.0;
        if (share < want - 0.02 || share > want + 0.02) {
            fail_msg("candidate %d got %.3f of the picks, want %.2f", i, share, want);
        }
    }
    /* A candidate that is not ok never comes up. */
    c[2].ok = 0;
    for (int i = 0; i < 10000; i++) {
        assert_int_not_equal(tt_balance_random.pick(c, 3, &st, NULL, 0), 2);
    }
}

static void
test_p2c_prefers_fewer_inflight(void **state)
{
    (void)state;
    tt_cand c[4];
    make_cands(c, 4, NULL);
    c[0].inflight = 50;
    c[1].inflight = 50;
    c[2].inflight = 0; /* the idle one */
    c[3].inflight = 50;
    uint64_t st = 42;
    size_t count[4] = {0};
    const int n = 40000;
    for (int i = 0; i < n; i++) {
        count[tt_balance_p2c.pick(c, 4, &st, NULL, 0)]++;
    }
    /* The idle candidate wins whenever it is one of the two (different)
     * choices: 1 - (3/4)(2/3) = 1/2 of the picks, 1/6 each for the others. */
    double idle = (double)count[2] / n;
    if (idle < 0.46 || idle > 0.54) {
        fail_msg("the idle candidate got %.3f of the picks, want about 0.5", idle);
    }
    for (int i = 0; i < 4; i++) {
        if (i != 2) {
            assert_true(count[i] < count[2]);
        }
    }
    /* With two candidates the less loaded one always wins. */
    tt_cand two[2];
    make_cands(two, 2, NULL);
    two[0].inflight = 3;
    two[1].inflight = 2;
    size_t wins = 0;
    for (int i = 0; i < 1000; i++) {
        int k = tt_balance_p2c.pick(two, 2, &st, NULL, 0);
        wins += k == 1;
    }
    /* The two choices differ, so the less loaded one always wins. */
    assert_int_equal(wins, 1000);
    /* Load counts per unit of weight: 4 calls on weight 4 beat 2 on 1. */
    two[0].inflight = 4;
    two[0].weight = 4;
    two[1].inflight = 2;
    two[1].weight = 1;
    size_t heavy = 0;
    for (int i = 0; i < 1000; i++) {
        heavy += tt_balance_p2c.pick(two, 2, &st, NULL, 0) == 0;
    }
    assert_int_equal(heavy, 1000);
    /* The most loaded of several never wins, and one not ok never comes up. */
    c[0].inflight = 1;
    c[1].inflight = 2;
    c[2].inflight = 64; /* say, stuck */
    c[3].ok = 0;
    for (int i = 0; i < 10000; i++) {
        int k = tt_balance_p2c.pick(c, 4, &st, NULL, 0);
        assert_true(k == 0 || k == 1);
    }
    /* One candidate left: it. */
    c[0].ok = 0;
    c[1].ok = 0;
    assert_int_equal(tt_balance_p2c.pick(c, 4, &st, NULL, 0), 2);
}

static void
test_hash_stable_per_key(void **state)
{
    (void)state;
    tt_cand c[5];
    make_cands(c, 5, NULL);
    uint64_t st = 1;
    uint64_t st2 = 999; /* state must not matter to hashing */
    size_t count[5] = {0};
    for (int i = 0; i < 2000; i++) {
        char key[32];
        snprintf(key, sizeof key, "user-%d", i);
        int a = tt_balance_hash.pick(c, 5, &st, key, strlen(key));
        int b = tt_balance_hash.pick(c, 5, &st2, key, strlen(key));
        assert_in_range(a, 0, 4);
        assert_int_equal(a, b);
        count[a]++;
    }
    /* Keys spread over every instance (2000 keys, 400 expected each). */
    for (int i = 0; i < 5; i++) {
        assert_true(count[i] > 250 && count[i] < 550);
    }
    /* The same key with a different candidate order maps to the same
     * instance: the choice follows identity, not position. */
    tt_cand rev[5];
    for (int i = 0; i < 5; i++) {
        rev[i] = c[4 - i];
    }
    for (int i = 0; i < 200; i++) {
        char key[32];
        snprintf(key, sizeof key, "order-%d", i);
        int a = tt_balance_hash.pick(c, 5, &st, key, strlen(key));
        int b = tt_balance_hash.pick(rev, 5, &st, key, strlen(key));
        assert_int_equal(a, 4 - b);
    }
}

static void
test_hash_moves_only_leavers_keys(void **state)
{
    (void)state;
    tt_cand c[5];
    make_cands(c, 5, NULL);
    uint64_t st = 0;
    enum { K = 3000 };
    static int before[K];
    for (int i = 0; i < K; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        before[i] = tt_balance_hash.pick(c, 5, &st, key, strlen(key));
    }
    /* Instance 2 leaves (set aside or removed): only its keys move. */
    c[2].ok = 0;
    int moved = 0;
    for (int i = 0; i < K; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        int now = tt_balance_hash.pick(c, 5, &st, key, strlen(key));
        assert_int_not_equal(now, 2);
        if (before[i] == 2) {
            moved++;
        } else {
            assert_int_equal(now, before[i]);
        }
    }
    assert_true(moved > 0);
    /* It comes back: every key returns where it was. */
    c[2].ok = 1;
    for (int i = 0; i < K; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(tt_balance_hash.pick(c, 5, &st, key, strlen(key)), before[i]);
    }
    /* Removed from the array altogether (the discovery client compacts
     * its set): still only the leaver's keys move. */
    tt_cand fewer[4] = {c[0], c[1], c[3], c[4]};
    static const int map[] = {0, 1, -1, 2, 3};
    for (int i = 0; i < K; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        int now = tt_balance_hash.pick(fewer, 4, &st, key, strlen(key));
        if (before[i] != 2) {
            assert_int_equal(now, map[before[i]]);
        }
    }
}

static void
test_hash_weights(void **state)
{
    (void)state;
    static const uint32_t w[] = {1, 3};
    tt_cand c[2];
    make_cands(c, 2, w);
    uint64_t st = 0;
    size_t heavy = 0;
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "w%d", i);
        heavy += tt_balance_hash.pick(c, 2, &st, key, strlen(key)) == 1;
    }
    double share = (double)heavy / n;
    if (share < 0.70 || share > 0.80) {
        fail_msg("weight 3 of 4 got %.3f of the keys, want about 0.75", share);
    }
}

static void
test_no_pick_when_none_ok(void **state)
{
    (void)state;
    tt_cand c[3];
    make_cands(c, 3, NULL);
    for (int i = 0; i < 3; i++) {
        c[i].ok = 0;
    }
    for (size_t k = 0; k < sizeof all_ops / sizeof all_ops[0]; k++) {
        uint64_t st = 7;
        assert_int_equal(all_ops[k]->pick(c, 3, &st, "key", 3), -1);
        assert_int_equal(all_ops[k]->pick(c, 0, &st, "key", 3), -1);
        assert_int_equal(all_ops[k]->pick(NULL, 0, &st, NULL, 0), -1);
    }
    /* A single ok candidate is the only answer, whatever the policy. */
    c[1].ok = 1;
    c[1].inflight = 1000;
    for (size_t k = 0; k < sizeof all_ops / sizeof all_ops[0]; k++) {
        uint64_t st = 7;
        for (int i = 0; i < 50; i++) {
            char key[16];
            snprintf(key, sizeof key, "%d", i);
            assert_int_equal(all_ops[k]->pick(c, 3, &st, key, strlen(key)), 1);
        }
    }
}

static void
test_names(void **state)
{
    (void)state;
    assert_string_equal(tt_balance_roundrobin.name, "round_robin");
    assert_string_equal(tt_balance_random.name, "random");
    assert_string_equal(tt_balance_p2c.name, "p2c");
    assert_string_equal(tt_balance_hash.name, "hash");
    /* The hash depends on its input and seed only (same across processes). */
    assert_true(tt_hash64("a", 1, 0) != tt_hash64("b", 1, 0));
    assert_true(tt_hash64("a", 1, 0) != tt_hash64("a", 1, 1));
    assert_true(tt_hash64("abc", 3, 5) == tt_hash64("abc", 3, 5));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundrobin_weights),
        cmocka_unit_test(test_roundrobin_turns),
        cmocka_unit_test(test_random_proportional),
        cmocka_unit_test(test_p2c_prefers_fewer_inflight),
        cmocka_unit_test(test_hash_stable_per_key),
        cmocka_unit_test(test_hash_moves_only_leavers_keys),
        cmocka_unit_test(test_hash_weights),
        cmocka_unit_test(test_no_pick_when_none_ok),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests_name("balance", tests, NULL, NULL);
}
