/*
 * harness.c - processes, waiting, raw sockets and the test server for the
 * C integration tests (see harness.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "calculator.pb-c.h"

#define CHILD_FLAG "--harness-server"

/* ------------------------------------------------------------------ */
/* Time                                                                */

uint64_t
h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void
h_pause(void)
{
    /* Polling interval of H_WAIT; the condition decides, not this. */
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ */
/* Little-endian and frames                                            */

uint32_t
h_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t
h_le64(const uint8_t *p)
{
    return (uint64_t)h_le32(p) | (uint64_t)h_le32(p + 4) << 32;
}

static void
put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

size_t
h_put_frame(uint8_t *out, uint8_t type, uint64_t seq, const char *name, const void *body,
            size_t body_len)
{
    /* Written by hand from docs/protocol.md rather than with the library's
     * encoder, so these tests check the wire format from the outside. */
    size_t name_len = name != NULL ? strlen(name) : 0;
    put_le32(out, (uint32_t)(16 + name_len + body_len));
    out[4] = type;
    out[5] = 0;
    out[6] = (uint8_t)name_len;
    out[7] = (uint8_t)(name_len >> 8);
    put_le32(out + 8, (uint32_t)seq);
    put_le32(out + 12, (uint32_t)(seq >> 32));
    put_le32(out + 16, 0);
    if (name_len > 0) {
        memcpy(out + H_FRAME_HDR, name, name_len);
    }
    if (body_len > 0) {
        memcpy(out + H_FRAME_HDR + name_len, body, body_len);
    }
    return H_FRAME_HDR + name_len + body_len;
}

/* ------------------------------------------------------------------ */
/* Temporary directory                                                 */

static char tmpdir[256];

const char *
h_tmpdir(void)
{
    if (tmpdir[0] == '\0') {
        const char *base = getenv("TMPDIR");
        if (base == NULL || base[0] == '\0' || strlen(base) > 64) {
            base = "/tmp";
        }
        snprintf(tmpdir, sizeof(tmpdir), "%s/tether-it-XXXXXX", base);
        if (mkdtemp(tmpdir) == NULL) {
            fail_msg("mkdtemp %s: errno %d", tmpdir, errno);
        }
    }
    return tmpdir;
}

void
h_unix_addr(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "unix:%s/%s", h_tmpdir(), name);
}

void
h_cleanup(void)
{
    if (tmpdir[0] == '\0') {
        return;
    }
    DIR *d = opendir(tmpdir);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
                continue;
            }
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", tmpdir, de->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(tmpdir);
    tmpdir[0] = '\0';
}

/* ------------------------------------------------------------------ */
/* Processes                                                           */

pid_t
h_spawn(char *const argv[], char *const envp[], int keep_fd, int stdout_fd, int stderr_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fail_msg("fork: errno %d", errno);
    }
    if (pid == 0) {
        /* Only async-signal-safe calls from here to exec: the parent may
         * already run client threads.  Die with the test process, so a
         * crashed test leaves no server behind. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        if (keep_fd >= 0) {
            int flags = fcntl(keep_fd, F_GETFD);
            fcntl(keep_fd, F_SETFD, flags & ~FD_CLOEXEC);
        }
        /* dup2 clears close-on-exec on the copies. */
        if (stdout_fd >= 0) {
            dup2(stdout_fd, 1);
        }
        if (stderr_fd >= 0) {
            dup2(stderr_fd, 2);
        }
        execve(argv[0], argv, envp != NULL ? envp : environ);
        _exit(127);
    }
    return pid;
}

bool
h_alive(h_proc *p)
{
    if (p->pid <= 0) {
        return false;
    }
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid) {
        p->pid = 0;
        return false;
    }
    return true;
}

void
h_kill(h_proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        int st;
        while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR) {
        }
        p->pid = 0;
    }
}

int
h_stop(h_proc *p)
{
    if (p->pid <= 0) {
        return 0;
    }
    pid_t pid = p->pid;
    kill(pid, SIGTERM);
    uint64_t end = h_now_ms() + H_TIMEOUT_MS;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            break;
        }
        if (r < 0 && errno != EINTR) {
            p->pid = 0;
            return 0; /* reaped elsewhere */
        }
        if (h_now_ms() > end) {
            fprintf(stderr, "h_stop: server %d did not exit within %u ms of SIGTERM\n",
                    (int)pid, H_TIMEOUT_MS);
            h_kill(p);
            return -1;
        }
        usleep(2000);
    }
    p->pid = 0;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        return 0;
    }
    if (WIFEXITED(st)) {
        fprintf(stderr, "h_stop: server %d exited with status %d%s\n", (int)pid,
                WEXITSTATUS(st),
                WEXITSTATUS(st) == H_SANITIZER_EXIT ? " (a sanitizer report: see above)" : "");
    } else {
        fprintf(stderr, "h_stop: server %d died of signal %d\n", (int)pid, WTERMSIG(st));
    }
    return -1;
}

