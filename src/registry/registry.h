/*
 * registry.h - the contract between the generic registry layer
 * (registry.c, watch.c, instance.c) and its backends (local/, static.c,
 * and later etcd/).
 *
 * A backend is a const struct tt_registry_ops.  Its objects embed the
 * generic base struct first, as `super`, so the generic layer and the
 * backend can cast between them (h2o's balancer pattern):
 *
 *     struct tt_local_registry { struct tether_registry super; char *dir; };
 *
 * The generic layer owns everything that is the same for every backend:
 * URL dispatch by scheme, argument validation and defaults, the registry
 * reference count, the registration mutex, and the watch thread with its
 * stop protocol and its table of known instances (which turns "this is
 * what entry K looks like now" into ADDED/CHANGED/REMOVED events).  A
 * backend only knows how to write, read and notice changes.
 *
 * Adding a backend: put it in src/registry/<name>/, give it a header
 * src/registry/<name>/<name>.h that declares
 * `extern const struct tt_registry_ops tt_<name>_registry_ops;` and add
 * it to the table in registry.c (etcd/etcd.h is picked up automatically
 * when it exists).
 */
#ifndef TT_REGISTRY_REGISTRY_H
#define TT_REGISTRY_REGISTRY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "tether/registry.h"

/* Largest entry a reader accepts (local files, etcd values). */
#define TT_REGISTRY_MAX_ENTRY (64 * 1024)
/* Longest service name and address accepted. */
#define TT_REGISTRY_MAX_SERVICE 128
#define TT_REGISTRY_MAX_ADDRESS 255

struct tt_registry_ops;

/* What tether_registry_get_stats() reports (tether/metrics.h): written by
 * the generic layer and the backends, read by anyone, all relaxed. */
struct tt_registry_counters {
    _Atomic int64_t lease;     /* the lease held now (etcd); 0 none */
    _Atomic uint64_t ka_ok_ns; /* monotonic time of the last keep-alive answered */
    _Atomic uint64_t regs;     /* live registrations */
    _Atomic uint64_t reregs;   /* keys put again after a lost lease */
    _Atomic uint64_t resumes;  /* watches that broke and resumed */
};

/* Base of every backend's registry object. */
struct tether_registry {
    const struct tt_registry_ops *ops;
    /* One reference for the caller's handle, one per live registration
     * and per live watch: the backend is destroyed when the last goes. */
    atomic_int refs;
    /* tether_registry_get_location(): the URL redacted, filled by the generic
     * layer unless the backend's open wrote a better one (local: its
     * directory). */
    char location[512];
    struct tt_registry_counters stats;
};

/* Base of every backend's registration object. */
struct tether_registration {
    const struct tt_registry_ops *ops;
    struct tether_registry *registry;
    /* Serialises set_state calls (a registration is documented as
     * one-thread-at-a-time, but a drain racing a health check must not
     * corrupt the entry, so the cheap lock is taken anyway). */
    pthread_mutex_t mu;
};

/* One instance the watch has reported and not yet removed. */
struct tt_watch_known {
    char *key;
    tether_instance inst; /* deep copy, owned */
};

/* Base of every backend's watch object. */
struct tether_watch {
    const struct tt_registry_ops *ops;
    struct tether_registry *registry;
    char *service;
    tether_watch_fn fn;
    void *arg;
    pthread_t thread;
    bool thread_started;
    /* Set once by tether_watch_stop(); callbacks are not started after. */
    atomic_bool stopping;
    /* Set when tether_watch_stop() ran on the watch thread itself: the
     * thread then frees the watch when watch_run returns. */
    atomic_bool self_free;
    /* Instances reported as present, touched only by the watch thread. */
    struct tt_watch_known *known;
    size_t nknown;
    size_t capknown;
};

/*
 * struct tt_registry_ops - one backend.  All members are required except
 * where marked optional.  Arguments have been validated by the generic
 * layer: pointers are not NULL, service names and addresses follow the
 * rules in tether/registry.h, weight >= 1, state is a known value.
 * Backends log failure details with tt_log; they never print.
 */
struct tt_registry_ops {
    /* URL scheme, matched against the text before the first ':' of the
     * URL ("local", "static", "etcd"). */
    const char *scheme;

    /* open - parse the URL (whole, and rest = the text after "scheme:";
     * for "etcd://h:2379" rest is "//h:2379"), allocate the backend
     * object with `super` first and return &super in *out.  The generic
     * layer sets super.ops and super.refs afterwards.  May block briefly
     * (creating a directory); an etcd backend should not require the
     * server to be reachable here, because registry trouble must never
     * stop a server from starting.  Errors: TETHER_EINVAL (bad URL),
     * TETHER_EREGISTRY, TETHER_ENOMEM. */
    tether_err (*open)(const char *url, const char *rest, struct tether_registry **out);

    /* destroy - free the backend object.  Called exactly once, when the
     * last reference is gone: no registration or watch is alive. */
    void (*destroy)(struct tether_registry *r);

    /* register_ - make inst visible to list and watch before returning
     * (local: the locked file is in place; etcd: lease granted, key put,
     * keep-alive running on the backend's own thread, re-registering by
     * itself after a lost lease).  Allocate the backend registration with
     * `super` first and return &super in *out; the generic layer fills
     * super.ops, super.registry and super.mu.  inst is borrowed: copy
     * what is kept.  Optional: NULL means read-only (TETHER_ENOTSUP).
     * Errors: TETHER_EREGISTRY, TETHER_ENOMEM. */
    tether_err (*register_)(struct tether_registry *r, const tether_instance *inst,
                            struct tether_registration **out);

