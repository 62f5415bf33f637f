/*
 * cmd_register.c - `tether register`: the sidecar.  Runs any program and
 * gives it tether's lifecycle in a registry:
 *
 *   tether register --registry URL --name NAME --addr HOST:PORT
 *                   [--health tcp|rpc[:CODEC]|http:PATH|exec:CMD|none]
 *                   [--health-interval 1s] [--health-fails 3]
 *                   [--health-timeout DUR] [--grace 0s] [--meta k=v]...
 *                   [-v] -- CMD ARGS...
 *
 * NAME is registered at the address once a health check passes (health.h),
 * deregistered after --health-fails failed checks in a row and registered
 * again when one passes.  The moment CMD exits, the entry goes and the
 * sidecar exits with CMD's status (128+N when a signal N killed it).
 * SIGTERM and SIGINT stop in order: deregister, wait --grace (clients
 * learn of the removal), send the same signal to CMD, wait for it; a
 * second signal skips what is left of the grace.  SIGHUP, SIGQUIT, SIGUSR1
 * and SIGUSR2 are passed on as they are.  A signal that was ignored when
 * the sidecar started stays ignored, for it and for CMD.
 *
 * One thread, one poll(): a signalfd (the signals are blocked, so no
 * handler ever runs), a pidfd for CMD (its exit is seen at once, without
 * polling its state), a timerfd for the check interval, one for the grace,
 * and the health thread's result pipe.  CMD gets the signal mask we
 * started with and PR_SET_PDEATHSIG=SIGTERM: if the sidecar is killed,
 * its registration dies with it and CMD is told to stop too.
 */
#define _GNU_SOURCE /* pipe2, strsignal */
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef TETHER_TOOL_WITH_CURL
#include <curl/curl.h>
#endif

#include <tether/registry.h>
#include <tether/tether.h>

#include "cli.h"
#include <tether/metrics.h>

#include "health.h"

#define MAX_META 64

struct opts {
    const char *url;
    const char *name;
    const char *addr;
    const char *health;
    uint64_t interval_ms;
    uint64_t timeout_ms; /* 0: the interval */
    uint64_t grace_ms;
    unsigned long fails;
    tether_meta meta[MAX_META];
    size_t nmeta;
    char *meta_buf[MAX_META]; /* "k\0v" copies the pairs point into */
    char **cmd;
    int verbose;
    const char *metrics; /* --metrics HOST:PORT, or NULL */
};

/* Everything the poll loop works on. */
struct sidecar {
    const struct opts *o;
    tether_registry *reg;
    tether_registration *registration;
    cli_health *health;
    pid_t pid;
    int pidfd, sigfd, tick_fd, grace_fd;
    unsigned long fails; /* failed checks in a row */
    bool ever_failed;    /* for logging: the first failure of a start */
    int stop_sig;        /* the signal that began the stop, 0 before */
    bool forwarded;      /* stop_sig was sent to CMD */
    /* What --metrics serves; written by the loop, read by the listener. */
    _Atomic int m_registered, m_cmd_up;
    _Atomic unsigned long m_checks_ok, m_checks_failed, m_registrations;
};

