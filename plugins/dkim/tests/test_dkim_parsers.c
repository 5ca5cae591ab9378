/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the pure pieces of the DKIM plugin: signing table, CIDR
 * lists, key file, Authentication-Results rendering and recognition,
 * require_valid_from policy, result mapping, key cache, DNS codec.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/nameser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dkim.h>

#include "dkp_ar.h"
#include "dkp_cache.h"
#include "dkp_dns.h"
#include "dkp_keyfile.h"
#include "dkp_policy.h"
#include "dkp_table.h"
#include "dkp_verify.h"

static void test_table_ok(void **state)
{
    (void)state;
    const char *text = "# domain selector key [alg]\n"
                       "\n"
                       "Example.COM  rsa2024  /etc/dkim/rsa.pem\n"
                       "example.com\ted2024\ted.pem\ted25519-sha256   # dual signing\n"
                       "other.example s1 k.pem rsa-sha256\r\n";
    struct dkp_table t;
    unsigned line = 0;
    char err[256];
    assert_int_equal(dkp_table_parse(text, strlen(text), &t, &line, err, sizeof err), 0);
    assert_int_equal(t.n, 3);
    struct {
        const char *d, *s, *k;
        enum dkp_alg alg;
        unsigned line;
    } want[] = {
        {"example.com", "rsa2024", "/etc/dkim/rsa.pem", DKP_ALG_RSA_SHA256, 3},
        {"example.com", "ed2024", "ed.pem", DKP_ALG_ED25519_SHA256, 4},
        {"other.example", "s1", "k.pem", DKP_ALG_RSA_SHA256, 5},
    };
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(t.v[i].domain, want[i].d);
        assert_string_equal(t.v[i].selector, want[i].s);
        assert_string_equal(t.v[i].keyfile, want[i].k);
        assert_int_equal(t.v[i].alg, want[i].alg);
        assert_int_equal(t.v[i].line, want[i].line);
    }
    assert_int_equal(dkp_table_find(&t, "EXAMPLE.com", 0), 0);
    assert_int_equal(dkp_table_find(&t, "example.com", 1), 1);
    assert_int_equal(dkp_table_find(&t, "example.com", 2), 3);
    assert_int_equal(dkp_table_find(&t, "sub.example.com", 0), 3);
    dkp_table_free(&t);
}

