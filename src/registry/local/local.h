/*
 * local.h - the "local:" registry backend: one file per registration in a
 * directory, alive exactly while its owner holds flock(LOCK_EX) on it.
 * The protocol is described in docs/registry.md; the rules every reader
 * and writer must follow are repeated where they are implemented.
 *
 * Files: local.c (open, register, set_state, deregister, list),
 * entry.c (entry format, reading one entry, reaping dead ones),
 * watch.c (inotify watch).
 */
#ifndef TT_REGISTRY_LOCAL_H
#define TT_REGISTRY_LOCAL_H

#include <sys/stat.h>
#include <sys/types.h>

#include "registry/registry.h"

extern const struct tt_registry_ops tt_local_registry_ops;

/*
 * Whose files a reader believes.  Anyone who can write into a registry
 * directory can put files there; only service directories and entries
 * owned by uid (the reader's effective uid) or root, or by group gid when
 * has_group (local:/dir?group=NAME), are used, and only those are ever
 * removed.
 */
struct tt_local_trust {
    uid_t uid;
    gid_t gid;
    bool has_group;
};

struct tt_local_registry {
    struct tether_registry super;
    char *dir; /* base directory; one subdirectory per service */
    struct tt_local_trust trust;
};

/* Whether a file or directory with owner st is trusted. */
bool tt_local_trusted(const struct tt_local_trust *t, const struct stat *st);

/*
 * tt_local_open_service_dir - open "<lr->dir>/<service>" as a directory
 * descriptor (O_DIRECTORY|O_NOFOLLOW, relative to the base directory),
 * creating it first when create is set.  A symlink, a non-directory, a
 * directory owned by an untrusted user, or one that untrusted users can
 * write is refused with TETHER_EREGISTRY and a log line saying how to fix
 * it.  *dfd gets the descriptor (the caller closes it).  When the directory
 * does not exist and create is false, *dfd is -1 and TETHER_OK returned.
 */
tether_err tt_local_open_service_dir(const struct tt_local_registry *lr, const char *service,
                                     bool create, int *dfd);

/*
 * tt_local_entry_name_valid - whether name has the form of an entry name
 * this backend writes, "<safe address>@<pid>.<16 hex digits>.json"; with
 * tmp, the form of its temporary file ".<entry name>.tmp".
 */
bool tt_local_entry_name_valid(const char *name, bool tmp);

/* What tt_local_read_entry() found under a name. */
enum tt_local_entry_kind {
    TT_LOCAL_GONE,    /* no such name (any more) */
    TT_LOCAL_SKIP,    /* not a regular file, or unreadable: ignored */
    TT_LOCAL_DEAD,    /* owner gone; the entry was removed */
    TT_LOCAL_STUCK,   /* owner gone, but the entry could not be removed */
    TT_LOCAL_GARBAGE, /* owner alive, but the content is not an entry */
    TT_LOCAL_ALIVE,   /* owner alive, inst filled */
    TT_LOCAL_HIDDEN,  /* owner alive, entry marked "not-serving": not reported */
};

struct tt_local_entry {
    enum tt_local_entry_kind kind;
    /* For STUCK, GARBAGE, ALIVE and HIDDEN: an open read-only descriptor on the
     * file (the caller closes it or keeps it) and its identity. */
    int fd;
    dev_t dev;
    ino_t ino;
    tether_instance inst; /* ALIVE only; owned, id = name */
};

/*
 * tt_local_read_entry - look at the entry `name` in the service directory
 * dfd: open it, decide whether its owner is alive (the lock is held) or
 * dead (the lock can be taken), remove it if dead, and parse it if alive.
 * Never follows symlinks and never blocks.  TETHER_ENOMEM is the only
 * error; every other problem is a kind.
 */
tether_err tt_local_read_entry(int dfd, const char *service, const char *name,
                               const struct tt_local_trust *trust, struct tt_local_entry *e);

/*
 * tt_local_reap_if_same - the owner of the file open as fd is known to be
 * gone (the caller holds a lock on it): unlink `name` (relative to dfd) if
 * it still names that file and the file is one of ours: a regular file
 * owned by a trusted user, with an entry name (tmp: a temporary file's
 * name) and entry content (tmp: empty or an entry).  Anything else is left
 * alone.  Returns TT_LOCAL_DEAD (removed, or already gone), TT_LOCAL_STUCK
 * (not removed: not ours, or the unlink failed) or TT_LOCAL_ALIVE when the
 * name now refers to another file (a live owner replaced it: look again).
 */
enum tt_local_entry_kind tt_local_reap_if_same(int dfd, const char *name, int fd,
                                               const struct tt_local_trust *trust, bool tmp);

/*
 * tt_local_encode - the entry text for inst (and this process's pid) into
 * buf (size cap), NUL-terminated; *len gets its length.  Errors:
 * TETHER_EINVAL (strings that are not UTF-8), TETHER_EMSGSIZE (larger than
 * TT_REGISTRY_MAX_ENTRY), TETHER_ENOMEM.
 */
tether_err tt_local_encode(const tether_instance *inst, char *buf, size_t cap, size_t *len);

/*
 * tt_local_decode - parse an entry text of len bytes into inst (owned
 * strings; service and id are copied from the arguments).  false if it is
 * not a valid entry; why is written into why (size whycap).
 */
bool tt_local_decode(const char *text, size_t len, const char *service, const char *id,
                     tether_instance *inst, char *why, size_t whycap);

/* The watch members of the ops table (watch.c); contracts in
 * registry/registry.h. */
tether_err tt_local_watch_create(struct tether_registry *r, const char *service,
                                 struct tether_watch **out);
void tt_local_watch_run(struct tether_watch *w);
void tt_local_watch_wake(struct tether_watch *w);
void tt_local_watch_destroy(struct tether_watch *w);

/*
 * tt_local_default_dir - the directory "local:" means, under root ("" for
 * the real file system; tests pass a scratch directory): $XDG_RUNTIME_DIR/
 * tether, else root/run/tether when it is a directory this user can write,
 * else root/run/user/<uid>/tether when root/run/user/<uid> exists, else
 * root/tmp/tether-<uid>.  TETHER_EREGISTRY if it does not fit cap.
 */
tether_err tt_local_default_dir(const char *root, char *buf, size_t cap);

/* tt_local_mkdirs - create path and missing parents with mode 0700 and
 * check that it is a directory.  Returns 0 or an errno value. */
int tt_local_mkdirs(const char *path);

/* tt_local_errno_text - a short description of an errno value (for logs;
 * strerror is not thread-safe). */
const char *tt_local_errno_text(int err, char *buf, size_t cap);

#endif
