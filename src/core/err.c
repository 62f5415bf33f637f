/*
 * err.c - tether_strerror() and tether_err_name(), generated from the one
 * error list in tether.h so that codes, names and texts cannot drift apart.
 */
#include "core/err.h"
#include "tether/tether.h"

const char *
tether_strerror(tether_err err)
{
    if ((unsigned)err & (unsigned)TETHER_ESYSERR) {
        return "system error";
    }
    switch (err) {
#define TEXT_CASE_(name, num, text) \
    case TETHER_##name:             \
        return text;
        TETHER_ERRNO_MAP(TEXT_CASE_)
#undef TEXT_CASE_
    default:
        return "unknown error";
    }
}

const char *
tether_err_name(tether_err err)
{
    if ((unsigned)err & (unsigned)TETHER_ESYSERR) {
        return "TETHER_ESYSERR";
    }
    switch (err) {
#define NAME_CASE_(name, num, text) \
    case TETHER_##name:             \
        return "TETHER_" #name;
        TETHER_ERRNO_MAP(NAME_CASE_)
#undef NAME_CASE_
    default:
        return "TETHER_E?";
    }
}

int
tether_err_errno(tether_err err)
{
    if ((unsigned)err & (unsigned)TETHER_ESYSERR) {
        return (int)((unsigned)err & ~(unsigned)TETHER_ESYSERR);
    }
    return 0;
}

bool
tt_err_on_wire(tether_err code)
{
    if (code == TETHER_OK || ((unsigned)code & (unsigned)TETHER_ESYSERR) != 0) {
        return false;
    }
    switch (code) {
#define KNOWN_CASE_(name, num, text) case TETHER_##name:
        TETHER_ERRNO_MAP(KNOWN_CASE_)
#undef KNOWN_CASE_
        return true;
    default:
        return false;
    }
}
