/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sasl: base64, PLAIN, LOGIN and the AUTH arguments; see sasl.h.
 *
 * Everything works on (pointer, length) pairs and caller-owned fixed-size
 * structs: the inputs are attacker-supplied and may hold NUL bytes, and no
 * path here allocates. Every decoder writes within the bound it is given
 * and refuses rather than truncates, so a cut password can never be
 * checked as if it were the whole one.
 */
#include "sasl.h"

#include <limits.h>
#include <string.h>

static const char sasl__b64_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

const char *sasl_strerror(int rc)
{
    switch (rc) {
    case SASL_DONE:
        return "ok";
    case SASL_MORE:
        return "more";
    case SASL_EBASE64:
        return "malformed base64";
    case SASL_ETOOLONG:
        return "too long";
    case SASL_EMSG:
        return "malformed SASL message";
    case SASL_ESYNTAX:
        return "malformed AUTH arguments";
    case SASL_EMECH:
        return "mechanism not offered";
    case SASL_ECANCEL:
        return "cancelled by the client";
    default:
        return "unknown error";
    }
}

void sasl_wipe(void *p, size_t n)
{
    /* A volatile pointer: the stores cannot be proven dead and dropped. */
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

/* ---- base64 ------------------------------------------------------------- */

size_t sasl_b64_len(size_t n)
{
    return (n / 3 + (n % 3 != 0)) * 4;
}

int sasl_b64_encode(const void *in, size_t n, char *out, size_t outlen)
{
    const unsigned char *s = in;
    if (n > (size_t)INT_MAX / 4 * 3 - 3)
        return SASL_ETOOLONG; /* the length must fit the int result */
    size_t need = sasl_b64_len(n);
    if (outlen < need + 1)
        return SASL_ETOOLONG;
    char *o = out;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        *o++ = sasl__b64_alpha[(v >> 18) & 63];
        *o++ = sasl__b64_alpha[(v >> 12) & 63];
        *o++ = i + 1 < n ? sasl__b64_alpha[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? sasl__b64_alpha[v & 63] : '=';
    }
    *o = 0;
    return (int)need;
}

/* The 6-bit value of a base64 character, or -1. */
static int sasl__b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int sasl_b64_decode(const char *in, size_t len, void *out, size_t outcap, size_t *outlen)
{
    unsigned char *o = out;
    size_t n = 0;
    *outlen = 0;
    if (len % 4 != 0)
        return SASL_EBASE64;
    for (size_t i = 0; i < len; i += 4) {
        const unsigned char *q = (const unsigned char *)in + i;
        bool last = i + 4 == len;
        int v0 = sasl__b64_val(q[0]), v1 = sasl__b64_val(q[1]);
        int v2 = sasl__b64_val(q[2]), v3 = sasl__b64_val(q[3]);
        size_t bytes = 3;
        if (v0 < 0 || v1 < 0)
            return SASL_EBASE64;
        if (last && q[2] == '=' && q[3] == '=') {
            /* one byte: the low 4 bits of the second symbol are unused */
            if (v1 & 0x0f)
                return SASL_EBASE64;
            bytes = 1;
            v2 = v3 = 0;
        } else if (last && v2 >= 0 && q[3] == '=') {
            if (v2 & 0x03)
                return SASL_EBASE64;
            bytes = 2;
            v3 = 0;
        } else if (v2 < 0 || v3 < 0) {
            return SASL_EBASE64; /* '=' in the middle or a stray character */
        }
        if (n + bytes > outcap)
            return SASL_ETOOLONG;
        unsigned v = (unsigned)v0 << 18 | (unsigned)v1 << 12 | (unsigned)v2 << 6 | (unsigned)v3;
        o[n++] = (unsigned char)(v >> 16);
        if (bytes > 1)
            o[n++] = (unsigned char)(v >> 8);
        if (bytes > 2)
            o[n++] = (unsigned char)v;
    }
    *outlen = n;
    return SASL_DONE;
}

bool sasl_is_cancel(const char *line, size_t len)
{
    return len == 1 && line[0] == '*';
}

int sasl_response_decode(const char *line, size_t len, unsigned char *out, size_t *outlen)
{
    *outlen = 0;
    if (sasl_is_cancel(line, len))
        return SASL_ECANCEL;
    if (len == 0 || (len == 1 && line[0] == '='))
        return SASL_DONE;
    if (len > SASL_B64_MAX)
        return SASL_ETOOLONG;
    return sasl_b64_decode(line, len, out, SASL_MSG_MAX, outlen);
}

/* ---- AUTH --------------------------------------------------------------- */

static const struct {
    const char *name;
    enum sasl_mech mech;
} sasl__mechs[] = {
    {"PLAIN", SASL_MECH_PLAIN},
    {"LOGIN", SASL_MECH_LOGIN},
};

const char *sasl_mech_name(enum sasl_mech m)
{
    for (size_t i = 0; i < sizeof sasl__mechs / sizeof sasl__mechs[0]; i++)
        if (sasl__mechs[i].mech == m)
            return sasl__mechs[i].name;
    return "?";
}

/* RFC 4954 mech-char: uppercase letters, digits, '-', '_' (lowercase is
 * accepted: the name matches case-insensitively). */
static bool sasl__mech_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static bool sasl__name_eq(const char *a, size_t alen, const char *upper)
{
    size_t n = strlen(upper);
    if (alen != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c >= 'a' && c <= 'z')
            c = (unsigned char)(c - 'a' + 'A');
        if (c != (unsigned char)upper[i])
            return false;
    }
    return true;
}

