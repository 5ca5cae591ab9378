/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for sasl: strict base64 both ways (alphabet, padding, unused
 * bits, bounds), client response lines ("*", "", "="), the AUTH arguments
 * (mechanism case, syntax, offered set, initial responses), PLAIN decoding
 * (NUL count, empty parts, authzid, bounds) and encoding, and the LOGIN
 * exchange with and without an initial response. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "sasl.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- base64 ------------------------------------------------------------- */

static void test_b64_vectors(void **state)
{
    (void)state;
    /* RFC 4648 §10 */
    static const struct {
        const char *plain, *b64;
    } v[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
        {"Username:", SASL_LOGIN_PROMPT_USER},
        {"Password:", SASL_LOGIN_PROMPT_PASS},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char enc[64];
        unsigned char dec[64];
        size_t n;
        size_t pl = strlen(v[i].plain);
        assert_int_equal(sasl_b64_encode(v[i].plain, pl, enc, sizeof enc), strlen(v[i].b64));
        assert_string_equal(enc, v[i].b64);
        assert_int_equal(sasl_b64_len(pl), strlen(v[i].b64));
        assert_int_equal(sasl_b64_decode(v[i].b64, strlen(v[i].b64), dec, sizeof dec, &n),
                         SASL_DONE);
        assert_int_equal(n, pl);
        assert_memory_equal(dec, v[i].plain, pl);
    }
}

static void test_b64_binary_roundtrip(void **state)
{
    (void)state;
    unsigned char in[300], dec[300];
    char enc[512];
    size_t n;
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (unsigned char)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof in; len++) {
        int e = sasl_b64_encode(in, len, enc, sizeof enc);
        assert_true(e >= 0);
        assert_int_equal(sasl_b64_decode(enc, (size_t)e, dec, sizeof dec, &n), SASL_DONE);
        assert_int_equal(n, len);
        assert_memory_equal(dec, in, len);
    }
}

static void test_b64_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zg",       /* not a multiple of 4 */
        "Zg=",      /* idem */
        "Z===",     /* only one symbol before the padding */
        "====",     /* padding only */
        "=",        /* the RFC 4954 empty response is not base64 */
        "Zh==",     /* unused bits not zero (Zg== is the encoding) */
        "Zm9=",     /* idem (Zm8=) */
        "Zg==Zg==", /* padding in the middle */
        "Zm9v\r\n", /* line break */
        "Zm9 v",    /* blank */
        "Zm9-",     /* URL-safe alphabet */
        "Zm9_",     /* idem */
        "Zm9v=",    /* padding beyond */
        "Zg=a",     /* character after padding */
        "*",        /* cancel is not base64 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned char out[16];
        size_t n = 99;
        assert_int_equal(sasl_b64_decode(bad[i], strlen(bad[i]), out, sizeof out, &n),
                         SASL_EBASE64);
        assert_int_equal(n, 0);
    }
    /* NUL inside the text */
    unsigned char out[16];
    size_t n;
    assert_int_equal(sasl_b64_decode("Zm\0v", 4, out, sizeof out, &n), SASL_EBASE64);
}

static void test_b64_bounds(void **state)
{
    (void)state;
    unsigned char out[3];
    char enc[9];
    size_t n;
    /* decode: exactly fitting, one byte over */
    assert_int_equal(sasl_b64_decode(S("Zm9v"), out, 3, &n), SASL_DONE);
    assert_int_equal(sasl_b64_decode(S("Zm9vYg=="), out, 3, &n), SASL_ETOOLONG);
    assert_int_equal(sasl_b64_decode(S("Zm9v"), out, 2, &n), SASL_ETOOLONG);
    /* encode: room for the text and its NUL */
    assert_int_equal(sasl_b64_encode("foobar", 6, enc, 9), 8);
    assert_int_equal(sasl_b64_encode("foobar", 6, enc, 8), SASL_ETOOLONG);
    assert_int_equal(sasl_b64_encode("", 0, enc, 1), 0);
    assert_string_equal(enc, "");
    assert_int_equal(sasl_b64_len(SASL_MSG_MAX), SASL_B64_MAX);
}

