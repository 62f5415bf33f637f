/*
 * loop_epoll.c - tt_loop on Linux epoll with an eventfd for wake-ups and a
 * binary heap of timers.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/clock.h"
#include "net/loop.h"
#include "net/sock.h"

static uint32_t
to_epoll(unsigned ev)
{
    uint32_t e = 0;
    if (ev & TT_EV_READ) {
        e |= EPOLLIN;
    }
    if (ev & TT_EV_WRITE) {
        e |= EPOLLOUT;
    }
    if (ev & TT_EV_EXCLUSIVE) {
        e |= EPOLLEXCLUSIVE;
    }
    return e;
}

static unsigned
from_epoll(uint32_t e)
{
    unsigned ev = 0;
    if (e & (EPOLLIN | EPOLLRDHUP)) {
        ev |= TT_EV_READ;
    }
    if (e & EPOLLOUT) {
        ev |= TT_EV_WRITE;
    }
    if (e & (EPOLLHUP | EPOLLERR)) {
        ev |= TT_EV_ERROR;
    }
    return ev;
}

static void
wake(tt_loop *l)
{
    uint64_t one = 1;
    ssize_t r = write(l->wakefd, &one, sizeof one);
    (void)r;
}

static void
run_posted(tt_io *io, unsigned events)
{
    tt_loop *l = (tt_loop *)((char *)io - offsetof(tt_loop, wake_io));
    (void)events;
    uint64_t v;
    ssize_t r = read(l->wakefd, &v, sizeof v);
    (void)r;
    pthread_mutex_lock(&l->mu);
    tt_task *t = l->head;
    l->head = l->tail = NULL;
    l->posted = 0;
    pthread_mutex_unlock(&l->mu);
    while (t != NULL) {
        tt_task *next = t->next;
        t->fn(t);
        t = next;
    }
}

tether_err
tt_loop_init(tt_loop *l)
{
    l->head = l->tail = NULL;
    l->posted = 0;
    l->owned = 0;
    l->timers = (tt_heap){0};
    atomic_init(&l->next_due, UINT64_MAX);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        return tt_err_errno(errno);
    }
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wakefd < 0) {
        int e = errno;
        close(l->epfd);
        return tt_err_errno(e);
    }
    pthread_mutex_init(&l->mu, NULL);
    l->wake_io.fd = l->wakefd;
    l->wake_io.cb = run_posted;
    tether_err rc = tt_loop_add(l, &l->wake_io, TT_EV_READ);
    if (rc != TETHER_OK) {
        close(l->wakefd);
        close(l->epfd);
        pthread_mutex_destroy(&l->mu);
    }
    return rc;
}

void
tt_loop_fini(tt_loop *l)
{
    close(l->wakefd);
    close(l->epfd);
    tt_heap_fini(&l->timers);
    pthread_mutex_destroy(&l->mu);
}

tether_err
tt_loop_add(tt_loop *l, tt_io *io, unsigned events)
{
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) != 0) {
        return tt_err_errno(errno);
    }
    io->events = events;
    return TETHER_OK;
}

tether_err
tt_loop_mod(tt_loop *l, tt_io *io, unsigned events)
{
    if (io->events == events) {
        return TETHER_OK;
    }
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) != 0) {
        return tt_err_errno(errno);
    }
    io->events = events;
    return TETHER_OK;
}

void
tt_loop_del(tt_loop *l, tt_io *io)
{
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->events = 0;
}

void
tt_loop_post(tt_loop *l, tt_task *t)
{
    t->next = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->tail != NULL) {
        l->tail->next = t;
    } else {
        l->head = t;
    }
    l->tail = t;
    /* One eventfd write per batch: later posts ride on the pending wake. */
    int need_wake = !l->posted;
    l->posted = 1;
    pthread_mutex_unlock(&l->mu);
    if (need_wake) {
        wake(l);
    }
}

int
tt_loop_on_thread(const tt_loop *l)
{
    return l->owned && pthread_equal(l->owner, pthread_self());
}

/* Publish the earliest timer's time (under mu). */
static void
note_due(tt_loop *l)
{
    tt_heap_node *top = tt_heap_top(&l->timers);
    atomic_store_explicit(&l->next_due, top != NULL ? top->key : UINT64_MAX,
                          memory_order_release);
}

tether_err
tt_timer_arm(tt_loop *l, tt_timer *t, uint64_t when_ns)
{
    tether_err rc = TETHER_OK;
    pthread_mutex_lock(&l->mu);
    tt_heap_node *top = tt_heap_top(&l->timers);
    uint64_t was = top != NULL ? top->key : UINT64_MAX;
    if (tt_heap_linked(&t->node)) {
        tt_heap_update(&l->timers, &t->node, when_ns);
    } else {
        rc = tt_heap_push(&l->timers, &t->node, when_ns);
    }
    note_due(l);
    /* The poller sleeps until the earliest timer it knew of: a new
     * earliest one set from elsewhere must cut that sleep short. */
    int need_wake = rc == TETHER_OK && when_ns < was && !tt_loop_on_thread(l) && !l->posted;
    if (need_wake) {
        l->posted = 1;
    }
    pthread_mutex_unlock(&l->mu);
    if (need_wake) {
        wake(l);
    }
    return rc;
}

void
tt_timer_cancel(tt_loop *l, tt_timer *t)
{
    pthread_mutex_lock(&l->mu);
    tt_heap_remove(&l->timers, &t->node);
    note_due(l);
    pthread_mutex_unlock(&l->mu);
}

/* Milliseconds until the earliest timer (rounded up), bounded by limit
 * (-1: no bound). */
static int
timer_wait_ms(tt_loop *l, int limit)
{
    uint64_t when = atomic_load_explicit(&l->next_due, memory_order_acquire);
    if (when == UINT64_MAX) {
        return limit;
    }
    uint64_t now = tt_now_ns();
    if (when <= now) {
        return 0;
    }
    uint64_t ms = (when - now + 999999) / 1000000;
    if (limit >= 0 && ms > (uint64_t)limit) {
        return limit;
    }
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* Fire every timer that is due.  Each is disarmed before its callback,
 * which may arm it again; one that is re-armed for "now" waits for the next
 * round, so a callback cannot keep the loop here forever. */
static void
run_timers(tt_loop *l)
{
    if (atomic_load_explicit(&l->next_due, memory_order_acquire) == UINT64_MAX) {
        return; /* no timer at all: not even the clock is read */
    }
    uint64_t now = tt_now_ns();
    for (int i = 0; i < 1024; i++) {
        if (atomic_load_explicit(&l->next_due, memory_order_acquire) > now) {
            return;
        }
        pthread_mutex_lock(&l->mu);
        tt_heap_node *top = tt_heap_top(&l->timers);
        if (top == NULL || top->key > now) {
            pthread_mutex_unlock(&l->mu);
            return;
        }
        tt_heap_remove(&l->timers, top);
        note_due(l);
        pthread_mutex_unlock(&l->mu);
        tt_timer *t = (tt_timer *)((char *)top - offsetof(tt_timer, node));
        t->fn(t);
    }
}

int
tt_loop_poll(tt_loop *l, int timeout_ms)
{
    if (!l->owned) {
        l->owner = pthread_self();
        l->owned = 1;
    }
    struct epoll_event evs[128];
    int n = epoll_wait(l->epfd, evs, 128, timer_wait_ms(l, timeout_ms));
    if (n < 0) {
        n = 0;
    }
    for (int i = 0; i < n; i++) {
        tt_io *io = evs[i].data.ptr;
        io->cb(io, from_epoll(evs[i].events));
    }
    run_timers(l);
    return n;
}
