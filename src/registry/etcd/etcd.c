/*
 * etcd.c - the etcd backend's registry object: one lease per object,
 * shared by all of its registrations, one key per registration, and one
 * keep-alive thread per object.
 *
 * Keys and values (docs/etcd.md):
 *   <prefix>/<service>/<address>  ->  {"Op":0,"Addr":"<address>","Metadata":{...}}
 * put with the object's lease, so every key goes when the lease goes:
 * at once on revoke, within the TTL after a crash.
 *
 * Locks, in the order they are taken:
 *   op_mu   serialises everything that writes to etcd (grant, put, delete,
 *           revoke), held across those requests.  So a re-put by the
 *           keep-alive thread can never resurrect a key a deregister just
 *           deleted.  Requests have short timeouts, so it is held briefly
 *           even when etcd hangs.
 *   api_mu  the connection the callers' threads share (register,
 *           set_state, deregister, list).
 *   mu      the registration list and the lease id; never held across I/O.
 * The keep-alive thread has its own connection and takes op_mu only to
 * write; its keep-alive requests need no lock at all.
 *
 * Registry trouble never stops a server: when etcd cannot be reached at
 * register time, the registration is accepted, logged, and written by the
 * keep-alive thread as soon as etcd answers (docs/etcd.md, "Outages").
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/thread.h"
#include "registry/etcd/etcd.h"

/* How long the keep-alive thread sleeps with nothing to do (it is woken
 * when there is). */
#define IDLE_SLEEP_MS 60000

struct etcd_registration {
    struct tether_registration super;
    struct tt_etcd_registry *er;
    struct etcd_registration *next; /* in st->regs */
    char *key64;                    /* base64 of "<prefix>/<service>/<address>" */
    tether_instance inst;           /* owned copy: id, pid and the current state */
    bool written;                   /* put under the current lease (op_mu) */
};

struct tt_etcd_state {
    pthread_mutex_t op_mu;
    pthread_mutex_t api_mu;
    struct tt_etcd_http api;
    pthread_mutex_t mu;
    int64_t lease; /* 0: none granted yet, or lost */
    struct etcd_registration *regs;
    size_t nregs;
    /* base64 keys whose delete failed while the lease lives on for other
     * registrations: deleted by the keep-alive thread (op_mu). */
    char **orphans;
    size_t norphans;
    /* The keep-alive thread. */
    struct tt_etcd_http ka;
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    /* Something must be written (a pending registration, a lost lease,
     * an orphan): the keep-alive thread looks at once. */
    atomic_bool dirty;
    /* The crash guardian (guardian.c), under op_mu. */
    struct tt_etcd_guardian guard;
};

const char *
tt_etcd_endpoint(struct tt_etcd_registry *er)
{
    return er->cfg.endpoints[atomic_load(&er->cur_ep) % er->cfg.nendpoints];
}

/* Budget for one request from the keep-alive thread or a registration:
 * enough to try a second and third member when the first one hangs. */
static uint32_t
budget_ms(const struct tt_etcd_registry *er)
{
    size_t n = er->cfg.nendpoints < 3 ? er->cfg.nendpoints : 3;
    return er->cfg.timeout_ms * (uint32_t)n;
}

/* A transport-level failure (retry later) rather than a refusal. */
static bool
transient(tether_err err)
{
    return err == TETHER_ECONNREFUSED || err == TETHER_ETIMEDOUT || err == TETHER_ECONNRESET ||
           err == TETHER_EPROTO;
}

static tether_err
etcd_open(const char *url, const char *rest, struct tether_registry **out)
{
    struct tt_etcd_registry *er = tt_calloc(1, sizeof *er);
    struct tt_etcd_state *st = tt_calloc(1, sizeof *st);
    if (er == NULL || st == NULL) {
        tt_free(er);
        tt_free(st);
        return TETHER_ENOMEM;
    }
    tether_err err = tt_etcd_parse_url(url, rest, &er->cfg);
    if (err != TETHER_OK) {
        tt_free(er);
        tt_free(st);
        return err;
    }
    er->st = st;
    atomic_init(&er->cur_ep, 0);
    atomic_init(&st->stop, false);
    atomic_init(&st->dirty, false);
    tt_etcd_guardian_init(&st->guard);
    pthread_mutex_init(&er->tok_mu, NULL);
    pthread_mutex_init(&st->op_mu, NULL);
    pthread_mutex_init(&st->api_mu, NULL);
    pthread_mutex_init(&st->mu, NULL);
    /* No request here: registry trouble must not stop a server from
     * starting, so etcd is first contacted by the first real call. */
    err = tt_etcd_http_init(&st->api, er, NULL);
    if (err == TETHER_OK) {
        err = tt_etcd_http_init(&st->ka, er, &st->stop);
    }
    if (err != TETHER_OK) {
        tt_etcd_http_fini(&st->api);
        tt_etcd_http_fini(&st->ka);
        tt_etcd_cfg_free(&er->cfg);
        tt_free(st);
        tt_free(er);
        return err;
    }
    TT_DEBUG("registry: etcd at %s (%zu endpoint%s), prefix '%s', ttl %u s", er->cfg.endpoints[0],
             er->cfg.nendpoints, er->cfg.nendpoints == 1 ? "" : "s", er->cfg.prefix,
             er->cfg.ttl_s);
    *out = &er->super;
    return TETHER_OK;
}

