/* SPDX-License-Identifier: GPL-2.0-or-later */
/* greylist: networks, triplet keys and stored values. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "gl_key.h"

static void test_networks(void **state)
{
    (void)state;
    char n[64];
    assert_int_equal(gl_net("192.0.2.77", 24, 64, n, sizeof n), 0);
    assert_string_equal(n, "192.0.2.0/24");
    assert_int_equal(gl_net("192.0.2.77", 32, 64, n, sizeof n), 0);
    assert_string_equal(n, "192.0.2.77/32");
    assert_int_equal(gl_net("::ffff:198.51.100.9", 16, 64, n, sizeof n), 0);
    assert_string_equal(n, "198.51.0.0/16");
    assert_int_equal(gl_net("2001:db8:aa:bb:1:2:3:4", 24, 64, n, sizeof n), 0);
    assert_string_equal(n, "2001:db8:aa:bb::/64");
    assert_int_equal(gl_net("2001:db8:aa:bb:1:2:3:4", 24, 48, n, sizeof n), 0);
    assert_string_equal(n, "2001:db8:aa::/48");
    assert_int_equal(gl_net("not an address", 24, 64, n, sizeof n), -1);
    assert_int_equal(gl_net("", 24, 64, n, sizeof n), -1);
    assert_int_equal(gl_net("192.0.2.1", 24, 64, n, 5), -1);
}

static void test_triplets(void **state)
{
    (void)state;
    char k[GL_KEY_MAX];
    assert_int_equal(
        gl_triplet_key("192.0.2.0/24", "Ann@Example.COM", "Bob@Example.NET", k, sizeof k), 0);
    assert_string_equal(k, "t:192.0.2.0/24:ann@example.com:bob@example.net");
    assert_int_equal(gl_triplet_key("192.0.2.0/24", "", "bob@example.net", k, sizeof k), 0);
    assert_string_equal(k, "t:192.0.2.0/24:<>:bob@example.net");
    assert_int_equal(gl_triplet_key("192.0.2.0/24", "a@b", "", k, sizeof k), -1);
    char longv[1000];
    memset(longv, 'a', sizeof longv);
    longv[sizeof longv - 1] = 0;
    assert_int_equal(gl_triplet_key("192.0.2.0/24", longv, "b@c", k, sizeof k), -1);
}

static void test_values(void **state)
{
    (void)state;
    uint64_t since = 0;
    assert_int_equal(gl_parse_value("p", 1, &since), GL_PASSED);
    assert_int_equal(gl_parse_value("w:1700000000123", 15, &since), GL_WAITING);
    assert_true(since == 1700000000123ULL);
    assert_int_equal(gl_parse_value("w:", 2, &since), GL_NEW);
    assert_int_equal(gl_parse_value("w:12x", 5, &since), GL_NEW);
    assert_int_equal(gl_parse_value("w:-5", 4, &since), GL_NEW);
    assert_int_equal(gl_parse_value("pp", 2, &since), GL_NEW);
    assert_int_equal(gl_parse_value("", 0, &since), GL_NEW);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_networks),
                                       cmocka_unit_test(test_triplets),
                                       cmocka_unit_test(test_values)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
