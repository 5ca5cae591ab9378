/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_sign: DKIM signing of a whole message (one DKIM-Signature per call)
 * on OpenSSL, with the same output libopendkim's signer gave, plus the
 * author-domain helper the plugin needs to pick signing table lines.
 * Thread-safe after dkp_sign_new(): the pool threads share one signer.
 */
#ifndef DKP_SIGN_H
#define DKP_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "dkp_table.h"

struct dkp_sign_conf {
    int header_relaxed;                  /* c= header part: 1 relaxed, 0 simple */
    int body_relaxed;                    /* c= body part */
    const char *const *sign_headers;     /* NULL-terminated; NULL = the default list */
    const char *const *oversign_headers; /* NULL-terminated; NULL = the default list */
    uint64_t fixed_time;                 /* tests: fixed t=; 0 = real clock */
};

struct dkp_sign;

/* NULL with a message on failure. The lists in conf are copied. */
struct dkp_sign *dkp_sign_new(const struct dkp_sign_conf *conf, char *err, size_t errlen);
void dkp_sign_free(struct dkp_sign *s);

/* Sign msg (canonical CRLF form) as domain/selector with the key text
 * pem (PEM, or DER when it does not start with "-----"; NUL-terminated).
 * The key is parsed on first use and kept in s (at most 64 keys, least
 * recently used evicted, freed by dkp_sign_free), keyed by the text, so
 * a changed key file gives a new key. On success 0 and *value = the
 * DKIM-Signature field value (malloc'd, folded with CRLF TAB, without the
 * "DKIM-Signature:" name). -1 with a message otherwise (bad key, no From
 * field, a header line without a colon, ...). */
int dkp_sign_message(struct dkp_sign *s, const char *domain, const char *selector,
                     const char *pem, enum dkp_alg alg, const char *msg, size_t len, char **value,
                     char *err, size_t errlen);

/* The domain of the first address in an address header value such as
 * "Ann <ann@Example.COM>" (lower-cased into out). 0, or -1 when there is
 * no usable address. */
int dkp_sign_addr_domain(const char *value, char *out, size_t outlen);

#endif
