/*
 * calculator-server - the Go net/rpc calculator, served by tether.
 *
 *   calculator-server [--listen ADDR] [--registry URL] [--name NAME]
 *                     [--advertise HOST:PORT] [--threads N] [--delay-ms MS]
 *                     [--drain-ms MS] [--stall-ms MS] [--metrics HOST:PORT]
 *                     [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]
 *                      [--allow-plaintext]]
 *                     [--auth-token-file FILE] [--allow-subject SUBJECT]...
 *
 * Serves Calculator.Add/Sub/Mul/Div on ADDR (default 127.0.0.1:8080; port
 * 0 picks a free one) and prints "listening on ADDR" once ready.  With
 * --registry (e.g. "local:") it registers as NAME (default "calculator")
 * while it serves.  --delay-ms makes every call take that long (on the
 * worker pool), to watch a graceful stop wait for calls in flight.  SIGINT
 * or SIGTERM stops it gracefully; a second signal stops it at once.
 * --metrics serves Prometheus metrics at http://HOST:PORT/metrics and a
 * status page at / (port 0 picks a free one; it prints "metrics on ADDR").
 * --stall-ms sets the serving watchdog (default 2000, 0: off).
 * --tls-cert/--tls-key serve TLS (plaintext is refused unless
 * --allow-plaintext); --tls-client-ca requires client certificates signed
 * by that CA (mTLS).  --auth-token-file (one bearer token a line) and
 * --allow-subject (a client certificate subject, "CN=a,O=b") make every
 * call need one of them; others are answered "permission denied".
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tether/metrics.h>
#include <tether/server.h>

#include "calculator.pb-c.h"
#include "calculator_service.h"

static long delay_ms;

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static const tether_method calculator_methods[] = {
    {"Add", calculator_add, 0},
    {"Sub", calculator_sub, 0},
    {"Mul", calculator_mul, 0},
    {"Div", calculator_div, 0},
};

/* The same operation after a pause, on the worker pool (--delay-ms). */
static void
do_slow(tether_call *call, const ProtobufCMessage *req, void *arg)
{
    (void)arg;
    sleep_ms(delay_ms);
    const char *m = strchr(tether_call_get_method(call), '.') + 1;
    for (size_t k = 0; k < 4; k++) {
        if (strcmp(calculator_methods[k].name, m) == 0) {
            calculator_methods[k].fn(call, req, NULL);
            return;
        }
    }
    tether_call_fail(call, "no such method");
}

static tether_server *the_server;

