/*
 * static.c - the "static:" backend.  The URL is the whole registry: every
 * service lists the same addresses, nothing can register, and a watch
 * reports each address once as ADDED and then stays quiet until stopped.
 */
#include "registry/static.h"

#include <string.h>

#include "core/alloc.h"
#include "core/log.h"

struct static_registry {
    struct tether_registry super;
    char **addrs;
    size_t naddrs;
};

struct static_watch {
    struct tether_watch super;
    struct static_registry *sr;
    /* watch_run sleeps on cond until watch_wake signals it; the mutex is
     * never held while a callback runs, so waking from a callback is safe. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
};

static void
static_free_addrs(struct static_registry *sr)
{
    for (size_t i = 0; i < sr->naddrs; i++) {
        tt_free(sr->addrs[i]);
    }
    tt_free(sr->addrs);
}

static tether_err
static_open(const char *url, const char *rest, struct tether_registry **out)
{
    struct static_registry *sr = tt_calloc(1, sizeof *sr);
    if (sr == NULL) {
        return TETHER_ENOMEM;
    }
    /* Accept "static://a,b" as well as the documented "static:a,b". */
    if (strncmp(rest, "//", 2) == 0) {
        rest += 2;
    }
    /* Count the commas first so the array is allocated once. */
    size_t cap = 1;
    for (const char *p = rest; *p != '\0'; p++) {
        cap += *p == ',';
    }
    sr->addrs = tt_calloc(cap, sizeof *sr->addrs);
    if (sr->addrs == NULL) {
        tt_free(sr);
        return TETHER_ENOMEM;
    }
    tether_err err = TETHER_OK;
    const char *p = rest;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        /* Blanks around items are forgiven; empty items (a trailing comma)
         * are skipped. */
        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) {
            len--;
        }
        if (len > 0) {
            char *a = tt_strndup(p, len);
            if (a == NULL) {
                err = TETHER_ENOMEM;
                goto fail;
            }
            if (!tt_registry_address_valid(a)) {
                TT_ERROR("registry: bad address '%s' in '%s'", a, url);
                tt_free(a);
                err = TETHER_EINVAL;
                goto fail;
            }
            sr->addrs[sr->naddrs++] = a;
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    if (sr->naddrs == 0) {
        TT_ERROR("registry: '%s' lists no address (want static:host:port,host:port)", url);
        err = TETHER_EINVAL;
        goto fail;
    }
    *out = &sr->super;
    return TETHER_OK;

fail:
    static_free_addrs(sr);
    tt_free(sr);
    return err;
}

static void
static_destroy(struct tether_registry *r)
{
    struct static_registry *sr = (struct static_registry *)r;
    static_free_addrs(sr);
    tt_free(sr);
}

/* The instance the static list implies for address i of service. */
static void
static_instance(const struct static_registry *sr, size_t i, const char *service,
                tether_instance *inst)
{
    memset(inst, 0, sizeof *inst);
    inst->service = service;
    inst->address = sr->addrs[i];
    inst->id = sr->addrs[i];
    inst->weight = 1;
    inst->state = TETHER_INSTANCE_SERVING;
}

static tether_err
static_list(struct tether_registry *r, const char *service, tether_instance_list *out)
{
    struct static_registry *sr = (struct static_registry *)r;
    for (size_t i = 0; i < sr->naddrs; i++) {
        tether_instance inst;
        static_instance(sr, i, service, &inst);
        if (tt_instance_list_push(out, &inst) != TETHER_OK) {
            return TETHER_ENOMEM;
        }
    }
    return TETHER_OK;
}

static tether_err
static_watch_create(struct tether_registry *r, const char *service, struct tether_watch **out)
{
    struct static_watch *sw = tt_calloc(1, sizeof *sw);
    if (sw == NULL) {
        return TETHER_ENOMEM;
    }
    sw->sr = (struct static_registry *)r;
    pthread_mutex_init(&sw->mu, NULL);
    pthread_cond_init(&sw->cond, NULL);
    *out = &sw->super;
    return TETHER_OK;
}

static void
static_watch_run(struct tether_watch *w)
{
    struct static_watch *sw = (struct static_watch *)w;
    for (size_t i = 0; i < sw->sr->naddrs && !tt_watch_stopping(w); i++) {
        tether_instance inst;
        static_instance(sw->sr, i, w->service, &inst);
        if (tt_watch_put(w, inst.id, &inst) != TETHER_OK) {
            TT_WARN("registry: out of memory reporting %s", inst.address);
        }
    }
    /* Nothing ever changes: sleep until stopped. */
    pthread_mutex_lock(&sw->mu);
    while (!tt_watch_stopping(w)) {
        pthread_cond_wait(&sw->cond, &sw->mu);
    }
    pthread_mutex_unlock(&sw->mu);
}

static void
static_watch_wake(struct tether_watch *w)
{
    struct static_watch *sw = (struct static_watch *)w;
    /* Taking the mutex orders this signal after the waiter's check of
     * `stopping`, so the wake-up cannot be lost. */
    pthread_mutex_lock(&sw->mu);
    pthread_cond_signal(&sw->cond);
    pthread_mutex_unlock(&sw->mu);
}

static void
static_watch_destroy(struct tether_watch *w)
{
    struct static_watch *sw = (struct static_watch *)w;
    pthread_cond_destroy(&sw->cond);
    pthread_mutex_destroy(&sw->mu);
    tt_free(sw);
}

const struct tt_registry_ops tt_static_registry_ops = {
    .scheme = "static",
    .open = static_open,
    .destroy = static_destroy,
    .register_ = NULL, /* read-only: register gives TETHER_ENOTSUP */
    .set_state = NULL,
    .deregister = NULL,
    .list = static_list,
    .watch_create = static_watch_create,
    .watch_run = static_watch_run,
    .watch_wake = static_watch_wake,
    .watch_destroy = static_watch_destroy,
};
