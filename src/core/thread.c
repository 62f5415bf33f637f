/*
 * thread.c - the one way the library starts a thread.
 */
#include <signal.h>
#include <time.h>

#include "core/thread.h"

int
tt_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    /* A new thread inherits its creator's mask, and the creator may be an
     * application thread that takes signals: block everything around
     * pthread_create() and restore the creator's mask afterwards. */
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(thread, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

void
tt_cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}