static void test_response_lines(void **state)
{
    (void)state;
    unsigned char out[SASL_MSG_MAX];
    size_t n = 7;
    assert_int_equal(sasl_response_decode(S("*"), out, &n), SASL_ECANCEL);
    assert_true(sasl_is_cancel(S("*")));
    assert_false(sasl_is_cancel(S("**")));
    assert_false(sasl_is_cancel(S("")));
    assert_int_equal(sasl_response_decode(S(""), out, &n), SASL_DONE);
    assert_int_equal(n, 0);
    assert_int_equal(sasl_response_decode(S("="), out, &n), SASL_DONE);
    assert_int_equal(n, 0);
    assert_int_equal(sasl_response_decode(S("Zm9v"), out, &n), SASL_DONE);
    assert_int_equal(n, 3);
    assert_int_equal(sasl_response_decode(S("Zm9"), out, &n), SASL_EBASE64);
    /* the bound: SASL_MSG_MAX bytes decode, one more base64 quantum not */
    char big[SASL_B64_MAX + 8];
    unsigned char raw[SASL_MSG_MAX + 3];
    memset(raw, 'x', sizeof raw);
    assert_int_equal(sasl_b64_encode(raw, SASL_MSG_MAX, big, sizeof big), SASL_B64_MAX);
    assert_int_equal(sasl_response_decode(big, SASL_B64_MAX, out, &n), SASL_DONE);
    assert_int_equal(n, SASL_MSG_MAX);
    assert_int_equal(sasl_b64_encode(raw, SASL_MSG_MAX + 3, big, sizeof big), SASL_B64_MAX + 4);
    assert_int_equal(sasl_response_decode(big, SASL_B64_MAX + 4, out, &n), SASL_ETOOLONG);
    /* 1023 bytes: one quantum shorter */
    assert_int_equal(sasl_b64_encode(raw, SASL_MSG_MAX - 1, big, sizeof big), SASL_B64_MAX - 4);
    assert_int_equal(sasl_response_decode(big, SASL_B64_MAX - 4, out, &n), SASL_DONE);
    assert_int_equal(n, SASL_MSG_MAX - 1);
}

/* ---- AUTH --------------------------------------------------------------- */

