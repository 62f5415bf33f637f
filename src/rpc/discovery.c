/*
 * discovery.c - a client by service name: follows a registry watch, keeps
 * one engine (engine.c) per instance, balances calls across them and
 * retries calls that never reached a handler.  It is a layer above the
 * engines, beside the client by address, and never goes through the
 * public client functions.
 *
 * Endpoints.  Each registered instance (keyed by its registration id, so a
 * restarted instance at the same address is a new endpoint) becomes an
 * endpoint whose engine starts connecting in the background as soon as the
 * registry reports it.  Calls go only to endpoints whose connection is up:
 * one that is still connecting (a blackholed address, say) delays nobody,
 * and an idle one (its connection broke) is reconnected in the background
 * when a pick passes it.  An endpoint also leaves the pick set when the
 * registry removes it or marks it draining, when its server sent GOAWAY,
 * or while it is in connect backoff.  Removed endpoints go to the
 * graveyard and are destroyed once no call uses them, never from a pool
 * thread.
 *
 * Retries.  Only failures that prove no handler saw the call are retried:
 * connection refused, TETHER_EGOINGAWAY (the server refuses calls after it
 * said GOAWAY), and a reset of a connection whose server had said GOAWAY
 * (our server closes only after draining what it accepted), and calls that
 * never left the process (TETHER_EAGAIN from the engine).  Calls marked
 * idempotent are also retried after any reset.
 *
 * Outliers ("alive but not serving").  An instance whose server stopped,
 * or whose packets are dropped, keeps an open connection that answers
 * nothing.  The engines find such connections by ping (engine.c,
 * "Liveness"); here an unanswered ping, or eject_failures transport
 * failures and timeouts in a row, ejects the instance (balance/eject.c:
 * how long, how many at once).  An ejected instance gets no calls; when
 * its time is up the next pick that passes it starts a probe (a PING, on
 * a new connection if needed), and only its PONG lets calls back in.
 *
 * Hedging.  An asynchronous call marked idempotent, with backup_ms set, is
 * sent once more to another instance when its first copy is not answered
 * by then (a timer on the client's own pool loop); the first answer wins
 * and the other copy is canceled.  A synchronous hedged call is the same
 * machinery, waited for.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "balance/balance.h"
#include "balance/eject.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/list.h"
#include "core/log.h"
#include "core/thread.h"
#include "net/loop_pool.h"
#include "registry/registry.h"
#include "rpc/client_int.h"
#include "tether/metrics.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define MAX_TRIED 16
#define LAT_RING 128 /* latencies kept for the p95 of TETHER_BACKUP_P95 */
#define LAT_MIN 16   /* answered calls before a p95 is trusted */

typedef struct ep {
    char *id;
    char *addr;
    tt_addr sa;
    uint32_t weight;
    uint64_t id_hash;
    int draining;
    int refs; /* calls using it now */
    uint64_t backoff_until_ms;
    uint32_t backoff_ms;
    tt_eject ej; /* outlier ejection state */
    uint64_t st_ejections, st_retries; /* for tether_client_get_instance_stats */
    tt_engine *eng;
    struct tt_disc *d;
    struct ep *grave_next;
} ep;

struct tt_disc {
    tether_client base; /* first: the public handle */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the endpoint set or a connection's state changed */
    const tt_balance_ops *bal;
    uint64_t bal_state;
    tether_registry *reg;
    tether_watch *watch;
    ep **eps;
    size_t neps, cap;
    tt_cand *cands;
    ep *grave;
    int ever_listed;
    unsigned long nremoved; /* REMOVED reports so far (tt_disc_create's wait) */
    int closing;
    struct dcall *active; /* async calls not freed yet (cancel, destroy) */
    tt_task t_untimer;    /* destroy: disarm the hedging timers */
    int untimed;
    uint64_t next_id;
    tt_eject_cfg ejc;
    uint64_t backup_ns; /* fixed hedging delay; 0: none or p95 */
    int backup_p95;     /* hedge after the recent p95 */
    uint64_t lat[LAT_RING];
    uint64_t nlat;
    uint64_t p95_ns; /* 0 until LAT_MIN answers */
    tt_loop *loop;   /* hedging timers run here */
    size_t ndcalls;  /* async calls not freed yet (destroy waits) */
};

/* ---------------------------------------------------------------------- */
/* Endpoint set (under mu)                                                */

static void
ep_free(ep *e)
{
    tt_engine_destroy(e->eng);
    tt_free(e->id);
    tt_free(e->addr);
    tt_free(e);
}

static ssize_t
find_ep(struct tt_disc *d, const char *id)
{
    for (size_t i = 0; i < d->neps; i++) {
        if (strcmp(d->eps[i]->id, id) == 0) {
            return (ssize_t)i;
        }
    }
    return -1;
}

static void
backoff_locked(ep *e)
{
    e->backoff_ms = e->backoff_ms == 0 ? BACKOFF_MIN_MS : e->backoff_ms * 2;
    if (e->backoff_ms > BACKOFF_MAX_MS) {
        e->backoff_ms = BACKOFF_MAX_MS;
    }
    e->backoff_until_ms = tt_now_ms() + e->backoff_ms;
}

/* Eject e if it is in and the share allows (why: for the log). */
static void
eject_locked(struct tt_disc *d, ep *e, const char *why)
{
    if (e->ej.state != TT_EJECT_NONE) {
        return;
    }
    size_t nout = 0;
    for (size_t i = 0; i < d->neps; i++) {
        nout += d->eps[i]->ej.state != TT_EJECT_NONE;
    }
    if (!tt_eject_allowed(&d->ejc, d->neps, nout)) {
        tt_log(TETHER_LOG_INFO,
               "discovery: instance %s at %s not ejected (%s): %zu of %zu are out already", e->id,
               e->addr, why, nout, d->neps);
        return;
    }
    uint32_t ms = tt_eject_start(&e->ej, &d->ejc, tt_now_ms());
    e->st_ejections++;
    tt_log(TETHER_LOG_WARN, "discovery: instance %s at %s ejected for %u ms: %s", e->id, e->addr,
           ms, why);
}

