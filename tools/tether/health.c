/*
 * health.c - the health checks of `tether register`, on a thread of their
 * own (see health.h for the kinds and what counts as healthy).
 *
 * The poll loop and the thread talk over two pipes: one byte on the
 * request pipe starts a check, a fixed-size record (below PIPE_BUF, so
 * written and read whole) on the result pipe reports it, and closing the
 * request pipe ends the thread.  No locks are needed.
 */
#define _GNU_SOURCE /* pipe2 */
#include "health.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef TETHER_TOOL_WITH_CURL
#include <curl/curl.h>
#endif

#include <tether/client.h>
#include <tether/tether.h>

struct cli_health {
    cli_health_spec spec;
    char *addr;
    uint32_t timeout_ms;
    int req[2]; /* [1] written by the loop, [0] read by the thread */
    int res[2]; /* [1] written by the thread, [0] read by the loop */
    bool busy;  /* a check was requested and its result not yet read */
    pthread_t thread;
};

/* One result as it crosses the pipe. */
struct result {
    int ok;
    char why[240];
};

bool
cli_health_parse(const char *spec, cli_health_spec *out, char *err, size_t cap)
{
    memset(out, 0, sizeof *out);
    out->codec = TETHER_CODEC_NATIVE;
    if (strcmp(spec, "tcp") == 0) {
        out->kind = CLI_HEALTH_TCP;
    } else if (strcmp(spec, "none") == 0) {
        out->kind = CLI_HEALTH_NONE;
    } else if (strcmp(spec, "rpc") == 0 || strncmp(spec, "rpc:", 4) == 0) {
        out->kind = CLI_HEALTH_RPC;
        const char *c = spec[3] == ':' ? spec + 4 : "native";
        if (strcmp(c, "native") == 0) {
            out->codec = TETHER_CODEC_NATIVE;
        } else if (strcmp(c, "gob") == 0) {
            out->codec = TETHER_CODEC_GOB;
        } else if (strcmp(c, "jsonrpc") == 0) {
            out->codec = TETHER_CODEC_JSONRPC;
        } else {
            snprintf(err, cap, "unknown codec '%s' in --health rpc:CODEC (native, gob, jsonrpc)",
                     c);
            return false;
        }
    } else if (strncmp(spec, "http:", 5) == 0) {
#ifdef TETHER_TOOL_WITH_CURL
        out->kind = CLI_HEALTH_HTTP;
        out->arg = spec + 5;
        if (out->arg[0] != '/') {
            snprintf(err, cap, "--health http:PATH needs a PATH starting with '/'");
            return false;
        }
        for (const char *p = out->arg; *p != '\0'; p++) {
            if ((unsigned char)*p <= ' ' || *p == 0x7f) {
                snprintf(err, cap, "--health http:PATH: blanks and control characters in PATH");
                return false;
            }
        }
#else
        snprintf(err, cap, "--health http: this tether was built without libcurl");
        return false;
#endif
    } else if (strncmp(spec, "exec:", 5) == 0) {
        out->kind = CLI_HEALTH_EXEC;
        out->arg = spec + 5;
        if (out->arg[0] == '\0') {
            snprintf(err, cap, "--health exec:CMD needs a command");
            return false;
        }
    } else {
        snprintf(err, cap, "unknown --health '%s' (tcp, rpc[:CODEC], http:PATH, exec:CMD, none)",
                 spec);
        return false;
    }
    return true;
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
left_ms(int64_t deadline)
{
    int64_t d = deadline - now_ms();
    return d < 0 ? 0 : (int)d;
}

/* Wait for fd to be ready for ev until deadline; false on timeout. */
static bool
wait_fd(int fd, short ev, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = ev};
        int n = poll(&p, 1, left_ms(deadline));
        if (n > 0) {
            return true;
        }
        if (n == 0 || errno != EINTR) {
            return false;
        }
    }
}

/* One non-blocking connect to sa, bounded by deadline. */
static bool
connect_one(int family, const struct sockaddr *sa, socklen_t len, int64_t deadline, char *why,
            size_t cap)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, cap, "socket: %m");
        return false;
    }
    int err = 0;
    if (connect(fd, sa, len) != 0) {
        err = errno;
        if (err == EINPROGRESS) {
            if (!wait_fd(fd, POLLOUT, deadline)) {
                close(fd);
                snprintf(why, cap, "connect: timed out");
                return false;
            }
            socklen_t el = sizeof err;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        }
    }
    close(fd);
    if (err != 0) {
        errno = err;
        snprintf(why, cap, "connect: %m");
        return false;
    }
    return true;
}

