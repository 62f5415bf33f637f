/*
 * registry.c - the public registry API: backend chosen by URL scheme,
 * validation, reference counting, and the calls that every backend shares.
 */
#include "registry/registry.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "registry/local/local.h"
#include "registry/static.h"

/* The etcd backend is built with TETHER_WITH_ETCD (CMake option, on by
 * default). */
#ifdef TETHER_WITH_ETCD
#include "registry/etcd/etcd.h"
#define TT_HAVE_ETCD_REGISTRY 1
#endif

/* Every backend built into the library, looked up by scheme. */
static const struct tt_registry_ops *const backends[] = {
    &tt_local_registry_ops,
    &tt_static_registry_ops,
#ifdef TT_HAVE_ETCD_REGISTRY
    &tt_etcd_registry_ops,
#endif
};

void
tether_registry_url_redact(const char *url, char *buf, size_t cap)
{
    /* Copy url, writing the value of every password= option as "***", so
     * no log line or error message shows a secret. */
    size_t o = 0;
    const char *p = url;
    while (*p != '\0' && o + 1 < cap) {
        if (p > url + 1 && p[-1] == '/' && p[-2] == '/') {
            /* "//user:secret@host": not a form the backends take, but a
             * message repeating it must not show the secret either. */
            size_t auth = strcspn(p, "/?");
            const char *at = memchr(p, '@', auth);
            const char *colon = at != NULL ? memchr(p, ':', (size_t)(at - p)) : NULL;
            if (colon != NULL) {
                size_t n = (size_t)snprintf(buf + o, cap - o, "%.*s:***", (int)(colon - p), p);
                o += n < cap - o ? n : cap - o - 1;
                p = at;
                continue;
            }
        }
        int at_opt = p == url || p[-1] == '?' || p[-1] == '&';
        if (at_opt && strncmp(p, "password=", 9) == 0) {
            const char *end = strchr(p, '&');
            size_t n = (size_t)snprintf(buf + o, cap - o, "password=***");
            o += n < cap - o ? n : cap - o - 1;
            p = end != NULL ? end : p + strlen(p);
            continue;
        }
        buf[o++] = *p++;
    }
    buf[o < cap ? o : cap - 1] = '\0';
}

bool
tt_registry_service_valid(const char *service)
{
    size_t n = strlen(service);
    /* The name becomes a directory (local) or a key segment (etcd): keep it
     * to characters that need no escaping anywhere, and never "." or "..". */
    if (n == 0 || n > TT_REGISTRY_MAX_SERVICE || service[0] == '.') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = service[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* A decimal port 1..65535 filling all of s. */
static bool
port_valid(const char *s)
{
    if (*s == '\0') {
        return false;
    }
    long v = 0;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
        v = v * 10 + (*s - '0');
        if (v > 65535) {
            return false;
        }
    }
    return v >= 1;
}

bool
tt_registry_address_valid(const char *address)
{
    size_t n = strlen(address);
    if (n == 0 || n > TT_REGISTRY_MAX_ADDRESS) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        /* Control characters and blanks would break the one-line output of
         * the tools and the plain "host:port" values other writers use. */
        if ((unsigned char)address[i] <= ' ' || address[i] == 0x7f) {
            return false;
        }
    }
    if (strncmp(address, "unix:", 5) == 0) {
        return address[5] != '\0';
    }
    if (address[0] == '[') {
        const char *close = strchr(address, ']');
        if (close == NULL || close == address + 1 || close[1] != ':') {
            return false;
        }
        return port_valid(close + 2);
    }
    const char *colon = strrchr(address, ':');
    if (colon == NULL || colon == address || memchr(address, ':', (size_t)(colon - address))) {
        /* A bare IPv6 address without brackets is ambiguous: refuse it. */
        return false;
    }
    return port_valid(colon + 1);
}

/* Drop one reference; the last one destroys the backend. */
static void
registry_unref(struct tether_registry *r)
{
    if (atomic_fetch_sub(&r->refs, 1) == 1) {
        r->ops->destroy(r);
    }
}

tether_err
tether_registry_open(const char *url, tether_registry **out)
{
    if (out == NULL) {
        return TETHER_EINVAL;
    }
    *out = NULL;
    if (url == NULL || url[0] == '\0') {
        url = "local:";
    }
    const char *colon = strchr(url, ':');
    if (colon == NULL || colon == url) {
        char shown[512];
        tether_registry_url_redact(url, shown, sizeof shown);
        TT_ERROR("registry: '%s' is not a registry URL (want local:, local:/dir, "
                 "static:host:port,... or etcd://host:port)",
                 shown);
        return TETHER_EINVAL;
    }
    size_t slen = (size_t)(colon - url);
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        const struct tt_registry_ops *ops = backends[i];
        if (strlen(ops->scheme) == slen && strncmp(ops->scheme, url, slen) == 0) {
            struct tether_registry *r = NULL;
            tether_err err = ops->open(url, colon + 1, &r);
            if (err != TETHER_OK) {
                return err;
            }
            r->ops = ops;
            atomic_init(&r->refs, 1);
            if (r->location[0] == '\0') {
                tether_registry_url_redact(url, r->location, sizeof r->location);
            }
            *out = r;
            return TETHER_OK;
        }
    }
#ifndef TT_HAVE_ETCD_REGISTRY
    if (slen == 4 && strncmp(url, "etcd", 4) == 0) {
        TT_ERROR("registry: this build of tether has no etcd backend (built with "
                 "TETHER_WITH_ETCD=OFF)");
        return TETHER_ENOTSUP;
    }
#endif
    char shown[512];
    tether_registry_url_redact(url, shown, sizeof shown);
    TT_ERROR("registry: no backend for scheme '%.*s' in '%s'", (int)slen, url, shown);
    return TETHER_ENOTSUP;
}