/* Read the child's report: one bound address per line, then "READY". */
static void
read_report(h_proc *p, int fd)
{
    char buf[2048];
    size_t have = 0;
    uint64_t end = h_now_ms() + H_TIMEOUT_MS;
    for (;;) {
        buf[have] = '\0';
        char *ready = strstr(buf, "READY\n");
        if (ready != NULL) {
            *ready = '\0';
            break;
        }
        uint64_t now = h_now_ms();
        if (now > end) {
            h_kill(p);
            fail_msg("server child did not report its addresses in time");
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, (int)(end - now));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        ssize_t n = r > 0 ? read(fd, buf + have, sizeof(buf) - 1 - have) : 0;
        if (r > 0 && n <= 0) {
            h_kill(p);
            fail_msg("server child exited before listening: %s", buf);
        }
        have += (size_t)(n > 0 ? n : 0);
    }
    close(fd);
    p->naddr = 0;
    for (char *line = buf; *line != '\0' && p->naddr < 4;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        if (strncmp(line, "ERROR ", 6) == 0) {
            h_kill(p);
            fail_msg("server child: %s", line + 6);
        }
        /* Bounded copy (an address line is far shorter than the slot). */
        size_t n = strnlen(line, sizeof(p->addr[0]) - 1);
        memcpy(p->addr[p->naddr], line, n);
        p->addr[p->naddr++][n] = '\0';
        if (nl == NULL) {
            break;
        }
        line = nl + 1;
    }
}

void
h_spawn_server(h_proc *p, const h_server_opts *opts)
{
    static const h_server_opts defaults = {.listen = {"127.0.0.1:0"}};
    if (opts == NULL) {
        opts = &defaults;
    }
    memset(p, 0, sizeof(*p));
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        fail_msg("pipe: errno %d", errno);
    }
    /* Everything the child needs goes on its command line, built before
     * fork. */
    char args[20][320];
    char *argv[22];
    int n = 0;
    argv[n++] = "/proc/self/exe";
    argv[n++] = CHILD_FLAG;
    snprintf(args[0], sizeof(args[0]), "%d", pfd[1]);
    argv[n++] = args[0];
    int k = 1;
    for (int i = 0; i < 4 && opts->listen[i] != NULL; i++) {
        snprintf(args[k], sizeof(args[k]), "listen=%s", opts->listen[i]);
        argv[n++] = args[k++];
    }
    if (opts->listen[0] == NULL) {
        snprintf(args[k], sizeof(args[k]), "listen=127.0.0.1:0");
        argv[n++] = args[k++];
    }
    snprintf(args[k], sizeof(args[k]), "io=%d", opts->io_threads);
    argv[n++] = args[k++];
    snprintf(args[k], sizeof(args[k]), "workers=%d", opts->worker_threads);
    argv[n++] = args[k++];
    snprintf(args[k], sizeof(args[k]), "max_frame=%zu", opts->max_frame_size);
    argv[n++] = args[k++];
    snprintf(args[k], sizeof(args[k]), "max_inflight=%u", opts->max_inflight_per_conn);
    argv[n++] = args[k++];
    snprintf(args[k], sizeof(args[k]), "max_conns=%u", opts->max_connections);
    argv[n++] = args[k++];
    snprintf(args[k], sizeof(args[k]), "ic=%d", opts->interceptors);
    argv[n++] = args[k++];
    if (opts->nofile > 0) {
        snprintf(args[k], sizeof(args[k]), "nofile=%u", opts->nofile);
        argv[n++] = args[k++];
    }
    snprintf(args[k], sizeof(args[k]), "limits=%u,%u,%zu,%u", opts->partial_ms, opts->idle_ms,
             opts->max_input, opts->max_queued);
    argv[n++] = args[k++];
    if (opts->log_path != NULL) {
        snprintf(args[k], sizeof(args[k]), "log=%s", opts->log_path);
        argv[n++] = args[k++];
    }
    if (opts->count_allocs) {
        snprintf(args[k], sizeof(args[k]), "count_allocs=1");
        argv[n++] = args[k++];
    }
    argv[n] = NULL;
    p->pid = h_spawn(argv, NULL, pfd[1], -1, -1);
    close(pfd[1]);
    read_report(p, pfd[0]);
}

