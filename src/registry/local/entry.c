/*
 * entry.c - the local backend's entry format and the reader's side of the
 * locking protocol.
 *
 * Entry format: one JSON object, at most TT_REGISTRY_MAX_ENTRY bytes:
 *
 *   {"version":1,"service":"calc","address":"127.0.0.1:8080",
 *    "state":"serving","weight":1,"pid":4242,"meta":{"zone":"a"}}
 *
 * "address" is required; the rest default (state serving, weight 1, pid 0,
 * no metadata).  A file holding only a plain "host:port" line (what a shell
 * sidecar might write) is accepted as an instance with the defaults.
 *
 * Liveness: the owner holds flock(LOCK_EX) on the file under the name for
 * as long as the registration lives, and only rename()s a fully written,
 * already locked file over the name.  So a reader that can take
 * flock(LOCK_SH|LOCK_NB) on the file it opened knows that file's owner is
 * gone -- unless the name meanwhile points at a new file (the owner
 * rewrote the entry and then released the old one), which is why the
 * inode is compared again, while the reader still holds the lock, before
 * anything is unlinked.
 *
 * jansson allocates with its own (process-wide, application-owned)
 * allocator; its objects live only inside these functions.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "registry/local/local.h"

const char *
tt_local_errno_text(int err, char *buf, size_t cap)
{
    /* _GNU_SOURCE gives the GNU strerror_r, which may return a static
     * string instead of filling buf. */
    return strerror_r(err, buf, cap);
}

int
tt_local_mkdirs(const char *path)
{
    char tmp[4096];
    struct stat st;
    /* The common case, on every write: it is already there. */
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        return 0;
    }
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) {
        return ENAMETOOLONG;
    }
    memcpy(tmp, path, n + 1);
    /* Create each missing component in turn; EEXIST is fine for all of
     * them, and the final stat decides whether the result is usable. */
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == '\0') {
            char c = tmp[i];
            tmp[i] = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
                return errno;
            }
            tmp[i] = c;
        }
    }
    if (stat(path, &st) != 0) {
        return errno;
    }
    if (!S_ISDIR(st.st_mode)) {
        return ENOTDIR;
    }
    return 0;
}

