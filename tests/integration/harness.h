/*
 * harness.h - shared helpers for the C integration tests.
 *
 * Servers run as real processes: either the example's calculator-server
 * binary, or this test binary itself re-executed in "server" mode, which
 * serves the calculator service with test handlers plus the raw "Test.*"
 * methods below.  Re-executing (rather than forking a child that keeps
 * running test code) keeps the child clean even when the parent already
 * runs client threads, so servers can be (re)started at any point.  The
 * child writes its bound addresses to a pipe, so the parent knows when it
 * listens and on which ports; children are killed by PID and reaped in
 * teardown, and die with the test process if it crashes.
 *
 * Every test binary starts its main() with h_child_main(argc, argv).
 *
 * Test service (raw methods, request bytes are echoed unless said):
 *   Test.Echo     answers at once, on the I/O thread.
 *   Test.Park     keeps the call unanswered until Test.Release.
 *   Test.Parked   answers a 4-byte little-endian count of parked calls.
 *   Test.Release  answers every parked call from another thread; its own
 *                 answer is the 4-byte count it released.
 *   Test.Block    a blocking method (worker pool): waits until Test.Open.
 *   Test.Blocked  answers the 4-byte count of handlers waiting in Block.
 *   Test.Open     lets every waiting Test.Block handler finish.
 *   Test.Allocs   (count_allocs) two 8-byte little-endian counts: the
 *                 library's allocations of HARNESS_BIG_ALLOC bytes or more
 *                 so far, and how many of them are held now.
 * Calculator service (typed, Args -> Int64Value):
 *   Add inline; Sub answered later from another thread; Mul registered
 *   as blocking (worker pool); Div inline, "divide by zero" for B == 0.
 */
#ifndef TETHER_TEST_HARNESS_H
#define TETHER_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cmocka.h>

#include "tether/client.h"
#include "tether/server.h"
#include "tether/tether.h"

/* The deadline for anything that must happen: long enough that a slow,
 * loaded or sanitized build never hits it when the code is right. */
#define H_TIMEOUT_MS 60000u
/* The exit code the test run gives the sanitizers (scripts/test.sh). */
#define H_SANITIZER_EXIT 86

/* What Test.Allocs counts as a large allocation. */
#define HARNESS_BIG_ALLOC (128u * 1024)

/* A call timeout for calls that must succeed. */
#define H_CALL_MS 60000u

/* A server or other child process started by a test. */
typedef struct h_proc {
    pid_t pid;
    int naddr;
    char addr[4][256]; /* bound addresses, in listen order */
} h_proc;

/* Settings of the test server; zero means the library default. */
typedef struct h_server_opts {
    const char *listen[4]; /* NULL-terminated; default "127.0.0.1:0" */
    int io_threads;
    int worker_threads;
    size_t max_frame_size;
    uint32_t max_inflight_per_conn;
    uint32_t max_connections;
    int interceptors; /* install the test interceptors (Test.IcLog tells what they saw) */
    unsigned nofile;  /* >0: the server's RLIMIT_NOFILE (soft and hard) */
    const char *log_path; /* the server logs WARN and above to this file (NULL: not at all) */
    uint32_t partial_ms;  /* partial_timeout_ms (0: the default) */
    uint32_t idle_ms;     /* idle_timeout_ms (0: the default) */
    size_t max_input;     /* max_input_buffered (0: the default) */
    uint32_t max_queued;  /* max_queued_blocking (0: the default) */
    int count_allocs; /* the server counts its large allocations (Test.Allocs) */
} h_server_opts;

/* h_child_main - when argv asks for server mode, run the test server and
 * never return; otherwise return at once. */
void h_child_main(int argc, char **argv);

/* h_now_ms - a monotonic clock in milliseconds. */
uint64_t h_now_ms(void);

/* h_pause - a short pause between two checks of a condition. */
void h_pause(void);

/* H_WAIT - poll cond until it holds; fail the test after H_TIMEOUT_MS. */
#define H_WAIT(cond, what)                                                  \
    do {                                                                    \
        uint64_t h_end_ = h_now_ms() + H_TIMEOUT_MS;                        \
        while (!(cond)) {                                                   \
            if (h_now_ms() > h_end_) {                                      \
                fail_msg("timed out after %u ms waiting for %s", H_TIMEOUT_MS, \
                         (what));                                           \
            }                                                               \
            h_pause();                                                      \
        }                                                                   \
    } while (0)