/* Connect once to addr: the connected socket, or -errno. */
static int
try_connect(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    memset(&ss, 0, sizeof(ss));
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un *su = (struct sockaddr_un *)&ss;
        su->sun_family = AF_UNIX;
        if (strlen(addr + 5) >= sizeof(su->sun_path)) {
            return -ENAMETOOLONG;
        }
        memcpy(su->sun_path, addr + 5, strlen(addr + 5) + 1);
        sl = sizeof(*su);
    } else if (addr[0] == '[') {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        const char *close_br = strchr(addr, ']');
        if (close_br == NULL || close_br[1] != ':') {
            return -EINVAL;
        }
        char host[128];
        snprintf(host, sizeof(host), "%.*s", (int)(close_br - addr - 1), addr + 1);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)strtoul(close_br + 2, NULL, 10));
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
            return -EINVAL;
        }
        sl = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        const char *colon = strrchr(addr, ':');
        if (colon == NULL) {
            return -EINVAL;
        }
        char host[128];
        snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)strtoul(colon + 1, NULL, 10));
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
            return -EINVAL;
        }
        sl = sizeof(*s4);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int
h_raw_connect(const char *addr)
{
    int fd = try_connect(addr);
    if (fd < 0) {
        fail_msg("connect %s: errno %d", addr, -fd);
    }
    return fd;
}

void
h_spawn_calculator(h_proc *p, const char *addr)
{
    memset(p, 0, sizeof(*p));
    const char *bin = getenv("TETHER_BIN_DIR");
    if (bin == NULL) {
        fail_msg("TETHER_BIN_DIR is not set (run the tests through ctest)");
    }
    char path[1024];
    snprintf(path, sizeof(path), "%s/calculator-server", bin);
    if (access(path, X_OK) != 0) {
        fail_msg("%s is missing", path);
    }
    char listen[300];
    snprintf(listen, sizeof(listen), "%s", addr);
    char *argv[] = {path, "--listen", listen, NULL};
    p->pid = h_spawn(argv, NULL, -1, -1, -1);
    p->naddr = 1;
    snprintf(p->addr[0], sizeof(p->addr[0]), "%s", addr);
    /* The binary does not report readiness, so wait until it accepts (a
     * probe connection without a preface is harmless to the server). */
    uint64_t end = h_now_ms() + H_TIMEOUT_MS;
    for (;;) {
        int fd = try_connect(addr);
        if (fd >= 0) {
            close(fd);
            return;
        }
        if (!h_alive(p)) {
            fail_msg("calculator-server exited before listening on %s", addr);
        }
        if (h_now_ms() > end) {
            h_kill(p);
            fail_msg("calculator-server did not listen on %s in time", addr);
        }
        h_pause();
    }
}

int
h_run(char *const argv[], char *out, char *err, size_t cap)
{
    int po[2];
    int pe[2];
    if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
        fail_msg("pipe: errno %d", errno);
    }
    pid_t pid = h_spawn(argv, NULL, -1, po[1], pe[1]);
    close(po[1]);
    close(pe[1]);
    size_t nout = 0;
    size_t nerr = 0;
    bool open_out = true;
    bool open_err = true;
    uint64_t end = h_now_ms() + H_TIMEOUT_MS;
    while (open_out || open_err) {
        uint64_t now = h_now_ms();
        if (now > end) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            fail_msg("%s did not finish in time", argv[0]);
        }
        struct pollfd pfd[2] = {{open_out ? po[0] : -1, POLLIN, 0},
                                {open_err ? pe[0] : -1, POLLIN, 0}};
        if (poll(pfd, 2, (int)(end - now)) <= 0) {
            continue;
        }
        for (int i = 0; i < 2; i++) {
            if (pfd[i].revents == 0) {
                continue;
            }
            char tmp[1024];
            ssize_t n = read(pfd[i].fd, tmp, sizeof(tmp));
            if (n <= 0) {
                if (i == 0) {
                    open_out = false;
                } else {
                    open_err = false;
                }
                continue;
            }
            char *dst = i == 0 ? out : err;
            size_t *have = i == 0 ? &nout : &nerr;
            size_t room = cap - 1 - *have;
            size_t take = (size_t)n < room ? (size_t)n : room;
            memcpy(dst + *have, tmp, take);
            *have += take;
        }
    }
    out[nout] = '\0';
    err[nerr] = '\0';
    close(po[0]);
    close(pe[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(st)) {
        return 128 + WTERMSIG(st);
    }
    return WEXITSTATUS(st);
}

