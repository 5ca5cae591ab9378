/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dnsbl: the list file parser, what answers mean, query names, registrable
 * domains and the dns_servers check.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "regdom.h"
#include "dnsbl_list.h"

struct errs {
    char text[4096];
    size_t n;
};

static void collect(void *arg, const char *msg)
{
    struct errs *e = arg;
    size_t used = strlen(e->text);
    snprintf(e->text + used, sizeof e->text - used, "%s\n", msg);
    e->n++;
}

static size_t parse(const char *text, struct dnsbl_lists *l, struct errs *e)
{
    memset(e, 0, sizeof *e);
    return dnsbl_lists_parse(text, strlen(text), "t.lists", l, collect, e);
}

static const uint8_t *A(const char *s)
{
    static uint8_t a[4];
    assert_int_equal(dnsbl_answer_parse(s, a), DNSBL_ANSWER_LISTED);
    return a;
}

static void test_shipped_shape(void **state)
{
    (void)state;
    struct dnsbl_lists l;
    struct errs e;
    assert_int_equal(parse("# comment\n"
                           "ip  zen.spamhaus.org.  RCVD_IN_SBL  3.0  127.0.0.2 127.0.0.3\n"
                           "ip  ZEN.spamhaus.org   RCVD_IN_XBL  4   127.0.0.4-127.0.0.7 # xbl\n"
                           "ip  list.dnswl.org     DNSWL_HI    -5.0  127.0.[0-20].3\n"
                           "\n"
                           "uri multi.surbl.org    SURBL_ABUSE  3.0  mask=0x40\r\n"
                           "uri dbl.example        DBL_ANY      2.5\n",
                           &l, &e),
                     0);
    assert_int_equal(l.nzones, 4);
    assert_int_equal(l.nentries, 5);
    /* Zones lower case, trailing dot gone, shared by name. */
    assert_string_equal(l.zones[0].name, "zen.spamhaus.org");
    assert_int_equal(l.entries[0].zone, 0);
    assert_int_equal(l.entries[1].zone, 0);
    assert_int_equal(l.zones[2].kind, DNSBL_KIND_URI);
    assert_int_equal(l.entries[1].line, 3);

    const struct dnsbl_entry *sbl = &l.entries[0], *xbl = &l.entries[1], *wl = &l.entries[2],
                             *surbl = &l.entries[3], *any = &l.entries[4];
    assert_true(dnsbl_entry_matches(sbl, A("127.0.0.2")));
    assert_true(dnsbl_entry_matches(sbl, A("127.0.0.3")));
    assert_false(dnsbl_entry_matches(sbl, A("127.0.0.4")));
    assert_true(dnsbl_entry_matches(xbl, A("127.0.0.4")));
    assert_true(dnsbl_entry_matches(xbl, A("127.0.0.7")));
    assert_false(dnsbl_entry_matches(xbl, A("127.0.0.8")));
    assert_true(dnsbl_entry_matches(wl, A("127.0.15.3")));
    assert_false(dnsbl_entry_matches(wl, A("127.0.21.3")));
    assert_false(dnsbl_entry_matches(wl, A("127.0.15.2")));
    assert_true(wl->score > -5.0001 && wl->score < -4.9999);
    assert_true(dnsbl_entry_matches(surbl, A("127.0.0.64")));
    assert_true(dnsbl_entry_matches(surbl, A("127.0.0.66")));
    assert_false(dnsbl_entry_matches(surbl, A("127.0.0.8")));
    assert_true(dnsbl_entry_matches(any, A("127.1.2.3")));
    dnsbl_lists_free(&l);

    /* The shipped file parses. */
    FILE *fp = fopen(DNSBL_LISTS_FILE, "r");
    assert_non_null(fp);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    assert_int_equal(parse(buf, &l, &e), 0);
    assert_true(l.nentries >= 10);
    dnsbl_lists_free(&l);
}

static void test_errors_name_file_and_line(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"ip zen.example SYM\n", "t.lists:1: expected KIND ZONE SYMBOL SCORE"},
        {"\nrbl zen.example SYM 1\n", "t.lists:2: unknown kind \"rbl\""},
        {"ip zen..example SYM 1\n", "is not a zone name"},
        {"ip zen.exa\x01mple SYM 1\n", "t.lists:1: control character"},
        {"ip zen.example sym 1\n", "symbol \"sym\""},
        {"ip zen.example SYM 1x\n", "score \"1x\""},
        {"ip zen.example SYM nan\n", "score \"nan\""},
        {"ip zen.example SYM 1e9\n", "score \"1e9\""},
        {"ip zen.example SYM 1 127.0.0.300\n", "answer \"127.0.0.300\""},
        {"ip zen.example SYM 1 127.0.0.9-127.0.0.2\n", "answer \"127.0.0.9-127.0.0.2\""},
        {"ip zen.example SYM 1 10.0.0.2\n", "outside 127.0.0.0/8"},
        {"ip zen.example SYM 1 mask=0\n", "answer \"mask=0\""},
        {"ip zen.example SYM 1 mask=256\n", "answer \"mask=256\""},
        {"ip zen.example SYM 1 127.0.[5-2].1\n", "answer"},
        {"ip a.example SYM 1\nip b.example SYM 2\n",
         "t.lists:2: symbol SYM already defined on line 1"},
        {"ip a.example S1 1\nuri a.example S2 2\n", "t.lists:2: zone a.example is used both"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dnsbl_lists l;
        struct errs e;
        size_t n = parse(cases[i].text, &l, &e);
        if (n == 0 || !strstr(e.text, cases[i].want))
            fail_msg("case %zu: got %zu errors \"%s\", want \"%s\"", i, n, e.text, cases[i].want);
        /* A refused file leaves nothing behind. */
        assert_int_equal(l.nentries, 0);
        assert_null(l.entries);
        /* One line per problem, nothing unprintable. */
        for (const char *c = e.text; *c; c++)
            assert_true(*c == '\n' || (*c >= 0x20 && *c < 0x7f));
    }
    /* Every problem of the file at once. */
    struct dnsbl_lists l;
    struct errs e;
    assert_int_equal(parse("ip a.example S1\nbad\nip b.example S2 1\n", &l, &e), 2);
}

