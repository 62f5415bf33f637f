/*
 * guardian.c - the crash guardian: a small process that revokes the
 * server's etcd lease the moment the server dies without revoking it
 * (SIGKILL, a crash, an exec), so its keys go at once instead of after the
 * TTL (docs/etcd.md, "Crash guardian").
 *
 * Why a process: nothing inside a process killed by SIGKILL runs, and
 * etcd only sees the lease stop being kept alive.  Another process has to
 * notice the death and revoke.
 *
 * Why /proc/self/exe: the guardian must work for every program that links
 * libtether, without an extra binary to install and find, and a
 * multi-threaded server must not fork() without exec.  So the server
 * posix_spawn()s its own executable with TETHER_GUARDIAN=3 in the
 * environment and one end of a socket pair as fd 3; the constructor below
 * runs before the program's main(), sees the variable and turns the new
 * process into the guardian, which never returns to main() (_exit).  The
 * constructor is in the same object file as the spawning code, which the
 * etcd backend calls, so a static link brings it along too.
 *
 * The channel is an AF_UNIX SOCK_SEQPACKET pair (one message per write,
 * EOF when the server's end closes).  Messages, server -> guardian:
 *   the configuration (JSON, first): endpoints, TLS, credentials, the
 *       server's pid, TTL, timeout, log level.  Secrets travel only here,
 *       never on a command line or in the environment;
 *   "L <id>"  the lease to guard (sent after every grant, before any key
 *             is put with it; a new one replaces the old);
 *   "B"       the server revoked its lease itself: exit quietly;
 *   "X"       the server gave the lease up but could not revoke it: revoke
 *             it (retrying while it can still exist), then exit.
 * guardian -> server: "R" once the configuration is read (so a program
 * whose image does not run the constructor is noticed at once).
 *
 * The guardian revokes the lease it guards when the server is gone
 * (pidfd_open() readable: the process ended; or EOF on the channel
 * without "B": the server died, or exec()ed, since its end is
 * close-on-exec) and when it is itself told to stop (SIGTERM: systemd
 * stops a unit by sending it to every process of the unit; a graceful
 * server then finds its lease already gone, which its revoke accepts).
 * Only when both die by SIGKILL does the TTL apply.  It ignores SIGINT,
 * SIGHUP and SIGQUIT: those reach a whole terminal process group, and the
 * server decides what they mean (if they kill it, the pidfd says so).
 *
 * Not PR_SET_PDEATHSIG: it fires when the *thread* that spawned the child
 * ends, not the process, and the spawning thread may be any caller's.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "registry/etcd/etcd.h"

extern char **environ;

/* The channel's fd number in the guardian. */
#define GUARD_FD 3
/* Largest message (the configuration, with up to 16 endpoints and a CA
 * path). */
#define GUARD_MAX_MSG 16384
/* How long the server waits for "R" after spawning.  A working guardian
 * answers within milliseconds; this only bounds the failure case. */
#define GUARD_READY_MS 3000

static int
pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

/* ---- the server's side ----------------------------------------------------- */

void
tt_etcd_guardian_init(struct tt_etcd_guardian *g)
{
    g->sock = -1;
    g->pid = -1;
    g->pidfd = -1;
    g->old_pid = -1;
    g->old_pidfd = -1;
    g->failed = false;
}

/* Reap an exited guardian without blocking and without touching another
 * child of the application (the pidfd names exactly ours). */
static bool
reap(pid_t pid, int pidfd)
{
    if (pid <= 0) {
        return true;
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int rc;
#ifdef P_PIDFD
    if (pidfd >= 0) {
        rc = waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG);
    } else
#endif
    {
        rc = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG);
    }
    /* ECHILD: the application reaped it (or ignores SIGCHLD). */
    return (rc == 0 && si.si_pid != 0) || (rc < 0 && errno == ECHILD);
}

static void
reap_old(struct tt_etcd_guardian *g)
{
    if (g->old_pid > 0 && reap(g->old_pid, g->old_pidfd)) {
        if (g->old_pidfd >= 0) {
            close(g->old_pidfd);
        }
        g->old_pid = -1;
        g->old_pidfd = -1;
    }
}

/* Forget the current guardian: it has been told to go (or is gone). */
static void
retire(struct tt_etcd_guardian *g)
{
    if (g->sock >= 0) {
        close(g->sock);
    }
    g->sock = -1;
    reap_old(g);
    if (g->old_pid > 0) {
        /* Two generations not yet exited: give the older one up (it is
         * reaped by whoever inherits it when we exit). */
        if (g->old_pidfd >= 0) {
            close(g->old_pidfd);
        }
    }
    g->old_pid = g->pid;
    g->old_pidfd = g->pidfd;
    g->pid = -1;
    g->pidfd = -1;
    reap_old(g);
}

