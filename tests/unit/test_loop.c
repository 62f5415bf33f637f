/*
 * test_loop.c - the event loop and what it is built from: the binary
 * heap (random insert/remove/update against a sorted model), the buffer
 * (reserve, compaction, consume), the loop's timers (order, re-arm,
 * cancel, arming from another thread wakes a sleeping poll), posted tasks,
 * descriptor events with our own flags, and the background connect.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/heap.h"
#include "net/loop.h"
#include "net/loop_pool.h"
#include "net/sock.h"

/* ---- heap ---- */

typedef struct item {
    tt_heap_node node;
    uint64_t key;
} item;

static int
heap_ok(const tt_heap *h)
{
    for (size_t i = 0; i < h->n; i++) {
        if (h->v[i]->idx != i) {
            return 0;
        }
        if (i > 0 && h->v[(i - 1) / 2]->key > h->v[i]->key) {
            return 0;
        }
    }
    return 1;
}

static void
test_heap_model(void **state)
{
    (void)state;
    enum { N = 500 };
    static item items[N];
    tt_heap h = {0};
    srand(7);
    for (int i = 0; i < N; i++) {
        tt_heap_node_init(&items[i].node);
    }
    for (int round = 0; round < 20000; round++) {
        item *it = &items[rand() % N];
        int op = rand() % 3;
        if (!tt_heap_linked(&it->node)) {
            it->key = (uint64_t)(rand() % 1000);
            assert_int_equal(tt_heap_push(&h, &it->node, it->key), TETHER_OK);
        } else if (op == 0) {
            tt_heap_remove(&h, &it->node);
            assert_false(tt_heap_linked(&it->node));
        } else {
            it->key = (uint64_t)(rand() % 1000);
            tt_heap_update(&h, &it->node, it->key);
        }
        assert_true(heap_ok(&h));
    }
    /* Draining gives the keys in order. */
    uint64_t last = 0;
    tt_heap_node *top;
    while ((top = tt_heap_top(&h)) != NULL) {
        assert_true(top->key >= last);
        last = top->key;
        tt_heap_remove(&h, top);
    }
    tt_heap_remove(&h, &items[0].node); /* not linked: a no-op */
    tt_heap_fini(&h);
}

/* ---- buffer ---- */

static void
test_buf(void **state)
{
    (void)state;
    tt_buf b = {0};
    assert_int_equal(tt_buf_append(&b, "hello", 5), TETHER_OK);
    assert_int_equal(tt_buf_size(&b), 5);
    tt_buf_consume(&b, 2);
    assert_memory_equal(tt_buf_head(&b), "llo", 3);
    /* Room that compaction can give moves the held bytes to the front. */
    size_t cap = b.cap;
    assert_int_equal(tt_buf_reserve(&b, cap - 3), TETHER_OK);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.cap, cap);
    assert_memory_equal(tt_buf_head(&b), "llo", 3);
    /* More than that grows it, keeping the bytes. */
    assert_int_equal(tt_buf_reserve(&b, 10 * cap), TETHER_OK);
    assert_true(b.cap - b.len >= 10 * cap);
    assert_memory_equal(tt_buf_head(&b), "llo", 3);
    tt_buf_consume(&b, 3);
    assert_int_equal(tt_buf_size(&b), 0);
    assert_int_equal(b.off, 0);
    /* An impossible size fails and leaves the buffer as it was. */
    assert_int_equal(tt_buf_reserve(&b, SIZE_MAX), TETHER_ENOMEM);
    assert_int_equal(tt_buf_append(&b, "x", 1), TETHER_OK);
    tt_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(tt_buf_size(&b), 0);
}

/* ---- loop: timers ---- */

typedef struct tmr_rec {
    tt_timer t;
    int id;
    int *log;
    int *nlog;
    tt_loop *l;
    int rearm; /* times to re-arm itself */
} tmr_rec;

static void
on_tm(tt_timer *t)
{
    tmr_rec *x = (tmr_rec *)t;
    x->log[(*x->nlog)++] = x->id;
    if (x->rearm > 0) {
        x->rearm--;
        tt_timer_arm(x->l, &x->t, tt_now_ns());
    }
}

static void
poll_until(tt_loop *l, int *nlog, int want)
{
    uint64_t end = tt_now_ns() + 10ull * 1000000000ull;
    while (*nlog < want && tt_now_ns() < end) {
        tt_loop_poll(l, 100);
    }
}

