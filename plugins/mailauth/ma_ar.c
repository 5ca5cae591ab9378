/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ma_ar: Authentication-Results values (see ma_ar.h).
 */
#include "ma_ar.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 2045 token characters (what a pvalue may hold unquoted, besides the
 * '@' and '.' of addresses and domains, which RFC 8601 allows). */
static bool ma__tokchar(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("()<>,;:\\\"/[]?=", c);
}

/* A lexer over the value: words (token characters plus '.', '@', '/'),
 * quoted strings, and the separators ';' and '='. CFWS is skipped. */
struct ma__lex {
    const char *p;
    int bad;
};

static void ma__cfws(struct ma__lex *l)
{
    for (;;) {
        while (*l->p == ' ' || *l->p == '\t' || *l->p == '\r' || *l->p == '\n')
            l->p++;
        if (*l->p != '(')
            return;
        int depth = 0;
        do {
            if (*l->p == '\\' && l->p[1])
                l->p++;
            else if (*l->p == '(')
                depth++;
            else if (*l->p == ')')
                depth--;
            if (!*l->p) {
                l->bad = 1;
                return;
            }
            l->p++;
        } while (depth > 0);
    }
}

/* The next item into buf: returns its kind ('w' word, 'q' quoted string,
 * ';', '=', 0 at the end, -1 on error). */
static int ma__next(struct ma__lex *l, char *buf, size_t bufsz)
{
    size_t n = 0;
    ma__cfws(l);
    if (l->bad)
        return -1;
    char c = *l->p;
    if (!c)
        return 0;
    if (c == ';' || c == '=') {
        l->p++;
        return c;
    }
    if (c == '"') {
        l->p++;
        while (*l->p && *l->p != '"') {
            if (*l->p == '\\' && l->p[1])
                l->p++;
            /* Printable ASCII only: the text goes into a header field we
             * write, and 8-bit bytes have no place in RFC 8601 values. */
            if (n + 1 < bufsz && (unsigned char)*l->p >= 0x20 && (unsigned char)*l->p < 0x7f)
                buf[n++] = *l->p;
            l->p++;
        }
        if (*l->p != '"')
            return -1;
        l->p++;
        buf[n] = '\0';
        return 'q';
    }
    while (*l->p && (ma__tokchar((unsigned char)*l->p) || *l->p == '/' || *l->p == '@')) {
        if (n + 1 < bufsz)
            buf[n++] = *l->p;
        l->p++;
    }
    if (n == 0)
        return -1; /* a character that starts nothing */
    buf[n] = '\0';
    return 'w';
}

/* Copy src into dst[0..dstsz), cut if need be, NUL-terminated. */
static void ma__copy(char *dst, size_t dstsz, const char *src)
{
    size_t n = strlen(src);
    if (n >= dstsz)
        n = dstsz - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* A method, result or property name (RFC 8601 "Keyword", with '.' between
 * ptype and property when dots is set): letters, digits, '-', '_'. */
static bool ma__keyword(const char *s, bool dots)
{
    if (!*s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || (dots && *s == '.')))
            return false;
    return true;
}

static void ma__append(char **s, size_t *len, const char *add)
{
    size_t a = strlen(add);
    char *g = realloc(*s, *len + a + 1);
    if (!g)
        return;
    memcpy(g + *len, add, a + 1);
    *s = g;
    *len += a;
}

void ma_ar_value_free(struct ma_ar_value *v)
{
    for (size_t i = 0; i < v->nres; i++)
        free(v->res[i]);
    memset(v, 0, sizeof *v);
}

