/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for logfmt: the fields of a log line, their JSON object and
 * their journald names. Whatever bytes a client put in the line, the
 * output is one line of valid JSON in valid UTF-8, and a value written by
 * log_quote() comes back as the bytes the client sent. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "log.h"
#include "logfmt.h"

/* ---- helpers ---------------------------------------------------------------- */

static bool valid_utf8(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            k = 2;
        else if (c >= 0xe0 && c <= 0xef)
            k = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        else if (c >= 0xf0 && c <= 0xf4)
            k = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        else
            return false;
        if (i + k > n || p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (size_t j = 2; j < k; j++)
            if (p[i + j] < 0x80 || p[i + j] > 0xbf)
                return false;
        i += k;
    }
    return true;
}

/* The promises of logfmt_json for any input. */
static void check_json(const char *out, size_t len, size_t cap)
{
    assert_true(len < cap);
    assert_int_equal(strlen(out), len);
    assert_true(len >= 3);
    assert_memory_equal(out + len - 2, "}\n", 2);
    assert_null(memchr(out, '\n', len - 1)); /* one line */
    for (size_t i = 0; i < len; i++)
        assert_true((unsigned char)out[i] >= 0x20 || out[i] == '\n');
    assert_true(valid_utf8((const unsigned char *)out, len));
    if (!json_is_object(out))
        fail_msg("not a JSON object: %s", out);
}

static size_t json_of(char *dst, size_t cap, const char *text, size_t len)
{
    struct logfmt_rec r = {"2026-12-06T22:01:29.123Z", "info", "sluice", text, len};
    size_t n = logfmt_json(dst, cap, &r);
    check_json(dst, n, cap);
    return n;
}

/* ---- fields ----------------------------------------------------------------- */

struct f_case {
    const char *text;
    const char *want; /* "key=value|key=value" with the decoded values */
};

static const struct f_case f_cases[] = {
    {"sid=AB12 event=connect client=192.0.2.1:4242 listener=main",
     "sid=AB12|event=connect|client=192.0.2.1:4242|listener=main"},
    {"sid=1 event=tx helo=\"a b\\\"c\\\\d\" from=\"<x@y>\" verdict=accepted",
     "sid=1|event=tx|helo=a b\"c\\d|from=<x@y>|verdict=accepted"},
    /* log_quote's \xHH: UTF-8 comes back as UTF-8, a stray byte as Latin-1 */
    {"helo=\"j\\xc3\\xbcrgen\" bad=\"\\xff\\x01\"", "helo=j\xc3\xbcrgen|bad=\xc3\xbf\x01"},
    /* free text is no field; punctuation of the sentence is not the value's */
    {"listening on 127.0.0.1:25 (listener main, tls=none, proxy=no)", "tls=none|proxy=no"},
    {"recipient dropped by plugin x: rcpt=<a@b> (while sending RCPT)", "rcpt=<a@b>"},
    /* the first of two fields of a name wins; the record's own names are taken */
    {"client=a client=b time=1 level=2 program=3 msg=4 ok=5", "client=a|ok=5"},
    /* not keys: starting with a digit or '=', too long, empty */
    {"1a=b =c "
     "k234567890123456789012345678901234=x "
     "e=",
     "e="},
    {"header.from=example.org peer-fp=AB", "header.from=example.org|peer-fp=AB"},
    /* an unterminated quote runs to the end, spaces and all */
    {"a=\"x y", "a=x y"},
    {"a=\"x\"junk b=1", "a=x|b=1"},
    {"", ""},
};

static void test_fields(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof f_cases / sizeof f_cases[0]; c++) {
        struct logfmt_field f[LOGFMT_FIELDS_MAX];
        const char *t = f_cases[c].text;
        size_t n = logfmt_fields(t, strlen(t), f, LOGFMT_FIELDS_MAX);
        char got[512] = "";
        size_t gl = 0;
        for (size_t i = 0; i < n; i++) {
            char v[256];
            logfmt_value(&f[i], v, sizeof v);
            gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%.*s=%s", i ? "|" : "",
                                   (int)f[i].keylen, f[i].key, v);
        }
        if (strcmp(got, f_cases[c].want) != 0)
            fail_msg("case %zu: got '%s', want '%s'", c, got, f_cases[c].want);
    }
}