static void test_auth_parse_table(void **state)
{
    (void)state;
    const unsigned both = SASL_MECH_PLAIN | SASL_MECH_LOGIN;
    static const struct {
        const char *args;
        unsigned offered;
        int rc;
        enum sasl_mech mech;
        bool has_ir;
        const char *ir; /* decoded, NULs as \0 in a literal: compared with ir_len */
        size_t ir_len;
    } t[] = {
        {"PLAIN", 3, SASL_DONE, SASL_MECH_PLAIN, false, "", 0},
        {"plain", 3, SASL_DONE, SASL_MECH_PLAIN, false, "", 0},
        {"PlAiN", 3, SASL_DONE, SASL_MECH_PLAIN, false, "", 0},
        {"LOGIN", 3, SASL_DONE, SASL_MECH_LOGIN, false, "", 0},
        {"PLAIN =", 3, SASL_DONE, SASL_MECH_PLAIN, true, "", 0},
        {"PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm", 3, SASL_DONE, SASL_MECH_PLAIN, true,
         "\0tim\0tanstaaftanstaaf", 21},
        {"LOGIN dGlt", 3, SASL_DONE, SASL_MECH_LOGIN, true, "tim", 3},
        {"LOGIN", SASL_MECH_PLAIN, SASL_EMECH, SASL_MECH_NONE, false, "", 0},
        {"CRAM-MD5", 3, SASL_EMECH, SASL_MECH_NONE, false, "", 0},
        {"SCRAM-SHA-256-PLUS", 3, SASL_EMECH, SASL_MECH_NONE, false, "", 0},
        {"X_Y-Z", 3, SASL_EMECH, SASL_MECH_NONE, false, "", 0},
        {"", 3, SASL_ESYNTAX, SASL_MECH_NONE, false, "", 0},
        {" PLAIN", 3, SASL_ESYNTAX, SASL_MECH_NONE, false, "", 0},
        {"PLAIN ", 3, SASL_ESYNTAX, SASL_MECH_NONE, false, "", 0},
        {"PLAIN  Zm9v", 3, SASL_ESYNTAX, SASL_MECH_NONE, false, "", 0},
        {"PLAIN Zm9v extra", 3, SASL_ESYNTAX, SASL_MECH_NONE, false, "", 0},
        {"PLAIN *", 3, SASL_ESYNTAX, SASL_MECH_NONE, false, "", 0},
        {"PLAIN\tZm9v", 3, SASL_ESYNTAX, SASL_MECH_NONE, false, "", 0},
        {"PL.AIN", 3, SASL_ESYNTAX, SASL_MECH_NONE, false, "", 0},
        {"ABCDEFGHIJKLMNOPQRSTU", 3, SASL_ESYNTAX, SASL_MECH_NONE, false, "", 0}, /* 21 */
        {"ABCDEFGHIJKLMNOPQRST", 3, SASL_EMECH, SASL_MECH_NONE, false, "", 0},    /* 20 */
        {"PLAIN Zm9", 3, SASL_EBASE64, SASL_MECH_NONE, false, "", 0},
        {"PLAIN ==", 3, SASL_EBASE64, SASL_MECH_NONE, false, "", 0},
        {"LOGIN Zh==", 3, SASL_EBASE64, SASL_MECH_NONE, false, "", 0},
        {"LOGIN\r", 3, SASL_ESYNTAX, SASL_MECH_NONE, false, "", 0},
    };
    (void)both;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct sasl_auth_cmd c;
        int rc = sasl_auth_parse(t[i].args, strlen(t[i].args), t[i].offered, &c);
        if (rc != t[i].rc)
            fail_msg("AUTH %s: got %d (%s), want %d", t[i].args, rc, sasl_strerror(rc), t[i].rc);
        assert_int_equal(c.mech, t[i].mech);
        if (rc == SASL_DONE) {
            assert_int_equal(c.has_ir, t[i].has_ir);
            assert_int_equal(c.ir_len, t[i].ir_len);
            assert_memory_equal(c.ir, t[i].ir, t[i].ir_len);
        }
    }
    assert_string_equal(sasl_mech_name(SASL_MECH_PLAIN), "PLAIN");
    assert_string_equal(sasl_mech_name(SASL_MECH_LOGIN), "LOGIN");
}

static void test_auth_parse_long_ir(void **state)
{
    (void)state;
    static char line[8 + SASL_B64_MAX + 8];
    unsigned char raw[SASL_MSG_MAX + 1];
    struct sasl_auth_cmd c;
    memset(raw, 'y', sizeof raw);
    memcpy(line, "PLAIN ", 6);
    int e = sasl_b64_encode(raw, SASL_MSG_MAX, line + 6, sizeof line - 6);
    assert_int_equal(sasl_auth_parse(line, 6 + (size_t)e, SASL_MECH_PLAIN, &c), SASL_DONE);
    assert_int_equal(c.ir_len, SASL_MSG_MAX);
    e = sasl_b64_encode(raw, SASL_MSG_MAX + 1, line + 6, sizeof line - 6);
    assert_int_equal(sasl_auth_parse(line, 6 + (size_t)e, SASL_MECH_PLAIN, &c), SASL_ETOOLONG);
    /* a NUL inside the arguments is a syntax error of the mechanism name
     * or bad base64 of the response, never silently cut */
    assert_int_equal(sasl_auth_parse("PLA\0IN", 6, 3, &c), SASL_ESYNTAX);
    assert_int_equal(sasl_auth_parse("PLAIN Zm\0v", 10, 3, &c), SASL_EBASE64);
}

