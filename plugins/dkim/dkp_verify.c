/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_verify: libopendkim verification glue. See dkp_verify.h.
 *
 * Ownership: the verifier owns its DKIM_LIB; everything conf points to is
 * borrowed. Per message, a struct dkp__vctx on the caller's stack is the
 * libopendkim "user context" that the key callback writes lookup outcomes
 * into.
 */
#include "dkp_verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <dkim.h>

struct dkp_verify {
    DKIM_LIB *lib; /* owned */
    struct dkp_verify_conf conf;
};

struct dkp__lookup {
    DKIM_SIGINFO *sig;
    enum dkp_keystat st;
};

struct dkp__vctx {
    struct dkp_verify *v;
    const struct dkp_verify_key *keys;
    size_t nkeys;
    struct dkp__lookup lookups[DKP_VERIFY_MAX_SIGS];
    size_t nlookups;
    size_t skipped;
};

static void dkp__copy(char *dst, size_t dstlen, const unsigned char *src)
{
    snprintf(dst, dstlen, "%s", src ? (const char *)src : "");
}

/* libopendkim's key-lookup callback: fill buf with the TXT record. */
static DKIM_CBSTAT dkp__key_lookup(DKIM *dkim, DKIM_SIGINFO *sig, unsigned char *buf,
                                   size_t buflen)
{
    struct dkp__vctx *vc = dkim_get_user_context(dkim);
    const char *sel = (const char *)dkim_sig_getselector(sig);
    const char *dom = (const char *)dkim_sig_getdomain(sig);
    char name[600];
    enum dkp_keystat st = DKP_KEY_NONE;
    const struct dkp_verify_conf *conf;

    if (!vc || !sel || !dom)
        return DKIM_CBSTAT_NOTFOUND;
    conf = &vc->v->conf;
    if ((size_t)snprintf(name, sizeof name, "%s._domainkey.%s", sel, dom) >= sizeof name) {
        st = DKP_KEY_NONE;
    } else if (conf->keyfile) {
        const char *rec = dkp_keyfile_find(conf->keyfile, name);
        if (rec && strlen(rec) < buflen) {
            memcpy(buf, rec, strlen(rec) + 1);
            st = DKP_KEY_FOUND;
        }
    } else {
        /* Looked up before verification started; one that was not (the
         * signature list and ours disagree) is a temporary failure. */
        st = DKP_KEY_TEMPFAIL;
        for (size_t i = 0; i < vc->nkeys; i++) {
            const struct dkp_verify_key *k = &vc->keys[i];
            if (strcasecmp(k->name, name) != 0)
                continue;
            st = k->st;
            if (st == DKP_KEY_FOUND) {
                if (!k->rec || strlen(k->rec) >= buflen) {
                    st = DKP_KEY_BADREPLY;
                } else {
                    memcpy(buf, k->rec, strlen(k->rec) + 1);
                }
            }
            break;
        }
    }
    if (vc->nlookups < DKP_VERIFY_MAX_SIGS) {
        vc->lookups[vc->nlookups].sig = sig;
        vc->lookups[vc->nlookups].st = st;
        vc->nlookups++;
    }
    if (st != DKP_KEY_FOUND)
        return DKIM_CBSTAT_NOTFOUND;
    return DKIM_CBSTAT_CONTINUE;
}

/* libopendkim's prescreen: signatures past max_sigs are not evaluated
 * (no key lookup, no RSA). */
static DKIM_CBSTAT dkp__prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
    struct dkp__vctx *vc = dkim_get_user_context(dkim);
    unsigned max = vc ? vc->v->conf.max_sigs : DKP_VERIFY_MAX_SIGS;

    for (int i = (int)max; i < nsigs; i++) {
        dkim_sig_ignore(sigs[i]);
        if (vc)
            vc->skipped++;
    }
    return DKIM_CBSTAT_CONTINUE;
}

/* The value of tag `tag` in a tag=value list, white space removed. */
static int dkp__tag(const char *v, const char *tag, char *out, size_t outlen)
{
    size_t tl = strlen(tag);
    const char *p = v;

    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == ';')
            p++;
        const char *name = p;
        while (*p && *p != '=' && *p != ';')
            p++;
        const char *ne = p;
        while (ne > name && (ne[-1] == ' ' || ne[-1] == '\t' || ne[-1] == '\r' || ne[-1] == '\n'))
            ne--;
        if (*p != '=') {
            continue;
        }
        p++;
        size_t w = 0;
        int match = (size_t)(ne - name) == tl && strncmp(name, tag, tl) == 0;
        for (; *p && *p != ';'; p++) {
            if (!match || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
                continue;
            if (w + 1 >= outlen)
                return -1;
            out[w++] = *p;
        }
        if (match) {
            out[w] = '\0';
            return w ? 0 : -1;
        }
    }
    return -1;
}

int dkp_verify_key_name(const char *sigvalue, char *out, size_t outlen)
{
    char d[256], sel[256];

    if (!sigvalue || dkp__tag(sigvalue, "d", d, sizeof d) < 0 ||
        dkp__tag(sigvalue, "s", sel, sizeof sel) < 0)
        return -1;
    if ((size_t)snprintf(out, outlen, "%s._domainkey.%s", sel, d) >= outlen)
        return -1;
    return 0;
}

