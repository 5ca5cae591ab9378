/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cidr: the network matcher of the bundled plugins. The cases were dkim's
 * (internal_networks, strict about host bits) and rewrite's (client
 * conditions, host bits cleared) before both moved here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "cidr.h"

/* dkim's list: "127.0.0.0/8, 10.0.0.0/8 192.0.2.7,::1/128 2001:db8::/32" */
static void test_list(void **state)
{
    (void)state;
    struct cidr_list l;
    char err[256];
    assert_int_equal(cidr_list_parse("127.0.0.0/8, 10.0.0.0/8 192.0.2.7,::1/128 2001:db8::/32", 0,
                                     &l, err, sizeof err),
                     0);
    assert_int_equal(l.n, 5);
    static const struct {
        const char *addr;
        int want;
    } cases[] = {
        {"127.0.0.1", 1},
        {"127.255.1.2", 1},
        {"10.200.0.1", 1},
        {"11.0.0.1", 0},
        {"192.0.2.7", 1},
        {"192.0.2.8", 0},
        {"::1", 1},
        {"::2", 0},
        {"2001:db8:1::5", 1},
        {"2001:db9::1", 0},
        {"::ffff:10.1.2.3", 1},
        {"::ffff:192.0.2.9", 0},
        {"not an ip", 0},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (cidr_match(l.v, l.n, cases[i].addr) != cases[i].want)
            fail_msg("%s: got %d, want %d", cases[i].addr, !cases[i].want, cases[i].want);
    assert_int_equal(cidr_match(l.v, l.n, NULL), 0);
    cidr_list_free(&l);

    /* /0 matches everything of its family */
    assert_int_equal(cidr_list_parse("0.0.0.0/0", 0, &l, err, sizeof err), 0);
    assert_int_equal(cidr_match(l.v, l.n, "203.0.113.9"), 1);
    assert_int_equal(cidr_match(l.v, l.n, "2001:db8::1"), 0);
    cidr_list_free(&l);
}

/* Refused items, each named in the message; the list comes back empty. */
static void test_bad(void **state)
{
    (void)state;
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"10.0.0.0/33", "prefix length must be 0..32"},
        {"10.1.0.0/8", "host bits set after /8"},
        {"300.1.1.1", "not an IP address"},
        {"::1/129", "prefix length must be 0..128"},
        {"10.0.0.0/", "prefix length"},
        {"10.0.0.0/x", "prefix length"},
        {"10.0.0.0/-1", "prefix length"},
        {"nonsense", "not an IP address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cidr_list l = {(struct cidr *)1, 9};
        char err[256] = "";
        if (cidr_list_parse(bad[i].text, 0, &l, err, sizeof err) != -1)
            fail_msg("%s: accepted", bad[i].text);
        assert_non_null(strstr(err, bad[i].text));
        assert_non_null(strstr(err, bad[i].why));
        assert_null(l.v);
        assert_int_equal(l.n, 0);
    }
    struct cidr_list l;
    char err[256];
    assert_int_equal(cidr_list_parse("10.0.0.0/8, 10.1.0.0/8", 0, &l, err, sizeof err), -1);
    assert_null(l.v);
}

/* rewrite's cases: one network at a time; host bits are cleared there. */
static void test_one_network(void **state)
{
    (void)state;
    static const struct {
        const char *net, *ip;
        int want;
    } cases[] = {
        {"10.0.0.0/8", "10.1.2.3", 1},
        {"10.0.0.0/8", "11.0.0.1", 0},
        {"192.168.1.0/25", "192.168.1.127", 1},
        {"192.168.1.0/25", "192.168.1.128", 0},
        {"127.0.0.1", "127.0.0.1", 1},
        {"127.0.0.1", "127.0.0.2", 0},
        {"fd00::/8", "fd12::1", 1},
        {"fd00::/8", "fe80::1", 0},
        {"10.0.0.0/8", "::ffff:10.9.9.9", 1},
        {"0.0.0.0/0", "203.0.113.5", 1},
        {"10.0.0.0/8", "", 0},
        {"10.0.0.0/8", "garbage", 0},
        {"10.1.2.3/8", "10.200.0.1", 1},
        {"192.168.1.77/25", "192.168.1.1", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cidr n;
        char err[128];
        assert_int_equal(cidr_parse(cases[i].net, CIDR_HOST_BITS_OK, &n, err, sizeof err), 0);
        if (cidr_match(&n, 1, cases[i].ip) != cases[i].want)
            fail_msg("%s in %s: want %d", cases[i].ip, cases[i].net, cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_one_network),
    };
    return cmocka_run_group_tests_name("cidr", tests, NULL, NULL);
}
