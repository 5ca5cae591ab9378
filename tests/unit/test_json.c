/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for json.c: json_escape() (got X, want Y for every class of
 * byte) and json_is_object() (the RFC 8259 grammar, nesting bound).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"

/* ---- json_escape ------------------------------------------------------------ */

static void test_escape_table(void **state)
{
    (void)state;
    static const struct {
        const char *in; /* NULL: the NULL pointer */
        const char *want;
    } cases[] = {
        {NULL, "null"},
        {"", "\"\""},
        {"plain text/with slash", "\"plain text/with slash\""},
        /* quote and backslash */
        {"a\"b", "\"a\\\"b\""},
        {"a\\b", "\"a\\\\b\""},
        {"\"\\\"", "\"\\\"\\\\\\\"\""},
        /* control characters: \u00XX, lower-case hex, no short forms */
        {"\x01", "\"\\u0001\""},
        {"a\nb\tc\rd", "\"a\\u000ab\\u0009c\\u000dd\""},
        {"\x1f\x08\x0c", "\"\\u001f\\u0008\\u000c\""},
        /* DEL is legal in a JSON string */
        {"\x7f", "\"\x7f\""},
        /* well-formed UTF-8 is copied: 2, 3 and 4 bytes, the highest code point */
        {"caf\xc3\xa9", "\"caf\xc3\xa9\""},
        {"\xe2\x82\xac 5", "\"\xe2\x82\xac 5\""},
        {"\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\""},
        {"\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\""},
        {"\xef\xbf\xbd", "\"\xef\xbf\xbd\""},
        /* anything else is read as Latin-1: one \u00XX per byte */
        {"caf\xe9", "\"caf\\u00e9\""},                            /* Latin-1 text */
        {"\x80", "\"\\u0080\""},                                  /* stray continuation */
        {"\xc3", "\"\\u00c3\""},                                  /* cut short by the end */
        {"\xc3(", "\"\\u00c3(\""},                                /* cut short by ASCII */
        {"\xe2\x82", "\"\\u00e2\\u0082\""},                       /* 3-byte, cut short */
        {"\xc0\xaf", "\"\\u00c0\\u00af\""},                       /* overlong '/' */
        {"\xe0\x80\xaf", "\"\\u00e0\\u0080\\u00af\""},            /* overlong, 3 bytes */
        {"\xf0\x80\x80\xaf", "\"\\u00f0\\u0080\\u0080\\u00af\""}, /* overlong, 4 bytes */
        {"\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\""},            /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", "\"\\u00f4\\u0090\\u0080\\u0080\""}, /* above U+10FFFF */
        {"\xf5\x80\x80\x80", "\"\\u00f5\\u0080\\u0080\\u0080\""}, /* never a lead byte */
        {"\xff\xfe", "\"\\u00ff\\u00fe\""},
        /* a bad byte does not swallow a good sequence after it */
        {"\xc3\xc3\xa9", "\"\\u00c3\xc3\xa9\""},
        {"\xe9\"\x01\xc3\xa9", "\"\\u00e9\\\"\\u0001\xc3\xa9\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t b = BUF_INIT;
        json_escape(&b, cases[i].in);
        if (strcmp(b.ptr, cases[i].want) != 0)
            fail_msg("case %zu: got %s, want %s", i, b.ptr, cases[i].want);
        assert_int_equal(b.len, strlen(cases[i].want));
        buf_free(&b);
    }
}

/* It appends: what the buffer held stays in front. */
static void test_escape_appends(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    buf_puts(&b, "{\"k\":");
    json_escape(&b, "v");
    buf_puts(&b, ",\"n\":");
    json_escape(&b, NULL);
    buf_puts(&b, "}");
    assert_string_equal(b.ptr, "{\"k\":\"v\",\"n\":null}");
    buf_free(&b);
}

