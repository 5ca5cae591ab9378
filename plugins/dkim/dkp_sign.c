/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_sign: libopendkim signing glue. See dkp_sign.h.
 *
 * The header lists are library-wide options in libopendkim, so each signer
 * owns its own DKIM_LIB (and its copies of the lists, which libopendkim
 * keeps pointers to).
 */
#include "dkp_sign.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dkim.h>

/* Header fields signed by default (RFC 6376 §5.4.1 plus Message-ID, MIME
 * and list fields) and the subset signed once more than present
 * ("over-signed"), so that adding such a field breaks the signature. */
static const char *const dkp_sign_default_headers[] = {
    "from",
    "sender",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "to",
    "cc",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-id",
    "content-description",
    "resent-date",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-message-id",
    "in-reply-to",
    "references",
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
    NULL,
};

static const char *const dkp_sign_default_oversign[] = {
    "from",   "to",         "cc",           "subject",      "date", "reply-to",
    "sender", "message-id", "mime-version", "content-type", NULL,
};

struct dkp_sign {
    DKIM_LIB *lib;     /* owned */
    char **sign;       /* owned NULL-terminated copies given to libopendkim */
    char **oversign;
    int hdr_canon, body_canon;
};

static char **dkp__dup_list(const char *const *l)
{
    size_t n = 0;
    while (l[n])
        n++;
    char **out = calloc(n + 1, sizeof *out);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        out[i] = strdup(l[i]);
        if (!out[i]) {
            while (i-- > 0)
                free(out[i]);
            free(out);
            return NULL;
        }
    }
    return out;
}

static void dkp__free_list(char **l)
{
    for (size_t i = 0; l && l[i]; i++)
        free(l[i]);
    free(l);
}

void dkp_sign_free(struct dkp_sign *s)
{
    if (!s)
        return;
    if (s->lib)
        dkim_close(s->lib);
    dkp__free_list(s->sign);
    dkp__free_list(s->oversign);
    free(s);
}

struct dkp_sign *dkp_sign_new(const struct dkp_sign_conf *conf, char *err, size_t errlen)
{
    struct dkp_sign *s = calloc(1, sizeof *s);
    uint32_t flags = DKIM_LIBFLAGS_DEFAULT;

    if (!s)
        goto oom;
    s->hdr_canon = conf->header_relaxed ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
    s->body_canon = conf->body_relaxed ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
    s->sign = dkp__dup_list(conf->sign_headers ? conf->sign_headers : dkp_sign_default_headers);
    s->oversign = dkp__dup_list(conf->oversign_headers ? conf->oversign_headers
                                                       : dkp_sign_default_oversign);
    if (!s->sign || !s->oversign)
        goto oom;
    s->lib = dkim_init(NULL, NULL);
    if (!s->lib) {
        snprintf(err, errlen, "dkim_init failed");
        dkp_sign_free(s);
        return NULL;
    }
    if (dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags) !=
            DKIM_STAT_OK ||
        dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, s->sign, sizeof s->sign) !=
            DKIM_STAT_OK ||
        dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, s->oversign,
                     sizeof s->oversign) != DKIM_STAT_OK ||
        (conf->fixed_time &&
         dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, (void *)&conf->fixed_time,
                      sizeof conf->fixed_time) != DKIM_STAT_OK)) {
        snprintf(err, errlen, "cannot set libopendkim signing options (bad header list?)");
        dkp_sign_free(s);
        return NULL;
    }
    return s;
oom:
    snprintf(err, errlen, "out of memory");
    dkp_sign_free(s);
    return NULL;
}

int dkp_sign_message(struct dkp_sign *s, const char *domain, const char *selector,
                     const char *pem, enum dkp_alg alg, const char *msg, size_t len, char **value,
                     char *err, size_t errlen)
{
    DKIM_STAT st;
    DKIM *dkim;
    unsigned char *hdr = NULL;
    size_t hlen = 0;
    static const char name[] = "DKIM-Signature: ";

    *value = NULL;
    dkim = dkim_sign(s->lib, (const unsigned char *)"sluice", NULL, (dkim_sigkey_t)pem,
                     (const unsigned char *)selector, (const unsigned char *)domain,
                     s->hdr_canon, s->body_canon,
                     alg == DKP_ALG_ED25519_SHA256 ? DKIM_SIGN_ED25519SHA256
                                                   : DKIM_SIGN_RSASHA256,
                     -1, &st);
    if (!dkim) {
        snprintf(err, errlen, "dkim_sign: %s", dkim_getresultstr(st));
        return -1;
    }
    st = dkim_chunk(dkim, (unsigned char *)msg, len);
    if (st == DKIM_STAT_OK)
        st = dkim_chunk(dkim, NULL, 0);
    if (st == DKIM_STAT_OK)
        st = dkim_eom(dkim, NULL);
    if (st == DKIM_STAT_OK)
        st = dkim_getsighdr_d(dkim, strlen(name), &hdr, &hlen);
    if (st != DKIM_STAT_OK) {
        const char *why = dkim_geterror(dkim);
        snprintf(err, errlen, "%s", why && *why ? why : dkim_getresultstr(st));
        dkim_free(dkim);
        return -1;
    }
    *value = strndup((const char *)hdr, hlen);
    dkim_free(dkim);
    if (!*value) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int dkp_sign_addr_domain(const char *value, char *out, size_t outlen)
{
    unsigned char *copy, *user = NULL, *dom = NULL;
    int rc = -1;

    if (!value)
        return -1;
    copy = (unsigned char *)strdup(value);
    if (!copy)
        return -1;
    /* dkim_mail_parse handles display names, comments and angle brackets;
     * it takes one address, so cut a list at its first top-level comma. */
    int depth = 0, quoted = 0;
    for (unsigned char *p = copy; *p; p++) {
        if (quoted) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == '"')
                quoted = 0;
        } else if (*p == '"') {
            quoted = 1;
        } else if (*p == '(' || *p == '<') {
            depth++;
        } else if ((*p == ')' || *p == '>') && depth > 0) {
            depth--;
        } else if (*p == ',' && depth == 0) {
            *p = '\0';
            break;
        }
    }
    if (dkim_mail_parse(copy, &user, &dom) == 0 && dom && *dom && user && *user &&
        strlen((char *)dom) < outlen) {
        size_t i = 0;
        for (; dom[i]; i++)
            out[i] = (char)tolower(dom[i]);
        out[i] = '\0';
        rc = 0;
    }
    free(copy);
    return rc;
}
