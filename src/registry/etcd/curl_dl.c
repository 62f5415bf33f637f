/*
 * curl_dl.c - load libcurl on first use (see curl_dl.h for why).
 */
#define TT_CURL_DL_IMPL 1
#include "registry/etcd/curl_dl.h"

#include <pthread.h>

#include "core/dl.h"

struct tt_curl_api tt_curl;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static tether_err load_rc = TETHER_ENOTSUP;

static void
load(void)
{
    static const char *const names[] = {"libcurl.so.4", "libcurl.so", NULL};
    const tt_dl_sym syms[] = {
        {"curl_global_init", &tt_curl.global_init},
        {"curl_easy_init", &tt_curl.easy_init},
        {"curl_easy_setopt", &tt_curl.easy_setopt},
        {"curl_easy_getinfo", &tt_curl.easy_getinfo},
        {"curl_easy_cleanup", &tt_curl.easy_cleanup},
        {"curl_easy_strerror", &tt_curl.easy_strerror},
        {"curl_multi_init", &tt_curl.multi_init},
        {"curl_multi_setopt", &tt_curl.multi_setopt},
        {"curl_multi_add_handle", &tt_curl.multi_add_handle},
        {"curl_multi_remove_handle", &tt_curl.multi_remove_handle},
        {"curl_multi_perform", &tt_curl.multi_perform},
        {"curl_multi_poll", &tt_curl.multi_poll},
        {"curl_multi_wakeup", &tt_curl.multi_wakeup},
        {"curl_multi_info_read", &tt_curl.multi_info_read},
        {"curl_multi_cleanup", &tt_curl.multi_cleanup},
        {"curl_slist_append", &tt_curl.slist_append},
        {"curl_slist_free_all", &tt_curl.slist_free_all},
    };
    load_rc = tt_dl_load("registry: etcd needs libcurl", "libcurl", names, syms,
                         sizeof syms / sizeof syms[0]);
}

tether_err
tt_curl_load(void)
{
    pthread_once(&load_once, load);
    return load_rc;
}
