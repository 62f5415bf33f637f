/*
 * dl.c - run-time loading of optional libraries (see dl.h).
 */
#include "core/dl.h"

#include <dlfcn.h>

#include "core/log.h"

tether_err
tt_dl_load(const char *need, const char *lib, const char *const *names, const tt_dl_sym *syms,
           size_t n)
{
    void *h = NULL;
    for (size_t i = 0; names[i] != NULL && h == NULL; i++) {
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    }
    if (h == NULL) {
        const char *why = dlerror();
        tt_log(TETHER_LOG_ERROR, "%s, which cannot be loaded: %s", need,
               why != NULL ? why : "not found");
        return TETHER_ENOTSUP;
    }
    for (size_t i = 0; i < n; i++) {
        void *sym = dlsym(h, syms[i].name);
        if (sym == NULL) {
            tt_log(TETHER_LOG_ERROR, "%s has no %s", lib, syms[i].name);
            dlclose(h);
            return TETHER_ENOTSUP;
        }
        /* POSIX guarantees data and function pointers convert through void *. */
        *(void **)syms[i].slot = sym;
    }
    return TETHER_OK;
}
