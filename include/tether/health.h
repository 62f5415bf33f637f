/*
 * health.h - a server's health as callers see it: the built-in method
 * _tether.Health.Check that every tether server answers on every codec
 * (native, gob, jsonrpc), with grpc.health.v1 semantics (docs/health.md).
 *
 * On the wire the request is the service name as a
 * google.protobuf.StringValue ("" asks about the whole server) and the
 * answer is the status's name as a StringValue ("SERVING", ...): a bare
 * string in jsonrpc and a gob singleton, so a Go net/rpc client calls it
 * with a string argument and a *string reply.
 */
#ifndef TETHER_HEALTH_H
#define TETHER_HEALTH_H

#include "tether/client.h"
#include "tether/tether.h"

#ifdef __cplusplus
extern "C" {
#endif

/* tether_health_status - a server's health, as _tether.Health.Check
 * answers it (grpc.health.v1 semantics; docs/health.md). */
typedef enum tether_health_status {
    TETHER_HEALTH_UNKNOWN = 0,     /* the service asked about is not served here */
    TETHER_HEALTH_SERVING = 1,     /* takes calls */
    TETHER_HEALTH_NOT_SERVING = 2, /* stalled (watchdog), or the application said so */
    /* 3 is grpc.health.v1's SERVICE_UNKNOWN (Watch only): not used. */
    TETHER_HEALTH_DRAINING = 4, /* stopping: finishing calls, taking no new ones */
} tether_health_status;

/*
 * tether_health_status_name - "SERVING", "NOT_SERVING", "DRAINING" or
 * "UNKNOWN" (also for values not listed); a constant string.
 */
TETHER_API const char *tether_health_status_name(tether_health_status status);

/*
 * tether_client_health_check - call _tether.Health.Check on c's server
 * for service (NULL or "": the whole server) and put the answer in *out.
 * opts as for tether_client_call() (NULL: the client's defaults).
 * Errors: those of tether_client_call(); TETHER_EBADREPLY if the answer
 * is not a status name.  A server that does not answer (stalled on the
 * I/O thread that owns the connection) shows as TETHER_ETIMEDOUT.
 */
TETHER_API tether_err tether_client_health_check(tether_client *c, const char *service,
                                                 const tether_call_opts *opts,
                                                 tether_health_status *out);

#ifdef __cplusplus
}
#endif
#endif /* TETHER_HEALTH_H */
