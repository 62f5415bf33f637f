/*
 * loop.h - the event loop contract: one loop per thread, epoll underneath.
 *
 * A loop watches descriptors (tt_io) and runs tasks posted from other
 * threads (tt_loop_post, the only thread-safe entry point).  The loop knows
 * nothing of RPC or wire formats.
 */
#ifndef TT_NET_LOOP_H
#define TT_NET_LOOP_H

#include <pthread.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "tether/tether.h"

struct tt_io;
/* Called on the loop thread with the epoll events that fired. */
typedef void (*tt_io_fn)(struct tt_io *io, uint32_t events);

typedef struct tt_io {
    int fd;
    uint32_t events; /* what is registered now */
    tt_io_fn cb;
} tt_io;

struct tt_task;
typedef void (*tt_task_fn)(struct tt_task *t);

/* A unit of work posted to a loop; embed it in the object it concerns. */
typedef struct tt_task {
    struct tt_task *next;
    tt_task_fn fn;
} tt_task;

typedef struct tt_loop {
    int epfd;
    int wakefd; /* eventfd: tt_loop_post() writes it when the queue was empty */
    tt_io wake_io;
    pthread_mutex_t mu; /* protects head/tail */
    tt_task *head, *tail;
    int posted; /* a wake is outstanding (under mu) */
} tt_loop;

tether_err tt_loop_init(tt_loop *l);
void tt_loop_fini(tt_loop *l);

/* Register, change or remove io's descriptor (loop thread only, or before
 * the loop runs). */
tether_err tt_loop_add(tt_loop *l, tt_io *io, uint32_t events);
tether_err tt_loop_mod(tt_loop *l, tt_io *io, uint32_t events);
void tt_loop_del(tt_loop *l, tt_io *io);

/* tt_loop_post - queue t to run on the loop thread.  Thread-safe. */
void tt_loop_post(tt_loop *l, tt_task *t);

/* tt_loop_poll - wait up to timeout_ms (-1: forever) for events, run the
 * callbacks of those that fired and the posted tasks.  Returns the number
 * of events handled. */
int tt_loop_poll(tt_loop *l, int timeout_ms);

#endif
