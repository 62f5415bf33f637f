/*
 * watch.c - the etcd backend's watch.
 *
 * The generic layer's model (its thread, its table of known instances,
 * tt_watch_put/tt_watch_del) fits a streaming backend well: this file
 * only turns etcd's answers into "key K now holds this" / "key K is gone",
 * and the generic layer decides whether that is an ADDED, CHANGED or
 * REMOVED.  The body of the watch thread is:
 *
 *   1. range "<prefix>/<service>/" and report every instance, noting the
 *      store revision R the range saw (and reporting as gone any known
 *      key the range no longer has: that is the diff after a compaction);
 *   2. one streaming POST to /v3/watch from R+1 (over HTTP/1.1 the request
 *      body is complete, and the answer streams one JSON object a line);
 *      each event moves R to its mod_revision;
 *   3. when the stream breaks (etcd restarted, a member died, the
 *      connection was cut), watch again from R+1 on whichever member
 *      answers: nothing is missed, nothing repeated, and nothing is
 *      listed again;
 *   4. when etcd says R+1 was compacted, go back to 1.
 *
 * Stopping: tether_watch_stop() sets `stopping` and calls watch_wake,
 * which wakes the connection's curl_multi_poll(); the request in progress
 * is dropped at once.
 */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "registry/etcd/etcd.h"

struct etcd_watch {
    struct tether_watch super;
    struct tt_etcd_registry *er;
    struct tt_etcd_http http;
    char *service;
    char *prefix; /* "<prefix>/<service>/" */
    char *key64;
    char *end64;
    int64_t rev;    /* every event up to rev has been reported */
    bool need_list; /* (re)read everything before watching */
    /* The current stream. */
    bool created;
    bool compacted;
    bool unauthenticated; /* canceled: the token is dead */
    char why[200]; /* why the stream was given up, for the log */
    /* Keys the last range saw (only during a range). */
    char **seen;
    size_t nseen;
    size_t capseen;
};

tether_err
tt_etcd_watch_create(struct tether_registry *r, const char *service, struct tether_watch **out)
{
    struct tt_etcd_registry *er = (struct tt_etcd_registry *)r;
    struct etcd_watch *ew = tt_calloc(1, sizeof *ew);
    if (ew == NULL) {
        return TETHER_ENOMEM;
    }
    ew->er = er;
    ew->need_list = true;
    ew->service = tt_strdup(service);
    ew->prefix = tt_etcd_service_prefix(&er->cfg, service);
    if (ew->service == NULL || ew->prefix == NULL) {
        goto fail;
    }
    ew->key64 = tt_etcd_b64(ew->prefix, strlen(ew->prefix));
    ew->end64 = tt_etcd_prefix_end(ew->prefix);
    if (ew->key64 == NULL || ew->end64 == NULL) {
        goto fail;
    }
    /* The connection stops when the generic layer's flag is set; the flag
     * lives in `super` and is initialised before the thread starts. */
    tether_err err = tt_etcd_http_init(&ew->http, er, &ew->super.stopping);
    if (err != TETHER_OK) {
        tt_free(ew->service);
        tt_free(ew->prefix);
        tt_free(ew->key64);
        tt_free(ew->end64);
        tt_free(ew);
        return err;
    }
    *out = &ew->super;
    return TETHER_OK;

fail:
    tt_free(ew->service);
    tt_free(ew->prefix);
    tt_free(ew->key64);
    tt_free(ew->end64);
    tt_free(ew);
    return TETHER_ENOMEM;
}

void
tt_etcd_watch_destroy(struct tether_watch *w)
{
    struct etcd_watch *ew = (struct etcd_watch *)w;
    tt_etcd_http_fini(&ew->http);
    tt_free(ew->service);
    tt_free(ew->prefix);
    tt_free(ew->key64);
    tt_free(ew->end64);
    tt_free(ew);
}

void
tt_etcd_watch_wake(struct tether_watch *w)
{
    struct etcd_watch *ew = (struct etcd_watch *)w;
    tt_etcd_http_wake(&ew->http);
}

/* ---- step 1: range and diff ---------------------------------------------- */

static tether_err
on_range_kv(void *arg, const char *key, tether_instance *inst)
{
    struct etcd_watch *ew = arg;
    if (ew->nseen == ew->capseen) {
        size_t cap = ew->capseen == 0 ? 16 : ew->capseen * 2;
        char **n = tt_realloc(ew->seen, cap * sizeof *n);
        if (n == NULL) {
            return TETHER_ENOMEM;
        }
        ew->seen = n;
        ew->capseen = cap;
    }
    char *copy = tt_strdup(key);
    if (copy == NULL) {
        return TETHER_ENOMEM;
    }
    ew->seen[ew->nseen++] = copy;
    return tt_watch_put(&ew->super, key, inst);
}

