/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_utf8: strict UTF-8 (RFC 3629 table 3-7: no overlong forms, no
 * surrogates, nothing above U+10FFFF), the rules of PCRE2 and Hyperscan;
 * glibc's iconv, which GMime converts with, accepts the same sequences.
 */
#ifndef SPAM_UTF8_H
#define SPAM_UTF8_H
#include <stddef.h>

/* Length of the valid sequence at p (n > 0 bytes left), 0 if invalid. */
size_t spam_utf8_len(const unsigned char *p, size_t n);

/* Offset of the first invalid byte of p[0..len), or len. */
size_t spam_utf8_valid_prefix(const unsigned char *p, size_t len);

#endif