static void
etcd_destroy(struct tether_registry *r)
{
    struct tt_etcd_registry *er = (struct tt_etcd_registry *)r;
    struct tt_etcd_state *st = er->st;
    if (st->thread_started) {
        atomic_store(&st->stop, true);
        tt_etcd_http_wake(&st->ka);
        pthread_join(st->thread, NULL);
    }
    tt_etcd_guardian_fini(&st->guard);
    tt_etcd_http_fini(&st->ka);
    tt_etcd_http_fini(&st->api);
    for (size_t i = 0; i < st->norphans; i++) {
        tt_free(st->orphans[i]);
    }
    tt_free(st->orphans);
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->api_mu);
    pthread_mutex_destroy(&st->op_mu);
    pthread_mutex_destroy(&er->tok_mu);
    tt_free(er->token);
    tt_etcd_cfg_free(&er->cfg);
    tt_free(st);
    tt_free(er);
}

/* ---- requests ------------------------------------------------------------ */

/* POST a JSON request built by the caller (req is consumed). */
static tether_err
post_json(struct tt_etcd_http *h, const char *path, json_t *req, uint32_t budget,
          struct tt_etcd_reply *rep)
{
    rep->status = 0;
    rep->json = NULL;
    char *body = req != NULL ? tt_etcd_dump(req) : NULL;
    json_decref(req);
    if (body == NULL) {
        return TETHER_ENOMEM;
    }
    tether_err err = tt_etcd_post(h, path, body, budget, rep);
    tt_free(body);
    return err;
}

/* The gRPC code of an error answer (0 if none). */
static int64_t
grpc_code(const struct tt_etcd_reply *rep)
{
    int64_t code = 0;
    if (json_is_object(rep->json) && !tt_etcd_int(json_object_get(rep->json, "code"), &code)) {
        code = 0;
    }
    return code;
}

/* Grant a lease of the configured TTL. */
static tether_err
grant(struct tt_etcd_registry *er, struct tt_etcd_http *h, int64_t *lease)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%u", er->cfg.ttl_s);
    struct tt_etcd_reply rep;
    tether_err err = post_json(h, "/v3/lease/grant", json_pack("{s:s}", "TTL", ttl),
                               budget_ms(er), &rep);
    if (err != TETHER_OK) {
        return err;
    }
    int64_t id = 0;
    int64_t got_ttl = 0;
    if (rep.status != 200) {
        TT_ERROR("registry: etcd at %s refused a lease (HTTP %ld): %s", tt_etcd_endpoint(er),
                 rep.status, tt_etcd_err_text(&rep));
        err = rep.status >= 500 ? TETHER_EPROTO : TETHER_EREGISTRY;
    } else if (!json_is_object(rep.json) || !tt_etcd_int(json_object_get(rep.json, "ID"), &id) ||
               id == 0 || !tt_etcd_int(json_object_get(rep.json, "TTL"), &got_ttl) ||
               got_ttl <= 0) {
        TT_ERROR("registry: etcd at %s answered a lease grant without a lease: %.200s",
                 tt_etcd_endpoint(er), rep.json != NULL ? "(unexpected JSON)" : "(not JSON)");
        err = TETHER_EPROTO;
    } else {
        *lease = id;
        TT_DEBUG("registry: etcd lease %llx granted, ttl %lld s", (unsigned long long)id,
                 (long long)got_ttl);
    }
    tt_etcd_reply_clear(&rep);
    return err;
}

/* Put reg's key and current value with lease.  TETHER_ELEASE: etcd says
 * the lease does not exist (any more). */