/* ------------------------------------------------------------------ */
/* Client helpers                                                      */

tether_err
h_client_by_name(const char *url, const char *service, const tether_client_config *cfg,
                 tether_client **out)
{
    tether_registry *reg = NULL;
    tether_err rc = tether_registry_open(url, &reg);
    if (rc == TETHER_OK) {
        rc = tether_client_create_service(reg, service, cfg, out);
        tether_registry_close(reg);
    }
    return rc;
}

tether_client *
h_client(const char *addr)
{
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.connect_timeout_ms = H_TIMEOUT_MS;
    tether_client *c = NULL;
    tether_err e = tether_client_create(addr, &cfg, &c);
    if (e != TETHER_OK) {
        fail_msg("tether_client_create(%s): %s", addr, tether_err_name(e));
    }
    return c;
}

int64_t
h_add(tether_client *c, int64_t a, int64_t b)
{
    Args args = ARGS__INIT;
    args.a = a;
    args.b = b;
    ProtobufCMessage *reply = NULL;
    char *errtext = NULL;
    tether_err e = tether_client_call(c, "Calculator.Add", &args.base,
                                      &google__protobuf__int64_value__descriptor, &reply,
                                      TETHER_CALL_TIMEOUT(H_CALL_MS), &errtext);
    if (e != TETHER_OK) {
        fail_msg("Calculator.Add: %s (%s)", tether_err_name(e), errtext ? errtext : "");
    }
    int64_t v = ((Google__Protobuf__Int64Value *)reply)->value;
    tether_msg_free(reply);
    return v;
}

uint32_t
h_raw_u32(tether_client *c, const char *method)
{
    uint8_t *out = NULL;
    size_t len = 0;
    char *errtext = NULL;
    tether_err e = tether_client_call_raw(c, method, "", 0, &out, &len,
                                          TETHER_CALL_TIMEOUT(H_CALL_MS), &errtext);
    if (e != TETHER_OK) {
        fail_msg("%s: %s (%s)", method, tether_err_name(e), errtext ? errtext : "");
    }
    if (len != 4) {
        fail_msg("%s: answer of %zu bytes, want 4", method, len);
    }
    uint32_t v = h_le32(out);
    tether_free(out);
    return v;
}

/* ------------------------------------------------------------------ */
/* Raw sockets                                                         */

int
h_raw_send(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

bool
h_raw_closed(int fd, uint32_t ms)
{
    uint64_t end = h_now_ms() + ms;
    for (;;) {
        uint64_t now = h_now_ms();
        if (now > end) {
            return false;
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, (int)(end - now));
        if (r <= 0) {
            continue;
        }
        uint8_t buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            return true;
        }
    }
}

/* Read exactly n bytes before end. */
static bool
read_full(int fd, uint8_t *p, size_t n, uint64_t end)
{
    while (n > 0) {
        uint64_t now = h_now_ms();
        if (now > end) {
            return false;
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, (int)(end - now)) <= 0) {
            continue;
        }
        ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            return false;
        }
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        }
    }
    return true;
}

size_t
h_raw_frame(int fd, uint8_t *buf, size_t cap, uint32_t ms)
{
    uint64_t end = h_now_ms() + ms;
    if (cap < H_FRAME_HDR || !read_full(fd, buf, 4, end)) {
        return 0;
    }
    size_t total = (size_t)h_le32(buf) + 4;
    if (total > cap || total < H_FRAME_HDR || !read_full(fd, buf + 4, total - 4, end)) {
        return 0;
    }
    return total;
}

/* ------------------------------------------------------------------ */
/* The test server (child side)                                        */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;

/* Parked calls, with copies of their request bytes. */
struct parked {
    tether_call *call;
    uint8_t *req;
    size_t len;
    struct parked *next;
};
static struct parked *parked_head;
static uint32_t parked_count;
static uint32_t blocked_count;
static uint64_t gate_gen;

static void
child_die(int fd, const char *what, tether_err e, const char *detail)
{
    dprintf(fd, "ERROR %s: %s %s\n", what, tether_err_name(e), detail ? detail : "");
    _exit(1);
}

static void
reply_u32(tether_call *call, uint32_t v)
{
    uint8_t b[4];
    put_le32(b, v);
    tether_call_reply_raw(call, b, sizeof(b));
}

/* ---- large allocations, counted for Test.Allocs (count_allocs=1) ---- */
static _Atomic uint64_t big_allocs;
static _Atomic int64_t big_held;

