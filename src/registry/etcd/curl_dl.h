/*
 * curl_dl.h - libcurl, loaded when the first etcd registry is opened.
 *
 * Only the etcd backend needs HTTP, and libcurl brings some thirty shared
 * libraries with it (TLS stacks, Kerberos, LDAP, ...): linking it into
 * every tether process would cost several megabytes of resident memory in
 * servers that never talk to etcd.  So libtether does not link libcurl;
 * the etcd backend dlopen()s it on first use and calls it through the
 * table below.  The macros make the backend's code read as plain libcurl.
 */
#ifndef TT_REGISTRY_ETCD_CURL_DL_H
#define TT_REGISTRY_ETCD_CURL_DL_H

/* Plain prototypes: the type-checking wrappers are macros over the
 * function names, which we redirect to the table. */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

#include "tether/tether.h"

struct tt_curl_api {
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *curl, CURLoption option, ...);
    CURLcode (*easy_getinfo)(CURL *curl, CURLINFO info, ...);
    void (*easy_cleanup)(CURL *curl);
    const char *(*easy_strerror)(CURLcode code);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_setopt)(CURLM *m, CURLMoption option, ...);
    CURLMcode (*multi_add_handle)(CURLM *m, CURL *e);
    CURLMcode (*multi_remove_handle)(CURLM *m, CURL *e);
    CURLMcode (*multi_perform)(CURLM *m, int *running);
    CURLMcode (*multi_poll)(CURLM *m, struct curl_waitfd extra[], unsigned int n, int timeout_ms,
                            int *ret);
    CURLMcode (*multi_wakeup)(CURLM *m);
    CURLMsg *(*multi_info_read)(CURLM *m, int *left);
    CURLMcode (*multi_cleanup)(CURLM *m);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
    void (*slist_free_all)(struct curl_slist *list);
};

extern struct tt_curl_api tt_curl;

/*
 * tt_curl_load - load libcurl and resolve the table, once per process
 * (thread-safe).  TETHER_OK, or TETHER_ENOTSUP when libcurl is missing
 * (logged with the loader's reason).
 */
tether_err tt_curl_load(void);

#ifndef TT_CURL_DL_IMPL
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_global_init (*tt_curl.global_init)
#define curl_easy_init (*tt_curl.easy_init)
#define curl_easy_setopt (*tt_curl.easy_setopt)
#define curl_easy_getinfo (*tt_curl.easy_getinfo)
#define curl_easy_cleanup (*tt_curl.easy_cleanup)
#define curl_easy_strerror (*tt_curl.easy_strerror)
#define curl_multi_init (*tt_curl.multi_init)
#define curl_multi_setopt (*tt_curl.multi_setopt)
#define curl_multi_add_handle (*tt_curl.multi_add_handle)
#define curl_multi_remove_handle (*tt_curl.multi_remove_handle)
#define curl_multi_perform (*tt_curl.multi_perform)
#define curl_multi_poll (*tt_curl.multi_poll)
#define curl_multi_wakeup (*tt_curl.multi_wakeup)
#define curl_multi_info_read (*tt_curl.multi_info_read)
#define curl_multi_cleanup (*tt_curl.multi_cleanup)
#define curl_slist_append (*tt_curl.slist_append)
#define curl_slist_free_all (*tt_curl.slist_free_all)
#endif

#endif
