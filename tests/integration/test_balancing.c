/*
 * test_balancing.c - the balancing policies end to end: three real servers
 * registered in a local: registry with weights 1, 2 and 3, a client by
 * service name, and the answers counted by the instance that gave them
 * (Test.Whoami).  Round robin and weighted random share calls by weight;
 * the hash policy sends every call of one key to one instance, and spreads
 * keys by weight.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

enum { NSRV = 3 };
static h_proc srv[NSRV];
static tether_registry *reg;
static tether_registration *regs[NSRV];
static char dir[256];

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "%s/tt-bal-XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    char url[300];
    snprintf(url, sizeof url, "local:%s", dir);
    if (tether_registry_open(url, &reg) != TETHER_OK) {
        return -1;
    }
    for (int i = 0; i < NSRV; i++) {
        h_spawn_server(&srv[i], NULL);
        tether_instance inst = {.service = "bal", .address = srv[i].addr[0],
                                .weight = (uint32_t)(i + 1)};
        if (tether_registry_register(reg, &inst, &regs[i]) != TETHER_OK) {
            return -1;
        }
    }
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    int rc = 0;
    for (int i = 0; i < NSRV; i++) {
        if (regs[i] != NULL) {
            tether_registration_deregister(regs[i]);
            regs[i] = NULL;
        }
        rc |= h_stop(&srv[i]);
    }
    tether_registry_close(reg);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    rc |= system(cmd);
    return rc;
}

/* Which server (0..2) answered a Test.Whoami call with key (NULL: none). */
static int
who(tether_client *c, const char *key)
{
    uint8_t *out = NULL;
    size_t len = 0;
    tether_call_opts o = {.timeout_ms = H_CALL_MS, .key = key};
    H_OK(tether_client_call_raw(c, "Test.Whoami", "", 0, &out, &len, &o, NULL));
    int found = -1;
    for (int i = 0; i < NSRV; i++) {
        if (len == strlen(srv[i].addr[0]) && memcmp(out, srv[i].addr[0], len) == 0) {
            found = i;
        }
    }
    tether_free(out);
    assert_true(found >= 0);
    return found;
}

/* Calls until every instance has answered once (keys vary, for the hash
 * policy).  Calls go to connected instances only, so that a slow connect
 * delays nobody; on a loaded machine a connect may even time out and wait
 * for its retry.  The counts below start once all three serve. */
static void
warm_up(tether_client *c)
{
    int seen[NSRV] = {0};
    char key[32];
    uint64_t end = h_now_ms() + H_TIMEOUT_MS;
    for (int i = 0; !(seen[0] && seen[1] && seen[2]); i++) {
        assert_true(h_now_ms() < end);
        snprintf(key, sizeof key, "warm-%d", i);
        seen[who(c, key)] = 1;
    }
}

static tether_client *
client(tether_balance b)
{
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.balance = b;
    char url[300];
    snprintf(url, sizeof url, "local:%s", dir);
    tether_client *c = NULL;
    H_OK(h_client_by_name(url, "bal", &cfg, &c));
    return c;
}

/* Round robin honours weights exactly over whole rounds (1:2:3) once every
 * instance is connected. */
static void
test_round_robin_by_weight(void **state)
{
    (void)state;
    tether_client *c = client(TETHER_BALANCE_ROUND_ROBIN);
    warm_up(c);
    int n[NSRV] = {0};
    for (int i = 0; i < 600; i++) {
        n[who(c, NULL)]++;
    }
    print_message("round robin, weights 1:2:3 over 600 calls: %d %d %d\n", n[0], n[1], n[2]);
    for (int i = 0; i < NSRV; i++) {
        int want = 100 * (i + 1);
        assert_true(n[i] >= want - 6 && n[i] <= want + 6);
    }
    tether_client_destroy(c);
}

/* Weighted random: 3000 calls land by weight (wide bounds: a 1-in-a-
 * million miss at these counts). */
static void
test_random_by_weight(void **state)
{
    (void)state;
    tether_client *c = client(TETHER_BALANCE_RANDOM);
    warm_up(c);
    int n[NSRV] = {0};
    for (int i = 0; i < 3000; i++) {
        n[who(c, NULL)]++;
    }
    print_message("weighted random, weights 1:2:3 over 3000 calls: %d %d %d\n", n[0], n[1], n[2]);
    for (int i = 0; i < NSRV; i++) {
        int want = 500 * (i + 1);
        assert_true(n[i] > want * 7 / 10 && n[i] < want * 13 / 10);
    }
    tether_client_destroy(c);
}

/* The hash policy: one key, one instance, every time; 600 keys spread by
 * weight.  Sync and async calls agree. */
static void
test_hash_by_key(void **state)
{
    (void)state;
    tether_client *c = client(TETHER_BALANCE_HASH);
    warm_up(c);
    int n[NSRV] = {0};
    char key[32];
    for (int k = 0; k < 600; k++) {
        snprintf(key, sizeof key, "user-%d", k);
        int first = who(c, key);
        for (int again = 0; again < 3; again++) {
            assert_int_equal(who(c, key), first);
        }
        n[first]++;
    }
    print_message("hash by key, weights 1:2:3 over 600 keys: %d %d %d\n", n[0], n[1], n[2]);
    for (int i = 0; i < NSRV; i++) {
        int want = 100 * (i + 1);
        assert_true(n[i] > want / 2 && n[i] < want * 3 / 2);
    }
    assert_true(n[0] < n[2]);
    tether_client_destroy(c);
}

int
main(int argc, char **argv)
{
    h_child_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_by_weight),
        cmocka_unit_test(test_random_by_weight),
        cmocka_unit_test(test_hash_by_key),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
