/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for dvauth (the Dovecot auth protocol codec) and dvauth_client.
 *
 * Codec: line framing and its bound, tab-escaping both ways (round trips,
 * Dovecot's letters, NUL refused), the client hello, the server handshake
 * (any order after VERSION, unknown commands ignored, hostile lines:
 * missing fields, bad numbers, wrong version, over-long), AUTH lines
 * (fields, escaping, resp last, the password never in clear, refusals),
 * OK/FAIL/CONT parsing (user, reason, temp in both spellings, bad ids).
 *
 * Client: a scripted fake Dovecot on a unix socket in the same loop. Every
 * result comes from the loop, never inside dvauth_client_auth(); several
 * requests answered out of order over one connection; FAIL, temp_fail;
 * cancel before and after sending; per-request timeout; a garbage line and
 * a missing PLAIN fail the connection with TEMPFAIL; a lost connection is
 * re-made by the next request; an absent socket is TEMPFAIL at once; free
 * from inside a callback. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "defer.h"
#include "dvauth.h"
#include "dvauth_client.h"
#include "log.h"
#include "sasl.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- framing and escaping ----------------------------------------------- */

static void test_line_end(void **state)
{
    (void)state;
    assert_int_equal(dvauth_line_end(S("DONE\nOK")), 4);
    assert_int_equal(dvauth_line_end(S("\n")), 0);
    assert_int_equal(dvauth_line_end(S("DONE")), -1);
    assert_int_equal(dvauth_line_end(S("")), -1);
    static char big[DVAUTH_LINE_MAX + 2];
    memset(big, 'x', sizeof big);
    assert_int_equal(dvauth_line_end(big, DVAUTH_LINE_MAX - 1), -1);
    assert_int_equal(dvauth_line_end(big, DVAUTH_LINE_MAX), DVAUTH_ETOOLONG);
    big[DVAUTH_LINE_MAX - 1] = '\n'; /* the longest line: LF as its last byte */
    assert_int_equal(dvauth_line_end(big, sizeof big), DVAUTH_LINE_MAX - 1);
    big[DVAUTH_LINE_MAX - 1] = 'x';
    big[DVAUTH_LINE_MAX] = '\n';
    assert_int_equal(dvauth_line_end(big, sizeof big), DVAUTH_ETOOLONG);
}

static void test_escape_roundtrip(void **state)
{
    (void)state;
    static const struct {
        const char *plain, *esc;
    } t[] = {
        {"plain", "plain"},
        {"a\tb", "a\001tb"},
        {"a\nb", "a\001nb"},
        {"a\rb", "a\001rb"},
        {"a\001b", "a\0011b"},
        {"back\\slash", "back\\slash"}, /* not special in Dovecot's escaping */
        {"\t\n\r\001", "\001t\001n\001r\0011"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        buf_t b = BUF_INIT;
        char out[64];
        dvauth_escape(&b, t[i].plain);
        assert_int_equal(b.len, strlen(t[i].esc));
        assert_memory_equal(b.ptr ? b.ptr : "", t[i].esc, b.len);
        assert_null(b.len ? memchr(b.ptr, '\t', b.len) : NULL);
        assert_null(b.len ? memchr(b.ptr, '\n', b.len) : NULL);
        assert_int_equal(dvauth_unescape(b.ptr ? b.ptr : "", b.len, out, sizeof out), DVAUTH_OK);
        assert_string_equal(out, t[i].plain);
        buf_free(&b);
    }
    /* every byte 1..255 survives */
    char all[256], out[300];
    for (int i = 1; i < 256; i++)
        all[i - 1] = (char)i;
    all[255] = 0;
    buf_t b = BUF_INIT;
    dvauth_escape(&b, all);
    assert_int_equal(dvauth_unescape(b.ptr, b.len, out, sizeof out), DVAUTH_OK);
    assert_string_equal(out, all);
    buf_free(&b);
}

static void test_unescape_edges(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(dvauth_unescape(S("a\001xb"), out, sizeof out), DVAUTH_OK);
    assert_string_equal(out, "axb"); /* unknown letter: the byte itself */
    assert_int_equal(dvauth_unescape(S("ab\001"), out, sizeof out), DVAUTH_OK);
    assert_string_equal(out, "ab"); /* trailing escape byte: nothing */
    assert_int_equal(dvauth_unescape(S("a\0010b"), out, sizeof out), DVAUTH_EPROTO); /* NUL */
    assert_int_equal(dvauth_unescape(S("a\0b"), out, sizeof out), DVAUTH_EPROTO);
    assert_int_equal(dvauth_unescape(S("1234567"), out, sizeof out), DVAUTH_OK);
    assert_int_equal(dvauth_unescape(S("12345678"), out, sizeof out), DVAUTH_ETOOLONG);
    assert_int_equal(dvauth_unescape(S("x"), out, 0), DVAUTH_ETOOLONG);
}

/* ---- handshake ---------------------------------------------------------- */

static void test_hello(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    dvauth_build_hello(&b, 4242);
    assert_string_equal(b.ptr, "VERSION\t1\t2\nCPID\t4242\n");
    buf_free(&b);
}

/* Feed lines; returns the last rc. */
static int hs_feed(struct dvauth_hs *hs, const char *const *lines)
{
    int rc = DVAUTH_MORE;
    dvauth_hs_init(hs);
    for (size_t i = 0; lines[i]; i++) {
        rc = dvauth_hs_line(hs, lines[i], strlen(lines[i]));
        if (rc != DVAUTH_MORE)
            break;
    }
    return rc;
}

static void test_handshake_dovecot23(void **state)
{
    (void)state;
    /* what Dovecot 2.3.19 sends (MECH before SPID, unlike the document) */
    const char *const l[] = {"VERSION\t1\t2",
                             "MECH\tPLAIN\tplaintext",
                             "MECH\tLOGIN\tplaintext",
                             "SPID\t4559",
                             "CUID\t11",
                             "COOKIE\t36ac88962e07a5e2070c79f76d07463d",
                             "DONE",
                             NULL};
    struct dvauth_hs hs;
    assert_int_equal(hs_feed(&hs, l), DVAUTH_OK);
    assert_true(hs.done);
    assert_int_equal(hs.major, 1);
    assert_int_equal(hs.minor, 2);
    assert_int_equal(hs.spid, 4559);
    assert_int_equal(hs.cuid, 11);
    assert_string_equal(hs.cookie, "36ac88962e07a5e2070c79f76d07463d");
    assert_int_equal(hs.mechs, DVAUTH_MECH_PLAIN | DVAUTH_MECH_LOGIN);
    assert_int_equal(hs.nmechs, 2);
    /* after DONE nothing more belongs to the handshake */
    assert_int_equal(dvauth_hs_line(&hs, S("MECH\tX")), DVAUTH_EPROTO);
}

static void test_handshake_lenient(void **state)
{
    (void)state;
    /* newer minor, unknown commands and flags, other mechanisms, no
     * SPID/CUID/COOKIE at all: fine */
    const char *const l[] = {"VERSION\t1\t3",
                             "MECH\tSCRAM-SHA-256\tmutual-auth",
                             "FUTURE\tthing\tx=y",
                             "MECH\tplain",
                             "",
                             "DONE\textra",
                             NULL};
    struct dvauth_hs hs;
    assert_int_equal(hs_feed(&hs, l), DVAUTH_OK);
    assert_int_equal(hs.mechs, DVAUTH_MECH_PLAIN);
    assert_int_equal(hs.nmechs, 2);
    /* without PLAIN the handshake completes; the client decides */
    const char *const n[] = {"VERSION\t1\t2", "MECH\tLOGIN", "DONE", NULL};
    assert_int_equal(hs_feed(&hs, n), DVAUTH_OK);
    assert_int_equal(hs.mechs, DVAUTH_MECH_LOGIN);
}

static void test_handshake_hostile(void **state)
{
    (void)state;
    static const struct {
        const char *l[4];
        int rc;
    } t[] = {
        {{"MECH\tPLAIN", NULL}, DVAUTH_EPROTO}, /* before VERSION */
        {{"DONE", NULL}, DVAUTH_EPROTO},
        {{"HTTP/1.1 400 Bad Request", NULL}, DVAUTH_EPROTO},
        {{"VERSION\t2\t0", NULL}, DVAUTH_EVERSION},
        {{"VERSION\t0\t9", NULL}, DVAUTH_EVERSION},
        {{"VERSION\t1", NULL}, DVAUTH_EPROTO}, /* missing minor */
        {{"VERSION", NULL}, DVAUTH_EPROTO},
        {{"VERSION\tone\ttwo", NULL}, DVAUTH_EPROTO},
        {{"VERSION\t-1\t2", NULL}, DVAUTH_EPROTO},
        {{"VERSION\t99999999999999999999\t2", NULL}, DVAUTH_EPROTO},
        {{"VERSION\t1\t2", "VERSION\t1\t2", NULL}, DVAUTH_EPROTO},
        {{"VERSION\t1\t2", "MECH", NULL}, DVAUTH_EPROTO},   /* no name */
        {{"VERSION\t1\t2", "MECH\t", NULL}, DVAUTH_EPROTO}, /* empty name */
        {{"VERSION\t1\t2", "SPID", NULL}, DVAUTH_EPROTO},
        {{"VERSION\t1\t2", "SPID\tx1", NULL}, DVAUTH_EPROTO},
        {{"VERSION\t1\t2", "CUID\t", NULL}, DVAUTH_EPROTO},
        {{"VERSION\t1\t2", "COOKIE\tnot-hex", NULL}, DVAUTH_EPROTO},
        {{"VERSION\t1\t2", "COOKIE", NULL}, DVAUTH_EPROTO},
        {{"VERSION\t1\t2",
          "COOKIE\t0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0", NULL},
         DVAUTH_EPROTO},                          /* 65 hex digits */
        {{"version\t1\t2", NULL}, DVAUTH_EPROTO}, /* commands are case-sensitive */
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct dvauth_hs hs;
        int rc = hs_feed(&hs, t[i].l);
        if (rc != t[i].rc)
            fail_msg("case %zu: got %d (%s), want %d", i, rc, dvauth_strerror(rc), t[i].rc);
    }
    /* an over-long line */
    static char big[DVAUTH_LINE_MAX + 1];
    memset(big, 'M', sizeof big);
    struct dvauth_hs hs;
    dvauth_hs_init(&hs);
    assert_int_equal(dvauth_hs_line(&hs, S("VERSION\t1\t2")), DVAUTH_MORE);
    assert_int_equal(dvauth_hs_line(&hs, big, DVAUTH_LINE_MAX), DVAUTH_ETOOLONG);
}

/* ---- AUTH lines --------------------------------------------------------- */

/* The value of field `name=` in an AUTH line, or NULL. */
static const char *field(const char *line, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    for (const char *p = line; (p = strchr(p, '\t')) != NULL;) {
        p++;
        if (strncmp(p, name, n) == 0 && p[n] == '=') {
            size_t l = strcspn(p + n + 1, "\t\n");
            snprintf(out, outlen, "%.*s", (int)l, p + n + 1);
            return out;
        }
    }
    return NULL;
}

static void test_build_auth_plain(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    struct dvauth_req r = {
        .user = "tim",
        .pass = "tanstaaftanstaaf",
        .lip = "192.0.2.1",
        .rip = "2001:db8::7",
        .lport = 587,
        .rport = 40001,
        .secured = true,
        .session = "s\tid",
    };
    assert_int_equal(dvauth_build_auth(&b, 7, &r), DVAUTH_OK);
    assert_string_equal(b.ptr, "AUTH\t7\tPLAIN\tservice=smtp\tsecured\tsession=s\001tid"
                               "\tlip=192.0.2.1\trip=2001:db8::7\tlport=587\trport=40001"
                               "\tresp=AHRpbQB0YW5zdGFhZnRhbnN0YWFm\n");
    /* the password never appears in clear */
    assert_null(strstr(b.ptr, "tanstaaf"));
    buf_free(&b);

    /* minimal: no addresses, not secured, authzid, no-penalty */
    struct dvauth_req m = {
        .user = "u", .pass = "p", .authzid = "admin", .no_penalty = true, .service = "submission"};
    assert_int_equal(dvauth_build_auth(&b, 1, &m), DVAUTH_OK);
    assert_string_equal(b.ptr,
                        "AUTH\t1\tPLAIN\tservice=submission\tno-penalty\tresp=YWRtaW4AdQBw\n");
    /* appends: a second line follows the first */
    assert_int_equal(dvauth_build_auth(&b, 2, &m), DVAUTH_OK);
    assert_non_null(strstr(b.ptr, "\nAUTH\t2\t"));
    buf_free(&b);
}

static void test_build_auth_escapes_and_resp_last(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    char v[128];
    /* a hostile password with TAB/LF cannot break the line: it is inside
     * base64; an escaped value round-trips */
    struct dvauth_req r = {.user = "u\tx", .pass = "p\nresp=AAAA\tsecured", .rip = "1.2.3.4\nX"};
    assert_int_equal(dvauth_build_auth(&b, 3, &r), DVAUTH_OK);
    assert_int_equal(strchr(b.ptr, '\n') - b.ptr, (long)b.len - 1); /* one line */
    assert_non_null(field(b.ptr, "rip", v, sizeof v));
    char un[128];
    assert_int_equal(dvauth_unescape(v, strlen(v), un, sizeof un), DVAUTH_OK);
    assert_string_equal(un, "1.2.3.4\nX");
    /* resp is the last field, and decodes to the PLAIN message */
    const char *resp = strstr(b.ptr, "\tresp=");
    assert_non_null(resp);
    assert_null(strchr(resp + 1, '\t'));
    unsigned char msg[SASL_MSG_MAX];
    size_t n;
    size_t rl = strlen(resp + 6) - 1;
    assert_int_equal(sasl_b64_decode(resp + 6, rl, msg, sizeof msg, &n), SASL_DONE);
    struct sasl_creds cr;
    assert_int_equal(sasl_plain_decode(msg, n, &cr), SASL_DONE);
    assert_string_equal(cr.authcid, "u\tx");
    assert_string_equal(cr.passwd, "p\nresp=AAAA\tsecured");
    buf_free(&b);

    /* a raw initial response, and an empty one: "resp=" present */
    struct dvauth_req raw = {.mech = "PLAIN", .resp = "\0a\0b", .resp_len = 4};
    assert_int_equal(dvauth_build_auth(&b, 9, &raw), DVAUTH_OK);
    assert_string_equal(b.ptr, "AUTH\t9\tPLAIN\tservice=smtp\tresp=AGEAYg==\n");
    buf_reset(&b);
    struct dvauth_req empty = {.mech = "LOGIN", .resp = "", .resp_len = 0};
    assert_int_equal(dvauth_build_auth(&b, 10, &empty), DVAUTH_OK);
    assert_string_equal(b.ptr, "AUTH\t10\tLOGIN\tservice=smtp\tresp=\n");
    buf_free(&b);
}

static void test_build_auth_refusals(void **state)
{
    (void)state;
    static char longpw[SASL_FIELD_MAX + 2];
    memset(longpw, 'p', SASL_FIELD_MAX + 1);
    static const struct dvauth_req bad[] = {
        {.user = NULL, .resp = NULL}, /* nothing to send */
        {.user = "", .pass = "p"},    /* empty user */
        {.user = "u", .pass = ""},    /* empty password */
        {.user = "u", .pass = NULL},
        {.user = "u", .pass = longpw},                 /* over the bound */
        {.user = "u", .pass = "p", .mech = "LOGIN"},   /* credentials only as PLAIN */
        {.mech = "plain", .resp = "x", .resp_len = 1}, /* mechanism names are upper case */
        {.mech = "PL AIN", .resp = "x", .resp_len = 1},
        {.mech = "", .resp = "x", .resp_len = 1},
        {.user = "u", .pass = "p", .service = ""},
        {.user = "u", .pass = "p", .lip = ""},
        {.user = "u", .pass = "p", .lport = 70000},
        {.resp = "x", .resp_len = SASL_MSG_MAX + 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        buf_t b = BUF_INIT;
        buf_puts(&b, "keep");
        int rc = dvauth_build_auth(&b, 1, &bad[i]);
        if (rc != DVAUTH_EARG)
            fail_msg("case %zu: got %d, want DVAUTH_EARG", i, rc);
        assert_string_equal(b.ptr, "keep"); /* nothing appended */
        buf_free(&b);
    }
    buf_t b = BUF_INIT;
    struct dvauth_req ok = {.user = "u", .pass = "p"};
    assert_int_equal(dvauth_build_auth(&b, 0, &ok), DVAUTH_EARG); /* id 0 */
    buf_free(&b);
}

/* ---- replies ------------------------------------------------------------ */

static void test_reply_parse(void **state)
{
    (void)state;
    struct dvauth_reply r;
    assert_int_equal(dvauth_reply_parse(S("OK\t1\tuser=alice"), &r), DVAUTH_OK);
    assert_int_equal(r.kind, DVAUTH_R_OK);
    assert_int_equal(r.id, 1);
    assert_true(r.has_user);
    assert_string_equal(r.user, "alice");
    assert_false(r.temp);

    assert_int_equal(dvauth_reply_parse(S("OK\t4294967295"), &r), DVAUTH_OK);
    assert_int_equal(r.id, 4294967295u);
    assert_false(r.has_user);

    /* An unusable name spoils the name, not the reply (Dovecot echoes
     * whatever a client tried): the line parses, the name is not kept. */
    assert_int_equal(dvauth_reply_parse(S("OK\t2\tuser=a\001tb@x\tnologin\tpass=zz"), &r),
                     DVAUTH_OK); /* a TAB in the user name: control byte */
    assert_true(r.user_bad);
    assert_false(r.has_user);
    assert_int_equal(dvauth_reply_parse(S("FAIL\t2\tuser=J\001\001rg\tnologin"), &r),
                     DVAUTH_OK); /* \001 after unescaping: control byte */
    assert_int_equal(r.kind, DVAUTH_R_FAIL);
    assert_true(r.user_bad);
    assert_false(r.has_user);
    assert_int_equal(dvauth_reply_parse(S("OK\t2\tuser=alice"), &r), DVAUTH_OK);
    assert_false(r.user_bad);
    assert_int_equal(dvauth_reply_parse(S("OK\t2\tuser=J\xc3\xb6rg@ex\001ample\tnologin\tx=y"), &r),
                     DVAUTH_OK);
    assert_string_equal(r.user, "J\xc3\xb6rg@example"); /* UTF-8 kept, \001a -> a */
    assert_int_equal(dvauth_reply_parse(S("OK\t2\tuser="), &r), DVAUTH_OK);
    assert_false(r.has_user); /* empty: as if none */
}

static void test_reply_fail_and_cont(void **state)
{
    (void)state;
    struct dvauth_reply r;
    assert_int_equal(dvauth_reply_parse(S("FAIL\t3"), &r), DVAUTH_OK);
    assert_int_equal(r.kind, DVAUTH_R_FAIL);
    assert_int_equal(r.id, 3);
    assert_false(r.temp);
    assert_false(r.has_reason);

    assert_int_equal(
        dvauth_reply_parse(S("FAIL\t4\tuser=bob\treason=Password\001texpired\tcode=pass_expired"),
                           &r),
        DVAUTH_OK);
    assert_string_equal(r.user, "bob");
    assert_true(r.has_reason);
    assert_string_equal(r.reason, "Password?expired"); /* control bytes shown as '?' */
    assert_string_equal(r.code, "pass_expired");
    assert_false(r.temp);

    assert_int_equal(dvauth_reply_parse(S("FAIL\t5\tcode=temp_fail"), &r), DVAUTH_OK);
    assert_true(r.temp);
    assert_int_equal(dvauth_reply_parse(S("FAIL\t5\ttemp"), &r), DVAUTH_OK); /* 2.2 */
    assert_true(r.temp);
    assert_int_equal(dvauth_reply_parse(S("FAIL\t5\tcode=authz_fail"), &r), DVAUTH_OK);
    assert_false(r.temp);
    /* an over-long code is as if absent; an over-long reason is cut */
    static char line[600];
    snprintf(line, sizeof line, "FAIL\t6\tcode=%0100d\treason=%0400d", 0, 0);
    assert_int_equal(dvauth_reply_parse(line, strlen(line), &r), DVAUTH_OK);
    assert_string_equal(r.code, "");
    assert_int_equal(strlen(r.reason), DVAUTH_REASON_MAX);

    assert_int_equal(dvauth_reply_parse(S("CONT\t7\tVXNlcm5hbWU6"), &r), DVAUTH_OK);
    assert_int_equal(r.kind, DVAUTH_R_CONT);
    assert_int_equal(r.data_len, 12);
    assert_memory_equal(r.data, "VXNlcm5hbWU6", 12);
    assert_int_equal(dvauth_reply_parse(S("CONT\t8\t"), &r), DVAUTH_OK); /* what 2.3 sends */
    assert_int_equal(r.data_len, 0);
}

static void test_reply_hostile(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "OK",
        "OK\t",
        "OK\t0",
        "OK\t-1",
        "OK\t1x",
        "OK\t4294967296",
        "OK\t99999999999999999999999",
        "FAIL",
        "FAIL\tabc",
        "CONT\t1",
        "FAIL\t1\treason=a\0010b",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct dvauth_reply r;
        int rc = dvauth_reply_parse(bad[i], strlen(bad[i]), &r);
        if (rc != DVAUTH_EPROTO)
            fail_msg("case %zu (%s): got %d, want DVAUTH_EPROTO", i, bad[i], rc);
        assert_int_equal(r.kind, DVAUTH_R_IGNORE);
    }
    /* a user name over the bound */
    static char line[400];
    snprintf(line, sizeof line, "OK\t1\tuser=%0256d", 0);
    struct dvauth_reply r;
    assert_int_equal(dvauth_reply_parse(line, strlen(line), &r), DVAUTH_OK);
    assert_true(r.user_bad); /* not kept, the reply stands */
    assert_false(r.has_user);
    snprintf(line, sizeof line, "OK\t1\tuser=%0255d", 0);
    assert_int_equal(dvauth_reply_parse(line, strlen(line), &r), DVAUTH_OK);
    /* unknown commands and empty lines are skipped */
    static const char *const skip[] = {"", "CANCELLED\t1", "NOTFOUND\t3", "ok\t1", "OKAY\t1"};
    for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++) {
        assert_int_equal(dvauth_reply_parse(skip[i], strlen(skip[i]), &r), DVAUTH_OK);
        assert_int_equal(r.kind, DVAUTH_R_IGNORE);
    }
    static char big[DVAUTH_LINE_MAX + 1];
    memset(big, 'x', sizeof big);
    memcpy(big, "OK\t1\t", 5);
    assert_int_equal(dvauth_reply_parse(big, DVAUTH_LINE_MAX, &r), DVAUTH_ETOOLONG);
}

/* ---- the client against a fake Dovecot ---------------------------------- */

enum fake_mode {
    F_NORMAL = 0,  /* answer each AUTH at once by user name */
    F_REVERSE,     /* hold answers until `hold` requests came, answer in reverse */
    F_NO_PLAIN,    /* handshake without PLAIN */
    F_BAD_VERSION, /* VERSION 2 */
    F_SILENT,      /* handshake, then never answer */
    F_NO_HANDSHAKE /* accept, say nothing */
};

struct fake_conn {
    uv_pipe_t pipe;
    buf_t in;
    struct fake *f;
    bool closed;
};

struct fake {
    uv_loop_t *loop;
    uv_pipe_t server;
    char path[108];
    enum fake_mode mode;
    unsigned hold;
    unsigned accepted;  /* connections */
    unsigned auths;     /* AUTH lines seen */
    char held[16][400]; /* F_REVERSE answers */
    unsigned nheld;
    struct fake_conn *last;
    char last_auth[512];
};

static void fake_close_cb(uv_handle_t *h)
{
    struct fake_conn *c = (struct fake_conn *)(void *)h;
    buf_free(&c->in);
    free(c);
}

static void fake_drop(struct fake_conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    if (c->f->last == c)
        c->f->last = NULL;
    uv_close((uv_handle_t *)&c->pipe, fake_close_cb);
}

static void fake_wr_cb(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void fake_send(struct fake_conn *c, const char *s)
{
    if (c->closed)
        return;
    size_t n = strlen(s);
    uv_write_t *w = malloc(sizeof *w + n);
    memcpy(w + 1, s, n);
    uv_buf_t b = uv_buf_init((char *)(w + 1), (unsigned)n);
    uv_write(w, (uv_stream_t *)&c->pipe, &b, 1, fake_wr_cb);
}

/* The answer to one AUTH line, by the PLAIN user name:
 * good*: OK with user=<name lowercased>; temp*: FAIL temp_fail; quiet*:
 * nothing; garbage*: a line that is no reply; anything else FAIL. */
static void fake_answer(struct fake_conn *c, const char *line)
{
    struct fake *f = c->f;
    unsigned id = (unsigned)strtoul(line + 5, NULL, 10);
    const char *resp = strstr(line, "\tresp=");
    unsigned char msg[SASL_MSG_MAX];
    size_t n = 0;
    struct sasl_creds cr;
    char out[400];
    f->auths++;
    snprintf(f->last_auth, sizeof f->last_auth, "%s", line);
    assert_non_null(resp);
    assert_int_equal(sasl_b64_decode(resp + 6, strlen(resp + 6), msg, sizeof msg, &n), SASL_DONE);
    assert_int_equal(sasl_plain_decode(msg, n, &cr), SASL_DONE);
    if (strncasecmp(cr.authcid, "good", 4) == 0) {
        char lower[SASL_FIELD_MAX + 1];
        size_t i;
        for (i = 0; cr.authcid[i]; i++)
            lower[i] = (char)(cr.authcid[i] | 0x20);
        lower[i] = 0;
        snprintf(out, sizeof out, "OK\t%u\tuser=%s\n", id, lower);
    } else if (strncmp(cr.authcid, "temp", 4) == 0) {
        snprintf(out, sizeof out, "FAIL\t%u\tuser=%s\tcode=temp_fail\n", id, cr.authcid);
    } else if (strncmp(cr.authcid, "quiet", 5) == 0) {
        return;
    } else if (strncmp(cr.authcid, "garbage", 7) == 0) {
        snprintf(out, sizeof out, "OK\tnot-a-number\n");
    } else {
        snprintf(out, sizeof out, "FAIL\t%u\treason=Bad credentials\n", id);
    }
    if (f->mode == F_REVERSE) {
        snprintf(f->held[f->nheld++], sizeof f->held[0], "%s", out);
        if (f->nheld == f->hold)
            while (f->nheld > 0)
                fake_send(c, f->held[--f->nheld]);
        return;
    }
    fake_send(c, out);
}

static void fake_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)h;
    (void)sz;
    static char tmp[4096];
    *b = uv_buf_init(tmp, sizeof tmp);
}

