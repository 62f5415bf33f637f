/*
 * cmd_describe.c - `tether describe`: what a server serves.
 *
 *   tether describe ADDR|SERVICE [Service|Service.Method]
 *                   [--codec native|gob|jsonrpc] [--registry URL] [--timeout MS] [-v]
 *
 * Lists the server's services with their methods, then the request and
 * reply message types those methods use, in .proto syntax (like grpcurl's
 * list and describe); with a Service only that one, with a
 * Service.Method only that method.  The target is an address or a
 * service name looked up in the registry, as for `tether call`.  It all
 * comes from the server's built-in _tether.Describe through
 * tether_client_describe(), which checks every answer before it gets
 * here; names are still printed through cli_print_text, as all remote text.
 */
#include <jansson.h>
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
    fprintf(f, "usage: tether describe ADDR|SERVICE [Service|Service.Method]\n"
               "                      [--codec native|gob|jsonrpc] [--registry URL] "
               "[--timeout MS] [-v]\n");
    return f == stdout ? 0 : 2;
}

static void
print_err(const char *what, tether_err rc, char *errtext)
{
    fprintf(stderr, "tether describe: ");
    if (what != NULL) {
        cli_print_text(stderr, what);
        fputs(": ", stderr);
    }
    if (errtext != NULL) {
        fprintf(stderr, "%s: ", tether_err_name(rc));
        cli_print_text(stderr, errtext); /* a remote text: no escapes reach the terminal */
    } else {
        fputs(tether_strerror(rc), stderr);
    }
    fputc('\n', stderr);
    tether_free(errtext);
}

/* Parse the library's JSON answer (already checked by it). */
static json_t *
load(char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    tether_free(text);
    return j;
}

static const char *
str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s != NULL ? s : "";
}

static void
print_method(const json_t *jm)
{
    fputs("  rpc ", stdout);
    cli_print_text(stdout, str(jm, "name"));
    if (json_is_true(json_object_get(jm, "raw"))) {
        fputs("(bytes) returns (bytes); // raw\n", stdout);
        return;
    }
    fputc('(', stdout);
    cli_print_text(stdout, str(jm, "input"));
    fputs(") returns (", stdout);
    cli_print_text(stdout, str(jm, "output"));
    fputs(");\n", stdout);
}

static void
print_type(const json_t *jt)
{
    fputs("message ", stdout);
    cli_print_text(stdout, str(jt, "name"));
    fputs(" {\n", stdout);
    size_t i;
    const json_t *jf;
    json_array_foreach(json_object_get(jt, "fields"), i, jf)
    {
        const char *label = str(jf, "label");
        const char *type = str(jf, "type");
        fputs("  ", stdout);
        if (strcmp(label, "none") != 0) {
            printf("%s ", label);
        }
        cli_print_text(stdout, strcmp(type, "message") == 0 ? str(jf, "ref") : type);
        fputc(' ', stdout);
        cli_print_text(stdout, str(jf, "name"));
        printf(" = %lld", (long long)json_integer_value(json_object_get(jf, "id")));
        if (json_is_true(json_object_get(jf, "packed"))) {
            fputs(" [packed = true]", stdout);
        }
        fputc(';', stdout);
        if (json_is_true(json_object_get(jf, "oneof"))) {
            fputs(" // oneof member", stdout);
        }
        fputc('\n', stdout);
    }
    fputs("}\n", stdout);
}

/* Add the types of one method's description to types (by name, once). */
static void
collect_types(json_t *types, const json_t *desc)
{
    size_t i;
    json_t *jt;
    json_array_foreach(json_object_get(desc, "types"), i, jt)
    {
        const char *name = str(jt, "name");
        if (json_object_get(types, name) == NULL) {
            json_object_set(types, name, jt);
        }
    }
}