    /* set_state - atomically replace the entry's state; readers must
     * never see the entry missing.  Called with reg->mu held.  On error
     * the old entry must still be listed.  Errors: TETHER_EREGISTRY,
     * TETHER_ENOMEM. */
    tether_err (*set_state)(struct tether_registration *reg, tether_instance_state state);

    /* deregister - remove the entry, stop anything that keeps it alive
     * (lock, keep-alive) and free the backend registration.  Must free
     * even on failure; afterwards the entry must not be reported alive
     * for longer than the backend's liveness bound (local: not at all;
     * etcd: the lease TTL).  Errors: TETHER_EREGISTRY. */
    tether_err (*deregister)(struct tether_registration *reg);

    /* list - append a deep copy of every live instance of service to
     * *out with tt_instance_list_push_take(); order does not matter (the generic
     * layer sorts).  A missing service is an empty list.  Skip and log
     * entries that cannot be parsed.  Errors: TETHER_EREGISTRY,
     * TETHER_ENOMEM. */
    tether_err (*list)(struct tether_registry *r, const char *service,
                       tether_instance_list *out);

    /* watch_create - allocate the backend watch with `super` first and
     * set up what can fail (local: inotify on the service directory;
     * etcd: nothing that needs the server).  No thread yet and no
     * callback.  The generic layer fills the super fields afterwards.
     * Errors: TETHER_EREGISTRY, TETHER_ENOMEM, TETHER_ESYSERR|errno. */
    tether_err (*watch_create)(struct tether_registry *r, const char *service,
                               struct tether_watch **out);

    /* watch_run - the body of the watch thread.  First report every
     * current instance with tt_watch_put(), then loop reporting changes
     * with tt_watch_put() (added or changed) and tt_watch_del() (gone),
     * keyed by a backend id that is unique per registration.  Return
     * promptly once tt_watch_stopping(w) is true; watch_wake() is called
     * right after it becomes true, so the loop may block indefinitely in
     * between (no polling).  Transient trouble (etcd unreachable) is
     * retried here with back-off, logged, never returned. */
    void (*watch_run)(struct tether_watch *w);

    /* watch_wake - make a blocked watch_run notice tt_watch_stopping().
     * Called from any thread, including the watch thread itself inside a
     * callback; must not block or take locks watch_run may hold. */
    void (*watch_wake)(struct tether_watch *w);

    /* watch_destroy - free the backend watch.  Called once, after
     * watch_run has returned or when it never started; the generic layer
     * frees its own fields (service, known table) itself afterwards. */
    void (*watch_destroy)(struct tether_watch *w);
};

/*
 * TT_INSTANCE_NOT_SERVING - a state beyond the public ones, for the
 * server's watchdog (src/rpc/watchdog.c): the registration lives on
 * (local: its locked entry, marked "not-serving"; etcd: its lease, without
 * its key) but lists and watches do not report it, so clients stop
 * picking it; setting TETHER_INSTANCE_SERVING again lists it again.
 * Backends get it through set_state like the public states.
 */
#define TT_INSTANCE_NOT_SERVING ((tether_instance_state)2)

/* tt_registration_set_state - tether_registration_set_state() that also
 * takes TT_INSTANCE_NOT_SERVING. */
tether_err tt_registration_set_state(tether_registration *reg, tether_instance_state state);

/* Reference counting on the registry (watch.c holds one per watch). */
void tt_registry_ref(struct tether_registry *r);
void tt_registry_unref(struct tether_registry *r);

/* Validation shared by the generic layer and backends that parse input. */
bool tt_registry_service_valid(const char *service);
bool tt_registry_address_valid(const char *address);


/* 64 random bits for registration ids: getrandom() normally, a clock and
 * counter mix if the kernel has no entropy to give yet (registry.c). */
uint64_t tt_registry_random64(void);


/* Instance helpers (instance.c).  A deep copy owns every string and the
 * meta array; tt_instance_clear frees them and zeroes the struct. */
tether_err tt_instance_copy(tether_instance *dst, const tether_instance *src);
void tt_instance_clear(tether_instance *inst);
bool tt_instance_equal(const tether_instance *a, const tether_instance *b);
/* Append a deep copy of inst to list (growing items). */
tether_err tt_instance_list_push(tether_instance_list *list, const tether_instance *inst);
/* Append inst to list, taking ownership of its strings (inst is zeroed). */
tether_err tt_instance_list_push_take(tether_instance_list *list, tether_instance *inst);
void tt_instance_list_clear(tether_instance_list *list);

/* Watch helpers for watch_run (watch.c).  Only call from the watch
 * thread. */

/* tt_watch_stopping - true once tether_watch_stop() has been called. */
bool tt_watch_stopping(const struct tether_watch *w);

/* tt_watch_put - entry key now looks like inst: reports ADDED if key is
 * new, CHANGED if it differs from what was last reported, nothing
 * otherwise.  inst is borrowed.  Returns TETHER_ENOMEM if the entry
 * could not be remembered (it is then reported again next time). */
tether_err tt_watch_put(struct tether_watch *w, const char *key, const tether_instance *inst);

/* tt_watch_del - entry key is gone: reports REMOVED if it was known. */
void tt_watch_del(struct tether_watch *w, const char *key);

/* tt_watch_has - whether key is currently reported as present. */
bool tt_watch_has(const struct tether_watch *w, const char *key);

#endif