static int
is_big(void *p)
{
    return p != NULL && malloc_usable_size(p) >= HARNESS_BIG_ALLOC;
}

static void *
count_malloc(size_t n)
{
    void *p = malloc(n);
    if (is_big(p)) {
        atomic_fetch_add(&big_allocs, 1);
        atomic_fetch_add(&big_held, 1);
    }
    return p;
}

static void *
count_realloc(void *old, size_t n)
{
    int was = is_big(old);
    size_t was_size = old != NULL ? malloc_usable_size(old) : 0;
    void *p = realloc(old, n);
    if (p == NULL && n != 0) {
        return NULL; /* old is untouched */
    }
    atomic_fetch_sub(&big_held, was);
    if (is_big(p)) {
        atomic_fetch_add(&big_held, 1);
        if (!was || p != old || malloc_usable_size(p) > was_size) {
            atomic_fetch_add(&big_allocs, 1);
        }
    }
    return p;
}

static void
count_free(void *p)
{
    atomic_fetch_sub(&big_held, is_big(p));
    free(p);
}

static void
m_allocs(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    uint8_t b[16];
    uint64_t n = atomic_load(&big_allocs);
    uint64_t h = (uint64_t)atomic_load(&big_held);
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(n >> (8 * i));
        b[8 + i] = (uint8_t)(h >> (8 * i));
    }
    tether_call_reply_raw(call, b, sizeof(b));
}

static void
m_echo(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    tether_call_reply_raw(call, req, len);
}

static void
m_park(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    struct parked *p = calloc(1, sizeof(*p));
    uint8_t *copy = malloc(len + 1);
    if (p == NULL || copy == NULL) {
        free(p);
        free(copy);
        tether_call_fail(call, "out of memory");
        return;
    }
    memcpy(copy, req, len);
    p->call = call;
    p->req = copy;
    p->len = len;
    pthread_mutex_lock(&mu);
    p->next = parked_head;
    parked_head = p;
    parked_count++;
    pthread_mutex_unlock(&mu);
}

static void
m_parked(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    pthread_mutex_lock(&mu);
    uint32_t n = parked_count;
    pthread_mutex_unlock(&mu);
    reply_u32(call, n);
}

/* Answers a list of parked calls from its own thread: the "answer later,
 * from any thread" path of the handler contract. */
static void *
release_thread(void *arg)
{
    struct parked *p = arg;
    while (p != NULL) {
        struct parked *next = p->next;
        tether_call_reply_raw(p->call, p->req, p->len);
        free(p->req);
        free(p);
        p = next;
    }
    return NULL;
}

static void
run_detached(void *(*fn)(void *), void *arg)
{
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, fn, arg) != 0) {
        /* The test would then wait for answers that never come and fail
         * on its deadline; make the cause visible. */
        fprintf(stderr, "test server: pthread_create failed\n");
        _exit(1);
    }
    pthread_attr_destroy(&attr);
}

static void
m_release(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    pthread_mutex_lock(&mu);
    struct parked *list = parked_head;
    uint32_t n = parked_count;
    parked_head = NULL;
    parked_count = 0;
    pthread_mutex_unlock(&mu);
    if (list != NULL) {
        run_detached(release_thread, list);
    }
    reply_u32(call, n);
}

static void
m_block(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    blocked_count++;
    uint64_t gen = gate_gen;
    while (gate_gen == gen) {
        pthread_cond_wait(&gate_cv, &mu);
    }
    blocked_count--;
    pthread_mutex_unlock(&mu);
    tether_call_reply_raw(call, req, len);
}

static void
m_blocked(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    pthread_mutex_lock(&mu);
    uint32_t n = blocked_count;
    pthread_mutex_unlock(&mu);
    reply_u32(call, n);
}

static void
m_open(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    pthread_mutex_lock(&mu);
    gate_gen++;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&mu);
    reply_u32(call, 0);
}

/* ---- the call context (native protocol v2) ---- */

/* Test.Deadline: the caller's remaining time as the handler sees it, in
 * ms (0xFFFFFFFF: no deadline). */
static void
m_deadline(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    uint64_t d = tether_call_get_deadline(call);
    uint64_t now = h_now_ms();
    reply_u32(call, d == 0 ? 0xFFFFFFFFu : d > now ? (uint32_t)(d - now) : 0);
}

/* Test.Meta: the request metadata as "k=v\n" lines in the caller's order;
 * each pair also goes back as the trailer "echo-k". */
