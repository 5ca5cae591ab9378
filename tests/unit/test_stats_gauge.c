/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for plugin-set gauges (stats_gauge.c) and how the two
 * renderers show them: names refused, the series bound, expiry, removal,
 * a reload getting the same gauge, hostile label values escaped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "stats.h"
#include "stats_gauge.h"
#include "stats_json.h"
#include "stats_prom.h"

#define T0 1700000000.0
#define NOW_MS ((uint64_t)(T0 * 1000) + 60500)

static int reset(void **state)
{
    (void)state;
    stats_reset(T0);
    return 0;
}

static char *prom(void)
{
    buf_t b = BUF_INIT;
    stats_prom_render(&b, T0 + 60.5);
    return b.ptr;
}

static char *json(void)
{
    buf_t b = BUF_INIT;
    stats_json_render(&b, T0 + 60.5);
    return b.ptr;
}

static void assert_contains(const char *text, const char *want)
{
    if (strstr(text, want) == NULL)
        fail_msg("missing: %s\n--- in ---\n%s", want, text);
}

static void test_names(void **state)
{
    (void)state;
    assert_null(stats_gauge_new(NULL, "h", NULL, NULL, 1));
    assert_null(stats_gauge_new("", "h", NULL, NULL, 1));
    assert_null(stats_gauge_new("hits_total", "h", NULL, NULL, 1)); /* counter suffix */
    assert_null(stats_gauge_new("x_bucket", "h", NULL, NULL, 1));
    assert_null(stats_gauge_new("connections_current", "h", NULL, NULL, 1)); /* core */
    assert_null(stats_gauge_new("g", "h", "le", NULL, 1));
    assert_null(stats_gauge_new("g", "h", NULL, "second_without_first", 1));
    assert_null(stats_gauge_new("g", "h", "same", "same", 1));
    struct stats_gauge *g = stats_gauge_new("Plugin RL top", "h", "Rule", "sub ject", 4);
    assert_non_null(g);
    /* the same name and shape again (a reload): the same gauge */
    assert_ptr_equal(stats_gauge_new("plugin_rl_top", "other help", "rule", "sub_ject", 4), g);
    /* the same name, other labels: refused */
    assert_null(stats_gauge_new("plugin_rl_top", "h", "rule", NULL, 4));
    assert_int_equal(stats_gauge_set(g, "r1", "a@example.org", 3, 0), 0);
    char *t = prom();
    assert_contains(t, "# TYPE sluice_plugin_rl_top gauge\n");
    assert_contains(t, "sluice_plugin_rl_top{rule=\"r1\",sub_ject=\"a@example.org\"} 3\n");
    free(t);
}

static void test_bound_remove_clear(void **state)
{
    (void)state;
    struct stats_gauge *g = stats_gauge_new("top", "Top.", "rule", "subject", 2);
    assert_int_equal(stats_gauge_set(g, "r", "a", 1, 0), 0);
    assert_int_equal(stats_gauge_set(g, "r", "b", 2, 0), 0);
    assert_int_equal(stats_gauge_set(g, "r", "c", 3, 0), -ENOSPC);
    assert_int_equal(stats_gauge_set(g, "r", "a", 10, 0), 0); /* an update fits */
    assert_int_equal(stats_gauge_remove(g, "r", "a"), 0);
    assert_int_equal(stats_gauge_remove(g, "r", "a"), -ENOENT);
    assert_int_equal(stats_gauge_set(g, "r", "c", 3, 0), 0);
    char *t = prom();
    /* largest first */
    const char *c = strstr(t, "sluice_top{rule=\"r\",subject=\"c\"} 3\n");
    const char *b = strstr(t, "sluice_top{rule=\"r\",subject=\"b\"} 2\n");
    assert_non_null(c);
    assert_non_null(b);
    assert_true(c < b);
    assert_null(strstr(t, "subject=\"a\""));
    free(t);
    stats_gauge_clear(g);
    t = prom();
    assert_null(strstr(t, "sluice_top")); /* no series: no family */
    free(t);
    assert_int_equal(stats_gauge_set(NULL, "r", "a", 1, 0), -EINVAL);
}

/* A reload whose bound differs (a rule more or less) gets the same gauge
 * with the new bound; shrinking keeps the largest series. */