static bool
send_msg(struct tt_etcd_guardian *g, const char *msg, size_t len)
{
    if (g->sock < 0) {
        return false;
    }
    ssize_t n;
    do {
        n = send(g->sock, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)len;
}

/* The lowest level the server logs at, so the guardian logs the same. */
static int
log_level(void)
{
    static const tether_log_level levels[] = {TETHER_LOG_DEBUG, TETHER_LOG_INFO, TETHER_LOG_WARN,
                                              TETHER_LOG_ERROR};
    for (size_t i = 0; i < 4; i++) {
        if (tt_log_enabled(levels[i])) {
            return (int)levels[i];
        }
    }
    return -1;
}

/* The configuration message (tt_malloc), with the password: it goes only
 * over the socket, and is wiped after sending. */
static char *
config_msg(const struct tt_etcd_cfg *cfg)
{
    json_t *eps = json_array();
    for (size_t i = 0; eps != NULL && i < cfg->nendpoints; i++) {
        json_array_append_new(eps, json_string(cfg->endpoints[i]));
    }
    json_t *j = json_pack("{s:o?,s:I,s:I,s:I,s:i}", "endpoints", eps, "pid", (json_int_t)getpid(),
                          "ttl", (json_int_t)cfg->ttl_s, "timeout_ms", (json_int_t)cfg->timeout_ms,
                          "log", log_level());
    if (j == NULL) {
        return NULL;
    }
    if (cfg->user != NULL) {
        json_object_set_new(j, "user", json_string(cfg->user));
    }
    if (cfg->password != NULL) {
        json_object_set_new(j, "password", json_string(cfg->password));
    }
    if (cfg->cacert != NULL) {
        json_object_set_new(j, "cacert", json_string(cfg->cacert));
    }
    if (cfg->cert != NULL) {
        json_object_set_new(j, "cert", json_string(cfg->cert));
        json_object_set_new(j, "key", json_string(cfg->key));
    }
    char *text = tt_etcd_dump(j);
    json_decref(j);
    return text;
}

/* The environment for the guardian: ours, with TETHER_GUARDIAN set and
 * without TETHER_ETCD_PASSWORD. */
static char **
guardian_env(char *var)
{
    size_t n = 0;
    while (environ != NULL && environ[n] != NULL) {
        n++;
    }
    char **env = tt_calloc(n + 2, sizeof *env);
    if (env == NULL) {
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        /* The password comes over the channel: the guardian's environment
         * does not need it. */
        if (strncmp(environ[i], TT_GUARDIAN_ENV "=", sizeof TT_GUARDIAN_ENV) != 0 &&
            strncmp(environ[i], "TETHER_ETCD_PASSWORD=", 21) != 0) {
            env[o++] = environ[i];
        }
    }
    env[o++] = var;
    env[o] = NULL;
    return env;
}

/* Wait for the guardian's "R"; false if it does not come. */
static bool
wait_ready(int sock)
{
    uint64_t end = tt_now_ms() + GUARD_READY_MS;
    for (;;) {
        uint64_t now = tt_now_ms();
        if (now >= end) {
            return false;
        }
        struct pollfd p = {.fd = sock, .events = POLLIN};
        int rc = poll(&p, 1, (int)(end - now));
        if (rc < 0 && errno == EINTR) {
            continue;
        }
        if (rc <= 0) {
            return false;
        }
        char c = 0;
        ssize_t n = recv(sock, &c, 1, MSG_DONTWAIT);
        return n == 1 && c == 'R';
    }
}

/* Start a guardian; false (logged) if it cannot be. */
static bool
spawn(struct tt_etcd_guardian *g, const struct tt_etcd_cfg *cfg)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        char eb[128];
        TT_WARN("registry: no crash guardian (socketpair: %s)", strerror_r(errno, eb, sizeof eb));
        return false;
    }
    if (sv[1] == GUARD_FD) {
        /* dup2() onto itself would keep close-on-exec set. */
        int fd = fcntl(sv[1], F_DUPFD_CLOEXEC, GUARD_FD + 1);
        close(sv[1]);
        sv[1] = fd;
        if (fd < 0) {
            close(sv[0]);
            return false;
        }
    }
    char var[] = TT_GUARDIAN_ENV "=3";
    char **env = guardian_env(var);
    char *argv[] = {(char *)"tether-guard", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    /* stdin and stdout are not the guardian's; stderr stays for its log
     * lines (the server's journal).  Every other fd of the server (its
     * listeners, connections) is closed before the exec, so the guardian
     * holds nothing of the server's. */
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, sv[1], GUARD_FD);
    posix_spawn_file_actions_addclosefrom_np(&fa, GUARD_FD + 1);
    /* The spawning thread may block every signal (the keep-alive thread
     * does) and the application may ignore some: the guardian starts
     * with none blocked and every disposition at its default. */
    sigset_t none;
    sigset_t all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    int rc = env != NULL ? posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv, env) : ENOMEM;
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    tt_free(env);
    close(sv[1]);
    if (rc != 0) {
        close(sv[0]);
        char eb[128];
        TT_WARN("registry: no crash guardian (cannot run /proc/self/exe: %s); after a crash "
                "keys go when the lease expires",
                strerror_r(rc, eb, sizeof eb));
        return false;
    }
    g->sock = sv[0];
    g->pid = pid;
    g->pidfd = pidfd_open_(pid);
    char *conf = config_msg(cfg);
    bool ok = conf != NULL && send_msg(g, conf, strlen(conf)) && wait_ready(g->sock);
    if (conf != NULL) {
        memset(conf, 0, strlen(conf));
        tt_free(conf);
    }
    if (!ok) {
        TT_WARN("registry: the crash guardian did not start (the program must link libtether, "
                "not load it later); after a crash keys go when the lease expires");
        kill(pid, SIGKILL);
        retire(g);
        return false;
    }
    TT_DEBUG("registry: crash guardian started (pid %ld)", (long)pid);
    return true;
}

