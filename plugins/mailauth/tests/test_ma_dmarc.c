/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ma_dmarc and ma_ar: DMARC outcomes from SPF and DKIM results and a
 * record (libopendmarc, no DNS); Authentication-Results values read and
 * written.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ma_ar.h"
#include "ma_dmarc.h"

#define PSL "/usr/share/publicsuffix/public_suffix_list.dat"

static struct ma_ar_dkim dk(const char *result, const char *d)
{
    struct ma_ar_dkim k;
    memset(&k, 0, sizeof k);
    snprintf(k.result, sizeof k.result, "%s", result);
    snprintf(k.d, sizeof k.d, "%s", d);
    snprintf(k.s, sizeof k.s, "sel");
    return k;
}

static unsigned sample = 50;

static void eval(const char *from, const char *rec, const char *org, enum ma_spf_result spf,
                 const char *spf_dom, const struct ma_ar_dkim *k, size_t nk, struct ma_dmarc_out *o)
{
    struct ma_dmarc_in in = {
        .client_ip = "192.0.2.1",
        .from_domain = from,
        .record = rec,
        .record_domain = org,
        .sample = sample,
        .spf = spf,
        .spf_domain = spf_dom,
        .dkim = k,
        .ndkim = nk,
    };
    ma_dmarc_eval(&in, o);
}

