/*
 * loop_epoll.c - tt_loop on Linux epoll with an eventfd for wake-ups.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "net/loop.h"
#include "net/sock.h"

static void
run_posted(tt_io *io, uint32_t events)
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
    tether_err rc = tt_loop_add(l, &l->wake_io, EPOLLIN);
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
    pthread_mutex_destroy(&l->mu);
}

tether_err
tt_loop_add(tt_loop *l, tt_io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) != 0) {
        return tt_err_errno(errno);
    }
    io->events = events;
    return TETHER_OK;
}

tether_err
tt_loop_mod(tt_loop *l, tt_io *io, uint32_t events)
{
    if (io->events == events) {
        return TETHER_OK;
    }
    struct epoll_event ev = {.events = events, .data.ptr = io};
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
        uint64_t one = 1;
        ssize_t r = write(l->wakefd, &one, sizeof one);
        (void)r;
    }
}

int
tt_loop_poll(tt_loop *l, int timeout_ms)
{
    struct epoll_event evs[128];
    int n = epoll_wait(l->epfd, evs, 128, timeout_ms);
    if (n < 0) {
        return 0;
    }
    for (int i = 0; i < n; i++) {
        tt_io *io = evs[i].data.ptr;
        io->cb(io, evs[i].events);
    }
    return n;
}