static tether_err
put_reg(struct tt_etcd_registry *er, struct tt_etcd_http *h, struct etcd_registration *reg,
        int64_t lease, uint32_t budget)
{
    char *value = NULL;
    tether_err err = tt_etcd_encode_value(&reg->inst, &value);
    if (err != TETHER_OK) {
        TT_ERROR("registry: cannot encode the entry for %s/%s: %s", reg->inst.service,
                 reg->inst.address, tether_strerror(err));
        return err == TETHER_ENOMEM ? err : TETHER_EREGISTRY;
    }
    char *value64 = tt_etcd_b64(value, strlen(value));
    tt_free(value);
    if (value64 == NULL) {
        return TETHER_ENOMEM;
    }
    char lid[24];
    snprintf(lid, sizeof lid, "%lld", (long long)lease);
    struct tt_etcd_reply rep;
    err = post_json(h, "/v3/kv/put",
                    json_pack("{s:s,s:s,s:s}", "key", reg->key64, "value", value64, "lease", lid),
                    budget, &rep);
    tt_free(value64);
    if (err != TETHER_OK) {
        return err;
    }
    if (rep.status == 404 && grpc_code(&rep) == 5) {
        err = TETHER_ELEASE;
    } else if (rep.status != 200) {
        TT_ERROR("registry: etcd at %s refused to put %s/%s (HTTP %ld): %s",
                 tt_etcd_endpoint(er), reg->inst.service, reg->inst.address, rep.status,
                 tt_etcd_err_text(&rep));
        err = rep.status >= 500 ? TETHER_EPROTO : TETHER_EREGISTRY;
    } else if (!json_is_object(rep.json)) {
        TT_ERROR("registry: etcd at %s: unexpected answer to a put", tt_etcd_endpoint(er));
        err = TETHER_EPROTO;
    }
    tt_etcd_reply_clear(&rep);
    return err;
}

/* Delete one key (base64); a key already gone is fine. */
static tether_err
delete_key(struct tt_etcd_registry *er, struct tt_etcd_http *h, const char *key64,
           uint32_t budget)
{
    struct tt_etcd_reply rep;
    tether_err err = post_json(h, "/v3/kv/deleterange", json_pack("{s:s}", "key", key64),
                               budget, &rep);
    if (err != TETHER_OK) {
        return err;
    }
    if (rep.status != 200 || !json_is_object(rep.json)) {
        TT_ERROR("registry: etcd at %s refused a delete (HTTP %ld): %s", tt_etcd_endpoint(er),
                 rep.status, tt_etcd_err_text(&rep));
        err = TETHER_EREGISTRY;
    }
    tt_etcd_reply_clear(&rep);
    return err;
}

/* Revoke a lease, which deletes its keys in one revision; a lease already
 * gone is fine. */
tether_err
tt_etcd_revoke_lease(struct tt_etcd_registry *er, struct tt_etcd_http *h, int64_t lease,
                     uint32_t budget)
{
    char lid[24];
    snprintf(lid, sizeof lid, "%lld", (long long)lease);
    struct tt_etcd_reply rep;
    tether_err err = post_json(h, "/v3/lease/revoke", json_pack("{s:s}", "ID", lid), budget,
                               &rep);
    if (err != TETHER_OK) {
        return err;
    }
    if (!(rep.status == 200 && json_is_object(rep.json)) &&
        !(rep.status == 404 && grpc_code(&rep) == 5)) {
        TT_ERROR("registry: etcd at %s refused to revoke lease %llx (HTTP %ld): %s",
                 tt_etcd_endpoint(er), (unsigned long long)lease, rep.status,
                 tt_etcd_err_text(&rep));
        err = TETHER_EREGISTRY;
    }
    tt_etcd_reply_clear(&rep);
    return err;
}

/* ---- the lease and the keys (op_mu held) --------------------------------- */

/* Forget the lease: every key must be put again under a new one. */
static void
lease_lost_locked(struct tt_etcd_state *st)
{
    pthread_mutex_lock(&st->mu);
    st->lease = 0;
    for (struct etcd_registration *r = st->regs; r != NULL; r = r->next) {
        r->written = false;
    }
    pthread_mutex_unlock(&st->mu);
    /* Keys of the old lease went with it. */
    for (size_t i = 0; i < st->norphans; i++) {
        tt_free(st->orphans[i]);
    }
    st->norphans = 0;
    atomic_store(&st->dirty, true);
}

/*
 * Bring etcd in line with the registrations: a lease, every key put under
 * it, every orphan deleted.  *regranted tells whether a new lease was
 * needed.  Stops at the first transport error (the caller retries later),
 * so op_mu is never held for more than a couple of timeouts.
 */
