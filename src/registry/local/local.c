/*
 * local.c - the "local:" backend: open, register, set_state, deregister
 * and list.  The writer's side of the protocol lives here:
 *
 *   1. write the entry into a temporary file ".<name>.tmp" (readers ignore
 *      names starting with '.'), created O_EXCL|O_CLOEXEC;
 *   2. take flock(LOCK_EX) on that temporary file;
 *   3. rename() it over the entry's name;
 *   4. only then close the previous version (set_state), releasing its
 *      lock.
 *
 * So whatever file is under the name is complete and locked for as long
 * as its owner lives; the kernel drops the lock when the owner dies, in
 * any way, and readers then remove the file.  Deregistering unlinks the
 * name before closing, so the name is never seen unlocked while the owner
 * lives.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "registry/local/local.h"

/* Temporary files older than this whose lock is free were left by a writer
 * that died between creating and renaming them. */
#define STALE_TMP_SECONDS 60

struct local_registration {
    struct tether_registration super;
    struct tt_local_registry *lr;
    char *name;           /* entry file name, unique per registration */
    int fd;               /* the locked entry currently under the name */
    tether_instance inst; /* as registered (owned), with the current state */
};

/* Whether path is an existing directory we may write into. */
static bool
usable_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && access(path, W_OK | X_OK) == 0;
}

tether_err
tt_local_default_dir(const char *root, char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    unsigned long uid = (unsigned long)geteuid();
    char cand[4096];
    int n;
    if (xdg != NULL && xdg[0] == '/') {
        n = snprintf(buf, cap, "%s/tether", xdg);
        return n > 0 && (size_t)n < cap ? TETHER_OK : TETHER_EREGISTRY;
    }
    /* Without XDG_RUNTIME_DIR (system services, cron, su): the places in
     * /run first, which other users cannot create things in, and /tmp,
     * where anyone can squat a name, only when there is no /run. */
    snprintf(cand, sizeof cand, "%s/run/tether", root);
    if (usable_dir(cand)) {
        n = snprintf(buf, cap, "%s", cand);
    } else {
        snprintf(cand, sizeof cand, "%s/run/user/%lu", root, uid);
        if (usable_dir(cand)) {
            n = snprintf(buf, cap, "%s/tether", cand);
        } else {
            n = snprintf(buf, cap, "%s/tmp/tether-%lu", root, uid);
        }
    }
    return n > 0 && (size_t)n < cap ? TETHER_OK : TETHER_EREGISTRY;
}

/* "group=NAME" (or a numeric gid) into trust; false after logging. */
static bool
parse_group(const char *url, const char *v, struct tt_local_trust *trust)
{
    if (v[0] == '\0') {
        TT_ERROR("registry: empty group in '%s'", url);
        return false;
    }
    char *end = NULL;
    errno = 0;
    unsigned long g = strtoul(v, &end, 10);
    if (v[0] >= '0' && v[0] <= '9' && errno == 0 && *end == '\0' && g < (gid_t)-1) {
        trust->gid = (gid_t)g;
        trust->has_group = true;
        return true;
    }
    struct group gr;
    struct group *res = NULL;
    char buf[16384];
    int rc = getgrnam_r(v, &gr, buf, sizeof buf, &res);
    if (rc != 0 || res == NULL) {
        TT_ERROR("registry: unknown group '%s' in '%s'", v, url);
        return false;
    }
    trust->gid = gr.gr_gid;
    trust->has_group = true;
    return true;
}

/* The "?name=value&..." part of a local: URL (q without the '?'). */
static bool
parse_options(const char *url, const char *q, struct tt_local_trust *trust)
{
    while (*q != '\0') {
        const char *amp = strchr(q, '&');
        size_t n = amp != NULL ? (size_t)(amp - q) : strlen(q);
        if (n > 0) {
            char opt[256];
            if (n >= sizeof opt) {
                TT_ERROR("registry: option too long in '%s'", url);
                return false;
            }
            memcpy(opt, q, n);
            opt[n] = '\0';
            char *eq = strchr(opt, '=');
            if (eq == NULL) {
                TT_ERROR("registry: option '%s' in '%s' has no value", opt, url);
                return false;
            }
            *eq = '\0';
            if (strcmp(opt, "group") == 0) {
                if (!parse_group(url, eq + 1, trust)) {
                    return false;
                }
            } else {
                TT_ERROR("registry: unknown option '%s' in '%s' (known: group)", opt, url);
                return false;
            }
        }
        q += n + (amp != NULL ? 1 : 0);
    }
    return true;
}

