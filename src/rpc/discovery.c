/*
 * discovery.c - a client by service name: follows a registry watch, keeps
 * one single-connection client per instance, balances calls across them
 * and retries calls that never reached a handler.
 *
 * Endpoints.  Each registered instance (keyed by its registration id, so a
 * restarted instance at the same address is a new endpoint) becomes an
 * endpoint with a lazily connected client.  An endpoint leaves the pick set
 * when the registry removes it or marks it draining, when its server sent
 * GOAWAY, or while it is in connect backoff.  Removed endpoints go to the
 * graveyard and are destroyed once no call uses them, never from a
 * client's own I/O thread.
 *
 * Retries.  Only failures that prove no handler saw the call are retried:
 * connection refused, TETHER_EGOINGAWAY (the server refuses calls after it
 * said GOAWAY), and a reset of a connection whose server had said GOAWAY
 * (our server closes only after draining what it accepted).
 */
#include <errno.h>
#include <pthread.h>
#include <sys/types.h>
#include <string.h>

#include "balance/balance.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "rpc/client_int.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define MAX_TRIED 16

typedef struct ep {
    char *id;
    char *addr;
    uint32_t weight;
    uint64_t id_hash;
    int draining;
    int removed;
    int connecting; /* the watch thread is connecting to it: not picked yet */
    int refs;       /* calls using it now */
    uint64_t backoff_until_ms;
    uint32_t backoff_ms;
    tether_client *cli;
    struct ep *grave_next;
} ep;

struct tt_disc {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the endpoint set changed */
    tether_client_config cfg;
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
};

/* ---------------------------------------------------------------------- */
/* Endpoint set (under mu)                                                */