static void fake_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct fake_conn *c = (struct fake_conn *)(void *)s;
    if (nread < 0) {
        fake_drop(c);
        return;
    }
    buf_append(&c->in, b->base, (size_t)nread);
    char *lf;
    while (c->in.len && (lf = memchr(c->in.ptr, '\n', c->in.len)) != NULL) {
        *lf = 0;
        if (strncmp(c->in.ptr, "AUTH\t", 5) == 0 && c->f->mode != F_SILENT)
            fake_answer(c, c->in.ptr);
        else if (strncmp(c->in.ptr, "AUTH\t", 5) == 0)
            c->f->auths++;
        buf_consume(&c->in, (size_t)(lf + 1 - c->in.ptr));
        if (c->closed)
            return;
    }
}

static void fake_on_conn(uv_stream_t *server, int status)
{
    struct fake *f = server->data;
    assert_int_equal(status, 0);
    struct fake_conn *c = calloc(1, sizeof *c);
    c->f = f;
    buf_init(&c->in);
    uv_pipe_init(f->loop, &c->pipe, 0);
    assert_int_equal(uv_accept(server, (uv_stream_t *)&c->pipe), 0);
    f->accepted++;
    f->last = c;
    uv_read_start((uv_stream_t *)&c->pipe, fake_alloc, fake_read);
    switch (f->mode) {
    case F_NO_HANDSHAKE:
        break;
    case F_BAD_VERSION:
        fake_send(c, "VERSION\t2\t0\nMECH\tPLAIN\nDONE\n");
        break;
    case F_NO_PLAIN:
        fake_send(c, "VERSION\t1\t2\nMECH\tLOGIN\tplaintext\nSPID\t1\nCUID\t1\nDONE\n");
        break;
    default:
        /* in two writes, split inside a line, to exercise the framing */
        fake_send(c, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tpla");
        fake_send(c, "intext\nSPID\t77\nCUID\t5\nCOOKIE\t00ff\nFUTURE\tx\nDONE\n");
        break;
    }
}

static void fake_start(struct fake *f, uv_loop_t *loop, enum fake_mode mode)
{
    memset(f, 0, sizeof *f);
    f->loop = loop;
    f->mode = mode;
    snprintf(f->path, sizeof f->path, "/tmp/sluice-test-dvauth-%ld.sock", (long)getpid());
    unlink(f->path);
    uv_pipe_init(loop, &f->server, 0);
    f->server.data = f;
    assert_int_equal(uv_pipe_bind(&f->server, f->path), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->server, 16, fake_on_conn), 0);
}