static tether_err
sync_locked(struct tt_etcd_registry *er, struct tt_etcd_http *h, bool *regranted)
{
    struct tt_etcd_state *st = er->st;
    uint32_t budget = budget_ms(er);
    *regranted = false;
    for (int attempt = 0; attempt < 2; attempt++) {
        /* A lease only for keys to put: orphans exist only under a lease
         * that lives. */
        if (st->lease == 0 && st->regs != NULL) {
            int64_t lease = 0;
            tether_err err = grant(er, h, &lease);
            if (err != TETHER_OK) {
                return err;
            }
            pthread_mutex_lock(&st->mu);
            st->lease = lease;
            pthread_mutex_unlock(&st->mu);
            atomic_store_explicit(&er->super.stats.lease, lease, memory_order_relaxed);
            atomic_store_explicit(&er->super.stats.ka_ok_ns, tt_now_ns(), memory_order_relaxed);
            *regranted = true;
            /* Before any key is put with it: a crash from here on is
             * covered. */
            tt_etcd_guardian_lease(&st->guard, &er->cfg, lease);
        }
        bool lost = false;
        for (struct etcd_registration *r = st->regs; r != NULL && !lost; r = r->next) {
            if (r->written || r->inst.state == TT_INSTANCE_NOT_SERVING) {
                continue; /* written, or withdrawn by the watchdog */
            }
            tether_err err = put_reg(er, h, r, st->lease, budget);
            if (err == TETHER_ELEASE) {
                TT_WARN("registry: etcd lease %llx is gone; granting a new one",
                        (unsigned long long)st->lease);
                atomic_fetch_add_explicit(&er->super.stats.reregs, 1, memory_order_relaxed);
                lease_lost_locked(st);
                lost = true;
            } else if (err != TETHER_OK) {
                return err;
            } else {
                r->written = true;
            }
        }
        if (lost) {
            continue;
        }
        while (st->norphans > 0) {
            tether_err err = delete_key(er, h, st->orphans[st->norphans - 1], budget);
            if (err != TETHER_OK && transient(err)) {
                return err;
            }
            /* Deleted, or refused for good: either way stop trying. */
            tt_free(st->orphans[--st->norphans]);
        }
        atomic_store(&st->dirty, false);
        return TETHER_OK;
    }
    return TETHER_EPROTO; /* the lease vanished twice in a row: try again later */
}

/* ---- the keep-alive thread ------------------------------------------------ */

/* One keep-alive: 1 alive, 0 gone, -1 no usable answer (err set). */
static int
keepalive_once(struct tt_etcd_registry *er, int64_t lease, tether_err *err)
{
    struct tt_etcd_state *st = er->st;
    char lid[24];
    snprintf(lid, sizeof lid, "%lld", (long long)lease);
    struct tt_etcd_reply rep;
    /* One POST per keep-alive: over HTTP/1.1 the gateway answers a
     * bidirectional stream only after the request body has ended. */
    *err = post_json(&st->ka, "/v3/lease/keepalive", json_pack("{s:s}", "ID", lid),
                     budget_ms(er), &rep);
    if (*err != TETHER_OK) {
        return -1;
    }
    int rc = -1;
    const json_t *res = json_object_get(rep.json, "result");
    int64_t ttl = 0;
    if (rep.status == 408 || rep.status >= 500) {
        /* The gateway's own connection to its server is closing (408 is
         * gRPC's Canceled: etcd is stopping or restarting) or the member
         * is unavailable: like a broken connection, retried quietly. */
        TT_DEBUG("registry: etcd at %s: keep-alive answered HTTP %ld: %s", tt_etcd_endpoint(er),
                 rep.status, tt_etcd_err_text(&rep));
        *err = TETHER_ECONNRESET;
    } else if (rep.status != 200 || !json_is_object(res) ||
        !tt_etcd_int(json_object_get(res, "TTL"), &ttl)) {
        TT_WARN("registry: etcd at %s: unexpected keep-alive answer (HTTP %ld): %s",
                tt_etcd_endpoint(er), rep.status,
                json_is_object(res) ? "bad TTL" : tt_etcd_err_text(&rep));
        *err = TETHER_EPROTO;
    } else {
        /* No TTL (etcd leaves zeros out) means the lease does not exist:
         * it expired while we could not reach etcd, or etcd lost its
         * data. */
        rc = ttl > 0 ? 1 : 0;
    }
    tt_etcd_reply_clear(&rep);
    return rc;
}