static void test_dmarc(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(ma_dmarc_init(PSL, err, sizeof err), 0);
    struct ma_dmarc_out o;
    const char *rej = "v=DMARC1; p=reject; rua=mailto:d@example.com";
    struct ma_ar_dkim pass_ex = dk("pass", "example.com");
    struct ma_ar_dkim pass_sub = dk("pass", "mail.example.com");
    struct ma_ar_dkim pass_other = dk("pass", "other.example");
    struct ma_ar_dkim fail_ex = dk("fail", "example.com");

    /* Aligned SPF pass. */
    eval("example.com", rej, "example.com", MA_SPF_PASS, "example.com", NULL, 0, &o);
    assert_int_equal(o.result, MA_DMARC_PASS);
    assert_true(o.spf_aligned);
    /* Relaxed alignment: the envelope in a subdomain. */
    eval("example.com", rej, "example.com", MA_SPF_PASS, "bounce.example.com", NULL, 0, &o);
    assert_int_equal(o.result, MA_DMARC_PASS);
    /* Strict SPF alignment refuses the subdomain. */
    eval("example.com", "v=DMARC1; p=reject; aspf=s", "example.com", MA_SPF_PASS,
         "bounce.example.com", NULL, 0, &o);
    assert_int_equal(o.result, MA_DMARC_FAIL);
    assert_int_equal(o.policy, 'r');
    /* SPF pass for another domain, DKIM pass aligned (relaxed). */
    eval("example.com", rej, "example.com", MA_SPF_PASS, "other.example", &pass_sub, 1, &o);
    assert_int_equal(o.result, MA_DMARC_PASS);
    assert_true(o.dkim_aligned);
    assert_false(o.spf_aligned);
    /* Nothing aligned: the published policy. */
    eval("example.com", rej, "example.com", MA_SPF_PASS, "other.example", &pass_other, 1, &o);
    assert_int_equal(o.result, MA_DMARC_FAIL);
    assert_int_equal(o.policy, 'r');
    eval("example.com", "v=DMARC1; p=quarantine", "example.com", MA_SPF_FAIL, "example.com",
         &fail_ex, 1, &o);
    assert_int_equal(o.result, MA_DMARC_FAIL);
    assert_int_equal(o.policy, 'q');
    eval("example.com", "v=DMARC1; p=none", "example.com", MA_SPF_SOFTFAIL, "example.com", NULL, 0,
         &o);
    assert_int_equal(o.result, MA_DMARC_FAIL);
    assert_int_equal(o.policy, 'n');
    /* Several signatures: one aligned pass is enough. */
    struct ma_ar_dkim two[2] = {fail_ex, pass_ex};
    eval("example.com", rej, "example.com", MA_SPF_NONE, "other.example", two, 2, &o);
    assert_int_equal(o.result, MA_DMARC_PASS);
    /* A subdomain From under the organization's record: sp= applies. */
    eval("news.example.com", "v=DMARC1; p=reject; sp=quarantine", "example.com", MA_SPF_FAIL,
         "news.example.com", NULL, 0, &o);
    assert_int_equal(o.result, MA_DMARC_FAIL);
    assert_int_equal(o.published, 'q');
    /* No record, a broken one, a failed lookup, no From domain. */
    eval("example.com", NULL, "example.com", MA_SPF_FAIL, "example.com", NULL, 0, &o);
    assert_int_equal(o.result, MA_DMARC_NONE);
    eval("example.com", "v=DMARC1; p=bogus", "example.com", MA_SPF_FAIL, "example.com", NULL, 0,
         &o);
    assert_int_equal(o.result, MA_DMARC_PERMERROR);
    eval(NULL, rej, NULL, MA_SPF_PASS, "example.com", NULL, 0, &o);
    assert_int_equal(o.result, MA_DMARC_PERMERROR);
    struct ma_dmarc_in in = {
        .client_ip = "192.0.2.1", .from_domain = "example.com", .record_tempfail = 1};
    ma_dmarc_eval(&in, &o);
    assert_int_equal(o.result, MA_DMARC_TEMPERROR);
    /* Strict DKIM alignment: the signing domain must be the From domain. */
    eval("example.com", "v=DMARC1; p=reject; adkim=s", "example.com", MA_SPF_NONE, NULL, &pass_sub,
         1, &o);
    assert_int_equal(o.result, MA_DMARC_FAIL);
    eval("example.com", "v=DMARC1; p=reject; adkim=s", "example.com", MA_SPF_NONE, NULL, &pass_ex,
         1, &o);
    assert_int_equal(o.result, MA_DMARC_PASS);
    /* Relaxed alignment under a multi-label public suffix. */
    eval("a.example.co.uk", rej, "example.co.uk", MA_SPF_PASS, "b.example.co.uk", NULL, 0, &o);
    assert_int_equal(o.result, MA_DMARC_PASS);
    eval("a.example.co.uk", rej, "example.co.uk", MA_SPF_PASS, "other.co.uk", NULL, 0, &o);
    assert_int_equal(o.result, MA_DMARC_FAIL);
    /* A record at the subdomain itself: its p=, not the sp= of a parent. */
    eval("news.example.com", "v=DMARC1; p=none; sp=reject", "news.example.com", MA_SPF_FAIL,
         "news.example.com", NULL, 0, &o);
    assert_int_equal(o.published, 'n');
    /* pct=: a failure outside the sample gets the next milder policy. */
    sample = 99;
    eval("example.com", "v=DMARC1; p=reject; pct=50", "example.com", MA_SPF_FAIL, "example.com",
         NULL, 0, &o);
    assert_int_equal(o.policy, 'q');
    eval("example.com", "v=DMARC1; p=quarantine; pct=0", "example.com", MA_SPF_FAIL, "example.com",
         NULL, 0, &o);
    assert_int_equal(o.policy, 'n');
    sample = 10;
    eval("example.com", "v=DMARC1; p=reject; pct=50", "example.com", MA_SPF_FAIL, "example.com",
         NULL, 0, &o);
    assert_int_equal(o.policy, 'r');
    assert_non_null(strstr(o.comment, "p=reject"));
    assert_non_null(strstr(o.comment, "pct=50"));
    sample = 50;
}