static void
seen_clear(struct etcd_watch *ew)
{
    for (size_t i = 0; i < ew->nseen; i++) {
        tt_free(ew->seen[i]);
    }
    tt_free(ew->seen);
    ew->seen = NULL;
    ew->nseen = 0;
    ew->capseen = 0;
}

static bool
was_seen(const struct etcd_watch *ew, const char *key)
{
    for (size_t i = 0; i < ew->nseen; i++) {
        if (strcmp(ew->seen[i], key) == 0) {
            return true;
        }
    }
    return false;
}

/* Read everything and report the difference to what was known. */
static tether_err
relist(struct etcd_watch *ew)
{
    struct tether_watch *w = &ew->super;
    int64_t rev = 0;
    tether_err err = tt_etcd_range(&ew->http, ew->service, ew->er->cfg.timeout_ms * 3, false,
                                   on_range_kv, ew, &rev);
    if (err == TETHER_OK) {
        /* Known keys the range did not return are gone.  tt_watch_del
         * moves the last entry into the freed slot, so walking down from
         * the end visits every entry once. */
        for (size_t i = w->nknown; i-- > 0 && !tt_watch_stopping(w);) {
            if (!was_seen(ew, w->known[i].key)) {
                tt_watch_del(w, w->known[i].key);
            }
        }
        ew->rev = rev;
        ew->need_list = false;
    }
    seen_clear(ew);
    return err;
}

/* ---- step 2: the stream --------------------------------------------------- */

/* Apply one event of a watch answer. */
static void
apply_event(struct etcd_watch *ew, const json_t *ev)
{
    struct tether_watch *w = &ew->super;
    const json_t *type = json_object_get(ev, "type");
    bool del = json_is_string(type) && strcmp(json_string_value(type), "DELETE") == 0;
    if (type != NULL && !del &&
        !(json_is_string(type) && strcmp(json_string_value(type), "PUT") == 0)) {
        TT_WARN("registry: etcd watch on %s: event of unknown type skipped", ew->prefix);
        return;
    }
    char *key = NULL;
    char *value = NULL;
    size_t vlen = 0;
    int64_t mod = 0;
    bool enomem = false;
    if (!json_is_object(ev) ||
        !tt_etcd_kv(json_object_get(ev, "kv"), &key, &value, &vlen, &mod, &enomem)) {
        TT_WARN("registry: etcd watch on %s: malformed event skipped", ew->prefix);
        return;
    }
    if (strncmp(key, ew->prefix, strlen(ew->prefix)) != 0) {
        TT_WARN("registry: etcd watch on %s: event for a foreign key skipped", ew->prefix);
    } else if (mod != 0 && mod <= ew->rev) {
        /* Already reported (cannot happen when resuming from rev+1, but a
         * member lagging behind must not make us go back). */
    } else if (del) {
        tt_watch_del(w, key);
    } else {
        tether_instance inst;
        char why[160];
        int rc = tt_etcd_decode_value(key, ew->service, value, vlen, &inst, why, sizeof why);
        if (rc == 1) {
            if (tt_watch_put(w, key, &inst) != TETHER_OK) {
                TT_WARN("registry: etcd watch on %s: out of memory, %s not reported",
                        ew->prefix, key);
            }
            tt_instance_clear(&inst);
        } else {
            if (why[0] != '\0') {
                TT_WARN("registry: etcd: skipping %s: %s", key, why);
            }
            /* Whatever the key held before, it holds no instance now. */
            tt_watch_del(w, key);
        }
    }
    if (mod > ew->rev) {
        ew->rev = mod;
    }
    tt_free(key);
    tt_free(value);
}

/* One line of the watch answer. */
static bool
on_line(void *arg, const char *line, size_t len)
{
    struct etcd_watch *ew = arg;
    json_error_t jerr;
    json_t *j = json_loadb(line, len, 0, &jerr);
    bool go = false;
    const json_t *res = json_object_get(j, "result");
    if (j == NULL) {
        snprintf(ew->why, sizeof ew->why, "the watch answer is not JSON (%.80s)", jerr.text);
    } else if (json_object_get(j, "error") != NULL) {
        struct tt_etcd_reply rep = {200, j};
        snprintf(ew->why, sizeof ew->why, "the watch stream ended: %.120s",
                 tt_etcd_err_text(&rep));
    } else if (!json_is_object(res)) {
        snprintf(ew->why, sizeof ew->why, "unexpected line in the watch answer");
    } else if (json_is_true(json_object_get(res, "canceled"))) {
        int64_t compact = 0;
        if (tt_etcd_int(json_object_get(res, "compact_revision"), &compact) && compact > 0) {
            TT_INFO("registry: etcd watch on %s: revision %lld is compacted (oldest %lld); "
                    "reading everything again",
                    ew->prefix, (long long)(ew->rev + 1), (long long)compact);
            ew->compacted = true;
            ew->need_list = true;
        } else {
            const json_t *reason = json_object_get(res, "cancel_reason");
            const char *r = json_is_string(reason) ? json_string_value(reason)
                                                   : "no reason given";
            /* etcd checks the token when it creates a watch and answers a
             * dead one (expired, or etcd restarted) with this cancel, not
             * with a 401: "rpc error: code = Unauthenticated desc =
             * etcdserver: invalid auth token". */
            ew->unauthenticated = strstr(r, "Unauthenticated") != NULL ||
                                  strstr(r, "invalid auth token") != NULL;
            snprintf(ew->why, sizeof ew->why, "etcd canceled the watch: %.120s", r);
        }
    } else {
        if (json_is_true(json_object_get(res, "created"))) {
            ew->created = true;
        }
        const json_t *events = json_object_get(res, "events");
        if (events != NULL && !json_is_array(events)) {
            snprintf(ew->why, sizeof ew->why, "watch events are not an array");
        } else {
            size_t i;
            const json_t *ev;
            json_array_foreach(events, i, ev)
            {
                apply_event(ew, ev);
            }
            go = !tt_watch_stopping(&ew->super);
        }
    }
    json_decref(j);
    return go;
}

