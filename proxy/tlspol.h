/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tlspol: the pure parts of the inbound TLS policy: which SNI pattern a
 * client's server name selects (exact names before wildcards, "*.example.com"
 * standing for exactly one more label), and lists of certificate fingerprints
 * ("sha256:" + 64 hex digits, colons between bytes allowed) as the
 * configuration gives them and as plugins and the log see them. No I/O, no
 * OpenSSL: tlssrv.c builds the contexts from these answers. Any thread.
 */
#ifndef SLUICE_TLSPOL_H
#define SLUICE_TLSPOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLSPOL_FP_LEN 32  /* SHA-256 */
#define TLSPOL_FP_TEXT 72 /* "sha256:" + 64 hex + NUL, rounded up */
#define TLSPOL_MAX_FPS 64 /* fingerprints in one list */

/* A host name pattern for tls_sni: a host name (letters, digits, '-', dots
 * between labels) or "*." followed by one with at least two labels. */
bool tlspol_sni_pattern_ok(const char *pat);

/* Case-insensitive; a trailing dot of `host` is ignored. "*.example.com"
 * matches "a.example.com", not "example.com" nor "a.b.example.com". */
bool tlspol_sni_match(const char *pat, const char *host);

/* The index of the pattern `host` selects: the first exact one, else the
 * first wildcard one; SIZE_MAX when none does (or host is NULL/empty). */
size_t tlspol_sni_pick(const char *const *pats, size_t n, const char *host);

/*
 * Parse a fingerprint list (entries separated by commas or blanks) into
 * out[0..*n). Each entry is "sha256:" followed by 32 bytes in hex, upper or
 * lower case, optionally with ':' between bytes. 0, or -EINVAL with a
 * message in err (naming the entry) and *n undefined. An empty list is an
 * error too: it would pin nothing.
 */
int tlspol_fp_parse(const char *text, uint8_t (*out)[TLSPOL_FP_LEN], size_t max, size_t *n,
                    char *err, size_t errlen);

/* "sha256:" + 64 lower-case hex digits into out (TLSPOL_FP_TEXT bytes). */
void tlspol_fp_format(const uint8_t fp[TLSPOL_FP_LEN], char out[TLSPOL_FP_TEXT]);

/* fp is one of list[0..n). */
bool tlspol_fp_in(const uint8_t fp[TLSPOL_FP_LEN], const uint8_t (*list)[TLSPOL_FP_LEN], size_t n);

#endif