/* What log_quote writes, logfmt_value reads back, for every byte. */
static void test_quote_roundtrip(void **state)
{
    (void)state;
    char in[256], q[4 * sizeof in + 8], text[sizeof q + 8];
    for (int i = 1; i < 256; i++)
        in[i - 1] = (char)i;
    in[255] = 0;
    log_quote(q, sizeof q, in);
    snprintf(text, sizeof text, "v=%s", q);
    struct logfmt_field f[2];
    assert_int_equal(logfmt_fields(text, strlen(text), f, 2), 1);
    assert_true(f[0].quoted);
    char out[1024];
    size_t n = logfmt_value(&f[0], out, sizeof out);
    assert_true(valid_utf8((unsigned char *)out, n));
    /* ASCII as is, 0x80..0xff (not UTF-8 one by one) as Latin-1 */
    assert_int_equal(n, 127 + 2 * 128);
    assert_memory_equal(out, in, 127);
    for (int b = 0x80; b < 0x100; b++) {
        size_t at = 127 + 2 * (size_t)(b - 0x80);
        assert_int_equal((unsigned char)out[at], 0xc0 | b >> 6);
        assert_int_equal((unsigned char)out[at + 1], 0x80 | (b & 0x3f));
    }
}

static void test_value_cut(void **state)
{
    (void)state;
    struct logfmt_field f = {"k", 1, "ab\xc3\xbc", 4, false};
    char out[8];
    assert_int_equal(logfmt_value(&f, out, 4), 2); /* "ü" does not fit whole */
    assert_string_equal(out, "ab");
    assert_int_equal(logfmt_value(&f, out, 5), 4);
    assert_int_equal(logfmt_value(&f, out, 1), 0);
    assert_string_equal(out, "");
}

static void test_journal_name(void **state)
{
    (void)state;
    char n[80];
    assert_int_equal(logfmt_journal_name(n, sizeof n, "sid", 3), 10);
    assert_string_equal(n, "SLUICE_SID");
    logfmt_journal_name(n, sizeof n, "header.from", 11);
    assert_string_equal(n, "SLUICE_HEADER_FROM");
    logfmt_journal_name(n, sizeof n, "peer-fp", 7);
    assert_string_equal(n, "SLUICE_PEER_FP");
    logfmt_journal_name(n, sizeof n, "SRS0", 4);
    assert_string_equal(n, "SLUICE_SRS0");
    assert_int_equal(logfmt_journal_name(n, 10, "sid", 3), 0); /* no room for the NUL */
    char longkey[LOGFMT_KEY_MAX];
    memset(longkey, 'k', sizeof longkey);
    assert_int_equal(logfmt_journal_name(n, sizeof n, longkey, sizeof longkey),
                     7 + LOGFMT_KEY_MAX); /* within journald's 64 */
    for (size_t i = 0; n[i]; i++)
        assert_true((n[i] >= 'A' && n[i] <= 'Z') || (n[i] >= '0' && n[i] <= '9') || n[i] == '_');
}

/* ---- JSON ------------------------------------------------------------------- */

static void test_json_exact(void **state)
{
    (void)state;
    char out[1024];
    const char *t = "sid=7 event=tx helo=\"evil\\\"}\\x0a{\\x00\" rcpts=2 (while x)";
    json_of(out, sizeof out, t, strlen(t));
    assert_string_equal(out, "{\"time\":\"2026-12-06T22:01:29.123Z\",\"level\":\"info\","
                             "\"program\":\"sluice\",\"sid\":\"7\",\"event\":\"tx\","
                             "\"helo\":\"evil\\\"}\\u000a{\\u0000\",\"rcpts\":\"2\","
                             "\"msg\":\"sid=7 event=tx helo=\\\"evil\\\\\\\"}\\\\x0a{\\\\x00\\\" "
                             "rcpts=2 (while x)\"}\n");
    /* raw control bytes and bad UTF-8 in the text itself (unquoted values) */
    const char raw[] = "user=a\x01\xff\xc3\xbc\n b=\xed\xa0\x80";
    json_of(out, sizeof out, raw, sizeof raw - 1);
    assert_non_null(strstr(out, "\"user\":\"a\\u0001\\u00ff\xc3\xbc\\u000a\""));
    assert_non_null(strstr(out, "\"b\":\"\\u00ed\\u00a0\\u0080\""));
}

