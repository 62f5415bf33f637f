/*
 * cli.h - the subcommands of the `tether` command-line tool.
 *
 * Each subcommand is `int tether_cmd_<name>(int argc, char **argv)` with
 * argv[0] the subcommand's name; it returns the process exit status (0 ok,
 * 1 error, 2 usage).  main.c dispatches through a table; to add a command,
 * write cmd_<name>.c here (tools/CMakeLists.txt builds every .c in this
 * folder) and add one row to the table in main.c.
 *
 * `call` lives in cmd_call.c, which may not be present in every tree: its
 * declaration is weak, so the tool builds without it and says so.
 */
#ifndef TETHER_TOOL_CLI_H
#define TETHER_TOOL_CLI_H

#include <stdio.h>

int tether_cmd_list(int argc, char **argv);
int tether_cmd_watch(int argc, char **argv);
int tether_cmd_register(int argc, char **argv); /* cmd_register.c, the sidecar */
int tether_cmd_health(int argc, char **argv);
int tether_cmd_call(int argc, char **argv) __attribute__((weak));
int tether_cmd_describe(int argc, char **argv);
int tether_cmd_bench(int argc, char **argv);

/*
 * cli_registry_url - the registry URL for a command: the --registry value
 * if given, else $TETHER_REGISTRY, else "local:".
 */
const char *cli_registry_url(const char *flag_value);

/*
 * cli_parse_service_args - parse "SERVICE [--registry URL]" (also
 * "--registry=URL", "-r URL" and "-v" for verbose library logs) for
 * list/watch, and set up library logging.  Returns 0 and fills *service,
 * *url; 3 after printing help to stdout; 2 after printing usage to stderr.
 */
int cli_parse_service_args(int argc, char **argv, const char **service, const char **url);

/*
 * cli_open_registry - tether_registry_open(url), or NULL after telling
 * stderr why ("tether CMD: cannot open registry ...").
 */
struct tether_registry;
struct tether_registry *cli_open_registry(const char *cmd, const char *url);

/* cli_print_text - s with its control characters (escape sequences, bells,
 * line breaks) written as \xNN: text from a peer never drives the
 * terminal. */
void cli_print_text(FILE *f, const char *s);

/* cli_print_instance - "ADDRESS STATE weight=N [k=v ...] [pid=N]" without
 * a newline. */
struct tether_instance;
void cli_print_instance(FILE *f, const struct tether_instance *inst);

#endif
