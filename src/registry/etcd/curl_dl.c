/*
 * curl_dl.c - load libcurl on first use (see curl_dl.h for why).
 */
#define TT_CURL_DL_IMPL 1
#include "registry/etcd/curl_dl.h"

#include <dlfcn.h>
#include <pthread.h>

#include "core/log.h"

struct tt_curl_api tt_curl;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static tether_err load_rc = TETHER_ENOTSUP;

/* Resolve one symbol into *slot; false if it is missing. */
static int
resolve(void *lib, const char *name, void *slot)
{
    void *sym = dlsym(lib, name);
    if (sym == NULL) {
        tt_log(TETHER_LOG_ERROR, "registry: libcurl has no %s", name);
        return 0;
    }
    /* POSIX guarantees data and function pointers convert through void *. */
    *(void **)slot = sym;
    return 1;
}

static void
load(void)
{
    /* The versioned name is the runtime library's (package libcurl4);
     * the unversioned one exists only with the -dev package. */
    void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        lib = dlopen("libcurl.so", RTLD_NOW | RTLD_LOCAL);
    }
    if (lib == NULL) {
        const char *why = dlerror();
        tt_log(TETHER_LOG_ERROR, "registry: etcd needs libcurl, which cannot be loaded: %s",
               why != NULL ? why : "not found");
        return;
    }
    int ok = 1;
    ok &= resolve(lib, "curl_global_init", &tt_curl.global_init);
    ok &= resolve(lib, "curl_easy_init", &tt_curl.easy_init);
    ok &= resolve(lib, "curl_easy_setopt", &tt_curl.easy_setopt);
    ok &= resolve(lib, "curl_easy_getinfo", &tt_curl.easy_getinfo);
    ok &= resolve(lib, "curl_easy_cleanup", &tt_curl.easy_cleanup);
    ok &= resolve(lib, "curl_easy_strerror", &tt_curl.easy_strerror);
    ok &= resolve(lib, "curl_multi_init", &tt_curl.multi_init);
    ok &= resolve(lib, "curl_multi_setopt", &tt_curl.multi_setopt);
    ok &= resolve(lib, "curl_multi_add_handle", &tt_curl.multi_add_handle);
    ok &= resolve(lib, "curl_multi_remove_handle", &tt_curl.multi_remove_handle);
    ok &= resolve(lib, "curl_multi_perform", &tt_curl.multi_perform);
    ok &= resolve(lib, "curl_multi_poll", &tt_curl.multi_poll);
    ok &= resolve(lib, "curl_multi_wakeup", &tt_curl.multi_wakeup);
    ok &= resolve(lib, "curl_multi_info_read", &tt_curl.multi_info_read);
    ok &= resolve(lib, "curl_multi_cleanup", &tt_curl.multi_cleanup);
    ok &= resolve(lib, "curl_slist_append", &tt_curl.slist_append);
    ok &= resolve(lib, "curl_slist_free_all", &tt_curl.slist_free_all);
    if (!ok) {
        dlclose(lib);
        return;
    }
    /* Kept loaded for the life of the process: handles may outlive any
     * one registry, and unloading TLS libraries is famously fragile. */
    load_rc = TETHER_OK;
}

tether_err
tt_curl_load(void)
{
    pthread_once(&load_once, load);
    return load_rc;
}