int sasl_auth_parse(const char *args, size_t len, unsigned offered, struct sasl_auth_cmd *out)
{
    out->mech = SASL_MECH_NONE;
    out->has_ir = false;
    out->ir_len = 0;
    size_t m = 0;
    while (m < len && args[m] != ' ')
        m++;
    if (m == 0 || m > SASL_MECH_NAME_MAX)
        return SASL_ESYNTAX;
    for (size_t i = 0; i < m; i++)
        if (!sasl__mech_char((unsigned char)args[i]))
            return SASL_ESYNTAX;
    enum sasl_mech mech = SASL_MECH_NONE;
    for (size_t i = 0; i < sizeof sasl__mechs / sizeof sasl__mechs[0]; i++)
        if (sasl__name_eq(args, m, sasl__mechs[i].name))
            mech = sasl__mechs[i].mech;
    /* The rest is checked before the mechanism: a malformed line is a
     * syntax error whatever it names. */
    const char *ir = NULL;
    size_t irlen = 0;
    if (m < len) {
        ir = args + m + 1;
        irlen = len - m - 1;
        if (irlen == 0 || memchr(ir, ' ', irlen) != NULL || sasl_is_cancel(ir, irlen))
            return SASL_ESYNTAX;
    }
    if (mech == SASL_MECH_NONE || !(offered & (unsigned)mech))
        return SASL_EMECH;
    if (ir) {
        int rc = sasl_response_decode(ir, irlen, out->ir, &out->ir_len);
        if (rc < 0) {
            sasl_wipe(out->ir, sizeof out->ir);
            out->ir_len = 0;
            return rc;
        }
        out->has_ir = true;
    }
    out->mech = mech;
    return SASL_DONE;
}

/* ---- PLAIN -------------------------------------------------------------- */

static int sasl__copy_part(char *dst, const unsigned char *src, size_t n)
{
    if (n > SASL_FIELD_MAX)
        return SASL_ETOOLONG;
    memcpy(dst, src, n);
    dst[n] = 0;
    return SASL_DONE;
}