static void
test_timers_order_rearm_cancel(void **state)
{
    (void)state;
    tt_loop l;
    assert_int_equal(tt_loop_init(&l), TETHER_OK);
    int log[16], nlog = 0;
    tmr_rec t[4];
    uint64_t now = tt_now_ns();
    for (int i = 0; i < 4; i++) {
        t[i] = (tmr_rec){.id = i, .log = log, .nlog = &nlog, .l = &l};
        tt_timer_init(&t[i].t, on_tm);
    }
    /* Armed out of order; timer 2 moved later, timer 3 canceled. */
    assert_int_equal(tt_timer_arm(&l, &t[1].t, now + 2000000), TETHER_OK);
    assert_int_equal(tt_timer_arm(&l, &t[0].t, now + 1000000), TETHER_OK);
    assert_int_equal(tt_timer_arm(&l, &t[2].t, now + 500000), TETHER_OK);
    assert_int_equal(tt_timer_arm(&l, &t[3].t, now + 100000), TETHER_OK);
    assert_int_equal(tt_timer_arm(&l, &t[2].t, now + 300000000), TETHER_OK);
    tt_timer_cancel(&l, &t[3].t);
    assert_false(tt_timer_armed(&t[3].t));
    t[1].rearm = 2;
    poll_until(&l, &nlog, 5);
    assert_int_equal(nlog, 5);
    assert_int_equal(log[0], 0);
    /* 1 fires, re-arms for "now" twice (each time in a later round), and
     * 2 comes last at its moved time. */
    assert_int_equal(log[1], 1);
    assert_int_equal(log[2], 1);
    assert_int_equal(log[3], 1);
    assert_int_equal(log[4], 2);
    for (int i = 0; i < 4; i++) {
        assert_false(tt_timer_armed(&t[i].t));
    }
    tt_loop_fini(&l);
}

struct arm_from_thread {
    tt_loop *l;
    tmr_rec *t;
};

static void *
arm_later(void *arg)
{
    struct arm_from_thread *a = arg;
    struct timespec ts = {0, 50 * 1000000};
    nanosleep(&ts, NULL);
    tt_timer_arm(a->l, &a->t->t, tt_now_ns());
    return NULL;
}

/* A poll sleeping with no timer (timeout -1) wakes for a timer armed
 * from another thread. */
static void
test_timer_armed_elsewhere_wakes_poll(void **state)
{
    (void)state;
    tt_loop l;
    assert_int_equal(tt_loop_init(&l), TETHER_OK);
    int log[2], nlog = 0;
    tmr_rec t = {.id = 9, .log = log, .nlog = &nlog, .l = &l};
    tt_timer_init(&t.t, on_tm);
    struct arm_from_thread a = {&l, &t};
    pthread_t th;
    tt_loop_poll(&l, 0); /* this thread owns the loop from now on */
    assert_int_equal(pthread_create(&th, NULL, arm_later, &a), 0);
    uint64_t end = tt_now_ns() + 10ull * 1000000000ull;
    while (nlog == 0 && tt_now_ns() < end) {
        tt_loop_poll(&l, -1);
    }
    pthread_join(th, NULL);
    assert_int_equal(nlog, 1);
    assert_int_equal(log[0], 9);
    tt_loop_fini(&l);
}

/* ---- loop: tasks and descriptors ---- */

typedef struct task_rec {
    tt_task task;
    int *order;
    int *n;
    int id;
} task_rec;

static void
on_task(tt_task *t)
{
    task_rec *r = (task_rec *)t;
    r->order[(*r->n)++] = r->id;
}

typedef struct io_rec {
    tt_io io;
    unsigned seen;
    int calls;
} io_rec;

static void
on_io(tt_io *io, unsigned events)
{
    io_rec *r = (io_rec *)io;
    r->seen |= events;
    r->calls++;
}

