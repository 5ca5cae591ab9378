/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ma_spf: SPF evaluation in rounds over a DNS table, against a small
 * world of records (no network).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ma_spf.h"

struct rec {
    const char *name;
    int type;
    const char *data; /* NULL: NXDOMAIN; "" with type: NODATA; "!": tempfail */
};

static const struct rec world[] = {
    {"example.com", MA_DNS_TXT, "v=spf1 ip4:192.0.2.0/24 include:_spf.other.example mx -all"},
    {"example.com", MA_DNS_MX, "10 mx.example.com"},
    {"mx.example.com", MA_DNS_A, "203.0.113.5"},
    {"mx.example.com", MA_DNS_AAAA, "2001:db8::25"},
    {"_spf.other.example", MA_DNS_TXT, "v=spf1 a:relay.other.example ~all"},
    {"relay.other.example", MA_DNS_A, "198.51.100.7"},
    {"soft.example", MA_DNS_TXT, "v=spf1 ~all"},
    {"neutral.example", MA_DNS_TXT, "v=spf1 ?all"},
    {"broken.example", MA_DNS_TXT, "v=spf1 ip4:300.1.2.3 -all"},
    {"twice.example", MA_DNS_TXT, "v=spf1 -all"},
    {"twice.example", MA_DNS_TXT, "v=spf1 +all"},
    {"helo.example", MA_DNS_TXT, "v=spf1 ip4:192.0.2.9 -all"},
    {"slow.example", MA_DNS_TXT, "!"},
    {"loop.example", MA_DNS_TXT, "v=spf1 include:loop.example -all"},
    {"many.example", MA_DNS_TXT,
     "v=spf1 a:a1.many.example a:a2.many.example a:a3.many.example a:a4.many.example "
     "a:a5.many.example a:a6.many.example a:a7.many.example a:a8.many.example "
     "a:a9.many.example a:a10.many.example a:a11.many.example -all"},
    {"nospf.example", MA_DNS_TXT, "google-site-verification=abc"},
    /* An explanation record that overflows a stack buffer in libspf2
     * 1.2.10's macro expansion (found by fuzz_mailauth). */
    {"expl.example", MA_DNS_TXT, "v=spf1 exp=bad.expl.example -all"},
    {"bad.expl.example", MA_DNS_TXT,
     "v=spf1 include:exaim=pt; "
     "dkim=pasWWWWWW,"
     "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWaaWWWWWWWWWW.xxn-"
     "paaaaaaaaa1 ptr:192.%yd}.xxn-paaaaaaaaaamx=spf1 ptr:aaa1%{i}aaaaaaaamx=spf1aaaaaaaaaaaaaaaaa "
     "ptr:1%{i}aaa}aaaaaa}2.%{d}.xxn-paaaaaaaaa1 "
     "ptr:192.%yd}.xxn-paaaa}2.%{d}.xxn-paaaaaaaaa-paaaaaaaaa1 "
     "ptr:192.%yxn-d}.xxn-paaaa}2.%{d}.xxn-paaaaaaaaa1 ptr:11 ptr:192.%yd}.xxn-paaaaaaaaaamx=spf1 "
     "ptr:1%{i}aaa}aaaaaaaaaaaaaaaaaaaapfsts:%${i}1.%{d}a1 ptr:19ass header.d=example.com "
     "header.=dset; dxn-kim=pasexample.com headereader.d=st; adermple.com"},
};

/* Answer every wanted name from world (as the plugin does from DNS). */
static size_t answer(struct ma_dns *t)
{
    size_t i = 0, asked = 0;
    const char *name;
    int type;
    const char *names[64];
    int types[64];
    size_t n = 0;
    while (ma_dns_wanted(t, &i, &name, &type) && n < 64) {
        names[n] = name;
        types[n++] = type;
    }
    for (size_t k = 0; k < n; k++) {
        const char *recs[8];
        size_t nr = 0;
        int temp = 0;
        for (size_t w = 0; w < sizeof world / sizeof world[0]; w++) {
            if (world[w].type != types[k] || strcasecmp(world[w].name, names[k]) != 0)
                continue;
            if (!strcmp(world[w].data, "!"))
                temp = 1;
            else if (nr < 8)
                recs[nr++] = world[w].data;
        }
        char nm[256];
        snprintf(nm, sizeof nm, "%s", names[k]);
        if (temp)
            ma_dns_put(t, nm, types[k], MA_DNS_TEMPFAIL, NULL, 0);
        else if (nr)
            ma_dns_put(t, nm, types[k], MA_DNS_FOUND, recs, nr);
        else
            ma_dns_put(t, nm, types[k], MA_DNS_NOTFOUND, NULL, 0);
        asked++;
    }
    return asked;
}

static enum ma_spf_result check(struct ma_spf *s, const char *ip, const char *helo,
                                const char *from, unsigned *rounds, struct ma_spf_out *out)
{
    struct ma_dns *t = ma_dns_new();
    unsigned r = 0;
    while (ma_spf_check(s, t, ip, helo, from, r, out) == 1) {
        assert_true(answer(t) > 0);
        r++;
    }
    if (rounds)
        *rounds = r;
    ma_dns_free(t);
    return out->result;
}

