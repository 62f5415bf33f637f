/*
 * registry.h - service registration and discovery.
 *
 * A registry records which instances (addresses) serve a service.  A
 * server registers itself and stays listed only while it is alive: the
 * registration lives exactly as long as the tether_registration handle and
 * the process that holds it.  Clients list a service's instances or watch
 * them change.
 *
 * Backends are chosen by the URL given to tether_registry_open():
 *
 *   "local:"              the embedded default: one host, no server
 *                         process.  Entries are files under
 *                         $XDG_RUNTIME_DIR/tether (else /tmp/tether-<uid>),
 *                         kept alive by a lock the owning process holds; a
 *                         crashed owner disappears from lists and watches
 *                         within milliseconds (see docs/registry.md).
 *   "local:/some/dir"     the same, in another directory.
 *   "static:h:p,h:p"      a fixed, read-only list of addresses for
 *                         clients.  Every service name lists the same
 *                         addresses; registering is not supported.
 *
 * The URL may be NULL or "" for the default, "local:".
 *
 * Threads: a tether_registry may be used by many threads at once.  A
 * tether_registration may be used by one thread at a time.  Watch
 * callbacks run on a thread owned by the watch, never inside
 * tether_registry_watch().
 */
#ifndef TETHER_REGISTRY_H
#define TETHER_REGISTRY_H

#include "tether/tether.h"

