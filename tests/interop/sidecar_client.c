/*
 * sidecar-client - a C tether client that finds a service by name in a
 * registry and calls its first instance with the gob codec: a Go net/rpc
 * server registered by `tether register` (tests/integration/test_sidecar.sh).
 *
 *   sidecar-client REGISTRY_URL SERVICE A B
 *
 * Prints Calculator.Add(A, B) and exits 0; exits 1 with a message if the
 * service is not listed or the call fails.  (Clients by service name speak
 * native only, so the instance is looked up here and called by address.)
 */
#include <stdio.h>
#include <stdlib.h>

#include <tether/client.h>
#include <tether/registry.h>

#include "calculator.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"

int
main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: sidecar-client REGISTRY_URL SERVICE A B\n");
        return 2;
    }
    tether_registry *reg = NULL;
    tether_instance_list *l = NULL;
    tether_err rc = tether_registry_open(argv[1], &reg);
    if (rc == TETHER_OK) {
        rc = tether_registry_list(reg, argv[2], &l);
    }
    if (rc != TETHER_OK) {
        fprintf(stderr, "sidecar-client: registry: %s\n", tether_strerror(rc));
        tether_registry_close(reg);
        return 1;
    }
    if (l->count == 0) {
        fprintf(stderr, "sidecar-client: no instance of %s\n", argv[2]);
        tether_instance_list_free(l);
        tether_registry_close(reg);
        return 1;
    }
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.codec = TETHER_CODEC_GOB;
    tether_client *c = NULL;
    rc = tether_client_create(l->items[0].address, &cfg, &c);
    tether_instance_list_free(l);
    tether_registry_close(reg);
    if (rc != TETHER_OK) {
        fprintf(stderr, "sidecar-client: connect: %s\n", tether_strerror(rc));
        return 1;
    }
    Args args = ARGS__INIT;
    args.a = strtoll(argv[3], NULL, 10);
    args.b = strtoll(argv[4], NULL, 10);
    ProtobufCMessage *reply = NULL;
    char *text = NULL;
    rc = tether_client_call(c, "Calculator.Add", &args.base,
                            &google__protobuf__int64_value__descriptor, &reply,
                            TETHER_CALL_TIMEOUT(10000), &text);
    tether_client_destroy(c);
    if (rc != TETHER_OK) {
        fprintf(stderr, "sidecar-client: Calculator.Add: %s%s%s\n", tether_strerror(rc),
                text != NULL ? ": " : "", text != NULL ? text : "");
        tether_free(text);
        return 1;
    }
    printf("%lld\n", (long long)((Google__Protobuf__Int64Value *)reply)->value);
    tether_msg_free(reply);
    return 0;
}
