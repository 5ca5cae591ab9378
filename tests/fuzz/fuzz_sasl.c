/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz sasl and dvauth (the SMTP AUTH decoders and the Dovecot auth
 * protocol codec). Every input goes through all of them:
 *
 *   - base64: decode; whatever is accepted encodes back to exactly the
 *     input (strictness: one text per byte string), within the bound;
 *     encoding the raw input decodes back to it;
 *   - a response line and the AUTH arguments: results within bounds, the
 *     mechanism one that was offered, "*" only ever a cancel;
 *   - PLAIN: accepted only with exactly two NULs, authcid and password
 *     non-empty and bounded; re-encoding gives the input back;
 *   - LOGIN: the input's lines fed in turn; prompts are the two known
 *     ones, the result non-empty, NUL-free, bounded;
 *   - Dovecot: the input's lines as a server's handshake and then replies:
 *     framing bounded, handshake state consistent, replies' ids non-zero,
 *     user names printable and bounded, reasons bounded, CONT data inside
 *     the line; tab-escaping round-trips every line; an AUTH request made
 *     of input strings is one line whose resp= is last and decodes back to
 *     the credentials.
 *
 * Input: byte 0 = the offered mechanisms (bits 0..1) and the base64
 * decode bound (bits 2..7, times 24); the rest is the text.
 */
#include "fuzz.h"

#include <stdbool.h>
#include <string.h>

#include "buf.h"
#include "dvauth.h"
#include "sasl.h"

static void check_b64(const char *s, size_t n, size_t cap)
{
    static unsigned char out[SASL_MSG_MAX * 4];
    static char enc[SASL_MSG_MAX * 6];
    size_t len = 99999;
    if (cap > sizeof out)
        cap = sizeof out;
    int rc = sasl_b64_decode(s, n, out, cap, &len);
    FUZZ_CHECK(rc == SASL_DONE || rc == SASL_EBASE64 || rc == SASL_ETOOLONG);
    if (rc != SASL_DONE) {
        FUZZ_CHECK(len == 0);
    } else {
        FUZZ_CHECK(len <= cap);
        FUZZ_CHECK(len == n / 4 * 3 - (n && s[n - 1] == '=') - (n > 1 && s[n - 2] == '='));
        int e = sasl_b64_encode(out, len, enc, sizeof enc);
        FUZZ_CHECK(e >= 0 && (size_t)e == n && memcmp(enc, s, n) == 0);
    }
    /* encode -> decode */
    if (n <= SASL_MSG_MAX * 4) {
        int e = sasl_b64_encode(s, n, enc, sizeof enc);
        FUZZ_CHECK(e >= 0 && (size_t)e == sasl_b64_len(n) && strlen(enc) == (size_t)e);
        FUZZ_CHECK(sasl_b64_decode(enc, (size_t)e, out, sizeof out, &len) == SASL_DONE);
        FUZZ_CHECK(len == n && memcmp(out, s, n) == 0);
    }
}

static void check_creds(const struct sasl_creds *c)
{
    FUZZ_CHECK(memchr(c->authzid, 0, sizeof c->authzid) != NULL);
    FUZZ_CHECK(memchr(c->authcid, 0, sizeof c->authcid) != NULL);
    FUZZ_CHECK(memchr(c->passwd, 0, sizeof c->passwd) != NULL);
    FUZZ_CHECK(c->authcid[0] != 0 && c->passwd[0] != 0);
}

static void check_plain(const char *s, size_t n)
{
    struct sasl_creds c;
    unsigned char back[SASL_MSG_MAX];
    int rc = sasl_plain_decode(s, n, &c);
    size_t nuls = 0;
    for (size_t i = 0; i < n; i++)
        nuls += s[i] == 0;
    if (rc != SASL_DONE) {
        FUZZ_CHECK(rc == SASL_EMSG || rc == SASL_ETOOLONG);
        FUZZ_CHECK(c.authcid[0] == 0 && c.passwd[0] == 0); /* wiped */
        return;
    }
    FUZZ_CHECK(nuls == 2);
    check_creds(&c);
    int e = sasl_plain_encode(&c, back, sizeof back);
    FUZZ_CHECK(e >= 0 && (size_t)e == n && memcmp(back, s, n) == 0);
}

