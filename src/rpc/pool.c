/*
 * pool.c - worker threads fed from one FIFO queue under a mutex.  Blocking
 * handlers are rare and slow by definition, so a simple queue is enough.
 */
#include "rpc/pool.h"

#include <pthread.h>

#include "core/alloc.h"
#include "net/sock.h"

struct tt_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tt_task *head, *tail;
    int stop;
    int n;
    pthread_t *threads;
};

static void *
worker_main(void *arg)
{
    tt_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->head == NULL && !p->stop) {
            pthread_cond_wait(&p->cv, &p->mu);
        }
        tt_task *t = p->head;
        if (t == NULL) {
            break; /* stopping and nothing left */
        }
        p->head = t->next;
        if (p->head == NULL) {
            p->tail = NULL;
        }
        pthread_mutex_unlock(&p->mu);
        t->fn(t);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

tether_err
tt_pool_create(int n, tt_pool **out)
{
    tt_pool *p = tt_calloc(1, sizeof *p);
    if (p == NULL) {
        return TETHER_ENOMEM;
    }
    p->threads = tt_calloc((size_t)n, sizeof *p->threads);
    if (p->threads == NULL) {
        tt_free(p);
        return TETHER_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 0; i < n; i++) {
        int e = pthread_create(&p->threads[i], NULL, worker_main, p);
        if (e != 0) {
            p->n = i;
            tt_pool_destroy(p);
            return tt_err_errno(e);
        }
    }
    p->n = n;
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
    }
    p->tail = t;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void
tt_pool_destroy(tt_pool *p)
{
    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++) {
        pthread_join(p->threads[i], NULL);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    tt_free(p->threads);
    tt_free(p);
}