/* H_OK - assert that a tether call returned TETHER_OK, naming the error. */
#define H_OK(expr)                                                                   \
    do {                                                                             \
        tether_err h_e_ = (expr);                                                    \
        if (h_e_ != TETHER_OK) {                                                     \
            fail_msg("%s: %s (%s)", #expr, tether_err_name(h_e_), tether_strerror(h_e_)); \
        }                                                                            \
    } while (0)

/* H_ERR - assert that a tether call returned want. */
#define H_ERR(expr, want)                                                            \
    do {                                                                             \
        tether_err h_e_ = (expr);                                                    \
        if (h_e_ != (want)) {                                                        \
            fail_msg("%s: got %s, want %s", #expr, tether_err_name(h_e_),            \
                     tether_err_name(want));                                         \
        }                                                                            \
    } while (0)

/* h_tmpdir - a private directory for unix sockets, made on first use and
 * removed by h_cleanup(). */
const char *h_tmpdir(void);

/* h_unix_addr - "unix:<tmpdir>/<name>" into buf. */
void h_unix_addr(char *buf, size_t len, const char *name);

/* h_cleanup - remove the temporary directory and its files. */
void h_cleanup(void);

/* h_spawn_server - start the test server with opts (NULL: defaults) and
 * wait until it listens; p->addr holds its bound addresses. */
void h_spawn_server(h_proc *p, const h_server_opts *opts);

/* h_spawn_calculator - start $TETHER_BIN_DIR/calculator-server listening
 * on addr and wait until it accepts connections there. */
void h_spawn_calculator(h_proc *p, const char *addr);

/* h_spawn - fork and exec argv[0] (a path) with envp (NULL: this
 * process's environment), keeping keep_fd (if >= 0) open in the child and
 * making stdout_fd / stderr_fd (if >= 0) its stdout / stderr.  The child
 * dies with the test process.  Returns its PID; fails the test if fork
 * fails. */
pid_t h_spawn(char *const argv[], char *const envp[], int keep_fd, int stdout_fd, int stderr_fd);

/* h_alive - whether p still runs (false once it exited or was killed). */
bool h_alive(h_proc *p);

/* h_stop - stop p gracefully (SIGTERM: the server drains and exits, so
 * LeakSanitizer and the other sanitizers report what they found) and reap
 * it.  0 if it exited with status 0; else -1, with why on stderr (a
 * sanitizer's exit code, a signal, or no exit within H_TIMEOUT_MS, when
 * it is killed).  Safe on a proc never started or already gone.  For
 * teardowns: return its value. */
int h_stop(h_proc *p);

/* h_kill - SIGKILL p and reap it.  Safe on a proc never started or already
 * killed. */
void h_kill(h_proc *p);

/* h_run - run argv[0] (a path) with argv to completion, capturing up to
 * cap-1 bytes each of its stdout and stderr (NUL-terminated).  Returns its
 * exit status (128 + signal if killed); fails the test if it does not
 * finish within H_TIMEOUT_MS. */
int h_run(char *const argv[], char *out, char *err, size_t cap);

/* h_client_by_name - tether_registry_open(url) and
 * tether_client_create_service() on it (the client keeps the registry). */
tether_err h_client_by_name(const char *url, const char *service, const tether_client_config *cfg,
                            tether_client **out);

/* h_client - connect a tether client to addr, failing the test if that
 * does not work. */
tether_client *h_client(const char *addr);

/* h_add - a sync Calculator.Add; returns A+B as answered, fails the test
 * on any error. */
int64_t h_add(tether_client *c, int64_t a, int64_t b);

/* h_raw_u32 - a sync raw call that answers a 4-byte count (Test.Parked,
 * Test.Blocked, Test.Release). */
uint32_t h_raw_u32(tether_client *c, const char *method);

/* Raw sockets speaking (or abusing) the native protocol by hand. */
#define H_PREFACE "\xF5TETHER\x02"
/* Bytes of the context section a client call carries when it sends no
 * metadata: ctx_len (4) and the deadline entry (7). */
#define H_CALL_CTX 11
#define H_PREFACE_LEN 8
#define H_FRAME_HDR 20

/* h_raw_connect - a blocking socket connected to addr ("host:port" with a
 * numeric IPv4 host, "[v6]:port" or "unix:/path"); fails the test if it
 * cannot connect. */
int h_raw_connect(const char *addr);

/* h_raw_send - send all of p[0..n); 0 or -errno (EPIPE, ECONNRESET). */
int h_raw_send(int fd, const void *p, size_t n);

/* h_raw_closed - whether the peer closes fd within ms, reading and
 * discarding whatever arrives before (an error frame, say). */
bool h_raw_closed(int fd, uint32_t ms);

/* h_raw_frame - read one whole frame into buf (at most cap bytes);
 * returns its size, or 0 on close, error or after ms. */
size_t h_raw_frame(int fd, uint8_t *buf, size_t cap, uint32_t ms);

/* h_put_frame - a frame of type (1 request, 2 reply ...) into out; name
 * may be NULL.  Returns its size. */
size_t h_put_frame(uint8_t *out, uint8_t type, uint64_t seq, const char *name, const void *body,
                   size_t body_len);

/* Little-endian helpers for reading raw frames. */
uint32_t h_le32(const uint8_t *p);
uint64_t h_le64(const uint8_t *p);

#endif
