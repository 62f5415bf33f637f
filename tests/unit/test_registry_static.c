/*
 * test_registry_static.c - the static: backend and URL dispatch.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "tether/registry.h"

static void
test_list(void **state)
{
    (void)state;
    tether_registry *r = NULL;
    assert_int_equal(tether_registry_open("static: 127.0.0.2:2, [::1]:1,unix:/tmp/s,", &r),
                     TETHER_OK);
    tether_instance_list *l = NULL;
    assert_int_equal(tether_registry_list(r, "calc", &l), TETHER_OK);
    assert_int_equal(l->count, 3);
    assert_string_equal(l->items[0].address, "127.0.0.2:2");
    assert_string_equal(l->items[1].address, "[::1]:1");
    assert_string_equal(l->items[2].address, "unix:/tmp/s");
    for (size_t i = 0; i < l->count; i++) {
        assert_string_equal(l->items[i].service, "calc");
        assert_int_equal(l->items[i].weight, 1);
        assert_int_equal(l->items[i].state, TETHER_INSTANCE_SERVING);
        assert_int_equal(l->items[i].meta_count, 0);
    }
    tether_instance_list_free(l);

    /* Read-only. */
    tether_instance in = {.service = "calc", .address = "h:1"};
    tether_registration *g = NULL;
    assert_int_equal(tether_registry_register(r, &in, &g), TETHER_ENOTSUP);
    assert_null(g);
    tether_registry_close(r);
}

static void
test_bad_urls(void **state)
{
    (void)state;
    tether_registry *r = NULL;
    assert_int_equal(tether_registry_open("static:", &r), TETHER_EINVAL);
    assert_int_equal(tether_registry_open("static:,,", &r), TETHER_EINVAL);
    assert_int_equal(tether_registry_open("static:nohost", &r), TETHER_EINVAL);
    assert_int_equal(tether_registry_open("static:h:1,h:99999", &r), TETHER_EINVAL);
    assert_int_equal(tether_registry_open("bogus:h:1", &r), TETHER_ENOTSUP);
    assert_null(r);
}

struct seen {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int added;
    int other;
};

static void
on_event(tether_watch *watch, tether_watch_event ev, const tether_instance *inst, void *arg)
{
    (void)watch;
    struct seen *s = arg;
    (void)inst;
    pthread_mutex_lock(&s->mu);
    if (ev == TETHER_WATCH_ADDED) {
        s->added++;
    } else {
        s->other++;
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

static void
test_watch(void **state)
{
    (void)state;
    tether_registry *r = NULL;
    assert_int_equal(tether_registry_open("static:a:1,b:2", &r), TETHER_OK);
    struct seen s = {.added = 0};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cond, NULL);
    tether_watch *w = NULL;
    assert_int_equal(tether_registry_watch(r, "svc", on_event, &s, &w), TETHER_OK);
    /* The watch keeps the backend alive after the handle is closed. */
    tether_registry_close(r);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    pthread_mutex_lock(&s.mu);
    while (s.added < 2) {
        if (pthread_cond_timedwait(&s.cond, &s.mu, &dl) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&s.mu);
    tether_watch_stop(w);
    assert_int_equal(s.added, 2);
    assert_int_equal(s.other, 0);
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.mu);
}

static void
test_names(void **state)
{
    (void)state;
    assert_string_equal(tether_instance_state_name(TETHER_INSTANCE_SERVING), "serving");
    assert_string_equal(tether_instance_state_name(TETHER_INSTANCE_DRAINING), "draining");
    assert_string_equal(tether_watch_event_name(TETHER_WATCH_ADDED), "added");
    assert_string_equal(tether_watch_event_name(TETHER_WATCH_REMOVED), "removed");
    assert_string_equal(tether_watch_event_name(TETHER_WATCH_CHANGED), "changed");
    assert_string_equal(tether_watch_event_name((tether_watch_event)0), "unknown");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_watch),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