static void check_auth_args(const char *s, size_t n, unsigned offered)
{
    static struct sasl_auth_cmd c;
    unsigned char out[SASL_MSG_MAX];
    size_t len;
    int rc = sasl_response_decode(s, n, out, &len);
    FUZZ_CHECK(rc <= 0 && len <= SASL_MSG_MAX);
    FUZZ_CHECK((rc == SASL_ECANCEL) == (n == 1 && s[0] == '*'));

    rc = sasl_auth_parse(s, n, offered, &c);
    FUZZ_CHECK(rc == SASL_DONE || rc == SASL_ESYNTAX || rc == SASL_EMECH || rc == SASL_EBASE64 ||
               rc == SASL_ETOOLONG);
    if (rc == SASL_DONE) {
        FUZZ_CHECK(c.mech == SASL_MECH_PLAIN || c.mech == SASL_MECH_LOGIN);
        FUZZ_CHECK(offered & (unsigned)c.mech);
        FUZZ_CHECK(c.ir_len <= SASL_MSG_MAX);
        FUZZ_CHECK(c.has_ir == (memchr(s, ' ', n) != NULL));
        FUZZ_CHECK(c.has_ir || c.ir_len == 0);
        if (c.mech == SASL_MECH_PLAIN && c.has_ir) {
            struct sasl_creds cr;
            if (sasl_plain_decode(c.ir, c.ir_len, &cr) == SASL_DONE)
                check_creds(&cr);
        }
    } else {
        FUZZ_CHECK(c.mech == SASL_MECH_NONE);
    }
}

static void check_login(const char *s, size_t n)
{
    struct sasl_login l;
    const char *prompt;
    int rc = sasl_login_begin(&l, NULL, &prompt);
    FUZZ_CHECK(rc == SASL_MORE && strcmp(prompt, SASL_LOGIN_PROMPT_USER) == 0);
    size_t off = 0;
    while (off <= n && rc == SASL_MORE) {
        const char *lf = memchr(s + off, '\n', n - off);
        size_t len = lf ? (size_t)(lf - (s + off)) : n - off;
        rc = sasl_login_feed(&l, s + off, len, &prompt);
        if (rc == SASL_MORE)
            FUZZ_CHECK(strcmp(prompt, SASL_LOGIN_PROMPT_PASS) == 0);
        off += len + 1;
        if (!lf)
            break;
    }
    if (rc == SASL_DONE)
        check_creds(&l.creds);
    else if (rc < 0)
        FUZZ_CHECK(l.creds.authcid[0] == 0 && l.creds.passwd[0] == 0 && l.step == SASL_LOGIN_END);
}

static void check_reply(const char *line, size_t len)
{
    struct dvauth_reply r;
    int rc = dvauth_reply_parse(line, len, &r);
    FUZZ_CHECK(rc == DVAUTH_OK || rc == DVAUTH_EPROTO || rc == DVAUTH_ETOOLONG);
    if (rc != DVAUTH_OK || r.kind == DVAUTH_R_IGNORE) {
        FUZZ_CHECK(r.kind == DVAUTH_R_IGNORE && !r.has_user);
        return;
    }
    FUZZ_CHECK(r.id != 0);
    FUZZ_CHECK(strlen(r.user) <= DVAUTH_USER_MAX && strlen(r.reason) <= DVAUTH_REASON_MAX);
    for (const char *p = r.user; *p; p++)
        FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    for (const char *p = r.reason; *p; p++)
        FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    FUZZ_CHECK(r.has_user == (r.user[0] != 0));
    if (r.kind == DVAUTH_R_OK)
        FUZZ_CHECK(!r.temp);
    if (r.kind == DVAUTH_R_CONT)
        FUZZ_CHECK(r.data >= line && r.data + r.data_len <= line + len);
}

static void check_escape(const char *line, size_t len)
{
    static char plain[DVAUTH_LINE_MAX + 1], back[DVAUTH_LINE_MAX + 1];
    /* the C string of the line (up to its first NUL) */
    size_t n = strnlen(line, len);
    memcpy(plain, line, n);
    plain[n] = 0;
    buf_t b = BUF_INIT;
    dvauth_escape(&b, plain);
    FUZZ_CHECK(b.len >= n && b.len <= 2 * n);
    FUZZ_CHECK(b.len == 0 || (!memchr(b.ptr, '\t', b.len) && !memchr(b.ptr, '\n', b.len) &&
                              !memchr(b.ptr, '\r', b.len)));
    FUZZ_CHECK(dvauth_unescape(b.ptr ? b.ptr : "", b.len, back, sizeof back) == DVAUTH_OK);
    FUZZ_CHECK(strcmp(back, plain) == 0);
    buf_free(&b);
    /* unescaping arbitrary bytes: bounded, NUL-free */
    int rc = dvauth_unescape(line, len, back, 64);
    FUZZ_CHECK(rc == DVAUTH_OK || rc == DVAUTH_EPROTO || rc == DVAUTH_ETOOLONG);
    if (rc == DVAUTH_OK)
        FUZZ_CHECK(strlen(back) < 64 && strlen(back) <= len);
}