static void test_table_errors(void **state)
{
    (void)state;
    struct {
        const char *text;
        unsigned want_line;
        const char *want_err;
    } cases[] = {
        {"example.com sel\n", 1, "too few fields"},
        {"ok.example s k\nexample.com sel key rsa-sha1\n", 2, "unknown algorithm"},
        {"exa mple.com\n", 1, "too few"},
        {"example..com sel key\n", 1, "invalid domain"},
        {"example.com s/el key\n", 1, "invalid selector"},
        {"example.com sel key rsa-sha256 extra\n", 1, "too many fields"},
        {"a.example s k\n\n\na.example S k2\n", 4, "duplicate entry"},
        {"-bad_but_ok.example s k\nexample.com\n", 2, "too few"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dkp_table t;
        unsigned line = 0;
        char err[256] = "";
        int rc = dkp_table_parse(cases[i].text, strlen(cases[i].text), &t, &line, err, sizeof err);
        if (rc != -1 || line != cases[i].want_line || !strstr(err, cases[i].want_err))
            fail_msg("case %zu: got rc=%d line=%u err=\"%s\", want line %u \"%s\"", i, rc, line,
                     err, cases[i].want_line, cases[i].want_err);
        assert_int_equal(t.n, 0);
    }
}

static void test_keyfile(void **state)
{
    (void)state;
    const char *text = "# test keys\n"
                       "sel._domainkey.Example.com v=DKIM1; k=rsa; p=AAAA  \n"
                       "ed._domainkey.example.com. \"v=DKIM1; k=ed25519; \" \"p=BBBB\"\n";
    struct dkp_keyfile kf;
    unsigned line;
    char err[256];
    assert_int_equal(dkp_keyfile_parse(text, strlen(text), &kf, &line, err, sizeof err), 0);
    assert_int_equal(kf.n, 2);
    assert_string_equal(dkp_keyfile_find(&kf, "SEL._domainkey.example.com"),
                        "v=DKIM1; k=rsa; p=AAAA");
    assert_string_equal(dkp_keyfile_find(&kf, "ed._domainkey.example.com."),
                        "v=DKIM1; k=ed25519; p=BBBB");
    assert_null(dkp_keyfile_find(&kf, "x._domainkey.example.com"));
    dkp_keyfile_free(&kf);

    const char *bad[] = {"name-only\n", "n \"unterminated\n", "n \"a\" junk\n"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(dkp_keyfile_parse(bad[i], strlen(bad[i]), &kf, &line, err, sizeof err),
                         -1);
        assert_int_equal(line, 1);
    }
}

static void test_ar_format(void **state)
{
    (void)state;
    struct {
        struct dkp_sigres r;
        int none;
        const char *want;
    } cases[] = {
        {{DKP_RES_PASS, "example.com", "sel", "abcdEFGH", "rsa-sha256", "", 2048}, 0,
         "mx.test; dkim=pass header.d=example.com header.s=sel header.a=rsa-sha256 "
         "header.b=abcdEFGH"},
        {{DKP_RES_FAIL, "example.com", "sel", "ab/d+F=H", "ed25519-sha256",
          "body hash did not verify", 0}, 0,
         "mx.test; dkim=fail reason=\"body hash did not verify\" header.d=example.com "
         "header.s=sel header.a=ed25519-sha256 header.b=\"ab/d+F=H\""},
        {{DKP_RES_TEMPERROR, "ex\"a;mple", "s", "", "", "say \"hi\"\r\n", 0}, 0,
         "mx.test; dkim=temperror reason=\"say \\\"hi\\\"\" header.d=\"ex\\\"a;mple\" "
         "header.s=s"},
        {{0}, 1, "mx.test; dkim=none"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[512];
        int n = dkp_ar_format("mx.test", cases[i].none ? NULL : &cases[i].r, out, sizeof out);
        assert_int_equal(n, (int)strlen(cases[i].want));
        assert_string_equal(out, cases[i].want);
    }
    char small[10];
    assert_int_equal(dkp_ar_format("mx.test", NULL, small, sizeof small), -1);
}

static void test_ar_authserv(void **state)
{
    (void)state;
    struct {
        const char *value;
        int want;
    } cases[] = {
        {"mx.test; dkim=pass", 1},
        {" MX.Test; spf=pass", 1},
        {"\r\n\tmx.test 1; dkim=pass", 1},
        {"(forged) mx.test; dkim=pass", 1},
        /* raw, as header_at gives it: folds inside comments and before */
        {"(forged\r\n  again) MX.TEST\r\n\t; spf=pass", 1},
        {"\r\n (a (nested\r\n\t) one)\r\n mx.test; dkim=pass", 1},
        {"\"mx.test\"; dkim=pass", 1},
        {"mx.test.evil; dkim=pass", 0},
        {"other.test; dkim=pass header.d=mx.test", 0},
        {"mx; dkim=pass", 0},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = dkp_ar_has_authserv_id(cases[i].value, strlen(cases[i].value), "mx.test");
        if (got != cases[i].want)
            fail_msg("\"%s\": got %d, want %d", cases[i].value, got, cases[i].want);
    }
    /* a long comment in front does not hide the id */
    char longv[4096];
    memset(longv, 'x', sizeof longv);
    longv[0] = '(';
    snprintf(longv + 3000, sizeof longv - 3000, ") mx.test; dkim=pass");
    assert_true(dkp_ar_has_authserv_id(longv, strlen(longv), "mx.test"));
    assert_true(dkp_ar_valid_authserv_id("mx.example.com"));
    assert_false(dkp_ar_valid_authserv_id("mx example"));
    assert_false(dkp_ar_valid_authserv_id("a;b"));
    assert_false(dkp_ar_valid_authserv_id(""));
}

static struct dkp_sigres R(enum dkp_result r, const char *d)
{
    struct dkp_sigres s;
    memset(&s, 0, sizeof s);
    s.result = r;
    snprintf(s.domain, sizeof s.domain, "%s", d);
    return s;
}

static void test_policy(void **state)
{
    (void)state;
    struct dkp_policy p = {0};
    char err[128];
    assert_int_equal(dkp_policy_parse_domains(&p, "Bank.example, pay.example", err, sizeof err),
                     0);
    p.on_fail = DKP_ACT_REJECT;
    p.on_temperror = DKP_ACT_TEMPFAIL;
    struct {
        const char *what, *from;
        struct dkp_sigres res[2];
        size_t n;
        enum dkp_policy_action want;
        const char *enh;
    } cases[] = {
        {"unlisted", "other.example", {{0}}, 0, DKP_ACT_TAG, NULL},
        {"no from", NULL, {{0}}, 0, DKP_ACT_TAG, NULL},
        {"unsigned", "bank.example", {{0}}, 0, DKP_ACT_REJECT, "5.7.20"},
        {"pass aligned", "bank.example", {R(DKP_RES_PASS, "bank.example")}, 1, DKP_ACT_TAG, NULL},
        {"pass parent", "bank.example", {R(DKP_RES_PASS, "example")}, 1, DKP_ACT_TAG, NULL},
        {"pass other", "bank.example", {R(DKP_RES_PASS, "esp.example")}, 1, DKP_ACT_REJECT,
         "5.7.22"},
        {"fail", "bank.example", {R(DKP_RES_FAIL, "bank.example")}, 1, DKP_ACT_REJECT, "5.7.20"},
        {"policy only", "bank.example", {R(DKP_RES_POLICY, "bank.example")}, 1, DKP_ACT_REJECT,
         "5.7.21"},
        {"temperror", "bank.example",
         {R(DKP_RES_TEMPERROR, "bank.example"), R(DKP_RES_FAIL, "x.example")}, 2,
         DKP_ACT_TEMPFAIL, "4.7.20"},
        {"fail + pass", "pay.example",
         {R(DKP_RES_FAIL, "pay.example"), R(DKP_RES_PASS, "pay.example")}, 2, DKP_ACT_TAG, NULL},
        {"lookalike", "bank.example", {R(DKP_RES_PASS, "nk.example")}, 1, DKP_ACT_REJECT,
         "5.7.22"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dkp_policy_decision d;
        dkp_policy_eval(&p, cases[i].from, cases[i].res, cases[i].n, &d);
        if (d.action != cases[i].want)
            fail_msg("%s: got action %d, want %d", cases[i].what, d.action, cases[i].want);
        if (cases[i].enh)
            assert_string_equal(d.enh, cases[i].enh);
        if (d.action == DKP_ACT_REJECT)
            assert_int_equal(d.code, 550);
        if (d.action == DKP_ACT_TEMPFAIL)
            assert_int_equal(d.code, 451);
    }
    /* tag mode: nothing rejected, but the symbol tells */
    p.on_fail = DKP_ACT_TAG;
    struct dkp_policy_decision d;
    dkp_policy_eval(&p, "bank.example", NULL, 0, &d);
    assert_int_equal(d.action, DKP_ACT_TAG);
    assert_string_equal(d.symbol, "DKIM_AUTHOR_MISSING");
    dkp_policy_free(&p);

    assert_int_equal(dkp_policy_parse_domains(&p, "ok.example, bad..example", err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "bad..example"));
    enum dkp_policy_action a;
    assert_int_equal(dkp_policy_parse_action("Reject", &a), 0);
    assert_int_equal(a, DKP_ACT_REJECT);
    assert_int_equal(dkp_policy_parse_action("drop", &a), -1);
}

static void test_map(void **state)
{
    (void)state;
    const unsigned P = DKIM_SIGFLAG_PROCESSED | DKIM_SIGFLAG_PASSED;
    struct {
        const char *what;
        struct dkp_verify_facts f;
        enum dkp_result want;
    } cases[] = {
        {"pass", {P, DKIM_SIGBH_MATCH, DKIM_SIGERROR_OK, 1, DKP_KEY_FOUND, DKIM_SIGN_RSASHA256,
                  2048, 1024, 0}, DKP_RES_PASS},
        {"bh mismatch", {P, DKIM_SIGBH_MISMATCH, DKIM_SIGERROR_OK, 1, DKP_KEY_FOUND,
                         DKIM_SIGN_RSASHA256, 2048, 1024, 0}, DKP_RES_FAIL},
        {"badsig", {DKIM_SIGFLAG_PROCESSED, DKIM_SIGBH_MATCH, DKIM_SIGERROR_BADSIG, 1,
                    DKP_KEY_FOUND, DKIM_SIGN_RSASHA256, 2048, 1024, 0}, DKP_RES_FAIL},
        {"dns timeout", {DKIM_SIGFLAG_PROCESSED, DKIM_SIGBH_UNTESTED, DKIM_SIGERROR_NOKEY, 1,
                         DKP_KEY_TEMPFAIL, DKIM_SIGN_RSASHA256, 0, 1024, 0}, DKP_RES_TEMPERROR},
        {"nxdomain", {DKIM_SIGFLAG_PROCESSED, DKIM_SIGBH_UNTESTED, DKIM_SIGERROR_NOKEY, 1,
                      DKP_KEY_NONE, DKIM_SIGN_RSASHA256, 0, 1024, 0}, DKP_RES_PERMERROR},
        {"bad reply", {0, DKIM_SIGBH_UNTESTED, DKIM_SIGERROR_NOKEY, 1, DKP_KEY_BADREPLY,
                       DKIM_SIGN_RSASHA256, 0, 1024, 0}, DKP_RES_PERMERROR},
        {"key syntax", {DKIM_SIGFLAG_PROCESSED, DKIM_SIGBH_UNTESTED, DKIM_SIGERROR_KEYDECODE, 1,
                        DKP_KEY_FOUND, DKIM_SIGN_RSASHA256, 0, 1024, 0}, DKP_RES_PERMERROR},
        {"sig syntax", {0, DKIM_SIGBH_UNTESTED, DKIM_SIGERROR_MISSING_B, 0, DKP_KEY_FOUND,
                        DKIM_SIGN_UNKNOWN, 0, 1024, 0}, DKP_RES_NEUTRAL},
        {"sha1", {P, DKIM_SIGBH_MATCH, DKIM_SIGERROR_OK, 1, DKP_KEY_FOUND, DKIM_SIGN_RSASHA1,
                  2048, 1024, 0}, DKP_RES_POLICY},
        {"sha1 allowed", {P, DKIM_SIGBH_MATCH, DKIM_SIGERROR_OK, 1, DKP_KEY_FOUND,
                          DKIM_SIGN_RSASHA1, 2048, 1024, 1}, DKP_RES_PASS},
        {"small key", {P, DKIM_SIGBH_MATCH, DKIM_SIGERROR_OK, 1, DKP_KEY_FOUND,
                       DKIM_SIGN_RSASHA256, 768, 1024, 0}, DKP_RES_POLICY},
        {"ed25519 256 bits", {P, DKIM_SIGBH_MATCH, DKIM_SIGERROR_OK, 1, DKP_KEY_FOUND,
                              DKIM_SIGN_ED25519SHA256, 256, 1024, 0}, DKP_RES_PASS},
        {"lib key too small", {DKIM_SIGFLAG_PROCESSED, DKIM_SIGBH_UNTESTED,
                               DKIM_SIGERROR_KEYTOOSMALL, 1, DKP_KEY_FOUND, DKIM_SIGN_RSASHA256,
                               0, 1024, 0}, DKP_RES_POLICY},
        {"expired", {0, DKIM_SIGBH_UNTESTED, DKIM_SIGERROR_EXPIRED, 0, DKP_KEY_FOUND,
                     DKIM_SIGN_RSASHA256, 0, 1024, 0}, DKP_RES_NEUTRAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char why[128];
        enum dkp_result got = dkp_verify_map(&cases[i].f, why, sizeof why);
        if (got != cases[i].want)
            fail_msg("%s: got %s (%s), want %s", cases[i].what, dkp_ar_result_name(got), why,
                     dkp_ar_result_name(cases[i].want));
        if (got != DKP_RES_PASS)
            assert_true(why[0] != '\0');
    }
}

static void test_cache(void **state)
{
    (void)state;
    struct dkp_cache *c = dkp_cache_new(10, 10, 100, 5);
    enum dkp_keystat st;
    char rec[64];
    assert_non_null(c);
    dkp_cache_put(c, "A._domainkey.x", DKP_KEY_FOUND, "v=DKIM1; p=A", 50, 1000);
    dkp_cache_put(c, "b._domainkey.x", DKP_KEY_NONE, NULL, 50, 1000);   /* neg: 5 s */
    dkp_cache_put(c, "c._domainkey.x", DKP_KEY_TEMPFAIL, NULL, 50, 1000); /* not cached */
    dkp_cache_put(c, "d._domainkey.x", DKP_KEY_FOUND, "v=DKIM1; p=D", 1, 1000); /* min 10 */
    dkp_cache_put(c, "e._domainkey.x", DKP_KEY_FOUND, "v=DKIM1; p=E", 99999, 1000); /* max 100 */
    struct {
        const char *name;
        time_t now;
        int hit;
        enum dkp_keystat st;
        const char *rec;
    } cases[] = {
        {"a._domainkey.X", 1000, 1, DKP_KEY_FOUND, "v=DKIM1; p=A"},
        {"a._domainkey.x", 1049, 1, DKP_KEY_FOUND, "v=DKIM1; p=A"},
        {"b._domainkey.x", 1004, 1, DKP_KEY_NONE, NULL},
        {"b._domainkey.x", 1005, 0, 0, NULL},
        {"c._domainkey.x", 1000, 0, 0, NULL},
        {"d._domainkey.x", 1009, 1, DKP_KEY_FOUND, "v=DKIM1; p=D"},
        {"e._domainkey.x", 1099, 1, DKP_KEY_FOUND, "v=DKIM1; p=E"},
        {"e._domainkey.x", 1100, 0, 0, NULL},
        {"a._domainkey.x", 1050, 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int hit = dkp_cache_get(c, cases[i].name, cases[i].now, &st, rec, sizeof rec);
        if (hit != cases[i].hit)
            fail_msg("case %zu %s@%ld: got hit=%d, want %d", i, cases[i].name,
                     (long)cases[i].now, hit, cases[i].hit);
        if (hit) {
            assert_int_equal(st, cases[i].st);
            if (cases[i].rec)
                assert_string_equal(rec, cases[i].rec);
        }
    }
    dkp_cache_free(c);
    /* capacity: 3 entries at most, the soonest-expiring goes first */
    c = dkp_cache_new(3, 10, 100, 5);
    dkp_cache_put(c, "f", DKP_KEY_FOUND, "F", 100, 2000);
    dkp_cache_put(c, "g", DKP_KEY_FOUND, "G", 20, 2000);
    dkp_cache_put(c, "h", DKP_KEY_FOUND, "H", 50, 2000);
    assert_true(dkp_cache_count(c) <= 3);
    dkp_cache_put(c, "i", DKP_KEY_FOUND, "I", 60, 2000);
    assert_int_equal(dkp_cache_count(c), 3);
    assert_int_equal(dkp_cache_get(c, "g", 2001, &st, rec, sizeof rec), 0);
    assert_int_equal(dkp_cache_get(c, "f", 2001, &st, rec, sizeof rec), 1);
    assert_int_equal(dkp_cache_get(c, "i", 2001, &st, rec, sizeof rec), 1);
    /* replacement keeps one entry */
    dkp_cache_put(c, "i", DKP_KEY_FOUND, "I2", 60, 2002);
    assert_int_equal(dkp_cache_get(c, "i", 2003, &st, rec, sizeof rec), 1);
    assert_string_equal(rec, "I2");
    assert_int_equal(dkp_cache_count(c), 3);
    dkp_cache_free(c);
}

/* A DNS answer: header, the question, then answer RRs given as raw bytes. */
static void test_key_name(void **state)
{
    (void)state;
    struct {
        const char *sig, *want; /* want NULL: refused */
    } cases[] = {
        {"v=1; a=rsa-sha256; d=example.com; s=sel; b=abc", "sel._domainkey.example.com"},
        {"v=1; s = sel2 ;\r\n\td=exa\r\n mple.org; bh=x", "sel2._domainkey.example.org"},
        {"d=example.com;s=a;", "a._domainkey.example.com"},
        {"ad=evil.test; d=example.com; xs=no; s=ok", "ok._domainkey.example.com"},
        {"v=1; d=example.com; b=abc", NULL},
        {"v=1; s=sel; b=abc", NULL},
        {"d=; s=sel", NULL},
        {"", NULL},
    };
    char out[600];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = dkp_verify_key_name(cases[i].sig, out, sizeof out);
        if (!cases[i].want) {
            if (rc != -1)
                fail_msg("\"%s\": got \"%s\", want refused", cases[i].sig, out);
            continue;
        }
        if (rc != 0 || strcmp(out, cases[i].want) != 0)
            fail_msg("\"%s\": got %d \"%s\", want \"%s\"", cases[i].sig, rc, rc ? "" : out,
                     cases[i].want);
    }
    char tiny[10];
    assert_int_equal(dkp_verify_key_name("d=example.com; s=sel", tiny, sizeof tiny), -1);
}

static void test_dns_servers(void **state)
{
    (void)state;
    struct dkp_dns_conf c;
    char err[128];
    assert_int_equal(dkp_dns_parse_servers("127.0.0.1:5353, [::1]:53 192.0.2.1", &c, err,
                                           sizeof err), 0);
    assert_int_equal(c.nservers, 3);
    assert_int_equal(ntohs(((struct sockaddr_in *)&c.server[0])->sin_port), 5353);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&c.server[1])->sin6_port), 53);
    assert_int_equal(ntohs(((struct sockaddr_in *)&c.server[2])->sin_port), 53);
    const char *bad[] = {"", "localhost", "127.0.0.1:0", "127.0.0.1:99999", "[::1",
                         "1.1.1.1 2.2.2.2 3.3.3.3 4.4.4.4"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dkp_dns_parse_servers(bad[i], &c, err, sizeof err) != -1)
            fail_msg("\"%s\" accepted", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_ok),    cmocka_unit_test(test_table_errors),
        cmocka_unit_test(test_keyfile),     cmocka_unit_test(test_ar_format),
        cmocka_unit_test(test_ar_authserv), cmocka_unit_test(test_policy),
        cmocka_unit_test(test_map),         cmocka_unit_test(test_cache),
        cmocka_unit_test(test_key_name),    cmocka_unit_test(test_dns_servers),
    };
    return cmocka_run_group_tests_name("dkim_parsers", tests, NULL, NULL);
}