void
tt_etcd_guardian_lease(struct tt_etcd_guardian *g, const struct tt_etcd_cfg *cfg, int64_t lease)
{
    if (!cfg->guardian || g->failed) {
        return;
    }
    char msg[32];
    int n = snprintf(msg, sizeof msg, "L %lld", (long long)lease);
    if (send_msg(g, msg, (size_t)n)) {
        return;
    }
    /* None yet, or it died (someone killed it): start one. */
    if (g->sock >= 0) {
        TT_WARN("registry: the crash guardian (pid %ld) is gone; starting a new one", (long)g->pid);
        retire(g);
    }
    reap_old(g);
    if (!spawn(g, cfg)) {
        g->failed = true; /* do not try at every lease */
        return;
    }
    if (!send_msg(g, msg, (size_t)n)) {
        TT_WARN("registry: cannot tell the crash guardian the lease");
    }
}

void
tt_etcd_guardian_release(struct tt_etcd_guardian *g, bool revoked)
{
    if (g->sock < 0) {
        return;
    }
    send_msg(g, revoked ? "B" : "X", 1);
    retire(g);
    if (revoked) {
        /* It exits as soon as it reads "B": reap it now if we can, and
         * never wait long for it (a stop must stay fast). */
        for (int i = 0; i < 20 && g->old_pid > 0; i++) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            reap_old(g);
        }
    }
}

void
tt_etcd_guardian_fini(struct tt_etcd_guardian *g)
{
    /* A registry destroyed with its lease alive leaves the lease to its
     * TTL, as without a guardian: say goodbye quietly. */
    tt_etcd_guardian_release(g, true);
    reap_old(g);
    if (g->old_pidfd >= 0) {
        close(g->old_pidfd);
    }
    tt_etcd_guardian_init(g);
}

/* ---- the guardian process --------------------------------------------------- */

struct guard {
    struct tt_etcd_registry er;
    struct tt_etcd_http http;
    bool http_ok;
    pid_t server;
    int64_t lease;
    bool warm; /* a new lease: open the connection (and log in) now */
};

/* Revoke the lease, retrying across members while it may still exist (a
 * TTL after the server last kept it alive, at most). */
