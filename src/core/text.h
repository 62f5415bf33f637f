/*
 * text.h - tiny text helpers shared by the parsers.
 */
#ifndef TT_CORE_TEXT_H
#define TT_CORE_TEXT_H

/* tt_hexval - the value of hexadecimal digit c, or -1. */
static inline int
tt_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

#endif
