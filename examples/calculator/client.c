/*
 * calculator-client - call the calculator, as the Go client does.
 *
 *   calculator-client --addr ADDR add|sub|mul|div A B
 *
 * Prints the result and exits 0, or prints the server's error to stderr
 * and exits 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tether/client.h>

#include "calculator.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"

static void
usage(void)
{
    fprintf(stderr, "usage: calculator-client --addr ADDR add|sub|mul|div A B\n");
    exit(2);
}

static int
parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0) {
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

int
main(int argc, char **argv)
{
    const char *addr = "127.0.0.1:8080";
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--addr") == 0 && i + 1 < argc) {
            addr = argv[++i];
        } else {
            usage();
        }
    }
    if (argc - i != 3) {
        usage();
    }
    const char *op = argv[i];
    const char *method;
    if (strcmp(op, "add") == 0) {
        method = "Calculator.Add";
    } else if (strcmp(op, "sub") == 0) {
        method = "Calculator.Sub";
    } else if (strcmp(op, "mul") == 0) {
        method = "Calculator.Mul";
    } else if (strcmp(op, "div") == 0) {
        method = "Calculator.Div";
    } else {
        usage();
        return 2;
    }
    Args args = ARGS__INIT;
    if (parse_i64(argv[i + 1], &args.a) != 0 || parse_i64(argv[i + 2], &args.b) != 0) {
        fprintf(stderr, "calculator-client: A and B must be integers\n");
        return 2;
    }
    tether_client *c;
    tether_err rc = tether_client_create(addr, NULL, &c);
    if (rc != TETHER_OK) {
        fprintf(stderr, "calculator-client: cannot connect to %s: %s\n", addr,
                tether_strerror(rc));
        return 1;
    }
    ProtobufCMessage *reply = NULL;
    char *errtext = NULL;
    rc = tether_client_call(c, method, &args.base, &google__protobuf__int64_value__descriptor,
                            &reply, 5000, &errtext);
    if (rc != TETHER_OK) {
        fprintf(stderr, "calculator-client: %s: %s\n", method,
                errtext != NULL ? errtext : tether_strerror(rc));
        tether_free(errtext);
        tether_client_destroy(c);
        return 1;
    }
    printf("%lld\n", (long long)((Google__Protobuf__Int64Value *)reply)->value);
    tether_msg_free(reply);
    tether_client_destroy(c);
    return 0;
}