/* The sidecar's series (docs/register.md), for the metrics listener. */
static tether_err
sidecar_metrics(void *arg, char **text, int *healthy)
{
    struct sidecar *s = arg;
    int reg = atomic_load(&s->m_registered);
    *healthy = reg;
    if (text == NULL) {
        return TETHER_OK;
    }
    size_t cap = 2048 + 2 * strlen(s->o->name) + 2 * strlen(s->o->addr);
    char *t = malloc(cap);
    if (t == NULL) {
        return TETHER_ENOMEM;
    }
    /* NAME and HOST:PORT were checked by the registry: no quotes or
     * backslashes to escape in them. */
    snprintf(t, cap,
             "# HELP tether_sidecar_registered 1 while the program is registered.\n"
             "# TYPE tether_sidecar_registered gauge\n"
             "tether_sidecar_registered{name=\"%s\",address=\"%s\"} %d\n"
             "# HELP tether_sidecar_command_up 1 while the program runs.\n"
             "# TYPE tether_sidecar_command_up gauge\n"
             "tether_sidecar_command_up{name=\"%s\"} %d\n"
             "# HELP tether_sidecar_health_checks_total Health checks, by result.\n"
             "# TYPE tether_sidecar_health_checks_total counter\n"
             "tether_sidecar_health_checks_total{name=\"%s\",result=\"ok\"} %lu\n"
             "tether_sidecar_health_checks_total{name=\"%s\",result=\"failed\"} %lu\n"
             "# HELP tether_sidecar_registrations_total Times the program was registered.\n"
             "# TYPE tether_sidecar_registrations_total counter\n"
             "tether_sidecar_registrations_total{name=\"%s\"} %lu\n",
             s->o->name, s->o->addr, reg, s->o->name, atomic_load(&s->m_cmd_up), s->o->name,
             atomic_load(&s->m_checks_ok), s->o->name, atomic_load(&s->m_checks_failed),
             s->o->name, atomic_load(&s->m_registrations));
    *text = t;
    return TETHER_OK;
}

static int
usage(FILE *f)
{
    fprintf(
        f,
        "usage: tether register --name NAME --addr HOST:PORT [--registry URL]\n"
        "                       [--health tcp|rpc[:native|gob|jsonrpc]|http:PATH|exec:CMD|none]\n"
        "                       [--metrics HOST:PORT]\n"
        "                       [--health-interval 1s] [--health-fails 3] [--health-timeout "
        "DUR]\n"
        "                       [--grace 0s] [--meta KEY=VALUE]... [-v] -- CMD [ARGS...]\n"
        "Runs CMD and keeps NAME at HOST:PORT registered while CMD lives and its health\n"
        "check passes; exits with CMD's status.  Durations: 500ms, 1s, 1.5s, 2m.\n");
    return f == stdout ? 0 : 2;
}

/* "500ms", "1s", "1.5s", "2m", "1h", or a plain number of seconds. */
static bool
parse_duration(const char *s, uint64_t *ms)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno != 0 || !isfinite(v) || v < 0) {
        return false;
    }
    double scale = 1000;
    if (strcmp(end, "ms") == 0) {
        scale = 1;
    } else if (strcmp(end, "s") == 0 || *end == '\0') {
        scale = 1000;
    } else if (strcmp(end, "m") == 0) {
        scale = 60000;
    } else if (strcmp(end, "h") == 0) {
        scale = 3600000;
    } else {
        return false;
    }
    double r = v * scale;
    if (r > 86400000.0 * 7) { /* a week: anything longer is a typo */
        return false;
    }
    *ms = (uint64_t)(r + 0.5);
    return true;
}

static bool
add_meta(struct opts *o, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (eq == NULL || eq == kv) {
        fprintf(stderr, "tether register: --meta needs KEY=VALUE, got '%s'\n", kv);
        return false;
    }
    if (o->nmeta == MAX_META) {
        fprintf(stderr, "tether register: at most %d --meta pairs\n", MAX_META);
        return false;
    }
    char *b = strdup(kv);
    if (b == NULL) {
        fprintf(stderr, "tether register: out of memory\n");
        return false;
    }
    b[eq - kv] = '\0';
    o->meta_buf[o->nmeta] = b;
    o->meta[o->nmeta].key = b;
    o->meta[o->nmeta].value = b + (eq - kv) + 1;
    o->nmeta++;
    return true;
}

/* The value of option `name` at argv[*i]: "--name V" or "--name=V".
 * NULL when argv[*i] is another option; *missing when V is absent. */
static const char *
opt_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) {
        return NULL;
    }
    if (a[n] == '=') {
        return a + n + 1;
    }
    if (a[n] != '\0') {
        return NULL;
    }
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