static void
m_meta(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    char out[4096];
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < tether_call_get_meta_count(call); i++) {
        tether_meta m;
        if (tether_call_get_meta_at(call, i, &m) != TETHER_OK) {
            tether_call_fail(call, "meta_at failed");
            return;
        }
        n += (size_t)snprintf(out + n, sizeof out - n, "%s=%s\n", m.key, m.value);
        char key[300];
        snprintf(key, sizeof key, "echo-%s", m.key);
        tether_call_set_trailer(call, key, m.value);
        if (n >= sizeof out) {
            break;
        }
    }
    const char *first = tether_call_get_meta(call, "trace");
    if (first != NULL) {
        tether_call_set_trailer(call, "get-trace", first);
    }
    tether_call_reply_raw(call, out, strlen(out));
}

/* Test.Peer: the caller's address as the server sees it. */
static void
m_peer(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    char buf[128];
    if (tether_call_get_peer(call, buf, sizeof buf) != TETHER_OK) {
        tether_call_fail(call, "no peer");
        return;
    }
    tether_call_reply_raw(call, buf, strlen(buf));
}

/* Test.FailCode: an error that travels as a code. */
static void
m_fail_code(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    tether_call_fail_code(call, TETHER_ENOENT, "no such thing");
}

/* Test.FailEscape: an error text with terminal escapes in it. */
static void
m_fail_escape(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    tether_call_fail(call, "bad\x1b[2Jthing\a");
}

/* Test.Hold (worker pool): run until canceled, polling like a long
 * handler would; Test.HoldStats tells what the handlers learnt. */
static uint32_t hold_now, hold_canceled, hold_timedout, hold_told;

static void
on_hold_cancel(tether_call *call, tether_err why, void *arg)
{
    (void)call;
    (void)why;
    (void)arg;
    pthread_mutex_lock(&mu);
    hold_told++;
    pthread_mutex_unlock(&mu);
}

static void
m_hold(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    tether_call_on_cancel(call, on_hold_cancel, NULL);
    pthread_mutex_lock(&mu);
    hold_now++;
    pthread_mutex_unlock(&mu);
    uint64_t end = h_now_ms() + H_TIMEOUT_MS;
    tether_err why;
    while ((why = tether_call_canceled(call)) == TETHER_OK && h_now_ms() < end) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&mu);
    hold_now--;
    hold_canceled += why == TETHER_ECANCELED;
    hold_timedout += why == TETHER_ETIMEDOUT;
    pthread_mutex_unlock(&mu);
    tether_call_fail(call, "held");
}

static void
m_hold_stats(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    pthread_mutex_lock(&mu);
    uint32_t v[4] = {hold_now, hold_canceled, hold_timedout, hold_told};
    pthread_mutex_unlock(&mu);
    tether_call_reply_raw(call, v, sizeof v);
}

/* ---- interceptors: a log of what they saw, read by Test.IcLog ---- */

static char ic_log[4096];
static size_t ic_len;

static void
ic_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&mu);
    if (ic_len < sizeof ic_log - 128) {
        int n = vsnprintf(ic_log + ic_len, sizeof ic_log - ic_len, fmt, ap);
        ic_len += n > 0 ? (size_t)n : 0;
    }
    pthread_mutex_unlock(&mu);
    va_end(ap);
}

static int
is_log_call(const tether_call *call)
{
    return strcmp(tether_call_get_method(call), "Test.IcLog") == 0;
}

static tether_err
ic_before_a(tether_call *call, const char **why, void *arg)
{
    (void)arg;
    if (is_log_call(call)) {
        return TETHER_OK;
    }
    const char *deny = tether_call_get_meta(call, "deny");
    ic_note("a(%s)", tether_call_get_method(call));
    if (deny != NULL && strcmp(deny, "yes") == 0) {
        *why = "denied by policy";
        return TETHER_EPERM;
    }
    return TETHER_OK;
}

static void
ic_after_a(const tether_call *call, tether_err status, uint64_t ns, void *arg)
{
    (void)arg;
    (void)ns;
    if (!is_log_call(call)) {
        ic_note("A%d;", (int)status);
    }
}

static tether_err
ic_before_b(tether_call *call, const char **why, void *arg)
{
    (void)arg;
    (void)why;
    if (!is_log_call(call)) {
        ic_note("b");
    }
    return TETHER_OK;
}

static void
ic_after_b(const tether_call *call, tether_err status, uint64_t ns, void *arg)
{
    (void)arg;
    (void)ns;
    if (!is_log_call(call)) {
        ic_note("B%d", (int)status);
    }
}

