/*
 * health.h - the health checks of `tether register` (cmd_register.c).
 *
 * A check runs on a thread of its own, so that a slow or hanging target
 * never holds up the sidecar's poll loop (signals, the child's exit): the
 * loop asks for a check with cli_health_request() and learns the outcome
 * when cli_health_fd() becomes readable.  At most one check runs at a
 * time; each is bounded by the timeout given to cli_health_start().
 *
 * Kinds (the --health value):
 *   tcp                 connect to the address
 *   rpc[:CODEC]         call the built-in _tether.Describe over CODEC
 *                       (native, the default, gob or jsonrpc); any answer
 *                       of the server, an error answer included (a Go
 *                       net/rpc server says "can't find service"), is
 *                       healthy; no connection, no answer in time, a
 *                       reply that is not the codec, or "going away" (a
 *                       tether server that is stopping) is not
 *   http:PATH           GET http://ADDR/PATH answers 2xx (libcurl; no
 *                       proxy, no redirects)
 *   exec:CMD            /bin/sh -c CMD exits 0 (stdin and stdout are
 *                       /dev/null; killed with its process group at the
 *                       timeout)
 *   none                no check: registered at once
 */
#ifndef TETHER_TOOL_HEALTH_H
#define TETHER_TOOL_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum cli_health_kind {
    CLI_HEALTH_NONE,
    CLI_HEALTH_TCP,
    CLI_HEALTH_RPC,
    CLI_HEALTH_HTTP,
    CLI_HEALTH_EXEC,
} cli_health_kind;

/* cli_health_spec - a parsed --health value; arg points into the string
 * given to cli_health_parse() (the path or command), codec is a
 * tether_codec for rpc. */
typedef struct cli_health_spec {
    cli_health_kind kind;
    const char *arg;
    int codec;
} cli_health_spec;

/*
 * cli_health_parse - parse spec ("tcp", "rpc", "rpc:gob", "http:/path",
 * "exec:cmd", "none") into *out.  Returns false with a message in
 * err (cap bytes) when spec is not one of them.
 */
bool cli_health_parse(const char *spec, cli_health_spec *out, char *err, size_t cap);

typedef struct cli_health cli_health;

/*
 * cli_health_start - start the checking thread for spec against addr
 * ("host:port", "[v6]:port" or "unix:/path"; copied), each check bounded
 * by timeout_ms.  The caller must have blocked the signals it takes by
 * signalfd: the thread (and what it starts) inherits the mask.  Returns
 * NULL after printing why to stderr.
 */
cli_health *cli_health_start(const cli_health_spec *spec, const char *addr, uint32_t timeout_ms);

/* cli_health_fd - readable when a check has finished; then call
 * cli_health_result(). */
int cli_health_fd(const cli_health *h);

/* cli_health_request - start one check; ignored while one runs (returns
 * false then). */
bool cli_health_request(cli_health *h);

/*
 * cli_health_result - the outcome of the finished check: 1 healthy, 0 not
 * (why, NUL-terminated, says what failed), -1 when none was ready.
 */
int cli_health_result(cli_health *h, char *why, size_t cap);

/* cli_health_stop - end the thread (waits for a running check, at most
 * its timeout) and free h.  NULL is a no-op. */
void cli_health_stop(cli_health *h);

#endif
