/*
 * main.c - the `tether` command-line tool: dispatch to subcommands, and
 * the helpers they share.  Uses the public API only.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tether/registry.h>
#include <tether/tether.h>

#include "cli.h"
#include "report.h"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *usage;
};

/* One row per subcommand.  `call` is listed always; it is dispatched only
 * when cmd_call.c is built in (its symbol is weak, see cli.h). */
static const struct command commands[] = {
    {"list", tether_cmd_list, "list SERVICE [--registry URL]   print live instances"},
    {"watch", tether_cmd_watch, "watch SERVICE [--registry URL]  print changes as they happen"},
    {"call", NULL, "call ...                        call a method (see tether call --help)"},
    {"describe", tether_cmd_describe, "describe ADDR|SERVICE [Service] print methods and types"},
    {"bench", tether_cmd_bench, "bench ...                       measure a method (see --help)"},
    {"register", tether_cmd_register,
     "register ... -- CMD [ARGS]      run CMD, registered while healthy"},
    {"health", tether_cmd_health, "health ADDR|SERVICE [--service N] ask _tether.Health.Check"},
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: tether COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        fprintf(f, "  %s\n", commands[i].usage);
    }
    fprintf(f, "\nRegistry URL: --registry URL, else $TETHER_REGISTRY, else \"local:\".\n"
               "  local:            this host ($XDG_RUNTIME_DIR/tether or /tmp/tether-UID)\n"
               "  local:/some/dir   this host, another directory\n"
               "  static:h:p,h:p    a fixed address list\n"
               "  etcd://h:p[,h:p][/prefix][?ttl=S&user=U&password=P&tls=1&cacert=F]\n"
               "                    etcd v3 (see docs/etcd.md)\n");
}

const char *
cli_registry_url(const char *flag_value)
{
    if (flag_value != NULL && flag_value[0] != '\0') {
        return flag_value;
    }
    const char *env = getenv("TETHER_REGISTRY");
    if (env != NULL && env[0] != '\0') {
        return env;
    }
    return "local:";
}

int
cli_parse_service_args(int argc, char **argv, const char **service, const char **url)
{
    const char *flag = NULL;
    int verbose = 0;
    *service = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--registry") == 0 || strcmp(a, "-r") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "tether %s: %s needs a URL\n", argv[0], a);
                return 2;
            }
            flag = argv[++i];
        } else if (strncmp(a, "--registry=", 11) == 0) {
            flag = a + 11;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fprintf(stdout, "usage: tether %s SERVICE [--registry URL] [-v]\n", argv[0]);
            return 3;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "tether %s: unknown option %s\n", argv[0], a);
            return 2;
        } else if (*service == NULL) {
            *service = a;
        } else {
            fprintf(stderr, "tether %s: unexpected argument %s\n", argv[0], a);
            return 2;
        }
    }
    if (*service == NULL) {
        fprintf(stderr, "usage: tether %s SERVICE [--registry URL] [-v]\n", argv[0]);
        return 2;
    }
    *url = cli_registry_url(flag);
    /* Library detail (which directory, which file was skipped) goes to
     * stderr, so that an error message says more than its code. */
    cli_log_init(verbose);
    return 0;
}

tether_registry *
cli_open_registry(const char *cmd, const char *url)
{
    tether_registry *reg = NULL;
    cli_reason_begin(); /* the error message carries the reason the library logs */
    tether_err err = tether_registry_open(url, &reg);
    if (err != TETHER_OK) {
        char shown[512];
        tether_registry_url_redact(url, shown, sizeof shown);
        cli_fail(cmd, err, "cannot open registry '%s'", shown);
        return NULL;
    }
    cli_reason_end();
    return reg;
}

/* Print s as is when it is plain, else double-quoted with escapes, so a
 * line always splits back into its fields at blanks. */
static void
print_token(FILE *f, const char *s)
{
    bool plain = s[0] != '\0';
    for (const char *p = s; *p != '\0' && plain; p++) {
        unsigned char c = (unsigned char)*p;
        plain = c > ' ' && c != 0x7f && c != '"' && c != '\\' && c != '=';
    }
    if (plain) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const char *p = s; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c < ' ' || c == 0x7f) {
            fprintf(f, "\\x%02x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

void
cli_print_text(FILE *f, const char *s)
{
    for (const char *p = s; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < ' ' && c != '\t') || c == 0x7f) {
            fprintf(f, "\\x%02x", c);
        } else {
            fputc(c, f);
        }
    }
}

void
cli_print_instance(FILE *f, const struct tether_instance *inst)
{
    fprintf(f, "%s %s weight=%u", inst->address, tether_instance_state_name(inst->state),
            (unsigned)inst->weight);
    for (size_t i = 0; i < inst->meta_count; i++) {
        fputc(' ', f);
        print_token(f, inst->meta[i].key);
        fputc('=', f);
        print_token(f, inst->meta[i].value);
    }
    if (inst->pid > 0) {
        fprintf(f, " pid=%lld", (long long)inst->pid);
    }
}

int
main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("tether %s\n", TETHER_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const struct command *c = &commands[i];
        if (strcmp(argv[1], c->name) != 0) {
            continue;
        }
        int (*fn)(int, char **) = c->fn;
        if (fn == NULL && strcmp(c->name, "call") == 0 && tether_cmd_call != NULL) {
            fn = tether_cmd_call;
        }
        if (fn == NULL) {
            fprintf(stderr, "tether: '%s' is not built into this tether\n", c->name);
            return 1;
        }
        return fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "tether: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