static void
ep_free(ep *e)
{
    tether_client_destroy(e->cli);
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

static void backoff_locked(ep *e);

/* A single-connection client for e's address (d->cfg is set at creation
 * only, so no lock is needed to read it). */
static tether_err
ep_connect(struct tt_disc *d, const ep *e, tether_client **out)
{
    tether_client_config cfg = d->cfg;
    cfg.balance = TETHER_BALANCE_ROUND_ROBIN;
    return tether_client_create(e->addr, &cfg, out);
}

static void
on_watch(tether_watch_event ev, const tether_instance *inst, void *arg)
{
    struct tt_disc *d = arg;
    const char *id = inst->id != NULL ? inst->id : inst->address;
    ep *dead = NULL;
    ep *fresh = NULL;
    pthread_mutex_lock(&d->mu);
    ssize_t i = find_ep(d, id);
    if (ev == TETHER_WATCH_REMOVED) {
        d->nremoved++;
        if (i >= 0) {
            ep *e = d->eps[i];
            d->eps[i] = d->eps[--d->neps];
            e->removed = 1;
            if (e->refs == 0 && !tt_client_on_io_thread()) {
                dead = e;
            } else {
                e->grave_next = d->grave;
                d->grave = e;
            }
        }
    } else if (i >= 0) {
        d->eps[i]->weight = inst->weight > 0 ? inst->weight : 1;
        d->eps[i]->draining = inst->state == TETHER_INSTANCE_DRAINING;
    } else if (inst->address != NULL) {
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
                return;
            }
            d->cands = cands;
            d->cap = cap;
        }
        ep *e = tt_calloc(1, sizeof *e);
        if (e != NULL) {
            e->id = tt_strdup(id);
            e->addr = tt_strdup(inst->address);
        }
        if (e == NULL || e->id == NULL || e->addr == NULL) {
            if (e != NULL) {
                ep_free(e); /* no client yet */
            }
            pthread_mutex_unlock(&d->mu);
            return;
        }
        e->weight = inst->weight > 0 ? inst->weight : 1;
        e->draining = inst->state == TETHER_INSTANCE_DRAINING;
        e->id_hash = tt_hash64(e->addr, strlen(e->addr), 0);
        e->connecting = 1;
        d->eps[d->neps++] = e;
        d->ever_listed = 1;
        fresh = e;
    }
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    if (dead != NULL) {
        ep_free(dead);
    }
    if (fresh != NULL) {
        /* Connect here, on the watch thread, before any call is sent to
         * it: a new instance's first calls (in a rolling restart, say) pay
         * for no connect and no thread start.  Only this thread removes
         * endpoints, so fresh stays valid. */
        tether_client *cli = NULL;
        tether_err rc = ep_connect(d, fresh, &cli);
        pthread_mutex_lock(&d->mu);
        fresh->connecting = 0;
        if (rc == TETHER_OK && fresh->cli == NULL) {
            fresh->cli = cli;
            cli = NULL;
        } else if (rc != TETHER_OK) {
            backoff_locked(fresh);
        }
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        tether_client_destroy(cli);
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
 * the earliest backoff end among endpoints set aside (0 if none). */
static int
pick_locked(struct tt_disc *d, ep *const *tried, int ntried, const char *key,
            uint64_t *soonest)
{
    uint64_t now = tt_now_ms();
    *soonest = 0;
    for (size_t i = 0; i < d->neps; i++) {
        ep *e = d->eps[i];
        tt_cand *c = &d->cands[i];
        c->weight = e->weight;
        c->inflight = e->cli != NULL ? tether_client_pending(e->cli) : 0;
        c->id_hash = e->id_hash;
        c->ok = !e->draining && !e->connecting && !was_tried(tried, ntried, e) &&
                !(e->cli != NULL && tt_client_goaway(e->cli));
        if (c->ok && e->backoff_until_ms > now) {
            c->ok = 0;
            if (*soonest == 0 || e->backoff_until_ms < *soonest) {
                *soonest = e->backoff_until_ms;
            }
        }
    }
    return d->bal->pick(d->cands, d->neps, &d->bal_state, key, key != NULL ? strlen(key) : 0);
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

/* Make sure e has a client (under mu: a loopback connect is quick, and a
 * refused one fails at once).  Returns the connect error. */
static tether_err
ensure_client_locked(struct tt_disc *d, ep *e)
{
    if (e->cli != NULL) {
        return TETHER_OK;
    }
    return ep_connect(d, e, &e->cli);
}

/* Is err, on endpoint e, proof that no handler saw the call? */
static int
retryable(tether_err err, ep *e)
{
    if (err == TETHER_ECONNREFUSED || err == TETHER_EGOINGAWAY) {
        return 1;
    }
    if (err == TETHER_ECONNRESET && e->cli != NULL && tt_client_goaway(e->cli)) {
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

tether_err
tt_disc_call(struct tt_disc *d, const char *key, const char *method, const ProtobufCMessage *req,
             const void *data, size_t len, const ProtobufCMessageDescriptor *desc,
             ProtobufCMessage **msg, uint8_t **out, size_t *out_len, uint32_t timeout_ms,
             char **errtext)
{
    if (timeout_ms == 0) {
        timeout_ms = d->cfg.call_timeout_ms;
    }
    uint64_t deadline = tt_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    ep *tried[MAX_TRIED];
    int ntried = 0;
    tether_err last = TETHER_OK;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        if (d->closing) {
            pthread_mutex_unlock(&d->mu);
            return TETHER_ECLOSED;
        }
        uint64_t soonest;
        int i = pick_locked(d, tried, ntried, key, &soonest);
        if (i < 0) {
            if (!wait_for_endpoint_locked(d, deadline, soonest)) {
                int listed = d->ever_listed;
                pthread_mutex_unlock(&d->mu);
                if (last != TETHER_OK) {
                    return last;
                }
                return listed ? TETHER_ETIMEDOUT : TETHER_ENOENT;
            }
            /* Something may have changed: instances tried before may be
             * worth a new try once their backoff ends. */
            if (ntried == MAX_TRIED || soonest != 0) {
                ntried = 0;
            }
            continue;
        }
        ep *e = d->eps[i];
        tether_err rc = ensure_client_locked(d, e);
        if (rc != TETHER_OK) {
            backoff_locked(e);
            last = rc;
            if (ntried < MAX_TRIED) {
                tried[ntried++] = e;
            }
            continue;
        }
        e->refs++;
        tether_client *cli = e->cli;
        pthread_mutex_unlock(&d->mu);
        uint64_t now = tt_now_ns();
        uint32_t left = now >= deadline ? 1 : (uint32_t)((deadline - now + 999999) / 1000000);
        if (errtext != NULL) {
            tether_free(*errtext);
            *errtext = NULL;
        }
        if (desc != NULL) {
            rc = tether_client_call(cli, method, req, desc, msg, left, errtext);
        } else {
            rc = tether_client_call_raw(cli, method, data, len, out, out_len, left, errtext);
        }
        pthread_mutex_lock(&d->mu);
        e->refs--;
        note_outcome_locked(e, rc);
        if (rc == TETHER_OK || !retryable(rc, e) || tt_now_ns() >= deadline) {
            ep *dead = tt_client_on_io_thread() ? NULL : grave_take_locked(d);
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
    tether_client *outer;
    char *method;
    uint8_t *body;
    size_t len;
    const ProtobufCMessageDescriptor *desc;
    tether_reply_fn fn;
    void *arg;
    uint64_t deadline_ns;
    ep *cur;
    ep *tried[MAX_TRIED];
    int ntried;
} dcall;

static void dcall_done(tether_client *cli, const tether_reply *r, void *arg);

static void
dcall_free(dcall *dc)
{
    tt_free(dc->method);
    tt_free(dc->body);
    tt_free(dc);
}

/* Send dc to some endpoint.  Returns TETHER_OK once one accepted it (its
 * callback will run), or the error when none can. */
static tether_err
dcall_issue(dcall *dc)
{
    struct tt_disc *d = dc->d;
    tether_err last = TETHER_ENOENT;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        uint64_t soonest;
        int i = d->closing ? -1 : pick_locked(d, dc->tried, dc->ntried, NULL, &soonest);
        if (i < 0 || tt_now_ns() >= dc->deadline_ns) {
            pthread_mutex_unlock(&d->mu);
            return d->closing ? TETHER_ECLOSED : last;
        }
        ep *e = d->eps[i];
        tether_err rc = ensure_client_locked(d, e);
        if (rc == TETHER_OK) {
            uint64_t now = tt_now_ns();
            uint32_t left = (uint32_t)((dc->deadline_ns - now + 999999) / 1000000);
            e->refs++;
            dc->cur = e;
            rc = tether_client_call_async_raw(e->cli, dc->method, dc->body, dc->len, left,
                                              dcall_done, dc);
            if (rc == TETHER_OK) {
                pthread_mutex_unlock(&d->mu);
                return TETHER_OK;
            }
            e->refs--;
        }
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
    (void)cli;
    dcall *dc = arg;
    struct tt_disc *d = dc->d;
    pthread_mutex_lock(&d->mu);
    ep *e = dc->cur;
    e->refs--;
    note_outcome_locked(e, r->err);
    int retry = r->err != TETHER_OK && retryable(r->err, e) && tt_now_ns() < dc->deadline_ns;
    if (retry && dc->ntried < MAX_TRIED) {
        dc->tried[dc->ntried++] = e;
    }
    pthread_mutex_unlock(&d->mu);
    if (retry && dcall_issue(dc) == TETHER_OK) {
        return;
    }
    tether_reply out = *r;
    if (r->err == TETHER_OK && dc->desc != NULL) {
        out.msg = protobuf_c_message_unpack(dc->desc, &tt_pb_allocator, r->len, r->data);
        if (out.msg == NULL) {
            out.err = TETHER_EBADREPLY;
        }
    }
    dc->fn(dc->outer, &out, dc->arg);
    dcall_free(dc);
}

tether_err
tt_disc_call_async(struct tt_disc *d, tether_client *outer, const char *method,
                   const ProtobufCMessage *req, const void *data, size_t len,
                   const ProtobufCMessageDescriptor *desc, uint32_t timeout_ms,
                   tether_reply_fn fn, void *arg)
{
    if (method == NULL || fn == NULL || (data == NULL && len > 0)) {
        return TETHER_EINVAL;
    }
    if (timeout_ms == 0) {
        timeout_ms = d->cfg.call_timeout_ms;
    }
    dcall *dc = tt_calloc(1, sizeof *dc);
    if (dc == NULL) {
        return TETHER_ENOMEM;
    }
    dc->d = d;
    dc->outer = outer;
    dc->desc = desc;
    dc->fn = fn;
    dc->arg = arg;
    dc->deadline_ns = tt_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    dc->method = tt_strdup(method);
    dc->len = req != NULL ? protobuf_c_message_get_packed_size(req) : len;
    dc->body = tt_malloc(dc->len);
    if (dc->method == NULL || dc->body == NULL) {
        dcall_free(dc);
        return TETHER_ENOMEM;
    }
    if (req != NULL) {
        protobuf_c_message_pack(req, dc->body);
    } else if (len > 0) {
        memcpy(dc->body, data, len);
    }
    tether_err rc = dcall_issue(dc);
    if (rc != TETHER_OK) {
        dcall_free(dc);
    }
    return rc;
}

size_t
tt_disc_pending(struct tt_disc *d)
{
    size_t n = 0;
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->neps; i++) {
        if (d->eps[i]->cli != NULL) {
            n += tether_client_pending(d->eps[i]->cli);
        }
    }
    for (ep *e = d->grave; e != NULL; e = e->grave_next) {
        if (e->cli != NULL) {
            n += tether_client_pending(e->cli);
        }
    }
    pthread_mutex_unlock(&d->mu);
    return n;
}

/* ---------------------------------------------------------------------- */
/* Setup                                                                  */

/* The watch reports the instances alive when it starts from its own
 * thread, after tether_registry_watch() returned.  Without waiting for that
 * report, an asynchronous call made right after creation (which cannot
 * wait for an endpoint) would fail with TETHER_ENOENT although instances
 * are listed.  So wait until every instance listed now is known, or was
 * reported removed since, or INITIAL_WAIT_MS passed (a safety bound only:
 * the report comes within milliseconds). */
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
        size_t known = 0;
        for (size_t i = 0; i < list->count; i++) {
            const char *id = list->items[i].id != NULL ? list->items[i].id
                                                       : list->items[i].address;
            ssize_t k = find_ep(d, id);
            known += k >= 0 && !d->eps[k]->connecting;
        }
        if (known + d->nremoved >= list->count ||
            pthread_cond_timedwait(&d->cv, &d->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&d->mu);
    tether_instance_list_free(list);
}

tether_err
tt_disc_create(const char *url, const char *service, const tether_client_config *cfg,
               struct tt_disc **out)
{
    struct tt_disc *d = tt_calloc(1, sizeof *d);
    if (d == NULL) {
        return TETHER_ENOMEM;
    }
    tt_client_config_resolve(&d->cfg, cfg);
    if (cfg != NULL) {
        d->cfg.balance = cfg->balance;
    }
    switch (d->cfg.balance) {
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
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    tether_err rc = tether_registry_open(url, &d->reg);
    if (rc == TETHER_OK) {
        rc = tether_registry_watch(d->reg, service, on_watch, d, &d->watch);
    }
    if (rc != TETHER_OK) {
        tether_registry_close(d->reg);
        pthread_mutex_destroy(&d->mu);
        pthread_cond_destroy(&d->cv);
        tt_free(d);
        return rc;
    }
    wait_initial_set(d, service);
    *out = d;
    return TETHER_OK;
}

void
tt_disc_destroy(struct tt_disc *d)
{
    if (d == NULL) {
        return;
    }
    /* Stop the watch first: its callback must not run on freed state. */
    tether_watch_stop(d->watch);
    pthread_mutex_lock(&d->mu);
    d->closing = 1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    /* Destroying a client runs its pending callbacks with TETHER_ECLOSED;
     * those callbacks may touch d's lock, so none is held here. */
    for (size_t i = 0; i < d->neps; i++) {
        tether_client_destroy(d->eps[i]->cli);
        d->eps[i]->cli = NULL;
    }
    for (ep *e = d->grave; e != NULL; e = e->grave_next) {
        tether_client_destroy(e->cli);
        e->cli = NULL;
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
    tt_free(d);
}