#ifdef __cplusplus
extern "C" {
#endif

/* tether_registry - opaque handle on one registry backend. */
typedef struct tether_registry tether_registry;

/* tether_registration - opaque handle on one live registration. */
typedef struct tether_registration tether_registration;

/* tether_watch - opaque handle on one running watch. */
typedef struct tether_watch tether_watch;

/* tether_instance_state - whether an instance takes new calls. */
typedef enum tether_instance_state {
    TETHER_INSTANCE_SERVING = 0,  /* takes new calls */
    TETHER_INSTANCE_DRAINING = 1, /* finishing calls in flight; send it nothing new */
} tether_instance_state;

/*
 * tether_instance - one instance of a service.
 *
 * Passed in (tether_registry_register()): every pointer is borrowed for
 * the duration of the call and copied.  service is 1-128 characters from
 * [A-Za-z0-9._-], not starting with '.'.  address is "host:port",
 * "[v6]:port" or "unix:/path" (at most 255 bytes).  Metadata keys are
 * non-empty; keys and values are valid UTF-8 without NUL.  weight 0 means
 * the default, 1.  id and pid are ignored.
 *
 * Passed out (lists and watch events): owned by the library, valid as
 * documented by the function that hands it out.  id is the backend's name
 * for this one registration (the local backend: the entry's file name);
 * two registrations of the same address have different ids.  pid is the
 * owning process as recorded by the local backend, 0 where unknown.
 */
typedef struct tether_instance {
    const char *service;
    const char *address;
    const tether_meta *meta; /* meta_count pairs, in the order registered */
    size_t meta_count;
    uint32_t weight;
    tether_instance_state state;
    const char *id;
    int64_t pid;
} tether_instance;

/* tether_instance_list - the result of tether_registry_list(). */
typedef struct tether_instance_list {
    size_t count;
    tether_instance *items; /* sorted by address, then id */
} tether_instance_list;

/* tether_watch_event - what happened to the instance a watch reports. */
typedef enum tether_watch_event {
    TETHER_WATCH_ADDED = 1,   /* a new registration appeared */
    TETHER_WATCH_REMOVED = 2, /* deregistered, or its owner died */
    TETHER_WATCH_CHANGED = 3, /* same registration, new state/weight/metadata */
} tether_watch_event;

/*
 * tether_watch_fn - receives one change of watch w (the handle
 * tether_registry_watch() returned, so one callback can serve several
 * watches, and may stop w from inside).  inst (and every string it points
 * to) is valid only during the call; for TETHER_WATCH_REMOVED it is the
 * instance as last seen.  Runs on the watch's own thread, one call at a
 * time per watch, with no library lock held.
 */
typedef void (*tether_watch_fn)(tether_watch *w, tether_watch_event ev,
                                const tether_instance *inst, void *arg);

/*
 * tether_registry_open - open the registry named by url (see the top of
 * this file; NULL or "" means "local:").  The url is copied.  The local
 * backend creates its directory (mode 0700, with missing parents) if
 * needed and checks that it is a directory owned by this user.
 * On success *out holds the handle, to be closed with
 * tether_registry_close().  Does not block beyond file system calls.
 * Errors: TETHER_EINVAL (out is NULL, malformed URL or address list),
 * TETHER_ENOTSUP (no backend for the URL's scheme), TETHER_EREGISTRY (the
 * directory cannot be created or used; the reason is logged),
 * TETHER_ENOMEM.
 */
TETHER_API tether_err tether_registry_open(const char *url, tether_registry **out);

/*
 * tether_registry_url_redact - url into buf (cap bytes, NUL-terminated,
 * cut if longer) with the value of every password= option written as
 * "***": the form of a registry URL that logs and messages may show.  The
 * library's own messages always use it.
 */
TETHER_API void tether_registry_url_redact(const char *url, char *buf, size_t cap);

/*
 * tether_registry_get_location - where r looks, for messages: the URL it was
 * opened with, passwords as "***" (tether_registry_url_redact()), and for
 * local: the directory in use ("local:/run/user/1000/tether").  Valid
 * while r is open; "" for NULL.
 */
TETHER_API const char *tether_registry_get_location(const tether_registry *r);

/*
 * tether_registry_close - release the caller's handle.  Registrations and
 * watches made from it stay valid and keep the backend alive until they
 * are ended (tether_registration_deregister(), tether_watch_stop()).
 * NULL is a no-op.
 */
TETHER_API void tether_registry_close(tether_registry *r);

/*
 * tether_registry_register - list inst until the registration ends.  inst
 * is copied (see tether_instance for the rules).  On success the instance
 * is visible to tether_registry_list() before this returns, and *out holds
 * the registration, owned by the caller until
 * tether_registration_deregister().  The local backend keeps one file
 * descriptor open (close-on-exec) per registration; a child created with
 * fork() and no exec shares it and keeps the instance listed until both
 * processes are gone.  Blocks only on file system calls (local).
 * Errors: TETHER_EINVAL (NULL argument, bad service name, address,
 * metadata or state), TETHER_ENOTSUP (read-only backend: static:),
 * TETHER_EREGISTRY (the entry cannot be written; the reason is logged),
 * TETHER_ENOMEM.
 */
TETHER_API tether_err tether_registry_register(tether_registry *r, const tether_instance *inst,
                                               tether_registration **out);

/*
 * tether_registration_set_state - change the registration's state
 * (serving or draining).  The entry is rewritten atomically: readers see
 * the old or the new entry, never neither and never a mix, and watchers
 * get TETHER_WATCH_CHANGED.  Setting the current state again is allowed
 * and rewrites nothing.  Errors: TETHER_EINVAL (NULL, unknown state),
 * TETHER_EREGISTRY (the new entry cannot be written: the old one stays
 * listed and locked), TETHER_ENOMEM.
 */
TETHER_API tether_err tether_registration_set_state(tether_registration *reg,
                                                    tether_instance_state state);

/*
 * tether_registration_deregister - remove the entry and free reg, which
 * must not be used again.  Watchers get TETHER_WATCH_REMOVED.  NULL is a
 * no-op returning TETHER_OK.  Even when it returns an error the handle is
 * freed and the instance is no longer reported as alive (local: its lock
 * is released, so readers treat the entry as dead and remove it).
 * Errors: TETHER_EREGISTRY (the entry could not be removed; logged).
 */
TETHER_API tether_err tether_registration_deregister(tether_registration *reg);

/*
 * tether_registry_list - the live instances of service.  On success *out
 * holds a list owned by the caller (free it with
 * tether_instance_list_free()); a service nobody registered gives an
 * empty list, not an error.  Entries whose owner died are removed and not
 * reported; entries that cannot be read (garbage, over 64 KiB) are skipped
 * and logged.  Blocks only on file system calls (local).
 * Errors: TETHER_EINVAL (NULL argument, bad service name),
 * TETHER_EREGISTRY (the service directory cannot be read; logged),
 * TETHER_ENOMEM.
 */
TETHER_API tether_err tether_registry_list(tether_registry *r, const char *service,
                                           tether_instance_list **out);

/* tether_instance_list_free - free a list from tether_registry_list().
 * NULL is a no-op. */
TETHER_API void tether_instance_list_free(tether_instance_list *list);

/*
 * tether_registry_watch - report changes to service's instances to fn.
 * fn is first called with TETHER_WATCH_ADDED once for every instance alive
 * when the watch starts, then once per change as it happens (local: within
 * milliseconds, crashes included; no polling).  Changes are reported per
 * registration (id): a registration that is replaced quickly may be seen
 * only in its final state.  fn runs on a thread created and owned by the
 * watch (with every signal blocked), one call at a time, never inside this
 * function.  On success *out holds the watch; end it with
 * tether_watch_stop().  The local backend holds one file descriptor per
 * live instance plus two for the watch itself.
 * Errors: TETHER_EINVAL (NULL argument, bad service name),
 * TETHER_EREGISTRY (the directory cannot be watched; logged),
 * TETHER_ENOMEM, TETHER_ESYSERR|errno (thread or inotify creation).
 * On error fn is never called.
 */
TETHER_API tether_err tether_registry_watch(tether_registry *r, const char *service,
                                            tether_watch_fn fn, void *arg, tether_watch **out);

/*
 * tether_watch_stop - stop the watch and free it; w must not be used
 * again.  From any other thread it blocks until the watch thread has
 * exited: when it returns, fn is not running and will never run again.
 * It may also be called from inside the watch's own callback: then it
 * returns at once, no further callback starts, and the watch thread frees
 * the watch after the callback returns (so the callback must not touch w
 * afterwards).  NULL is a no-op.
 */
TETHER_API void tether_watch_stop(tether_watch *w);

/*
 * tether_instance_state_name - "serving" or "draining" ("unknown" for
 * other values); a constant string.
 */
TETHER_API const char *tether_instance_state_name(tether_instance_state state);

/*
 * tether_watch_event_name - "added", "removed" or "changed" ("unknown"
 * for other values); a constant string.
 */
TETHER_API const char *tether_watch_event_name(tether_watch_event ev);

#ifdef __cplusplus
}
#endif
#endif /* TETHER_REGISTRY_H */