/* An AUTH request from three NUL-separated strings of the input. */
static void check_build(const char *s, size_t n)
{
    static char f[3][DVAUTH_LINE_MAX + 1];
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        size_t l = off < n ? strnlen(s + off, n - off) : 0;
        memcpy(f[i], s + off, l);
        f[i][l] = 0;
        off += l + 1;
    }
    struct dvauth_req req = {.user = f[0],
                             .pass = f[1],
                             .rip = f[2][0] ? f[2] : NULL,
                             .session = f[2][0] ? f[2] : NULL,
                             .secured = true};
    buf_t b = BUF_INIT;
    int rc = dvauth_build_auth(&b, 42, &req);
    if (rc != DVAUTH_OK) {
        FUZZ_CHECK(rc == DVAUTH_EARG || rc == DVAUTH_ETOOLONG);
        FUZZ_CHECK(b.len == 0);
        buf_free(&b);
        return;
    }
    FUZZ_CHECK(b.len <= DVAUTH_LINE_MAX && b.ptr[b.len - 1] == '\n');
    FUZZ_CHECK(memchr(b.ptr, '\n', b.len) == b.ptr + b.len - 1);
    FUZZ_CHECK(strncmp(b.ptr, "AUTH\t42\tPLAIN\tservice=smtp\tsecured", 33) == 0);
    const char *resp = strstr(b.ptr, "\tresp=");
    FUZZ_CHECK(resp && !memchr(resp + 1, '\t', (size_t)(b.ptr + b.len - resp - 1)));
    unsigned char msg[SASL_MSG_MAX];
    size_t mlen;
    FUZZ_CHECK(sasl_b64_decode(resp + 6, (size_t)(b.ptr + b.len - 1 - resp - 6), msg, sizeof msg,
                               &mlen) == SASL_DONE);
    struct sasl_creds c;
    FUZZ_CHECK(sasl_plain_decode(msg, mlen, &c) == SASL_DONE);
    FUZZ_CHECK(strcmp(c.authcid, f[0]) == 0 && strcmp(c.passwd, f[1]) == 0 && !c.authzid[0]);
    buf_free(&b);
}

static void check_dovecot(const char *s, size_t n)
{
    struct dvauth_hs hs;
    bool done = false;
    size_t off = 0;
    dvauth_hs_init(&hs);
    while (off < n) {
        long end = dvauth_line_end(s + off, n - off);
        FUZZ_CHECK(end >= -1 || end == DVAUTH_ETOOLONG);
        if (end == DVAUTH_ETOOLONG) {
            FUZZ_CHECK(n - off >= DVAUTH_LINE_MAX);
            return;
        }
        size_t len = end == -1 ? n - off : (size_t)end;
        FUZZ_CHECK(len < DVAUTH_LINE_MAX && !memchr(s + off, '\n', len));
        if (!done) {
            int rc = dvauth_hs_line(&hs, s + off, len);
            FUZZ_CHECK(rc == DVAUTH_MORE || rc == DVAUTH_OK || rc == DVAUTH_EPROTO ||
                       rc == DVAUTH_EVERSION || rc == DVAUTH_ETOOLONG);
            if (rc < 0)
                return; /* the client drops the connection */
            FUZZ_CHECK(hs.got_version && hs.major == DVAUTH_MAJOR);
            FUZZ_CHECK(strlen(hs.cookie) < sizeof hs.cookie);
            FUZZ_CHECK((hs.mechs & ~3u) == 0 && __builtin_popcount(hs.mechs) <= (int)hs.nmechs);
            done = rc == DVAUTH_OK;
            FUZZ_CHECK(done == hs.done);
        } else {
            check_reply(s + off, len);
        }
        check_escape(s + off, len);
        off += len + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned offered = data[0] & 3u;
    size_t cap = (size_t)(data[0] >> 2) * 24;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;

    check_b64(s, n, cap);
    check_auth_args(s, n, offered);
    check_plain(s, n);
    check_login(s, n);
    check_dovecot(s, n);
    check_build(s, n);
    return 0;
}
