/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * plughdr: api->header_fold gives exactly what the host writes when a
 * plugin adds the field. The first cases are the rewrite engine's old
 * folding tests (it now folds through the host), each checked against the
 * field msg.c really builds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "plughdr.h"

/* The value msg.c gives the field when it is added to a real message. */
static char *host_value(const char *name, const char *value)
{
    static const char base[] = "From: a@example.com\r\n\r\nbody\r\n";
    struct msg *m = msg_parse(base, strlen(base));
    assert_non_null(m);
    assert_int_equal(msg_field_add(m, name, value), 0);
    const struct msg_field *f = msg_field_at(m, 1);
    char *v = strndup(f->value, f->value_len);
    msg_free(m);
    return v;
}

static void test_fold_rules(void **state)
{
    (void)state;
    static const struct {
        const char *name, *in, *want;
    } cases[] = {
        {"Subject1", "short", " short"},
        /* prefix "Subject:" is 8 columns, as the engine's old case */
        {"Subject", " aaaaaaaaaa bbbbbbbbbb cccccccccc dddddddddd eeeeeeeeee ffffffffff gggggggggg",
         " aaaaaaaaaa bbbbbbbbbb cccccccccc dddddddddd eeeeeeeeee ffffffffff\r\n gggggggggg"},
        /* one long word: no place to fold, kept on one line (under 998) */
        {"Subject",
         " xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
         " xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},
        /* already folded: kept as is */
        {"X-A", "one\r\n two", " one\r\n two"},
        {"X-Empty", "", " "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[512];
        int n = plughdr_fold(cases[i].name, cases[i].in, out, sizeof out);
        assert_int_equal(n, (int)strlen(cases[i].want));
        assert_string_equal(out, cases[i].want);
        char *h = host_value(cases[i].name, cases[i].in);
        assert_string_equal(out, h);
        free(h);
    }
}

static void test_refused(void **state)
{
    (void)state;
    char out[64];
    /* a word over 998 octets cannot be folded */
    char *big = malloc(1200);
    memset(big, 'x', 1199);
    big[0] = ' ';
    big[1199] = 0;
    assert_int_equal(plughdr_fold("Subject", big, out, sizeof out), -EINVAL);
    free(big);
    assert_int_equal(plughdr_fold("Bad Name", "v", out, sizeof out), -EINVAL);
    assert_int_equal(plughdr_fold("X-A", "bare\nLF", out, sizeof out), -EINVAL);
    assert_int_equal(plughdr_fold("X-A", "bare\rCR", out, sizeof out), -EINVAL);
    assert_int_equal(plughdr_fold(NULL, "v", out, sizeof out), -EINVAL);
}

/* Like snprintf: the length is returned even when out is too small. */
static void test_truncation(void **state)
{
    (void)state;
    char out[4];
    assert_int_equal(plughdr_fold("X-A", "hello", out, sizeof out), 6);
    assert_string_equal(out, " he");
    assert_int_equal(plughdr_fold("X-A", "hello", NULL, 0), 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold_rules),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_truncation),
    };
    return cmocka_run_group_tests_name("plughdr", tests, NULL, NULL);
}
