/*
 * pool.c - worker threads fed from one FIFO queue under a mutex.  Blocking
 * handlers are rare and slow by definition, so a simple queue is enough.
 *
 * Stopping never waits forever for a handler that does not return: a
 * server's drain deadline must bound its shutdown.  tt_pool_destroy() waits
 * for busy workers up to a limit, then leaves them behind; the last worker
 * to leave frees the pool.
 */
#include "rpc/pool.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/thread.h"
#include "net/sock.h"

struct tt_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* work queued, or stop */
    pthread_cond_t gone; /* a worker left */
    tt_task *head, *tail;
    int stop;
    int alive;     /* workers still running */
    int abandoned; /* destroy gave up waiting: the last worker frees */
    /* When the queue's head began to wait: the submit into an empty
     * queue, or the last time a worker took a job (the watchdog). */
    uint64_t head_since_ns;
};

static void
pool_free(tt_pool *p)
{
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->gone);
    tt_free(p);
}

static void *
worker_main(void *arg)
{
    tt_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->head == NULL && !p->stop) {
            pthread_cond_wait(&p->cv, &p->mu);
        }
        /* Once stopping, queued work is dropped: the server has drained
         * what it accepted, and its handlers must not run after it is
         * destroyed. */
        tt_task *t = p->stop ? NULL : p->head;
        if (t == NULL) {
            break;
        }
        p->head = t->next;
        if (p->head == NULL) {
            p->tail = NULL;
        } else {
            p->head_since_ns = tt_now_ns();
        }
        pthread_mutex_unlock(&p->mu);
        t->fn(t);
        pthread_mutex_lock(&p->mu);
    }
    int last = --p->alive == 0;
    int abandoned = p->abandoned;
    pthread_cond_broadcast(&p->gone);
    pthread_mutex_unlock(&p->mu);
    if (last && abandoned) {
        pool_free(p);
    }
    return NULL;
}

tether_err
tt_pool_create(int n, tt_pool **out)
{
    tt_pool *p = tt_calloc(1, sizeof *p);
    if (p == NULL) {
        return TETHER_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    tt_cond_init_monotonic(&p->gone);
    for (int i = 0; i < n; i++) {
        pthread_t tid;
        pthread_mutex_lock(&p->mu);
        p->alive++;
        pthread_mutex_unlock(&p->mu);
        int e = tt_thread_start(&tid, worker_main, p);
        if (e == 0) {
            pthread_detach(tid);
        }
        if (e != 0) {
            pthread_mutex_lock(&p->mu);
            p->alive--;
            pthread_mutex_unlock(&p->mu);
            tt_pool_destroy(p, 0);
            return tt_err_errno(e);
        }
    }
    *out = p;
    return TETHER_OK;
}

void
tt_pool_submit(tt_pool *p, tt_task *t)
{
    t->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail != NULL) {
        p->tail->next = t;
    } else {
        p->head = t;
        p->head_since_ns = tt_now_ns();
    }
    p->tail = t;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

uint64_t
tt_pool_waiting_ns(tt_pool *p, uint64_t now_ns)
{
    pthread_mutex_lock(&p->mu);
    uint64_t w = p->head != NULL && now_ns > p->head_since_ns ? now_ns - p->head_since_ns : 0;
    pthread_mutex_unlock(&p->mu);
    return w;
}

void
tt_pool_destroy(tt_pool *p, uint32_t wait_ms)
{
    if (p == NULL) {
        return;
    }
    uint64_t deadline = tt_now_ns() + (uint64_t)wait_ms * 1000000ull;
    struct timespec ts = tt_timespec_ns(deadline);
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    while (p->alive > 0) {
        if (pthread_cond_timedwait(&p->gone, &p->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    if (p->alive > 0) {
        /* Handlers still running past the limit: leave them the pool. */
        p->abandoned = 1;
        pthread_mutex_unlock(&p->mu);
        return;
    }
    pthread_mutex_unlock(&p->mu);
    pool_free(p);
}