void
tt_etcd_watch_run(struct tether_watch *w)
{
    struct etcd_watch *ew = (struct etcd_watch *)w;
    uint32_t backoff = 0;
    bool failing = false;
    bool reauthed = false; /* logged in again since a stream was last created */
    while (!tt_watch_stopping(w)) {
        if (ew->need_list) {
            tether_err err = relist(ew);
            if (err != TETHER_OK) {
                if (err == TETHER_ECANCELED) {
                    break;
                }
                if (!failing) {
                    TT_WARN("registry: etcd at %s: cannot read %s (%s); retrying",
                            tt_etcd_endpoint(ew->er), ew->prefix, tether_strerror(err));
                }
                failing = true;
                backoff = tt_etcd_next_backoff(backoff);
                tt_etcd_http_sleep(&ew->http, backoff);
                continue;
            }
        }
        char start[24];
        snprintf(start, sizeof start, "%lld", (long long)(ew->rev + 1));
        json_t *req = json_pack("{s:{s:s,s:s,s:s}}", "create_request", "key", ew->key64,
                                "range_end", ew->end64, "start_revision", start);
        char *body = req != NULL ? tt_etcd_dump(req) : NULL;
        json_decref(req);
        if (body == NULL) {
            TT_WARN("registry: etcd watch on %s: out of memory; retrying", ew->prefix);
            tt_etcd_http_sleep(&ew->http, TT_ETCD_BACKOFF_CAP_MS);
            continue;
        }
        ew->created = false;
        ew->compacted = false;
        ew->unauthenticated = false;
        ew->why[0] = '\0';
        long status = 0;
        tether_err err = tt_etcd_stream(&ew->http, "/v3/watch", body, on_line, ew, &status);
        tt_free(body);
        if (tt_watch_stopping(w) || err == TETHER_ECANCELED) {
            break;
        }
        if (ew->created) {
            reauthed = false; /* the token worked */
        }
        if (ew->compacted) {
            continue; /* relist at once */
        }
        if (ew->unauthenticated && ew->er->cfg.user != NULL && !reauthed) {
            /* Log in again and watch at once; a second refusal in a row
             * is logged and retried like any other. */
            TT_DEBUG("registry: etcd watch on %s: %s; logging in again", ew->prefix, ew->why);
            tt_etcd_drop_token(ew->er);
            reauthed = true;
            continue;
        }
        if (ew->created && ew->why[0] == '\0') {
            /* A watch that worked and then broke: resume at once from the
             * next revision (on another member if this one is gone). */
            if (failing) {
                TT_INFO("registry: etcd watch on %s resumed", ew->prefix);
            }
            TT_DEBUG("registry: etcd watch on %s broke (%s); resuming from revision %lld",
                     ew->prefix, tether_strerror(err), (long long)(ew->rev + 1));
            atomic_fetch_add_explicit(&ew->er->super.stats.resumes, 1, memory_order_relaxed);
            failing = false;
            backoff = 0;
            continue;
        }
        if (!failing) {
            if (ew->why[0] != '\0') {
                TT_WARN("registry: etcd at %s: watch on %s: %s; retrying",
                        tt_etcd_endpoint(ew->er), ew->prefix, ew->why);
            } else if (err == TETHER_OK && status != 200) {
                TT_WARN("registry: etcd at %s: watch on %s refused (HTTP %ld); retrying",
                        tt_etcd_endpoint(ew->er), ew->prefix, status);
            } else {
                TT_WARN("registry: etcd at %s: cannot watch %s (%s); retrying",
                        tt_etcd_endpoint(ew->er), ew->prefix, tether_strerror(err));
            }
        }
        failing = true;
        backoff = tt_etcd_next_backoff(backoff);
        tt_etcd_http_sleep(&ew->http, backoff);
    }
}
