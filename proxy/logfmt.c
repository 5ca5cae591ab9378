/* SPDX-License-Identifier: GPL-2.0-or-later */
/* logfmt: see logfmt.h. Every writer here is bounded by its caller's
 * buffer and checks room before each escape unit, so a record is either
 * written whole or cut at a unit boundary, never mid-escape. */
#include "logfmt.h"

#include <string.h>

static const char logfmt__hex[] = "0123456789abcdef";

/* Length of the well-formed UTF-8 sequence (RFC 3629) at p, 0 if there is
 * none (stray continuation, overlong form, surrogate, above U+10FFFF, cut
 * short by end). */
static size_t logfmt__utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

static int logfmt__hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Undo log_quote()'s escapes (\" \\ \xHH) of v[0..n) into out (room for at
 * most cap bytes); a backslash starting anything else stays as it is.
 * Returns the length; *cut set when out was too small. */
static size_t logfmt__unquote(const char *v, size_t n, unsigned char *out, size_t cap, bool *cut)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (j == cap) {
            *cut = true;
            break;
        }
        unsigned char c = (unsigned char)v[i];
        if (c == '\\' && i + 1 < n && (v[i + 1] == '"' || v[i + 1] == '\\')) {
            c = (unsigned char)v[++i];
        } else if (c == '\\' && i + 3 < n && v[i + 1] == 'x' && logfmt__hexval(v[i + 2]) >= 0 &&
                   logfmt__hexval(v[i + 3]) >= 0) {
            c = (unsigned char)(logfmt__hexval(v[i + 2]) << 4 | logfmt__hexval(v[i + 3]));
            i += 3;
        }
        out[j++] = c;
    }
    return j;
}

static bool logfmt__keychar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

