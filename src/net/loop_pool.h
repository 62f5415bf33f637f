/*
 * loop_pool.h - the process's shared pool of client I/O loops.
 *
 * Every client in a process (single-address or by service name, whatever
 * its codec) runs its connections on one of a few loop threads shared by
 * all, so the number of threads does not grow with clients or instances.
 * The threads start with the first user and stop when the last one leaves.
 */
#ifndef TT_NET_LOOP_POOL_H
#define TT_NET_LOOP_POOL_H

#include "net/loop.h"

/* Default number of loop threads: min(online cores, 4). */
#define TT_LOOP_POOL_MAX_DEFAULT 4
/* Largest number of loop threads one may ask for. */
#define TT_LOOP_POOL_MAX 64

/*
 * tt_loop_pool_acquire - a loop of the shared pool for one more user (the
 * one with the fewest users), starting the pool's threads if this is the
 * first user.  Thread-safe.  Errors: TETHER_ENOMEM, TETHER_ESYSERR|errno.
 */
tether_err tt_loop_pool_acquire(tt_loop **out);

/*
 * tt_loop_pool_release - the user of l is gone: everything it had on l
 * (descriptors, timers, posted tasks) must be finished.  The last release
 * stops and joins the threads (unless it comes from a pool thread, which
 * cannot join itself: then the threads stay for the next user).
 */
void tt_loop_pool_release(tt_loop *l);

/* tt_loop_pool_alone - whether l (a loop of the pool) has one user at
 * most: its thread's CPU then serves that user alone. */
int tt_loop_pool_alone(const tt_loop *l);

/* tt_loop_pool_set_size - the number of threads for pools started from now
 * on (0: the default).  TETHER_EINVAL above TT_LOOP_POOL_MAX. */
tether_err tt_loop_pool_set_size(unsigned n);

/* tt_loop_pool_size - the number of threads a pool starts with now. */
unsigned tt_loop_pool_size(void);

/* tt_loop_pool_on_thread - whether the caller is one of the pool's threads
 * (where client callbacks run). */
int tt_loop_pool_on_thread(void);

#endif