static bool
check_tcp(const char *addr, int64_t deadline, char *why, size_t cap)
{
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        if (strlen(addr + 5) >= sizeof un.sun_path) {
            snprintf(why, cap, "socket path too long");
            return false;
        }
        memcpy(un.sun_path, addr + 5, strlen(addr + 5) + 1);
        return connect_one(AF_UNIX, (struct sockaddr *)&un, sizeof un, deadline, why, cap);
    }
    /* "host:port" or "[v6]:port": the port follows the last ':'. */
    char host[256];
    const char *colon = strrchr(addr, ':');
    size_t hl = colon != NULL ? (size_t)(colon - addr) : 0;
    if (colon == NULL || hl == 0 || hl >= sizeof host) {
        snprintf(why, cap, "bad address");
        return false;
    }
    memcpy(host, addr, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(host, colon + 1, &hints, &ai);
    if (g != 0) {
        snprintf(why, cap, "cannot resolve: %s", gai_strerror(g));
        return false;
    }
    bool ok = false;
    for (struct addrinfo *a = ai; a != NULL && !ok; a = a->ai_next) {
        ok = connect_one(a->ai_family, a->ai_addr, a->ai_addrlen, deadline, why, cap);
    }
    freeaddrinfo(ai);
    return ok;
}

/* Errors that are the server's own answer: it is up and speaks the codec
 * (TETHER_ENOTSUP: a Go server answered that it cannot describe). */
static bool
is_answer(tether_err rc)
{
    return rc == TETHER_OK || rc == TETHER_ENOSERVICE || rc == TETHER_ENOMETHOD ||
           rc == TETHER_EREMOTE || rc == TETHER_EBADREQUEST || rc == TETHER_ENOTSUP;
}

static bool
check_rpc(const char *addr, int codec, uint32_t timeout_ms, int64_t deadline, char *why, size_t cap)
{
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.codec = (tether_codec)codec;
    cfg.connect_timeout_ms = timeout_ms;
    cfg.call_timeout_ms = timeout_ms;
    tether_client *c = NULL;
    tether_err rc = tether_client_create(addr, &cfg, &c);
    if (rc != TETHER_OK) {
        snprintf(why, cap, "connect: %s", tether_strerror(rc));
        return false;
    }
    uint32_t left = (uint32_t)left_ms(deadline);
    char *text = NULL;
    if (codec == TETHER_CODEC_NATIVE) {
        /* Raw bytes: the request is a google.protobuf.StringValue naming
         * the method itself (field 1, length-delimited). */
        static const char name[] = "_tether.Describe";
        uint8_t req[2 + sizeof name - 1] = {0x0a, (uint8_t)(sizeof name - 1)};
        memcpy(req + 2, name, sizeof name - 1);
        uint8_t *out = NULL;
        size_t out_len = 0;
        rc = tether_client_call_raw(c, name, req, sizeof req, &out, &out_len,
                                    TETHER_CALL_TIMEOUT(left > 0 ? left : 1), &text);
        tether_free(out);
    } else {
        /* gob and jsonrpc carry no raw bytes: the JSON form, whose answer
         * from a Go server is "can't find service", which is an answer. */
        char *out = NULL;
        rc = tether_client_call_json(c, "_tether.Describe", NULL, &out,
                                     TETHER_CALL_TIMEOUT(left > 0 ? left : 1), &text);
        tether_free(out);
    }
    tether_client_destroy(c);
    tether_free(text);
    if (!is_answer(rc)) {
        snprintf(why, cap, "_tether.Describe: %s", tether_err_name(rc));
        return false;
    }
    return true;
}

#ifdef TETHER_TOOL_WITH_CURL
static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static bool
check_http(const char *addr, const char *path, int64_t deadline, char *why, size_t cap)
{
    CURL *h = curl_easy_init();
    if (h == NULL) {
        snprintf(why, cap, "curl_easy_init failed");
        return false;
    }
    bool unix_sock = strncmp(addr, "unix:", 5) == 0;
    size_t n = strlen(addr) + strlen(path) + 32;
    char *url = malloc(n);
    if (url == NULL) {
        curl_easy_cleanup(h);
        snprintf(why, cap, "out of memory");
        return false;
    }
    snprintf(url, n, "http://%s%s", unix_sock ? "localhost" : addr, path);
    if (unix_sock) {
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, addr + 5);
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*"); /* the instance itself, never a proxy */
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(left_ms(deadline) > 0 ? left_ms(deadline) : 1));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "tether-register/" TETHER_VERSION_STRING);
    CURLcode cc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    free(url);
    if (cc != CURLE_OK) {
        snprintf(why, cap, "GET %s: %s", path, errbuf[0] != '\0' ? errbuf : curl_easy_strerror(cc));
        return false;
    }
    if (code < 200 || code > 299) {
        snprintf(why, cap, "GET %s: HTTP %ld", path, code);
        return false;
    }
    return true;
}
#endif