struct dkp_verify *dkp_verify_new(const struct dkp_verify_conf *conf, char *err, size_t errlen)
{
    struct dkp_verify *v = calloc(1, sizeof *v);
    unsigned bits;
    uint32_t flags = DKIM_LIBFLAGS_DEFAULT;

    if (!v) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    v->conf = *conf;
    if (v->conf.max_sigs < 1 || v->conf.max_sigs > DKP_VERIFY_MAX_SIGS)
        v->conf.max_sigs = DKP_VERIFY_MAX_SIGS;
    if (v->conf.min_key_bits < 1024)
        v->conf.min_key_bits = 1024;
    v->lib = dkim_init(NULL, NULL);
    if (!v->lib) {
        snprintf(err, errlen, "dkim_init failed");
        free(v);
        return NULL;
    }
    /* libopendkim applies min key bits itself (DKIM_SIGERROR_KEYTOOSMALL);
     * we still check the size in dkp_verify_map for a clear reason. */
    bits = v->conf.min_key_bits;
    if (dkim_options(v->lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &bits, sizeof bits) !=
            DKIM_STAT_OK ||
        dkim_options(v->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags) !=
            DKIM_STAT_OK ||
        (conf->fixed_time &&
         dkim_options(v->lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &v->conf.fixed_time,
                      sizeof v->conf.fixed_time) != DKIM_STAT_OK) ||
        dkim_set_key_lookup(v->lib, dkp__key_lookup) != DKIM_STAT_OK ||
        dkim_set_prescreen(v->lib, dkp__prescreen) != DKIM_STAT_OK) {
        snprintf(err, errlen, "cannot set libopendkim options");
        dkim_close(v->lib);
        free(v);
        return NULL;
    }
    return v;
}

void dkp_verify_free(struct dkp_verify *v)
{
    if (!v)
        return;
    dkim_close(v->lib);
    free(v);
}

enum dkp_result dkp_verify_map(const struct dkp_verify_facts *f, char *reason, size_t reasonlen)
{
#define DKP_WHY(...) (snprintf(reason, reasonlen, __VA_ARGS__))
    reason[0] = '\0';
    if (f->lookup_done && f->lookup == DKP_KEY_TEMPFAIL) {
        DKP_WHY("key lookup timed out or failed temporarily");
        return DKP_RES_TEMPERROR;
    }
    if (f->lookup_done && f->lookup == DKP_KEY_NONE) {
        DKP_WHY("no key record");
        return DKP_RES_PERMERROR;
    }
    if (f->lookup_done && f->lookup == DKP_KEY_BADREPLY) {
        DKP_WHY("unusable DNS answer for the key");
        return DKP_RES_PERMERROR;
    }
    if (f->keybits && f->signalg != DKIM_SIGN_ED25519SHA256 && f->keybits < f->min_key_bits) {
        DKP_WHY("RSA key of %u bits is too small", f->keybits);
        return DKP_RES_POLICY;
    }
    switch (f->sigerror) {
    case DKIM_SIGERROR_OK:
    case DKIM_SIGERROR_UNKNOWN:
    case DKIM_SIGERROR_BADSIG:
        break;
    case DKIM_SIGERROR_KEYTOOSMALL:
        DKP_WHY("key too small");
        return DKP_RES_POLICY;
    case DKIM_SIGERROR_KEYFAIL:
        DKP_WHY("key lookup failed");
        return DKP_RES_TEMPERROR;
    case DKIM_SIGERROR_NOKEY:
        DKP_WHY("no key record");
        return DKP_RES_PERMERROR;
    case DKIM_SIGERROR_DNSSYNTAX:
    case DKIM_SIGERROR_KEYVERSION:
    case DKIM_SIGERROR_KEYUNKNOWNHASH:
    case DKIM_SIGERROR_KEYHASHMISMATCH:
    case DKIM_SIGERROR_NOTEMAILKEY:
    case DKIM_SIGERROR_KEYTYPEMISSING:
    case DKIM_SIGERROR_KEYTYPEUNKNOWN:
    case DKIM_SIGERROR_KEYREVOKED:
    case DKIM_SIGERROR_KEYDECODE:
    case DKIM_SIGERROR_MULTIREPLY:
        DKP_WHY("key record: %s", dkim_sig_geterrorstr(f->sigerror));
        return DKP_RES_PERMERROR;
    default: {
        const char *s = dkim_sig_geterrorstr(f->sigerror);
        DKP_WHY("%s", s ? s : "signature not usable");
        return DKP_RES_NEUTRAL;
    }
    }
    if (!(f->flags & DKIM_SIGFLAG_PROCESSED)) {
        DKP_WHY("signature not processed");
        return DKP_RES_NEUTRAL;
    }
    if (!(f->flags & DKIM_SIGFLAG_PASSED)) {
        DKP_WHY("signature did not verify");
        return DKP_RES_FAIL;
    }
    if (f->bh != DKIM_SIGBH_MATCH) {
        DKP_WHY("body hash did not verify");
        return DKP_RES_FAIL;
    }
    if (f->signalg == DKIM_SIGN_RSASHA1 && !f->allow_sha1) {
        DKP_WHY("rsa-sha1 is not accepted (RFC 8301)");
        return DKP_RES_POLICY;
    }
    return DKP_RES_PASS;
#undef DKP_WHY
}

