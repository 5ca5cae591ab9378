/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_verify: DKIM verification of a whole message with libopendkim.
 * CPU only: it never touches the network. The key records are looked up
 * before (asynchronously, by the plugin, on the host's resolver) and
 * handed in; dkp_verify_key_names() says which ones a message needs. One
 * verifier is shared by all threads; each call has its own libopendkim
 * handle, so it may run on a pool thread.
 *
 * Only the first max_sigs signatures of a message are evaluated (each one
 * costs a key lookup and an RSA operation, and a message can carry
 * hundreds); libopendkim is told to ignore the rest (a prescreen
 * callback), and the caller reports them as one "policy" result.
 *
 * Keys come from libopendkim's key-lookup callback, answered by us: the
 * test key file, else the prefetched records. The callback only ever says
 * "found" or "not found" to libopendkim and keeps the real outcome
 * (timeout, NXDOMAIN, bad answer) itself, so a DNS timeout can be
 * reported as temperror instead of libopendkim's generic "no key".
 */
#ifndef DKP_VERIFY_H
#define DKP_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "dkp_ar.h"
#include "dkp_cache.h"
#include "dkp_keyfile.h"

/* The most signatures ever evaluated on one message (max_sigs' ceiling). */
#define DKP_VERIFY_MAX_SIGS 16
#define DKP_VERIFY_NAME_MAX 600

struct dkp_verify_conf {
    const struct dkp_keyfile *keyfile; /* borrowed; test mode when not NULL */
    unsigned max_sigs;                 /* signatures evaluated per message, 1..16 */
    unsigned min_key_bits;             /* RSA keys below are "policy" (>= 1024) */
    int allow_sha1;                    /* 0: rsa-sha1 signatures are "policy" */
    uint64_t fixed_time;               /* tests: the clock for t=/x= checks; 0 = real */
};

struct dkp_verify;

/* NULL with a message on failure. conf's pointers must outlive it. */
struct dkp_verify *dkp_verify_new(const struct dkp_verify_conf *conf, char *err, size_t errlen);
void dkp_verify_free(struct dkp_verify *v);

/* One key record looked up for a message: "sel._domainkey.dom", the
 * outcome and, when found, the record (borrowed). */
struct dkp_verify_key {
    char name[DKP_VERIFY_NAME_MAX];
    enum dkp_keystat st;
    const char *rec;
};

/* The key record name of a DKIM-Signature field value (raw, maybe
 * folded): "S._domainkey.D" from its s= and d= tags. 0, or -1 when a tag
 * is missing or the name does not fit (pure; table-tested). */
int dkp_verify_key_name(const char *sigvalue, char *out, size_t outlen);

/* Verify the DKIM-Signatures of msg (canonical CRLF form, headers and
 * body), the first max_sigs of them, with the key records in keys[0..nkeys)
 * (ignored in key-file mode; a name not among them is a temporary
 * failure). *res gets a malloc'd array of *n results in header order (NULL,
 * 0 when unsigned); the caller frees it. *skipped: signatures past max_sigs,
 * not evaluated. Returns 0, or -1 with a message when the message could not
 * be processed at all. */
int dkp_verify_message(struct dkp_verify *v, const char *msg, size_t len,
                       const struct dkp_verify_key *keys, size_t nkeys, struct dkp_sigres **res,
                       size_t *n, size_t *skipped, char *err, size_t errlen);

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
