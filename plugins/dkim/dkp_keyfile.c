/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_keyfile: parser of the test-mode key file (format in dkp_keyfile.h).
 */
#include "dkp_keyfile.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void dkp_keyfile_free(struct dkp_keyfile *kf)
{
    for (size_t i = 0; i < kf->n; i++) {
        free(kf->v[i].name);
        free(kf->v[i].record);
    }
    free(kf->v);
    kf->v = NULL;
    kf->n = 0;
}

/* The record text: either as written (trimmed) or the concatenation of
 * quoted chunks. NULL on a syntax error (message in err). */
static char *dkp__record(const char *s, size_t len, char *err, size_t errlen)
{
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
        len--;
    if (len == 0) {
        snprintf(err, errlen, "missing record text after the name");
        return NULL;
    }
    if (s[0] != '"')
        return strndup(s, len);
    char *out = malloc(len + 1);
    size_t w = 0, i = 0;
    if (!out)
        return NULL;
    while (i < len) {
        if (s[i] == ' ' || s[i] == '\t') {
            i++;
            continue;
        }
        if (s[i] != '"') {
            snprintf(err, errlen, "text outside quotes in a quoted record");
            free(out);
            return NULL;
        }
        for (i++; i < len && s[i] != '"'; i++) {
            if (s[i] == '\\' && i + 1 < len)
                i++;
            out[w++] = s[i];
        }
        if (i >= len) {
            snprintf(err, errlen, "unterminated quoted chunk");
            free(out);
            return NULL;
        }
        i++;
    }
    out[w] = '\0';
    return out;
}

int dkp_keyfile_parse(const char *text, size_t len, struct dkp_keyfile *out, unsigned *err_line,
                      char *err, size_t errlen)
{
    unsigned line = 0;
    size_t pos = 0;

    out->v = NULL;
    out->n = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        const char *s = text + pos;
        size_t n = end - pos, i = 0;

        line++;
        pos = nl ? end + 1 : len;
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
            i++;
        if (i == n || s[i] == '#')
            continue;
        size_t nstart = i;
        while (i < n && s[i] != ' ' && s[i] != '\t')
            i++;
        size_t nlen = i - nstart;
        if (nlen > 1 && s[nstart + nlen - 1] == '.')
            nlen--;
        if (nlen > 1 && s[nstart + nlen - 1] == '.') {
            snprintf(err, errlen, "empty label at the end of the name");
            goto fail;
        }
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (memchr(s, '\0', n)) {
            snprintf(err, errlen, "NUL byte in line");
            goto fail;
        }
        char *rec = dkp__record(s + i, n - i, err, errlen);
        if (!rec)
            goto fail;
        struct dkp_keyfile_rec *nv = realloc(out->v, (out->n + 1) * sizeof *nv);
        char *name = strndup(s + nstart, nlen);
        if (!nv || !name) {
            if (nv)
                out->v = nv;
            free(rec);
            free(name);
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        for (char *p = name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        out->v = nv;
        out->v[out->n].name = name;
        out->v[out->n].record = rec;
        out->n++;
    }
    return 0;
fail:
    *err_line = line;
    dkp_keyfile_free(out);
    return -1;
}

const char *dkp_keyfile_find(const struct dkp_keyfile *kf, const char *name)
{
    size_t n = strlen(name);

    if (n > 1 && name[n - 1] == '.')
        n--;
    for (size_t i = 0; i < kf->n; i++)
        if (strlen(kf->v[i].name) == n && strncasecmp(kf->v[i].name, name, n) == 0)
            return kf->v[i].record;
    return NULL;
}
