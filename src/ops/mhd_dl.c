/*
 * mhd_dl.c - load libmicrohttpd on first use (see mhd_dl.h for why).
 */
#include "ops/mhd_dl.h"

#include <pthread.h>

#include "core/dl.h"

struct tt_mhd_api tt_mhd;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static tether_err load_rc = TETHER_ENOTSUP;

static void
load(void)
{
    static const char *const names[] = {"libmicrohttpd.so.12", "libmicrohttpd.so", NULL};
    const tt_dl_sym syms[] = {
        {"MHD_start_daemon", &tt_mhd.start_daemon},
        {"MHD_stop_daemon", &tt_mhd.stop_daemon},
        {"MHD_create_response_from_buffer", &tt_mhd.create_response_from_buffer},
        {"MHD_add_response_header", &tt_mhd.add_response_header},
        {"MHD_queue_response", &tt_mhd.queue_response},
        {"MHD_destroy_response", &tt_mhd.destroy_response},
    };
    load_rc = tt_dl_load("metrics: the listener needs libmicrohttpd", "libmicrohttpd", names, syms,
                         sizeof syms / sizeof syms[0]);
}

tether_err
tt_mhd_load(void)
{
    pthread_once(&load_once, load);
    return load_rc;
}