int ma_ar_parse(const char *value, const char *id, struct ma_ar_value *out)
{
    struct ma__lex l = {.p = value};
    char tok[1024];

    memset(out, 0, sizeof *out);
    if (!value || !id)
        return -1;
    if (ma__next(&l, tok, sizeof tok) != 'w')
        return -1;
    if (strcasecmp(tok, id) != 0)
        return 0;
    int k = ma__next(&l, tok, sizeof tok);
    if (k == 'w') /* an authres-version after the id */
        k = ma__next(&l, tok, sizeof tok);
    if (k == 0)
        return 1; /* "id" alone: nothing said */
    if (k != ';')
        return -1;
    for (;;) {
        k = ma__next(&l, tok, sizeof tok);
        if (k == 0)
            break;
        if (k != 'w')
            goto bad;
        if (!strcasecmp(tok, "none"))
            break; /* "id; none" */
        /* method[/version] = result */
        char method[64];
        ma__copy(method, sizeof method, tok);
        char *slash = strchr(method, '/');
        if (slash)
            *slash = '\0';
        /* "none" with a version is no method: written back without the
         * version it would read as the no-result marker. */
        if (!strcasecmp(method, "none"))
            goto bad;
        if (!ma__keyword(method, false) || ma__next(&l, tok, sizeof tok) != '=' ||
            ma__next(&l, tok, sizeof tok) != 'w' || !ma__keyword(tok, false))
            goto bad;
        char *text = NULL;
        size_t tlen = 0;
        ma__append(&text, &tlen, method);
        ma__append(&text, &tlen, "=");
        ma__append(&text, &tlen, tok);
        struct ma_ar_dkim dk = {{0}, {0}, {0}};
        int is_dkim = !strcasecmp(method, "dkim");
        if (is_dkim)
            ma__copy(dk.result, sizeof dk.result, tok);
        /* properties until ';' or the end: ptype.property = pvalue, and
         * "reason = value" */
        for (;;) {
            k = ma__next(&l, tok, sizeof tok);
            if (k == ';' || k == 0)
                break;
            if (k != 'w') {
                free(text);
                goto bad;
            }
            char prop[128], val[1024];
            ma__copy(prop, sizeof prop, tok);
            if (!ma__keyword(prop, true)) {
                free(text);
                goto bad;
            }
            if (ma__next(&l, tok, sizeof tok) != '=') {
                free(text);
                goto bad;
            }
            int vk = ma__next(&l, val, sizeof val);
            if (vk != 'w' && vk != 'q') {
                free(text);
                goto bad;
            }
            char pv[1100];
            ma__append(&text, &tlen, " ");
            ma__append(&text, &tlen, prop);
            ma__append(&text, &tlen, "=");
            if (ma_ar_pvalue(val, pv, sizeof pv) < 0) {
                free(text);
                goto bad;
            }
            ma__append(&text, &tlen, pv);
            if (is_dkim && !strcasecmp(prop, "header.d")) {
                size_t i = 0;
                for (; val[i] && i + 1 < sizeof dk.d; i++)
                    dk.d[i] = (char)tolower((unsigned char)val[i]);
                dk.d[i] = '\0';
            } else if (is_dkim && !strcasecmp(prop, "header.s")) {
                ma__copy(dk.s, sizeof dk.s, val);
            }
        }
        if (!text)
            goto bad;
        if (out->nres < MA_AR_MAX_RESINFO) {
            out->res[out->nres++] = text;
            if (is_dkim)
                out->dkim[out->ndkim++] = dk;
        } else {
            free(text);
        }
        if (k == 0)
            break;
    }
    return 1;
bad:
    ma_ar_value_free(out);
    return -1;
}

int ma_ar_pvalue(const char *v, char *out, size_t outsz)
{
    bool plain = *v != '\0';
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (!ma__tokchar(*p) && *p != '@')
            plain = false;
    size_t n = 0;
    if (plain) {
        n = strlen(v);
        if (n + 1 > outsz)
            return -1;
        memcpy(out, v, n + 1);
        return (int)n;
    }
    if (outsz < 3)
        return -1;
    out[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p < 0x20 || *p >= 0x7f)
            continue;
        if (*p == '"' || *p == '\\') {
            if (n + 1 >= outsz)
                return -1;
            out[n++] = '\\';
        }
        if (n + 1 >= outsz)
            return -1;
        out[n++] = (char)*p;
    }
    if (n + 2 > outsz)
        return -1;
    out[n++] = '"';
    out[n] = '\0';
    return (int)n;
}