static void test_reload_resizes(void **state)
{
    (void)state;
    struct stats_gauge *g = stats_gauge_new("top", "Top.", "subject", NULL, 3);
    assert_int_equal(stats_gauge_set(g, "a", NULL, 1, 0), 0);
    assert_int_equal(stats_gauge_set(g, "b", NULL, 3, 0), 0);
    assert_int_equal(stats_gauge_set(g, "c", NULL, 2, 0), 0);
    assert_ptr_equal(stats_gauge_new("top", "Top.", "subject", NULL, 2), g);
    char *t = prom();
    assert_contains(t, "sluice_top{subject=\"b\"} 3\n");
    assert_contains(t, "sluice_top{subject=\"c\"} 2\n");
    assert_null(strstr(t, "subject=\"a\""));
    free(t);
    assert_int_equal(stats_gauge_set(g, "d", NULL, 9, 0), -ENOSPC);
    assert_ptr_equal(stats_gauge_new("top", "Top.", "subject", NULL, 4), g);
    assert_int_equal(stats_gauge_set(g, "d", NULL, 9, 0), 0);
    assert_int_equal(stats_gauge_set(g, "e", NULL, 8, 0), 0);
    assert_int_equal(stats_gauge_set(g, "f", NULL, 7, 0), -ENOSPC);
}

/* Values JSON cannot spell are refused: /stats stays a JSON document. */
static void test_non_finite_refused(void **state)
{
    (void)state;
    struct stats_gauge *g = stats_gauge_new("top", "Top.", "subject", NULL, 3);
    assert_int_equal(stats_gauge_set(g, "a", NULL, NAN, 0), -EINVAL);
    assert_int_equal(stats_gauge_set(g, "a", NULL, INFINITY, 0), -EINVAL);
    assert_int_equal(stats_gauge_set(g, "a", NULL, -INFINITY, 0), -EINVAL);
    char *j = json();
    j[strlen(j) - 1] = '\0';
    assert_true(json_is_object(j));
    assert_null(strstr(j, "nan"));
    free(j);
}

static void test_expiry(void **state)
{
    (void)state;
    struct stats_gauge *g = stats_gauge_new("top", "Top.", "subject", NULL, 2);
    assert_int_equal(stats_gauge_set(g, "gone", NULL, 5, NOW_MS - 1), 0);
    uint64_t hour_from_now = (uint64_t)(stats_now() * 1000) + 3600 * 1000;
    assert_int_equal(stats_gauge_set(g, "live", NULL, 7, hour_from_now), 0);
    char *t = prom();
    assert_contains(t, "sluice_top{subject=\"live\"} 7\n");
    assert_null(strstr(t, "gone"));
    free(t);
    /* an expired series does not hold its place (stats_now() is far past T0) */
    assert_int_equal(stats_gauge_set(g, "new", NULL, 1, 0), 0);
    char *j = json();
    assert_contains(j, "\"gauges\":[{\"name\":\"sluice_top\",\"help\":\"Top.\",\"labels\":["
                       "\"subject\"],\"series\":[{\"labels\":[\"live\"],\"value\":7},"
                       "{\"labels\":[\"new\"],\"value\":1}]}]");
    free(j);
}

static void test_hostile_values(void **state)
{
    (void)state;
    struct stats_gauge *g =
        stats_gauge_new("top", "Help with \"quotes\"\nand \\.", "rule", "subject", 4);
    char long_v[300];
    memset(long_v, 'x', sizeof long_v - 1);
    long_v[sizeof long_v - 1] = '\0';
    assert_int_equal(stats_gauge_set(g, "r", "a\"b\\c\nd\x01", 1, 0), 0);
    assert_int_equal(stats_gauge_set(g, "r", long_v, 2, 0), 0);
    char *t = prom();
    assert_contains(t, "# HELP sluice_top Help with \"quotes\"\\nand \\\\.\n");
    assert_contains(t, "sluice_top{rule=\"r\",subject=\"a\\\"b\\\\c_d_\"} 1\n");
    char want[200];
    snprintf(want, sizeof want, "subject=\"%.*s\"} 2\n", STATS_LABEL_VALUE_MAX - 1, long_v);
    assert_contains(t, want);
    free(t);
    char *j = json();
    j[strlen(j) - 1] = '\0';        /* the newline after the document */
    assert_true(json_is_object(j)); /* it stays valid JSON */
    assert_contains(j, "\"labels\":[\"r\",\"a\\\"b\\\\c_d_\"]");
    free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_names, reset),
        cmocka_unit_test_setup(test_bound_remove_clear, reset),
        cmocka_unit_test_setup(test_reload_resizes, reset),
        cmocka_unit_test_setup(test_non_finite_refused, reset),
        cmocka_unit_test_setup(test_expiry, reset),
        cmocka_unit_test_setup(test_hostile_values, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
