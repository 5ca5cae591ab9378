/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for smtp_reply: replies, multi-line, enhanced codes, splits. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"

/* Run the reader over in[0..len), delivered in two pieces split at
 * `split` (0: at once; SIZE_MAX: byte by byte), the way a connection
 * does: unconsumed bytes are kept and more are appended. Each complete
 * reply is rendered as "code|enh|line0|line1...;" into ev, an error as
 * "ERR;". Stops at the first error. Returns the number of bytes left. */
static size_t run(const char *in, size_t len, size_t split, char *ev, size_t evcap)
{
    static struct smtp_reply out; /* big: keep it off the stack */
    struct reply_reader r;
    static char buf[16384];
    size_t have = 0, fed = 0, evlen = 0;

    reply_reader_init(&r);
    ev[0] = '\0';
    while (fed < len) {
        size_t step = len - fed;

        if (split == SIZE_MAX)
            step = 1;
        else if (split != 0 && fed < split)
            step = split - fed;
        assert_true(have + step <= sizeof(buf));
        memcpy(buf + have, in + fed, step);
        have += step;
        fed += step;
        for (;;) {
            size_t consumed, i;
            enum reply_rd rd = reply_reader_next(&r, buf, have, &consumed, &out);

            assert_true(consumed <= have);
            memmove(buf, buf + consumed, have - consumed);
            have -= consumed;
            if (rd == REPLY_AGAIN)
                break;
            if (rd == REPLY_ERROR) {
                evlen += (size_t)snprintf(ev + evlen, evcap - evlen, "ERR;");
                return have;
            }
            evlen += (size_t)snprintf(ev + evlen, evcap - evlen, "%d|%s", out.code, out.enh);
            for (i = 0; i < out.nlines; i++)
                evlen += (size_t)snprintf(ev + evlen, evcap - evlen, "|%s", out.lines[i]);
            evlen += (size_t)snprintf(ev + evlen, evcap - evlen, ";");
        }
    }
    return have;
}

static void test_table(void **state)
{
    static const struct {
        const char *in;
        const char *want;
        size_t left; /* bytes left unconsumed at the end (no error) */
        size_t len;  /* input length when it holds a NUL, else 0 */
    } t[] = {
        {"220 mx.example.com ESMTP\r\n", "220||mx.example.com ESMTP;", 0, 0},
        {"250 OK\n", "250||OK;", 0, 0},
        {"250\r\n", "250||;", 0, 0},
        {"250 \r\n", "250||;", 0, 0},
        {"250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n", "250||mx|PIPELINING|8BITMIME;", 0, 0},
        {"250 2.1.0 Ok\r\n", "250|2.1.0|Ok;", 0, 0},
        {"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n",
         "550|5.7.1|first|second|third;", 0, 0},
        {"550-5.7.1 first\r\n550-no code here\r\n550 5.7.1\r\n", "550|5.7.1|first|no code here|;",
         0, 0},
        {"451 4.3.0\r\n", "451|4.3.0|;", 0, 0},
        {"250 2.0.0x not enh\r\n", "250||2.0.0x not enh;", 0, 0},
        {"250 5.0.0 class mismatch\r\n", "250||5.0.0 class mismatch;", 0, 0},
        {"250 2.1234.0 too many digits\r\n", "250||2.1234.0 too many digits;", 0, 0},
        {"250 2.100.100 max digits\r\n", "250|2.100.100|max digits;", 0, 0},
        {"354 End data with <CR><LF>.<CR><LF>\r\n", "354||End data with <CR><LF>.<CR><LF>;", 0, 0},
        {"250 a\r\n250 b\r\n", "250||a;250||b;", 0, 0},
        {"250 a\r\n221 b\r\n", "250||a;221||b;", 0, 0},
        {"250 a\r\n25", "250||a;", 2, 0},
        {"250-a\r\n250", "", 3, 0},
        /* errors */
        {"250-a\r\n251 b\r\n", "ERR;", 0, 0},
        {"199 x\r\n", "ERR;", 0, 0},
        {"600 x\r\n", "ERR;", 0, 0},
        {"2a0 x\r\n", "ERR;", 0, 0},
        {"25\r\n", "ERR;", 0, 0},
        {"250x\r\n", "ERR;", 0, 0},
        {"hello\r\n", "ERR;", 0, 0},
        {"\r\n", "ERR;", 0, 0},
        {"250 a\0b\r\n", "ERR;", 0, 9},
        {"250 ok\r\nbad\r\n", "250||ok;ERR;", 0, 0},
    };
    char ev[8192], ref[8192];
    size_t i, split;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t len = strlen(t[i].in), left;

        if (t[i].len != 0)
            len = t[i].len; /* holds a NUL */
        left = run(t[i].in, len, 0, ref, sizeof(ref));
        if (strcmp(ref, t[i].want) != 0)
            fail_msg("case %zu: got '%s', want '%s'", i, ref, t[i].want);
        if (strstr(t[i].want, "ERR") == NULL)
            assert_int_equal(left, t[i].left);
        for (split = 1; split <= len; split++) {
            run(t[i].in, len, split == len ? SIZE_MAX : split, ev, sizeof(ev));
            if (strcmp(ev, t[i].want) != 0)
                fail_msg("case %zu split %zu: got '%s', want '%s'", i, split, ev, t[i].want);
        }
    }
}