tether_err
tt_local_open_service_dir(const struct tt_local_registry *lr, const char *service, bool create,
                          int *dfd)
{
    char eb[128];
    *dfd = -1;
    /* The base directory is the one the caller named (symlinks in it are
     * the caller's business); everything below it is reached relative to
     * a descriptor, never through a path that could be re-pointed. */
    int base = open(lr->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (base < 0) {
        int e = errno;
        if (e == ENOENT && !create) {
            return TETHER_OK;
        }
        TT_ERROR("registry: cannot open %s: %s", lr->dir, tt_local_errno_text(e, eb, sizeof eb));
        return TETHER_EREGISTRY;
    }
    bool made = false;
    if (create) {
        if (mkdirat(base, service, lr->trust.has_group ? 0770 : 0700) == 0) {
            made = true;
        } else if (errno != EEXIST) {
            TT_ERROR("registry: cannot create %s/%s: %s", lr->dir, service,
                     tt_local_errno_text(errno, eb, sizeof eb));
            close(base);
            return TETHER_EREGISTRY;
        }
    }
    int fd = openat(base, service, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(base);
    if (fd < 0) {
        if (e == ENOENT && !create) {
            return TETHER_OK; /* nobody ever registered this service */
        }
        if (e == ELOOP || e == ENOTDIR) {
            TT_ERROR("registry: %s/%s is not a directory (a symlink or a file): remove it",
                     lr->dir, service);
        } else {
            TT_ERROR("registry: cannot open %s/%s: %s", lr->dir, service,
                     tt_local_errno_text(e, eb, sizeof eb));
        }
        return TETHER_EREGISTRY;
    }
    if (made && lr->trust.has_group) {
        /* Members of the group register here too: the directory is the
         * group's, and setgid so that entries made in it are as well. */
        if (fchown(fd, (uid_t)-1, lr->trust.gid) != 0 || fchmod(fd, 02770) != 0) {
            TT_WARN("registry: cannot give %s/%s to gid %lu: %s", lr->dir, service,
                    (unsigned long)lr->trust.gid, tt_local_errno_text(errno, eb, sizeof eb));
        }
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        TT_ERROR("registry: cannot stat %s/%s: %s", lr->dir, service,
                 tt_local_errno_text(errno, eb, sizeof eb));
        close(fd);
        return TETHER_EREGISTRY;
    }
    /* Whoever owns or can write the directory decides what is in it. */
    bool group_ok = lr->trust.has_group && st.st_gid == lr->trust.gid;
    if (!tt_local_trusted(&lr->trust, &st) || (st.st_mode & S_IWOTH) != 0 ||
        ((st.st_mode & S_IWGRP) != 0 && !group_ok)) {
        TT_ERROR("registry: %s/%s (uid %lu, gid %lu, mode %03o) is not trusted: it must be "
                 "owned by uid %lu%s and writable by no one else%s; fix it with "
                 "'chown %lu %s/%s && chmod 0700 %s/%s', or remove it",
                 lr->dir, service, (unsigned long)st.st_uid, (unsigned long)st.st_gid,
                 (unsigned)(st.st_mode & 0777), (unsigned long)lr->trust.uid,
                 lr->trust.has_group ? " or have the registry's group" : "",
                 lr->trust.has_group ? " but that group" : "", (unsigned long)lr->trust.uid,
                 lr->dir, service, lr->dir, service);
        close(fd);
        return TETHER_EREGISTRY;
    }
    *dfd = fd;
    return TETHER_OK;
}

tether_err
tt_local_encode(const tether_instance *inst, char *buf, size_t cap, size_t *len)
{
    tether_err err = TETHER_ENOMEM;
    json_t *o = json_object();
    json_t *m = json_object();
    if (o == NULL || m == NULL) {
        goto done;
    }
    json_t *svc = json_string(inst->service);
    json_t *addr = json_string(inst->address);
    if (svc == NULL || addr == NULL) {
        json_decref(svc);
        json_decref(addr);
        err = TETHER_EINVAL;
        goto done;
    }
    if (json_object_set_new(o, "version", json_integer(1)) != 0 ||
        json_object_set_new(o, "service", svc) != 0 ||
        json_object_set_new(o, "address", addr) != 0 ||
        json_object_set_new(o, "state",
                            json_string(inst->state == TT_INSTANCE_NOT_SERVING
                                            ? "not-serving"
                                            : tether_instance_state_name(inst->state))) != 0 ||
        json_object_set_new(o, "weight", json_integer((json_int_t)inst->weight)) != 0 ||
        json_object_set_new(o, "pid", json_integer((json_int_t)getpid())) != 0) {
        goto done;
    }
    for (size_t i = 0; i < inst->meta_count; i++) {
        json_t *v = json_string(inst->meta[i].value);
        /* A NULL value (bad UTF-8) makes set_new fail, as does a bad key. */
        if (v == NULL || json_object_set_new(m, inst->meta[i].key, v) != 0) {
            err = TETHER_EINVAL;
            goto done;
        }
    }
    if (json_object_set(o, "meta", m) != 0) {
        goto done;
    }
    size_t need = json_dumpb(o, buf, cap, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (need == 0) {
        goto done;
    }
    /* One byte for the newline and one for the terminator. */
    if (need + 2 > cap || need + 1 > TT_REGISTRY_MAX_ENTRY) {
        err = TETHER_EMSGSIZE;
        goto done;
    }
    buf[need] = '\n';
    buf[need + 1] = '\0';
    *len = need + 1;
    err = TETHER_OK;

done:
    json_decref(m);
    json_decref(o);
    return err;
}

/* A copy of the plain "host:port" form, or NULL. */
static char *
plain_address(const char *text, size_t len)
{
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ')) {
        len--;
    }
    while (len > 0 && (*text == ' ' || *text == '\t')) {
        text++;
        len--;
    }
    if (len == 0 || len > TT_REGISTRY_MAX_ADDRESS || memchr(text, '\0', len) != NULL) {
        return NULL;
    }
    char *a = tt_strndup(text, len);
    if (a != NULL && !tt_registry_address_valid(a)) {
        tt_free(a);
        a = NULL;
    }
    return a;
}

bool
tt_local_decode(const char *text, size_t len, const char *service, const char *id,
                tether_instance *inst, char *why, size_t whycap)
{
    memset(inst, 0, sizeof *inst);
    inst->weight = 1;
    inst->state = TETHER_INSTANCE_SERVING;
    json_t *o = NULL;
    tether_meta *meta = NULL;

    if (len == 0 || text[0] != '{') {
        char *a = plain_address(text, len);
        if (a == NULL) {
            snprintf(why, whycap, "neither a JSON object nor a host:port line");
            return false;
        }
        inst->address = a;
        goto strings;
    }

    json_error_t jerr;
    o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (o == NULL || !json_is_object(o)) {
        snprintf(why, whycap, "not a JSON object (%s)", o == NULL ? jerr.text : "wrong type");
        goto fail;
    }
    const char *address = json_string_value(json_object_get(o, "address"));
    if (address == NULL || !tt_registry_address_valid(address)) {
        snprintf(why, whycap, "missing or invalid \"address\"");
        goto fail;
    }
    json_t *state = json_object_get(o, "state");
    if (state != NULL) {
        const char *s = json_string_value(state);
        if (s != NULL && strcmp(s, "serving") == 0) {
            inst->state = TETHER_INSTANCE_SERVING;
        } else if (s != NULL && strcmp(s, "draining") == 0) {
            inst->state = TETHER_INSTANCE_DRAINING;
        } else if (s != NULL && strcmp(s, "not-serving") == 0) {
            /* Alive but withdrawn by its server's watchdog: a valid entry
             * (so it is reaped like any other when its owner dies) that
             * readers do not report (tt_local_read_entry). */
            inst->state = TT_INSTANCE_NOT_SERVING;
        } else {
            snprintf(why, whycap, "invalid \"state\"");
            goto fail;
        }
    }
    json_t *weight = json_object_get(o, "weight");
    if (weight != NULL) {
        json_int_t wv = json_is_integer(weight) ? json_integer_value(weight) : -1;
        if (wv < 1 || wv > (json_int_t)UINT32_MAX) {
            snprintf(why, whycap, "invalid \"weight\"");
            goto fail;
        }
        inst->weight = (uint32_t)wv;
    }
    json_t *pid = json_object_get(o, "pid");
    if (pid != NULL && json_is_integer(pid) && json_integer_value(pid) > 0) {
        inst->pid = (int64_t)json_integer_value(pid);
    }
    json_t *m = json_object_get(o, "meta");
    if (m != NULL && !json_is_object(m)) {
        snprintf(why, whycap, "\"meta\" is not an object");
        goto fail;
    }
    size_t nm = m != NULL ? json_object_size(m) : 0;
    if (nm > 0) {
        meta = tt_calloc(nm, sizeof *meta);
        if (meta == NULL) {
            snprintf(why, whycap, "out of memory");
            goto fail;
        }
        inst->meta = meta;
        const char *k;
        json_t *v;
        json_object_foreach(m, k, v)
        {
            const char *sv = json_string_value(v);
            if (sv == NULL || k[0] == '\0') {
                snprintf(why, whycap, "metadata value of \"%s\" is not a string", k);
                goto fail;
            }
            meta[inst->meta_count].key = tt_strdup(k);
            meta[inst->meta_count].value = tt_strdup(sv);
            inst->meta_count++;
            if (meta[inst->meta_count - 1].key == NULL ||
                meta[inst->meta_count - 1].value == NULL) {
                snprintf(why, whycap, "out of memory");
                goto fail;
            }
        }
    }
    inst->address = tt_strdup(address);
    if (inst->address == NULL) {
        snprintf(why, whycap, "out of memory");
        goto fail;
    }

strings:
    inst->service = tt_strdup(service);
    inst->id = tt_strdup(id);
    json_decref(o);
    if (inst->service == NULL || inst->id == NULL) {
        snprintf(why, whycap, "out of memory");
        tt_instance_clear(inst);
        return false;
    }
    return true;

fail:
    json_decref(o);
    tt_instance_clear(inst);
    return false;
}

bool
tt_local_trusted(const struct tt_local_trust *t, const struct stat *st)
{
    return st->st_uid == t->uid || st->st_uid == 0 || (t->has_group && st->st_gid == t->gid);
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool
tt_local_entry_name_valid(const char *name, bool tmp)
{
    size_t n = strlen(name);
    if (tmp) {
        /* ".<entry name>.tmp" */
        if (n < 6 || name[0] != '.' || strcmp(name + n - 4, ".tmp") != 0) {
            return false;
        }
        char inner[NAME_MAX + 1];
        if (n - 5 >= sizeof inner) {
            return false;
        }
        memcpy(inner, name + 1, n - 5);
        inner[n - 5] = '\0';
        return tt_local_entry_name_valid(inner, false);
    }
    /* "<safe>@<pid>.<16 hex>.json", as entry_name() in local.c makes it. */
    const char *at = strrchr(name, '@');
    if (at == NULL || at == name || at - name > 100 || name[0] == '.') {
        return false;
    }
    for (const char *p = name; p < at; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' ||
                  c == '-' || c == '_';
        if (!ok) {
            return false;
        }
    }
    const char *p = at + 1;
    size_t digits = 0;
    while (is_digit(*p) && digits < 20) {
        p++;
        digits++;
    }
    if (digits == 0 || *p++ != '.') {
        return false;
    }
    for (int i = 0; i < 16; i++, p++) {
        if (!(is_digit(*p) || (*p >= 'a' && *p <= 'f'))) {
            return false;
        }
    }
    return strcmp(p, ".json") == 0;
}

/* Read the whole file (at most max + 1 bytes, to detect oversize). */
static ssize_t
read_all(int fd, char *buf, size_t max)
{
    size_t got = 0;
    while (got < max + 1) {
        ssize_t n = pread(fd, buf + got, max + 1 - got, (off_t)got);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/*
 * Whether the file open as fd holds what this backend writes: an entry
 * (or, for a temporary file, nothing yet).  Checked before anything is
 * unlinked, so that a reader never removes a file it did not recognise,
 * whatever directory it was tricked into looking at.
 */
static bool
content_is_entry(int fd, const char *name, bool tmp)
{
    char *buf = tt_malloc(TT_REGISTRY_MAX_ENTRY + 1);
    if (buf == NULL) {
        return false;
    }
    ssize_t n = read_all(fd, buf, TT_REGISTRY_MAX_ENTRY);
    bool ok = false;
    if (n == 0) {
        ok = tmp; /* a writer that died before writing anything */
    } else if (n > 0 && n <= TT_REGISTRY_MAX_ENTRY && buf[0] == '{') {
        tether_instance inst;
        char why[160];
        ok = tt_local_decode(buf, (size_t)n, "-", name, &inst, why, sizeof why);
        if (ok) {
            tt_instance_clear(&inst);
        }
    }
    tt_free(buf);
    return ok;
}

enum tt_local_entry_kind
tt_local_reap_if_same(int dfd, const char *name, int fd, const struct tt_local_trust *trust,
                      bool tmp)
{
    struct stat st;
    struct stat now;
    if (fstat(fd, &st) != 0) {
        return TT_LOCAL_STUCK;
    }
    if (fstatat(dfd, name, &now, AT_SYMLINK_NOFOLLOW) != 0) {
        return TT_LOCAL_DEAD; /* someone else removed it already */
    }
    if (now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
        /* A live owner renamed a new entry over the name after we opened
         * the old one: that is a rewrite, not a death. */
        return TT_LOCAL_ALIVE;
    }
    /* Only files that are certainly ours go: a name we write, an owner we
     * trust, and content we wrote.  Anything else is merely not listed. */
    if (!S_ISREG(st.st_mode) || !tt_local_trusted(trust, &st) ||
        !tt_local_entry_name_valid(name, tmp) || !content_is_entry(fd, name, tmp)) {
        TT_DEBUG("registry: not removing %s: unlocked, but not a tether entry", name);
        return TT_LOCAL_STUCK;
    }
    /* The caller holds a lock on the file, so no owner can be holding it,
     * and owners never give up the lock of a file that is still under its
     * name: the name cannot be re-pointed by a live owner from here on. */
    if (unlinkat(dfd, name, 0) != 0 && errno != ENOENT) {
        char eb[128];
        TT_DEBUG("registry: cannot remove dead entry %s: %s", name,
                 tt_local_errno_text(errno, eb, sizeof eb));
        return TT_LOCAL_STUCK;
    }
    TT_DEBUG("registry: removed dead entry %s", name);
    return TT_LOCAL_DEAD;
}

tether_err
tt_local_read_entry(int dfd, const char *service, const char *name,
                    const struct tt_local_trust *trust, struct tt_local_entry *e)
{
    memset(e, 0, sizeof *e);
    e->fd = -1;
    char eb[128];
    /* A name can be rewritten under us a few times in a row; give up after
     * a handful of tries and let the next event or list look again. */
    for (int attempt = 0; attempt < 8; attempt++) {
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            e->kind = errno == ENOENT ? TT_LOCAL_GONE : TT_LOCAL_SKIP;
            return TETHER_OK;
        }
        if (!S_ISREG(st.st_mode)) {
            /* Checked before opening: opening directories or fifos would
             * also produce close events for watchers. */
            TT_WARN("registry: skipping %s/%s: not a regular file", service, name);
            e->kind = TT_LOCAL_SKIP;
            return TETHER_OK;
        }
        if (!tt_local_trusted(trust, &st)) {
            /* Checked before opening too: our own open and close would
             * be the next event for a watcher, forever. */
            TT_WARN("registry: skipping %s/%s: owned by uid %lu gid %lu, neither this user "
                    "nor the registry's group",
                    service, name, (unsigned long)st.st_uid, (unsigned long)st.st_gid);
            e->kind = TT_LOCAL_SKIP;
            return TETHER_OK;
        }
        int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        if (fd < 0) {
            if (errno == ENOENT) {
                e->kind = TT_LOCAL_GONE;
            } else {
                TT_WARN("registry: skipping %s/%s: %s", service, name,
                        tt_local_errno_text(errno, eb, sizeof eb));
                e->kind = TT_LOCAL_SKIP;
            }
            return TETHER_OK;
        }
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            continue;
        }
        if (!tt_local_trusted(trust, &st)) {
            /* Replaced between the look and the open: keep the descriptor
             * (a watch holds it) but never use or remove the file. */
            e->fd = fd;
            e->dev = st.st_dev;
            e->ino = st.st_ino;
            e->kind = TT_LOCAL_GARBAGE;
            return TETHER_OK;
        }
        if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
            /* Nobody holds the lock: the owner of this file is gone. */
            enum tt_local_entry_kind k = tt_local_reap_if_same(dfd, name, fd, trust, false);
            flock(fd, LOCK_UN);
            if (k == TT_LOCAL_ALIVE) {
                close(fd);
                continue; /* rewritten meanwhile: look at the new file */
            }
            e->kind = k;
            e->dev = st.st_dev;
            e->ino = st.st_ino;
            if (k == TT_LOCAL_STUCK) {
                e->fd = fd;
            } else {
                close(fd);
            }
            return TETHER_OK;
        }
        if (errno != EWOULDBLOCK) {
            TT_WARN("registry: skipping %s/%s: cannot test its lock: %s", service, name,
                    tt_local_errno_text(errno, eb, sizeof eb));
            close(fd);
            e->kind = TT_LOCAL_SKIP;
            return TETHER_OK;
        }
        /* The owner is alive.  Entries are never modified once under their
         * name, so what we read is one complete version. */
        e->fd = fd;
        e->dev = st.st_dev;
        e->ino = st.st_ino;
        e->kind = TT_LOCAL_GARBAGE;
        if (st.st_size > TT_REGISTRY_MAX_ENTRY) {
            TT_WARN("registry: skipping %s/%s: %lld bytes, over the %d byte limit", service,
                    name, (long long)st.st_size, TT_REGISTRY_MAX_ENTRY);
            return TETHER_OK;
        }
        char *buf = tt_malloc(TT_REGISTRY_MAX_ENTRY + 1);
        if (buf == NULL) {
            close(fd);
            e->fd = -1;
            return TETHER_ENOMEM;
        }
        ssize_t n = read_all(fd, buf, TT_REGISTRY_MAX_ENTRY);
        char why[160];
        if (n < 0) {
            TT_WARN("registry: skipping %s/%s: %s", service, name,
                    tt_local_errno_text(errno, eb, sizeof eb));
        } else if (n > TT_REGISTRY_MAX_ENTRY) {
            TT_WARN("registry: skipping %s/%s: over the %d byte limit", service, name,
                    TT_REGISTRY_MAX_ENTRY);
        } else if (!tt_local_decode(buf, (size_t)n, service, name, &e->inst, why, sizeof why)) {
            TT_WARN("registry: skipping %s/%s: %s", service, name, why);
        } else if (e->inst.state == TT_INSTANCE_NOT_SERVING) {
            tt_instance_clear(&e->inst);
            e->kind = TT_LOCAL_HIDDEN;
        } else {
            e->kind = TT_LOCAL_ALIVE;
        }
        tt_free(buf);
        return TETHER_OK;
    }
    TT_DEBUG("registry: %s/%s keeps changing; looking again later", service, name);
    e->kind = TT_LOCAL_SKIP;
    return TETHER_OK;
}
