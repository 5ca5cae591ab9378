/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_ar: per-signature DKIM results and their Authentication-Results
 * (RFC 8601) rendering; recognising an existing A-R field by its
 * authserv-id (to delete forgeries). Pure: strings in, strings out.
 */
#ifndef DKP_AR_H
#define DKP_AR_H

#include <stddef.h>

/* RFC 8601 §2.7.1 result values for the dkim method. */
enum dkp_result {
    DKP_RES_NONE = 0,  /* no signature */
    DKP_RES_PASS,
    DKP_RES_FAIL,      /* signature or body hash did not verify */
    DKP_RES_NEUTRAL,   /* e.g. signature syntax broken */
    DKP_RES_POLICY,    /* verified or not, unacceptable to local policy
                          (rsa-sha1 per RFC 8301, key too small) */
    DKP_RES_TEMPERROR, /* key lookup failed temporarily (DNS timeout) */
    DKP_RES_PERMERROR, /* no key, malformed key record, unusable key */
};

/* One verified (or not) DKIM-Signature. Strings are NUL-terminated,
 * truncated copies of the signature's tags. */
struct dkp_sigres {
    enum dkp_result result;
    char domain[256];   /* d= */
    char selector[128]; /* s= */
    char b[9];          /* the first 8 characters of b= (RFC 6008) */
    char alg[24];       /* a= as written, "" if absent */
    char reason[128];   /* why, for anything but pass; "" otherwise */
    unsigned keybits;   /* key size when known, else 0 */
};

/* "none", "pass", ... */
const char *dkp_ar_result_name(enum dkp_result r);

/* The value (after "Authentication-Results:") for one signature, or for
 * dkim=none when r is NULL. Writes at most outlen bytes including the NUL.
 * Returns the length, or -1 when it did not fit. Values that are not plain
 * tokens are written as quoted strings. */
int dkp_ar_format(const char *authserv_id, const struct dkp_sigres *r, char *out, size_t outlen);

/* 1 when the A-R field value `value` (raw, maybe folded, with comments)
 * starts with authserv-id `id` (case-insensitive), else 0. */
int dkp_ar_has_authserv_id(const char *value, size_t len, const char *id);

/* 1 when s may serve as our authserv-id: a non-empty RFC 2045 token
 * (typically a host name), at most 255 characters. */
int dkp_ar_valid_authserv_id(const char *s);

#endif
