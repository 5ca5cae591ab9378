/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dvauth: Dovecot auth protocol codec; see dvauth.h.
 *
 * Lines are walked field by field with a cursor (no array of fields: a
 * hostile 16 KiB line of TABs would need one of 16,384 entries). Every
 * value copied out goes through dvauth_unescape() into a fixed buffer.
 */
#include "dvauth.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "sasl.h"

const char *dvauth_strerror(int rc)
{
    switch (rc) {
    case DVAUTH_OK:
        return "ok";
    case DVAUTH_MORE:
        return "more";
    case DVAUTH_EPROTO:
        return "protocol error";
    case DVAUTH_EVERSION:
        return "unsupported protocol version";
    case DVAUTH_ETOOLONG:
        return "line or value too long";
    case DVAUTH_EARG:
        return "unusable request";
    case DVAUTH_ENOMECH:
        return "mechanism not offered by the server";
    default:
        return "unknown error";
    }
}

/* ---- framing and escaping ----------------------------------------------- */

long dvauth_line_end(const char *data, size_t len)
{
    size_t n = len < DVAUTH_LINE_MAX ? len : DVAUTH_LINE_MAX;
    const char *lf = memchr(data, '\n', n);
    if (lf)
        return (long)(lf - data);
    return len >= DVAUTH_LINE_MAX ? DVAUTH_ETOOLONG : -1;
}

void dvauth_escape(buf_t *out, const char *s)
{
    for (; *s; s++) {
        char esc = 0;
        switch (*s) {
        case '\001':
            esc = '1';
            break;
        case '\t':
            esc = 't';
            break;
        case '\r':
            esc = 'r';
            break;
        case '\n':
            esc = 'n';
            break;
        default:
            break;
        }
        if (esc) {
            char two[2] = {'\001', esc};
            buf_append(out, two, 2);
        } else {
            buf_append(out, s, 1);
        }
    }
}

int dvauth_unescape(const char *in, size_t len, char *out, size_t outcap)
{
    size_t n = 0;
    if (outcap == 0)
        return DVAUTH_ETOOLONG;
    out[0] = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '\001') {
            if (++i == len)
                break; /* a trailing escape byte writes nothing, as in Dovecot */
            switch (in[i]) {
            case '1':
                c = '\001';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case 'n':
                c = '\n';
                break;
            case '0':
                c = 0;
                break;
            default:
                c = in[i];
                break;
            }
        }
        if (c == 0)
            return DVAUTH_EPROTO;
        if (n + 1 >= outcap)
            return DVAUTH_ETOOLONG;
        out[n++] = c;
    }
    out[n] = 0;
    return DVAUTH_OK;
}

/* A cursor over the TAB-separated fields of one line. */
struct dvauth__cur {
    const char *p, *end;
    bool more; /* a field is left (possibly empty) */
};

static void dvauth__cur_init(struct dvauth__cur *c, const char *line, size_t len)
{
    c->p = line;
    c->end = line + len;
    c->more = true;
}

/* The next field; false when none is left. */
static bool dvauth__next(struct dvauth__cur *c, const char **f, size_t *flen)
{
    if (!c->more)
        return false;
    const char *tab = memchr(c->p, '\t', (size_t)(c->end - c->p));
    *f = c->p;
    if (tab) {
        *flen = (size_t)(tab - c->p);
        c->p = tab + 1;
    } else {
        *flen = (size_t)(c->end - c->p);
        c->p = c->end;
        c->more = false;
    }
    return true;
}

static bool dvauth__eq(const char *f, size_t flen, const char *s)
{
    return flen == strlen(s) && memcmp(f, s, flen) == 0;
}

/* f starts with "name=": the value in *v. */
static bool dvauth__kv(const char *f, size_t flen, const char *name, const char **v, size_t *vlen)
{
    size_t n = strlen(name);
    if (flen <= n || memcmp(f, name, n) != 0 || f[n] != '=')
        return false;
    *v = f + n + 1;
    *vlen = flen - n - 1;
    return true;
}