static void
test_tasks_and_events(void **state)
{
    (void)state;
    tt_loop l;
    assert_int_equal(tt_loop_init(&l), TETHER_OK);
    int order[3], n = 0;
    task_rec r[3];
    for (int i = 0; i < 3; i++) {
        r[i] = (task_rec){.task.fn = on_task, .order = order, .n = &n, .id = i};
        tt_loop_post(&l, &r[i].task);
    }
    poll_until(&l, &n, 3);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(order[i], i); /* in posting order */
    }
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    io_rec io = {.io.fd = sv[0], .io.cb = on_io};
    assert_int_equal(tt_loop_add(&l, &io.io, TT_EV_WRITE), TETHER_OK);
    tt_loop_poll(&l, 1000);
    assert_true(io.seen & TT_EV_WRITE);
    assert_false(io.seen & TT_EV_READ);
    assert_int_equal(tt_loop_mod(&l, &io.io, TT_EV_READ), TETHER_OK);
    io.seen = 0;
    assert_int_equal(write(sv[1], "x", 1), 1);
    tt_loop_poll(&l, 1000);
    assert_true(io.seen & TT_EV_READ);
    /* The peer hangs up: readable (end of stream), perhaps with an error. */
    close(sv[1]);
    io.seen = 0;
    tt_loop_poll(&l, 1000);
    assert_true(io.seen & (TT_EV_READ | TT_EV_ERROR));
    tt_loop_del(&l, &io.io);
    io.calls = 0;
    tt_loop_poll(&l, 0);
    assert_int_equal(io.calls, 0);
    close(sv[0]);
    tt_loop_fini(&l);
}

/* ---- sockets: background connect ---- */

static void
test_connect_start(void **state)
{
    (void)state;
    tt_addr a;
    assert_int_equal(tt_addr_parse("127.0.0.1:0", &a), TETHER_OK);
    int lfd;
    assert_int_equal(tt_sock_listen(&a, 16, &lfd), TETHER_OK);
    tt_addr bound;
    assert_int_equal(tt_sock_bound(lfd, &bound), TETHER_OK);
    int fd, pending;
    assert_int_equal(tt_sock_connect_start(&bound, &fd, &pending), TETHER_OK);
    tt_loop l;
    assert_int_equal(tt_loop_init(&l), TETHER_OK);
    io_rec io = {.io.fd = fd, .io.cb = on_io};
    assert_int_equal(tt_loop_add(&l, &io.io, TT_EV_WRITE), TETHER_OK);
    for (int i = 0; i < 100 && !(io.seen & TT_EV_WRITE); i++) {
        tt_loop_poll(&l, 100);
    }
    assert_true(io.seen & TT_EV_WRITE);
    assert_int_equal(tt_sock_connect_result(fd), TETHER_OK);
    tt_loop_del(&l, &io.io);
    close(fd);
    /* A closed port is refused: at once or once the connect ends. */
    close(lfd);
    assert_int_equal(tt_sock_connect_start(&bound, &fd, &pending), TETHER_OK);
    if (pending) {
        io = (io_rec){.io.fd = fd, .io.cb = on_io};
        assert_int_equal(tt_loop_add(&l, &io.io, TT_EV_WRITE), TETHER_OK);
        for (int i = 0; i < 100 && io.seen == 0; i++) {
            tt_loop_poll(&l, 100);
        }
        assert_int_equal(tt_sock_connect_result(fd), TETHER_ECONNREFUSED);
        tt_loop_del(&l, &io.io);
    }
    close(fd);
    tt_loop_fini(&l);
}

/* ---- the shared pool ---- */

static void
test_pool(void **state)
{
    (void)state;
    assert_int_equal(tt_loop_pool_set_size(TT_LOOP_POOL_MAX + 1), TETHER_EINVAL);
    assert_int_equal(tt_loop_pool_set_size(3), TETHER_OK);
    assert_int_equal(tt_loop_pool_size(), 3);
    tt_loop *l[6];
    for (int i = 0; i < 6; i++) {
        assert_int_equal(tt_loop_pool_acquire(&l[i]), TETHER_OK);
    }
    /* Users spread over the three loops: two each. */
    for (int i = 0; i < 6; i++) {
        int same = 0;
        for (int j = 0; j < 6; j++) {
            same += l[j] == l[i];
        }
        assert_int_equal(same, 2);
    }
    assert_false(tt_loop_pool_on_thread());
    for (int i = 0; i < 6; i++) {
        tt_loop_pool_release(l[i]);
    }
    assert_int_equal(tt_loop_pool_set_size(0), TETHER_OK);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heap_model),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_timers_order_rearm_cancel),
        cmocka_unit_test(test_timer_armed_elsewhere_wakes_poll),
        cmocka_unit_test(test_tasks_and_events),
        cmocka_unit_test(test_connect_start),
        cmocka_unit_test(test_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