static void fake_stop(struct fake *f)
{
    if (f->last)
        fake_drop(f->last);
    if (!uv_is_closing((uv_handle_t *)&f->server))
        uv_close((uv_handle_t *)&f->server, NULL);
    unlink(f->path);
}

/* Results seen by the callbacks. */
struct seen {
    int n;
    enum dvauth_client_status st[16];
    char user[16][64];
    char reason[16][64];
    int tag[16];
};

struct ud {
    struct seen *seen;
    int tag;
    struct dvauth_client *free_me; /* free the client from the callback */
};

static bool in_caller; /* set around dvauth_client_auth() */

static void result_cb(void *p, const struct dvauth_client_result *r)
{
    struct ud *u = p;
    struct seen *s = u->seen;
    assert_false(in_caller); /* never inside the caller's stack */
    assert_true(s->n < 16);
    s->st[s->n] = r->status;
    snprintf(s->user[s->n], sizeof s->user[0], "%s", r->user ? r->user : "-");
    snprintf(s->reason[s->n], sizeof s->reason[0], "%s", r->reason ? r->reason : "-");
    s->tag[s->n] = u->tag;
    s->n++;
    if (u->free_me)
        dvauth_client_free(u->free_me);
}

static struct dvauth_client_req *auth(struct dvauth_client *cl, const char *user, struct ud *u)
{
    struct dvauth_req req = {.user = user, .pass = "pw", .rip = "192.0.2.9", .secured = true};
    in_caller = true;
    struct dvauth_client_req *h = dvauth_client_auth(cl, &req, result_cb, u);
    in_caller = false;
    return h;
}