/* A decimal number, digits only, 1..max (0 allowed when zero_ok). */
static bool dvauth__num(const char *f, size_t flen, unsigned long max, bool zero_ok,
                        unsigned long *out)
{
    unsigned long v = 0;
    if (flen == 0 || flen > 20)
        return false;
    for (size_t i = 0; i < flen; i++) {
        if (f[i] < '0' || f[i] > '9')
            return false;
        unsigned d = (unsigned)(f[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (v == 0 && !zero_ok)
        return false;
    *out = v;
    return true;
}

/* ---- handshake ---------------------------------------------------------- */

void dvauth_build_hello(buf_t *out, unsigned long pid)
{
    buf_printf(out, "VERSION\t%d\t%d\nCPID\t%lu\n", DVAUTH_MAJOR, DVAUTH_MINOR, pid);
}

void dvauth_hs_init(struct dvauth_hs *hs)
{
    memset(hs, 0, sizeof *hs);
}

static bool dvauth__ieq(const char *f, size_t flen, const char *upper)
{
    if (flen != strlen(upper))
        return false;
    for (size_t i = 0; i < flen; i++) {
        char c = f[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c != upper[i])
            return false;
    }
    return true;
}

int dvauth_hs_line(struct dvauth_hs *hs, const char *line, size_t len)
{
    struct dvauth__cur c;
    const char *cmd, *f;
    size_t cmdlen, flen;
    unsigned long v;
    if (hs->done)
        return DVAUTH_EPROTO;
    if (len >= DVAUTH_LINE_MAX)
        return DVAUTH_ETOOLONG;
    dvauth__cur_init(&c, line, len);
    dvauth__next(&c, &cmd, &cmdlen);
    if (!hs->got_version) {
        /* Anything before VERSION means we are not talking to Dovecot's
         * auth-client socket (or to a newer protocol): stop here. */
        unsigned long major, minor;
        const char *f2;
        size_t f2len;
        if (!dvauth__eq(cmd, cmdlen, "VERSION") || !dvauth__next(&c, &f, &flen) ||
            !dvauth__next(&c, &f2, &f2len) || !dvauth__num(f, flen, UINT_MAX, true, &major) ||
            !dvauth__num(f2, f2len, UINT_MAX, true, &minor))
            return DVAUTH_EPROTO;
        if (major != DVAUTH_MAJOR)
            return DVAUTH_EVERSION;
        hs->got_version = true;
        hs->major = (unsigned)major;
        hs->minor = (unsigned)minor;
        return DVAUTH_MORE;
    }
    if (dvauth__eq(cmd, cmdlen, "VERSION")) {
        return DVAUTH_EPROTO; /* twice */
    } else if (dvauth__eq(cmd, cmdlen, "MECH")) {
        if (!dvauth__next(&c, &f, &flen) || flen == 0)
            return DVAUTH_EPROTO;
        hs->nmechs++;
        if (dvauth__ieq(f, flen, "PLAIN"))
            hs->mechs |= DVAUTH_MECH_PLAIN;
        else if (dvauth__ieq(f, flen, "LOGIN"))
            hs->mechs |= DVAUTH_MECH_LOGIN;
        /* the flags (plaintext, dictionary, private, ...) do not matter
         * for a client that only relays PLAIN credentials */
    } else if (dvauth__eq(cmd, cmdlen, "SPID") || dvauth__eq(cmd, cmdlen, "CUID")) {
        if (!dvauth__next(&c, &f, &flen) || !dvauth__num(f, flen, ULONG_MAX, true, &v))
            return DVAUTH_EPROTO;
        if (cmd[0] == 'S')
            hs->spid = v;
        else
            hs->cuid = v;
    } else if (dvauth__eq(cmd, cmdlen, "COOKIE")) {
        if (!dvauth__next(&c, &f, &flen) || flen == 0 || flen >= sizeof hs->cookie)
            return DVAUTH_EPROTO;
        for (size_t i = 0; i < flen; i++)
            if (!((f[i] >= '0' && f[i] <= '9') || (f[i] >= 'a' && f[i] <= 'f') ||
                  (f[i] >= 'A' && f[i] <= 'F')))
                return DVAUTH_EPROTO;
        memcpy(hs->cookie, f, flen);
        hs->cookie[flen] = 0;
    } else if (dvauth__eq(cmd, cmdlen, "DONE")) {
        hs->done = true;
        return DVAUTH_OK;
    }
    /* unknown commands: ignored (the protocol may grow) */
    return DVAUTH_MORE;
}

/* ---- requests ----------------------------------------------------------- */

/* A value we send: bounded, and any TAB/LF escaped by dvauth_escape(). */
static bool dvauth__ok_value(const char *s, size_t max)
{
    return s && *s && strlen(s) <= max;
}

static bool dvauth__mech_ok(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > SASL_MECH_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = m[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

int dvauth_build_auth(buf_t *out, unsigned id, const struct dvauth_req *req)
{
    const char *mech = req->mech ? req->mech : "PLAIN";
    const char *service = req->service ? req->service : "smtp";
    unsigned char msg[SASL_MSG_MAX];
    const unsigned char *resp = req->resp;
    size_t resp_len = req->resp_len;
    int rc = DVAUTH_OK;
    if (id == 0 || !dvauth__mech_ok(mech) || !dvauth__ok_value(service, 64))
        return DVAUTH_EARG;
    if ((req->lip && !dvauth__ok_value(req->lip, 64)) ||
        (req->rip && !dvauth__ok_value(req->rip, 64)) ||
        (req->session && !dvauth__ok_value(req->session, 128)) || req->lport > 65535 ||
        req->rport > 65535)
        return DVAUTH_EARG;
    if (req->user) {
        struct sasl_creds cr;
        if (strcmp(mech, "PLAIN") != 0 || !req->pass)
            return DVAUTH_EARG;
        memset(&cr, 0, sizeof cr);
        size_t z = req->authzid ? strlen(req->authzid) : 0;
        size_t u = strlen(req->user), p = strlen(req->pass);
        if (z > SASL_FIELD_MAX || u > SASL_FIELD_MAX || p > SASL_FIELD_MAX)
            return DVAUTH_EARG;
        memcpy(cr.authzid, req->authzid ? req->authzid : "", z);
        memcpy(cr.authcid, req->user, u);
        memcpy(cr.passwd, req->pass, p);
        int n = sasl_plain_encode(&cr, msg, sizeof msg);
        sasl_wipe(&cr, sizeof cr);
        if (n < 0)
            return DVAUTH_EARG;
        resp = msg;
        resp_len = (size_t)n;
    } else if (!req->resp || req->resp_len > SASL_MSG_MAX) {
        return DVAUTH_EARG;
    }

    size_t start = out->len;
    buf_printf(out, "AUTH\t%u\t%s\tservice=", id, mech);
    dvauth_escape(out, service);
    if (req->secured)
        buf_puts(out, "\tsecured");
    if (req->no_penalty)
        buf_puts(out, "\tno-penalty");
    if (req->session) {
        buf_puts(out, "\tsession=");
        dvauth_escape(out, req->session);
    }
    if (req->lip) {
        buf_puts(out, "\tlip=");
        dvauth_escape(out, req->lip);
    }
    if (req->rip) {
        buf_puts(out, "\trip=");
        dvauth_escape(out, req->rip);
    }
    if (req->lport)
        buf_printf(out, "\tlport=%u", req->lport);
    if (req->rport)
        buf_printf(out, "\trport=%u", req->rport);
    /* resp= must be last: Dovecot ignores what follows it. Base64 holds
     * no TAB or LF, so it needs no escaping. An empty response is sent as
     * "resp=" (present, zero bytes), not left out, which would mean "no
     * initial response" and make Dovecot answer CONT. */
    char b64[SASL_B64_MAX + 1];
    if (sasl_b64_encode(resp, resp_len, b64, sizeof b64) < 0) {
        rc = DVAUTH_EARG;
    } else {
        buf_puts(out, "\tresp=");
        buf_puts(out, b64);
        buf_puts(out, "\n");
        if (out->len - start > DVAUTH_LINE_MAX)
            rc = DVAUTH_ETOOLONG;
    }
    sasl_wipe(b64, sizeof b64);
    sasl_wipe(msg, sizeof msg);
    if (rc < 0) {
        sasl_wipe(out->ptr + start, out->len - start);
        out->len = start;
        out->ptr[start] = 0;
    }
    return rc;
}

/* ---- replies ------------------------------------------------------------ */

int dvauth_reply_parse(const char *line, size_t len, struct dvauth_reply *r)
{
    struct dvauth__cur c;
    const char *cmd, *f, *v;
    size_t cmdlen, flen, vlen;
    unsigned long id;
    memset(r, 0, sizeof *r);
    if (len >= DVAUTH_LINE_MAX)
        return DVAUTH_ETOOLONG;
    dvauth__cur_init(&c, line, len);
    dvauth__next(&c, &cmd, &cmdlen);
    if (dvauth__eq(cmd, cmdlen, "OK"))
        r->kind = DVAUTH_R_OK;
    else if (dvauth__eq(cmd, cmdlen, "FAIL"))
        r->kind = DVAUTH_R_FAIL;
    else if (dvauth__eq(cmd, cmdlen, "CONT"))
        r->kind = DVAUTH_R_CONT;
    else
        return DVAUTH_OK; /* DVAUTH_R_IGNORE */
    if (!dvauth__next(&c, &f, &flen) || !dvauth__num(f, flen, UINT32_MAX, false, &id))
        goto bad;
    r->id = (unsigned)id;
    if (r->kind == DVAUTH_R_CONT) {
        if (!dvauth__next(&c, &f, &flen))
            goto bad;
        r->data = f;
        r->data_len = flen;
        return DVAUTH_OK;
    }
    while (dvauth__next(&c, &f, &flen)) {
        if (dvauth__kv(f, flen, "user", &v, &vlen)) {
            /* Dovecot echoes the name a client tried, whatever it was: an
             * unusable one spoils this reply's name only, never the line
             * (a client could otherwise break everyone's connection). */
            bool ok = dvauth_unescape(v, vlen, r->user, sizeof r->user) >= 0;
            for (const char *p = r->user; ok && *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                    ok = false; /* it goes into logs and headers */
            r->user_bad = !ok;
            if (!ok)
                r->user[0] = 0;
            r->has_user = r->user[0] != 0;
        } else if (dvauth__kv(f, flen, "reason", &v, &vlen)) {
            /* only for the client's eyes: cut to fit, never refused */
            char tmp[DVAUTH_LINE_MAX];
            if (dvauth_unescape(v, vlen, tmp, sizeof tmp) < 0)
                goto bad;
            size_t n = strlen(tmp);
            if (n > DVAUTH_REASON_MAX)
                n = DVAUTH_REASON_MAX;
            for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char)tmp[i];
                r->reason[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
            }
            r->reason[n] = 0;
            r->has_reason = true;
        } else if (dvauth__kv(f, flen, "code", &v, &vlen)) {
            int rc = dvauth_unescape(v, vlen, r->code, sizeof r->code);
            if (rc == DVAUTH_EPROTO)
                goto bad;
            if (rc < 0)
                r->code[0] = 0; /* a code we cannot know: as if absent */
            if (strcmp(r->code, "temp_fail") == 0)
                r->temp = true;
        } else if (dvauth__eq(f, flen, "temp")) {
            r->temp = true; /* Dovecot 2.2 and older */
        }
        /* other fields (nologin, pass=, proxy hints, ...) are ignored */
    }
    if (r->kind == DVAUTH_R_OK)
        r->temp = false;
    return DVAUTH_OK;
bad:
    memset(r, 0, sizeof *r);
    return DVAUTH_EPROTO;
}
