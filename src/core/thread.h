/*
 * thread.h - starting library threads.
 */
#ifndef TT_CORE_THREAD_H
#define TT_CORE_THREAD_H

#include <pthread.h>

/*
 * tt_thread_start - start fn(arg) on a new thread with every signal
 * blocked, so no library thread ever takes a signal meant for the
 * application (SIGINT and SIGTERM reach the thread that waits for them in
 * tether_server_run(), or whatever thread the application chose).  Returns
 * pthread_create()'s result: 0 or an errno value.
 */
int tt_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

/* tt_cond_init_monotonic - init cv for timed waits on CLOCK_MONOTONIC
 * deadlines (tt_timespec_ns()), the clock every deadline uses. */
void tt_cond_init_monotonic(pthread_cond_t *cv);

/* TT_THREAD_LOCAL - a thread-local variable of the library.  The
 * initial-exec model reaches it with one instruction instead of a call to
 * __tls_get_addr() on every access from the shared library (the hot path
 * reads a few of them per call); the library's static TLS is small. */
#define TT_THREAD_LOCAL __thread __attribute__((tls_model("initial-exec")))

#endif