static tether_err
local_open(const char *url, const char *rest, struct tether_registry **out)
{
    char dir[4096];
    struct tt_local_trust trust = {.uid = geteuid()};
    const char *q = strchr(rest, '?');
    size_t n = q != NULL ? (size_t)(q - rest) : strlen(rest);
    bool dflt = n == 0;
    if (q != NULL && !parse_options(url, q + 1, &trust)) {
        return TETHER_EINVAL;
    }
    /* "local://dir" is forgiven for "local:/dir". */
    if (n >= 2 && strncmp(rest, "//", 2) == 0) {
        rest += 1;
        n -= 1;
    }
    if (dflt) {
        if (tt_local_default_dir("", dir, sizeof dir) != TETHER_OK) {
            return TETHER_EREGISTRY;
        }
    } else {
        if (n >= sizeof dir) {
            TT_ERROR("registry: directory name in '%s' is too long", url);
            return TETHER_EINVAL;
        }
        memcpy(dir, rest, n);
        dir[n] = '\0';
        /* Trailing slashes would only make paths ugly. */
        while (n > 1 && dir[n - 1] == '/') {
            dir[--n] = '\0';
        }
    }
    char eb[128];
    int rc = tt_local_mkdirs(dir);
    if (rc != 0) {
        TT_ERROR("registry: cannot use directory %s: %s", dir,
                 tt_local_errno_text(rc, eb, sizeof eb));
        return TETHER_EREGISTRY;
    }
    if (dflt) {
        /* The default may live in a shared place (/tmp): a directory
         * someone else created there could feed us fake entries. */
        struct stat st = {0};
        if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != trust.uid ||
            (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
            TT_ERROR("registry: %s is not a directory owned by uid %lu and writable only by it "
                     "(uid %lu, mode %03o): remove it ('rm -rf %s' as its owner or root) and try "
                     "again, or set XDG_RUNTIME_DIR, or give an explicit directory "
                     "(local:/path)",
                     dir, (unsigned long)trust.uid, (unsigned long)st.st_uid,
                     (unsigned)(st.st_mode & 0777), dir);
            return TETHER_EREGISTRY;
        }
    }
    struct tt_local_registry *lr = tt_calloc(1, sizeof *lr);
    if (lr == NULL) {
        return TETHER_ENOMEM;
    }
    lr->trust = trust;
    snprintf(lr->super.location, sizeof lr->super.location, "local:%.500s", dir);
    lr->dir = tt_strdup(dir);
    if (lr->dir == NULL) {
        tt_free(lr);
        return TETHER_ENOMEM;
    }
    *out = &lr->super;
    return TETHER_OK;
}

static void
local_destroy(struct tether_registry *r)
{
    struct tt_local_registry *lr = (struct tt_local_registry *)r;
    tt_free(lr->dir);
    tt_free(lr);
}

/* The entry's file name: the address made file-name safe, the pid and 64
 * random bits, so that names never collide, not even across pid reuse. */
static char *
entry_name(const char *address)
{
    char safe[101];
    size_t n = 0;
    for (const char *p = address; *p != '\0' && n < sizeof safe - 1; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-';
        safe[n++] = ok ? c : '_';
    }
    safe[n] = '\0';
    if (safe[0] == '.') {
        safe[0] = '_'; /* names starting with '.' are temporary files */
    }
    char name[160];
    snprintf(name, sizeof name, "%s@%ld.%016llx.json", safe, (long)getpid(),
             (unsigned long long)tt_registry_random64());
    return tt_strdup(name);
}

/* Write all of buf to fd. */
static int
write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Put a new version of reg's entry (with state) under its name, following
 * steps 1-3 above.  On success *fdp holds the new, locked descriptor; the
 * caller closes the previous one.
 */
