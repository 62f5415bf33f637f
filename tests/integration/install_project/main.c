/*
 * main.c - the install tests' outside application: serves Twice.Of on a
 * free loopback port, calls it once through a client and prints
 * "Twice.Of(21) = 42".  Exits non-zero on any failure.
 */
#include <stdio.h>

#include <tether/client.h>
#include <tether/server.h>

#include "twice.pb-c.h"

static void
twice_of(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    const Num *in = (const Num *)req;
    Num out = NUM__INIT;
    (void)arg;
    out.v = 2 * in->v;
    tether_call_reply(call, &out.base);
}

int
main(void)
{
    static const tether_method methods[] = {{"Of", twice_of, 0}};
    tether_server *srv = NULL;
    tether_client *cli = NULL;
    ProtobufCMessage *reply = NULL;
    char *err = NULL;
    char addr[128];
    Num req = NUM__INIT;
    int rc = 1;
    tether_err e;

    if (tether_server_create(NULL, &srv) != TETHER_OK ||
        tether_server_add_service(srv, &twice__descriptor, methods, 1, NULL) != TETHER_OK ||
        tether_server_listen(srv, "127.0.0.1:0") != TETHER_OK ||
        tether_server_get_address(srv, 0, addr, sizeof addr) != TETHER_OK ||
        tether_server_start(srv) != TETHER_OK) {
        fprintf(stderr, "server: %s\n", srv ? tether_server_get_errmsg(srv) : "create failed");
        goto done;
    }
    if ((e = tether_client_create(addr, NULL, &cli)) != TETHER_OK) {
        fprintf(stderr, "client %s: %s\n", addr, tether_strerror(e));
        goto done;
    }
    req.v = 21;
    e = tether_client_call(cli, "Twice.Of", &req.base, &num__descriptor, &reply, TETHER_CALL_TIMEOUT(5000), &err);
    if (e != TETHER_OK) {
        fprintf(stderr, "call: %s %s\n", tether_strerror(e), err ? err : "");
        goto done;
    }
    printf("Twice.Of(%lld) = %lld\n", (long long)req.v, (long long)((Num *)reply)->v);
    rc = 0;
done:
    tether_msg_free(reply);
    tether_free(err);
    tether_client_destroy(cli);
    if (srv) {
        tether_server_shutdown(srv);
        tether_server_wait(srv);
        tether_server_destroy(srv);
    }
    return rc;
}