static bool logfmt__taken(const struct logfmt_field *f, size_t n, const char *key, size_t kl)
{
    static const char *const own[] = {"time", "level", "program", "msg"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (strlen(own[i]) == kl && memcmp(own[i], key, kl) == 0)
            return true;
    for (size_t i = 0; i < n; i++)
        if (f[i].keylen == kl && memcmp(f[i].key, key, kl) == 0)
            return true;
    return false;
}

size_t logfmt_fields(const char *text, size_t len, struct logfmt_field *out, size_t max)
{
    size_t i = 0, n = 0;
    while (i < len && n < max) {
        while (i < len && text[i] == ' ')
            i++;
        size_t start = i, k = i;
        if (k < len && ((text[k] >= 'a' && text[k] <= 'z') || (text[k] >= 'A' && text[k] <= 'Z')))
            for (k++; k < len && logfmt__keychar(text[k]); k++)
                ;
        if (k == start || k >= len || text[k] != '=' || k - start > LOGFMT_KEY_MAX) {
            while (i < len && text[i] != ' ') /* a word of free text */
                i++;
            continue;
        }
        struct logfmt_field f = {.key = text + start, .keylen = k - start};
        size_t v = k + 1, j = v;
        if (v < len && text[v] == '"') {
            for (j = v + 1; j < len && text[j] != '"'; j++)
                if (text[j] == '\\' && j + 1 < len)
                    j++;
            f.val = text + v + 1;
            f.vallen = (j < len ? j : len) - (v + 1);
            f.quoted = true;
            while (j < len && text[j] != ' ') /* past the closing quote */
                j++;
        } else {
            while (j < len && text[j] != ' ')
                j++;
            f.val = text + v;
            f.vallen = j - v;
            /* "(listener main, tls=none)": the punctuation is the sentence's */
            while (f.vallen > 0 && (f.val[f.vallen - 1] == ',' || f.val[f.vallen - 1] == ')'))
                f.vallen--;
        }
        i = j;
        if (!logfmt__taken(out, n, f.key, f.keylen))
            out[n++] = f;
    }
    return n;
}

size_t logfmt_value(const struct logfmt_field *f, char *dst, size_t cap)
{
    unsigned char raw[4096];
    const unsigned char *p = (const unsigned char *)f->val;
    size_t n = f->vallen;
    bool cut = false;
    if (f->quoted) {
        n = logfmt__unquote(f->val, f->vallen, raw, sizeof raw, &cut);
        p = raw;
    }
    const unsigned char *end = p + n;
    size_t j = 0;
    while (p < end) {
        size_t u = logfmt__utf8_len(p, end);
        if (u) {
            if (j + u + 1 > cap)
                break;
            memcpy(dst + j, p, u);
            j += u;
            p += u;
        } else { /* Latin-1: U+0080..U+00FF in two bytes */
            if (j + 3 > cap)
                break;
            dst[j++] = (char)(0xc0 | *p >> 6);
            dst[j++] = (char)(0x80 | (*p & 0x3f));
            p++;
        }
    }
    dst[j] = 0;
    return j;
}

size_t logfmt_journal_name(char *dst, size_t cap, const char *key, size_t keylen)
{
    static const char prefix[] = "SLUICE_";
    size_t pl = sizeof prefix - 1;
    if (pl + keylen + 1 > cap || pl + keylen > 64)
        return 0;
    memcpy(dst, prefix, pl);
    for (size_t i = 0; i < keylen; i++) {
        char c = key[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            c = '_';
        dst[pl + i] = c;
    }
    dst[pl + keylen] = 0;
    return pl + keylen;
}

/* ---- JSON ------------------------------------------------------------------ */

struct logfmt__w {
    char *p;
    size_t len, cap; /* cap: what may be used, the closing bytes kept aside */
};

static bool logfmt__raw(struct logfmt__w *w, const char *s, size_t n)
{
    if (w->len + n > w->cap)
        return false;
    memcpy(w->p + w->len, s, n);
    w->len += n;
    return true;
}

/* s[0..n) as a JSON string. Whole or not at all, unless partial: then as
 * much as fits (the quotes always closed). false when anything was left. */
static bool logfmt__str(struct logfmt__w *w, const unsigned char *s, size_t n, bool partial)
{
    size_t start = w->len;
    const unsigned char *end = s + n;
    if (w->len + 2 > w->cap)
        return false;
    w->p[w->len++] = '"';
    while (s < end) {
        char esc[6];
        const char *unit = (const char *)s;
        size_t ul, adv;
        if (*s >= 0x20 && *s != '"' && *s != '\\' && *s < 0x80) {
            ul = adv = 1;
        } else if (*s >= 0x80 && (adv = logfmt__utf8_len(s, end)) != 0) {
            ul = adv;
        } else {
            esc[0] = '\\';
            if (*s == '"' || *s == '\\') {
                esc[1] = (char)*s;
                ul = 2;
            } else {
                memcpy(esc + 1, "u00", 3);
                esc[4] = logfmt__hex[*s >> 4];
                esc[5] = logfmt__hex[*s & 15];
                ul = 6;
            }
            unit = esc;
            adv = 1;
        }
        if (w->len + ul + 1 > w->cap) { /* + the closing quote */
            if (!partial)
                w->len = start;
            else
                w->p[w->len++] = '"';
            return false;
        }
        memcpy(w->p + w->len, unit, ul);
        w->len += ul;
        s += adv;
    }
    w->p[w->len++] = '"';
    return true;
}

/* ,"name":"value" (name with its punctuation), the value cut to fit;
 * nothing at all when not even its opening quote fits. false when cut. */
static bool logfmt__member(struct logfmt__w *w, const char *name, const unsigned char *v, size_t n)
{
    size_t save = w->len;
    if (!logfmt__raw(w, name, strlen(name)))
        return false;
    size_t at = w->len;
    bool whole = logfmt__str(w, v, n, true);
    if (w->len == at)
        w->len = save;
    return whole;
}

static bool logfmt__cmember(struct logfmt__w *w, const char *name, const char *s)
{
    s = s ? s : "";
    return logfmt__member(w, name, (const unsigned char *)s, strlen(s));
}

size_t logfmt_json(char *dst, size_t cap, const struct logfmt_rec *r)
{
    static const char tail_cut[] = ",\"truncated\":true}\n";
    if (cap < LOGFMT_JSON_MIN) {
        if (cap)
            dst[0] = 0;
        return 0;
    }
    struct logfmt__w w = {dst, 0, cap - sizeof tail_cut}; /* sizeof: with the NUL */
    bool cut = false;
    logfmt__raw(&w, "{", 1);
    /* The first member has no comma: its name is written with the brace. */
    cut |= !logfmt__cmember(&w, "\"time\":", r->time);
    if (w.len == 1) { /* cannot happen with cap >= LOGFMT_JSON_MIN; keep the JSON valid */
        logfmt__raw(&w, "\"time\":\"\"", 9);
        cut = true;
    }
    cut |= !logfmt__cmember(&w, ",\"level\":", r->level);
    cut |= !logfmt__cmember(&w, ",\"program\":", r->program);
    const char *text = r->text ? r->text : "";
    struct logfmt_field f[LOGFMT_FIELDS_MAX];
    size_t nf = logfmt_fields(text, r->len, f, LOGFMT_FIELDS_MAX);
    for (size_t i = 0; i < nf; i++) {
        size_t save = w.len;
        unsigned char raw[4096];
        const unsigned char *v = (const unsigned char *)f[i].val;
        size_t vl = f[i].vallen;
        bool vcut = false;
        if (f[i].quoted) {
            vl = logfmt__unquote(f[i].val, f[i].vallen, raw, sizeof raw, &vcut);
            v = raw;
        }
        if (vcut || !logfmt__raw(&w, ",", 1) ||
            !logfmt__str(&w, (const unsigned char *)f[i].key, f[i].keylen, false) ||
            !logfmt__raw(&w, ":", 1) || !logfmt__str(&w, v, vl, false)) {
            w.len = save;
            cut = true;
        }
    }
    cut |= !logfmt__member(&w, ",\"msg\":", (const unsigned char *)text, r->len);
    /* The room kept aside by w.cap. */
    if (cut) {
        memcpy(dst + w.len, tail_cut, sizeof tail_cut);
        w.len += sizeof tail_cut - 1;
    } else {
        memcpy(dst + w.len, "}\n", 3);
        w.len += 2;
    }
    return w.len;
}