static tether_err
write_entry(struct local_registration *reg, tether_instance_state state, int *fdp)
{
    char tmp[256 + 8];
    char eb[128];
    tether_err err;
    const struct tt_local_trust *trust = &reg->lr->trust;
    if (snprintf(tmp, sizeof tmp, ".%s.tmp", reg->name) >= (int)sizeof tmp) {
        TT_ERROR("registry: entry name too long under %s", reg->lr->dir);
        return TETHER_EREGISTRY;
    }
    /* Opened (and created if missing) on every write, so an entry comes
     * back by itself after someone removed the service directory. */
    int dfd = -1;
    err = tt_local_open_service_dir(reg->lr, reg->inst.service, true, &dfd);
    if (err != TETHER_OK) {
        return err;
    }

    char *buf = tt_malloc(TT_REGISTRY_MAX_ENTRY + 2);
    if (buf == NULL) {
        close(dfd);
        return TETHER_ENOMEM;
    }
    tether_instance inst = reg->inst;
    inst.state = state;
    size_t len = 0;
    err = tt_local_encode(&inst, buf, TT_REGISTRY_MAX_ENTRY + 2, &len);
    if (err != TETHER_OK) {
        TT_ERROR("registry: cannot encode the entry for %s: %s", reg->inst.address,
                 tether_strerror(err));
        tt_free(buf);
        close(dfd);
        return err == TETHER_ENOMEM ? err : TETHER_EINVAL;
    }

    /* With a group, its members must be able to open (and lock) it. */
    mode_t mode = trust->has_group ? 0640 : 0600;
    int flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW;
    int fd = openat(dfd, tmp, flags, mode);
    if (fd < 0 && errno == EEXIST) {
        /* Left by an earlier write of this registration that failed half
         * way (names are unique per registration, so it is ours). */
        unlinkat(dfd, tmp, 0);
        fd = openat(dfd, tmp, flags, mode);
    }
    if (fd < 0) {
        TT_ERROR("registry: cannot create %s/%s/%s: %s", reg->lr->dir, reg->inst.service, tmp,
                 tt_local_errno_text(errno, eb, sizeof eb));
        tt_free(buf);
        close(dfd);
        return TETHER_EREGISTRY;
    }
    if (trust->has_group && (fchown(fd, (uid_t)-1, trust->gid) != 0 || fchmod(fd, mode) != 0)) {
        TT_WARN("registry: cannot give %s to gid %lu: %s", tmp, (unsigned long)trust->gid,
                tt_local_errno_text(errno, eb, sizeof eb));
    }
    /* The lock is taken before the file gets its real name: a reader must
     * never find an unlocked file under an entry name while we live. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        TT_ERROR("registry: cannot lock %s: %s", tmp, tt_local_errno_text(errno, eb, sizeof eb));
        goto fail;
    }
    if (write_all(fd, buf, len) != 0) {
        TT_ERROR("registry: cannot write %s: %s", tmp, tt_local_errno_text(errno, eb, sizeof eb));
        goto fail;
    }
    if (renameat(dfd, tmp, dfd, reg->name) != 0) {
        TT_ERROR("registry: cannot rename %s to %s: %s", tmp, reg->name,
                 tt_local_errno_text(errno, eb, sizeof eb));
        goto fail;
    }
    tt_free(buf);
    close(dfd);
    *fdp = fd;
    return TETHER_OK;

fail:
    unlinkat(dfd, tmp, 0);
    close(fd);
    close(dfd);
    tt_free(buf);
    return TETHER_EREGISTRY;
}

static tether_err
local_register(struct tether_registry *r, const tether_instance *inst,
               struct tether_registration **out)
{
    struct local_registration *reg = tt_calloc(1, sizeof *reg);
    if (reg == NULL) {
        return TETHER_ENOMEM;
    }
    reg->lr = (struct tt_local_registry *)r;
    reg->fd = -1;
    tether_err err = tt_instance_copy(&reg->inst, inst);
    if (err != TETHER_OK) {
        goto fail;
    }
    reg->name = entry_name(inst->address);
    if (reg->name == NULL) {
        err = TETHER_ENOMEM;
        goto fail;
    }
    reg->inst.id = tt_strdup(reg->name);
    if (reg->inst.id == NULL) {
        err = TETHER_ENOMEM;
        goto fail;
    }
    reg->inst.pid = (int64_t)getpid();
    err = write_entry(reg, inst->state, &reg->fd);
    if (err != TETHER_OK) {
        goto fail;
    }
    TT_DEBUG("registry: registered %s/%s as %s", inst->service, inst->address, reg->name);
    *out = &reg->super;
    return TETHER_OK;

fail:
    tt_instance_clear(&reg->inst);
    tt_free(reg->name);
    tt_free(reg);
    return err;
}

static tether_err
local_set_state(struct tether_registration *g, tether_instance_state state)
{
    struct local_registration *reg = (struct local_registration *)g;
    if (reg->inst.state == state) {
        return TETHER_OK;
    }
    int fd = -1;
    tether_err err = write_entry(reg, state, &fd);
    if (err != TETHER_OK) {
        return err;
    }
    /* The new file is locked and under the name: only now may the old
     * one's lock go (step 4). */
    close(reg->fd);
    reg->fd = fd;
    reg->inst.state = state;
    return TETHER_OK;
}

