/*
 * drain.c - the stop sequence, run by the server's control thread.
 *
 * The control thread sleeps until tether_server_shutdown() writes the
 * shutdown eventfd (from any thread or a signal handler), then stops the
 * server in a fixed order so that nobody is ever told "serving" by a server
 * that will not serve, and no call a handler accepted is dropped:
 *
 *   1. on_stop hook: deregister from the registry first (the server is draining), so
 *      watchers see the instance leave before anything else changes;
 *   2. new calls are refused with TETHER_EGOINGAWAY (they never reach a
 *      handler, so clients may retry them elsewhere) and every connection
 *      gets a GOAWAY frame;
 *   3. optional grace period (cfg.grace_ms) for clients to move away;
 *   4. stop accepting connections;
 *   5. wait for calls in flight to finish, up to cfg.drain_timeout_ms;
 *   6. answer what is left with TETHER_ECANCELED;
 *   7. flush, close every connection, stop the I/O threads.
 *
 * A second shutdown request at any point jumps to step 7.  Until the
 * first, the thread runs the serving watchdog (watchdog.c) each tick.
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "rpc/server_int.h"

/* Wait up to timeout_ms (-1: forever) for shutdown requests or, when
 * watch_drained, for a "drained" notice; a watchdog wake-up
 * (tether_server_set_serving()) ends the wait too.  Returns the number of
 * shutdown requests read (0 on timeout, drained notice or wake-up). */
static uint64_t
wait_events(tether_server *srv, int timeout_ms, int watch_drained)
{
    struct pollfd p[3] = {{.fd = srv->shutdown_fd, .events = POLLIN},
                          {.fd = srv->wd_fd, .events = POLLIN},
                          {.fd = srv->drained_fd, .events = POLLIN}};
    int r;
    do {
        r = poll(p, watch_drained ? 3 : 2, timeout_ms);
    } while (r < 0 && errno == EINTR);
    uint64_t v = 0;
    if (r > 0 && (p[0].revents & POLLIN)) {
        ssize_t n = read(srv->shutdown_fd, &v, sizeof v);
        if (n != (ssize_t)sizeof v) {
            v = 0;
        }
    }
    for (int i = 1; i < 3; i++) {
        if (r > 0 && (i == 1 || watch_drained) && (p[i].revents & POLLIN)) {
            uint64_t d;
            ssize_t n = read(p[i].fd, &d, sizeof d);
            (void)n;
        }
    }
    return v;
}

static int
remaining_ms(uint64_t deadline_ms)
{
    uint64_t now = tt_now_ms();
    return now >= deadline_ms ? 0 : (int)(deadline_ms - now);
}

void *
tt_server_control_main(void *arg)
{
    tether_server *srv = arg;
    uint64_t req = 0;
    /* Serving: the watchdog looks each tick (watchdog.c). */
    while (req == 0) {
        tt_wd_tick(srv);
        req = wait_events(srv, tt_wd_timeout_ms(srv), 0);
    }
    int immediate = req >= 2;
    tt_log(TETHER_LOG_INFO, "%s", immediate ? "stopping at once" : "graceful stop: draining");
    /* Step 1: leave the registry before anything else changes (an
     * immediate stop leaves it too). */
    if (srv->on_stop != NULL) {
        srv->on_stop(srv, srv->on_stop_arg);
    }
    /* Step 2: refuse new calls, tell clients to go away. */
    atomic_store(&srv->state, SRV_DRAINING);
    if (!immediate) {
        tt_server_post_all(srv, offsetof(iothr, t_goaway));
    }
    /* Step 3: grace period. */
    uint64_t until = tt_now_ms() + srv->cfg.grace_ms;
    while (!immediate && remaining_ms(until) > 0) {
        immediate = wait_events(srv, remaining_ms(until), 0) > 0;
    }
    if (!immediate) {
        /* Step 4: no new connections. */
        tt_server_post_all(srv, offsetof(iothr, t_stop_accept));
        /* Step 5: let calls in flight finish, until the deadline.  Each
         * I/O thread checks itself once (t_drain_check) and from then on
         * reports when its last call finishes, so this waits for events
         * only: a report, a second stop request, or the deadline. */
        tt_server_post_all(srv, offsetof(iothr, t_drain_check));
        uint64_t deadline = tt_now_ms() + srv->cfg.drain_timeout_ms;
        while (!immediate && tt_server_inflight(srv) > 0 && remaining_ms(deadline) > 0) {
            immediate = wait_events(srv, remaining_ms(deadline), 1) > 0;
        }
        /* Step 6: cancel what is left. */
        long left = tt_server_inflight(srv);
        if (!immediate && left > 0) {
            tt_log(TETHER_LOG_WARN, "graceful stop: %ld call(s) canceled at the drain deadline",
                   left);
            tt_server_post_all(srv, offsetof(iothr, t_cancel));
        }
    }
    /* Step 7: flush and close everything. */
    tt_server_stop_threads(srv);
    pthread_mutex_lock(&srv->mu);
    atomic_store(&srv->state, SRV_STOPPED);
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    tt_log(TETHER_LOG_INFO, "server stopped");
    return NULL;
}