/* Run the loop until the count reaches n or `ms` pass. */
static void run_until(uv_loop_t *loop, const int *count, int n, unsigned ms)
{
    uint64_t end = uv_now(loop) + ms;
    while (*count < n && uv_now(loop) < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(loop);
    }
}

static void spin(uv_loop_t *loop, unsigned ms)
{
    int never = 0;
    run_until(loop, &never, 1, ms);
}

static uv_loop_t *client_loop(void)
{
    static uv_loop_t loop;
    static bool ready;
    if (!ready) {
        uv_loop_init(&loop);
        defer_init(&loop);
        ready = true;
    }
    return &loop;
}

static void test_client_ok_fail_temp(void **state)
{
    (void)state;
    uv_loop_t *loop = client_loop();
    struct fake f;
    struct seen s = {0};
    fake_start(&f, loop, F_NORMAL);
    struct dvauth_client *cl = dvauth_client_new(loop, f.path, 2000);
    assert_non_null(cl);
    struct ud u[3] = {{&s, 1, NULL}, {&s, 2, NULL}, {&s, 3, NULL}};
    assert_non_null(auth(cl, "GoodUser", &u[0]));
    assert_non_null(auth(cl, "wrong", &u[1]));
    assert_non_null(auth(cl, "tempo", &u[2]));
    assert_int_equal(s.n, 0); /* nothing inside the call */
    run_until(loop, &s.n, 3, 2000);
    assert_int_equal(s.n, 3);
    assert_int_equal(f.accepted, 1); /* one connection for all */
    assert_int_equal(s.st[0], DVAUTH_CLIENT_OK);
    assert_string_equal(s.user[0], "gooduser");
    assert_int_equal(s.st[1], DVAUTH_CLIENT_FAIL);
    assert_string_equal(s.reason[1], "Bad credentials");
    assert_int_equal(s.st[2], DVAUTH_CLIENT_TEMPFAIL);
    assert_non_null(strstr(f.last_auth, "\tsecured\t"));
    assert_non_null(strstr(f.last_auth, "\trip=192.0.2.9"));

    /* the connection stays: the next request goes over it at once */
    struct ud u4 = {&s, 4, NULL};
    assert_non_null(auth(cl, "good2", &u4));
    assert_int_equal(s.n, 3);
    run_until(loop, &s.n, 4, 2000);
    assert_int_equal(s.st[3], DVAUTH_CLIENT_OK);
    assert_int_equal(f.accepted, 1);

    /* a refused request: NULL and never a callback */
    struct dvauth_req bad = {.user = "", .pass = "x"};
    assert_null(dvauth_client_auth(cl, &bad, result_cb, &u4));
    dvauth_client_free(cl);
    fake_stop(&f);
    spin(loop, 20);
    assert_int_equal(s.n, 4);
}