/* Returns 0, or the exit status for main (2 usage, 0 after --help). */
static int
parse_args(int argc, char **argv, struct opts *o)
{
    const char *flag_url = NULL, *interval = "1s", *timeout = NULL, *grace = "0s";
    const char *fails = "3";
    o->health = "tcp";
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i], *v;
        bool missing = false;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-') {
            break; /* CMD starts here */
        }
        if ((v = opt_value(argc, argv, &i, "--registry", &missing)) != NULL ||
            (!missing && (v = opt_value(argc, argv, &i, "-r", &missing)) != NULL)) {
            flag_url = v;
        } else if (!missing && (v = opt_value(argc, argv, &i, "--name", &missing)) != NULL) {
            o->name = v;
        } else if (!missing && (v = opt_value(argc, argv, &i, "--addr", &missing)) != NULL) {
            o->addr = v;
        } else if (!missing && (v = opt_value(argc, argv, &i, "--health", &missing)) != NULL) {
            o->health = v;
        } else if (!missing &&
                   (v = opt_value(argc, argv, &i, "--health-interval", &missing)) != NULL) {
            interval = v;
        } else if (!missing &&
                   (v = opt_value(argc, argv, &i, "--health-fails", &missing)) != NULL) {
            fails = v;
        } else if (!missing &&
                   (v = opt_value(argc, argv, &i, "--health-timeout", &missing)) != NULL) {
            timeout = v;
        } else if (!missing && (v = opt_value(argc, argv, &i, "--metrics", &missing)) != NULL) {
            o->metrics = v;
        } else if (!missing && (v = opt_value(argc, argv, &i, "--grace", &missing)) != NULL) {
            grace = v;
        } else if (!missing && (v = opt_value(argc, argv, &i, "--meta", &missing)) != NULL) {
            if (!add_meta(o, v)) {
                return 2;
            }
        } else if (missing) {
            fprintf(stderr, "tether register: %s needs a value\n", a);
            return 2;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            o->verbose = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 3;
        } else {
            fprintf(stderr, "tether register: unknown option %s\n", a);
            return 2;
        }
    }
    if (o->name == NULL || o->addr == NULL || i >= argc) {
        fprintf(stderr, "tether register: %s\n",
                o->name == NULL   ? "--name is required"
                : o->addr == NULL ? "--addr is required"
                                  : "no command to run (give it after --)");
        return usage(stderr);
    }
    o->cmd = argv + i;
    o->url = cli_registry_url(flag_url);
    char *end = NULL;
    errno = 0;
    o->fails = strtoul(fails, &end, 10);
    if (*fails == '\0' || *end != '\0' || errno != 0 || o->fails < 1 || o->fails > 1000000) {
        fprintf(stderr, "tether register: --health-fails must be 1 or more, got '%s'\n", fails);
        return 2;
    }
    if (!parse_duration(interval, &o->interval_ms) || o->interval_ms < 10) {
        fprintf(stderr, "tether register: bad --health-interval '%s' (at least 10ms)\n", interval);
        return 2;
    }
    if (timeout != NULL && (!parse_duration(timeout, &o->timeout_ms) || o->timeout_ms < 10)) {
        fprintf(stderr, "tether register: bad --health-timeout '%s' (at least 10ms)\n", timeout);
        return 2;
    }
    if (!parse_duration(grace, &o->grace_ms)) {
        fprintf(stderr, "tether register: bad --grace '%s'\n", grace);
        return 2;
    }
    return 0;
}