static void *
ka_main(void *arg)
{
    struct tt_etcd_registry *er = arg;
    struct tt_etcd_state *st = er->st;
    uint32_t interval = er->cfg.ttl_s * 1000u / 3u;
    uint32_t backoff = 0;
    uint64_t next_ka = 0;
    bool failing = false;
    while (!atomic_load(&st->stop)) {
        pthread_mutex_lock(&st->mu);
        size_t nregs = st->nregs;
        int64_t lease = st->lease;
        pthread_mutex_unlock(&st->mu);
        bool dirty = atomic_load(&st->dirty);
        if (nregs == 0 && !dirty) {
            /* Nothing to keep alive: the lease is left to expire (or was
             * revoked) and a new registration wakes us. */
            tt_etcd_http_sleep(&st->ka, IDLE_SLEEP_MS);
            continue;
        }
        if (dirty || lease == 0) {
            bool regranted = false;
            pthread_mutex_lock(&st->op_mu);
            tether_err err = sync_locked(er, &st->ka, &regranted);
            size_t n = st->nregs;
            pthread_mutex_unlock(&st->op_mu);
            if (err == TETHER_OK) {
                if (regranted || failing) {
                    TT_WARN("registry: etcd at %s: %zu registration%s written%s",
                            tt_etcd_endpoint(er), n, n == 1 ? "" : "s",
                            regranted ? " again under a new lease" : "");
                }
                failing = false;
                backoff = 0;
                next_ka = tt_now_ms() + interval;
                continue;
            }
            if (!failing) {
                TT_WARN("registry: etcd at %s: cannot register (%s); retrying",
                        tt_etcd_endpoint(er), tether_strerror(err));
            }
            failing = true;
            backoff = tt_etcd_next_backoff(backoff);
            tt_etcd_http_sleep(&st->ka, backoff);
            continue;
        }
        uint64_t now = tt_now_ms();
        if (now < next_ka) {
            tt_etcd_http_sleep(&st->ka, (uint32_t)(next_ka - now));
            continue;
        }
        tether_err err = TETHER_OK;
        int alive = keepalive_once(er, lease, &err);
        if (alive == 1) {
            atomic_store_explicit(&er->super.stats.ka_ok_ns, tt_now_ns(), memory_order_relaxed);
            if (failing) {
                TT_INFO("registry: etcd at %s answers again; lease %llx alive",
                        tt_etcd_endpoint(er), (unsigned long long)lease);
            }
            failing = false;
            backoff = 0;
            next_ka = tt_now_ms() + interval;
        } else if (alive == 0) {
            TT_WARN("registry: etcd lease %llx lost (expired while etcd was unreachable, "
                    "revoked by another process, or etcd lost its data); granting a new one and "
                    "putting every key again",
                    (unsigned long long)lease);
            pthread_mutex_lock(&st->op_mu);
            if (st->lease == lease) {
                atomic_fetch_add_explicit(&er->super.stats.reregs, 1, memory_order_relaxed);
                lease_lost_locked(st);
            }
            pthread_mutex_unlock(&st->op_mu);
        } else if (err != TETHER_ECANCELED) {
            if (!failing) {
                TT_WARN("registry: etcd at %s: keep-alive failed (%s); retrying",
                        tt_etcd_endpoint(er), tether_strerror(err));
            }
            failing = true;
            backoff = tt_etcd_next_backoff(backoff);
            tt_etcd_http_sleep(&st->ka, backoff);
        }
    }
    return NULL;
}

/* Start the keep-alive thread on first use (op_mu held). */
static tether_err
ensure_thread_locked(struct tt_etcd_registry *er)
{
    struct tt_etcd_state *st = er->st;
    if (st->thread_started) {
        return TETHER_OK;
    }
    int rc = tt_thread_start(&st->thread, ka_main, er);
    if (rc != 0) {
        TT_ERROR("registry: cannot start the etcd keep-alive thread (errno %d)", rc);
        return (tether_err)(TETHER_ESYSERR | rc);
    }
    st->thread_started = true;
    return TETHER_OK;
}

/* ---- registrations -------------------------------------------------------- */

/* A registration id that never repeats: pid and 64 random bits. */
static char *
make_id(void)
{
    char buf[48];
    snprintf(buf, sizeof buf, "%ld.%016llx", (long)getpid(),
             (unsigned long long)tt_registry_random64());
    return tt_strdup(buf);
}

static void
reg_free(struct etcd_registration *reg)
{
    tt_instance_clear(&reg->inst);
    tt_free(reg->key64);
    tt_free(reg);
}

static void
unlink_reg_locked(struct tt_etcd_state *st, struct etcd_registration *reg)
{
    pthread_mutex_lock(&st->mu);
    for (struct etcd_registration **pp = &st->regs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == reg) {
            *pp = reg->next;
            st->nregs--;
            break;
        }
    }
    pthread_mutex_unlock(&st->mu);
}