/* The outcome of a probe of an ejected endpoint (under mu). */
static void
probed_locked(struct tt_disc *d, ep *e, int ok)
{
    uint32_t ms = tt_eject_probed(&e->ej, &d->ejc, ok, tt_now_ms());
    if (ok) {
        tt_log(TETHER_LOG_INFO, "discovery: instance %s at %s answered its probe: calls resume",
               e->id, e->addr);
    } else {
        tt_log(TETHER_LOG_WARN, "discovery: instance %s at %s failed its probe: ejected for %u ms",
               e->id, e->addr, ms);
    }
}

/* A ping on e's connection was answered (ok) or not (loop or reader
 * thread, no engine lock held). */
static void
on_ep_probe(tt_engine *eng, int ok, void *arg)
{
    (void)eng;
    ep *e = arg;
    struct tt_disc *d = e->d;
    pthread_mutex_lock(&d->mu);
    if (e->ej.state == TT_EJECT_PROBING) {
        probed_locked(d, e, ok);
    } else if (!ok) {
        eject_locked(d, e, "no answer to a ping");
    }
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* An endpoint's connection came up, failed or broke (loop thread, no
 * engine lock held): pick sets and waiting callers must see it. */
static void
on_ep_state(tt_engine *eng, tether_err err, void *arg)
{
    (void)eng;
    ep *e = arg;
    struct tt_disc *d = e->d;
    pthread_mutex_lock(&d->mu);
    if (err == TETHER_OK) {
        e->backoff_ms = 0;
        e->backoff_until_ms = 0;
    } else if (err != TETHER_ECLOSED) {
        backoff_locked(e);
        if (e->ej.state == TT_EJECT_PROBING) {
            probed_locked(d, e, 0); /* the probe's connection failed */
        }
    }
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* A new endpoint for inst, with its engine (not connected yet).  Runs on
 * the watch thread without d->mu: the name lookup may block. */
static ep *
ep_new(struct tt_disc *d, const char *id, const tether_instance *inst)
{
    ep *e = tt_calloc(1, sizeof *e);
    if (e == NULL) {
        return NULL;
    }
    e->d = d;
    e->id = tt_strdup(id);
    e->addr = tt_strdup(inst->address);
    tether_err rc =
        e->id != NULL && e->addr != NULL ? tt_addr_parse(e->addr, &e->sa) : TETHER_ENOMEM;
    if (rc == TETHER_OK) {
        tt_engine_config ec = {.ops = &tt_codec_native,
                               .max_frame = d->base.cfg.max_frame_size,
                               .connect_timeout_ms = d->base.cfg.connect_timeout_ms,
                               .on_state = on_ep_state,
                               .on_probe = on_ep_probe,
                               .unsent_again = 1,
                               .state_arg = e,
                               .tls = d->base.tls,
                               .server_name = d->base.server_name};
        tt_client_engine_liveness(&d->base, &ec);
        rc = tt_engine_create(&e->sa, &ec, &e->eng);
    }
    if (rc != TETHER_OK) {
        tt_log(TETHER_LOG_WARN, "discovery: instance %s at %s left out: %s", id, inst->address,
               tether_strerror(rc));
        ep_free(e);
        return NULL;
    }
    e->weight = inst->weight > 0 ? inst->weight : 1;
    e->draining = inst->state == TETHER_INSTANCE_DRAINING;
    e->id_hash = tt_hash64(e->addr, strlen(e->addr), 0);
    return e;
}

static void
on_watch(tether_watch *watch, tether_watch_event ev, const tether_instance *inst, void *arg)
{
    (void)watch;
    struct tt_disc *d = arg;
    const char *id = inst->id != NULL ? inst->id : inst->address;
    ep *dead = NULL;
    ep *fresh = NULL;
    if (ev != TETHER_WATCH_REMOVED && inst->address != NULL) {
        pthread_mutex_lock(&d->mu);
        int known = find_ep(d, id) >= 0;
        pthread_mutex_unlock(&d->mu);
        /* Only this thread adds endpoints, so "not known" stays true. */
        if (!known) {
            fresh = ep_new(d, id, inst);
            if (fresh == NULL) {
                return;
            }
        }
    }
    pthread_mutex_lock(&d->mu);
    ssize_t i = find_ep(d, id);
    if (ev == TETHER_WATCH_REMOVED) {
        d->nremoved++;
        if (i >= 0) {
            ep *e = d->eps[i];
            d->eps[i] = d->eps[--d->neps];
            if (e->refs == 0 && !tt_loop_pool_on_thread()) {
                dead = e;
            } else {
                e->grave_next = d->grave;
                d->grave = e;
            }
        }
    } else if (i >= 0) {
        d->eps[i]->weight = inst->weight > 0 ? inst->weight : 1;
        d->eps[i]->draining = inst->state == TETHER_INSTANCE_DRAINING;
    } else if (fresh != NULL) {
        if (d->neps == d->cap) {
            size_t cap = d->cap ? d->cap * 2 : 8;
            ep **eps = tt_realloc(d->eps, cap * sizeof *eps);
            tt_cand *cands = eps != NULL ? tt_realloc(d->cands, cap * sizeof *cands) : NULL;
            if (eps != NULL) {
                d->eps = eps;
            }
            if (cands == NULL) {
                pthread_mutex_unlock(&d->mu);
                tt_log(TETHER_LOG_ERROR, "discovery: out of memory adding %s", inst->address);
                ep_free(fresh);
                return;
            }
            d->cands = cands;
            d->cap = cap;
        }
        d->eps[d->neps++] = fresh;
        d->ever_listed = 1;
        /* Connect now, in the background, before any call is sent to it: a
         * new instance's first calls (in a rolling restart, say) pay for no
         * connect. */
        if (tt_engine_prepare(fresh->eng) != TETHER_OK) {
            backoff_locked(fresh);
        }
    }
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    if (dead != NULL) {
        ep_free(dead);
    }
}

/* Take the graveyard's unused endpoints out, to free outside the lock. */
static ep *
grave_take_locked(struct tt_disc *d)
{
    ep *out = NULL, **pp = &d->grave;
    while (*pp != NULL) {
        ep *e = *pp;
        if (e->refs == 0) {
            *pp = e->grave_next;
            e->grave_next = out;
            out = e;
        } else {
            pp = &e->grave_next;
        }
    }
    return out;
}

static void
grave_free(ep *list)
{
    while (list != NULL) {
        ep *n = list->grave_next;
        ep_free(list);
        list = n;
    }
}

static int
was_tried(ep *const *tried, int n, const ep *e)
{
    for (int i = 0; i < n; i++) {
        if (tried[i] == e) {
            return 1;
        }
    }
    return 0;
}

/* Pick an endpoint for a call; -1 if none may take it now.  *soonest gets
 * the earliest backoff end among endpoints set aside (0 if none).  Idle
 * endpoints out of backoff start connecting in the background. */
static int
pick_locked(struct tt_disc *d, ep *const *tried, int ntried, const ep *avoid, const char *key,
            uint64_t *soonest)
{
    uint64_t now = tt_now_ms();
    *soonest = 0;
    for (size_t i = 0; i < d->neps; i++) {
        ep *e = d->eps[i];
        tt_cand *c = &d->cands[i];
        c->weight = e->weight;
        c->inflight = tt_engine_pending(e->eng);
        c->id_hash = e->id_hash;
        c->ok =
            !e->draining && e != avoid && !was_tried(tried, ntried, e) && !tt_engine_goaway(e->eng);
        if (c->ok && e->ej.state != TT_EJECT_NONE) {
            c->ok = 0;
            if (tt_eject_due(&e->ej, now)) {
                /* Its time is up: it comes back once it answers a ping. */
                tether_err prc = tt_engine_probe(e->eng);
                if (prc == TETHER_ENOTSUP) {
                    probed_locked(d, e, 1);
                    c->ok = 1;
                } else if (prc != TETHER_OK) {
                    probed_locked(d, e, 0);
                }
            }
            if (e->ej.state == TT_EJECT_OUT && (*soonest == 0 || e->ej.until_ms < *soonest)) {
                *soonest = e->ej.until_ms;
            }
        }
        if (c->ok && e->backoff_until_ms > now) {
            c->ok = 0;
            if (*soonest == 0 || e->backoff_until_ms < *soonest) {
                *soonest = e->backoff_until_ms;
            }
        }
        if (c->ok) {
            int st = tt_engine_state(e->eng);
            if (st == TT_ENGINE_IDLE && tt_engine_prepare(e->eng) != TETHER_OK) {
                backoff_locked(e);
            }
            /* Only connected instances, so that a slow connect delays
             * nobody; a sticky (keyed) choice also takes one still
             * connecting, and its call waits for the connection. */
            c->ok = st == TT_ENGINE_READY ||
                    (d->bal->sticky && (st == TT_ENGINE_CONNECTING ||
                                        tt_engine_state(e->eng) == TT_ENGINE_CONNECTING));
        }
    }
    return d->bal->pick(d->cands, d->neps, &d->bal_state, key, key != NULL ? strlen(key) : 0);
}

/* May a call that failed with err on endpoint e go to another one: is err
 * proof that no handler saw it, or is the call safe to run twice? */
static int
retryable(tether_err err, ep *e, unsigned flags)
{
    if (err == TETHER_ECONNREFUSED || err == TETHER_EGOINGAWAY || err == TETHER_EAGAIN) {
        return 1;
    }
    if (err == TETHER_ECONNRESET &&
        (tt_engine_goaway(e->eng) || (flags & TETHER_CALL_IDEMPOTENT) != 0)) {
        return 1;
    }
    return 0;
}

/* What the caller sees of err: "never left" is internal. */
static tether_err
public_err(tether_err err)
{
    return err == TETHER_EAGAIN ? TETHER_ECONNRESET : err;
}

/* Note the outcome of a call on e (under mu). */
static void
note_outcome_locked(struct tt_disc *d, ep *e, tether_err err)
{
    if (err == TETHER_ECONNREFUSED) {
        backoff_locked(e);
    } else if (err == TETHER_EGOINGAWAY) {
        e->draining = 1;
    } else if (err == TETHER_OK) {
        e->backoff_ms = 0;
        e->backoff_until_ms = 0;
        tt_eject_success(&e->ej);
    } else if (err == TETHER_ETIMEDOUT || (err == TETHER_ECONNRESET && !tt_engine_goaway(e->eng))) {
        if (tt_eject_failure(&e->ej, &d->ejc)) {
            eject_locked(d, e, "transport failures or timeouts in a row");
        }
    } else if (err != TETHER_ECLOSED && err != TETHER_ECANCELED && err != TETHER_EAGAIN &&
               err != TETHER_ENOMEM) {
        tt_eject_success(&e->ej); /* the server answered */
    }
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* An answered call's latency, for TETHER_BACKUP_P95 (under mu).  The p95
 * is recomputed every LAT_MIN answers, not per call. */
static void
lat_note_locked(struct tt_disc *d, uint64_t ns)
{
    if (!d->backup_p95) {
        return;
    }
    d->lat[d->nlat % LAT_RING] = ns;
    d->nlat++;
    if (d->nlat % LAT_MIN == 0) {
        uint64_t tmp[LAT_RING];
        size_t n = d->nlat < LAT_RING ? (size_t)d->nlat : LAT_RING;
        memcpy(tmp, d->lat, n * sizeof tmp[0]);
        qsort(tmp, n, sizeof tmp[0], cmp_u64);
        d->p95_ns = tmp[(n * 95) / 100];
    }
}

/* How long a hedged call waits before its backup copy (0: no hedging). */
static uint64_t
hedge_delay_locked(const struct tt_disc *d, unsigned flags)
{
    if ((flags & TETHER_CALL_IDEMPOTENT) == 0) {
        return 0;
    }
    if (d->backup_p95) {
        return d->p95_ns;
    }
    return d->backup_ns;
}

/* Wait until the endpoint set changes, a backoff ends, or the deadline. */
static int
wait_for_endpoint_locked(struct tt_disc *d, uint64_t deadline_ns, uint64_t soonest_ms)
{
    uint64_t until = deadline_ns;
    if (soonest_ms != 0 && soonest_ms * 1000000ull < until) {
        until = soonest_ms * 1000000ull;
    }
    if (tt_now_ns() >= deadline_ns) {
        return 0;
    }
    struct timespec ts = tt_timespec_ns(until);
    pthread_cond_timedwait(&d->cv, &d->mu, &ts);
    return 1;
}

/* ---------------------------------------------------------------------- */
/* Calls                                                                  */

static tether_err disc_hedged_call(struct tt_disc *d, const tt_call_req *rq, const char *key,
                                   tt_call_result *res);

static tether_err
disc_call(tether_client *c, const tt_call_req *rq, const char *key, tt_call_result *res)
{
    struct tt_disc *d = (struct tt_disc *)c;
    memset(res, 0, sizeof *res);
    uint64_t start = tt_now_ns();
    uint64_t deadline = start + (uint64_t)rq->timeout_ms * 1000000ull;
    pthread_mutex_lock(&d->mu);
    int hedge = hedge_delay_locked(d, rq->flags) != 0;
    pthread_mutex_unlock(&d->mu);
    if (hedge) {
        tether_err hrc = disc_hedged_call(d, rq, key, res);
        if (hrc != TETHER_EAGAIN) {
            return hrc;
        }
        /* No instance could take it at once: wait for one below. */
    }
    ep *tried[MAX_TRIED];
    int ntried = 0;
    tether_err last = TETHER_OK;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        if (d->closing) {
            pthread_mutex_unlock(&d->mu);
            return res->err = TETHER_ECLOSED;
        }
        uint64_t soonest;
        int i = pick_locked(d, tried, ntried, NULL, key, &soonest);
        if (i < 0) {
            int nowait = (rq->flags & TETHER_CALL_NO_WAIT) != 0;
            if (nowait || !wait_for_endpoint_locked(d, deadline, soonest)) {
                int listed = d->ever_listed;
                pthread_mutex_unlock(&d->mu);
                if (last == TETHER_OK) {
                    /* Nothing was tried: say why (EAGAIN here is the
                     * flag's documented answer, not an unsent call). */
                    return res->err = !listed ? TETHER_ENOENT
                                      : nowait ? TETHER_EAGAIN
                                               : TETHER_ETIMEDOUT;
                }
                return res->err = public_err(last);
            }
            /* Something may have changed: instances tried before may be
             * worth a new try once their backoff ends. */
            if (ntried == MAX_TRIED || soonest != 0) {
                ntried = 0;
            }
            continue;
        }
        ep *e = d->eps[i];
        e->refs++;
        pthread_mutex_unlock(&d->mu);
        uint64_t now = tt_now_ns();
        tt_call_req one = *rq;
        one.timeout_ms = now >= deadline ? 1 : (uint32_t)((deadline - now + 999999) / 1000000);
        tt_call_result_clear(res);
        tether_err rc = tt_engine_call(e->eng, &one, res);
        pthread_mutex_lock(&d->mu);
        e->refs--;
        note_outcome_locked(d, e, rc);
        if (rc == TETHER_OK) {
            lat_note_locked(d, tt_now_ns() - start);
        }
        if (rc == TETHER_OK || !retryable(rc, e, rq->flags) || tt_now_ns() >= deadline) {
            ep *dead = tt_loop_pool_on_thread() ? NULL : grave_take_locked(d);
            pthread_mutex_unlock(&d->mu);
            grave_free(dead);
            res->err = public_err(rc);
            return res->err;
        }
        last = rc;
        e->st_retries++; /* failed here, tried elsewhere */
        if (ntried < MAX_TRIED) {
            tried[ntried++] = e;
        }
    }
}

/* An asynchronous call through discovery: the request is packed once and
 * re-sent as bytes when retried or hedged.  Each copy in flight is a leg;
 * the call lives while it is unanswered, a leg is in flight or its hedging
 * timer is armed (refs counts those). */
typedef struct dcall dcall;

typedef struct dleg {
    dcall *dc;
    ep *e;
    uint64_t seq;      /* the copy's seq on e's engine */
    uint64_t start_ns; /* when this copy was sent */
    int live;
} dleg;

struct dcall {
    struct tt_disc *d;
    /* method, body and key point into tail: one allocation with the call. */
    char *method;
    size_t method_len;
    uint8_t *body;
    size_t len;
    char *key;
    const ProtobufCMessageDescriptor *desc;
    tether_reply_fn fn;
    void *arg;
    uint64_t start_ns;
    uint64_t deadline_ns;
    unsigned flags;
    uint64_t id; /* the caller's handle for tether_client_cancel() */
    int canceled;
    int finished; /* the caller got its answer */
    int refs;
    int timer_armed;
    int hedged;
    tt_timer htmr;
    dleg legs[2];
    struct dcall *prev, *next; /* d->active */
    ep *tried[MAX_TRIED];
    int ntried;
    max_align_t tail[];
};

static void dcall_done(tether_client *cli, const tether_reply *r, void *arg);

static void
dcall_free(dcall *dc)
{
    tt_free(dc); /* method, body and key with it */
}

/* Drop one of dc's references (under mu); frees it with the last.  Returns
 * whether it was freed. */
static int
dcall_unref_locked(dcall *dc)
{
    if (--dc->refs > 0) {
        return 0;
    }
    struct tt_disc *d = dc->d;
    TT_DLIST_REMOVE(&d->active, dc);
    dcall_free(dc);
    if (--d->ndcalls == 0) {
        pthread_cond_broadcast(&d->cv);
    }
    return 1;
}

/* Send leg li of dc to some endpoint (under mu).  Returns TETHER_OK once
 * one accepted it (its callback will run), or the error when none can.  An
 * asynchronous call does not wait for an endpoint to come up: with none
 * ready it fails.  A backup copy avoids the instance of the first. */
static tether_err
dcall_issue_locked(dcall *dc, int li)
{
    struct tt_disc *d = dc->d;
    dleg *lg = &dc->legs[li];
    const dleg *other = &dc->legs[1 - li];
    const ep *avoid = other->live ? other->e : NULL;
    tether_err last = d->ever_listed ? TETHER_ECONNREFUSED : TETHER_ENOENT;
    for (;;) {
        uint64_t soonest;
        int i = d->closing ? -1 : pick_locked(d, dc->tried, dc->ntried, avoid, dc->key, &soonest);
        if (i < 0 || tt_now_ns() >= dc->deadline_ns) {
            return d->closing ? TETHER_ECLOSED : last;
        }
        ep *e = d->eps[i];
        uint64_t now = tt_now_ns();
        tt_call_req rq = {.method = dc->method,
                          .method_len = dc->method_len,
                          .data = dc->body,
                          .len = dc->len,
                          .flags = dc->flags,
                          .timeout_ms = (uint32_t)((dc->deadline_ns - now + 999999) / 1000000)};
        e->refs++;
        lg->e = e;
        lg->live = 1;
        lg->start_ns = now;
        dc->refs++;
        tether_err rc = tt_engine_call_async(e->eng, &rq, dcall_done, &d->base, lg, &lg->seq);
        if (rc == TETHER_OK) {
            return TETHER_OK;
        }
        lg->live = 0;
        dc->refs--;
        e->refs--;
        note_outcome_locked(d, e, rc);
        if (rc != TETHER_ECONNREFUSED) {
            backoff_locked(e);
        }
        last = rc;
        if (dc->ntried < MAX_TRIED) {
            dc->tried[dc->ntried++] = e;
        } else {
            return last;
        }
    }
}

/* The hedging timer (the client's pool loop): the first copy is still out,
 * send the backup.  If none can go, the first copy carries on alone. */
static void
on_hedge_timer(tt_timer *t)
{
    dcall *dc = (dcall *)((char *)t - offsetof(dcall, htmr));
    struct tt_disc *d = dc->d;
    pthread_mutex_lock(&d->mu);
    dc->timer_armed = 0;
    if (!dc->finished && !dc->canceled && !d->closing && !dc->legs[1].live &&
        tt_now_ns() < dc->deadline_ns) {
        dc->hedged = 1;
        int li = dc->legs[0].live ? 1 : 0;
        dcall_issue_locked(dc, li);
    }
    dcall_unref_locked(dc);
    pthread_mutex_unlock(&d->mu);
}

/* Arm dc's hedging timer after its first copy went out (under mu). */
static void
hedge_arm_locked(dcall *dc)
{
    struct tt_disc *d = dc->d;
    uint64_t delay = hedge_delay_locked(d, dc->flags);
    if (delay == 0 || dc->hedged || dc->timer_armed) {
        return;
    }
    uint64_t when = tt_now_ns() + delay;
    if (when >= dc->deadline_ns) {
        return;
    }
    if (tt_timer_arm(d->loop, &dc->htmr, when) == TETHER_OK) {
        dc->timer_armed = 1;
        dc->refs++;
    }
}

static void
dcall_done(tether_client *cli, const tether_reply *r, void *arg)
{
    dleg *lg = arg;
    dcall *dc = lg->dc;
    struct tt_disc *d = dc->d;
    int li = (int)(lg - dc->legs);
    pthread_mutex_lock(&d->mu);
    ep *e = lg->e;
    e->refs--;
    lg->live = 0;
    note_outcome_locked(d, e, r->err);
    if (r->err == TETHER_OK) {
        /* The copy's own time, not the call's: a call won by its backup
         * must not raise the p95 that decides when backups go (it would
         * feed on itself while an instance is stuck). */
        lat_note_locked(d, tt_now_ns() - lg->start_ns);
    }
    if (dc->finished) {
        /* The other copy answered first; this one was canceled. */
        dcall_unref_locked(dc);
        pthread_mutex_unlock(&d->mu);
        return;
    }
    dleg *other = &dc->legs[1 - li];
    if (r->err != TETHER_OK && other->live && !dc->canceled) {
        /* The other copy may still answer. */
        dcall_unref_locked(dc);
        pthread_mutex_unlock(&d->mu);
        return;
    }
    dc->refs--; /* this leg's; the call's own reference keeps dc */
    int retry = r->err != TETHER_OK && !dc->canceled && retryable(r->err, e, dc->flags) &&
                tt_now_ns() < dc->deadline_ns;
    if (retry) {
        e->st_retries++;
        if (dc->ntried < MAX_TRIED) {
            dc->tried[dc->ntried++] = e;
        }
        if (dcall_issue_locked(dc, li) == TETHER_OK) {
            hedge_arm_locked(dc);
            pthread_mutex_unlock(&d->mu);
            return;
        }
    }
    dc->finished = 1;
    ep *oe = NULL;
    uint64_t oseq = 0;
    if (other->live) {
        oe = other->e;
        oseq = other->seq;
        oe->refs++;
    }
    if (dc->timer_armed && tt_loop_on_thread(d->loop)) {
        /* On the timer's own thread its callback cannot be running. */
        tt_timer_cancel(d->loop, &dc->htmr);
        dc->timer_armed = 0;
        dc->refs--;
    }
    pthread_mutex_unlock(&d->mu);
    if (oe != NULL) {
        tt_engine_cancel(oe->eng, oseq);
        pthread_mutex_lock(&d->mu);
        oe->refs--;
        pthread_mutex_unlock(&d->mu);
    }
    tether_reply out = *r;
    out.err = public_err(r->err);
    if (r->err == TETHER_OK && dc->desc != NULL) {
        out.msg = protobuf_c_message_unpack(dc->desc, &tt_pb_allocator, r->len, r->data);
        if (out.msg == NULL) {
            out.err = TETHER_EBADREPLY;
        }
    }
    dc->fn(cli, &out, dc->arg);
    pthread_mutex_lock(&d->mu);
    dcall_unref_locked(dc);
    pthread_mutex_unlock(&d->mu);
}

static tether_err
disc_call_async(tether_client *c, const tt_call_req *rq, const char *key, tether_reply_fn fn,
                void *arg, uint64_t *id)
{
    struct tt_disc *d = (struct tt_disc *)c;
    /* One allocation per call: the call, then its method, body and key
     * (each NUL-terminated), so a call costs one malloc and one free. */
    size_t len = rq->msg != NULL ? protobuf_c_message_get_packed_size(rq->msg) : rq->len;
    size_t key_len = key != NULL ? strlen(key) : 0;
    if (len > SIZE_MAX / 2 || rq->method_len > SIZE_MAX / 4 || key_len > SIZE_MAX / 8) {
        return TETHER_ENOMEM;
    }
    dcall *dc = tt_malloc(sizeof *dc + rq->method_len + 1 + len + 1 + key_len + 1);
    if (dc == NULL) {
        return TETHER_ENOMEM;
    }
    memset(dc, 0, sizeof *dc);
    dc->d = d;
    dc->desc = rq->desc;
    dc->fn = fn;
    dc->arg = arg;
    dc->flags = rq->flags;
    dc->start_ns = tt_now_ns();
    dc->deadline_ns = dc->start_ns + (uint64_t)rq->timeout_ms * 1000000ull;
    dc->legs[0].dc = dc->legs[1].dc = dc;
    tt_timer_init(&dc->htmr, on_hedge_timer);
    dc->method = (char *)dc->tail;
    memcpy(dc->method, rq->method, rq->method_len);
    dc->method[rq->method_len] = '\0';
    dc->method_len = rq->method_len;
    dc->body = (uint8_t *)dc->method + rq->method_len + 1;
    dc->len = len;
    dc->body[len] = 0;
    if (key != NULL) {
        dc->key = (char *)dc->body + len + 1;
        memcpy(dc->key, key, key_len + 1);
    }
    if (rq->msg != NULL) {
        protobuf_c_message_pack(rq->msg, dc->body);
    } else if (rq->len > 0) {
        memcpy(dc->body, rq->data, rq->len);
    }
    /* Listed before it is sent: its callback may run as soon as the lock
     * is released, and takes it off the list. */
    pthread_mutex_lock(&d->mu);
    dc->id = ++d->next_id;
    dc->refs = 1; /* the call's own, until the caller got its answer */
    d->ndcalls++;
    TT_DLIST_PUSH(&d->active, dc);
    uint64_t my_id = dc->id;
    tether_err rc = dcall_issue_locked(dc, 0);
    if (rc != TETHER_OK) {
        dcall_unref_locked(dc);
        pthread_mutex_unlock(&d->mu);
        return public_err(rc);
    }
    hedge_arm_locked(dc);
    pthread_mutex_unlock(&d->mu);
    if (id != NULL) {
        *id = my_id;
    }
    return TETHER_OK;
}

/* Cancel by the id the caller got: every copy in flight for it is
 * canceled (no retry follows).  Their endpoints are held so they cannot
 * go to the grave while their engines are told. */
static tether_err
disc_cancel(tether_client *c, uint64_t id)
{
    struct tt_disc *d = (struct tt_disc *)c;
    pthread_mutex_lock(&d->mu);
    dcall *dc = d->active;
    while (dc != NULL && (dc->id != id || dc->finished)) {
        dc = dc->next;
    }
    ep *es[2] = {NULL, NULL};
    uint64_t seqs[2] = {0, 0};
    int n = 0;
    for (int i = 0; dc != NULL && i < 2; i++) {
        if (dc->legs[i].live) {
            es[n] = dc->legs[i].e;
            seqs[n] = dc->legs[i].seq;
            es[n]->refs++;
            n++;
        }
    }
    if (n == 0) {
        pthread_mutex_unlock(&d->mu);
        return TETHER_ENOENT;
    }
    dc->canceled = 1;
    pthread_mutex_unlock(&d->mu);
    tether_err rc = TETHER_ENOENT;
    for (int i = 0; i < n; i++) {
        if (tt_engine_cancel(es[i]->eng, seqs[i]) == TETHER_OK) {
            rc = TETHER_OK;
        }
    }
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < n; i++) {
        es[i]->refs--;
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* A synchronous hedged call: the asynchronous machinery, waited for.  The
 * answer is copied into res (the callback's view is valid only during
 * it).  TETHER_EAGAIN: no instance could take it now (the caller waits for
 * one the usual way). */
typedef struct swait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    tt_call_result *res;
} swait;

static tether_meta *
meta_block_copy(const tether_meta *m, size_t n)
{
    size_t bytes = n * sizeof *m;
    for (size_t i = 0; i < n; i++) {
        bytes += strlen(m[i].key) + strlen(m[i].value) + 2;
    }
    tether_meta *out = tt_malloc(bytes);
    if (out == NULL) {
        return NULL;
    }
    char *p = (char *)(out + n);
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(m[i].key) + 1, vl = strlen(m[i].value) + 1;
        memcpy(p, m[i].key, kl);
        out[i].key = p;
        p += kl;
        memcpy(p, m[i].value, vl);
        out[i].value = p;
        p += vl;
    }
    return out;
}

