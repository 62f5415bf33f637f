/*
 * mhd_dl.h - libmicrohttpd, loaded when the first metrics listener starts.
 *
 * Only servers with metrics_addr set serve HTTP, and libmicrohttpd brings
 * GnuTLS and a dozen libraries under it: linking it into every tether
 * process would cost their loading and memory in every server and client
 * that never serves metrics, and would make a fully static program
 * impossible (Debian ships no static p11-kit).  So libtether does not
 * link it; the listener dlopen()s it on first use, as the etcd backend
 * does with libcurl (registry/etcd/curl_dl.h), and calls it through the
 * table below.
 */
#ifndef TT_OPS_MHD_DL_H
#define TT_OPS_MHD_DL_H

#include <microhttpd.h>

#include "tether/tether.h"

struct tt_mhd_api {
    struct MHD_Daemon *(*start_daemon)(unsigned int flags, uint16_t port,
                                       MHD_AcceptPolicyCallback apc, void *apc_cls,
                                       MHD_AccessHandlerCallback dh, void *dh_cls, ...);
    void (*stop_daemon)(struct MHD_Daemon *d);
    struct MHD_Response *(*create_response_from_buffer)(size_t size, void *buffer,
                                                        enum MHD_ResponseMemoryMode mode);
    enum MHD_Result (*add_response_header)(struct MHD_Response *r, const char *header,
                                           const char *content);
    enum MHD_Result (*queue_response)(struct MHD_Connection *c, unsigned int status_code,
                                      struct MHD_Response *r);
    void (*destroy_response)(struct MHD_Response *r);
};

extern struct tt_mhd_api tt_mhd;

/*
 * tt_mhd_load - load libmicrohttpd and resolve the table, once per
 * process (thread-safe).  TETHER_OK, or TETHER_ENOTSUP when it is missing
 * (logged with the loader's reason).
 */
tether_err tt_mhd_load(void);

#endif
