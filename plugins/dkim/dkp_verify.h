/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_verify: DKIM verification of a whole message with libopendkim.
 * Blocking (key lookups), so call it from a thread-pool thread. One
 * verifier is shared by all threads; each call has its own libopendkim
 * handle.
 *
 * Keys come from libopendkim's key-lookup callback, answered by us: the
 * test key file, else the shared TTL cache, else a DNS TXT query. The
 * callback only ever says "found" or "not found" to libopendkim and keeps
 * the real outcome (timeout, NXDOMAIN, bad answer) itself, so a DNS
 * timeout can be reported as temperror instead of libopendkim's generic
 * "no key".
 */
#ifndef DKP_VERIFY_H
#define DKP_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "dkp_ar.h"
#include "dkp_cache.h"
#include "dkp_dns.h"
#include "dkp_keyfile.h"

struct dkp_verify_conf {
    const struct dkp_keyfile *keyfile; /* borrowed; test mode when not NULL */
    const struct dkp_dns_conf *dns;    /* borrowed; used when keyfile is NULL */
    struct dkp_cache *cache;           /* borrowed; may be NULL */
    unsigned min_key_bits;             /* RSA keys below are "policy" (>= 1024) */
    int allow_sha1;                    /* 0: rsa-sha1 signatures are "policy" */
    uint64_t fixed_time;               /* tests: the clock for t=/x= checks; 0 = real */
};

struct dkp_verify;

/* NULL with a message on failure. conf's pointers must outlive it. */
struct dkp_verify *dkp_verify_new(const struct dkp_verify_conf *conf, char *err, size_t errlen);
void dkp_verify_free(struct dkp_verify *v);

/* Verify every DKIM-Signature of msg (canonical CRLF form, headers and
 * body). *res gets a malloc'd array of *n results in header order (NULL, 0
 * when unsigned); the caller frees it. Returns 0, or -1 with a message when
 * the message could not be processed at all. */
int dkp_verify_message(struct dkp_verify *v, const char *msg, size_t len, struct dkp_sigres **res,
                       size_t *n, char *err, size_t errlen);

/* What libopendkim and the key lookup said about one signature; the input
 * of dkp_verify_map(). */
struct dkp_verify_facts {
    unsigned flags;        /* dkim_sig_getflags() */
    int bh;                /* dkim_sig_getbh() */
    int sigerror;          /* dkim_sig_geterror() */
    int lookup_done;       /* our key callback ran for this signature */
    enum dkp_keystat lookup;
    int signalg;           /* DKIM_SIGN_* */
    unsigned keybits;      /* 0 when unknown */
    unsigned min_key_bits;
    int allow_sha1;
};

/* The RFC 8601 result and a short reason (pure; table-tested). */
enum dkp_result dkp_verify_map(const struct dkp_verify_facts *f, char *reason, size_t reasonlen);

#endif
