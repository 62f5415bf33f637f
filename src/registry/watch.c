/*
 * watch.c - the generic half of tether_registry_watch(): the watch thread,
 * the stop protocol, and the table of known instances that turns a
 * backend's "entry K now looks like this / is gone" into exactly one
 * ADDED, CHANGED or REMOVED per real change.
 *
 * Stop protocol: tether_watch_stop() sets `stopping` (no callback starts
 * after that), wakes the backend's loop and joins the thread.  Called from
 * the watch's own callback it cannot join itself, so it sets `self_free`
 * and the thread frees the watch when the backend's loop returns; nothing
 * is freed on the callback's stack.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/thread.h"
#include "registry/registry.h"

/* The watch whose thread this is (NULL on every other thread): lets
 * tether_watch_stop() recognise a call from inside its own callback without
 * relying on the pthread_t having been stored yet. */
static _Thread_local struct tether_watch *current_watch;

bool
tt_watch_stopping(const struct tether_watch *w)
{
    return atomic_load(&w->stopping);
}

static struct tt_watch_known *
known_find(const struct tether_watch *w, const char *key)
{
    for (size_t i = 0; i < w->nknown; i++) {
        if (strcmp(w->known[i].key, key) == 0) {
            return &w->known[i];
        }
    }
    return NULL;
}

bool
tt_watch_has(const struct tether_watch *w, const char *key)
{
    return known_find(w, key) != NULL;
}

/* Call the user's callback unless the watch is being stopped. */
static void
emit(struct tether_watch *w, tether_watch_event ev, const tether_instance *inst)
{
    if (!atomic_load(&w->stopping)) {
        w->fn(w, ev, inst, w->arg);
    }
}

tether_err
tt_watch_put(struct tether_watch *w, const char *key, const tether_instance *inst)
{
    struct tt_watch_known *k = known_find(w, key);
    if (k != NULL) {
        if (tt_instance_equal(&k->inst, inst)) {
            /* Readers' own closes and repeated events land here: the
             * common, cheap, idempotent case. */
            return TETHER_OK;
        }
        tether_instance copy;
        if (tt_instance_copy(&copy, inst) != TETHER_OK) {
            return TETHER_ENOMEM;
        }
        tt_instance_clear(&k->inst);
        k->inst = copy;
        emit(w, TETHER_WATCH_CHANGED, &k->inst);
        return TETHER_OK;
    }
    if (w->nknown == w->capknown) {
        size_t cap = w->capknown == 0 ? 8 : w->capknown * 2;
        struct tt_watch_known *n = tt_realloc(w->known, cap * sizeof *n);
        if (n == NULL) {
            return TETHER_ENOMEM;
        }
        w->known = n;
        w->capknown = cap;
    }
    k = &w->known[w->nknown];
    k->key = tt_strdup(key);
    if (k->key == NULL) {
        return TETHER_ENOMEM;
    }
    if (tt_instance_copy(&k->inst, inst) != TETHER_OK) {
        tt_free(k->key);
        return TETHER_ENOMEM;
    }
    w->nknown++;
    emit(w, TETHER_WATCH_ADDED, &k->inst);
    return TETHER_OK;
}

void
tt_watch_del(struct tether_watch *w, const char *key)
{
    struct tt_watch_known *k = known_find(w, key);
    if (k == NULL) {
        return;
    }
    /* Report first, so the callback sees the instance as it was. */
    emit(w, TETHER_WATCH_REMOVED, &k->inst);
    tt_free(k->key);
    tt_instance_clear(&k->inst);
    *k = w->known[--w->nknown];
}

/* Free everything: generic fields first, then the backend object, then
 * the watch's reference on its registry. */
static void
watch_free(struct tether_watch *w)
{
    struct tether_registry *r = w->registry;
    for (size_t i = 0; i < w->nknown; i++) {
        tt_free(w->known[i].key);
        tt_instance_clear(&w->known[i].inst);
    }
    tt_free(w->known);
    w->known = NULL;
    w->nknown = 0;
    tt_free(w->service);
    w->service = NULL;
    w->ops->watch_destroy(w);
    tt_registry_unref(r);
}

static void *
watch_thread(void *arg)
{
    struct tether_watch *w = arg;
    current_watch = w;
    w->ops->watch_run(w);
    current_watch = NULL;
    /* self_free is only ever set on this thread (inside a callback), so
     * reading it here needs no further synchronisation. */
    if (atomic_load(&w->self_free)) {
        pthread_detach(pthread_self());
        watch_free(w);
    }
    return NULL;
}

tether_err
tether_registry_watch(tether_registry *r, const char *service, tether_watch_fn fn, void *arg,
                      tether_watch **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    if (r == NULL || service == NULL || fn == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    if (!tt_registry_service_valid(service)) {
        TT_ERROR("registry: invalid service name '%s'", service);
        return TETHER_EINVAL;
    }
    char *svc = tt_strdup(service);
    if (svc == NULL) {
        return TETHER_ENOMEM;
    }
    struct tether_watch *w = NULL;
    tether_err err = r->ops->watch_create(r, service, &w);
    if (err != TETHER_OK) {
        tt_free(svc);
        return err;
    }
    w->ops = r->ops;
    w->registry = r;
    w->service = svc;
    w->fn = fn;
    w->arg = arg;
    w->thread_started = false;
    atomic_init(&w->stopping, false);
    atomic_init(&w->self_free, false);
    w->known = NULL;
    w->nknown = 0;
    w->capknown = 0;
    tt_registry_ref(r);

    int rc = tt_thread_start(&w->thread, watch_thread, w);
    if (rc != 0) {
        TT_ERROR("registry: cannot start the watch thread for '%s' (errno %d)", service, rc);
        watch_free(w);
        return (tether_err)(TETHER_ESYSERR | rc);
    }
    w->thread_started = true;
    *out = w;
    return TETHER_OK;
}

void
tether_watch_stop(tether_watch *w)
{
    if (w == NULL) {
        return;
    }
    atomic_store(&w->stopping, true);
    w->ops->watch_wake(w);
    if (current_watch == w) {
        /* Inside our own callback: the thread frees the watch once the
         * backend's loop has seen `stopping` and returned. */
        atomic_store(&w->self_free, true);
        return;
    }
    pthread_join(w->thread, NULL);
    watch_free(w);
}