static void say(const struct sidecar *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* One line on stderr: "tether register: NAME at ADDR: ..." */
static void
say(const struct sidecar *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tether register: %s at %s: ", s->o->name, s->o->addr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* CMD's name for messages: its last path component. */
static const char *
prog(const struct sidecar *s)
{
    const char *slash = strrchr(s->o->cmd[0], '/');
    return slash != NULL && slash[1] != '\0' ? slash + 1 : s->o->cmd[0];
}

static void
do_register(struct sidecar *s)
{
    if (s->registration != NULL) {
        return;
    }
    tether_instance inst = {
        .service = s->o->name,
        .address = s->o->addr,
        .meta = s->o->meta,
        .meta_count = s->o->nmeta,
        .state = TETHER_INSTANCE_SERVING,
    };
    tether_err err = tether_registry_register(s->reg, &inst, &s->registration);
    if (err != TETHER_OK) {
        s->registration = NULL;
        say(s, "cannot register (trying again at the next passing check): %s",
            tether_strerror(err));
        return;
    }
    atomic_store(&s->m_registered, 1);
    atomic_fetch_add(&s->m_registrations, 1);
    say(s, "registered");
}

static void
do_deregister(struct sidecar *s, const char *why)
{
    if (s->registration == NULL) {
        return;
    }
    tether_err err = tether_registration_deregister(s->registration);
    s->registration = NULL;
    atomic_store(&s->m_registered, 0);
    if (err != TETHER_OK) {
        say(s, "deregistering (%s) failed: %s", why, tether_strerror(err));
    } else {
        say(s, "deregistered (%s)", why);
    }
}

static int
pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/*
 * Start CMD with the signal mask the sidecar started with.  An exec
 * failure comes back over a close-on-exec pipe, so "no such program" is
 * an error message here and exit status 127, not a silent child.
 */
static int
spawn(struct sidecar *s, const sigset_t *mask)
{
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) != 0) {
        fprintf(stderr, "tether register: pipe: %m\n");
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "tether register: fork: %m\n");
        close(ep[0]);
        close(ep[1]);
        return -1;
    }
    if (pid == 0) {
        close(ep[0]);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) {
            _exit(127); /* the sidecar is already gone */
        }
        sigprocmask(SIG_SETMASK, mask, NULL);
        execvp(s->o->cmd[0], s->o->cmd);
        int e = errno;
        while (write(ep[1], &e, sizeof e) < 0 && errno == EINTR) {
        }
        _exit(127);
    }
    close(ep[1]);
    int e = 0;
    ssize_t n;
    while ((n = read(ep[0], &e, sizeof e)) < 0 && errno == EINTR) {
    }
    close(ep[0]);
    if (n == (ssize_t)sizeof e) {
        errno = e;
        fprintf(stderr, "tether register: cannot run '%s': %m\n", s->o->cmd[0]);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        return -127;
    }
    s->pid = pid;
    atomic_store(&s->m_cmd_up, 1);
    s->pidfd = pidfd_open_(pid);
    if (s->pidfd < 0) {
        fprintf(stderr, "tether register: pidfd_open: %m (Linux 5.3 or later is needed)\n");
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        return -1;
    }
    return 0;
}

static bool
arm(int tfd, uint64_t first_ms, uint64_t every_ms)
{
    struct itimerspec it = {
        .it_value = {.tv_sec = (time_t)(first_ms / 1000),
                     .tv_nsec = (long)(first_ms % 1000) * 1000000L},
        .it_interval = {.tv_sec = (time_t)(every_ms / 1000),
                        .tv_nsec = (long)(every_ms % 1000) * 1000000L},
    };
    if (first_ms == 0) {
        it.it_value.tv_nsec = 1; /* zero would disarm: "now" */
    }
    return timerfd_settime(tfd, 0, &it, NULL) == 0;
}

static void
disarm(int tfd)
{
    struct itimerspec it = {0};
    timerfd_settime(tfd, 0, &it, NULL);
}

static void
drain_timer(int tfd)
{
    uint64_t n;
    while (read(tfd, &n, sizeof n) < 0 && errno == EINTR) {
    }
}

static void
on_check(struct sidecar *s, bool ok, const char *why)
{
    if (s->stop_sig != 0) {
        return; /* stopping: never registered again */
    }
    atomic_fetch_add(ok ? &s->m_checks_ok : &s->m_checks_failed, 1);
    if (ok) {
        if (s->fails > 0 && s->registration != NULL) {
            say(s, "healthy again");
        }
        s->fails = 0;
        do_register(s);
        return;
    }
    s->fails++;
    /* One line per streak, not one per interval: a server that takes a
     * minute to start says so once. */
    if (s->fails == 1 && (s->registration != NULL || !s->ever_failed || s->o->verbose)) {
        say(s, "health check failed: %s", why);
    } else if (s->o->verbose) {
        say(s, "health check failed (%lu in a row): %s", s->fails, why);
    }
    s->ever_failed = true;
    if (s->registration != NULL && s->fails >= s->o->fails) {
        char what[96];
        snprintf(what, sizeof what, "%lu failed health checks in a row", s->fails);
        do_deregister(s, what);
    }
}