/* Whatever the bytes, the result is a valid JSON string. */
static void test_escape_always_valid(void **state)
{
    (void)state;
    char s[2] = {0, 0};
    for (int c = 1; c < 256; c++) {
        s[0] = (char)c;
        buf_t b = BUF_INIT;
        buf_puts(&b, "{\"k\":");
        json_escape(&b, s);
        buf_puts(&b, "}");
        if (!json_is_object(b.ptr))
            fail_msg("byte 0x%02x: %s is not valid", c, b.ptr);
        buf_free(&b);
    }
    /* Random byte strings (fixed seed): valid, and no raw control byte. */
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        char in[24];
        size_t n = (size_t)(round % 23);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            in[i] = (char)(1 + (seed >> 16) % 255);
        }
        in[n] = '\0';
        buf_t b = BUF_INIT;
        buf_puts(&b, "{\"k\":");
        json_escape(&b, in);
        buf_puts(&b, "}");
        assert_true(json_is_object(b.ptr));
        for (size_t i = 0; i < b.len; i++)
            assert_true((unsigned char)b.ptr[i] >= 0x20);
        buf_free(&b);
    }
}

/* ---- json_is_object ---------------------------------------------------------- */

static void test_is_object_table(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool want;
    } cases[] = {
        {"{}", true},
        {" \t\r\n{ } \n", true},
        {"{\"a\":1}", true},
        {"{\"a\":-0.5e+3,\"b\":0,\"c\":1E9,\"d\":-12}", true},
        {"{\"a\":[true,false,null,\"s\",{}],\"b\":{\"c\":[]}}", true},
        {"{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00E9\\uffff\"}", true},
        {"{\"raw\":\"caf\xc3\xa9 \x7f\"}", true},
        {"{\"dup\":1,\"dup\":2}", true}, /* the grammar allows it */
        {"", false},
        {"   ", false},
        {"[]", false},
        {"\"s\"", false},
        {"1", false},
        {"null", false},
        {"{", false},
        {"}", false},
        {"{\"a\"}", false},
        {"{\"a\":}", false},
        {"{\"a\" 1}", false},
        {"{a:1}", false},
        {"{'a':1}", false},
        {"{\"a\":1,}", false},
        {"{,\"a\":1}", false},
        {"{\"a\":[1,]}", false},
        {"{\"a\":[1 2]}", false},
        {"{\"a\":1}{}", false},
        {"{\"a\":1} x", false},
        {"{\"a\":01}", false},
        {"{\"a\":1.}", false},
        {"{\"a\":.5}", false},
        {"{\"a\":1e}", false},
        {"{\"a\":+1}", false},
        {"{\"a\":-}", false},
        {"{\"a\":tru}", false},
        {"{\"a\":nul}", false},
        {"{\"a\":True}", false},
        {"{\"a\":\"\\x\"}", false},
        {"{\"a\":\"\\u12G4\"}", false},
        {"{\"a\":\"\\u12\"}", false},
        {"{\"a\":\"tab\there\"}", false},
        {"{\"a\":\"nl\nhere\"}", false},
        {"{\"a\":\"unterminated}", false},
        {"{\"a\":\"\\", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (json_is_object(cases[i].in) != cases[i].want)
            fail_msg("%s: got %d, want %d", cases[i].in, !cases[i].want, cases[i].want);
    assert_false(json_is_object(NULL));
}

/* {"a":[[...]]}: `depth` containers in all, the outer object included. */
static bool nested(int depth)
{
    buf_t b = BUF_INIT;
    buf_puts(&b, "{\"a\":");
    for (int i = 1; i < depth; i++)
        buf_puts(&b, "[");
    for (int i = 1; i < depth; i++)
        buf_puts(&b, "]");
    if (depth == 1)
        buf_puts(&b, "0");
    buf_puts(&b, "}");
    bool ok = json_is_object(b.ptr);
    buf_free(&b);
    return ok;
}

static void test_is_object_depth(void **state)
{
    (void)state;
    assert_true(nested(1));
    assert_true(nested(JSON_MAX_DEPTH));
    assert_false(nested(JSON_MAX_DEPTH + 1));
    assert_false(nested(10000)); /* refused early, no deep recursion */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_table),        cmocka_unit_test(test_escape_appends),
        cmocka_unit_test(test_escape_always_valid), cmocka_unit_test(test_is_object_table),
        cmocka_unit_test(test_is_object_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