/* ---- PLAIN -------------------------------------------------------------- */

static void test_plain_decode_table(void **state)
{
    (void)state;
    static const struct {
        const char *msg;
        size_t len;
        int rc;
        const char *z, *c, *p;
    } t[] = {
        {S("\0tim\0tanstaaftanstaaf"), SASL_DONE, "", "tim", "tanstaaftanstaaf"},
        {S("Ursel\0Kurt\0xipj3plmq"), SASL_DONE, "Ursel", "Kurt", "xipj3plmq"},
        {S("\0u\0p"), SASL_DONE, "", "u", "p"},
        {S("\0us\xc3\xa9r\0p\xc3\xa4ss"), SASL_DONE, "", "us\xc3\xa9r", "p\xc3\xa4ss"},
        {S(""), SASL_EMSG, "", "", ""},
        {S("timpass"), SASL_EMSG, "", "", ""},       /* no NUL */
        {S("\0timpass"), SASL_EMSG, "", "", ""},     /* one NUL */
        {S("\0tim\0pa\0ss"), SASL_EMSG, "", "", ""}, /* three NULs */
        {S("\0\0pass"), SASL_EMSG, "", "", ""},      /* empty authcid */
        {S("\0tim\0"), SASL_EMSG, "", "", ""},       /* empty password */
        {S("\0\0"), SASL_EMSG, "", "", ""},
        {S("\0\0\0"), SASL_EMSG, "", "", ""},
        {S("\0tim\0pass\0"), SASL_EMSG, "", "", ""}, /* trailing NUL */
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct sasl_creds cr;
        int rc = sasl_plain_decode(t[i].msg, t[i].len, &cr);
        if (rc != t[i].rc)
            fail_msg("case %zu: got %d, want %d", i, rc, t[i].rc);
        assert_string_equal(cr.authzid, t[i].z);
        assert_string_equal(cr.authcid, t[i].c);
        assert_string_equal(cr.passwd, t[i].p);
    }
}

static void test_plain_bounds(void **state)
{
    (void)state;
    unsigned char msg[3 * SASL_FIELD_MAX + 10];
    struct sasl_creds cr;
    /* every part at its bound: fine */
    memset(msg, 'a', SASL_FIELD_MAX);
    msg[SASL_FIELD_MAX] = 0;
    memset(msg + SASL_FIELD_MAX + 1, 'b', SASL_FIELD_MAX);
    msg[2 * SASL_FIELD_MAX + 1] = 0;
    memset(msg + 2 * SASL_FIELD_MAX + 2, 'c', SASL_FIELD_MAX);
    size_t len = 3 * SASL_FIELD_MAX + 2;
    assert_int_equal(sasl_plain_decode(msg, len, &cr), SASL_DONE);
    assert_int_equal(strlen(cr.authzid), SASL_FIELD_MAX);
    assert_int_equal(strlen(cr.passwd), SASL_FIELD_MAX);
    /* one more byte in the password: refused, not cut, and wiped */
    msg[len] = 'c';
    assert_int_equal(sasl_plain_decode(msg, len + 1, &cr), SASL_ETOOLONG);
    assert_string_equal(cr.passwd, "");
    assert_string_equal(cr.authcid, "");
    /* in the authzid / authcid */
    unsigned char m2[SASL_FIELD_MAX + 8];
    memset(m2, 'z', SASL_FIELD_MAX + 1);
    memcpy(m2 + SASL_FIELD_MAX + 1, "\0u\0p", 4);
    assert_int_equal(sasl_plain_decode(m2, SASL_FIELD_MAX + 5, &cr), SASL_ETOOLONG);
    memset(m2, 'z', SASL_FIELD_MAX + 2); /* "" NUL 256 x 'z' NUL "p" */
    m2[0] = 0;
    m2[SASL_FIELD_MAX + 2] = 0;
    m2[SASL_FIELD_MAX + 3] = 'p';
    assert_int_equal(sasl_plain_decode(m2, SASL_FIELD_MAX + 4, &cr), SASL_ETOOLONG);
    m2[SASL_FIELD_MAX + 1] = 0; /* authcid of 255 bytes, then an empty field: three NULs */
    assert_int_equal(sasl_plain_decode(m2, SASL_FIELD_MAX + 4, &cr), SASL_EMSG);
}

