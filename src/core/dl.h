/*
 * dl.h - load a shared library at run time (libcurl for etcd,
 * libmicrohttpd for the metrics listener), so that programs which never
 * use those parts do not depend on them.
 */
#ifndef TT_CORE_DL_H
#define TT_CORE_DL_H

#include <stddef.h>

#include "tether/tether.h"

/* One symbol to resolve and where its address goes. */
typedef struct tt_dl_sym {
    const char *name;
    void *slot; /* points at a function pointer */
} tt_dl_sym;

/*
 * tt_dl_load - dlopen the first of names[] (NULL-terminated; the runtime
 * package's versioned name first, the -dev package's unversioned one
 * after) that loads, and resolve syms[0..n).  TETHER_OK, or TETHER_ENOTSUP
 * after logging "<need>, which cannot be loaded: <why>" or "<lib> has no
 * <symbol>".  A loaded library stays loaded for the life of the process
 * (handles may outlive their users; unloading TLS libraries is fragile).
 */
tether_err tt_dl_load(const char *need, const char *lib, const char *const *names,
                      const tt_dl_sym *syms, size_t n);

#endif
