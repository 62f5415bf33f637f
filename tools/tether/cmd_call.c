/*
 * cmd_call.c - `tether call`: call any method with JSON arguments.
 *
 *   tether call ADDR|SERVICE Service.Method ['{"A":1,"B":2}']
 *               [--codec native|gob|jsonrpc] [--registry URL] [--timeout MS]
 *               [--wait DURATION] [-v]
 *               [--tls [--cacert FILE] [--cert FILE --key FILE] [--server-name NAME]]
 *               [--token-file FILE]
 *
 * The target is an address ("host:port", "[v6]:port", "unix:/path") when
 * it has a ':' in it, else a service name looked up in the registry; a
 * service with no serving instance fails at once, unless --wait gives the
 * time to wait for one.  The
 * reply is printed as JSON on stdout (exit 0); an error goes to stderr
 * (exit 1).  tether_client_call_json() does the work: jsonrpc passes the
 * JSON through (any Go jsonrpc server), native and gob ask the tether
 * server's built-in _tether.Describe for the message types (docs/call.md).
 * --tls speaks TLS, verifying the server against --cacert (default: the
 * system's CAs) and --server-name (default: the address's host);
 * --cert/--key present a client certificate (mTLS).  A bearer token is
 * read from --token-file or $TETHER_TOKEN, never from the command line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tether/client.h>
#include <tether/tether.h>

#include "cli.h"
#include "report.h"

static int
usage(FILE *f)
{
    fprintf(f, "usage: tether call ADDR|SERVICE Service.Method ['{\"A\":1,\"B\":2}']\n"
               "                  [--codec native|gob|jsonrpc] [--registry URL] [--timeout MS] "
               "[--wait DURATION] [-v]\n"
               "                  [--tls [--cacert FILE] [--cert FILE --key FILE] "
               "[--server-name NAME]]\n"
               "                  [--token-file FILE]   (or $TETHER_TOKEN)\n");
    return f == stdout ? 0 : 2;
}

int
tether_cmd_call(int argc, char **argv)
{
    const char *target = NULL, *method = NULL, *json = NULL, *reg = NULL;
    const char *codec = "native";
    unsigned long timeout_ms = 10000;
    uint64_t wait_ms = 0;
    int verbose = 0;
    tether_tls_config tls = {0};
    const char *token_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "--codec") == 0 || strcmp(a, "--registry") == 0 || strcmp(a, "-r") == 0 ||
             strcmp(a, "--timeout") == 0 || strcmp(a, "--wait") == 0 || strcmp(a, "--cacert") == 0 ||
             strcmp(a, "--cert") == 0 || strcmp(a, "--key") == 0 ||
             strcmp(a, "--server-name") == 0 || strcmp(a, "--token-file") == 0) &&
            i + 1 >= argc) {
            fprintf(stderr, "tether call: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--tls") == 0) {
            tls.enable = 1;
        } else if (strcmp(a, "--cacert") == 0) {
            tls.ca_file = argv[++i];
        } else if (strcmp(a, "--cert") == 0) {
            tls.cert_file = argv[++i];
        } else if (strcmp(a, "--key") == 0) {
            tls.key_file = argv[++i];
        } else if (strcmp(a, "--server-name") == 0) {
            tls.server_name = argv[++i];
        } else if (strcmp(a, "--token-file") == 0) {
            token_file = argv[++i];
        } else if (strcmp(a, "--codec") == 0) {
            codec = argv[++i];
        } else if (strncmp(a, "--codec=", 8) == 0) {
            codec = a + 8;
        } else if (strcmp(a, "--registry") == 0 || strcmp(a, "-r") == 0) {
            reg = argv[++i];
        } else if (strncmp(a, "--registry=", 11) == 0) {
            reg = a + 11;
        } else if (strcmp(a, "--timeout") == 0) {
            timeout_ms = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(a, "--wait") == 0 || strncmp(a, "--wait=", 7) == 0) {
            const char *v = a[6] == '=' ? a + 7 : argv[++i];
            if (cli_parse_duration(v, &wait_ms) != 0) {
                fprintf(stderr, "tether call: --wait wants a duration such as 5s, not '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            return usage(stdout);
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "tether call: unknown option %s\n", a);
            return 2;
        } else if (target == NULL) {
            target = a;
        } else if (method == NULL) {
            method = a;
        } else if (json == NULL) {
            json = a;
        } else {
            fprintf(stderr, "tether call: unexpected argument %s\n", a);
            return 2;
        }
    }
    if (target == NULL || method == NULL) {
        return usage(stderr);
    }
    cli_log_init(verbose);
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    int st = cli_parse_codec("call", codec, &cfg);
    if (st != 0) {
        return st;
    }
    if ((tls.ca_file != NULL || tls.cert_file != NULL || tls.server_name != NULL) && !tls.enable) {
        fprintf(stderr, "tether call: --cacert, --cert, --key and --server-name need --tls\n");
        return 2;
    }
    cfg.tls = tls;
    char token[4096];
    const char *env_token = getenv("TETHER_TOKEN");
    if (token_file != NULL) {
        FILE *f = fopen(token_file, "r");
        size_t n = f != NULL ? fread(token, 1, sizeof token - 1, f) : 0;
        if (f == NULL || ferror(f)) {
            fprintf(stderr, "tether call: cannot read the token file %s\n", token_file);
            if (f != NULL) {
                fclose(f);
            }
            return 1;
        }
        fclose(f);
        while (n > 0 && (token[n - 1] == '\n' || token[n - 1] == '\r' || token[n - 1] == ' ')) {
            n--;
        }
        token[n] = '\0';
        cfg.auth_token = token;
    } else if (env_token != NULL && env_token[0] != '\0') {
        cfg.auth_token = env_token;
    }
    tether_client *c = NULL;
    st = cli_open_client("call", target, reg, &cfg, wait_ms, &c);
    if (st != 0) {
        return st;
    }
    tether_err rc;
    char *out = NULL, *errtext = NULL;
    rc = tether_client_call_json(c, method, json, &out, TETHER_CALL_TIMEOUT((uint32_t)timeout_ms),
                                 &errtext);
    tether_client_destroy(c);
    if (rc != TETHER_OK) {
        if (errtext != NULL) {
            fprintf(stderr, "tether call: %s: ", tether_err_name(rc));
            cli_print_text(stderr, errtext); /* a remote text: no escapes reach the terminal */
            fputc('\n', stderr);
        } else {
            fprintf(stderr, "tether call: %s\n", tether_strerror(rc));
        }
        tether_free(errtext);
        return 1;
    }
    cli_print_text(stdout, out);
    fputc('\n', stdout);
    tether_free(out);
    return 0;
}
