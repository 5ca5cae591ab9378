/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ratelimit: a rule's top-offender table: updates in place, entry of a
 * heavier subject in place of the lightest, expiry making room, the cap.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl_top.h"

static const struct rl_top_entry *find(const struct rl_top *t, const char *s)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->e[i].subject, s) == 0)
            return &t->e[i];
    return NULL;
}

static void test_fill_update_replace(void **state)
{
    (void)state;
    static struct rl_top t;
    memset(&t, 0, sizeof t);
    t.cap = 3;
    char ev[RL_SUBJECT_MAX] = "";
    assert_int_equal(rl_top_note(&t, "a", 5, 0, 1000, ev, sizeof ev), RL_TOP_IN);
    assert_int_equal(rl_top_note(&t, "b", 2, 0, 1000, ev, sizeof ev), RL_TOP_IN);
    assert_int_equal(rl_top_note(&t, "c", 9, 0, 1000, ev, sizeof ev), RL_TOP_IN);
    assert_int_equal(t.n, 3);
    /* listed: updated, even downwards (the window slid) */
    assert_int_equal(rl_top_note(&t, "a", 4, 10, 1010, ev, sizeof ev), RL_TOP_IN);
    assert_int_equal(find(&t, "a")->count, 4);
    assert_int_equal(find(&t, "a")->until_ms, 1010);
    /* not heavier than the lightest (b: 2): stays out */
    assert_int_equal(rl_top_note(&t, "d", 2, 10, 1010, ev, sizeof ev), RL_TOP_OUT);
    assert_null(find(&t, "d"));
    /* heavier: takes the lightest's place */
    assert_int_equal(rl_top_note(&t, "e", 3, 10, 1010, ev, sizeof ev), RL_TOP_REPLACE);
    assert_string_equal(ev, "b");
    assert_null(find(&t, "b"));
    assert_int_equal(find(&t, "e")->count, 3);
    assert_int_equal(t.n, 3);
}

static void test_expiry_makes_room(void **state)
{
    (void)state;
    static struct rl_top t;
    memset(&t, 0, sizeof t);
    t.cap = 2;
    char ev[RL_SUBJECT_MAX] = "";
    rl_top_note(&t, "big", 100, 0, 1000, ev, sizeof ev);
    rl_top_note(&t, "old", 50, 0, 500, ev, sizeof ev);
    /* a small count enters once "old" expired, without evicting "big" */
    assert_int_equal(rl_top_note(&t, "small", 1, 600, 1600, ev, sizeof ev), RL_TOP_IN);
    assert_null(find(&t, "old"));
    assert_non_null(find(&t, "big"));
    assert_non_null(find(&t, "small"));
}

static void test_off_and_bounds(void **state)
{
    (void)state;
    static struct rl_top t;
    memset(&t, 0, sizeof t);
    char ev[RL_SUBJECT_MAX] = "";
    /* cap 0: never listed */
    assert_int_equal(rl_top_note(&t, "a", 5, 0, 1000, ev, sizeof ev), RL_TOP_OUT);
    /* a cap past the table is the table's size */
    t.cap = 1000;
    for (int i = 0; i < RL_TOP_MAX + 20; i++) {
        char s[16];
        snprintf(s, sizeof s, "s%d", i);
        rl_top_note(&t, s, (uint64_t)i + 1, 0, 1000, ev, sizeof ev);
    }
    assert_int_equal(t.n, RL_TOP_MAX);
    assert_null(find(&t, "s0"));      /* the lightest left */
    assert_non_null(find(&t, "s69")); /* the heaviest are in */
    /* zero counts (an undone event) are not offenders */
    assert_int_equal(rl_top_note(&t, "z", 0, 0, 1000, ev, sizeof ev), RL_TOP_OUT);
    /* a subject of the maximum length is kept whole */
    char long_s[RL_SUBJECT_MAX];
    memset(long_s, 'x', sizeof long_s - 1);
    long_s[sizeof long_s - 1] = '\0';
    assert_int_equal(rl_top_note(&t, long_s, 1000, 0, 1000, ev, sizeof ev), RL_TOP_REPLACE);
    assert_non_null(find(&t, long_s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fill_update_replace),
        cmocka_unit_test(test_expiry_makes_room),
        cmocka_unit_test(test_off_and_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