static void
forward(struct sidecar *s, int sig)
{
    if (kill(s->pid, sig) != 0 && errno != ESRCH) {
        fprintf(stderr, "tether register: kill %d: %m\n", (int)s->pid);
    }
}

static void
on_signal(struct sidecar *s, int sig)
{
    if (sig != SIGTERM && sig != SIGINT) {
        forward(s, sig);
        return;
    }
    if (s->stop_sig == 0) {
        s->stop_sig = sig;
        disarm(s->tick_fd);
        do_deregister(s, strsignal(sig));
        if (s->o->grace_ms > 0) {
            say(s, "%s: sending it to %s in %llu ms", strsignal(sig), prog(s),
                (unsigned long long)s->o->grace_ms);
            arm(s->grace_fd, s->o->grace_ms, 0);
            return;
        }
    }
    /* No grace, or a second signal: no more waiting. */
    disarm(s->grace_fd);
    s->forwarded = true;
    forward(s, sig);
}

/* Reap CMD: its exit status as a shell reports it (128+N for a signal N),
 * and in what (cap bytes) how it ended. */
static int
reap(struct sidecar *s, char *what, size_t cap)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    atomic_store(&s->m_cmd_up, 0);
    while (waitid(P_PID, (id_t)s->pid, &si, WEXITED) != 0) {
        if (errno != EINTR) {
            snprintf(what, cap, "waitid: %m");
            return 1;
        }
    }
    if (si.si_code == CLD_EXITED) {
        snprintf(what, cap, "%s exited with status %d", prog(s), si.si_status);
        return si.si_status;
    }
    snprintf(what, cap, "%s exited: killed by signal %d", prog(s), si.si_status);
    return 128 + si.si_status;
}

static int
run(struct sidecar *s)
{
    enum { P_CHILD, P_SIG, P_TICK, P_GRACE, P_HEALTH, P_N };
    struct pollfd p[P_N] = {
        [P_CHILD] = {.fd = s->pidfd, .events = POLLIN},
        [P_SIG] = {.fd = s->sigfd, .events = POLLIN},
        [P_TICK] = {.fd = s->tick_fd, .events = POLLIN},
        [P_GRACE] = {.fd = s->grace_fd, .events = POLLIN},
        [P_HEALTH] = {.fd = s->health != NULL ? cli_health_fd(s->health) : -1, .events = POLLIN},
    };
    for (;;) {
        int n = poll(p, P_N, -1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "tether register: poll: %m\n");
            forward(s, SIGTERM);
            p[P_SIG].fd = p[P_TICK].fd = p[P_GRACE].fd = p[P_HEALTH].fd = -1;
            continue; /* still wait for the child's exit */
        }
        /* The child first: once it is gone, nothing else matters and the
         * entry must go before anything else happens. */
        if (p[P_CHILD].revents != 0) {
            char what[300];
            int status = reap(s, what, sizeof what);
            if (s->registration != NULL) {
                do_deregister(s, what);
            } else {
                say(s, "%s", what);
            }
            return status;
        }
        if (p[P_SIG].revents != 0) {
            struct signalfd_siginfo si;
            while (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                on_signal(s, (int)si.ssi_signo);
            }
        }
        if (p[P_GRACE].revents != 0) {
            drain_timer(s->grace_fd);
            if (!s->forwarded) {
                s->forwarded = true;
                forward(s, s->stop_sig);
            }
        }
        if (p[P_TICK].revents != 0) {
            drain_timer(s->tick_fd);
            if (s->health == NULL) {
                on_check(s, true, "");
            } else {
                cli_health_request(s->health); /* skipped while one runs */
            }
        }
        if (p[P_HEALTH].revents != 0) {
            char why[256];
            int r;
            while ((r = cli_health_result(s->health, why, sizeof why)) >= 0) {
                on_check(s, r == 1, why);
            }
        }
    }
}

