/*
 * mhd_dl.c - load libmicrohttpd on first use (see mhd_dl.h for why).
 */
#include "ops/mhd_dl.h"

#include <dlfcn.h>
#include <pthread.h>

#include "core/log.h"

struct tt_mhd_api tt_mhd;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static tether_err load_rc = TETHER_ENOTSUP;

/* Resolve one symbol into *slot; 0 if it is missing. */
static int
resolve(void *lib, const char *name, void *slot)
{
    void *sym = dlsym(lib, name);
    if (sym == NULL) {
        tt_log(TETHER_LOG_ERROR, "metrics: libmicrohttpd has no %s", name);
        return 0;
    }
    /* POSIX guarantees data and function pointers convert through void *. */
    *(void **)slot = sym;
    return 1;
}

static void
load(void)
{
    /* The versioned name is the runtime library's (Debian: libmicrohttpd12);
     * the unversioned one exists only with the -dev package. */
    void *lib = dlopen("libmicrohttpd.so.12", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        lib = dlopen("libmicrohttpd.so", RTLD_NOW | RTLD_LOCAL);
    }
    if (lib == NULL) {
        const char *why = dlerror();
        tt_log(TETHER_LOG_ERROR,
               "metrics: the listener needs libmicrohttpd, which cannot be loaded: %s",
               why != NULL ? why : "not found");
        return;
    }
    int ok = 1;
    ok &= resolve(lib, "MHD_start_daemon", &tt_mhd.start_daemon);
    ok &= resolve(lib, "MHD_stop_daemon", &tt_mhd.stop_daemon);
    ok &= resolve(lib, "MHD_create_response_from_buffer", &tt_mhd.create_response_from_buffer);
    ok &= resolve(lib, "MHD_add_response_header", &tt_mhd.add_response_header);
    ok &= resolve(lib, "MHD_queue_response", &tt_mhd.queue_response);
    ok &= resolve(lib, "MHD_destroy_response", &tt_mhd.destroy_response);
    if (!ok) {
        dlclose(lib);
        return;
    }
    /* Kept loaded for the life of the process (like libcurl): unloading
     * TLS libraries is fragile, and a later listener needs it again. */
    load_rc = TETHER_OK;
}

tether_err
tt_mhd_load(void)
{
    pthread_once(&load_once, load);
    return load_rc;
}
