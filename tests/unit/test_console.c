/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for the console's pure modules: HTML escaping and form
 * decoding (console_html), sessions, cookies and CSRF tokens
 * (console_session), the password file, password checks and the login
 * throttle (console_auth). Hostile input throughout. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "console_auth.h"
#include "console_html.h"
#include "console_session.h"

/* ---- console_html --------------------------------------------------------- */

static char *esc(const char *s, size_t n)
{
    static char out[1024];
    buf_t b = BUF_INIT;
    assert_int_equal(console_html_escape(&b, s, n), 0);
    assert_true(b.len < sizeof out);
    memcpy(out, b.ptr ? b.ptr : "", b.len);
    out[b.len] = '\0';
    buf_free(&b);
    return out;
}
#define ESC(lit) esc(lit, sizeof lit - 1)

static void test_escape(void **state)
{
    (void)state;
    assert_string_equal(ESC("plain text"), "plain text");
    assert_string_equal(ESC("<script>alert('x')</script>"),
                        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
    assert_string_equal(ESC("a\" onmouseover=\"x"), "a&quot; onmouseover=&quot;x");
    assert_string_equal(ESC("&amp;"), "&amp;amp;");
    assert_string_equal(ESC("line1\r\nline2\tx"), "line1\nline2\tx");
    /* NUL, ESC, DEL, C1: replaced, never passed */
    assert_string_equal(ESC("a\0b\x1b[31m\x7f"), "a\xef\xbf\xbd"
                                                 "b\xef\xbf\xbd[31m\xef\xbf\xbd");
    assert_string_equal(ESC("\xc2\x85"), "\xef\xbf\xbd");
    /* valid UTF-8 kept, invalid replaced byte by byte */
    assert_string_equal(ESC("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");
    assert_string_equal(ESC("\xc0\xbc"), "\xef\xbf\xbd\xef\xbf\xbd"); /* overlong '<' */
    assert_string_equal(ESC("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(ESC("\xe2\x82"), "\xef\xbf\xbd\xef\xbf\xbd"); /* cut */
    assert_string_equal(ESC("\xff<"), "\xef\xbf\xbd&lt;");
}

static void test_escape_never_leaks(void **state)
{
    (void)state;
    /* every byte pair: no raw markup character survives */
    for (int a = 0; a < 256; a++)
        for (int c = 0; c < 256; c += 7) {
            char in[3] = {(char)a, (char)c, '<'};
            const char *o = esc(in, 3);
            assert_null(strchr(o, '<'));
            assert_null(strchr(o, '"'));
            assert_null(strchr(o, '\''));
            assert_null(strchr(o, '\r'));
        }
}

static void test_urlenc(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    assert_int_equal(console_html_urlenc(&b, "a b&c=d/é\"<"), 0);
    buf_append(&b, "", 1);
    assert_string_equal(b.ptr, "a%20b%26c%3Dd%2F%C3%A9%22%3C");
    buf_free(&b);
}

static void test_form(void **state)
{
    (void)state;
    char out[16];
    const char *body = "user=al+ice&password=p%40ss%3Dw&empty=&flag&user=second";
    size_t n = strlen(body);
    assert_int_equal(console_html_form_get(body, n, "user", out, sizeof out), 6);
    assert_string_equal(out, "al ice");
    assert_int_equal(console_html_form_get(body, n, "password", out, sizeof out), 6);
    assert_string_equal(out, "p@ss=w");
    assert_int_equal(console_html_form_get(body, n, "empty", out, sizeof out), 0);
    assert_int_equal(console_html_form_get(body, n, "flag", out, sizeof out), 0);
    assert_int_equal(console_html_form_get(body, n, "nope", out, sizeof out), -ENOENT);
    assert_int_equal(console_html_form_get(body, n, "use", out, sizeof out), -ENOENT);
    /* bad escapes, NUL, too long; not NUL-terminated input is fine */
    assert_int_equal(console_html_form_get("a=%4", 4, "a", out, sizeof out), -EINVAL);
    assert_int_equal(console_html_form_get("a=%", 3, "a", out, sizeof out), -EINVAL);
    assert_int_equal(console_html_form_get("a=%zz", 5, "a", out, sizeof out), -EINVAL);
    assert_int_equal(console_html_form_get("a=%00", 5, "a", out, sizeof out), -EINVAL);
    assert_int_equal(console_html_form_get("a=%41&b", 5, "a", out, sizeof out), 1);
    assert_string_equal(out, "A");
    assert_int_equal(console_html_form_get("a=0123456789abcdefXYZ", 21, "a", out, sizeof out),
                     -E2BIG);
    assert_int_equal(console_html_form_get("a=xy", 3, "a", out, sizeof out), 1);
    assert_string_equal(out, "x");
}

/* ---- console_session ------------------------------------------------------ */

static void test_session_lifecycle(void **state)
{
    (void)state;
    struct console_sessions *t = console_session_table_new(4, 1000, 10000);
    char id[CONSOLE_SESSION_HEX], csrf[CONSOLE_SESSION_HEX], id2[CONSOLE_SESSION_HEX],
        csrf2[CONSOLE_SESSION_HEX];
    char user[CONSOLE_SESSION_USER], got[CONSOLE_SESSION_HEX];
    assert_int_equal(console_session_create(t, "alice", 100, id, csrf), 0);
    assert_int_equal(strlen(id), 64);
    assert_int_equal(strlen(csrf), 64);
    assert_int_equal(console_session_create(t, "bob", 100, id2, csrf2), 0);
    assert_string_not_equal(id, id2);
    assert_string_not_equal(id, csrf);
    assert_true(console_session_find(t, id, 500, user, got));
    assert_string_equal(user, "alice");
    assert_string_equal(got, csrf);
    /* idle expiry: 999 ms after the last use still alive, 1000 not */
    assert_true(console_session_find(t, id, 1499, NULL, NULL));
    assert_false(console_session_find(t, id, 2499, NULL, NULL));
    assert_false(console_session_find(t, id, 2500, NULL, NULL)); /* removed */
    /* logout */
    assert_true(console_session_find(t, id2, 900, NULL, NULL));
    console_session_destroy(t, id2);
    assert_false(console_session_find(t, id2, 901, NULL, NULL));
    assert_int_equal(console_session_count(t, 901), 0);
    console_session_table_free(t);

    /* a clock read before another request refreshed the session (a sign-in
     * reads it before hashing the password) is no time, not a wrapped one:
     * the session neither expires nor is taken for a new sign-in */
    t = console_session_table_new(2, 1000, 10000);
    assert_int_equal(console_session_create(t, "alice", 100, id, csrf), 0);
    assert_true(console_session_find(t, id, 600, NULL, NULL));
    assert_true(console_session_find(t, id, 550, NULL, NULL));
    assert_int_equal(console_session_create(t, "bob", 550, id2, csrf2), 0);
    assert_true(console_session_find(t, id, 1500, NULL, NULL)); /* last stayed 600 */
    assert_true(console_session_find(t, id2, 1500, NULL, NULL));
    console_session_table_free(t);
}

static void test_session_max_age_and_full(void **state)
{
    (void)state;
    struct console_sessions *t = console_session_table_new(2, 1000, 3000);
    char id[3][CONSOLE_SESSION_HEX], csrf[CONSOLE_SESSION_HEX];
    assert_int_equal(console_session_create(t, "a", 0, id[0], csrf), 0);
    /* kept busy, it still ends at max age */
    for (uint64_t now = 500; now < 3000; now += 500)
        assert_true(console_session_find(t, id[0], now, NULL, NULL));
    assert_false(console_session_find(t, id[0], 3000, NULL, NULL));
    /* a full table drops the least recently used */
    assert_int_equal(console_session_create(t, "a", 4000, id[0], csrf), 0);
    assert_int_equal(console_session_create(t, "b", 4100, id[1], csrf), 0);
    assert_true(console_session_find(t, id[0], 4200, NULL, NULL));
    assert_int_equal(console_session_create(t, "c", 4300, id[2], csrf), 0);
    assert_true(console_session_find(t, id[0], 4400, NULL, NULL));
    assert_false(console_session_find(t, id[1], 4400, NULL, NULL));
    assert_true(console_session_find(t, id[2], 4400, NULL, NULL));
    /* malformed ids never match */
    char upper[CONSOLE_SESSION_HEX];
    for (size_t i = 0; i < 64; i++)
        upper[i] = (char)(id[0][i] >= 'a' ? id[0][i] - 32 : id[0][i]);
    upper[64] = 0;
    assert_false(console_session_find(t, upper, 4500, NULL, NULL) && strcmp(upper, id[0]) != 0);
    assert_false(console_session_find(t, "", 4500, NULL, NULL));
    assert_false(console_session_find(t, NULL, 4500, NULL, NULL));
    console_session_table_free(t);
}

static void test_csrf(void **state)
{
    (void)state;
    const char *tok = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_true(console_session_csrf_ok(tok, tok));
    assert_false(console_session_csrf_ok(tok, NULL));
    assert_false(console_session_csrf_ok(tok, ""));
    assert_false(console_session_csrf_ok(tok, "0123456789abcdef"));
    assert_false(console_session_csrf_ok(
        tok, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdee"));
    assert_false(console_session_csrf_ok(
        tok, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdefX"));
    assert_false(console_session_csrf_ok("", ""));
}

static void test_cookie(void **state)
{
    (void)state;
    const char *id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char hdr[400], out[CONSOLE_SESSION_HEX];
    snprintf(hdr, sizeof hdr, "sluice_console=%s", id);
    assert_true(console_session_cookie(hdr, out));
    assert_string_equal(out, id);
    snprintf(hdr, sizeof hdr, "theme=dark; sluice_console=%s ; other=1", id);
    assert_true(console_session_cookie(hdr, out));
    assert_string_equal(out, id);
    assert_false(console_session_cookie(NULL, out));
    assert_false(console_session_cookie("", out));
    assert_false(console_session_cookie("xsluice_console=1", out));
    snprintf(hdr, sizeof hdr, "xsluice_console=%s", id);
    assert_false(console_session_cookie(hdr, out));
    /* injection attempts and odd values: no session */
    snprintf(hdr, sizeof hdr, "sluice_console=%s\r\nSet-Cookie: a=b", id);
    assert_false(console_session_cookie(hdr, out));
    snprintf(hdr, sizeof hdr, "sluice_console=\"%s\"", id);
    assert_false(console_session_cookie(hdr, out));
    snprintf(hdr, sizeof hdr, "sluice_console=%.63sG", id);
    assert_false(console_session_cookie(hdr, out));
    snprintf(hdr, sizeof hdr, "sluice_console=%s0", id);
    assert_false(console_session_cookie(hdr, out));
    snprintf(hdr, sizeof hdr, "sluice_console=%s; sluice_console=%s", id, id);
    assert_false(console_session_cookie(hdr, out)); /* cookie tossing */
    assert_string_equal(out, "");
}

/* ---- console_auth --------------------------------------------------------- */

static void make_hash(const char *prefix, const char *pw, char *out, size_t outlen)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    assert_non_null(crypt_gensalt_rn(prefix, 0, NULL, 0, salt, sizeof salt));
    struct crypt_data cd;
    memset(&cd, 0, sizeof cd);
    const char *h = crypt_rn(pw, salt, &cd, sizeof cd);
    assert_non_null(h);
    snprintf(out, outlen, "%s", h);
}

static void test_users_and_verify(void **state)
{
    (void)state;
    char y[256], s6[256], text[1200];
    make_hash("$y$", "correct horse", y, sizeof y);
    make_hash("$6$", "battery staple", s6, sizeof s6);
    buf_t err = BUF_INIT;
    struct console_auth_users *u;
    snprintf(text, sizeof text, "# admins\n\nalice:%s\r\nbob:%s\n", y, s6);
    u = console_auth_parse("users", text, strlen(text), &err);
    assert_non_null(u);
    assert_int_equal(err.len, 0);
    assert_int_equal(console_auth_count(u), 2);
    assert_true(console_auth_verify(u, "alice", "correct horse"));
    assert_false(console_auth_verify(u, "alice", "correct horsE"));
    assert_false(console_auth_verify(u, "alice", ""));
    assert_false(console_auth_verify(u, "alice", NULL));
    assert_true(console_auth_verify(u, "bob", "battery staple"));
    assert_false(console_auth_verify(u, "bob", "correct horse"));
    assert_false(console_auth_verify(u, "carol", "correct horse"));
    assert_false(console_auth_verify(u, NULL, "correct horse"));
    assert_false(console_auth_verify(u, "Alice", "correct horse"));
    console_auth_free(u);
    buf_free(&err);
}

static void expect_error(const char *text, const char *want)
{
    buf_t err = BUF_INIT;
    struct console_auth_users *u =
        console_auth_parse("/etc/sluice/users", text, strlen(text), &err);
    assert_null(u);
    buf_append(&err, "", 1);
    if (!strstr(err.ptr, want))
        fail_msg("input %s: errors \"%s\", want \"%s\"", text, err.ptr, want);
    buf_free(&err);
}

static void test_users_errors(void **state)
{
    (void)state;
    char y[256], text[1200];
    make_hash("$y$", "pw", y, sizeof y);
    expect_error("", "/etc/sluice/users: no users");
    expect_error("# only a comment\n", "/etc/sluice/users: no users");
    snprintf(text, sizeof text, "alice:%s\nbroken line\n", y);
    expect_error(text, "/etc/sluice/users:2: expected name:HASH");
    expect_error("alice:$1$abc$def\n", "/etc/sluice/users:1: user alice: unsupported hash");
    expect_error("alice:plaintext\n", "/etc/sluice/users:1: user alice: unsupported hash");
    expect_error("alice:\n", "/etc/sluice/users:1: user alice: bad hash");
    snprintf(text, sizeof text, "\n\nalice:%s:0:99999\n", y);
    expect_error(text, "/etc/sluice/users:3: user alice: bad hash");
    snprintf(text, sizeof text, ":%s\n", y);
    expect_error(text, "/etc/sluice/users:1: bad user name");
    snprintf(text, sizeof text, "al<b>ice:%s\n", y);
    expect_error(text, "/etc/sluice/users:1: bad user name");
    snprintf(text, sizeof text, "alice:%s\nalice:%s\n", y, y);
    expect_error(text, "/etc/sluice/users:2: user alice listed twice");
    /* one bad line refuses the whole file */
    snprintf(text, sizeof text, "alice:%s\nbob:$6\n", y);
    expect_error(text, "/etc/sluice/users:2:");
}

static void test_users_load(void **state)
{
    (void)state;
    buf_t err = BUF_INIT;
    assert_null(console_auth_load("/nonexistent/users", &err));
    buf_append(&err, "", 1);
    assert_non_null(strstr(err.ptr, "/nonexistent/users: No such file"));
    buf_free(&err);
    assert_null(console_auth_load("/", &err)); /* a directory */
    buf_free(&err);
    char path[] = "/tmp/test_console_usersXXXXXX", y[256], line[400];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    make_hash("$y$", "pw", y, sizeof y);
    int n = snprintf(line, sizeof line, "alice:%s\n", y);
    assert_int_equal(write(fd, line, (size_t)n), n);
    close(fd);
    struct console_auth_users *u = console_auth_load(path, &err);
    assert_non_null(u);
    assert_true(console_auth_verify(u, "alice", "pw"));
    console_auth_free(u);
    unlink(path);
    buf_free(&err);
}

static void test_throttle(void **state)
{
    (void)state;
    struct console_auth_throttle *t = console_auth_throttle_new(2, 3, 60000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(console_auth_throttle_wait(t, "192.0.2.1", 1000), 0);
        console_auth_throttle_note(t, "192.0.2.1", false, 1000);
    }
    assert_int_equal(console_auth_throttle_wait(t, "192.0.2.1", 1000), 60000);
    assert_int_equal(console_auth_throttle_wait(t, "192.0.2.1", 31000), 30000);
    assert_int_equal(console_auth_throttle_wait(t, "192.0.2.2", 31000), 0); /* per address */
    assert_int_equal(console_auth_throttle_wait(t, "192.0.2.1", 61000), 0); /* window over */
    /* a success forgets the failures */
    console_auth_throttle_note(t, "192.0.2.3", false, 70000);
    console_auth_throttle_note(t, "192.0.2.3", false, 70000);
    console_auth_throttle_note(t, "192.0.2.3", true, 70000);
    console_auth_throttle_note(t, "192.0.2.3", false, 70000);
    console_auth_throttle_note(t, "192.0.2.3", false, 70000);
    assert_int_equal(console_auth_throttle_wait(t, "192.0.2.3", 70000), 0);
    /* more addresses than slots: the oldest is forgotten, never a crash */
    char a[32];
    for (int i = 0; i < 50; i++) {
        snprintf(a, sizeof a, "198.51.100.%d", i);
        console_auth_throttle_note(t, a, false, 80000 + (uint64_t)i);
    }
    console_auth_throttle_free(t);
    /* begin counts the attempt at once: requests in flight together cannot
     * pass the limit (each waited before the other was counted) */
    t = console_auth_throttle_new(4, 3, 60000);
    for (int i = 0; i < 3; i++)
        assert_int_equal(console_auth_throttle_begin(t, "192.0.2.9", 1000), 0);
    assert_int_equal(console_auth_throttle_begin(t, "192.0.2.9", 1000), 60000);
    for (int i = 0; i < 3; i++)
        console_auth_throttle_end(t, "192.0.2.9", false);
    assert_true(console_auth_throttle_begin(t, "192.0.2.9", 2000) > 0);
    /* a request that read the clock before the slot was made does not
     * wrap the window round and reset the count */
    assert_true(console_auth_throttle_begin(t, "192.0.2.9", 500) > 0);
    assert_true(console_auth_throttle_wait(t, "192.0.2.9", 500) > 0);
    /* success forgets */
    assert_int_equal(console_auth_throttle_begin(t, "192.0.2.8", 1000), 0);
    console_auth_throttle_end(t, "192.0.2.8", true);
    for (int i = 0; i < 3; i++)
        assert_int_equal(console_auth_throttle_begin(t, "192.0.2.8", 1000), 0);
    console_auth_throttle_free(t);
    /* 0 disables */
    t = console_auth_throttle_new(2, 0, 60000);
    for (int i = 0; i < 10; i++)
        console_auth_throttle_note(t, "192.0.2.1", false, 1000);
    assert_int_equal(console_auth_throttle_wait(t, "192.0.2.1", 1000), 0);
    console_auth_throttle_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_escape_never_leaks),
        cmocka_unit_test(test_urlenc),
        cmocka_unit_test(test_form),
        cmocka_unit_test(test_session_lifecycle),
        cmocka_unit_test(test_session_max_age_and_full),
        cmocka_unit_test(test_csrf),
        cmocka_unit_test(test_cookie),
        cmocka_unit_test(test_users_and_verify),
        cmocka_unit_test(test_users_errors),
        cmocka_unit_test(test_users_load),
        cmocka_unit_test(test_throttle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
