/*
 * cmd_list.c - `tether list SERVICE [--registry URL]`: one line per live
 * instance, "ADDRESS STATE weight=N [key=value ...] [pid=N]", sorted by
 * address.  Exit 0 (also for no instances), 1 on errors, 2 on usage.
 */
#include <stdio.h>

#include <tether/registry.h>
#include <tether/tether.h>

#include "cli.h"
#include "report.h"

int
tether_cmd_list(int argc, char **argv)
{
    const char *service;
    const char *url;
    int rc = cli_parse_service_args(argc, argv, &service, &url);
    if (rc != 0) {
        return rc == 3 ? 0 : rc;
    }
    tether_registry *reg = cli_open_registry(argv[0], url);
    if (reg == NULL) {
        return 1;
    }
    tether_instance_list *l = NULL;
    cli_reason_begin();
    tether_err err = tether_registry_list(reg, service, &l);
    if (err != TETHER_OK) {
        cli_fail("list", err, "cannot list '%s' in %s", service, tether_registry_get_location(reg));
        tether_registry_close(reg);
        return 1;
    }
    cli_reason_end();
    for (size_t i = 0; i < l->count; i++) {
        cli_print_instance(stdout, &l->items[i]);
        fputc('\n', stdout);
    }
    tether_instance_list_free(l);
    tether_registry_close(reg);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "tether list: cannot write the output\n");
        return 1;
    }
    return 0;
}
