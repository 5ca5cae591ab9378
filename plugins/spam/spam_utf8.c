/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_utf8: UTF-8 validation as PCRE2 and Hyperscan do it (see
 * spam_utf8.h).
 */
#include "spam_utf8.h"

#include <stdint.h>
#include <string.h>

/*
 * Length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid;
 * the rules of RFC 3629 table 3-7, which are PCRE2's.
 */
size_t spam_utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    if (c < 0xc2 || c > 0xf4)
        return 0;
    if (c < 0xe0)
        return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (n < 3 || (p[2] & 0xc0) != 0x80)
        return 0;
    unsigned lo = 0x80, hi = 0xbf;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (p[1] < lo || p[1] > hi)
        return 0;
    if (c < 0xf0)
        return 3;
    return n >= 4 && (p[3] & 0xc0) == 0x80 ? 4 : 0;
}

/* Offset of the first invalid byte, or len. */
size_t spam_utf8_valid_prefix(const unsigned char *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        /* Plain ASCII eight bytes at a time: most mail text. */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & 0x8080808080808080ULL)
                break;
            i += 8;
        }
        if (i >= len)
            break;
        size_t l = spam_utf8_len(p + i, len - i);
        if (l == 0)
            return i;
        i += l;
    }
    return len;
}