/* First 8 characters of the b= value, white space removed. */
static void dkp__bprefix(DKIM_SIGINFO *sig, char *out, size_t outlen)
{
    const unsigned char *b = dkim_sig_gettagvalue(sig, 0, (unsigned char *)"b");
    size_t w = 0;

    for (; b && *b && w < 8 && w + 1 < outlen; b++)
        if (*b != ' ' && *b != '\t' && *b != '\r' && *b != '\n')
            out[w++] = (char)*b;
    out[w] = '\0';
}

int dkp_verify_message(struct dkp_verify *v, const char *msg, size_t len,
                       const struct dkp_verify_key *keys, size_t nkeys, struct dkp_sigres **res,
                       size_t *n, size_t *skipped, char *err, size_t errlen)
{
    struct dkp__vctx vc = {.v = v, .keys = keys, .nkeys = nkeys};
    DKIM_STAT st;
    DKIM *dkim;
    DKIM_SIGINFO **sigs = NULL;
    int nsigs = 0;

    *res = NULL;
    *n = 0;
    *skipped = 0;
    dkim = dkim_verify(v->lib, (const unsigned char *)"sluice", NULL, &st);
    if (!dkim) {
        snprintf(err, errlen, "dkim_verify: %s", dkim_getresultstr(st));
        return -1;
    }
    dkim_set_user_context(dkim, &vc);
    st = dkim_chunk(dkim, (unsigned char *)msg, len);
    if (st == DKIM_STAT_OK)
        st = dkim_chunk(dkim, NULL, 0);
    if (st == DKIM_STAT_OK || st == DKIM_STAT_BADSIG || st == DKIM_STAT_NOKEY ||
        st == DKIM_STAT_CANTVRFY || st == DKIM_STAT_REVOKED || st == DKIM_STAT_KEYFAIL)
        st = dkim_eom(dkim, NULL);
    if (st == DKIM_STAT_NOSIG) {
        dkim_free(dkim);
        return 0;
    }
    if (dkim_getsiglist(dkim, &sigs, &nsigs) != DKIM_STAT_OK || nsigs <= 0) {
        /* No usable signature structure at all: a syntax problem of the
         * message (say, no From), not of a signature. */
        const char *why = dkim_geterror(dkim);
        if (st == DKIM_STAT_OK || st == DKIM_STAT_NOSIG) {
            dkim_free(dkim);
            return 0;
        }
        snprintf(err, errlen, "%s", why ? why : dkim_getresultstr(st));
        dkim_free(dkim);
        return -1;
    }
    if (nsigs > (int)v->conf.max_sigs) {
        *skipped = (size_t)nsigs - v->conf.max_sigs;
        nsigs = (int)v->conf.max_sigs;
    }
    *res = calloc((size_t)nsigs, sizeof **res);
    if (!*res) {
        snprintf(err, errlen, "out of memory");
        dkim_free(dkim);
        return -1;
    }
    for (int i = 0; i < nsigs; i++) {
        DKIM_SIGINFO *sig = sigs[i];
        struct dkp_sigres *r = &(*res)[i];
        struct dkp_verify_facts f = {
            .flags = dkim_sig_getflags(sig),
            .bh = dkim_sig_getbh(sig),
            .sigerror = dkim_sig_geterror(sig),
            .signalg = DKIM_SIGN_UNKNOWN,
            .min_key_bits = v->conf.min_key_bits,
            .allow_sha1 = v->conf.allow_sha1,
        };
        dkim_alg_t alg;
        unsigned int bits = 0;

        if (dkim_sig_getsignalg(sig, &alg) == DKIM_STAT_OK)
            f.signalg = (int)alg;
        if ((f.flags & DKIM_SIGFLAG_KEYLOADED) && dkim_sig_getkeysize(sig, &bits) == DKIM_STAT_OK)
            f.keybits = bits;
        for (size_t k = 0; k < vc.nlookups; k++) {
            if (vc.lookups[k].sig == sig) {
                f.lookup_done = 1;
                f.lookup = vc.lookups[k].st;
            }
        }
        r->result = dkp_verify_map(&f, r->reason, sizeof r->reason);
        r->keybits = f.keybits;
        dkp__copy(r->domain, sizeof r->domain, dkim_sig_getdomain(sig));
        dkp__copy(r->selector, sizeof r->selector, dkim_sig_getselector(sig));
        dkp__copy(r->alg, sizeof r->alg, dkim_sig_gettagvalue(sig, 0, (unsigned char *)"a"));
        dkp__bprefix(sig, r->b, sizeof r->b);
    }
    *n = (size_t)nsigs;
    dkim_free(dkim);
    return 0;
}