static void test_client_out_of_order(void **state)
{
    (void)state;
    uv_loop_t *loop = client_loop();
    struct fake f;
    struct seen s = {0};
    fake_start(&f, loop, F_REVERSE);
    f.hold = 5;
    struct dvauth_client *cl = dvauth_client_new(loop, f.path, 2000);
    struct ud u[5];
    static const char *const users[] = {"good1", "bad2", "good3", "temp4", "good5"};
    for (int i = 0; i < 5; i++) {
        u[i] = (struct ud){&s, i + 1, NULL};
        assert_non_null(auth(cl, users[i], &u[i]));
    }
    run_until(loop, &s.n, 5, 2000);
    assert_int_equal(s.n, 5);
    assert_int_equal(f.accepted, 1);
    /* answered last to first; each result reaches its own request */
    for (int i = 0; i < 5; i++) {
        int tag = s.tag[i];
        assert_int_equal(tag, 5 - i);
        const char *want = users[tag - 1];
        if (want[0] == 'g') {
            assert_int_equal(s.st[i], DVAUTH_CLIENT_OK);
            assert_string_equal(s.user[i], want);
        } else if (want[0] == 'b') {
            assert_int_equal(s.st[i], DVAUTH_CLIENT_FAIL);
        } else {
            assert_int_equal(s.st[i], DVAUTH_CLIENT_TEMPFAIL);
        }
    }
    dvauth_client_free(cl);
    fake_stop(&f);
    spin(loop, 20);
}

