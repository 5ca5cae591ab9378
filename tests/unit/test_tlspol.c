/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for tlspol (pure): SNI patterns and how a server name picks
 * one, and fingerprint lists. Table-driven: got X, want Y.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tlspol.h"

#include <errno.h>
#include <string.h>

static void test_pattern_ok(void **state)
{
    (void)state;
    static const struct {
        const char *pat;
        bool want;
    } cases[] = {
        {"mx.example.com", true},
        {"localhost", true},
        {"*.example.com", true},
        {"MX-1.Example.COM", true},
        {"*.com", false}, /* a wildcard needs two labels after it */
        {"*", false},
        {"*example.com", false},
        {"a.*.example.com", false},
        {"*.*.example.com", false},
        {"", false},
        {"-a.example.com", false},
        {"a-.example.com", false},
        {"a..example.com", false},
        {"example.com.", false},
        {"ex ample.com", false},
        {"ex_ample.com", false},
        {"192.0.2.1", true}, /* looks like a name; never sent as SNI anyway */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (tlspol_sni_pattern_ok(cases[i].pat) != cases[i].want)
            fail_msg("pattern '%s': got %d, want %d", cases[i].pat, !cases[i].want, cases[i].want);
    }
}

static void test_match(void **state)
{
    (void)state;
    static const struct {
        const char *pat, *host;
        bool want;
    } cases[] = {
        {"mx.example.com", "mx.example.com", true},
        {"mx.example.com", "MX.EXAMPLE.COM", true},
        {"mx.example.com", "mx.example.com.", true},
        {"mx.example.com", "mx.example.co", false},
        {"mx.example.com", "xmx.example.com", false},
        {"mx.example.com", "", false},
        {"mx.example.com", NULL, false},
        {"*.example.com", "a.example.com", true},
        {"*.example.com", "A.Example.Com", true},
        {"*.example.com", "a.example.com.", true},
        {"*.example.com", "example.com", false},
        {"*.example.com", ".example.com", false},
        {"*.example.com", "a.b.example.com", false},
        {"*.example.com", "aexample.com", false},
        {"*.example.com", "a.example.org", false},
        {"*.example.com", "a.xexample.com", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (tlspol_sni_match(cases[i].pat, cases[i].host) != cases[i].want)
            fail_msg("'%s' vs '%s': got %d, want %d", cases[i].pat,
                     cases[i].host ? cases[i].host : "(null)", !cases[i].want, cases[i].want);
    }
}

static void test_pick(void **state)
{
    (void)state;
    static const char *const pats[] = {"*.example.com", "mx.example.com", "*.example.org",
                                       "mail.example.org", "mx.example.com"};
    static const struct {
        const char *host;
        size_t want;
    } cases[] = {
        {"mx.example.com", 1},   /* exact beats an earlier wildcard */
        {"smtp.example.com", 0}, /* wildcard */
        {"mail.example.org", 3},  {"x.example.org", 2}, {"example.org", SIZE_MAX},
        {"other.test", SIZE_MAX}, {"", SIZE_MAX},       {NULL, SIZE_MAX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t got = tlspol_sni_pick(pats, sizeof pats / sizeof pats[0], cases[i].host);
        if (got != cases[i].want)
            fail_msg("'%s': got %zu, want %zu", cases[i].host ? cases[i].host : "(null)", got,
                     cases[i].want);
    }
    assert_int_equal(tlspol_sni_pick(pats, 0, "mx.example.com"), SIZE_MAX);
}

#define HEX64 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define COLONS                                                                                     \
    "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:"   \
    "EE:FF"

static void test_fp_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int want_rc;
        size_t want_n;
        const char *want_err; /* substring */
    } cases[] = {
        {"sha256:" HEX64, 0, 1, NULL},
        {"SHA256:" COLONS, 0, 1, NULL},
        {"sha256:" HEX64 ", sha256:" COLONS "  sha256:" HEX64, 0, 3, NULL},
        {"", -EINVAL, 0, "no fingerprint"},
        {" , ", -EINVAL, 0, "no fingerprint"},
        {HEX64, -EINVAL, 0, "is not a fingerprint"},                /* no prefix */
        {"sha1:" HEX64, -EINVAL, 0, "'sha1:"},                      /* another hash */
        {"sha256:" HEX64 "00", -EINVAL, 0, "is not a fingerprint"}, /* 33 bytes */
        {"sha256:00112233", -EINVAL, 0, "is not a fingerprint"},    /* short */
        {"sha256:" HEX64 ":", -EINVAL, 0, "is not a fingerprint"},  /* trailing colon */
        {"sha256:0" HEX64, -EINVAL, 0, "is not a fingerprint"},     /* odd digits */
        {"sha256:zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", -EINVAL, 0,
         "is not a fingerprint"},
        {"sha256:" HEX64 " bogus", -EINVAL, 0, "'bogus'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t fps[4][TLSPOL_FP_LEN];
        size_t n = 99;
        char err[200] = "";
        int rc = tlspol_fp_parse(cases[i].text, fps, 4, &n, err, sizeof err);
        if (rc != cases[i].want_rc)
            fail_msg("'%s': got rc %d, want %d (%s)", cases[i].text, rc, cases[i].want_rc, err);
        if (rc == 0 && n != cases[i].want_n)
            fail_msg("'%s': got %zu entries, want %zu", cases[i].text, n, cases[i].want_n);
        if (cases[i].want_err && !strstr(err, cases[i].want_err))
            fail_msg("'%s': error '%s' lacks '%s'", cases[i].text, err, cases[i].want_err);
    }
    uint8_t one[5][TLSPOL_FP_LEN];
    size_t n;
    char err[200];
    assert_int_equal(tlspol_fp_parse("sha256:" HEX64 " sha256:" HEX64, one, 1, &n, err, sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, "more than 1"));
}

static void test_fp_format_and_in(void **state)
{
    (void)state;
    uint8_t fps[2][TLSPOL_FP_LEN];
    size_t n;
    char err[200];
    assert_int_equal(
        tlspol_fp_parse("sha256:" COLONS ",sha256:" HEX64, fps, 2, &n, err, sizeof err), 0);
    char text[TLSPOL_FP_TEXT];
    tlspol_fp_format(fps[0], text);
    assert_string_equal(text, "sha256:" HEX64);
    assert_true(tlspol_fp_in(fps[1], fps, 1));
    uint8_t other[TLSPOL_FP_LEN];
    memcpy(other, fps[0], sizeof other);
    other[31] ^= 1;
    assert_false(tlspol_fp_in(other, fps, 2));
    assert_false(tlspol_fp_in(fps[0], fps, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern_ok),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_fp_parse),
        cmocka_unit_test(test_fp_format_and_in),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