static void test_answers(void **state)
{
    (void)state;
    uint8_t a[4];
    assert_int_equal(dnsbl_answer_parse("127.0.0.2", a), DNSBL_ANSWER_LISTED);
    assert_int_equal(a[3], 2);
    /* A resolver's NXDOMAIN rewrite, Spamhaus's refusals, junk. */
    assert_int_equal(dnsbl_answer_parse("198.51.100.7", a), DNSBL_ANSWER_ERROR);
    assert_int_equal(dnsbl_answer_parse("127.255.255.254", a), DNSBL_ANSWER_ERROR);
    assert_int_equal(dnsbl_answer_parse("127.255.255.252", a), DNSBL_ANSWER_ERROR);
    assert_int_equal(dnsbl_answer_parse("not an address", a), DNSBL_ANSWER_ERROR);
    assert_int_equal(dnsbl_answer_parse(NULL, a), DNSBL_ANSWER_ERROR);
}

static void test_query_names(void **state)
{
    (void)state;
    char out[DNSBL_NAME_MAX];
    assert_true(dnsbl_ip_qname("192.0.2.1", "zen.example", out, sizeof out) > 0);
    assert_string_equal(out, "1.2.0.192.zen.example");
    assert_true(dnsbl_ip_qname("::ffff:192.0.2.1", "zen.example", out, sizeof out) > 0);
    assert_string_equal(out, "1.2.0.192.zen.example");
    assert_true(dnsbl_ip_qname("2001:db8::1", "zen.example", out, sizeof out) > 0);
    assert_string_equal(out, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2."
                             "zen.example");
    assert_int_equal(dnsbl_ip_qname("192.0.2", "zen.example", out, sizeof out), -1);
    assert_int_equal(dnsbl_ip_qname("", "zen.example", out, sizeof out), -1);
    char zone[200];
    memset(zone, 'a', sizeof zone - 1);
    zone[sizeof zone - 1] = '\0';
    for (size_t i = 60; i < sizeof zone - 1; i += 61)
        zone[i] = '.';
    /* 64 nibble characters + 199 > 253: refused, not cut. */
    assert_int_equal(dnsbl_ip_qname("2001:db8::1", zone, out, sizeof out), -1);

    assert_true(dnsbl_dom_qname("example.com", "dbl.example", out, sizeof out) > 0);
    assert_string_equal(out, "example.com.dbl.example");
    assert_int_equal(dnsbl_dom_qname("exa mple.com", "dbl.example", out, sizeof out), -1);
    assert_int_equal(dnsbl_dom_qname("a..b", "dbl.example", out, sizeof out), -1);
    assert_int_equal(dnsbl_dom_qname("", "dbl.example", out, sizeof out), -1);
}

static void test_registrable_domains(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(regdom_init(), 0);
    static const struct {
        const char *host, *want;
    } cases[] = {
        {"www.example.com", "example.com"},
        {"a.b.c.EXAMPLE.com.", "example.com"},
        {"shop.example.co.uk", "example.co.uk"},
        {"example.co.uk", "example.co.uk"},
        {"co.uk", NULL},
        {"com", NULL},
        {"192.0.2.1", NULL},
        {"1.2.3.4.", NULL},
        {"exa mple.com", NULL},
        {"xn--bcher-kva.example", "xn--bcher-kva.example"},
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int r = regdom_registrable(cases[i].host, out, sizeof out);
        if (!cases[i].want) {
            if (r != -1)
                fail_msg("%s: got %s, want none", cases[i].host, out);
        } else {
            assert_int_equal(r, 0);
            assert_string_equal(out, cases[i].want);
        }
    }
}

static void test_servers(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(dnsbl_servers_valid("127.0.0.1", err, sizeof err), 0);
    assert_int_equal(dnsbl_servers_valid("127.0.0.1:5353, [::1]:53 ::1", err, sizeof err), 0);
    assert_int_equal(dnsbl_servers_valid("127.0.0.1:0", err, sizeof err), -1);
    assert_int_equal(dnsbl_servers_valid("127.0.0.1:99999", err, sizeof err), -1);
    assert_int_equal(dnsbl_servers_valid("resolver.example", err, sizeof err), -1);
    assert_non_null(strstr(err, "resolver.example"));
    assert_int_equal(dnsbl_servers_valid("", err, sizeof err), -1);
    assert_int_equal(dnsbl_servers_valid("[::1]x", err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_shape),
        cmocka_unit_test(test_errors_name_file_and_line),
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_query_names),
        cmocka_unit_test(test_registrable_domains),
        cmocka_unit_test(test_servers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