static void test_client_cancel(void **state)
{
    (void)state;
    uv_loop_t *loop = client_loop();
    struct fake f;
    struct seen s = {0};
    fake_start(&f, loop, F_REVERSE);
    f.hold = 3;
    struct dvauth_client *cl = dvauth_client_new(loop, f.path, 2000);
    struct ud u[3] = {{&s, 1, NULL}, {&s, 2, NULL}, {&s, 3, NULL}};
    struct dvauth_client_req *h1 = auth(cl, "good1", &u[0]);
    assert_non_null(auth(cl, "good2", &u[1]));
    dvauth_client_cancel(h1); /* before it was even sent */
    struct dvauth_client_req *h3 = auth(cl, "good3", &u[2]);
    spin(loop, 50);           /* h3 is sent now, its answer held */
    dvauth_client_cancel(h3); /* after sending */
    assert_non_null(auth(cl, "good4", &u[0]));
    run_until(loop, &s.n, 2, 2000);
    spin(loop, 30);
    assert_int_equal(s.n, 2); /* only 2 and 4, whose answers came */
    assert_true((s.tag[0] == 2 || s.tag[0] == 1) && s.st[0] == DVAUTH_CLIENT_OK);
    assert_int_equal(f.auths, 3); /* h1 never went out */
    dvauth_client_free(cl);
    fake_stop(&f);
    spin(loop, 20);
}

