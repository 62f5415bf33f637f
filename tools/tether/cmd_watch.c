/*
 * cmd_watch.c - `tether watch SERVICE [--registry URL]`: print every
 * instance once as "added", then one line per change as it happens:
 *
 *   2026-11-27T15:04:05.123Z added 127.0.0.1:8080 serving weight=1 pid=42
 *
 * (UTC, millisecond resolution), flushing each line.  Runs until SIGINT or
 * SIGTERM (exit 0) or until stdout goes away (exit 1).
 *
 * Signals: SIGINT and SIGTERM are blocked before the watch starts and
 * taken with sigwait() by the main thread, so no handler runs at all; the
 * watch thread prints.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <tether/registry.h>
#include <tether/tether.h>

#include "cli.h"
#include "report.h"

/* Set by the watch callback when stdout fails. */
static atomic_int output_failed;

static void
on_change(tether_watch *watch, tether_watch_event ev, const tether_instance *inst, void *arg)
{
    (void)watch;
    (void)arg;
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    printf("%s.%03ldZ %s ", when, ts.tv_nsec / 1000000L, tether_watch_event_name(ev));
    cli_print_instance(stdout, inst);
    fputc('\n', stdout);
    if (fflush(stdout) != 0 && !atomic_exchange(&output_failed, 1)) {
        /* Nobody is reading any more: wake the main thread's sigwait(). */
        kill(getpid(), SIGTERM);
    }
}

int
tether_cmd_watch(int argc, char **argv)
{
    const char *service;
    const char *url;
    int rc = cli_parse_service_args(argc, argv, &service, &url);
    if (rc != 0) {
        return rc == 3 ? 0 : rc;
    }
    /* A closed pipe shows up as a write error instead of killing us. */
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, NULL);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    tether_registry *reg = cli_open_registry(argv[0], url);
    if (reg == NULL) {
        return 1;
    }
    tether_watch *w = NULL;
    cli_reason_begin();
    tether_err err = tether_registry_watch(reg, service, on_change, NULL, &w);
    if (err != TETHER_OK) {
        cli_fail("watch", err, "cannot watch '%s' in %s", service, tether_registry_get_location(reg));
        tether_registry_close(reg);
        return 1;
    }
    cli_reason_end();
    int sig = 0;
    while (sigwait(&stop, &sig) != 0) {
    }
    tether_watch_stop(w);
    tether_registry_close(reg);
    return atomic_load(&output_failed) ? 1 : 0;
}
