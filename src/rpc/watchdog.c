/*
 * watchdog.c - "alive but not serving": the serving watchdog, the health
 * the server reports (_tether.Health.Check, tether_server_health()) and
 * systemd's WATCHDOG=1.
 *
 * What "turning" means:
 *  - An I/O thread turns when its loop runs a posted task.  The control
 *    thread posts a ping to every thread each tick (stall_ms / 10, 10 to
 *    250 ms) once the previous one ran; a ping still waiting after
 *    stall_ms means the thread has been stuck in one callback that long
 *    (an inline handler that blocks).  An idle thread answers at once
 *    from epoll_wait, so idle is never a stall, and the calls' path pays
 *    nothing: no counter, no clock read, only a wake-up per tick.
 *  - The worker pool turns when a job gets a worker.  A job that runs
 *    long while other workers are free is not a stall (blocking handlers
 *    are slow by definition); jobs waiting stall_ms with every worker
 *    busy are (tt_pool_waiting_ns()).
 * A stalled server leaves the registry (tt_server_set_listed(): the
 * registration lives on, hidden), logs why, answers health checks with
 * NOT_SERVING and stops WATCHDOG=1, so systemd restarts it after
 * WatchdogSec=.  Once every loop turns again it comes back by itself.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "rpc/client_int.h"
#include "rpc/server_int.h"
#include "tether/health.h"

#define HEALTH_SERVICE "_tether.Health"
#define HEALTH_METHOD HEALTH_SERVICE ".Check"

/* The control thread's tick: fine enough that a stall shows within
 * stall_ms plus a little, coarse enough to cost nothing. */
static uint32_t
tick_ms(const tether_server *srv)
{
    uint32_t t = UINT32_MAX;
    if (srv->cfg.stall_ms > 0) {
        t = srv->cfg.stall_ms / 10;
        t = t < 10 ? 10 : t > 250 ? 250 : t;
    }
    if (srv->sd_wd_usec > 0) {
        /* systemd wants a ping within WATCHDOG_USEC; send one each half
         * and look four times as often. */
        uint64_t q = srv->sd_wd_usec / 4000;
        q = q < 10 ? 10 : q;
        t = q < t ? (uint32_t)q : t;
    }
    return t;
}

int
tt_wd_timeout_ms(const tether_server *srv)
{
    uint32_t t = tick_ms(srv);
    return t == UINT32_MAX ? -1 : (int)t;
}

void
tt_wd_setup(tether_server *srv)
{
    /* Under systemd with WatchdogSec= (the variables are read once, at
     * start, before any thread of ours could race a setenv). */
    const char *usec = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    srv->sd_wd_usec = 0;
    if (usec != NULL && getenv("NOTIFY_SOCKET") != NULL &&
        (pid == NULL || strtoll(pid, NULL, 10) == (long long)getpid())) {
        char *end = NULL;
        unsigned long long v = strtoull(usec, &end, 10);
        if (end != usec && *end == '\0' && v > 0) {
            srv->sd_wd_usec = v;
        }
    }
    srv->sd_wd_next_ns = 0;
}

void
tt_srv_task_wd_ping(tt_task *task)
{
    iothr *t = (iothr *)(void *)((char *)task - offsetof(iothr, t_wd_ping));
    atomic_store_explicit(&t->wd_done, atomic_load_explicit(&t->wd_sent, memory_order_relaxed),
                          memory_order_release);
}

/* 1 if some loop has not turned for stall_ms (why says which), else 0;
 * pings the threads whose last ping has run. */
static int
check_loops(tether_server *srv, uint64_t now, char *why, size_t cap)
{
    uint64_t stall_ns = (uint64_t)srv->cfg.stall_ms * 1000000u;
    int stalled = 0;
    for (int i = 0; i < srv->nthreads; i++) {
        iothr *t = &srv->threads[i];
        uint64_t sent = atomic_load_explicit(&t->wd_sent, memory_order_relaxed);
        if (atomic_load_explicit(&t->wd_done, memory_order_acquire) == sent) {
            t->wd_sent_ns = now;
            atomic_store_explicit(&t->wd_sent, sent + 1, memory_order_relaxed);
            tt_loop_post(&t->loop, &t->t_wd_ping);
        } else if (now - t->wd_sent_ns > stall_ns && !stalled) {
            snprintf(why, cap,
                     "I/O thread %d has not turned for %" PRIu64 " ms (a handler blocking it?)", i,
                     (now - t->wd_sent_ns) / 1000000u);
            stalled = 1;
        }
    }
    if (srv->pool != NULL && !stalled) {
        uint64_t w = tt_pool_waiting_ns(srv->pool, now);
        if (w > stall_ns) {
            snprintf(why, cap,
                     "worker pool: jobs have waited %" PRIu64 " ms with all %d workers busy",
                     w / 1000000u, srv->cfg.worker_threads);
            stalled = 1;
        }
    }
    return stalled;
}