static void test_client_timeout(void **state)
{
    (void)state;
    uv_loop_t *loop = client_loop();
    struct fake f;
    struct seen s = {0};
    fake_start(&f, loop, F_NORMAL);
    struct dvauth_client *cl = dvauth_client_new(loop, f.path, 150);
    struct ud u[2] = {{&s, 1, NULL}, {&s, 2, NULL}};
    uint64_t t0 = uv_now(loop);
    assert_non_null(auth(cl, "quiet", &u[0]));
    assert_non_null(auth(cl, "good", &u[1]));
    run_until(loop, &s.n, 2, 2000);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.tag[0], 2); /* the answered one first */
    assert_int_equal(s.st[0], DVAUTH_CLIENT_OK);
    assert_int_equal(s.st[1], DVAUTH_CLIENT_TEMPFAIL);
    assert_string_equal(s.reason[1], "timeout");
    uint64_t took = uv_now(loop) - t0;
    assert_true(took >= 140 && took < 1000);
    /* the server answered meanwhile: the connection is kept */
    struct ud u3 = {&s, 3, NULL};
    assert_non_null(auth(cl, "good", &u3));
    run_until(loop, &s.n, 3, 2000);
    assert_int_equal(f.accepted, 1);
    dvauth_client_free(cl);
    fake_stop(&f);
    spin(loop, 20);
}

static void test_client_silent_server(void **state)
{
    (void)state;
    uv_loop_t *loop = client_loop();
    struct fake f;
    struct seen s = {0};
    /* no handshake at all: the request times out, the connection goes */
    fake_start(&f, loop, F_NO_HANDSHAKE);
    struct dvauth_client *cl = dvauth_client_new(loop, f.path, 100);
    struct ud u = {&s, 1, NULL};
    assert_non_null(auth(cl, "good", &u));
    run_until(loop, &s.n, 1, 2000);
    assert_int_equal(s.st[0], DVAUTH_CLIENT_TEMPFAIL);
    assert_non_null(strstr(s.reason[0], "timeout"));
    fake_stop(&f);
    spin(loop, 20);
    /* handshake, then silence: the request times out and, the server
     * having said nothing since, the connection is made anew next time */
    fake_start(&f, loop, F_SILENT);
    struct dvauth_client *cl2 = dvauth_client_new(loop, f.path, 100);
    assert_non_null(auth(cl2, "good", &u));
    run_until(loop, &s.n, 2, 2000);
    assert_int_equal(s.st[1], DVAUTH_CLIENT_TEMPFAIL);
    assert_non_null(auth(cl2, "good", &u));
    run_until(loop, &s.n, 3, 2000);
    assert_int_equal(f.accepted, 2);
    dvauth_client_free(cl);
    dvauth_client_free(cl2);
    fake_stop(&f);
    spin(loop, 20);
}

