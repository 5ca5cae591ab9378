/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for log_quote: what a key=value parser reads back is exactly
 * the value, whatever bytes a client chose; truncation keeps the quotes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "log.h"

struct q_case {
    const char *in;
    size_t dstlen;
    const char *want;
};

static const struct q_case cases[] = {
    {"a@example.com", 64, "\"a@example.com\""},
    {"", 64, "\"\""},
    {"\"x verdict=accepted\"@b", 64, "\"\\\"x verdict=accepted\\\"@b\""},
    {"back\\slash", 64, "\"back\\\\slash\""},
    {"cr\rlf\nnul-free\x01", 64, "\"cr\\x0dlf\\x0anul-free\\x01\""},
    {"j\xc3\xbcrgen", 64, "\"j\\xc3\\xbcrgen\""},
    {"\x7f", 64, "\"\\x7f\""},
    {"abcdefgh", 6, "\"abc\""}, /* cut, still quoted and terminated */
    {"ab\"cd", 6, "\"ab\""},    /* an escape that does not fit is left out */
    {"abc", 3, "\"\""},
};

static void test_quote_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dst[64];
        memset(dst, 'Z', sizeof dst);
        const char *got = log_quote(dst, cases[i].dstlen, cases[i].in);
        assert_ptr_equal(got, dst);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu: got %s, want %s", i, got, cases[i].want);
        assert_true(strlen(got) < cases[i].dstlen);
    }
    assert_string_equal(log_quote((char[8]){0}, 8, NULL), "\"\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quote_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