const char *
tether_registry_get_location(const tether_registry *r)
{
    return r != NULL ? r->location : "";
}

void
tether_registry_close(tether_registry *r)
{
    if (r != NULL) {
        registry_unref(r);
    }
}

/* Check an instance passed in by the caller. */
static bool
instance_valid(const tether_instance *inst)
{
    if (inst->service == NULL || !tt_registry_service_valid(inst->service)) {
        TT_ERROR("registry: invalid service name '%s'",
                 inst->service != NULL ? inst->service : "(null)");
        return false;
    }
    if (inst->address == NULL || !tt_registry_address_valid(inst->address)) {
        TT_ERROR("registry: invalid address '%s' (want host:port, [v6]:port or unix:/path)",
                 inst->address != NULL ? inst->address : "(null)");
        return false;
    }
    if (inst->state != TETHER_INSTANCE_SERVING && inst->state != TETHER_INSTANCE_DRAINING) {
        return false;
    }
    if (inst->meta_count > 0 && inst->meta == NULL) {
        return false;
    }
    for (size_t i = 0; i < inst->meta_count; i++) {
        if (inst->meta[i].key == NULL || inst->meta[i].key[0] == '\0' ||
            inst->meta[i].value == NULL) {
            return false;
        }
    }
    return true;
}

tether_err
tether_registry_register(tether_registry *r, const tether_instance *inst,
                         tether_registration **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    if (r == NULL || inst == NULL || out == NULL || !instance_valid(inst)) {
        return TETHER_EINVAL;
    }
    if (r->ops->register_ == NULL) {
        TT_ERROR("registry: the %s: backend is read-only", r->ops->scheme);
        return TETHER_ENOTSUP;
    }
    /* Backends see the defaults applied and nothing they must ignore. */
    tether_instance in = *inst;
    in.weight = in.weight == 0 ? 1 : in.weight;
    in.id = NULL;
    in.pid = 0;

    struct tether_registration *reg = NULL;
    tether_err err = r->ops->register_(r, &in, &reg);
    if (err != TETHER_OK) {
        return err;
    }
    reg->ops = r->ops;
    reg->registry = r;
    pthread_mutex_init(&reg->mu, NULL);
    atomic_fetch_add(&r->refs, 1);
    atomic_fetch_add_explicit(&r->stats.regs, 1, memory_order_relaxed);
    *out = reg;
    return TETHER_OK;
}

tether_err
tether_registration_set_state(tether_registration *reg, tether_instance_state state)
{
    if (reg == NULL ||
        (state != TETHER_INSTANCE_SERVING && state != TETHER_INSTANCE_DRAINING)) {
        return TETHER_EINVAL;
    }
    pthread_mutex_lock(&reg->mu);
    tether_err err = reg->ops->set_state(reg, state);
    pthread_mutex_unlock(&reg->mu);
    return err;
}

tether_err
tt_registration_set_state(tether_registration *reg, tether_instance_state state)
{
    if (reg == NULL || (state != TETHER_INSTANCE_SERVING && state != TETHER_INSTANCE_DRAINING &&
                        state != TT_INSTANCE_NOT_SERVING)) {
        return TETHER_EINVAL;
    }
    pthread_mutex_lock(&reg->mu);
    tether_err err = reg->ops->set_state(reg, state);
    pthread_mutex_unlock(&reg->mu);
    return err;
}

tether_err
tether_registration_deregister(tether_registration *reg)
{
    if (reg == NULL) {
        return TETHER_OK;
    }
    struct tether_registry *r = reg->registry;
    pthread_mutex_destroy(&reg->mu);
    /* The backend frees reg; r is released only afterwards because the
     * backend may still use it while removing the entry. */
    tether_err err = reg->ops->deregister(reg);
    atomic_fetch_sub_explicit(&r->stats.regs, 1, memory_order_relaxed);
    registry_unref(r);
    return err;
}

static int
instance_cmp(const void *pa, const void *pb)
{
    const tether_instance *a = pa;
    const tether_instance *b = pb;
    int c = strcmp(a->address, b->address);
    if (c != 0) {
        return c;
    }
    return strcmp(a->id != NULL ? a->id : "", b->id != NULL ? b->id : "");
}

tether_err
tether_registry_list(tether_registry *r, const char *service, tether_instance_list **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    if (r == NULL || service == NULL || out == NULL) {
        return TETHER_EINVAL;
    }
    if (!tt_registry_service_valid(service)) {
        TT_ERROR("registry: invalid service name '%s'", service);
        return TETHER_EINVAL;
    }
    tether_instance_list *list = tt_calloc(1, sizeof *list);
    if (list == NULL) {
        return TETHER_ENOMEM;
    }
    tether_err err = r->ops->list(r, service, list);
    if (err != TETHER_OK) {
        tether_instance_list_free(list);
        return err;
    }
    if (list->count > 1) {
        qsort(list->items, list->count, sizeof list->items[0], instance_cmp);
    }
    *out = list;
    return TETHER_OK;
}

void
tether_instance_list_free(tether_instance_list *list)
{
    if (list == NULL) {
        return;
    }
    tt_instance_list_clear(list);
    tt_free(list);
}

void
tt_registry_ref(struct tether_registry *r)
{
    atomic_fetch_add(&r->refs, 1);
}

void
tt_registry_unref(struct tether_registry *r)
{
    registry_unref(r);
}

uint64_t
tt_registry_random64(void)
{
    static _Atomic uint64_t counter;
    uint64_t v;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v) {
        return v;
    }
    v = tt_now_ns() ^ ((uint64_t)getpid() << 32);
    return v ^ atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull;
}