static void test_limits(void **state)
{
    static char in[REPLY_LINES_MAX * 200 + 4096];
    char ev[64];
    size_t len, i;

    (void)state;
    /* A line of exactly REPLY_LINE_MAX octets is fine; one more is not. */
    len = (size_t)snprintf(in, sizeof(in), "250 ");
    memset(in + len, 'x', REPLY_LINE_MAX - 4);
    len += REPLY_LINE_MAX - 4;
    memcpy(in + len, "\r\n", 2);
    run(in, len + 2, 0, ev, sizeof(ev));
    assert_memory_equal(ev, "250||x", 6);
    run(in, len + 2, SIZE_MAX, ev, sizeof(ev));
    assert_memory_equal(ev, "250||x", 6);
    in[len] = 'x';
    memcpy(in + len + 1, "\r\n", 2);
    run(in, len + 3, 0, ev, sizeof(ev));
    assert_string_equal(ev, "ERR;");
    run(in, len + 3, SIZE_MAX, ev, sizeof(ev)); /* noticed before the LF */
    assert_string_equal(ev, "ERR;");
    /* No LF at all, ever: an error once the line cannot be valid. */
    memset(in, 'y', REPLY_LINE_MAX + 10);
    run(in, REPLY_LINE_MAX + 10, 0, ev, sizeof(ev));
    assert_string_equal(ev, "ERR;");

    /* REPLY_LINES_MAX lines fine, one more is an error. */
    len = 0;
    for (i = 0; i < REPLY_LINES_MAX - 1; i++)
        len += (size_t)snprintf(in + len, sizeof(in) - len, "250-line%zu\r\n", i);
    len += (size_t)snprintf(in + len, sizeof(in) - len, "250 last\r\n");
    {
        static char big[REPLY_LINES_MAX * 16];
        run(in, len, 0, big, sizeof(big));
        assert_int_equal(strncmp(big, "250||line0|line1|", 17), 0);
        assert_non_null(strstr(big, "|line62|last;"));
    }
    len = 0;
    for (i = 0; i < REPLY_LINES_MAX; i++)
        len += (size_t)snprintf(in + len, sizeof(in) - len, "250-line%zu\r\n", i);
    len += (size_t)snprintf(in + len, sizeof(in) - len, "250 last\r\n");
    run(in, len, 0, ev, sizeof(ev));
    assert_string_equal(ev, "ERR;");
}

/* 64 lines of 2 KB do not fit the text storage: texts are truncated, but
 * every line keeps a valid NUL-terminated string. */
static void test_storage_truncation(void **state)
{
    static char in[REPLY_LINES_MAX * (REPLY_LINE_MAX + 2)];
    static struct smtp_reply out;
    struct reply_reader r;
    size_t len = 0, consumed, i;

    (void)state;
    for (i = 0; i < REPLY_LINES_MAX; i++) {
        memcpy(in + len, i + 1 < REPLY_LINES_MAX ? "250-" : "250 ", 4);
        memset(in + len + 4, 'a' + (int)(i % 26), REPLY_LINE_MAX - 4);
        len += REPLY_LINE_MAX;
        in[len++] = '\r';
        in[len++] = '\n';
    }
    reply_reader_init(&r);
    assert_int_equal(reply_reader_next(&r, in, len, &consumed, &out), REPLY_DONE);
    assert_int_equal(consumed, len);
    assert_int_equal(out.nlines, REPLY_LINES_MAX);
    assert_int_equal(strlen(out.lines[0]), REPLY_LINE_MAX - 4);
    for (i = 0; i < out.nlines; i++) {
        assert_true(out.lines[i] >= out.text && out.lines[i] < out.text + sizeof(out.text));
        assert_true(strlen(out.lines[i]) < sizeof(out.text));
    }
    assert_true(out.text_used <= sizeof(out.text));
    assert_string_equal(out.lines[REPLY_LINES_MAX - 1], "");
}

static void test_keywords(void **state)
{
    static const char ehlo[] = "250-mx.example.com Hello [127.0.0.1]\r\n"
                               "250-PIPELINING\r\n"
                               "250-SIZE 10240000\r\n"
                               "250-auth PLAIN LOGIN\r\n"
                               "250-STARTTLSX\r\n"
                               "250-8BITMIME\r\n"
                               "250 SMTPUTF8\r\n";
    static struct smtp_reply out;
    static const struct {
        const char *kw;
        bool want;
        const char *params;
    } t[] = {
        {"PIPELINING", true, ""}, {"size", true, "10240000"}, {"AUTH", true, "PLAIN LOGIN"},
        {"STARTTLS", false, NULL}, {"8BITMIME", true, ""},    {"SMTPUTF8", true, ""},
        {"mx.example.com", false, NULL}, /* line 0 is the greeting, not a keyword */
        {"DSN", false, NULL},
    };
    struct reply_reader r;
    size_t consumed, i;

    (void)state;
    reply_reader_init(&r);
    assert_int_equal(reply_reader_next(&r, ehlo, sizeof(ehlo) - 1, &consumed, &out), REPLY_DONE);
    assert_int_equal(consumed, sizeof(ehlo) - 1);
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        const char *params = "unset";
        bool got = reply_has_keyword(&out, t[i].kw, &params);

        if (got != t[i].want)
            fail_msg("keyword %s: got %d", t[i].kw, got);
        if (t[i].params != NULL)
            assert_string_equal(params, t[i].params);
        else
            assert_null(params);
        assert_int_equal(reply_has_keyword(&out, t[i].kw, NULL), t[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_storage_truncation),
        cmocka_unit_test(test_keywords),
    };

    return cmocka_run_group_tests_name("smtp_reply", tests, NULL, NULL);
}
