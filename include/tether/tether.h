/*
 * tether.h - umbrella header: version, errors, allocator and log hooks.
 *
 * Every public tether function that can fail returns a tether_err.  Results
 * come back through out-parameters.  The library never prints, never exits
 * and never aborts on bad input or on out-of-memory; it reports through its
 * return values and through the log handler set with
 * tether_log_set_handler().
 */
#ifndef TETHER_TETHER_H
#define TETHER_TETHER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TETHER_BUILDING) && defined(__GNUC__)
#define TETHER_API __attribute__((visibility("default")))
#else
#define TETHER_API
#endif

#define TETHER_VERSION_MAJOR 0
#define TETHER_VERSION_MINOR 1
#define TETHER_VERSION_PATCH 0
#define TETHER_VERSION_STRING "0.1.0"

/*
 * TETHER_ERRNO_MAP - the one list of error codes.  It generates the
 * tether_err enum, tether_strerror() and tether_err_name().  Values are
 * append-only and never renumbered.
 */
#define TETHER_ERRNO_MAP(X)                                                           \
    X(OK, 0, "success")                                                               \
    X(EINVAL, 1, "invalid argument")                                                  \
    X(ENOMEM, 2, "out of memory")                                                     \
    X(ETIMEDOUT, 3, "timed out")                                                      \
    X(ECANCELED, 4, "canceled")                                                       \
    X(ECLOSED, 5, "object or connection closed")                                      \
    X(ECONNREFUSED, 6, "connection refused")                                          \
    X(ECONNRESET, 7, "connection reset or lost")                                      \
    X(EADDRINUSE, 8, "address in use")                                                \
    X(EADDRINVAL, 9, "invalid address")                                               \
    X(ENOSERVICE, 10, "unknown service")                                              \
    X(ENOMETHOD, 11, "unknown method")                                                \
    X(EBADREQUEST, 12, "request could not be decoded")                                \
    X(EBADREPLY, 13, "reply could not be decoded")                                    \
    X(EREMOTE, 14, "remote application error")                                        \
    X(EPROTO, 15, "protocol error")                                                   \
    X(EMSGSIZE, 16, "message too large")                                              \
    X(ELIMIT, 17, "limit reached")                                                    \
    X(EEXIST, 18, "already exists")                                                   \
    X(ENOENT, 19, "not found")                                                        \
    X(ESTATE, 20, "operation not valid in the current state")                         \
    X(EGOINGAWAY, 21, "server is going away")                                         \
    X(ENOTSUP, 22, "not supported")                                                   \
    X(EREGISTRY, 23, "registry error")                                                \
    X(ELEASE, 24, "registry lease lost")                                              \
    X(EAGAIN, 25, "try again")                                                        \
    X(EINTERNAL, 26, "internal error")                                                \
    X(EPERM, 27, "permission denied")                                                 \
    X(ETLS, 28, "TLS handshake or certificate verification failed")

/* tether_err - every error the library returns.  OS errors that have no
 * better mapping are returned as (TETHER_ESYSERR | errno). */
typedef enum tether_err {
#define TETHER_ERR_ENUM_(name, num, text) TETHER_##name = num,
    TETHER_ERRNO_MAP(TETHER_ERR_ENUM_)
#undef TETHER_ERR_ENUM_
    TETHER_ESYSERR = 0x10000000
} tether_err;

/*
 * tether_meta - one metadata key/value pair (both NUL-terminated UTF-8):
 * instance metadata in a registry, call metadata and reply trailers.
 */
typedef struct tether_meta {
    const char *key;
    const char *value;
} tether_meta;

/*
 * tether_strerror - a constant English description of err.  Never NULL,
 * never allocates; the string lives for the whole program.  For
 * (TETHER_ESYSERR | errno) values it returns a fixed "system error" text;
 * use tether_err_errno() to get the errno back.
 */
TETHER_API const char *tether_strerror(tether_err err);

/*
 * tether_err_name - the symbolic name of err ("TETHER_ETIMEDOUT").  Never
 * NULL; "TETHER_ESYSERR" for wrapped OS errors, "TETHER_E?" for unknown
 * values.
 */
TETHER_API const char *tether_err_name(tether_err err);

/*
 * tether_err_errno - the errno wrapped in a TETHER_ESYSERR value, or 0 if
 * err is not a wrapped OS error.
 */
TETHER_API int tether_err_errno(tether_err err);

/* Log levels passed to the log handler. */
typedef enum tether_log_level {
    TETHER_LOG_DEBUG = 0,
    TETHER_LOG_INFO = 1,
    TETHER_LOG_WARN = 2,
    TETHER_LOG_ERROR = 3
} tether_log_level;

/*
 * tether_log_fn - receives one log line (no trailing newline).  It may be
 * called from any tether thread, concurrently; msg is valid only during the
 * call.
 */
typedef void (*tether_log_fn)(tether_log_level level, const char *msg, void *arg);

/*
 * tether_log_set_handler - route the library's log lines to fn (NULL: drop
 * them, the default).  Lines below min_level are not formatted at all.
 * Thread-safe; takes effect for lines logged after it returns.
 */
TETHER_API void tether_log_set_handler(tether_log_fn fn, tether_log_level min_level, void *arg);

/*
 * tether_log_stderr - a ready-made handler that writes "tether: LEVEL: msg"
 * lines to standard error.  Applications opt in with
 * tether_log_set_handler(tether_log_stderr, TETHER_LOG_INFO, NULL).
 */
TETHER_API void tether_log_stderr(tether_log_level level, const char *msg, void *arg);

/* Allocator hooks: all library allocations go through these. */
typedef struct tether_allocator {
    void *(*malloc_fn)(size_t size);
    void *(*realloc_fn)(void *ptr, size_t size);
    void (*free_fn)(void *ptr);
} tether_allocator;

/*
 * tether_set_allocator - replace the allocator used by the library (NULL:
 * back to malloc/realloc/free).  Call before creating any tether object;
 * memory must be freed by the allocator that allocated it.  Not
 * thread-safe.  protobuf-c messages unpacked for the caller use the same
 * allocator, so free them with protobuf_c_message_free_unpacked(msg, NULL)
 * only while the default allocator is in place, or use tether_msg_free().
 */
TETHER_API void tether_set_allocator(const tether_allocator *alloc);

/*
 * tether_free - free a buffer or string the library returned as owned by
 * the caller (documented per function).  tether_free(NULL) is a no-op.
 */
TETHER_API void tether_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif /* TETHER_TETHER_H */
