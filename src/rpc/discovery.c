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
 * (our server closes only after draining what it accepted).
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/types.h>

#include "balance/balance.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/list.h"
#include "core/log.h"
#include "core/thread.h"
#include "net/loop_pool.h"
#include "registry/registry.h"
#include "rpc/client_int.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define MAX_TRIED 16

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
    struct dcall *active; /* async calls in flight, for tt_client cancel */
    uint64_t next_id;
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
                               .state_arg = e,
                               .tls = d->base.tls,
                               .server_name = d->base.server_name};
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
pick_locked(struct tt_disc *d, ep *const *tried, int ntried, const char *key, uint64_t *soonest)
{
    uint64_t now = tt_now_ms();
    *soonest = 0;
    for (size_t i = 0; i < d->neps; i++) {
        ep *e = d->eps[i];
        tt_cand *c = &d->cands[i];
        c->weight = e->weight;
        c->inflight = tt_engine_pending(e->eng);
        c->id_hash = e->id_hash;
        c->ok = !e->draining && !was_tried(tried, ntried, e) && !tt_engine_goaway(e->eng);
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

/* Is err, on endpoint e, proof that no handler saw the call? */
static int
retryable(tether_err err, ep *e)
{
    if (err == TETHER_ECONNREFUSED || err == TETHER_EGOINGAWAY) {
        return 1;
    }
    if (err == TETHER_ECONNRESET && tt_engine_goaway(e->eng)) {
        return 1;
    }
    return 0;
}

/* Note the outcome of a call on e (under mu). */
static void
note_outcome_locked(ep *e, tether_err err)
{
    if (err == TETHER_ECONNREFUSED) {
        backoff_locked(e);
    } else if (err == TETHER_EGOINGAWAY) {
        e->draining = 1;
    } else if (err == TETHER_OK) {
        e->backoff_ms = 0;
        e->backoff_until_ms = 0;
    }
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

static tether_err
disc_call(tether_client *c, const tt_call_req *rq, const char *key, tt_call_result *res)
{
    struct tt_disc *d = (struct tt_disc *)c;
    memset(res, 0, sizeof *res);
    uint64_t deadline = tt_now_ns() + (uint64_t)rq->timeout_ms * 1000000ull;
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
        int i = pick_locked(d, tried, ntried, key, &soonest);
        if (i < 0) {
            if (!wait_for_endpoint_locked(d, deadline, soonest)) {
                int listed = d->ever_listed;
                pthread_mutex_unlock(&d->mu);
                if (last == TETHER_OK) {
                    last = listed ? TETHER_ETIMEDOUT : TETHER_ENOENT;
                }
                return res->err = last;
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
        note_outcome_locked(e, rc);
        if (rc == TETHER_OK || !retryable(rc, e) || tt_now_ns() >= deadline) {
            ep *dead = tt_loop_pool_on_thread() ? NULL : grave_take_locked(d);
            pthread_mutex_unlock(&d->mu);
            grave_free(dead);
            return rc;
        }
        last = rc;
        if (ntried < MAX_TRIED) {
            tried[ntried++] = e;
        }
    }
}

/* An asynchronous call through discovery: the request is packed once and
 * re-sent as bytes when retried. */
typedef struct dcall {
    struct tt_disc *d;
    char *method;
    size_t method_len;
    uint8_t *body;
    size_t len;
    char *key;
    const ProtobufCMessageDescriptor *desc;
    tether_reply_fn fn;
    void *arg;
    uint64_t deadline_ns;
    ep *cur;
    uint64_t id;      /* the caller's handle for tether_client_cancel() */
    uint64_t cur_seq; /* the call's seq on cur's engine */
    int canceled;
    struct dcall *prev, *next; /* d->active */
    ep *tried[MAX_TRIED];
    int ntried;
} dcall;

static void dcall_done(tether_client *cli, const tether_reply *r, void *arg);

static void
dcall_free(dcall *dc)
{
    tt_free(dc->method);
    tt_free(dc->body);
    tt_free(dc->key);
    tt_free(dc);
}

/* Send dc to some endpoint.  Returns TETHER_OK once one accepted it (its
 * callback will run), or the error when none can.  An asynchronous call
 * does not wait for an endpoint to come up: with none ready it fails. */
static tether_err
dcall_issue(dcall *dc)
{
    struct tt_disc *d = dc->d;
    pthread_mutex_lock(&d->mu);
    tether_err last = d->ever_listed ? TETHER_ECONNREFUSED : TETHER_ENOENT;
    for (;;) {
        uint64_t soonest;
        int i = d->closing ? -1 : pick_locked(d, dc->tried, dc->ntried, dc->key, &soonest);
        if (i < 0 || tt_now_ns() >= dc->deadline_ns) {
            tether_err rc = d->closing ? TETHER_ECLOSED : last;
            pthread_mutex_unlock(&d->mu);
            return rc;
        }
        ep *e = d->eps[i];
        uint64_t now = tt_now_ns();
        tt_call_req rq = {.method = dc->method,
                          .method_len = dc->method_len,
                          .data = dc->body,
                          .len = dc->len,
                          .timeout_ms = (uint32_t)((dc->deadline_ns - now + 999999) / 1000000)};
        e->refs++;
        dc->cur = e;
        tether_err rc = tt_engine_call_async(e->eng, &rq, dcall_done, &d->base, dc, &dc->cur_seq);
        if (rc == TETHER_OK) {
            pthread_mutex_unlock(&d->mu);
            return TETHER_OK;
        }
        e->refs--;
        note_outcome_locked(e, rc);
        if (rc != TETHER_ECONNREFUSED) {
            backoff_locked(e);
        }
        last = rc;
        if (dc->ntried < MAX_TRIED) {
            dc->tried[dc->ntried++] = e;
        } else {
            pthread_mutex_unlock(&d->mu);
            return last;
        }
    }
}

static void
dcall_done(tether_client *cli, const tether_reply *r, void *arg)
{
    dcall *dc = arg;
    struct tt_disc *d = dc->d;
    pthread_mutex_lock(&d->mu);
    ep *e = dc->cur;
    e->refs--;
    note_outcome_locked(e, r->err);
    int retry = r->err != TETHER_OK && !dc->canceled && retryable(r->err, e) &&
                tt_now_ns() < dc->deadline_ns;
    if (retry && dc->ntried < MAX_TRIED) {
        dc->tried[dc->ntried++] = e;
    }
    if (!retry) {
        TT_DLIST_REMOVE(&d->active, dc);
    }
    pthread_mutex_unlock(&d->mu);
    if (retry && dcall_issue(dc) == TETHER_OK) {
        return;
    }
    if (retry) {
        pthread_mutex_lock(&d->mu);
        TT_DLIST_REMOVE(&d->active, dc);
        pthread_mutex_unlock(&d->mu);
    }
    tether_reply out = *r;
    if (r->err == TETHER_OK && dc->desc != NULL) {
        out.msg = protobuf_c_message_unpack(dc->desc, &tt_pb_allocator, r->len, r->data);
        if (out.msg == NULL) {
            out.err = TETHER_EBADREPLY;
        }
    }
    dc->fn(cli, &out, dc->arg);
    dcall_free(dc);
}

static tether_err
disc_call_async(tether_client *c, const tt_call_req *rq, const char *key, tether_reply_fn fn,
                void *arg, uint64_t *id)
{
    struct tt_disc *d = (struct tt_disc *)c;
    dcall *dc = tt_calloc(1, sizeof *dc);
    if (dc == NULL) {
        return TETHER_ENOMEM;
    }
    dc->d = d;
    dc->desc = rq->desc;
    dc->fn = fn;
    dc->arg = arg;
    dc->deadline_ns = tt_now_ns() + (uint64_t)rq->timeout_ms * 1000000ull;
    dc->method = tt_strndup(rq->method, rq->method_len);
    dc->method_len = rq->method_len;
    dc->len = rq->msg != NULL ? protobuf_c_message_get_packed_size(rq->msg) : rq->len;
    dc->body = tt_malloc(dc->len + 1);
    dc->key = key != NULL ? tt_strdup(key) : NULL;
    if (dc->method == NULL || dc->body == NULL || (key != NULL && dc->key == NULL)) {
        dcall_free(dc);
        return TETHER_ENOMEM;
    }
    if (rq->msg != NULL) {
        protobuf_c_message_pack(rq->msg, dc->body);
    } else if (rq->len > 0) {
        memcpy(dc->body, rq->data, rq->len);
    }
    /* Listed before it is sent: its callback may run before this
     * returns to the caller, and takes it off the list. */
    pthread_mutex_lock(&d->mu);
    dc->id = ++d->next_id;
    TT_DLIST_PUSH(&d->active, dc);
    pthread_mutex_unlock(&d->mu);
    uint64_t my_id = dc->id;
    tether_err rc = dcall_issue(dc);
    if (rc != TETHER_OK) {
        pthread_mutex_lock(&d->mu);
        TT_DLIST_REMOVE(&d->active, dc);
        pthread_mutex_unlock(&d->mu);
        dcall_free(dc);
        return rc;
    }
    if (id != NULL) {
        *id = my_id;
    }
    return TETHER_OK;
}

/* Cancel by the id the caller got: the engine call in flight for it is
 * canceled (no retry follows).  The endpoint is held so it cannot go to
 * the grave while its engine is told. */
static tether_err
disc_cancel(tether_client *c, uint64_t id)
{
    struct tt_disc *d = (struct tt_disc *)c;
    pthread_mutex_lock(&d->mu);
    dcall *dc = d->active;
    while (dc != NULL && dc->id != id) {
        dc = dc->next;
    }
    if (dc == NULL || dc->cur == NULL) {
        pthread_mutex_unlock(&d->mu);
        return TETHER_ENOENT;
    }
    dc->canceled = 1;
    ep *e = dc->cur;
    uint64_t seq = dc->cur_seq;
    e->refs++;
    pthread_mutex_unlock(&d->mu);
    tether_err rc = tt_engine_cancel(e->eng, seq);
    pthread_mutex_lock(&d->mu);
    e->refs--;
    pthread_mutex_unlock(&d->mu);
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

static const tt_client_ops disc_ops = {
    .call = disc_call,
    .call_async = disc_call_async,
    .cancel = disc_cancel,
    .pending = disc_pending,
    .destroy = disc_destroy,
};

tether_err
tt_disc_create(tether_registry *reg, const char *service, const tether_client_config *cfg,
               tether_client **out)
{
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
    default:
        d->bal = &tt_balance_roundrobin;
        break;
    }
    d->bal_state = tt_now_ns() ^ (uint64_t)(uintptr_t)d;
    pthread_mutex_init(&d->mu, NULL);
    tt_cond_init_monotonic(&d->cv);
    /* The client holds its own reference: the caller may close its
     * handle at once. */
    tt_registry_ref(reg);
    d->reg = reg;
    rc = tether_registry_watch(d->reg, service, on_watch, d, &d->watch);
    if (rc != TETHER_OK) {
        tether_registry_close(d->reg);
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
