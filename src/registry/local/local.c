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

/* "<dir>/<service>" into buf; false if it does not fit. */
static bool
service_dir(const struct tt_local_registry *lr, const char *service, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s/%s", lr->dir, service);
    return n > 0 && (size_t)n < cap;
}

/* The default base directory: $XDG_RUNTIME_DIR/tether, else
 * /tmp/tether-<uid>. */
static bool
default_dir(char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;
    if (xdg != NULL && xdg[0] == '/') {
        n = snprintf(buf, cap, "%s/tether", xdg);
    } else {
        n = snprintf(buf, cap, "/tmp/tether-%lu", (unsigned long)geteuid());
    }
    return n > 0 && (size_t)n < cap;
}

static tether_err
local_open(const char *url, const char *rest, struct tether_registry **out)
{
    char dir[4096];
    bool dflt = rest[0] == '\0';
    /* "local://dir" is forgiven for "local:/dir". */
    if (strncmp(rest, "//", 2) == 0) {
        rest += 1;
    }
    if (dflt) {
        if (!default_dir(dir, sizeof dir)) {
            return TETHER_EREGISTRY;
        }
    } else {
        size_t n = strlen(rest);
        if (n >= sizeof dir) {
            TT_ERROR("registry: directory name in '%s' is too long", url);
            return TETHER_EINVAL;
        }
        memcpy(dir, rest, n + 1);
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
        /* The default lives in a shared place (/tmp): a directory someone
         * else created there could feed us fake entries. */
        struct stat st;
        if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
            TT_ERROR("registry: %s is not a directory owned by uid %lu", dir,
                     (unsigned long)geteuid());
            return TETHER_EREGISTRY;
        }
    }
    struct tt_local_registry *lr = tt_calloc(1, sizeof *lr);
    if (lr == NULL) {
        return TETHER_ENOMEM;
    }
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
    char dir[4096];
    char path[4096 + 256];
    char tmp[4096 + 256];
    char eb[128];
    tether_err err;
    if (!service_dir(reg->lr, reg->inst.service, dir, sizeof dir) ||
        snprintf(path, sizeof path, "%s/%s", dir, reg->name) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, reg->name) >= (int)sizeof tmp) {
        TT_ERROR("registry: path too long under %s", reg->lr->dir);
        return TETHER_EREGISTRY;
    }
    /* Re-created on every write, so an entry comes back by itself after
     * someone removed the service directory. */
    int rc = tt_local_mkdirs(dir);
    if (rc != 0) {
        TT_ERROR("registry: cannot create %s: %s", dir, tt_local_errno_text(rc, eb, sizeof eb));
        return TETHER_EREGISTRY;
    }

    char *buf = tt_malloc(TT_REGISTRY_MAX_ENTRY + 2);
    if (buf == NULL) {
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
        return err == TETHER_ENOMEM ? err : TETHER_EINVAL;
    }

    int flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW;
    int fd = open(tmp, flags, 0600);
    if (fd < 0 && errno == EEXIST) {
        /* Left by an earlier write of this registration that failed half
         * way (names are unique per registration, so it is ours). */
        unlink(tmp);
        fd = open(tmp, flags, 0600);
    }
    if (fd < 0) {
        TT_ERROR("registry: cannot create %s: %s", tmp, tt_local_errno_text(errno, eb, sizeof eb));
        tt_free(buf);
        return TETHER_EREGISTRY;
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
    if (rename(tmp, path) != 0) {
        TT_ERROR("registry: cannot rename %s to %s: %s", tmp, path,
                 tt_local_errno_text(errno, eb, sizeof eb));
        goto fail;
    }
    tt_free(buf);
    *fdp = fd;
    return TETHER_OK;

fail:
    unlink(tmp);
    close(fd);
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
    char dir[4096];
    char path[4096 + 256];
    char eb[128];
    /* Unlink before closing: the name must never be seen unlocked while we
     * are alive, or a reader would count a clean exit as a crash. */
    if (service_dir(reg->lr, reg->inst.service, dir, sizeof dir) &&
        snprintf(path, sizeof path, "%s/%s", dir, reg->name) < (int)sizeof path) {
        if (unlink(path) != 0 && errno != ENOENT) {
            TT_ERROR("registry: cannot remove %s: %s (readers will remove it)", path,
                     tt_local_errno_text(errno, eb, sizeof eb));
            err = TETHER_EREGISTRY;
        }
    } else {
        err = TETHER_EREGISTRY;
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
reap_stale_tmp(int dfd, const char *name)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
        time(NULL) - st.st_mtime < STALE_TMP_SECONDS) {
        return;
    }
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        return;
    }
    if (fstat(fd, &st) == 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) {
        tt_local_reap_if_same(dfd, name, st.st_dev, st.st_ino);
    }
    close(fd);
}

static tether_err
local_list(struct tether_registry *r, const char *service, tether_instance_list *out)
{
    struct tt_local_registry *lr = (struct tt_local_registry *)r;
    char dir[4096];
    char eb[128];
    if (!service_dir(lr, service, dir, sizeof dir)) {
        return TETHER_EREGISTRY;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT) {
            return TETHER_OK; /* nobody ever registered this service */
        }
        TT_ERROR("registry: cannot read %s: %s", dir, tt_local_errno_text(errno, eb, sizeof eb));
        return TETHER_EREGISTRY;
    }
    int dfd = dirfd(d);
    tether_err err = TETHER_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (name[0] == '.') {
            size_t n = strlen(name);
            if (n > 4 && strcmp(name + n - 4, ".tmp") == 0) {
                reap_stale_tmp(dfd, name);
            }
            continue;
        }
        struct tt_local_entry e;
        err = tt_local_read_entry(dfd, service, name, &e);
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