static void test_results(void **state)
{
    (void)state;
    char err[128];
    struct ma_spf *s = ma_spf_new("mx.test", err, sizeof err);
    assert_non_null(s);
    struct ma_spf_out o;
    unsigned rounds;
    static const struct {
        const char *ip, *helo, *from;
        enum ma_spf_result want;
    } cases[] = {
        {"192.0.2.77", "h.test", "ann@example.com", MA_SPF_PASS},       /* ip4 */
        {"203.0.113.5", "h.test", "ann@example.com", MA_SPF_PASS},      /* mx */
        {"2001:db8::25", "h.test", "ann@example.com", MA_SPF_PASS},     /* mx, IPv6 */
        {"198.51.100.7", "h.test", "ann@example.com", MA_SPF_PASS},     /* include + a */
        {"198.51.100.8", "h.test", "ann@example.com", MA_SPF_FAIL},     /* -all */
        {"::ffff:192.0.2.1", "h.test", "ann@example.com", MA_SPF_PASS}, /* mapped */
        {"198.51.100.8", "h.test", "x@soft.example", MA_SPF_SOFTFAIL},
        {"198.51.100.8", "h.test", "x@neutral.example", MA_SPF_NEUTRAL},
        {"198.51.100.8", "h.test", "x@nowhere.example", MA_SPF_NONE}, /* NXDOMAIN */
        {"198.51.100.8", "h.test", "x@nospf.example", MA_SPF_NONE},   /* TXT, not SPF */
        {"198.51.100.8", "h.test", "x@broken.example", MA_SPF_PERMERROR},
        {"198.51.100.8", "h.test", "x@twice.example", MA_SPF_PERMERROR}, /* two records */
        {"198.51.100.8", "h.test", "x@slow.example", MA_SPF_TEMPERROR},
        {"198.51.100.8", "h.test", "x@loop.example", MA_SPF_PERMERROR},
        {"198.51.100.8", "h.test", "x@many.example", MA_SPF_PERMERROR}, /* > 10 lookups */
        /* Null sender: the HELO name is checked. */
        {"192.0.2.9", "helo.example", "", MA_SPF_PASS},
        {"192.0.2.10", "helo.example", "", MA_SPF_FAIL},
        {"192.0.2.10", "", "", MA_SPF_NONE},
        {"192.0.2.10", "[192.0.2.10]", "", MA_SPF_NONE},
        /* exp= is never fetched nor expanded. */
        {"198.51.100.8", "h.test", "x@expl.example", MA_SPF_FAIL},
        /* A loopback client gets a free ride (libspf2's rule). */
        {"127.0.0.1", "h.test", "ann@example.com", MA_SPF_PASS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum ma_spf_result r = check(s, cases[i].ip, cases[i].helo, cases[i].from, &rounds, &o);
        if (r != cases[i].want)
            fail_msg("case %zu (%s from %s): got %s (%s), want %s", i, cases[i].ip, cases[i].from,
                     ma_spf_result_name(r), o.comment, ma_spf_result_name(cases[i].want));
        for (const char *c = o.comment; *c; c++)
            assert_true(*c >= 0x20 && *c < 0x7f);
    }
    /* The include chain: the record, then include + mx together, then the
     * include's a: and the MX host's address. */
    check(s, "198.51.100.7", "h.test", "ann@example.com", &rounds, &o);
    assert_true(rounds >= 2 && rounds <= 4);
    assert_string_equal(o.domain, "example.com");
    check(s, "198.51.100.8", "h.test", "x@expl.example", NULL, &o);
    assert_non_null(strstr(o.comment, "not allowed by the domain's SPF record"));
    check(s, "192.0.2.9", "helo.example", "", NULL, &o);
    assert_true(o.used_helo);
    assert_string_equal(o.domain, "helo.example");
    ma_spf_free(s);
}

static void test_bounds(void **state)
{
    (void)state;
    char err[128];
    struct ma_spf *s = ma_spf_new("mx.test", err, sizeof err);
    struct ma_spf_out o;
    struct ma_dns *t = ma_dns_new();
    /* Past the round limit: temperror, no more wanting. */
    assert_int_equal(
        ma_spf_check(s, t, "192.0.2.1", "h.test", "a@example.com", MA_SPF_MAX_ROUNDS, &o), 0);
    assert_int_equal(o.result, MA_SPF_TEMPERROR);
    /* A full table: the names are not written down. */
    for (int i = 0; i < MA_DNS_MAX_NAMES; i++) {
        char n[64];
        snprintf(n, sizeof n, "n%d.example", i);
        assert_int_equal(ma_dns_put(t, n, MA_DNS_A, MA_DNS_NOTFOUND, NULL, 0), 0);
    }
    assert_int_equal(ma_dns_put(t, "one-more.example", MA_DNS_A, MA_DNS_NOTFOUND, NULL, 0), -1);
    assert_int_equal(ma_spf_check(s, t, "192.0.2.1", "h.test", "a@example.com", 0, &o), 0);
    assert_int_equal(o.result, MA_SPF_TEMPERROR);
    ma_dns_free(t);
    ma_spf_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