void
tt_wd_tick(tether_server *srv)
{
    uint64_t now = tt_now_ns();
    char why[160] = "";
    int stalled = srv->cfg.stall_ms > 0 && check_loops(srv, now, why, sizeof why);
    int was = atomic_load(&srv->stalled);
    if (stalled && !was) {
        srv->wd_stall_start_ns = now;
        atomic_fetch_add(&srv->st_stalls, 1);
        tt_log(TETHER_LOG_WARN, "watchdog: not serving: %s; leaving the registry until it turns",
               why);
    } else if (!stalled && was) {
        tt_log(TETHER_LOG_WARN,
               "watchdog: serving again after %" PRIu64 " ms stalled; back in the registry",
               (now - srv->wd_stall_start_ns) / 1000000u);
    }
    atomic_store(&srv->stalled, stalled);
    int listed = !stalled && atomic_load(&srv->app_serving);
    if (tt_server_set_listed(srv, listed) != 0) {
        if (!srv->wd_reg_failing) {
            tt_log(TETHER_LOG_WARN, "watchdog: cannot %s the registry yet; retrying",
                   listed ? "return to" : "leave");
        }
        srv->wd_reg_failing = 1;
    } else {
        srv->wd_reg_failing = 0;
    }
    /* WATCHDOG=1 only while every loop turns: a wedged server goes
     * quiet and systemd restarts it. */
    if (srv->sd_wd_usec > 0 && !stalled && now >= srv->sd_wd_next_ns) {
        tt_sd_notify("WATCHDOG=1");
        srv->sd_wd_next_ns = now + srv->sd_wd_usec * 1000u / 2;
    }
}

/* ---------------------------------------------------------------------- */
/* Health                                                                 */

tether_err
tether_server_set_serving(tether_server *srv, int serving)
{
    if (srv == NULL) {
        return TETHER_EINVAL;
    }
    atomic_store(&srv->app_serving, serving != 0);
    uint64_t one = 1;
    ssize_t n = write(srv->wd_fd, &one, sizeof one); /* wake the control thread */
    (void)n;
    return TETHER_OK;
}

tether_health_status
tether_server_health(const tether_server *srv, const char *service)
{
    if (srv == NULL) {
        return TETHER_HEALTH_UNKNOWN;
    }
    if (service != NULL && service[0] != '\0') {
        int known = 0;
        for (size_t i = 0; i < srv->nservices && !known; i++) {
            known = strcmp(srv->services[i], service) == 0;
        }
        if (!known) {
            return TETHER_HEALTH_UNKNOWN;
        }
    }
    int state = atomic_load(&((tether_server *)srv)->state);
    if (state == SRV_DRAINING || state == SRV_STOPPED) {
        return TETHER_HEALTH_DRAINING;
    }
    if (atomic_load(&((tether_server *)srv)->stalled) ||
        !atomic_load(&((tether_server *)srv)->app_serving)) {
        return TETHER_HEALTH_NOT_SERVING;
    }
    return TETHER_HEALTH_SERVING;
}

const char *
tether_health_status_name(tether_health_status status)
{
    switch (status) {
    case TETHER_HEALTH_SERVING:
        return "SERVING";
    case TETHER_HEALTH_NOT_SERVING:
        return "NOT_SERVING";
    case TETHER_HEALTH_DRAINING:
        return "DRAINING";
    case TETHER_HEALTH_UNKNOWN:
        break;
    }
    return "UNKNOWN";
}

/* google.protobuf.StringValue as describe.c defines it. */
typedef struct strval {
    ProtobufCMessage base;
    char *value;
} strval;

static void
do_check(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    const tether_server *srv = arg;
    strval out = {PROTOBUF_C_MESSAGE_INIT(&tt_string_value_descriptor), NULL};
    out.value =
        (char *)tether_health_status_name(tether_server_health(srv, ((const strval *)req)->value));
    tether_call_reply(call, &out.base);
}

static const ProtobufCMethodDescriptor health_methods[1] = {
    {"Check", &tt_string_value_descriptor, &tt_string_value_descriptor},
};
static const unsigned health_by_name[1] = {0};
static const ProtobufCServiceDescriptor health_service = {
    PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC,
    HEALTH_SERVICE,
    HEALTH_SERVICE,
    "_tether_Health",
    "_tether",
    1,
    health_methods,
    health_by_name,
};

tether_err
tt_server_add_health(tether_server *srv)
{
    for (size_t i = 0; i < srv->nservices; i++) {
        if (strcmp(srv->services[i], HEALTH_SERVICE) == 0) {
            return TETHER_OK; /* a start that failed earlier added it */
        }
    }
    const tether_method m = {"Check", do_check, 0};
    return tether_server_add_service(srv, &health_service, &m, 1, srv);
}

int
tt_srv_is_health(const char *method, size_t len)
{
    return len == sizeof HEALTH_METHOD - 1 && memcmp(method, HEALTH_METHOD, len) == 0;
}

/* ---------------------------------------------------------------------- */
/* Caller side                                                            */

tether_err
tether_client_health_check(tether_client *c, const char *service, const tether_call_opts *opts,
                           tether_health_status *out)
{
    if (c == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    strval req = {PROTOBUF_C_MESSAGE_INIT(&tt_string_value_descriptor),
                  (char *)(service != NULL ? service : "")};
    ProtobufCMessage *rep = NULL;
    tether_err err = tether_client_call(c, HEALTH_METHOD, &req.base, &tt_string_value_descriptor,
                                        &rep, opts, NULL);
    if (err != TETHER_OK) {
        return err;
    }
    const char *v = ((strval *)rep)->value;
    static const tether_health_status all[] = {TETHER_HEALTH_SERVING, TETHER_HEALTH_NOT_SERVING,
                                               TETHER_HEALTH_DRAINING, TETHER_HEALTH_UNKNOWN};
    err = TETHER_EBADREPLY;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (v != NULL && strcmp(v, tether_health_status_name(all[i])) == 0) {
            *out = all[i];
            err = TETHER_OK;
        }
    }
    tether_msg_free(rep);
    return err;
}