static tether_err
etcd_register(struct tether_registry *r, const tether_instance *inst,
              struct tether_registration **out)
{
    struct tt_etcd_registry *er = (struct tt_etcd_registry *)r;
    struct tt_etcd_state *st = er->st;
    struct etcd_registration *reg = tt_calloc(1, sizeof *reg);
    if (reg == NULL) {
        return TETHER_ENOMEM;
    }
    reg->er = er;
    tether_err err = tt_instance_copy(&reg->inst, inst);
    if (err != TETHER_OK) {
        tt_free(reg);
        return err;
    }
    reg->inst.id = make_id();
    reg->inst.pid = (int64_t)getpid();
    char *prefix = tt_etcd_service_prefix(&er->cfg, inst->service);
    size_t klen = prefix != NULL ? strlen(prefix) + strlen(inst->address) : 0;
    char *key = prefix != NULL ? tt_malloc(klen + 1) : NULL;
    if (key != NULL) {
        snprintf(key, klen + 1, "%s%s", prefix, inst->address);
        reg->key64 = tt_etcd_b64(key, klen);
    }
    tt_free(prefix);
    tt_free(key);
    if (reg->inst.id == NULL || reg->key64 == NULL) {
        reg_free(reg);
        return TETHER_ENOMEM;
    }

    pthread_mutex_lock(&st->op_mu);
    for (struct etcd_registration *o = st->regs; o != NULL; o = o->next) {
        if (strcmp(o->key64, reg->key64) == 0) {
            pthread_mutex_unlock(&st->op_mu);
            TT_ERROR("registry: %s at %s is already registered by this registry object "
                     "(one key per address)",
                     inst->service, inst->address);
            reg_free(reg);
            return TETHER_EREGISTRY;
        }
    }
    /* A failed delete of the same key must not remove it later. */
    for (size_t i = 0; i < st->norphans; i++) {
        if (strcmp(st->orphans[i], reg->key64) == 0) {
            tt_free(st->orphans[i]);
            st->orphans[i] = st->orphans[--st->norphans];
            break;
        }
    }
    err = ensure_thread_locked(er);
    if (err != TETHER_OK) {
        pthread_mutex_unlock(&st->op_mu);
        reg_free(reg);
        return err;
    }
    pthread_mutex_lock(&st->mu);
    reg->next = st->regs;
    st->regs = reg;
    st->nregs++;
    pthread_mutex_unlock(&st->mu);

    bool regranted = false;
    pthread_mutex_lock(&st->api_mu);
    err = sync_locked(er, &st->api, &regranted);
    pthread_mutex_unlock(&st->api_mu);
    if (err != TETHER_OK && !transient(err)) {
        /* etcd answered and refused (auth, a bad request): retrying will
         * not help, so say so now. */
        unlink_reg_locked(st, reg);
        pthread_mutex_unlock(&st->op_mu);
        reg_free(reg);
        return err == TETHER_ENOMEM ? err : TETHER_EREGISTRY;
    }
    if (err != TETHER_OK) {
        atomic_store(&st->dirty, true);
        TT_WARN("registry: etcd at %s is unreachable (%s); %s at %s will be registered as soon "
                "as it answers",
                tt_etcd_endpoint(er), tether_strerror(err), inst->service, inst->address);
    } else {
        TT_DEBUG("registry: registered %s at %s in etcd (lease %llx)", inst->service,
                 inst->address, (unsigned long long)st->lease);
    }
    pthread_mutex_unlock(&st->op_mu);
    /* A first registration (or a pending one) needs the thread now. */
    tt_etcd_http_wake(&st->ka);
    *out = &reg->super;
    return TETHER_OK;
}

