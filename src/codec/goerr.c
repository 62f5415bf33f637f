/*
 * goerr.c - Go's net/rpc answers unknown names with fixed texts
 * (net/rpc/server.go); give them the codes the native protocol carries,
 * so a caller can tell "no such method" from a handler's own error
 * whatever codec it speaks.
 */
#include <string.h>

#include "codec/codec.h"

static int
starts(const char *text, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(text, prefix, n) == 0;
}

tether_err
tt_codec_go_reply_status(const char *text, size_t len)
{
    if (starts(text, len, "rpc: can't find service ")) {
        return TETHER_ENOSERVICE;
    }
    if (starts(text, len, "rpc: can't find method ") ||
        starts(text, len, "rpc: service/method request ill-formed")) {
        return TETHER_ENOMETHOD;
    }
    return TETHER_EREMOTE;
}