static int
pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static bool
check_exec(const char *cmd, int64_t deadline, char *why, size_t cap)
{
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, cap, "fork: %m");
        return false;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls until exec.  A group of its own, so
         * a timeout kills what the shell started too. */
        setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
        }
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid); /* also here: kill(-pid) must work whoever runs first */
    int pfd = pidfd_open_(pid);
    bool done = pfd >= 0 && wait_fd(pfd, POLLIN, deadline);
    if (pfd >= 0) {
        close(pfd);
    }
    if (!done) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!done) {
        snprintf(why, cap, "exec: timed out");
        return false;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        return true;
    }
    if (WIFEXITED(st)) {
        snprintf(why, cap, "exec: exit status %d", WEXITSTATUS(st));
    } else {
        snprintf(why, cap, "exec: killed by signal %d", WTERMSIG(st));
    }
    return false;
}

static void
run_check(cli_health *h, struct result *r)
{
    int64_t deadline = now_ms() + h->timeout_ms;
    bool ok = true;
    switch (h->spec.kind) {
    case CLI_HEALTH_NONE:
        break;
    case CLI_HEALTH_TCP:
        ok = check_tcp(h->addr, deadline, r->why, sizeof r->why);
        break;
    case CLI_HEALTH_RPC:
        ok = check_rpc(h->addr, h->spec.codec, h->timeout_ms, deadline, r->why, sizeof r->why);
        break;
    case CLI_HEALTH_HTTP:
#ifdef TETHER_TOOL_WITH_CURL
        ok = check_http(h->addr, h->spec.arg, deadline, r->why, sizeof r->why);
#else
        ok = false;
#endif
        break;
    case CLI_HEALTH_EXEC:
        ok = check_exec(h->spec.arg, deadline, r->why, sizeof r->why);
        break;
    }
    r->ok = ok;
}

static void *
health_thread(void *arg)
{
    cli_health *h = arg;
    char b;
    for (;;) {
        ssize_t n = read(h->req[0], &b, 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return NULL; /* the loop closed the request pipe */
        }
        struct result r = {0};
        run_check(h, &r);
        while (write(h->res[1], &r, sizeof r) < 0 && errno == EINTR) {
        }
    }
}

cli_health *
cli_health_start(const cli_health_spec *spec, const char *addr, uint32_t timeout_ms)
{
    cli_health *h = calloc(1, sizeof *h);
    if (h == NULL || (h->addr = strdup(addr)) == NULL) {
        free(h);
        fprintf(stderr, "tether register: out of memory\n");
        return NULL;
    }
    h->spec = *spec;
    h->timeout_ms = timeout_ms;
    h->req[0] = h->req[1] = h->res[0] = h->res[1] = -1;
    if (pipe2(h->req, O_CLOEXEC) != 0 || pipe2(h->res, O_CLOEXEC | O_NONBLOCK) != 0) {
        fprintf(stderr, "tether register: pipe: %m\n");
        goto fail;
    }
    int e = pthread_create(&h->thread, NULL, health_thread, h);
    if (e != 0) {
        errno = e;
        fprintf(stderr, "tether register: cannot start the health thread: %m\n");
        goto fail;
    }
    return h;
fail:
    for (int i = 0; i < 2; i++) {
        if (h->req[i] >= 0) {
            close(h->req[i]);
        }
        if (h->res[i] >= 0) {
            close(h->res[i]);
        }
    }
    free(h->addr);
    free(h);
    return NULL;
}

int
cli_health_fd(const cli_health *h)
{
    return h->res[0];
}

bool
cli_health_request(cli_health *h)
{
    if (h->busy) {
        return false;
    }
    char b = 1;
    while (write(h->req[1], &b, 1) < 0) {
        if (errno != EINTR) {
            return false;
        }
    }
    h->busy = true;
    return true;
}

int
cli_health_result(cli_health *h, char *why, size_t cap)
{
    struct result r;
    ssize_t n = read(h->res[0], &r, sizeof r);
    if (n != (ssize_t)sizeof r) {
        return -1;
    }
    h->busy = false;
    r.why[sizeof r.why - 1] = '\0';
    snprintf(why, cap, "%s", r.why);
    return r.ok ? 1 : 0;
}

void
cli_health_stop(cli_health *h)
{
    if (h == NULL) {
        return;
    }
    close(h->req[1]);
    pthread_join(h->thread, NULL);
    close(h->req[0]);
    close(h->res[0]);
    close(h->res[1]);
    free(h->addr);
    free(h);
}