static tether_err
etcd_set_state(struct tether_registration *g, tether_instance_state state)
{
    struct etcd_registration *reg = (struct etcd_registration *)g;
    struct tt_etcd_registry *er = reg->er;
    struct tt_etcd_state *st = er->st;
    if (reg->inst.state == state) {
        return TETHER_OK;
    }
    pthread_mutex_lock(&st->op_mu);
    tether_instance_state old = reg->inst.state;
    reg->inst.state = state;
    tether_err err = TETHER_OK;
    if (state == TT_INSTANCE_NOT_SERVING || old == TT_INSTANCE_NOT_SERVING) {
        /* The watchdog: the key goes while the lease lives on, and comes
         * back under it (by the keep-alive thread if etcd is away). */
        bool regranted = false;
        pthread_mutex_lock(&st->api_mu);
        if (state != TT_INSTANCE_NOT_SERVING) {
            err = sync_locked(er, &st->api, &regranted);
            if (transient(err)) {
                atomic_store(&st->dirty, true);
                err = TETHER_OK;
            }
        } else if (st->lease != 0 &&
                   (err = delete_key(er, &st->api, reg->key64, er->cfg.timeout_ms)) == TETHER_OK) {
            /* Deleted even if not known to be written: a put that timed
             * out may still have been applied. */
            reg->written = false;
        }
        pthread_mutex_unlock(&st->api_mu);
        tt_etcd_http_wake(&st->ka);
    } else if (reg->written && st->lease != 0) {
        /* Same key, same lease: readers see the old value or the new. */
        pthread_mutex_lock(&st->api_mu);
        err = put_reg(er, &st->api, reg, st->lease, er->cfg.timeout_ms);
        if (err == TETHER_ELEASE) {
            lease_lost_locked(st);
            bool regranted = false;
            err = sync_locked(er, &st->api, &regranted);
        }
        pthread_mutex_unlock(&st->api_mu);
    }
    /* Not written yet: the pending put carries the new state. */
    if (err != TETHER_OK) {
        reg->inst.state = old;
        TT_WARN("registry: cannot set %s at %s to %s in etcd: %s", reg->inst.service,
                reg->inst.address, tether_instance_state_name(state), tether_strerror(err));
        err = err == TETHER_ENOMEM ? err : TETHER_EREGISTRY;
    }
    pthread_mutex_unlock(&st->op_mu);
    return err;
}

static tether_err
etcd_deregister(struct tether_registration *g)
{
    struct etcd_registration *reg = (struct etcd_registration *)g;
    struct tt_etcd_registry *er = reg->er;
    struct tt_etcd_state *st = er->st;
    tether_err err = TETHER_OK;
    pthread_mutex_lock(&st->op_mu);
    unlink_reg_locked(st, reg);
    bool last = st->nregs == 0;
    int64_t lease = st->lease;
    /* Even a registration not known to be written is removed: a put that
     * timed out may still have been applied. */
    if (lease != 0) {
        pthread_mutex_lock(&st->api_mu);
        if (last) {
            /* The last key of this lease: revoking it removes the key and
             * stops the lease at once, in one request. */
            err = tt_etcd_revoke_lease(er, &st->api, lease, er->cfg.timeout_ms);
            /* Revoked: the guardian goes quietly.  Not: it revokes the
             * lease itself, retrying while the lease can still exist. */
            tt_etcd_guardian_release(&st->guard, err == TETHER_OK);
            if (err != TETHER_OK) {
                err = delete_key(er, &st->api, reg->key64, er->cfg.timeout_ms);
            }
            /* Revoked or not, this lease is not kept alive any more: it
             * ends within its TTL, and the next registration gets a new
             * one. */
            pthread_mutex_lock(&st->mu);
            st->lease = 0;
            pthread_mutex_unlock(&st->mu);
            for (size_t i = 0; i < st->norphans; i++) {
                tt_free(st->orphans[i]);
            }
            st->norphans = 0;
            if (err != TETHER_OK) {
                TT_WARN("registry: cannot remove %s at %s from etcd (%s); it goes when lease "
                        "%llx expires, within %u s",
                        reg->inst.service, reg->inst.address, tether_strerror(err),
                        (unsigned long long)lease, er->cfg.ttl_s);
            }
        } else {
            err = delete_key(er, &st->api, reg->key64, er->cfg.timeout_ms);
            if (err != TETHER_OK) {
                /* The lease lives on for the other registrations, so the
                 * key would too: the keep-alive thread deletes it later. */
                char **n = tt_realloc(st->orphans, (st->norphans + 1) * sizeof *n);
                char *k = tt_strdup(reg->key64);
                if (n != NULL) {
                    st->orphans = n;
                }
                if (n != NULL && k != NULL) {
                    st->orphans[st->norphans++] = k;
                    atomic_store(&st->dirty, true);
                } else {
                    tt_free(k);
                }
                TT_WARN("registry: cannot remove %s at %s from etcd (%s); retrying in the "
                        "background",
                        reg->inst.service, reg->inst.address, tether_strerror(err));
            }
        }
        pthread_mutex_unlock(&st->api_mu);
    }
    pthread_mutex_unlock(&st->op_mu);
    if (err != TETHER_OK) {
        tt_etcd_http_wake(&st->ka);
        err = TETHER_EREGISTRY;
    } else {
        TT_DEBUG("registry: deregistered %s at %s from etcd", reg->inst.service,
                 reg->inst.address);
    }
    reg_free(reg);
    return err;
}

/* ---- reading -------------------------------------------------------------- */

