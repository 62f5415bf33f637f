/*
 * report.h - how the `tether` tool reports failures: library log lines
 * to stderr, the reason the library logged folded into the tool's own
 * error message, durations as people write them, and the "no instance"
 * check that calls by service name make before they start.
 */
#ifndef TETHER_TOOL_REPORT_H
#define TETHER_TOOL_REPORT_H

#include <stdint.h>

#include <tether/client.h>
#include <tether/registry.h>
#include <tether/tether.h>

/* cli_log_init - send library log lines to stderr ("tether: LEVEL: ..."),
 * from WARN up (DEBUG up when verbose). */
void cli_log_init(int verbose);

/* cli_reason_begin - from now on, warnings and errors the library logs on
 * this thread are kept, not printed: the next cli_fail() says them as its
 * reason, cli_reason_end() prints them as usual. */
void cli_reason_begin(void);

/* cli_reason_end - stop keeping log lines and print those kept. */
void cli_reason_end(void);

/* cli_fail - print "tether CMD: WHAT: <err's text>[: <reason kept>]" and
 * stop keeping log lines.  what is a printf format. */
void cli_fail(const char *cmd, tether_err err, const char *what, ...)
    __attribute__((format(printf, 3, 4)));

/* cli_parse_duration - "500ms", "10s", "1.5s", "2m" or a bare number of
 * seconds into *ms.  Returns 0, or -1 for anything else. */
int cli_parse_duration(const char *s, uint64_t *ms);

/*
 * cli_await_instance - 0 once reg lists a serving instance of service;
 * else, after waiting up to wait_ms (0: not at all), 1 after printing
 * "tether CMD: no instance of 'SERVICE' in LOCATION (...)".  A call by
 * name with no instance would wait for one until its deadline: this makes
 * the tool fail at once and say where it looked.  url is what the user
 * gave (the hint repeats it); NULL when it was the default.
 */
int cli_await_instance(const char *cmd, tether_registry *reg, const char *service, const char *url,
                       uint64_t wait_ms);

/* cli_parse_codec - "native", "gob" or "jsonrpc" into cfg->codec.  0, or 2
 * (a usage error) after saying so. */
int cli_parse_codec(const char *cmd, const char *name, tether_client_config *cfg);

/*
 * cli_open_client - the client a command calls TARGET with: by address
 * when it holds a ':', else by service name in the registry reg_flag
 * names (the default when NULL), which must list an instance within
 * wait_ms (cli_await_instance).  Calls by name speak native only.  0 with
 * *out set; 1 (failed) or 2 (usage) after saying why, with the reason the
 * library logged.
 */
int cli_open_client(const char *cmd, const char *target, const char *reg_flag,
                    const tether_client_config *cfg, uint64_t wait_ms, tether_client **out);

#endif
