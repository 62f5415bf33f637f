/*
 * interop-server - the peer Go's clients call in the interop tests.
 *
 *   interop-server [--listen ADDR] [--max-frame BYTES]
 *
 * Serves Calculator.Add/Sub/Div inline and Calculator.Mul on the worker
 * pool (so its answers take the trip home from another thread), and
 * Codec.Echo (inline) / Codec.EchoPool (worker pool) for the rich message.
 * One listener: native, gob and jsonrpc clients alike.  Prints "listening
 * on ADDR" when ready; SIGINT/SIGTERM stop it.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tether/server.h>

#include "calculator.pb-c.h"
#include "calculator_service.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "interop.pb-c.h"

static void
do_echo(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    (void)arg;
    tether_call_reply(call, req);
}

static const tether_method calc_methods[] = {
    {"Add", calculator_add, 0},
    {"Sub", calculator_sub, 0},
    {"Mul", calculator_mul, TETHER_METHOD_BLOCKING},
    {"Div", calculator_div, 0},
};

static const tether_method codec_methods[] = {
    {"Echo", do_echo, 0},
    {"EchoPool", do_echo, TETHER_METHOD_BLOCKING},
};

int
main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:0";
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.io_threads = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--max-frame") == 0 && i + 1 < argc) {
            cfg.max_frame_size = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            cfg.io_threads = (int)strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) {
            cfg.tls.cert_file = argv[++i];
        } else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) {
            cfg.tls.key_file = argv[++i];
        } else if (strcmp(argv[i], "--tls-client-ca") == 0 && i + 1 < argc) {
            cfg.tls.ca_file = argv[++i];
            cfg.tls.require_client_cert = 1;
        } else if (strcmp(argv[i], "--allow-plaintext") == 0) {
            cfg.tls.allow_plaintext = 1;
        } else {
            fprintf(stderr, "usage: interop-server [--listen ADDR] [--max-frame BYTES]\n"
                            "                      [--tls-cert F --tls-key F [--tls-client-ca F]]\n"
                            "                      [--allow-plaintext]\n");
            return 2;
        }
    }
    tether_log_set_handler(tether_log_stderr, TETHER_LOG_WARN, NULL);
    tether_server *srv;
    tether_err rc = tether_server_create(&cfg, &srv);
    if (rc == TETHER_OK) {
        rc = tether_server_add_service(srv, &calculator__descriptor, calc_methods, 4, NULL);
    }
    if (rc == TETHER_OK) {
        rc = tether_server_add_service(srv, &interop__codec__descriptor, codec_methods, 2, NULL);
    }
    if (rc == TETHER_OK) {
        rc = tether_server_listen(srv, listen);
    }
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    if (rc == TETHER_OK) {
        rc = tether_server_start(srv);
    }
    if (rc != TETHER_OK) {
        fprintf(stderr, "interop-server: %s (%s)\n", tether_server_get_errmsg(srv),
                tether_strerror(rc));
        return 1;
    }
    char addr[128];
    tether_server_get_address(srv, 0, addr, sizeof addr);
    printf("listening on %s\n", addr);
    fflush(stdout);
    tether_server_run(srv);
    tether_server_destroy(srv);
    return 0;
}
