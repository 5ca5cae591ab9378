/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_ar: Authentication-Results rendering and recognition.
 *
 * The values written come from the message (d=, s=, b=), so they are
 * untrusted: anything outside the RFC 2045 token alphabet is written as a
 * quoted-string with '"' and '\' escaped and control bytes dropped, so a
 * hostile signature cannot inject a second result or a line break.
 */
#include "dkp_ar.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const dkp__res_names[] = {
    [DKP_RES_NONE] = "none",           [DKP_RES_PASS] = "pass",
    [DKP_RES_FAIL] = "fail",           [DKP_RES_NEUTRAL] = "neutral",
    [DKP_RES_POLICY] = "policy",       [DKP_RES_TEMPERROR] = "temperror",
    [DKP_RES_PERMERROR] = "permerror",
};

const char *dkp_ar_result_name(enum dkp_result r)
{
    if ((unsigned)r < sizeof dkp__res_names / sizeof dkp__res_names[0])
        return dkp__res_names[r];
    return "permerror";
}

/* RFC 2045 token character (no tspecials, no space or CTL). */
static int dkp__tokchar(unsigned char c)
{
    if (c <= 0x20 || c >= 0x7f)
        return 0;
    return strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

struct dkp__out {
    char *p;
    size_t len, cap;
    int overflow;
};

static void dkp__put(struct dkp__out *o, const char *s, size_t n)
{
    if (o->len + n >= o->cap) {
        o->overflow = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void dkp__puts(struct dkp__out *o, const char *s)
{
    dkp__put(o, s, strlen(s));
}

/* A pvalue: domain names and plain tokens bare, anything else quoted. */
static void dkp__value(struct dkp__out *o, const char *v)
{
    int plain = *v != '\0';

    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (!dkp__tokchar(*p))
            plain = 0;
    if (plain) {
        dkp__puts(o, v);
        return;
    }
    dkp__put(o, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            continue;
        if (*p == '"' || *p == '\\')
            dkp__put(o, "\\", 1);
        dkp__put(o, (const char *)p, 1);
    }
    dkp__put(o, "\"", 1);
}

int dkp_ar_format(const char *authserv_id, const struct dkp_sigres *r, char *out, size_t outlen)
{
    struct dkp__out o = {out, 0, outlen, 0};

    if (outlen == 0)
        return -1;
    out[0] = '\0';
    dkp__puts(&o, authserv_id);
    dkp__puts(&o, "; dkim=");
    if (!r) {
        dkp__puts(&o, "none");
        return o.overflow ? -1 : (int)o.len;
    }
    dkp__puts(&o, dkp_ar_result_name(r->result));
    if (r->result != DKP_RES_PASS && r->reason[0]) {
        dkp__puts(&o, " reason=");
        /* Always quoted: a reason is prose. */
        dkp__put(&o, "\"", 1);
        for (const unsigned char *p = (const unsigned char *)r->reason; *p; p++) {
            if (*p < 0x20 || *p == 0x7f)
                continue;
            if (*p == '"' || *p == '\\')
                dkp__put(&o, "\\", 1);
            dkp__put(&o, (const char *)p, 1);
        }
        dkp__put(&o, "\"", 1);
    }
    if (r->domain[0]) {
        dkp__puts(&o, " header.d=");
        dkp__value(&o, r->domain);
    }
    if (r->selector[0]) {
        dkp__puts(&o, " header.s=");
        dkp__value(&o, r->selector);
    }
    if (r->alg[0]) {
        dkp__puts(&o, " header.a=");
        dkp__value(&o, r->alg);
    }
    if (r->b[0]) {
        dkp__puts(&o, " header.b=");
        dkp__value(&o, r->b);
    }
    return o.overflow ? -1 : (int)o.len;
}

/* Skip folding white space and (nested) comments. */
static size_t dkp__skip_cfws(const char *v, size_t len, size_t i)
{
    int depth = 0;

    while (i < len) {
        char c = v[i];
        if (depth > 0) {
            if (c == '\\' && i + 1 < len)
                i++;
            else if (c == '(')
                depth++;
            else if (c == ')')
                depth--;
            i++;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            i++;
        } else if (c == '(') {
            depth++;
            i++;
        } else {
            break;
        }
    }
    return i;
}

int dkp_ar_has_authserv_id(const char *value, size_t len, const char *id)
{
    size_t idlen = strlen(id);
    size_t i = dkp__skip_cfws(value, len, 0);
    char got[256];
    size_t n = 0;

    if (i < len && value[i] == '"') {
        /* quoted-string form of the authserv-id */
        for (i++; i < len && value[i] != '"'; i++) {
            if (value[i] == '\\' && i + 1 < len)
                i++;
            if (n + 1 >= sizeof got)
                return 0;
            got[n++] = value[i];
        }
        if (i >= len)
            return 0;
    } else {
        for (; i < len && dkp__tokchar((unsigned char)value[i]); i++) {
            if (n + 1 >= sizeof got)
                return 0;
            got[n++] = value[i];
        }
    }
    got[n] = '\0';
    return n == idlen && strncasecmp(got, id, idlen) == 0;
}

int dkp_ar_valid_authserv_id(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 255)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!dkp__tokchar((unsigned char)s[i]))
            return 0;
    return 1;
}