/* The msg member is escaped exactly as json_escape does elsewhere. */
static void test_json_msg_like_json_escape(void **state)
{
    (void)state;
    unsigned seed = 19;
    for (int round = 0; round < 2000; round++) {
        char text[64];
        size_t n = (size_t)(rand_r(&seed) % (sizeof text - 1));
        for (size_t i = 0; i < n; i++) {
            text[i] = (char)(rand_r(&seed) % 255 + 1); /* no NUL: json_escape takes C strings */
            if (rand_r(&seed) % 3 == 0)                /* more UTF-8 lead and continuation */
                text[i] = (char)(0x80 | rand_r(&seed) % 0x78);
        }
        text[n] = 0;
        char out[2048];
        size_t len = json_of(out, sizeof out, text, n);
        buf_t b = BUF_INIT;
        json_escape(&b, text);
        char *m = strstr(out, ",\"msg\":");
        assert_non_null(m);
        m += 7;
        size_t ml = len - (size_t)(m - out) - 2; /* before "}\n" */
        if (ml != b.len || memcmp(m, b.ptr, b.len) != 0)
            fail_msg("round %d: msg %.*s, json_escape %s", round, (int)ml, m, b.ptr);
        buf_free(&b);
    }
}

/* Any bytes, any buffer size from the minimum up: valid JSON, cut marked. */
static void test_json_hostile(void **state)
{
    (void)state;
    static const char *const pieces[] = {"sid=",    "a=\"",        "\\x",     "\\\"", "\\",
                                         "\"",      " ",           "=",       "ff",   "\xc3",
                                         "\xbc",    "\xf4\x90",    "\x00",    "\n",   "\x1f",
                                         "time=",   "msg=",        "k.k-k_=", "}",    "{",
                                         "\\u0000", "\xef\xbf\xbd"};
    unsigned seed = 7;
    char *text = malloc(5000), *out = malloc(20000);
    for (int round = 0; round < 3000; round++) {
        size_t n = 0, want = (size_t)(rand_r(&seed) % 4000);
        while (n < want) {
            const char *p = pieces[rand_r(&seed) % (sizeof pieces / sizeof pieces[0])];
            size_t pl = p[0] ? strlen(p) : 1;
            if (n + pl > 4000)
                break;
            memcpy(text + n, p, pl);
            n += pl;
        }
        size_t cap = LOGFMT_JSON_MIN + (size_t)(rand_r(&seed) % 20000);
        if (cap > 20000)
            cap = 20000;
        size_t len = json_of(out, cap, text, n);
        (void)len;
    }
    free(text);
    free(out);
}

static void test_json_truncated(void **state)
{
    (void)state;
    char text[4000], out[LOGFMT_JSON_MIN];
    memset(text, '\x01', sizeof text); /* 6 bytes each in JSON */
    memcpy(text, "sid=1 ", 6);
    json_of(out, sizeof out, text, sizeof text);
    assert_non_null(strstr(out, "\"sid\":\"1\""));
    assert_non_null(strstr(out, ",\"truncated\":true}\n"));
    assert_non_null(strstr(out, "\"msg\":\"sid=1 \\u0001"));
    /* too small a buffer: nothing, not broken JSON */
    assert_int_equal(
        logfmt_json(out, LOGFMT_JSON_MIN - 1, &(struct logfmt_rec){"t", "info", "p", "x", 1}), 0);
    assert_string_equal(out, "");
    /* a huge program name or time is cut, the object stays valid */
    char big[600];
    memset(big, '"', sizeof big - 1);
    big[sizeof big - 1] = 0;
    struct logfmt_rec r = {big, big, big, "a=1", 3};
    size_t n = logfmt_json(out, sizeof out, &r);
    check_json(out, n, sizeof out);
    assert_non_null(strstr(out, "\"truncated\":true"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),       cmocka_unit_test(test_quote_roundtrip),
        cmocka_unit_test(test_value_cut),    cmocka_unit_test(test_journal_name),
        cmocka_unit_test(test_json_exact),   cmocka_unit_test(test_json_msg_like_json_escape),
        cmocka_unit_test(test_json_hostile), cmocka_unit_test(test_json_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