static void
usage(void)
{
    fprintf(stderr,
            "usage: calculator-server [--listen ADDR] [--registry URL] [--name NAME]\n"
            "                         [--advertise HOST:PORT] [--threads N]\n"
            "                         [--delay-ms MS] [--drain-ms MS] [--stall-ms MS]\n"
            "                         [--metrics HOST:PORT]\n"
            "                         [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]\n"
            "                          [--allow-plaintext]]\n"
            "                         [--auth-token-file FILE] [--allow-subject SUBJECT]...\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:8080";
    const char *registry_url = NULL;
    const char *name = "calculator";
    const char *advertise = NULL;
    const char *token_file = NULL;
    const char *subjects[16];
    size_t nsubjects = 0;
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--registry") == 0 && i + 1 < argc) {
            registry_url = argv[++i];
        } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else if (strcmp(argv[i], "--advertise") == 0 && i + 1 < argc) {
            advertise = argv[++i];
        } else if (strcmp(argv[i], "--delay-ms") == 0 && i + 1 < argc) {
            delay_ms = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--drain-ms") == 0 && i + 1 < argc) {
            cfg.drain_timeout_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--metrics") == 0 && i + 1 < argc) {
            cfg.metrics_addr = argv[++i];
        } else if (strcmp(argv[i], "--stall-ms") == 0 && i + 1 < argc) {
            cfg.stall_ms = (uint32_t)strtoul(argv[++i], NULL, 10); /* 0: no watchdog */
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
        } else if (strcmp(argv[i], "--auth-token-file") == 0 && i + 1 < argc) {
            token_file = argv[++i];
        } else if (strcmp(argv[i], "--allow-subject") == 0 && i + 1 < argc && nsubjects < 16) {
            subjects[nsubjects++] = argv[++i];
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
    tether_method slow[4];
    for (size_t k = 0; k < 4; k++) {
        slow[k].name = calculator_methods[k].name;
        slow[k].fn = do_slow;
        slow[k].flags = TETHER_METHOD_BLOCKING;
    }
    /* Tokens: read from a file (never the command line), one a line. */
    char tokbuf[8192];
    const char *tokens[64];
    size_t ntokens = 0;
    if (token_file != NULL) {
        FILE *f = fopen(token_file, "r");
        size_t n = f != NULL ? fread(tokbuf, 1, sizeof tokbuf - 1, f) : 0;
        if (f == NULL) {
            fprintf(stderr, "calculator-server: cannot read %s\n", token_file);
            return 1;
        }
        fclose(f);
        tokbuf[n] = '\0';
        for (char *t = tokbuf; *t != '\0' && ntokens < 64;) {
            char *end = t + strcspn(t, "\r\n");
            char next = *end;
            *end = '\0';
            if (end > t) {
                tokens[ntokens++] = t;
            }
            t = next != '\0' ? end + 1 : end;
        }
    }
    if (ntokens > 0 || nsubjects > 0) {
        tether_auth_config ac = {
            .tokens = tokens, .ntokens = ntokens, .subjects = subjects, .nsubjects = nsubjects};
        rc = tether_server_add_auth(the_server, &ac);
        if (rc != TETHER_OK) {
            fprintf(stderr, "calculator-server: auth: %s\n", tether_strerror(rc));
            return 1;
        }
    }
    rc = tether_server_add_service(the_server, &calculator__descriptor,
                                   delay_ms > 0 ? slow : calculator_methods, 4, NULL);
    if (rc == TETHER_OK) {
        rc = tether_server_listen(the_server, listen);
    }
    if (rc != TETHER_OK) {
        fprintf(stderr, "calculator-server: %s (%s)\n", tether_server_get_errmsg(the_server),
                tether_strerror(rc));
        tether_server_destroy(the_server);
        return 1;
    }
    tether_registry *reg = NULL;
    if (registry_url != NULL) {
        rc = tether_registry_open(registry_url, &reg);
        if (rc == TETHER_OK) {
            tether_instance tmpl = {.service = name, .address = advertise, .weight = 1};
            rc = tether_server_set_registry(the_server, reg, &tmpl);
        }
        if (rc != TETHER_OK) {
            /* The reason was logged just above; the URL shows no password. */
            char shown[512];
            tether_registry_url_redact(registry_url, shown, sizeof shown);
            fprintf(stderr, "calculator-server: registry %s: %s\n", shown, tether_strerror(rc));
            tether_server_destroy(the_server);
            tether_registry_close(reg);
            return 1;
        }
    }
    /* A SIGTERM in the moment between "listening" and tether_server_run()
     * would kill the process with the default action; blocked here, it
     * waits for the run helper, which unblocks it.  (The library's own
     * threads never take signals.) */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    rc = tether_server_start(the_server);
    if (rc != TETHER_OK) {
        fprintf(stderr, "calculator-server: %s\n", tether_server_get_errmsg(the_server));
        tether_server_destroy(the_server);
        tether_registry_close(reg);
        return 1;
    }
    char addr[128];
    tether_server_get_address(the_server, 0, addr, sizeof addr);
    printf("listening on %s\n", addr);
    if (tether_server_metrics_address(the_server, addr, sizeof addr) == TETHER_OK) {
        printf("metrics on %s\n", addr);
    }
    fflush(stdout);
    /* Blocks; SIGINT/SIGTERM stop gracefully, a second one at once. */
    tether_server_run(the_server);
    tether_server_destroy(the_server);
    tether_registry_close(reg);
    return 0;
}
