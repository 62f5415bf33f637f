/*
 * calculator-server - the Go net/rpc calculator, served by tether.
 *
 *   calculator-server [--listen ADDR] [--threads N]
 *
 * Serves Calculator.Add/Sub/Mul/Div on ADDR (default 127.0.0.1:8080; port
 * 0 picks a free one) and prints "listening on ADDR" once ready.  SIGINT or
 * SIGTERM stops it gracefully; a second signal stops it at once.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tether/server.h>

#include "calculator.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"

static void
reply_int(tether_call *call, int64_t v)
{
    Google__Protobuf__Int64Value out = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    out.value = v;
    tether_call_reply(call, &out.base);
}

static void
do_add(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    const Args *a = (const Args *)req;
    (void)arg;
    reply_int(call, (int64_t)((uint64_t)a->a + (uint64_t)a->b));
}

static void
do_sub(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    const Args *a = (const Args *)req;
    (void)arg;
    reply_int(call, (int64_t)((uint64_t)a->a - (uint64_t)a->b));
}

static void
do_mul(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    const Args *a = (const Args *)req;
    (void)arg;
    reply_int(call, (int64_t)((uint64_t)a->a * (uint64_t)a->b));
}

static void
do_div(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    const Args *a = (const Args *)req;
    (void)arg;
    if (a->b == 0) {
        tether_call_fail(call, "divide by zero"); /* Go's errors.New("divide by zero") */
        return;
    }
    if (a->a == INT64_MIN && a->b == -1) {
        tether_call_fail(call, "integer overflow");
        return;
    }
    reply_int(call, a->a / a->b);
}

static const tether_method calculator_methods[] = {
    {"Add", do_add, 0},
    {"Sub", do_sub, 0},
    {"Mul", do_mul, 0},
    {"Div", do_div, 0},
};

static tether_server *the_server;

static void
on_signal(int sig)
{
    (void)sig;
    tether_server_shutdown(the_server); /* async-signal-safe */
}

static void
usage(void)
{
    fprintf(stderr, "usage: calculator-server [--listen ADDR] [--threads N]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:8080";
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            cfg.io_threads = (int)strtol(argv[++i], NULL, 10);
        } else {
            usage();
        }
    }
    tether_log_set_handler(tether_log_stderr, TETHER_LOG_WARN, NULL);
    tether_err rc = tether_server_create(&cfg, &the_server);
    if (rc != TETHER_OK) {
        fprintf(stderr, "calculator-server: %s\n", tether_strerror(rc));
        return 1;
    }
    rc = tether_server_add_service(the_server, &calculator__descriptor, calculator_methods,
                                   sizeof calculator_methods / sizeof calculator_methods[0], NULL);
    if (rc == TETHER_OK) {
        rc = tether_server_listen(the_server, listen);
    }
    if (rc != TETHER_OK) {
        fprintf(stderr, "calculator-server: %s (%s)\n", tether_server_errmsg(the_server),
                tether_strerror(rc));
        tether_server_destroy(the_server);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = tether_server_start(the_server);
    if (rc != TETHER_OK) {
        fprintf(stderr, "calculator-server: %s\n", tether_strerror(rc));
        tether_server_destroy(the_server);
        return 1;
    }
    char addr[128];
    tether_server_address(the_server, 0, addr, sizeof addr);
    printf("listening on %s\n", addr);
    fflush(stdout);
    tether_server_wait(the_server);
    tether_server_destroy(the_server);
    return 0;
}