tether_err
tt_etcd_range(struct tt_etcd_http *h, const char *service, uint32_t budget, bool log_failures,
              tt_etcd_kv_fn fn, void *arg, int64_t *revision)
{
    struct tt_etcd_registry *er = h->er;
    char *prefix = tt_etcd_service_prefix(&er->cfg, service);
    char *key64 = prefix != NULL ? tt_etcd_b64(prefix, strlen(prefix)) : NULL;
    char *end64 = prefix != NULL ? tt_etcd_prefix_end(prefix) : NULL;
    tether_err err = TETHER_ENOMEM;
    struct tt_etcd_reply rep = {0, NULL};
    if (key64 == NULL || end64 == NULL) {
        goto done;
    }
    /* The prefix ends in '/': "calc/" never picks up "calcXYZ/...". */
    err = post_json(h, "/v3/kv/range", json_pack("{s:s,s:s}", "key", key64, "range_end", end64),
                    budget, &rep);
    if (err != TETHER_OK) {
        if (err != TETHER_ECANCELED && err != TETHER_ENOMEM) {
            tt_log(log_failures ? TETHER_LOG_ERROR : TETHER_LOG_DEBUG,
                   "registry: etcd at %s: cannot read %s: %s", tt_etcd_endpoint(er), prefix,
                   tether_strerror(err));
            err = TETHER_EREGISTRY;
        }
        goto done;
    }
    const json_t *hdr = json_object_get(rep.json, "header");
    const json_t *kvs = json_object_get(rep.json, "kvs");
    int64_t rev = 0;
    if (rep.status != 200 || !json_is_object(hdr) ||
        !tt_etcd_int(json_object_get(hdr, "revision"), &rev) || rev <= 0 ||
        (kvs != NULL && !json_is_array(kvs))) {
        tt_log(log_failures ? TETHER_LOG_ERROR : TETHER_LOG_DEBUG,
               "registry: etcd at %s: bad answer to a range of %s (HTTP %ld): %s",
               tt_etcd_endpoint(er), prefix, rep.status,
               rep.status != 200 || rep.json == NULL ? tt_etcd_err_text(&rep) : "unexpected JSON");
        err = TETHER_EREGISTRY;
        goto done;
    }
    err = TETHER_OK;
    size_t i;
    const json_t *kv;
    json_array_foreach(kvs, i, kv)
    {
        char *key = NULL;
        char *value = NULL;
        size_t vlen = 0;
        int64_t mod = 0;
        bool enomem = false;
        if (!tt_etcd_kv(kv, &key, &value, &vlen, &mod, &enomem)) {
            TT_WARN("registry: etcd: skipping a malformed key-value under %s", prefix);
            continue;
        }
        tether_instance inst;
        char why[160];
        int rc = tt_etcd_decode_value(key, service, value, vlen, &inst, why, sizeof why);
        if (rc == 1) {
            err = fn(arg, key, &inst);
            tt_instance_clear(&inst);
        } else if (rc < 0) {
            err = TETHER_ENOMEM;
        } else if (why[0] != '\0') {
            TT_WARN("registry: etcd: skipping %s: %s", key, why);
        }
        tt_free(key);
        tt_free(value);
        if (err != TETHER_OK) {
            goto done;
        }
    }
    *revision = rev;

done:
    tt_etcd_reply_clear(&rep);
    tt_free(prefix);
    tt_free(key64);
    tt_free(end64);
    return err;
}

static tether_err
list_push(void *arg, const char *key, tether_instance *inst)
{
    (void)key;
    return tt_instance_list_push_take(arg, inst);
}

static tether_err
etcd_list(struct tether_registry *r, const char *service, tether_instance_list *out)
{
    struct tt_etcd_registry *er = (struct tt_etcd_registry *)r;
    struct tt_etcd_state *st = er->st;
    int64_t rev = 0;
    pthread_mutex_lock(&st->api_mu);
    tether_err err = tt_etcd_range(&st->api, service, budget_ms(er), true, list_push, out, &rev);
    pthread_mutex_unlock(&st->api_mu);
    return err;
}

const struct tt_registry_ops tt_etcd_registry_ops = {
    .scheme = "etcd",
    .open = etcd_open,
    .destroy = etcd_destroy,
    .register_ = etcd_register,
    .set_state = etcd_set_state,
    .deregister = etcd_deregister,
    .list = etcd_list,
    .watch_create = tt_etcd_watch_create,
    .watch_run = tt_etcd_watch_run,
    .watch_wake = tt_etcd_watch_wake,
    .watch_destroy = tt_etcd_watch_destroy,
};