int
tether_cmd_register(int argc, char **argv)
{
    struct opts o = {0};
    struct sidecar s = {.o = &o, .pidfd = -1, .sigfd = -1, .tick_fd = -1, .grace_fd = -1};
    int rc = parse_args(argc, argv, &o);
    cli_health_spec hs;
    char err[256];
    if (rc == 0 && !cli_health_parse(o.health, &hs, err, sizeof err)) {
        fprintf(stderr, "tether register: %s\n", err);
        rc = 2;
    }
    if (rc != 0) {
        for (size_t i = 0; i < o.nmeta; i++) {
            free(o.meta_buf[i]);
        }
        return rc == 3 ? 0 : rc;
    }
    tether_log_set_handler(tether_log_stderr, o.verbose ? TETHER_LOG_DEBUG : TETHER_LOG_WARN, NULL);

    /* Blocked before any thread starts (registry, health, client pool),
     * so every thread inherits the mask and only the signalfd sees them.
     * SIGPIPE is blocked too: a closed stderr is an error, not death. */
    sigset_t take, block, orig;
    sigemptyset(&take);
    int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        /* A signal ignored when we started (nohup, a background job of a
         * script) stays ignored: not taken here, and CMD inherits it so. */
        struct sigaction sa;
        if (sigaction(sigs[i], NULL, &sa) == 0 && sa.sa_handler == SIG_IGN) {
            continue;
        }
        sigaddset(&take, sigs[i]);
    }
    block = take;
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &orig);

    int status = 1;
    tether_metrics_listener *ml = NULL; /* --metrics */
    bool curl_ready = false;
    (void)curl_ready;
    s.sigfd = signalfd(-1, &take, SFD_CLOEXEC | SFD_NONBLOCK);
    s.tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    s.grace_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (s.sigfd < 0 || s.tick_fd < 0 || s.grace_fd < 0) {
        fprintf(stderr, "tether register: signalfd/timerfd: %m\n");
        goto out;
    }
#ifdef TETHER_TOOL_WITH_CURL
    /* Once, before any thread: curl_global_init is not safe otherwise. */
    if (hs.kind == CLI_HEALTH_HTTP) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
            fprintf(stderr, "tether register: curl_global_init failed\n");
            goto out;
        }
        curl_ready = true;
    }
#endif
    s.reg = cli_open_registry("register", o.url);
    if (s.reg == NULL) {
        goto out;
    }
    if (hs.kind != CLI_HEALTH_NONE) {
        uint64_t t = o.timeout_ms != 0 ? o.timeout_ms : o.interval_ms;
        s.health = cli_health_start(&hs, o.addr, (uint32_t)(t > 600000 ? 600000 : t));
        if (s.health == NULL) {
            goto out;
        }
    }
    if (o.metrics != NULL) {
        tether_err merr = tether_metrics_listen(o.metrics, sidecar_metrics, &s, &ml);
        if (merr != TETHER_OK) {
            fprintf(stderr, "tether register: --metrics %s: %s\n", o.metrics,
                    tether_strerror(merr));
            goto out;
        }
        fprintf(stderr, "tether register: metrics on %s\n", tether_metrics_listener_address(ml));
    }
    int sp = spawn(&s, &orig);
    if (sp != 0) {
        status = sp == -127 ? 127 : 1;
        goto out;
    }
    /* The first check at once, then one per interval. */
    if (!arm(s.tick_fd, 0, o.interval_ms)) {
        fprintf(stderr, "tether register: timerfd_settime: %m\n");
        forward(&s, SIGTERM);
    }
    status = run(&s);
out:
    do_deregister(&s, "stopping");
    tether_metrics_listener_close(ml);
    cli_health_stop(s.health);
    tether_registry_close(s.reg);
#ifdef TETHER_TOOL_WITH_CURL
    if (curl_ready) {
        curl_global_cleanup();
    }
#endif
    int fds[] = {s.pidfd, s.sigfd, s.tick_fd, s.grace_fd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    for (size_t i = 0; i < o.nmeta; i++) {
        free(o.meta_buf[i]);
    }
    return status;
}
