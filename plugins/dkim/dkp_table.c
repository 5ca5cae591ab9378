/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_table: signing table parser. See dkp_table.h for the format.
 *
 * Why a strict parser: a typo in this file silently decides whether mail is
 * signed, so every line must either parse completely or fail the config
 * check with its line number. Duplicate (domain, selector) pairs are an
 * error for the same reason: two keys under one selector cannot both be in
 * DNS.
 */
#include "dkp_table.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DKP_TABLE_MAX_FIELDS 4

static const char *const dkp__alg_names[] = {
    [DKP_ALG_RSA_SHA256] = "rsa-sha256",
    [DKP_ALG_ED25519_SHA256] = "ed25519-sha256",
};

const char *dkp_alg_name(enum dkp_alg alg)
{
    if ((unsigned)alg < sizeof dkp__alg_names / sizeof dkp__alg_names[0])
        return dkp__alg_names[alg];
    return "?";
}

/* 0 and *out set, or -1 for an unknown name. */
static int dkp_alg_parse(const char *name, enum dkp_alg *out)
{
    for (size_t i = 0; i < sizeof dkp__alg_names / sizeof dkp__alg_names[0]; i++) {
        if (strcasecmp(name, dkp__alg_names[i]) == 0) {
            *out = (enum dkp_alg)i;
            return 0;
        }
    }
    return -1;
}

int dkp_table_valid_name(const char *s, size_t len)
{
    size_t label = 0;

    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (!isalnum(c) && c != '-' && c != '_')
            return 0;
        if (++label > 63)
            return 0;
    }
    return label > 0;
}

static char *dkp__strndup_lower(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    for (size_t i = 0; i < n; i++)
        p[i] = (char)tolower((unsigned char)s[i]);
    p[n] = '\0';
    return p;
}

static void dkp__entry_free(struct dkp_table_entry *e)
{
    free(e->domain);
    free(e->selector);
    free(e->keyfile);
}

void dkp_table_free(struct dkp_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        dkp__entry_free(&t->v[i]);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

size_t dkp_table_find(const struct dkp_table *t, const char *domain, size_t from)
{
    for (size_t i = from; i < t->n; i++)
        if (strcasecmp(t->v[i].domain, domain) == 0)
            return i;
    return t->n;
}

/* One line (without its newline): 0 with *e filled, 1 for a blank or
 * comment line, -1 with a message. */
static int dkp__parse_line(const char *s, size_t len, struct dkp_table_entry *e, char *err,
                           size_t errlen)
{
    const char *f[DKP_TABLE_MAX_FIELDS + 1];
    size_t fl[DKP_TABLE_MAX_FIELDS + 1];
    size_t nf = 0;
    size_t i = 0;

    /* A '#' anywhere starts a comment: no field may contain one. */
    for (size_t k = 0; k < len; k++) {
        if (s[k] == '#') {
            len = k;
            break;
        }
    }
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
            i++;
        if (i >= len)
            break;
        size_t start = i;
        while (i < len && s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            i++;
        if (nf == DKP_TABLE_MAX_FIELDS) {
            snprintf(err, errlen, "too many fields (want: domain selector keyfile [algorithm])");
            return -1;
        }
        f[nf] = s + start;
        fl[nf] = i - start;
        nf++;
    }
    if (nf == 0)
        return 1;
    if (nf < 3) {
        snprintf(err, errlen, "too few fields (want: domain selector keyfile [algorithm])");
        return -1;
    }
    if (!dkp_table_valid_name(f[0], fl[0])) {
        snprintf(err, errlen, "invalid domain \"%.*s\"", (int)(fl[0] > 80 ? 80 : fl[0]), f[0]);
        return -1;
    }
    if (!dkp_table_valid_name(f[1], fl[1])) {
        snprintf(err, errlen, "invalid selector \"%.*s\"", (int)(fl[1] > 80 ? 80 : fl[1]), f[1]);
        return -1;
    }
    e->alg = DKP_ALG_RSA_SHA256;
    if (nf == 4) {
        char alg[32];
        if (fl[3] >= sizeof alg || (snprintf(alg, sizeof alg, "%.*s", (int)fl[3], f[3]),
                                    dkp_alg_parse(alg, &e->alg) != 0)) {
            snprintf(err, errlen, "unknown algorithm \"%.*s\" (want rsa-sha256 or ed25519-sha256)",
                     (int)(fl[3] > 40 ? 40 : fl[3]), f[3]);
            return -1;
        }
    }
    e->domain = dkp__strndup_lower(f[0], fl[0]);
    e->selector = dkp__strndup_lower(f[1], fl[1]);
    e->keyfile = strndup(f[2], fl[2]);
    if (!e->domain || !e->selector || !e->keyfile) {
        dkp__entry_free(e);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int dkp_table_parse(const char *text, size_t len, struct dkp_table *out, unsigned *err_line,
                    char *err, size_t errlen)
{
    size_t cap = 0;
    unsigned line = 0;
    size_t pos = 0;

    out->v = NULL;
    out->n = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        struct dkp_table_entry e = {0};
        int rc;

        line++;
        if (memchr(text + pos, '\0', end - pos)) {
            snprintf(err, errlen, "NUL byte in line");
            goto fail;
        }
        rc = dkp__parse_line(text + pos, end - pos, &e, err, errlen);
        pos = nl ? end + 1 : len;
        if (rc < 0)
            goto fail;
        if (rc > 0)
            continue;
        e.line = line;
        for (size_t i = 0; i < out->n; i++) {
            if (strcmp(out->v[i].domain, e.domain) == 0 &&
                strcmp(out->v[i].selector, e.selector) == 0) {
                snprintf(err, errlen, "duplicate entry for %s selector %s (first on line %u)",
                         e.domain, e.selector, out->v[i].line);
                dkp__entry_free(&e);
                goto fail;
            }
        }
        if (out->n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct dkp_table_entry *nv = realloc(out->v, ncap * sizeof *nv);
            if (!nv) {
                dkp__entry_free(&e);
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            out->v = nv;
            cap = ncap;
        }
        out->v[out->n++] = e;
    }
    return 0;

fail:
    *err_line = line;
    dkp_table_free(out);
    return -1;
}