static void test_client_bad_server(void **state)
{
    (void)state;
    uv_loop_t *loop = client_loop();
    static const enum fake_mode modes[] = {F_NO_PLAIN, F_BAD_VERSION};
    for (size_t i = 0; i < 2; i++) {
        struct fake f;
        struct seen s = {0};
        fake_start(&f, loop, modes[i]);
        struct dvauth_client *cl = dvauth_client_new(loop, f.path, 2000);
        struct ud u[2] = {{&s, 1, NULL}, {&s, 2, NULL}};
        assert_non_null(auth(cl, "good", &u[0]));
        assert_non_null(auth(cl, "good", &u[1]));
        run_until(loop, &s.n, 2, 2000);
        assert_int_equal(s.n, 2);
        assert_int_equal(s.st[0], DVAUTH_CLIENT_TEMPFAIL);
        assert_int_equal(s.st[1], DVAUTH_CLIENT_TEMPFAIL);
        assert_non_null(strstr(s.reason[0], "handshake"));
        assert_int_equal(f.auths, 0); /* no credentials to a server like that */
        dvauth_client_free(cl);
        fake_stop(&f);
        spin(loop, 20);
    }
    /* garbage after the handshake: the requests on that connection fail,
     * the next one connects again */
    struct fake f;
    struct seen s = {0};
    fake_start(&f, loop, F_NORMAL);
    struct dvauth_client *cl = dvauth_client_new(loop, f.path, 2000);
    struct ud u[3] = {{&s, 1, NULL}, {&s, 2, NULL}, {&s, 3, NULL}};
    assert_non_null(auth(cl, "quiet", &u[0]));
    spin(loop, 30);
    assert_non_null(auth(cl, "garbage", &u[1]));
    run_until(loop, &s.n, 2, 2000);
    assert_int_equal(s.st[0], DVAUTH_CLIENT_TEMPFAIL);
    assert_int_equal(s.st[1], DVAUTH_CLIENT_TEMPFAIL);
    assert_string_equal(s.reason[0], "malformed reply");
    assert_non_null(auth(cl, "good", &u[2]));
    run_until(loop, &s.n, 3, 2000);
    assert_int_equal(s.st[2], DVAUTH_CLIENT_OK);
    assert_int_equal(f.accepted, 2);
    dvauth_client_free(cl);
    fake_stop(&f);
    spin(loop, 20);
}

static void test_client_reconnect_and_absent(void **state)
{
    (void)state;
    uv_loop_t *loop = client_loop();
    struct fake f;
    struct seen s = {0};
    fake_start(&f, loop, F_NORMAL);
    struct dvauth_client *cl = dvauth_client_new(loop, f.path, 1000);
    struct ud u = {&s, 1, NULL};
    assert_non_null(auth(cl, "good", &u));
    run_until(loop, &s.n, 1, 2000);
    /* the server drops the idle connection (a Dovecot restart) */
    fake_drop(f.last);
    spin(loop, 30);
    assert_non_null(auth(cl, "good", &u));
    run_until(loop, &s.n, 2, 2000);
    assert_int_equal(s.st[1], DVAUTH_CLIENT_OK);
    assert_int_equal(f.accepted, 2);
    /* no server at all: TEMPFAIL at once (from the loop), not at the timeout */
    fake_stop(&f);
    spin(loop, 30);
    uint64_t t0 = uv_now(loop);
    assert_non_null(auth(cl, "good", &u));
    assert_int_equal(s.n, 2);
    run_until(loop, &s.n, 3, 2000);
    assert_int_equal(s.st[2], DVAUTH_CLIENT_TEMPFAIL);
    assert_non_null(strstr(s.reason[2], "connect"));
    assert_true(uv_now(loop) - t0 < 500);
    dvauth_client_free(cl);
    spin(loop, 20);
}

static void test_client_free_in_callback(void **state)
{
    (void)state;
    uv_loop_t *loop = client_loop();
    struct fake f;
    struct seen s = {0};
    fake_start(&f, loop, F_REVERSE);
    f.hold = 3;
    struct dvauth_client *cl = dvauth_client_new(loop, f.path, 2000);
    struct ud u[3] = {{&s, 1, NULL}, {&s, 2, NULL}, {&s, 3, NULL}};
    for (int i = 0; i < 3; i++)
        assert_non_null(auth(cl, "good", &u[i]));
    u[2].free_me = cl; /* answered first: frees the client */
    run_until(loop, &s.n, 1, 2000);
    spin(loop, 50);
    assert_int_equal(s.n, 1); /* the other two never called back */
    fake_stop(&f);
    spin(loop, 20);
}

static void test_client_addresses(void **state)
{
    (void)state;
    uv_loop_t *loop = client_loop();
    static const char *const good[] = {"/run/dovecot/auth-client", "127.0.0.1:12345",
                                       "[::1]:12345"};
    static const char *const bad[] = {"",
                                      "relative/path",
                                      "127.0.0.1",
                                      "127.0.0.1:0",
                                      "127.0.0.1:99999",
                                      "host.example:25",
                                      "[::1:25",
                                      "::1:25x"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct dvauth_client *cl = dvauth_client_new(loop, good[i], 1000);
        assert_non_null(cl);
        dvauth_client_free(cl);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_null(dvauth_client_new(loop, bad[i], 1000));
    assert_null(dvauth_client_new(loop, "/x", 0));
    spin(loop, 10);
}

int main(void)
{
    log_init("test_dvauth", 0, LOG_LVL_FATAL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_end),
        cmocka_unit_test(test_escape_roundtrip),
        cmocka_unit_test(test_unescape_edges),
        cmocka_unit_test(test_hello),
        cmocka_unit_test(test_handshake_dovecot23),
        cmocka_unit_test(test_handshake_lenient),
        cmocka_unit_test(test_handshake_hostile),
        cmocka_unit_test(test_build_auth_plain),
        cmocka_unit_test(test_build_auth_escapes_and_resp_last),
        cmocka_unit_test(test_build_auth_refusals),
        cmocka_unit_test(test_reply_parse),
        cmocka_unit_test(test_reply_fail_and_cont),
        cmocka_unit_test(test_reply_hostile),
        cmocka_unit_test(test_client_ok_fail_temp),
        cmocka_unit_test(test_client_out_of_order),
        cmocka_unit_test(test_client_cancel),
        cmocka_unit_test(test_client_timeout),
        cmocka_unit_test(test_client_silent_server),
        cmocka_unit_test(test_client_bad_server),
        cmocka_unit_test(test_client_reconnect_and_absent),
        cmocka_unit_test(test_client_free_in_callback),
        cmocka_unit_test(test_client_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
