/*
 * cmd_health.c - `tether health`: ask servers how they are, like
 * grpc_health_probe.
 *
 *   tether health ADDR|SERVICE [--service NAME] [--codec native|gob|jsonrpc]
 *                 [--registry URL] [--timeout MS] [-v]
 *
 * ADDR (it has a ':') is asked directly; SERVICE is looked up in the
 * registry and every listed instance is asked.  --service NAME asks about
 * one RPC service ("Calculator"); without it, about the whole server.
 * Prints "ADDR STATUS" per server.  Exit status: 0 when every server
 * answered SERVING, 4 when one answered anything else (NOT_SERVING,
 * DRAINING, UNKNOWN), 1 when one did not answer (refused, timed out) or
 * SERVICE has no instance, 2 for bad usage (docs/health.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tether/client.h>
#include <tether/health.h>
#include <tether/registry.h>
#include <tether/tether.h>

#include "cli.h"

static int
usage(FILE *f)
{
    fprintf(f, "usage: tether health ADDR|SERVICE [--service NAME] [--codec native|gob|jsonrpc]\n"
               "                    [--registry URL] [--timeout MS] [-v]\n");
    return f == stdout ? 0 : 2;
}

/* Ask addr; print its line; the exit status it deserves. */
static int
check_one(const char *addr, const tether_client_config *cfg, const char *service,
          uint32_t timeout_ms)
{
    tether_client *c = NULL;
    tether_err rc = tether_client_create(addr, cfg, &c);
    tether_health_status st = TETHER_HEALTH_UNKNOWN;
    if (rc == TETHER_OK) {
        rc = tether_client_health_check(c, service, TETHER_CALL_TIMEOUT(timeout_ms), &st);
        tether_client_destroy(c);
    }
    cli_print_text(stdout, addr);
    if (rc != TETHER_OK) {
        printf(" no answer: %s\n", tether_strerror(rc));
        return 1;
    }
    printf(" %s\n", tether_health_status_name(st));
    return st == TETHER_HEALTH_SERVING ? 0 : 4;
}

int
tether_cmd_health(int argc, char **argv)
{
    const char *target = NULL, *reg = NULL, *service = "";
    const char *codec = "native";
    unsigned long timeout_ms = 2000;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "--codec") == 0 || strcmp(a, "--registry") == 0 || strcmp(a, "-r") == 0 ||
             strcmp(a, "--timeout") == 0 || strcmp(a, "--service") == 0) &&
            i + 1 >= argc) {
            fprintf(stderr, "tether health: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--codec") == 0) {
            codec = argv[++i];
        } else if (strcmp(a, "--registry") == 0 || strcmp(a, "-r") == 0) {
            reg = argv[++i];
        } else if (strncmp(a, "--registry=", 11) == 0) {
            reg = a + 11;
        } else if (strcmp(a, "--service") == 0) {
            service = argv[++i];
        } else if (strcmp(a, "--timeout") == 0) {
            char *end = NULL;
            timeout_ms = strtoul(argv[++i], &end, 10);
            if (*end != '\0' || timeout_ms == 0 || timeout_ms > 3600000) {
                fprintf(stderr, "tether health: --timeout takes 1..3600000 ms\n");
                return 2;
            }
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            return usage(stdout);
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "tether health: unknown option %s\n", a);
            return 2;
        } else if (target == NULL) {
            target = a;
        } else {
            fprintf(stderr, "tether health: unexpected argument %s\n", a);
            return 2;
        }
    }
    if (target == NULL) {
        return usage(stderr);
    }
    tether_log_set_handler(tether_log_stderr, verbose ? TETHER_LOG_DEBUG : TETHER_LOG_ERROR, NULL);
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    if (strcmp(codec, "native") == 0) {
        cfg.codec = TETHER_CODEC_NATIVE;
    } else if (strcmp(codec, "gob") == 0) {
        cfg.codec = TETHER_CODEC_GOB;
    } else if (strcmp(codec, "jsonrpc") == 0) {
        cfg.codec = TETHER_CODEC_JSONRPC;
    } else {
        fprintf(stderr, "tether health: unknown codec '%s' (native, gob or jsonrpc)\n", codec);
        return 2;
    }
    if (strchr(target, ':') != NULL) {
        return check_one(target, &cfg, service, (uint32_t)timeout_ms);
    }
    tether_registry *r = cli_open_registry("health", cli_registry_url(reg));
    if (r == NULL) {
        return 1;
    }
    tether_instance_list *list = NULL;
    tether_err rc = tether_registry_list(r, target, &list);
    tether_registry_close(r);
    if (rc != TETHER_OK) {
        fprintf(stderr, "tether health: cannot list %s: %s\n", target, tether_strerror(rc));
        return 1;
    }
    int worst = list->count == 0 ? 1 : 0;
    if (list->count == 0) {
        fprintf(stderr, "tether health: no instance of %s is listed\n", target);
    }
    for (size_t i = 0; i < list->count; i++) {
        int st = check_one(list->items[i].address, &cfg, service, (uint32_t)timeout_ms);
        /* Not answering is worse than answering "not serving". */
        worst = st == 1 || worst == 1 ? 1 : st > worst ? st : worst;
    }
    tether_instance_list_free(list);
    return worst;
}
