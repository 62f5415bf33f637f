/*
 * base64.h - standard base64 with padding (RFC 4648 section 4), the form
 * both etcd's JSON gateway and Go's encoding/json use for bytes.
 */
#ifndef TT_CORE_BASE64_H
#define TT_CORE_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Characters tt_base64_encode() writes for n bytes (always padded). */
static inline size_t
tt_base64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

/* tt_base64_encode - write tt_base64_len(n) characters (no NUL) to out. */
void tt_base64_encode(const void *data, size_t n, char *out);

/*
 * tt_base64_decode - decode s[0..n) into out[0..cap) (n / 4 * 3 always
 * suffices for valid input); *outlen gets the decoded length.  '\r' and
 * '\n' are skipped, as Go's StdEncoding does.  Padding is required and must
 * match; a character outside the alphabet, a short group, or output that
 * would pass cap fails (false), never writing past out + cap.
 */
bool tt_base64_decode(const char *s, size_t n, uint8_t *out, size_t cap, size_t *outlen);

#endif
