/* SPDX-License-Identifier: GPL-2.0-or-later */
/* authlimit: failed AUTH counts per client key, fixed windows, bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "authlimit.h"

static void test_blocks_at_limit_until_window_ends(void **state)
{
    (void)state;
    struct authlimit *al = authlimit_new(64, 3, 1000);
    uint64_t retry = 0;
    assert_false(authlimit_blocked(al, "192.0.2.1", 0, NULL));
    assert_int_equal(authlimit_fail(al, "192.0.2.1", 0), 1);
    assert_int_equal(authlimit_fail(al, "192.0.2.1", 100), 2);
    assert_false(authlimit_blocked(al, "192.0.2.1", 200, NULL));
    assert_int_equal(authlimit_fail(al, "192.0.2.1", 300), 3);
    assert_true(authlimit_blocked(al, "192.0.2.1", 400, &retry));
    assert_int_equal(retry, 600);
    assert_false(authlimit_blocked(al, "192.0.2.2", 400, NULL)); /* others unaffected */
    assert_true(authlimit_blocked(al, "192.0.2.1", 999, NULL));
    assert_false(authlimit_blocked(al, "192.0.2.1", 1000, NULL)); /* the window ended */
    assert_int_equal(authlimit_fail(al, "192.0.2.1", 1000), 1);   /* a new one opens */
    authlimit_free(al);
}

static void test_off_and_reload(void **state)
{
    (void)state;
    struct authlimit *al = authlimit_new(16, 0, 1000);
    assert_int_equal(authlimit_fail(al, "a", 0), 0);
    assert_false(authlimit_blocked(al, "a", 0, NULL));
    authlimit_set(al, 1, 1000); /* a reload turns it on */
    assert_int_equal(authlimit_fail(al, "a", 0), 1);
    assert_true(authlimit_blocked(al, "a", 1, NULL));
    authlimit_set(al, 2, 1000); /* a higher limit: counts kept */
    assert_false(authlimit_blocked(al, "a", 1, NULL));
    assert_int_equal(authlimit_fail(al, "a", 2), 2);
    assert_true(authlimit_blocked(al, "a", 3, NULL));
    authlimit_free(al);
    authlimit_free(NULL);
}

/* A full table of live windows tracks no new key (fail open, counted);
 * slots of ended windows are reused, and a key seen again finds its own
 * entry, not a second one. */
static void test_bounded(void **state)
{
    (void)state;
    struct authlimit *al = authlimit_new(16, 2, 1000);
    char key[32];
    for (int i = 0; i < 16; i++) {
        snprintf(key, sizeof key, "10.0.0.%d", i);
        assert_int_equal(authlimit_fail(al, key, 0), 1);
    }
    assert_int_equal(authlimit_fail(al, "10.0.1.1", 10), 0);
    assert_int_equal(authlimit_untracked(al), 1);
    assert_false(authlimit_blocked(al, "10.0.1.1", 10, NULL));
    for (int i = 0; i < 16; i++) {
        snprintf(key, sizeof key, "10.0.0.%d", i);
        assert_int_equal(authlimit_fail(al, key, 20), 2);
        assert_true(authlimit_blocked(al, key, 20, NULL));
    }
    /* All windows ended: new keys take the slots. */
    for (int i = 0; i < 16; i++) {
        snprintf(key, sizeof key, "10.0.2.%d", i);
        assert_int_equal(authlimit_fail(al, key, 5000), 1);
        assert_int_equal(authlimit_fail(al, key, 5001), 2);
        assert_true(authlimit_blocked(al, key, 5002, NULL));
    }
    assert_int_equal(authlimit_untracked(al), 1);
    authlimit_free(al);
}

/* Counted when asked, given back when the answer was not a refusal: the
 * attempts in flight count, as the limit needs under concurrency. */
static void test_refund(void **state)
{
    (void)state;
    struct authlimit *al = authlimit_new(16, 2, 1000);
    assert_int_equal(authlimit_fail(al, "a", 0), 1);
    assert_int_equal(authlimit_fail(al, "a", 0), 2);
    assert_true(authlimit_blocked(al, "a", 1, NULL)); /* two in flight */
    authlimit_refund(al, "a", 2);                     /* one succeeded */
    assert_false(authlimit_blocked(al, "a", 3, NULL));
    authlimit_refund(al, "a", 4);
    authlimit_refund(al, "a", 5); /* never below zero */
    assert_int_equal(authlimit_fail(al, "a", 6), 1);
    authlimit_refund(al, "b", 6);    /* unknown: nothing */
    authlimit_refund(al, "a", 2000); /* an ended window: nothing */
    authlimit_free(al);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_at_limit_until_window_ends),
        cmocka_unit_test(test_off_and_reload),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_refund),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