static tether_err
local_deregister(struct tether_registration *g)
{
    struct local_registration *reg = (struct local_registration *)g;
    tether_err err = TETHER_OK;
    char eb[128];
    /* Unlink before closing: the name must never be seen unlocked while we
     * are alive, or a reader would count a clean exit as a crash. */
    int dfd = -1;
    if (tt_local_open_service_dir(reg->lr, reg->inst.service, false, &dfd) != TETHER_OK) {
        err = TETHER_EREGISTRY;
    } else if (dfd >= 0) {
        if (unlinkat(dfd, reg->name, 0) != 0 && errno != ENOENT) {
            TT_ERROR("registry: cannot remove %s/%s/%s: %s (readers will remove it)",
                     reg->lr->dir, reg->inst.service, reg->name,
                     tt_local_errno_text(errno, eb, sizeof eb));
            err = TETHER_EREGISTRY;
        }
        close(dfd);
    }
    if (reg->fd >= 0) {
        close(reg->fd);
    }
    TT_DEBUG("registry: deregistered %s/%s", reg->inst.service, reg->inst.address);
    tt_instance_clear(&reg->inst);
    tt_free(reg->name);
    tt_free(reg);
    return err;
}

/* Remove a temporary file left by a writer that died before renaming it:
 * old, and nobody holds its lock. */
static void
reap_stale_tmp(int dfd, const char *name, const struct tt_local_trust *trust)
{
    struct stat st;
    if (!tt_local_entry_name_valid(name, true) ||
        fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
        !tt_local_trusted(trust, &st) || time(NULL) - st.st_mtime < STALE_TMP_SECONDS) {
        return;
    }
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        return;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        tt_local_reap_if_same(dfd, name, fd, trust, true);
    }
    close(fd);
}

static tether_err
local_list(struct tether_registry *r, const char *service, tether_instance_list *out)
{
    struct tt_local_registry *lr = (struct tt_local_registry *)r;
    char eb[128];
    int dfd = -1;
    tether_err err = tt_local_open_service_dir(lr, service, false, &dfd);
    if (err != TETHER_OK || dfd < 0) {
        return err; /* dfd < 0: nobody ever registered this service */
    }
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        TT_ERROR("registry: cannot read %s/%s: %s", lr->dir, service,
                 tt_local_errno_text(errno, eb, sizeof eb));
        close(dfd);
        return TETHER_EREGISTRY;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (name[0] == '.') {
            size_t n = strlen(name);
            if (n > 4 && strcmp(name + n - 4, ".tmp") == 0) {
                reap_stale_tmp(dfd, name, &lr->trust);
            }
            continue;
        }
        struct tt_local_entry e;
        err = tt_local_read_entry(dfd, service, name, &lr->trust, &e);
        if (err != TETHER_OK) {
            break;
        }
        if (e.fd >= 0) {
            close(e.fd);
        }
        if (e.kind == TT_LOCAL_ALIVE) {
            err = tt_instance_list_push_take(out, &e.inst);
            tt_instance_clear(&e.inst);
            if (err != TETHER_OK) {
                break;
            }
        }
    }
    closedir(d);
    return err;
}

const struct tt_registry_ops tt_local_registry_ops = {
    .scheme = "local",
    .open = local_open,
    .destroy = local_destroy,
    .register_ = local_register,
    .set_state = local_set_state,
    .deregister = local_deregister,
    .list = local_list,
    .watch_create = tt_local_watch_create,
    .watch_run = tt_local_watch_run,
    .watch_wake = tt_local_watch_wake,
    .watch_destroy = tt_local_watch_destroy,
};
