/*
 * report.c - failure reports of the `tether` tool (see report.h).
 *
 * The library says what failed through its return code and why through
 * its log ("registry error" / "etcd at http://h:2379: cannot read
 * /services/x/: connection refused").  A tool message that only shows the
 * code leaves the user guessing, and two separate lines leave them
 * matching them up, so while the tool runs one library operation it keeps
 * the lines that operation logs on its thread and, if the operation
 * fails, ends its own message with them.
 */
#include "report.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* The lines kept on this thread while a cli_reason_begin() is open. */
static _Thread_local struct {
    int on;
    char text[1024];
    size_t len;
    tether_log_level level[8];
    size_t start[8];
    int n;
} kept;

static void
log_line(tether_log_level level, const char *msg, void *arg)
{
    if (!kept.on || level < TETHER_LOG_WARN || kept.n == 8) {
        tether_log_stderr(level, msg, arg);
        return;
    }
    /* Backends prefix their lines with "registry: "; the tool's message
     * already says which part failed. */
    if (strncmp(msg, "registry: ", 10) == 0) {
        msg += 10;
    }
    size_t room = sizeof kept.text - kept.len;
    if (room < 2) {
        return;
    }
    kept.level[kept.n] = level;
    kept.start[kept.n++] = kept.len;
    int w = snprintf(kept.text + kept.len, room, "%s", msg);
    kept.len += w < 0 ? 0 : (size_t)w < room ? (size_t)w + 1 : room;
}

void
cli_log_init(int verbose)
{
    tether_log_set_handler(log_line, verbose ? TETHER_LOG_DEBUG : TETHER_LOG_WARN, NULL);
}

void
cli_reason_begin(void)
{
    kept.on = 1;
    kept.len = 0;
    kept.n = 0;
}

void
cli_reason_end(void)
{
    kept.on = 0;
    for (int i = 0; i < kept.n; i++) {
        tether_log_stderr(kept.level[i], kept.text + kept.start[i], NULL);
    }
    kept.n = 0;
    kept.len = 0;
}

void
cli_fail(const char *cmd, tether_err err, const char *what, ...)
{
    kept.on = 0;
    fprintf(stderr, "tether %s: ", cmd);
    va_list ap;
    va_start(ap, what);
    vfprintf(stderr, what, ap);
    va_end(ap);
    fprintf(stderr, ": %s", tether_strerror(err));
    for (int i = 0; i < kept.n; i++) {
        fputs(": ", stderr);
        cli_print_text(stderr, kept.text + kept.start[i]);
    }
    fputc('\n', stderr);
    kept.n = 0;
    kept.len = 0;
}

int
cli_parse_duration(const char *s, uint64_t *ms)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || !(v >= 0) || v > 1e9) {
        return -1;
    }
    double mult;
    if (*end == '\0' || strcmp(end, "s") == 0) {
        mult = 1000;
    } else if (strcmp(end, "ms") == 0) {
        mult = 1;
    } else if (strcmp(end, "m") == 0) {
        mult = 60000;
    } else if (strcmp(end, "h") == 0) {
        mult = 3600000;
    } else {
        return -1;
    }
    *ms = (uint64_t)(v * mult + 0.5);
    return 0;
}

static uint64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int
cli_await_instance(const char *cmd, tether_registry *reg, const char *service, const char *url,
                   uint64_t wait_ms)
{
    uint64_t until = now_ms() + wait_ms;
    size_t draining = 0;
    for (;;) {
        tether_instance_list *l = NULL;
        cli_reason_begin();
        tether_err err = tether_registry_list(reg, service, &l);
        if (err != TETHER_OK) {
            cli_fail(cmd, err, "cannot list '%s' in %s", service, tether_registry_get_location(reg));
            return 1;
        }
        cli_reason_end();
        draining = 0;
        for (size_t i = 0; i < l->count; i++) {
            if (l->items[i].state == TETHER_INSTANCE_SERVING) {
                tether_instance_list_free(l);
                return 0;
            }
            draining++;
        }
        tether_instance_list_free(l);
        if (now_ms() >= until) {
            break;
        }
        /* Polling is enough here: this runs once, before any call. */
        struct timespec pause = {0, 50 * 1000000L};
        nanosleep(&pause, NULL);
    }
    char shown[512] = "";
    if (url != NULL) {
        char red[480];
        tether_registry_url_redact(url, red, sizeof red);
        snprintf(shown, sizeof shown, " --registry %s", red);
    }
    fprintf(stderr, "tether %s: no %sinstance of '%s' in %s", cmd, draining > 0 ? "serving " : "",
            service, tether_registry_get_location(reg));
    if (wait_ms > 0) {
        fprintf(stderr, " after waiting %.1f s", (double)wait_ms / 1000.0);
    }
    if (draining > 0) {
        fprintf(stderr, " (%zu draining; 'tether list %s%s' shows them)\n", draining, service,
                shown);
    } else {
        fprintf(stderr, " ('tether list %s%s' shows none; --wait DURATION waits for one)\n",
                service, shown);
    }
    return 1;
}

int
cli_parse_codec(const char *cmd, const char *name, tether_client_config *cfg)
{
    static const struct {
        const char *name;
        tether_codec codec;
    } codecs[] = {{"native", TETHER_CODEC_NATIVE},
                  {"gob", TETHER_CODEC_GOB},
                  {"jsonrpc", TETHER_CODEC_JSONRPC}};
    for (size_t i = 0; i < sizeof codecs / sizeof codecs[0]; i++) {
        if (strcmp(name, codecs[i].name) == 0) {
            cfg->codec = codecs[i].codec;
            return 0;
        }
    }
    fprintf(stderr, "tether %s: unknown codec '%s' (native, gob or jsonrpc)\n", cmd, name);
    return 2;
}

int
cli_open_client(const char *cmd, const char *target, const char *reg_flag,
                const tether_client_config *cfg, uint64_t wait_ms, tether_client **out)
{
    tether_err rc;
    if (strchr(target, ':') != NULL) {
        cli_reason_begin();
        rc = tether_client_create(target, cfg, out);
    } else if (cfg->codec != TETHER_CODEC_NATIVE) {
        fprintf(stderr,
                "tether %s: calls by service name speak native; give an address for "
                "another codec\n",
                cmd);
        return 2;
    } else {
        tether_registry *r = cli_open_registry(cmd, cli_registry_url(reg_flag));
        if (r == NULL) {
            return 1;
        }
        if (cli_await_instance(cmd, r, target, reg_flag, wait_ms) != 0) {
            tether_registry_close(r);
            return 1;
        }
        cli_reason_begin();
        rc = tether_client_create_service(r, target, cfg, out);
        tether_registry_close(r); /* the client keeps its own reference */
    }
    if (rc != TETHER_OK) {
        cli_fail(cmd, rc, "%s", target);
        return 1;
    }
    cli_reason_end();
    return 0;
}