static void
swait_done(tether_client *c, const tether_reply *r, void *arg)
{
    (void)c;
    swait *w = arg;
    tt_call_result *res = w->res;
    res->err = r->err;
    res->msg = r->msg;
    if (r->err == TETHER_OK && r->msg == NULL) {
        res->data = (uint8_t *)tt_strndup((const char *)r->data, r->len);
        res->len = r->len;
        if (res->data == NULL) {
            res->err = TETHER_ENOMEM;
        }
    }
    if (r->errtext != NULL) {
        res->text = tt_strdup(r->errtext);
    }
    if (r->ntrailers > 0) {
        res->trailers = meta_block_copy(r->trailers, r->ntrailers);
        res->ntrailers = res->trailers != NULL ? r->ntrailers : 0;
    }
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static tether_err
disc_hedged_call(struct tt_disc *d, const tt_call_req *rq, const char *key, tt_call_result *res)
{
    if (tt_loop_pool_on_thread()) {
        return res->err = TETHER_ESTATE; /* would wait on the thread that must answer */
    }
    swait w = {.res = res};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    tether_err rc = disc_call_async(&d->base, rq, key, swait_done, &w, NULL);
    if (rc == TETHER_OK) {
        pthread_mutex_lock(&w.mu);
        while (!w.done) {
            pthread_cond_wait(&w.cv, &w.mu);
        }
        pthread_mutex_unlock(&w.mu);
        rc = res->err;
    } else if (rc == TETHER_ECONNREFUSED || rc == TETHER_ENOENT) {
        rc = TETHER_EAGAIN;
    } else {
        res->err = rc;
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

static size_t
disc_pending(const tether_client *c)
{
    struct tt_disc *d = (struct tt_disc *)c;
    size_t n = 0;
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->neps; i++) {
        n += tt_engine_pending(d->eps[i]->eng);
    }
    for (ep *e = d->grave; e != NULL; e = e->grave_next) {
        n += tt_engine_pending(e->eng);
    }
    pthread_mutex_unlock(&d->mu);
    return n;
}

/* ---------------------------------------------------------------------- */
/* Setup                                                                  */

/* The watch reports the instances alive when it starts from its own
 * thread, after tether_registry_watch() returned.  Without waiting for that
 * report, an asynchronous call made right after creation (which cannot
 * wait for an endpoint) would fail although instances are listed.  So wait
 * until every instance listed now is known (or was reported removed since)
 * and either one of them is connected or none is still connecting; or
 * until INITIAL_WAIT_MS passed (a safety bound: the reports and loopback
 * connects come within milliseconds, and one blackholed instance does not
 * hold up creation while another one is up). */
#define INITIAL_WAIT_MS 2000

static void
wait_initial_set(struct tt_disc *d, const char *service)
{
    tether_instance_list *list = NULL;
    if (tether_registry_list(d->reg, service, &list) != TETHER_OK) {
        return;
    }
    uint64_t until = tt_now_ns() + (uint64_t)INITIAL_WAIT_MS * 1000000ull;
    struct timespec ts = tt_timespec_ns(until);
    pthread_mutex_lock(&d->mu);
    for (;;) {
        size_t known = 0, connecting = 0, ready = 0;
        for (size_t i = 0; i < list->count; i++) {
            const char *id = list->items[i].id != NULL ? list->items[i].id : list->items[i].address;
            ssize_t k = find_ep(d, id);
            if (k >= 0) {
                int st = tt_engine_state(d->eps[k]->eng);
                known++;
                connecting += st == TT_ENGINE_CONNECTING;
                ready += st == TT_ENGINE_READY;
            }
        }
        int settled = known + d->nremoved >= list->count && (ready > 0 || connecting == 0);
        if (settled || pthread_cond_timedwait(&d->cv, &d->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&d->mu);
    tether_instance_list_free(list);
}

static void disc_destroy(tether_client *c);

static void
on_untimer(tt_task *t)
{
    struct tt_disc *d = (struct tt_disc *)((char *)t - offsetof(struct tt_disc, t_untimer));
    pthread_mutex_lock(&d->mu);
    dcall *dc = d->active;
    while (dc != NULL) {
        dcall *next = dc->next;
        if (dc->timer_armed) {
            tt_timer_cancel(d->loop, &dc->htmr);
            dc->timer_armed = 0;
            dcall_unref_locked(dc);
        }
        dc = next;
    }
    d->untimed = 1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static size_t
disc_instances(tether_client *c, tether_client_instance_stats *out, size_t cap)
{
    struct tt_disc *d = (struct tt_disc *)c;
    pthread_mutex_lock(&d->mu);
    size_t n = d->neps;
    for (size_t i = 0; i < n && i < cap; i++) {
        const ep *e = d->eps[i];
        memset(&out[i], 0, sizeof out[i]);
        snprintf(out[i].address, sizeof out[i].address, "%s", e->addr);
        out[i].outstanding = tt_engine_pending(e->eng);
        out[i].ejections = e->st_ejections;
        out[i].retries = e->st_retries;
        out[i].ejected = e->ej.state != TT_EJECT_NONE;
    }
    pthread_mutex_unlock(&d->mu);
    return n;
}

static const tt_client_ops disc_ops = {
    .call = disc_call,
    .call_async = disc_call_async,
    .cancel = disc_cancel,
    .pending = disc_pending,
    .destroy = disc_destroy,
    .instances = disc_instances,
};

tether_err
tt_disc_create(tether_registry *reg, const char *service, const tether_client_config *cfg,
               tether_client **out)
{
    if (cfg != NULL && (unsigned)cfg->balance > TETHER_BALANCE_HASH) {
        tt_log(TETHER_LOG_ERROR, "client: unknown balancing policy %d", (int)cfg->balance);
        return TETHER_EINVAL;
    }
    struct tt_disc *d = tt_calloc(1, sizeof *d);
    if (d == NULL) {
        return TETHER_ENOMEM;
    }
    tether_err rc = tt_client_init(&d->base, &disc_ops, cfg);
    if (rc != TETHER_OK) {
        tt_client_fini(&d->base);
        tt_free(d);
        return rc;
    }
    d->base.cfg.codec = TETHER_CODEC_NATIVE; /* instances are tether servers */
    d->base.codec = &tt_codec_native;
    switch (d->base.cfg.balance) {
    case TETHER_BALANCE_RANDOM:
        d->bal = &tt_balance_random;
        break;
    case TETHER_BALANCE_P2C:
        d->bal = &tt_balance_p2c;
        break;
    case TETHER_BALANCE_HASH:
        d->bal = &tt_balance_hash;
        break;
    case TETHER_BALANCE_ROUND_ROBIN:
        d->bal = &tt_balance_roundrobin;
        break;
    }
    d->bal_state = tt_now_ns() ^ (uint64_t)(uintptr_t)d;
    const tether_client_config *rc_cfg = &d->base.cfg;
    d->ejc = (tt_eject_cfg){.failures =
                                rc_cfg->eject_failures == TETHER_OFF ? 0 : rc_cfg->eject_failures,
                            .base_ms = rc_cfg->eject_base_ms,
                            .max_ms = rc_cfg->eject_max_ms,
                            .max_percent = rc_cfg->eject_max_percent};
    d->backup_p95 = rc_cfg->backup_ms == TETHER_BACKUP_P95;
    d->backup_ns = d->backup_p95 || rc_cfg->backup_ms == TETHER_OFF
                       ? 0
                       : (uint64_t)rc_cfg->backup_ms * 1000000ull;
    rc = tt_loop_pool_acquire(&d->loop);
    if (rc != TETHER_OK) {
        tt_client_fini(&d->base);
        tt_free(d);
        return rc;
    }
    pthread_mutex_init(&d->mu, NULL);
    tt_cond_init_monotonic(&d->cv);
    /* The client holds its own reference: the caller may close its
     * handle at once. */
    tt_registry_ref(reg);
    d->reg = reg;
    rc = tether_registry_watch(d->reg, service, on_watch, d, &d->watch);
    if (rc != TETHER_OK) {
        tether_registry_close(d->reg);
        tt_loop_pool_release(d->loop);
        pthread_mutex_destroy(&d->mu);
        pthread_cond_destroy(&d->cv);
        tt_client_fini(&d->base);
        tt_free(d);
        return rc;
    }
    wait_initial_set(d, service);
    *out = &d->base;
    return TETHER_OK;
}

static void
disc_destroy(tether_client *c)
{
    struct tt_disc *d = (struct tt_disc *)c;
    /* Stop the watch first: its callback must not run on freed state. */
    tether_watch_stop(d->watch);
    pthread_mutex_lock(&d->mu);
    d->closing = 1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    /* Destroying an engine runs its pending callbacks with TETHER_ECLOSED;
     * those callbacks take d's lock, so none is held here. */
    for (size_t i = 0; i < d->neps; i++) {
        tt_engine_destroy(d->eps[i]->eng);
        d->eps[i]->eng = NULL;
    }
    for (ep *e = d->grave; e != NULL; e = e->grave_next) {
        tt_engine_destroy(e->eng);
        e->eng = NULL;
    }
    /* Every call has its answer now; the hedging timers still armed hold
     * theirs: disarm them on their loop, where none can be running. */
    d->t_untimer.fn = on_untimer;
    tt_loop_post(d->loop, &d->t_untimer);
    pthread_mutex_lock(&d->mu);
    while (!d->untimed || d->ndcalls > 0) {
        pthread_cond_wait(&d->cv, &d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    tt_loop_pool_release(d->loop);
    for (size_t i = 0; i < d->neps; i++) {
        ep_free(d->eps[i]);
    }
    grave_free(d->grave);
    tt_free(d->eps);
    tt_free(d->cands);
    tether_registry_close(d->reg);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    tt_client_fini(&d->base);
    tt_free(d);
}
