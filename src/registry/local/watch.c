/*
 * watch.c - the local backend's watch: inotify on the service directory,
 * no polling and no timers.
 *
 * Every event names an entry; the entry is then looked at again, and the
 * generic layer (tt_watch_put/tt_watch_del) decides whether anything
 * changed.  A crash is seen because the kernel closes the dead owner's
 * descriptor, which inotify reports as IN_CLOSE_WRITE; the lock is free at
 * that moment, so the entry is found dead, removed and reported REMOVED
 * about a millisecond after the kill.
 *
 * Readers' closes are reported too (IN_CLOSE_NOWRITE), including our own.
 * Re-opening an entry on every event would make each look produce the next
 * event, forever (and two watchers would feed each other).  So the watch
 * keeps one descriptor open on every entry it has looked at ("held"), and
 * the check for an event on a held entry is one fstatat() (same file still
 * under the name?) plus one non-blocking flock() on the held descriptor
 * (owner still alive?): no open, no close, no new event.  Entries are
 * immutable once under their name, so an unchanged file with a live owner
 * means nothing changed.  A file is opened only when a new one appears
 * under a name.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "registry/local/local.h"

#define WATCH_MASK                                                                            \
    (IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | \
     IN_DELETE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)

/* An entry file the watch keeps open. */
struct held {
    char *name;
    int fd;
    dev_t dev;
    ino_t ino;
    bool seen; /* used by rescan */
};

struct local_watch {
    struct tether_watch super;
    const struct tt_local_registry *lr; /* kept alive by the generic layer */
    char dir[4096]; /* the service directory */
    char service[TT_REGISTRY_MAX_SERVICE + 1];
    int ifd;        /* inotify */
    int wd;         /* watch descriptor of dir, -1 when lost */
    int dfd;        /* dir, for the *at() calls; -1 when lost */
    int wakefd;     /* eventfd written by watch_wake */
    struct held *held;
    size_t nheld;
    size_t capheld;
};

static struct held *
held_find(struct local_watch *lw, const char *name)
{
    for (size_t i = 0; i < lw->nheld; i++) {
        if (strcmp(lw->held[i].name, name) == 0) {
            return &lw->held[i];
        }
    }
    return NULL;
}

/* Close and forget h.  Closing an entry that is still linked produces one
 * IN_CLOSE_NOWRITE, which finds the name unheld and looks once more;
 * closing an unlinked one produces nothing (IN_EXCL_UNLINK). */
static void
held_drop(struct local_watch *lw, struct held *h)
{
    close(h->fd);
    tt_free(h->name);
    *h = lw->held[--lw->nheld];
}

/* Remember an open entry; on failure the descriptor is closed. */
static tether_err
held_add(struct local_watch *lw, const char *name, int fd, dev_t dev, ino_t ino)
{
    if (lw->nheld == lw->capheld) {
        size_t cap = lw->capheld == 0 ? 16 : lw->capheld * 2;
        struct held *n = tt_realloc(lw->held, cap * sizeof *n);
        if (n == NULL) {
            close(fd);
            return TETHER_ENOMEM;
        }
        lw->held = n;
        lw->capheld = cap;
    }
    char *copy = tt_strdup(name);
    if (copy == NULL) {
        close(fd);
        return TETHER_ENOMEM;
    }
    lw->held[lw->nheld++] = (struct held){copy, fd, dev, ino, true};
    return TETHER_OK;
}