static void test_plain_encode(void **state)
{
    (void)state;
    struct sasl_creds cr = {"", "tim", "tanstaaf"}, back;
    unsigned char out[SASL_MSG_MAX];
    int n = sasl_plain_encode(&cr, out, sizeof out);
    assert_int_equal(n, 13);
    assert_memory_equal(out, "\0tim\0tanstaaf", 13);
    assert_int_equal(sasl_plain_decode(out, (size_t)n, &back), SASL_DONE);
    assert_string_equal(back.authcid, "tim");
    struct sasl_creds z = {"admin", "tim", "pw"};
    n = sasl_plain_encode(&z, out, sizeof out);
    assert_memory_equal(out, "admin\0tim\0pw", 12);
    assert_int_equal(sasl_plain_encode(&z, out, 11), SASL_ETOOLONG);
    struct sasl_creds e1 = {"", "", "pw"}, e2 = {"", "u", ""};
    assert_int_equal(sasl_plain_encode(&e1, out, sizeof out), SASL_EMSG);
    assert_int_equal(sasl_plain_encode(&e2, out, sizeof out), SASL_EMSG);
}

/* ---- LOGIN -------------------------------------------------------------- */

static void test_login_two_steps(void **state)
{
    (void)state;
    struct sasl_login l;
    struct sasl_auth_cmd c;
    const char *prompt;
    assert_int_equal(sasl_auth_parse(S("LOGIN"), SASL_MECH_LOGIN, &c), SASL_DONE);
    assert_int_equal(sasl_login_begin(&l, &c, &prompt), SASL_MORE);
    assert_string_equal(prompt, "VXNlcm5hbWU6");
    assert_int_equal(sasl_login_feed(&l, S("dGlt"), &prompt), SASL_MORE); /* tim */
    assert_string_equal(prompt, "UGFzc3dvcmQ6");
    assert_int_equal(sasl_login_feed(&l, S("c2VjcmV0"), &prompt), SASL_DONE); /* secret */
    assert_null(prompt);
    assert_string_equal(l.creds.authcid, "tim");
    assert_string_equal(l.creds.passwd, "secret");
    assert_string_equal(l.creds.authzid, "");
    /* over: more input is an error */
    assert_int_equal(sasl_login_feed(&l, S("eA=="), &prompt), SASL_EMSG);
}

static void test_login_initial_response(void **state)
{
    (void)state;
    struct sasl_login l;
    struct sasl_auth_cmd c;
    const char *prompt;
    assert_int_equal(sasl_auth_parse(S("login dGlt"), 3, &c), SASL_DONE);
    assert_int_equal(sasl_login_begin(&l, &c, &prompt), SASL_MORE);
    assert_string_equal(prompt, SASL_LOGIN_PROMPT_PASS);
    assert_int_equal(sasl_login_feed(&l, S("cHc="), &prompt), SASL_DONE);
    assert_string_equal(l.creds.authcid, "tim");
    assert_string_equal(l.creds.passwd, "pw");
    /* "AUTH LOGIN =": an empty user name */
    assert_int_equal(sasl_auth_parse(S("LOGIN ="), 3, &c), SASL_DONE);
    assert_int_equal(sasl_login_begin(&l, &c, &prompt), SASL_EMSG);
    /* NULL command: like no initial response */
    assert_int_equal(sasl_login_begin(&l, NULL, &prompt), SASL_MORE);
    assert_string_equal(prompt, SASL_LOGIN_PROMPT_USER);
}