static void
guard_revoke(struct guard *g, const char *why)
{
    if (g->lease == 0) {
        TT_DEBUG("registry: crash guardian: %s; no lease to revoke", why);
        return;
    }
    if (!g->http_ok) {
        TT_ERROR("registry: crash guardian: %s, but cannot reach etcd (no HTTP client); lease "
                 "%llx expires within %u s",
                 why, (unsigned long long)g->lease, g->er.cfg.ttl_s);
        return;
    }
    uint64_t t0 = tt_now_ms();
    uint64_t end = t0 + (uint64_t)g->er.cfg.ttl_s * 1000u;
    uint32_t backoff = 0;
    size_t n = g->er.cfg.nendpoints < 3 ? g->er.cfg.nendpoints : 3;
    for (;;) {
        tether_err err =
            tt_etcd_revoke_lease(&g->er, &g->http, g->lease, g->er.cfg.timeout_ms * (uint32_t)n);
        if (err == TETHER_OK) {
            TT_INFO("registry: crash guardian: %s; revoked lease %llx in %llu ms", why,
                    (unsigned long long)g->lease, (unsigned long long)(tt_now_ms() - t0));
            return;
        }
        backoff = tt_etcd_next_backoff(backoff);
        if (err == TETHER_EREGISTRY || tt_now_ms() + backoff >= end) {
            TT_ERROR("registry: crash guardian: %s; cannot revoke lease %llx (%s); it expires "
                     "within %u s",
                     why, (unsigned long long)g->lease, tether_strerror(err), g->er.cfg.ttl_s);
            return;
        }
        struct timespec ts = {backoff / 1000, (long)(backoff % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Take one message: 1 handled, 0 EOF, -1 nothing (EAGAIN) or an error.
 * "B" and "X" end the process here. */
static int
guard_msg(struct guard *g, int sock, bool wait)
{
    char buf[64];
    ssize_t n;
    do {
        n = recv(sock, buf, sizeof buf - 1, wait ? 0 : MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
        return 0;
    }
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : 0;
    }
    buf[n] = '\0';
    if (buf[0] == 'L' && buf[1] == ' ') {
        char *end = NULL;
        long long id = strtoll(buf + 2, &end, 10);
        if (end != NULL && *end == '\0') {
            if (id != g->lease) {
                TT_DEBUG("registry: crash guardian: guarding lease %llx", (unsigned long long)id);
                g->warm = id != 0;
            }
            g->lease = id;
        }
    } else if (buf[0] == 'B') {
        _exit(0);
    } else if (buf[0] == 'X') {
        guard_revoke(g, "the server gave up its lease");
        _exit(0);
    }
    return 1;
}

/* Read the configuration message into g; false on anything wrong. */
static bool
guard_config(struct guard *g, int sock)
{
    struct pollfd p = {.fd = sock, .events = POLLIN};
    if (poll(&p, 1, 10000) <= 0) {
        return false;
    }
    char *buf = malloc(GUARD_MAX_MSG + 1);
    if (buf == NULL) {
        return false;
    }
    ssize_t n = recv(sock, buf, GUARD_MAX_MSG, 0);
    json_t *j = n > 0 ? json_loadb(buf, (size_t)n, 0, NULL) : NULL;
    memset(buf, 0, GUARD_MAX_MSG + 1);
    free(buf);
    if (j == NULL) {
        return false;
    }
    struct tt_etcd_cfg *cfg = &g->er.cfg;
    json_int_t pid = 0;
    json_int_t ttl = 0;
    json_int_t timeout = 0;
    int level = -1;
    json_t *eps = NULL;
    bool ok = json_unpack(j, "{s:o,s:I,s:I,s:I,s:i}", "endpoints", &eps, "pid", &pid, "ttl", &ttl,
                          "timeout_ms", &timeout, "log", &level) == 0 &&
              json_is_array(eps) && pid > 1 && ttl > 0 && ttl <= 86400 && timeout > 0 &&
              timeout <= 60000;
    size_t i;
    json_t *ep;
    json_array_foreach(ok ? eps : NULL, i, ep)
    {
        if (!json_is_string(ep) || cfg->nendpoints == TT_ETCD_MAX_ENDPOINTS) {
            ok = false;
            break;
        }
        cfg->endpoints[cfg->nendpoints] = tt_strdup(json_string_value(ep));
        ok = cfg->endpoints[cfg->nendpoints++] != NULL;
    }
    const char *user = json_string_value(json_object_get(j, "user"));
    const char *password = json_string_value(json_object_get(j, "password"));
    const char *cacert = json_string_value(json_object_get(j, "cacert"));
    const char *cert = json_string_value(json_object_get(j, "cert"));
    const char *key = json_string_value(json_object_get(j, "key"));
    if (ok) {
        cfg->ttl_s = (uint32_t)ttl;
        cfg->timeout_ms = (uint32_t)timeout;
        cfg->user = user != NULL ? tt_strdup(user) : NULL;
        cfg->password = password != NULL ? tt_strdup(password) : NULL;
        cfg->cacert = cacert != NULL ? tt_strdup(cacert) : NULL;
        cfg->cert = cert != NULL ? tt_strdup(cert) : NULL;
        cfg->key = key != NULL ? tt_strdup(key) : NULL;
        g->server = (pid_t)pid;
    }
    if (password != NULL) {
        /* jansson's copy of the secret. */
        memset((char *)password, 0, strlen(password));
    }
    json_decref(j);
    if (ok && level >= 0) {
        tether_log_set_handler(tether_log_stderr, (tether_log_level)level, NULL);
    }
    return ok && cfg->nendpoints > 0;
}

/*
 * Ask etcd about the lease once, while the server is alive: the revoke
 * then finds a connection open (and, with auth, a token), which saves a
 * connect (and a login) after the server's death.  The answer is not
 * needed.
 */
static void
guard_warm(struct guard *g)
{
    g->warm = false;
    if (!g->http_ok || g->lease == 0) {
        return;
    }
    char body[48];
    snprintf(body, sizeof body, "{\"ID\":\"%lld\"}", (long long)g->lease);
    struct tt_etcd_reply rep;
    if (tt_etcd_post(&g->http, "/v3/lease/timetolive", body, g->er.cfg.timeout_ms, &rep) ==
        TETHER_OK) {
        tt_etcd_reply_clear(&rep);
    }
}

static int
guard_main(int sock)
{
    prctl(PR_SET_NAME, "tether-guard", 0, 0, 0);
    /* Terminal signals go to the server's whole process group: the server
     * decides; if one kills it, the pidfd tells us. */
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGINT, &ign, NULL);
    sigaction(SIGHUP, &ign, NULL);
    sigaction(SIGQUIT, &ign, NULL);
    sigaction(SIGPIPE, &ign, NULL);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    int sigfd = signalfd(-1, &term, SFD_CLOEXEC);

    struct guard g;
    memset(&g, 0, sizeof g);
    pthread_mutex_init(&g.er.tok_mu, NULL);
    atomic_init(&g.er.cur_ep, 0);
    if (!guard_config(&g, sock)) {
        return 2;
    }
    if (send(sock, "R", 1, MSG_NOSIGNAL) != 1) {
        return 0; /* the server gave up on us */
    }
    /* The pidfd must name the server: right after pidfd_open(), if we are
     * still the server's child, it is the server (our parent cannot have
     * been replaced by another process with the same pid). */
    int pidfd = pidfd_open_(g.server);
    if (pidfd >= 0 && getppid() != g.server) {
        close(pidfd);
        pidfd = -1;
    }
    /* The HTTP client is ready before it is needed: loading libcurl at the
     * server's death would cost milliseconds. */
    g.http_ok = tt_etcd_http_init(&g.http, &g.er, NULL) == TETHER_OK;

    for (;;) {
        struct pollfd p[3] = {
            {.fd = sock, .events = POLLIN},
            {.fd = pidfd, .events = POLLIN},
            {.fd = sigfd, .events = POLLIN},
        };
        int rc = poll(p, 3, -1);
        if (rc < 0) {
            if (errno == EINTR) {
                continue;
            }
            guard_revoke(&g, "poll failed");
            return 1;
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (guard_msg(&g, sock, false) == 0) {
                /* EOF without "B": the server died or exec()ed (its end is
                 * close-on-exec). */
                guard_revoke(&g, "the server's channel closed (it died or ran another program)");
                return 0;
            }
        }
        if (p[1].revents & POLLIN) {
            /* Leases it told us about just before dying are still queued. */
            while (guard_msg(&g, sock, false) == 1) {
            }
            guard_revoke(&g, "the server died");
            return 0;
        }
        if (p[2].revents & POLLIN) {
            while (guard_msg(&g, sock, false) == 1) {
            }
            guard_revoke(&g, "told to stop (SIGTERM)");
            return 0;
        }
        if (g.warm) {
            guard_warm(&g);
        }
    }
}

/*
 * Runs in every program linking libtether, before main(): nothing unless
 * the process was started as a guardian.
 */
__attribute__((constructor)) static void
tt_etcd_guardian_ctor(void)
{
    const char *v = getenv(TT_GUARDIAN_ENV);
    if (v == NULL || strcmp(v, "3") != 0) {
        return;
    }
    unsetenv(TT_GUARDIAN_ENV);
    /* fd 3 must be our channel: a socket of the right type. */
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(GUARD_FD, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_SEQPACKET) {
        return; /* not started by tether: run the program normally */
    }
    _exit(guard_main(GUARD_FD));
}