/* Bring what the watch reports about `name` in line with the directory. */
static void
check_name(struct local_watch *lw, const char *name)
{
    struct tether_watch *w = &lw->super;
    if (name[0] == '.' || lw->dfd < 0) {
        return; /* temporary files are not entries */
    }
    struct held *h = held_find(lw, name);
    if (h != NULL) {
        h->seen = true;
        struct stat st;
        if (fstatat(lw->dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == h->dev &&
            st.st_ino == h->ino) {
            if (flock(h->fd, LOCK_SH | LOCK_NB) != 0) {
                return; /* same file, owner alive: nothing changed */
            }
            /* The owner let go of the file still under the name: it died. */
            enum tt_local_entry_kind k =
                tt_local_reap_if_same(lw->dfd, name, h->fd, &lw->lr->trust, false);
            flock(h->fd, LOCK_UN);
            if (k == TT_LOCAL_STUCK) {
                /* Keep holding it so that this does not repeat on every
                 * event; it is simply not reported any more. */
                tt_watch_del(w, name);
                return;
            }
            held_drop(lw, h);
            if (k == TT_LOCAL_DEAD) {
                tt_watch_del(w, name);
                return;
            }
            /* TT_LOCAL_ALIVE: replaced meanwhile; read the new file. */
        } else {
            /* Gone, or another file under the name: read afresh. */
            held_drop(lw, h);
        }
    }

    struct tt_local_entry e;
    if (tt_local_read_entry(lw->dfd, w->service, name, &lw->lr->trust, &e) != TETHER_OK) {
        TT_WARN("registry: out of memory watching %s/%s", w->service, name);
        return;
    }
    if (e.fd >= 0 && held_add(lw, name, e.fd, e.dev, e.ino) != TETHER_OK) {
        TT_WARN("registry: out of memory watching %s/%s", w->service, name);
    }
    if (e.kind == TT_LOCAL_ALIVE) {
        if (tt_watch_put(w, name, &e.inst) != TETHER_OK) {
            TT_WARN("registry: out of memory reporting %s/%s", w->service, name);
        }
        tt_instance_clear(&e.inst);
    } else {
        tt_watch_del(w, name);
    }
}

/* Look at every name in the directory and every held entry: used at start,
 * after an inotify queue overflow and after the directory came back. */
static void
rescan(struct local_watch *lw)
{
    struct tether_watch *w = &lw->super;
    for (size_t i = 0; i < lw->nheld; i++) {
        lw->held[i].seen = false;
    }
    if (lw->dfd >= 0) {
        int dup_fd = fcntl(lw->dfd, F_DUPFD_CLOEXEC, 0);
        DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
        if (d == NULL) {
            char eb[128];
            TT_ERROR("registry: cannot read %s: %s", lw->dir,
                     tt_local_errno_text(errno, eb, sizeof eb));
            if (dup_fd >= 0) {
                close(dup_fd);
            }
        } else {
            rewinddir(d);
            struct dirent *de;
            while ((de = readdir(d)) != NULL && !tt_watch_stopping(w)) {
                check_name(lw, de->d_name);
            }
            closedir(d);
        }
    }
    /* Held entries not in the listing have gone (check_name marks the ones
     * it looked at).  A drop moves the last entry into the freed slot and
     * an add appends one already marked, so walking down from the end
     * visits every entry once. */
    for (size_t i = lw->nheld; i-- > 0;) {
        if (i >= lw->nheld || lw->held[i].seen) {
            continue;
        }
        char name[NAME_MAX + 1];
        snprintf(name, sizeof name, "%s", lw->held[i].name);
        check_name(lw, name);
    }
}

/* Attach inotify and the directory descriptor to lw->dir (creating it). */
static tether_err
attach(struct local_watch *lw)
{
    char eb[128];
    tether_err err = tt_local_open_service_dir(lw->lr, lw->service, true, &lw->dfd);
    if (err != TETHER_OK) {
        return err;
    }
    /* The watch goes on before the directory is read, so nothing that
     * happens in between is missed.  inotify only takes a path: it must
     * not follow a symlink, and must land on the directory just opened
     * (and checked), not on something put under the name meanwhile. */
    lw->wd = inotify_add_watch(lw->ifd, lw->dir, WATCH_MASK | IN_DONT_FOLLOW);
    if (lw->wd < 0) {
        int e = errno; /* logging may change errno */
        TT_ERROR("registry: cannot watch %s: %s", lw->dir, tt_local_errno_text(e, eb, sizeof eb));
        close(lw->dfd);
        lw->dfd = -1;
        return e == ENOSPC || e == ENOMEM ? (tether_err)(TETHER_ESYSERR | e) : TETHER_EREGISTRY;
    }
    struct stat a;
    struct stat b;
    if (fstat(lw->dfd, &a) != 0 || lstat(lw->dir, &b) != 0 || a.st_dev != b.st_dev ||
        a.st_ino != b.st_ino) {
        TT_ERROR("registry: %s was replaced while the watch started", lw->dir);
        inotify_rm_watch(lw->ifd, lw->wd);
        lw->wd = -1;
        close(lw->dfd);
        lw->dfd = -1;
        return TETHER_EREGISTRY;
    }
    return TETHER_OK;
}

tether_err
tt_local_watch_create(struct tether_registry *r, const char *service, struct tether_watch **out)
{
    struct tt_local_registry *lr = (struct tt_local_registry *)r;
    struct local_watch *lw = tt_calloc(1, sizeof *lw);
    if (lw == NULL) {
        return TETHER_ENOMEM;
    }
    lw->ifd = -1;
    lw->wd = -1;
    lw->dfd = -1;
    lw->wakefd = -1;
    lw->lr = lr;
    snprintf(lw->service, sizeof lw->service, "%s", service);
    tether_err err = TETHER_EREGISTRY;
    int n = snprintf(lw->dir, sizeof lw->dir, "%s/%s", lr->dir, service);
    if (n <= 0 || (size_t)n >= sizeof lw->dir) {
        goto fail;
    }
    lw->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    lw->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (lw->ifd < 0 || lw->wakefd < 0) {
        char eb[128];
        int e = errno;
        TT_ERROR("registry: cannot create inotify/eventfd: %s",
                 tt_local_errno_text(e, eb, sizeof eb));
        err = (tether_err)(TETHER_ESYSERR | e);
        goto fail;
    }
    err = attach(lw);
    if (err != TETHER_OK) {
        goto fail;
    }
    *out = &lw->super;
    return TETHER_OK;

fail:
    tt_local_watch_destroy(&lw->super);
    return err;
}

/* The directory itself went away (removed, or its file system unmounted):
 * every entry in it is gone; try to put the directory back. */
static void
reattach(struct local_watch *lw)
{
    struct tether_watch *w = &lw->super;
    if (lw->dfd >= 0) {
        close(lw->dfd);
        lw->dfd = -1;
    }
    lw->wd = -1;
    while (lw->nheld > 0) {
        char name[NAME_MAX + 1];
        snprintf(name, sizeof name, "%s", lw->held[0].name);
        held_drop(lw, &lw->held[0]);
        tt_watch_del(w, name);
    }
    if (attach(lw) != TETHER_OK) {
        TT_ERROR("registry: watch on %s is lost until it is restarted", lw->dir);
        return;
    }
    rescan(lw);
}

void
tt_local_watch_run(struct tether_watch *w)
{
    struct local_watch *lw = (struct local_watch *)w;
    /* inotify_event records are aligned for the struct. */
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    rescan(lw);
    while (!tt_watch_stopping(w)) {
        struct pollfd pfd[2] = {{.fd = lw->wakefd, .events = POLLIN},
                                {.fd = lw->ifd, .events = POLLIN}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno != EINTR) {
                char eb[128];
                TT_ERROR("registry: watch on %s: poll: %s", lw->dir,
                         tt_local_errno_text(errno, eb, sizeof eb));
                return;
            }
            continue;
        }
        if (pfd[0].revents != 0) {
            continue; /* woken: the loop condition decides */
        }
        ssize_t n = read(lw->ifd, buf, sizeof buf);
        if (n <= 0) {
            continue; /* EAGAIN or EINTR */
        }
        bool overflow = false;
        bool lost = false;
        for (char *p = buf; p < buf + n && !tt_watch_stopping(w);) {
            struct inotify_event *ev = (struct inotify_event *)(void *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                overflow = true;
                continue;
            }
            if (ev->wd != lw->wd || lw->wd < 0) {
                continue; /* a stale watch descriptor from before a reattach */
            }
            if (ev->mask & (IN_IGNORED | IN_DELETE_SELF)) {
                lost = true;
                continue;
            }
            if (ev->len == 0 || (ev->mask & IN_ISDIR)) {
                continue; /* the directory itself, or a subdirectory */
            }
            check_name(lw, ev->name);
        }
        if (lost) {
            reattach(lw);
        } else if (overflow) {
            /* Events were dropped: only a full look is trustworthy. */
            rescan(lw);
        }
    }
}

void
tt_local_watch_wake(struct tether_watch *w)
{
    struct local_watch *lw = (struct local_watch *)w;
    uint64_t one = 1;
    /* An eventfd write never blocks here (EFD_NONBLOCK) and cannot fail
     * short of counter overflow; the value does not matter. */
    ssize_t rc = write(lw->wakefd, &one, sizeof one);
    (void)rc;
}

void
tt_local_watch_destroy(struct tether_watch *w)
{
    struct local_watch *lw = (struct local_watch *)w;
    while (lw->nheld > 0) {
        held_drop(lw, &lw->held[0]);
    }
    tt_free(lw->held);
    if (lw->dfd >= 0) {
        close(lw->dfd);
    }
    if (lw->ifd >= 0) {
        close(lw->ifd);
    }
    if (lw->wakefd >= 0) {
        close(lw->wakefd);
    }
    tt_free(lw);
}
