/*
 * loop_pool.c - the shared client I/O loops.
 *
 * The pool is a process-wide object because its point is to be shared: a
 * program with a hundred clients (or one client by name over a thousand
 * instances) still runs a handful of I/O threads.  It is reference-counted
 * by its users rather than living forever, so that a program that destroys
 * its last client has no library thread left (and leak checkers see
 * everything freed).
 */
#include <stdatomic.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/thread.h"
#include "net/loop_pool.h"
#include "net/sock.h"

typedef struct pool_thread {
    tt_loop loop;
    pthread_t tid;
    _Atomic int users; /* changed under pool_mu; read without it by tt_loop_pool_alone */
    int stop; /* set by the stop task, read by the thread */
    tt_task t_stop;
} pool_thread;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pool_thread *pool_threads;
static unsigned pool_n;     /* threads running now */
static unsigned pool_users; /* acquires minus releases */
static unsigned pool_want;  /* size asked for (0: default) */
static TT_THREAD_LOCAL int on_pool_thread;

static void
on_stop(tt_task *t)
{
    pool_thread *pt = (pool_thread *)((char *)t - offsetof(pool_thread, t_stop));
    pt->stop = 1;
}

static void *
pool_main(void *arg)
{
    pool_thread *pt = arg;
    on_pool_thread = 1;
    while (!pt->stop) {
        tt_loop_poll(&pt->loop, -1);
    }
    return NULL;
}

unsigned
tt_loop_pool_size(void)
{
    pthread_mutex_lock(&pool_mu);
    unsigned n = pool_want;
    pthread_mutex_unlock(&pool_mu);
    if (n == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores < 1 ? 1 : (unsigned)cores;
        if (n > TT_LOOP_POOL_MAX_DEFAULT) {
            n = TT_LOOP_POOL_MAX_DEFAULT;
        }
    }
    return n;
}

tether_err
tt_loop_pool_set_size(unsigned n)
{
    if (n > TT_LOOP_POOL_MAX) {
        return TETHER_EINVAL;
    }
    pthread_mutex_lock(&pool_mu);
    pool_want = n;
    pthread_mutex_unlock(&pool_mu);
    return TETHER_OK;
}

/* Stop and join the first n threads and free the array (pool_mu held:
 * nobody can acquire meanwhile, and no pool thread takes pool_mu). */
static void
pool_stop_locked(unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        tt_loop_post(&pool_threads[i].loop, &pool_threads[i].t_stop);
    }
    for (unsigned i = 0; i < n; i++) {
        pthread_join(pool_threads[i].tid, NULL);
        tt_loop_fini(&pool_threads[i].loop);
    }
    tt_free(pool_threads);
    pool_threads = NULL;
    pool_n = 0;
}

static tether_err
pool_start_locked(unsigned n)
{
    pool_threads = tt_calloc(n, sizeof *pool_threads);
    if (pool_threads == NULL) {
        return TETHER_ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        pool_thread *pt = &pool_threads[i];
        pt->t_stop.fn = on_stop;
        tether_err rc = tt_loop_init(&pt->loop);
        if (rc == TETHER_OK) {
            int e = tt_thread_start(&pt->tid, pool_main, pt);
            if (e != 0) {
                tt_loop_fini(&pt->loop);
                rc = tt_err_errno(e);
            }
        }
        if (rc != TETHER_OK) {
            pool_stop_locked(i);
            return rc;
        }
    }
    pool_n = n;
    return TETHER_OK;
}

tether_err
tt_loop_pool_acquire(tt_loop **out)
{
    unsigned n = tt_loop_pool_size();
    pthread_mutex_lock(&pool_mu);
    if (pool_n == 0) {
        tether_err rc = pool_start_locked(n);
        if (rc != TETHER_OK) {
            pthread_mutex_unlock(&pool_mu);
            return rc;
        }
    }
    pool_thread *best = &pool_threads[0];
    for (unsigned i = 1; i < pool_n; i++) {
        if (pool_threads[i].users < best->users) {
            best = &pool_threads[i];
        }
    }
    best->users++;
    pool_users++;
    *out = &best->loop;
    pthread_mutex_unlock(&pool_mu);
    return TETHER_OK;
}

void
tt_loop_pool_release(tt_loop *l)
{
    if (l == NULL) {
        return;
    }
    pthread_mutex_lock(&pool_mu);
    pool_thread *pt = (pool_thread *)((char *)l - offsetof(pool_thread, loop));
    pt->users--;
    /* A pool thread cannot join itself: the last user leaving from one
     * (a client destroyed in another's callback) leaves the threads up
     * for the next user. */
    if (--pool_users == 0 && !on_pool_thread) {
        pool_stop_locked(pool_n);
    }
    pthread_mutex_unlock(&pool_mu);
}

int
tt_loop_pool_on_thread(void)
{
    return on_pool_thread;
}

int
tt_loop_pool_alone(const tt_loop *l)
{
    const pool_thread *pt = (const pool_thread *)((const char *)l - offsetof(pool_thread, loop));
    return atomic_load_explicit(&pt->users, memory_order_relaxed) <= 1;
}