static void
m_ic_log(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    pthread_mutex_lock(&mu);
    char copy[sizeof ic_log];
    size_t n = ic_len;
    memcpy(copy, ic_log, n);
    ic_len = 0;
    pthread_mutex_unlock(&mu);
    tether_call_reply_raw(call, copy, n);
}

static void
reply_int(tether_call *call, int64_t v)
{
    Google__Protobuf__Int64Value out = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    out.value = v;
    tether_call_reply(call, &out.base);
}

static void
calc_add(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    (void)arg;
    const Args *a = (const Args *)req;
    reply_int(call, a->a + a->b);
}

struct later {
    tether_call *call;
    const Args *args;
};

static void *
sub_thread(void *arg)
{
    struct later *l = arg;
    /* The request stays valid until the call is answered. */
    reply_int(l->call, l->args->a - l->args->b);
    free(l);
    return NULL;
}

static void
calc_sub(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    (void)arg;
    struct later *l = malloc(sizeof(*l));
    if (l == NULL) {
        tether_call_fail(call, "out of memory");
        return;
    }
    l->call = call;
    l->args = (const Args *)req;
    run_detached(sub_thread, l);
}

static void
calc_mul(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    (void)arg;
    const Args *a = (const Args *)req;
    reply_int(call, a->a * a->b);
}

static void
calc_div(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    (void)arg;
    const Args *a = (const Args *)req;
    if (a->b == 0) {
        tether_call_fail(call, "divide by zero");
        return;
    }
    reply_int(call, a->a / a->b);
}

static unsigned long
opt_num(const char *s)
{
    return strtoul(s, NULL, 10);
}

/* Test.Whoami: this server's first listening address (for tests that
 * count which instance answered). */
static char whoami[256];

static void
m_whoami(tether_call *call, const uint8_t *req, size_t len, void *arg)
{
    (void)req;
    (void)len;
    (void)arg;
    tether_call_reply_raw(call, whoami, strlen(whoami));
}

/* What the test methods keep between calls, freed before a clean exit.
 * A call still parked was canceled by the server's stop, but its handler
 * owes it its one answer all the same (service.h's handler contract);
 * the destroyed server ignores it and frees the call. */
static void
child_free_state(void)
{
    pthread_mutex_lock(&mu);
    struct parked *p = parked_head;
    parked_head = NULL;
    parked_count = 0;
    pthread_mutex_unlock(&mu);
    release_thread(p);
}

