/*
 * loop.h - the event loop contract: one loop per thread.
 *
 * A loop watches descriptors (tt_io), runs timers (tt_timer) and runs
 * tasks posted from other threads (tt_loop_post).  It knows nothing of
 * RPC or wire formats, and nothing of the poller it runs on: events are
 * the TT_EV_* flags below (loop_epoll.c maps them to epoll).
 *
 * Threads: tt_loop_post(), tt_timer_arm() and tt_timer_cancel() may be
 * called from any thread; tt_loop_add/mod/del from any thread that owns the
 * descriptor's object (the kernel's poller is thread-safe; io->events is
 * the caller's to protect).  Callbacks run on the loop's thread.
 */
#ifndef TT_NET_LOOP_H
#define TT_NET_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/heap.h"
#include "tether/tether.h"

/* Events a descriptor can be watched for, and that callbacks receive. */
#define TT_EV_READ 0x1u      /* readable (or the peer closed) */
#define TT_EV_WRITE 0x2u     /* writable (or a connect finished) */
#define TT_EV_ERROR 0x4u     /* hang-up or error; always reported, never asked for */
#define TT_EV_EXCLUSIVE 0x8u /* wake one of the loops watching it (listeners) */

struct tt_io;
/* Called on the loop thread with the TT_EV_* events that fired. */
typedef void (*tt_io_fn)(struct tt_io *io, unsigned events);

typedef struct tt_io {
    int fd;
    unsigned events; /* what is registered now */
    tt_io_fn cb;
} tt_io;

struct tt_task;
typedef void (*tt_task_fn)(struct tt_task *t);

/* A unit of work posted to a loop; embed it in the object it concerns.  A
 * task must not be posted again before it ran. */
typedef struct tt_task {
    struct tt_task *next;
    tt_task_fn fn;
} tt_task;

struct tt_timer;
typedef void (*tt_timer_fn)(struct tt_timer *t);

/* A one-shot timer; embed it in the object it concerns, tt_timer_init()
 * it once. */
typedef struct tt_timer {
    tt_heap_node node; /* key: the monotonic time (ns) it fires */
    tt_timer_fn fn;
} tt_timer;

typedef struct tt_loop {
    int epfd;
    int wakefd; /* eventfd: written when a post or an earlier timer needs a wake */
    tt_io wake_io;
    pthread_mutex_t mu; /* protects head/tail, posted and timers */
    tt_task *head, *tail;
    int posted; /* a wake is outstanding (under mu) */
    tt_heap timers;
    /* The earliest timer's time (UINT64_MAX: none), written under mu and
     * read without it, so a poll with no timer due takes no lock. */
    _Atomic uint64_t next_due;
    pthread_t owner; /* the thread that polls it (set by the first poll) */
    int owned;
} tt_loop;

/* tt_loop_init - set up l.  Errors: TETHER_ESYSERR|errno (no descriptors). */
tether_err tt_loop_init(tt_loop *l);
/* tt_loop_fini - release l (no thread may poll it any more). */
void tt_loop_fini(tt_loop *l);

/* Register, change or remove io's descriptor with events (TT_EV_*). */
tether_err tt_loop_add(tt_loop *l, tt_io *io, unsigned events);
tether_err tt_loop_mod(tt_loop *l, tt_io *io, unsigned events);
void tt_loop_del(tt_loop *l, tt_io *io);

/* tt_loop_post - queue t to run on the loop thread.  Thread-safe. */
void tt_loop_post(tt_loop *l, tt_task *t);

/* tt_timer_init - set up t to call fn when it fires. */
static inline void
tt_timer_init(tt_timer *t, tt_timer_fn fn)
{
    tt_heap_node_init(&t->node);
    t->fn = fn;
}

/*
 * tt_timer_arm - make t fire at the monotonic time when_ns (now or in the
 * past: at the next poll), moving it if it was armed.  Thread-safe; a
 * timer armed from another thread that becomes the earliest wakes the
 * loop.  TETHER_ENOMEM if the timer heap cannot grow.
 */
tether_err tt_timer_arm(tt_loop *l, tt_timer *t, uint64_t when_ns);

/*
 * tt_timer_cancel - disarm t.  Thread-safe.  A timer whose callback the
 * loop thread is already about to run is not stopped by a cancel from
 * another thread: objects that embed timers are freed on the loop thread
 * (or after it stopped), where no callback can be pending.
 */
void tt_timer_cancel(tt_loop *l, tt_timer *t);

/* tt_timer_armed - whether t is armed now (racy from other threads). */
static inline int
tt_timer_armed(const tt_timer *t)
{
    return tt_heap_linked(&t->node);
}

/*
 * tt_loop_poll - wait up to timeout_ms (-1: forever), bounded by the
 * earliest timer, for events; run the callbacks of those that fired, the
 * posted tasks and the timers that are due.  Returns the number of
 * descriptor events handled.
 */
int tt_loop_poll(tt_loop *l, int timeout_ms);

/* tt_loop_on_thread - whether the calling thread is the one polling l. */
int tt_loop_on_thread(const tt_loop *l);

#endif