static void test_ar(void **state)
{
    (void)state;
    struct ma_ar_value v;
    assert_int_equal(ma_ar_parse("mx.test; dkim=pass header.d=Example.COM header.s=rsa "
                                 "header.a=rsa-sha256 header.b=AbCd",
                                 "MX.test", &v),
                     1);
    assert_int_equal(v.nres, 1);
    assert_int_equal(v.ndkim, 1);
    assert_string_equal(v.dkim[0].result, "pass");
    assert_string_equal(v.dkim[0].d, "example.com");
    assert_string_equal(v.dkim[0].s, "rsa");
    assert_string_equal(v.res[0], "dkim=pass header.d=Example.COM header.s=rsa header.a=rsa-sha256 "
                                  "header.b=AbCd");
    ma_ar_value_free(&v);

    /* Comments, folding, quoted reason, version, several resinfos. */
    assert_int_equal(ma_ar_parse("mx.test 1 (our\r\n (nested) note);\r\n dkim=fail reason=\"bad "
                                 "\\\"sig\\\"\" header.d=x.example;\tspf=pass (good) "
                                 "smtp.mailfrom=a@x.example",
                                 "mx.test", &v),
                     1);
    assert_int_equal(v.nres, 2);
    assert_string_equal(v.res[0], "dkim=fail reason=\"bad \\\"sig\\\"\" header.d=x.example");
    assert_string_equal(v.res[1], "spf=pass smtp.mailfrom=a@x.example");
    assert_int_equal(v.ndkim, 1);
    ma_ar_value_free(&v);

    assert_int_equal(ma_ar_parse("mx.test; none", "mx.test", &v), 1);
    assert_int_equal(v.nres, 0);
    assert_int_equal(ma_ar_parse("other.example; dkim=pass header.d=x", "mx.test", &v), 0);
    assert_int_equal(ma_ar_parse("mx.test; dkim=", "mx.test", &v), -1);
    /* "none" is the no-result marker, never a method, with or without a
     * version: taken as one, it would be written back as a resinfo that
     * reads as "nothing said" (found by fuzz_mailauth). */
    assert_int_equal(ma_ar_parse("mx.test; none/1=pass", "mx.test", &v), -1);
    assert_int_equal(ma_ar_parse("mx.test; NONE/2 = fail", "mx.test", &v), -1);
    assert_int_equal(ma_ar_parse("mx.test; dkim=pass (unclosed", "mx.test", &v), -1);
    assert_int_equal(ma_ar_parse("mx.test; dkim=pass header.d=\"open", "mx.test", &v), -1);
    assert_int_equal(ma_ar_parse("", "mx.test", &v), -1);

    char out[64];
    assert_int_equal(ma_ar_pvalue("ann@example.com", out, sizeof out), 15);
    assert_string_equal(out, "ann@example.com");
    ma_ar_pvalue("a b\"c", out, sizeof out);
    assert_string_equal(out, "\"a b\\\"c\"");
    assert_int_equal(ma_ar_pvalue("0123456789", out, 5), -1);
}

static void test_from_domain(void **state)
{
    (void)state;
    static const struct {
        const char *v, *want;
    } cases[] = {
        {"ann@Example.COM", "example.com"},
        {"Ann Example <ann@example.com>", "example.com"},
        {"\"Ann @ Bank <x@bank.example>\" <ann@example.com>", "example.com"},
        {"ann@example.com (Ann <a@b.example>)", "example.com"},
        {"=?utf-8?q?Ann?= <ann@sub.example.org.>", "sub.example.org"},
        {"ann@example.com, bob@example.org", NULL},
        {"friends: ann@example.com;", NULL},
        {"<ann@example.com> <bob@example.org>", NULL},
        {"no address here", NULL},
        {"ann@", NULL},
        {"ann@exa mple.com", NULL},
        {"ann@[192.0.2.1]", NULL},
        {"\"unclosed <ann@example.com>", NULL},
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];
        int r = ma_dmarc_from_domain(cases[i].v, out, sizeof out);
        if (!cases[i].want) {
            if (r != -1)
                fail_msg("%s: got %s, want none", cases[i].v, out);
        } else {
            if (r != 0)
                fail_msg("%s: got none, want %s", cases[i].v, cases[i].want);
            assert_string_equal(out, cases[i].want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dmarc),
        cmocka_unit_test(test_ar),
        cmocka_unit_test(test_from_domain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
