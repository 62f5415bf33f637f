/*
 * pool.h - a fixed pool of worker threads for blocking handlers.
 */
#ifndef TT_RPC_POOL_H
#define TT_RPC_POOL_H

#include <stdint.h>

#include "net/loop.h"

typedef struct tt_pool tt_pool;

/* tt_pool_create - start n worker threads. */
tether_err tt_pool_create(int n, tt_pool **out);

/* tt_pool_submit - run t->fn(t) on some worker, in submission order.
 * Thread-safe. */
void tt_pool_submit(tt_pool *p, tt_task *t);

/* tt_pool_waiting_ns - how long the pool has not turned at time now_ns:
 * the time since a job last got a worker, while jobs wait in the queue
 * (every worker busy); 0 when none waits.  A long job with workers to
 * spare is not a stall: only work that cannot start is.  Thread-safe. */
uint64_t tt_pool_waiting_ns(tt_pool *p, uint64_t now_ns);

/* tt_pool_destroy - stop the workers: queued work is dropped, running
 * handlers get up to wait_ms to return; workers still busy after that are
 * left behind and free the pool when they finish.  NULL is a no-op. */
void tt_pool_destroy(tt_pool *p, uint32_t wait_ms);

#endif