void
h_child_main(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], CHILD_FLAG) != 0) {
        return;
    }
    int fd = (int)opt_num(argv[2]);
    int want_ic = 0;
    /* A SIGTERM that comes before tether_server_run() has installed its
     * handler waits, blocked, instead of killing us without a report. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.drain_timeout_ms = 1000; /* parked calls must not hold h_stop() for long */
    const char *listen[4] = {NULL, NULL, NULL, NULL};
    int nlisten = 0;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        const char *v = strchr(a, '=');
        if (v == NULL) {
            continue;
        }
        v++;
        if (strncmp(a, "listen=", 7) == 0 && nlisten < 4) {
            listen[nlisten++] = v;
        } else if (strncmp(a, "io=", 3) == 0 && opt_num(v) > 0) {
            cfg.io_threads = (int)opt_num(v);
        } else if (strncmp(a, "workers=", 8) == 0 && opt_num(v) > 0) {
            cfg.worker_threads = (int)opt_num(v);
        } else if (strncmp(a, "max_frame=", 10) == 0 && opt_num(v) > 0) {
            cfg.max_frame_size = (size_t)opt_num(v);
        } else if (strncmp(a, "max_inflight=", 13) == 0 && opt_num(v) > 0) {
            cfg.max_inflight_per_conn = (uint32_t)opt_num(v);
        } else if (strncmp(a, "ic=", 3) == 0 && opt_num(v) > 0) {
            want_ic = 1;
        } else if (strncmp(a, "max_conns=", 10) == 0 && opt_num(v) > 0) {
            cfg.max_connections = (uint32_t)opt_num(v);
        } else if (strncmp(a, "limits=", 7) == 0) {
            unsigned pm = 0;
            unsigned im = 0;
            size_t mi = 0;
            unsigned mq = 0;
            if (sscanf(v, "%u,%u,%zu,%u", &pm, &im, &mi, &mq) == 4) {
                cfg.partial_timeout_ms = pm;
                cfg.idle_timeout_ms = im;
                cfg.max_input_buffered = mi;
                cfg.max_queued_blocking = mq;
            }
        } else if (strncmp(a, "nofile=", 7) == 0 && opt_num(v) > 0) {
            struct rlimit rl = {(rlim_t)opt_num(v), (rlim_t)opt_num(v)};
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
                child_die(fd, "setrlimit", TETHER_ESYSERR, NULL);
            }
        } else if (strncmp(a, "count_allocs=", 13) == 0 && opt_num(v) > 0) {
            static const tether_allocator counting = {count_malloc, count_realloc, count_free};
            tether_set_allocator(&counting);
        } else if (strncmp(a, "log=", 4) == 0) {
            int lfd = open(v, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (lfd < 0 || dup2(lfd, 2) < 0) {
                child_die(fd, "log file", TETHER_ESYSERR, NULL);
            }
            close(lfd);
            tether_log_set_handler(tether_log_stderr, TETHER_LOG_WARN, NULL);
        }
    }
    tether_server *srv = NULL;
    tether_err e = tether_server_create(&cfg, &srv);
    if (e != TETHER_OK) {
        child_die(fd, "create", e, NULL);
    }
    static const tether_method calc[] = {
        {"Add", calc_add, 0},
        {"Sub", calc_sub, 0},
        {"Mul", calc_mul, TETHER_METHOD_BLOCKING},
        {"Div", calc_div, 0},
    };
    e = tether_server_add_service(srv, &calculator__descriptor, calc, 4, NULL);
    if (e != TETHER_OK) {
        child_die(fd, "add_service", e, tether_server_get_errmsg(srv));
    }
    if (want_ic) {
        /* a refuses calls whose metadata says deny=yes; b only logs. */
        static const tether_server_interceptor ics[] = {
            {ic_before_a, ic_after_a, NULL},
            {ic_before_b, ic_after_b, NULL},
        };
        for (size_t i = 0; i < 2; i++) {
            e = tether_server_add_interceptor(srv, &ics[i]);
            if (e != TETHER_OK) {
                child_die(fd, "add_interceptor", e, NULL);
            }
        }
    }
    static const struct {
        const char *name;
        tether_raw_handler_fn fn;
        unsigned flags;
    } raw[] = {
        {"Test.Echo", m_echo, 0},       {"Test.Park", m_park, 0},
        {"Test.EchoBlocking", m_echo, TETHER_METHOD_BLOCKING},
        {"Test.Parked", m_parked, 0},   {"Test.Release", m_release, 0},
        {"Test.Block", m_block, TETHER_METHOD_BLOCKING},
        {"Test.Blocked", m_blocked, 0}, {"Test.Open", m_open, 0},
        {"Test.Deadline", m_deadline, 0}, {"Test.Meta", m_meta, 0},
        {"Test.Peer", m_peer, 0},         {"Test.FailCode", m_fail_code, 0},
        {"Test.Hold", m_hold, TETHER_METHOD_BLOCKING}, {"Test.HoldStats", m_hold_stats, 0},
        {"Test.IcLog", m_ic_log, 0},      {"Test.FailEscape", m_fail_escape, 0},
        {"Test.Whoami", m_whoami, 0},     {"Test.Allocs", m_allocs, 0},
    };
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
        e = tether_server_add_raw_method(srv, raw[i].name, raw[i].fn, raw[i].flags, NULL);
        if (e != TETHER_OK) {
            child_die(fd, raw[i].name, e, tether_server_get_errmsg(srv));
        }
    }
    for (int i = 0; i < nlisten; i++) {
        e = tether_server_listen(srv, listen[i]);
        if (e != TETHER_OK) {
            child_die(fd, listen[i], e, tether_server_get_errmsg(srv));
        }
    }
    e = tether_server_start(srv);
    if (e != TETHER_OK) {
        child_die(fd, "start", e, tether_server_get_errmsg(srv));
    }
    for (int i = 0; i < nlisten; i++) {
        char addr[256];
        e = tether_server_get_address(srv, i, addr, sizeof(addr));
        if (e != TETHER_OK) {
            child_die(fd, "address", e, NULL);
        }
        dprintf(fd, "%s\n", addr);
        if (i == 0) {
            snprintf(whoami, sizeof whoami, "%s", addr);
        }
    }
    dprintf(fd, "READY\n");
    close(fd);
    /* Serve until SIGTERM (h_stop), then drain, stop and free everything,
     * so the sanitizers see a clean exit; SIGKILL (h_kill) is for the
     * tests about crashes. */
    e = tether_server_run(srv);
    if (e != TETHER_OK) {
        fprintf(stderr, "test server: run: %s\n", tether_strerror(e));
        _exit(3);
    }
    tether_server_destroy(srv);
    child_free_state();
    exit(0);
}
