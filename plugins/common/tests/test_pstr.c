/* SPDX-License-Identifier: GPL-2.0-or-later */
/* pstr: the plugins' growable string. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pstr.h"

static void test_build(void **state)
{
    (void)state;
    struct pstr s = PSTR_INIT;
    assert_string_equal(pstr_cstr(&s), "");
    pstr_puts(&s, "abc");
    pstr_putc(&s, '-');
    pstr_append(&s, "xyz", 2);
    pstr_printf(&s, "%d%s", 42, "!");
    assert_string_equal(pstr_cstr(&s), "abc-xy42!");
    assert_int_equal(s.len, 9);
    pstr_clear(&s);
    assert_string_equal(pstr_cstr(&s), "");
    for (int i = 0; i < 1000; i++)
        pstr_printf(&s, "%04d", i);
    assert_int_equal(s.len, 4000);
    assert_memory_equal(s.ptr + 3996, "0999", 4);
    char *owned = pstr_steal(&s);
    assert_null(s.ptr);
    assert_int_equal(s.len, 0);
    assert_int_equal(strlen(owned), 4000);
    free(owned);
    char *e = pstr_steal(&s);
    assert_string_equal(e, "");
    free(e);
    pstr_free(&s);
}

static void test_dup(void **state)
{
    (void)state;
    char *a = pstr_xstrdup("hello");
    char *b = pstr_xstrndup("hello", 3);
    assert_string_equal(a, "hello");
    assert_string_equal(b, "hel");
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_dup),
    };
    return cmocka_run_group_tests_name("pstr", tests, NULL, NULL);
}