/* The methods of the services asked for (or all), with their types. */
static int
describe_services(tether_client *c, const json_t *list, const char *only, uint32_t timeout_ms)
{
    const json_t *services = json_object_get(list, "services");
    size_t i;
    const json_t *js;
    int found = 0;
    json_array_foreach(services, i, js)
    {
        found |= only == NULL || strcmp(str(js, "name"), only) == 0;
    }
    if (!found) {
        fputs("tether describe: the server has no service ", stderr);
        cli_print_text(stderr, only);
        fputs("; it has:", stderr);
        json_array_foreach(services, i, js)
        {
            fputs(i > 0 ? ", " : " ", stderr);
            cli_print_text(stderr, str(js, "name"));
        }
        fputc('\n', stderr);
        return 1;
    }
    json_t *types = json_object(); /* insertion order is kept (jansson >= 2.8) */
    int rc = 0;
    json_array_foreach(services, i, js)
    {
        const char *sname = str(js, "name");
        if (only != NULL && strcmp(sname, only) != 0) {
            continue;
        }
        fputs("service ", stdout);
        cli_print_text(stdout, sname);
        fputs(" {\n", stdout);
        size_t k;
        const json_t *jm;
        json_array_foreach(json_object_get(js, "methods"), k, jm)
        {
            print_method(jm);
            if (json_is_true(json_object_get(jm, "raw"))) {
                continue;
            }
            char full[2048];
            snprintf(full, sizeof full, "%s.%s", sname, str(jm, "name"));
            char *text = NULL, *errtext = NULL;
            tether_err e =
                tether_client_describe(c, full, &text, TETHER_CALL_TIMEOUT(timeout_ms), &errtext);
            if (e != TETHER_OK) {
                print_err(full, e, errtext);
                rc = 1;
                continue;
            }
            json_t *desc = load(text);
            collect_types(types, desc);
            json_decref(desc);
        }
        fputs("}\n", stdout);
    }
    const char *key;
    json_t *jt;
    json_object_foreach(types, key, jt)
    {
        fputc('\n', stdout);
        print_type(jt);
    }
    json_decref(types);
    return rc;
}

/* One method: its rpc line and its types. */
static int
describe_one(tether_client *c, const char *method, uint32_t timeout_ms)
{
    char *text = NULL, *errtext = NULL;
    tether_err e =
        tether_client_describe(c, method, &text, TETHER_CALL_TIMEOUT(timeout_ms), &errtext);
    if (e != TETHER_OK) {
        print_err(method, e, errtext);
        return 1;
    }
    json_t *desc = load(text);
    const char *dot = strrchr(method, '.');
    json_t *jm = json_pack("{s:s%, s:s, s:s, s:O?}", "name", dot + 1, strlen(dot + 1), "input",
                           str(desc, "input"), "output", str(desc, "output"), "raw",
                           json_object_get(desc, "raw"));
    printf("service %.*s {\n", (int)(dot - method), method);
    print_method(jm);
    fputs("}\n", stdout);
    size_t i;
    const json_t *jt;
    json_array_foreach(json_object_get(desc, "types"), i, jt)
    {
        fputc('\n', stdout);
        print_type(jt);
    }
    json_decref(jm);
    json_decref(desc);
    return 0;
}

int
tether_cmd_describe(int argc, char **argv)
{
    const char *target = NULL, *what = NULL, *reg = NULL;
    const char *codec = "native";
    unsigned long timeout_ms = 10000;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "--codec") == 0 || strcmp(a, "--registry") == 0 || strcmp(a, "-r") == 0 ||
             strcmp(a, "--timeout") == 0) &&
            i + 1 >= argc) {
            fprintf(stderr, "tether describe: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--codec") == 0) {
            codec = argv[++i];
        } else if (strncmp(a, "--codec=", 8) == 0) {
            codec = a + 8;
        } else if (strcmp(a, "--registry") == 0 || strcmp(a, "-r") == 0) {
            reg = argv[++i];
        } else if (strncmp(a, "--registry=", 11) == 0) {
            reg = a + 11;
        } else if (strcmp(a, "--timeout") == 0) {
            timeout_ms = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            return usage(stdout);
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "tether describe: unknown option %s\n", a);
            return 2;
        } else if (target == NULL) {
            target = a;
        } else if (what == NULL) {
            what = a;
        } else {
            fprintf(stderr, "tether describe: unexpected argument %s\n", a);
            return 2;
        }
    }
    if (target == NULL) {
        return usage(stderr);
    }
    if (what != NULL) {
        const char *dot = strrchr(what, '.');
        if (what[0] == '\0' || what[0] == '.' || (dot != NULL && dot[1] == '\0')) {
            fprintf(stderr, "tether describe: '%s' is neither Service nor Service.Method\n", what);
            return 2;
        }
    }
    cli_log_init(verbose);
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    int st = cli_parse_codec("describe", codec, &cfg);
    tether_client *c = NULL;
    if (st == 0) {
        st = cli_open_client("describe", target, reg, &cfg, 0, &c);
    }
    if (st != 0) {
        return st;
    }
    tether_err rc;
    int status;
    if (what != NULL && strchr(what, '.') != NULL) {
        status = describe_one(c, what, (uint32_t)timeout_ms);
    } else {
        char *text = NULL, *errtext = NULL;
        rc = tether_client_describe(c, NULL, &text, TETHER_CALL_TIMEOUT((uint32_t)timeout_ms),
                                    &errtext);
        if (rc != TETHER_OK) {
            print_err(target, rc, errtext);
            status = 1;
        } else {
            json_t *list = load(text);
            status = list != NULL ? describe_services(c, list, what, (uint32_t)timeout_ms) : 1;
            json_decref(list);
        }
    }
    tether_client_destroy(c);
    return status;
}