static void test_login_errors(void **state)
{
    (void)state;
    struct sasl_login l;
    const char *prompt;
    static const struct {
        const char *user, *pass;
        int rc_user, rc_pass;
    } t[] = {
        {"*", NULL, SASL_ECANCEL, 0},
        {"dGlt", "*", SASL_MORE, SASL_ECANCEL},
        {"", NULL, SASL_EMSG, 0}, /* empty user */
        {"=", NULL, SASL_EMSG, 0},
        {"dGlt", "", SASL_MORE, SASL_EMSG}, /* empty password */
        {"dAB1", NULL, SASL_EMSG, 0},       /* "t\0u": NUL in the name */
        {"dGlt", "cAB3", SASL_MORE, SASL_EMSG},
        {"dGl", NULL, SASL_EBASE64, 0},
        {"dGlt", "cHc", SASL_MORE, SASL_EBASE64},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        assert_int_equal(sasl_login_begin(&l, NULL, &prompt), SASL_MORE);
        int rc = sasl_login_feed(&l, t[i].user, strlen(t[i].user), &prompt);
        if (rc != t[i].rc_user)
            fail_msg("case %zu user: got %d want %d", i, rc, t[i].rc_user);
        if (rc == SASL_MORE) {
            rc = sasl_login_feed(&l, t[i].pass, strlen(t[i].pass), &prompt);
            if (rc != t[i].rc_pass)
                fail_msg("case %zu pass: got %d want %d", i, rc, t[i].rc_pass);
        }
        /* after an error the exchange is over and nothing is kept */
        assert_int_equal(l.step, SASL_LOGIN_END);
        assert_string_equal(l.creds.authcid, "");
        assert_string_equal(l.creds.passwd, "");
    }
    /* a user name of SASL_FIELD_MAX + 1 bytes */
    unsigned char raw[SASL_FIELD_MAX + 1];
    char b64[SASL_B64_MAX + 1];
    memset(raw, 'u', sizeof raw);
    int e = sasl_b64_encode(raw, sizeof raw, b64, sizeof b64);
    assert_int_equal(sasl_login_begin(&l, NULL, &prompt), SASL_MORE);
    assert_int_equal(sasl_login_feed(&l, b64, (size_t)e, &prompt), SASL_ETOOLONG);
    e = sasl_b64_encode(raw, SASL_FIELD_MAX, b64, sizeof b64);
    assert_int_equal(sasl_login_begin(&l, NULL, &prompt), SASL_MORE);
    assert_int_equal(sasl_login_feed(&l, b64, (size_t)e, &prompt), SASL_MORE);
}

static void test_strerror_wipe(void **state)
{
    (void)state;
    for (int rc = -7; rc <= 1; rc++)
        assert_non_null(sasl_strerror(rc));
    char secret[8] = "hunter2";
    sasl_wipe(secret, sizeof secret);
    for (size_t i = 0; i < sizeof secret; i++)
        assert_int_equal(secret[i], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_vectors),        cmocka_unit_test(test_b64_binary_roundtrip),
        cmocka_unit_test(test_b64_rejects),        cmocka_unit_test(test_b64_bounds),
        cmocka_unit_test(test_response_lines),     cmocka_unit_test(test_auth_parse_table),
        cmocka_unit_test(test_auth_parse_long_ir), cmocka_unit_test(test_plain_decode_table),
        cmocka_unit_test(test_plain_bounds),       cmocka_unit_test(test_plain_encode),
        cmocka_unit_test(test_login_two_steps),    cmocka_unit_test(test_login_initial_response),
        cmocka_unit_test(test_login_errors),       cmocka_unit_test(test_strerror_wipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