int sasl_plain_decode(const void *msg, size_t len, struct sasl_creds *out)
{
    const unsigned char *p = msg;
    const unsigned char *nul1 = len ? memchr(p, 0, len) : NULL;
    const unsigned char *nul2 = NULL;
    int rc = SASL_EMSG;
    memset(out, 0, sizeof *out);
    if (nul1)
        nul2 = memchr(nul1 + 1, 0, len - (size_t)(nul1 + 1 - p));
    /* exactly two NULs: the password holds none */
    if (!nul1 || !nul2 || memchr(nul2 + 1, 0, len - (size_t)(nul2 + 1 - p)) != NULL)
        goto bad;
    size_t zlen = (size_t)(nul1 - p);
    size_t clen = (size_t)(nul2 - nul1 - 1);
    size_t plen = len - (size_t)(nul2 + 1 - p);
    if (clen == 0 || plen == 0)
        goto bad;
    if ((rc = sasl__copy_part(out->authzid, p, zlen)) < 0 ||
        (rc = sasl__copy_part(out->authcid, nul1 + 1, clen)) < 0 ||
        (rc = sasl__copy_part(out->passwd, nul2 + 1, plen)) < 0)
        goto bad;
    return SASL_DONE;
bad:
    sasl_wipe(out, sizeof *out);
    return rc;
}

int sasl_plain_encode(const struct sasl_creds *c, unsigned char *out, size_t outcap)
{
    size_t z = strnlen(c->authzid, sizeof c->authzid);
    size_t u = strnlen(c->authcid, sizeof c->authcid);
    size_t p = strnlen(c->passwd, sizeof c->passwd);
    if (z > SASL_FIELD_MAX || u > SASL_FIELD_MAX || p > SASL_FIELD_MAX)
        return SASL_ETOOLONG;
    if (u == 0 || p == 0)
        return SASL_EMSG;
    size_t n = z + 1 + u + 1 + p;
    if (n > outcap)
        return SASL_ETOOLONG;
    memcpy(out, c->authzid, z);
    out[z] = 0;
    memcpy(out + z + 1, c->authcid, u);
    out[z + 1 + u] = 0;
    memcpy(out + z + u + 2, c->passwd, p);
    return (int)n;
}

/* ---- LOGIN -------------------------------------------------------------- */

/* One LOGIN field from decoded bytes: non-empty, no NUL, bounded. */
static int sasl__login_field(char *dst, const unsigned char *src, size_t n)
{
    if (n == 0 || memchr(src, 0, n) != NULL)
        return SASL_EMSG;
    return sasl__copy_part(dst, src, n);
}

static int sasl__login_fail(struct sasl_login *l, int rc)
{
    sasl_wipe(&l->creds, sizeof l->creds);
    l->step = SASL_LOGIN_END;
    return rc;
}

int sasl_login_begin(struct sasl_login *l, const struct sasl_auth_cmd *cmd, const char **prompt)
{
    memset(l, 0, sizeof *l);
    l->step = SASL_LOGIN_USER;
    *prompt = SASL_LOGIN_PROMPT_USER;
    if (cmd && cmd->has_ir) {
        int rc = sasl__login_field(l->creds.authcid, cmd->ir, cmd->ir_len);
        if (rc < 0)
            return sasl__login_fail(l, rc);
        l->step = SASL_LOGIN_PASS;
        *prompt = SASL_LOGIN_PROMPT_PASS;
    }
    return SASL_MORE;
}

int sasl_login_feed(struct sasl_login *l, const char *line, size_t len, const char **prompt)
{
    unsigned char msg[SASL_MSG_MAX];
    size_t n;
    *prompt = NULL;
    if (l->step == SASL_LOGIN_END)
        return SASL_EMSG;
    int rc = sasl_response_decode(line, len, msg, &n);
    if (rc < 0)
        return sasl__login_fail(l, rc);
    if (l->step == SASL_LOGIN_USER) {
        rc = sasl__login_field(l->creds.authcid, msg, n);
        sasl_wipe(msg, n);
        if (rc < 0)
            return sasl__login_fail(l, rc);
        l->step = SASL_LOGIN_PASS;
        *prompt = SASL_LOGIN_PROMPT_PASS;
        return SASL_MORE;
    }
    rc = sasl__login_field(l->creds.passwd, msg, n);
    sasl_wipe(msg, n);
    if (rc < 0)
        return sasl__login_fail(l, rc);
    l->step = SASL_LOGIN_END;
    return SASL_DONE;
}
