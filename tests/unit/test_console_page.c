/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for the console's pages (console_page): hostile values from
 * mail never become markup, forms carry the CSRF token, paging links keep
 * the search, dates parse strictly. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "buf.h"
#include "console_page.h"

static const char *TOKEN = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static char *hostile[] = {"<script>alert(1)</script>", "\"><img src=x onerror=alert(2)>",
                          "'onmouseover='x", "a\x1b[31m\r\nb"};

static struct qstore_msg msg(void)
{
    struct qstore_msg m = {
        .id = 42,
        .time = 1765000000,
        .sid = hostile[3],
        .client_addr = "192.0.2.1",
        .client_name = hostile[2],
        .helo = hostile[1],
        .tls = "",
        .auth_user = "",
        .sender = hostile[0],
        .rcpts = hostile,
        .nrcpts = 4,
        .size = 1234,
        .plugin = hostile[1],
        .reason = hostile[0],
        .score = 7.5,
        .symbols = hostile[2],
        .record = "{\"reason\":\"</pre><script>x</script>\"}",
        .status = QSTORE_HELD,
        .note = "",
        .path = "x.eml",
    };
    return m;
}

/* No tag but ours: every '<' starts one of the page's own elements. */
static void assert_inert(const buf_t *b)
{
    static const char *const ours[] = {
        "<!DOCTYPE", "<html",   "<head",    "<meta",    "<title", "<link",     "<body",
        "<a ",       "<header", "<p",       "<nav",     "<ul",    "<li",       "<form",
        "<input",    "<button", "<main",    "<h1",      "<h2",    "<section",  "<dl",
        "<dt",       "<dd",     "<details", "<summary", "<pre",   "<fieldset", "<legend",
        "<div",      "<label",  "<select",  "<option",  "<table", "<caption",  "<thead",
        "<tbody",    "<tr",     "<th",      "<td",      "<span",  "</"};
    for (size_t i = 0; i < b->len; i++) {
        if (b->ptr[i] != '<')
            continue;
        bool ok = false;
        for (size_t k = 0; k < sizeof ours / sizeof ours[0] && !ok; k++)
            ok = strncmp(b->ptr + i, ours[k], strlen(ours[k])) == 0;
        if (!ok)
            fail_msg("foreign markup at %zu: %.40s", i, b->ptr + i);
    }
    assert_null(memmem(b->ptr, b->len, "<script", 7));
    assert_null(memmem(b->ptr, b->len, "<img", 4));
    assert_null(memmem(b->ptr, b->len, "\x1b", 1));
    assert_null(memmem(b->ptr, b->len, "'onmouseover", 12));
}

static void test_msg_page_is_inert(void **state)
{
    (void)state;
    struct qstore_msg m = msg();
    struct console_page_ctx ctx = {.user = "admin", .csrf = TOKEN, .notice = "<b>n</b>"};
    const char hdr[] = "Subject: <script>alert(3)</script>\r\nFrom: \"\x00\" <a@b>\r\n";
    const char body[] = "<html><body onload=alert(4)><iframe src=http://x/></iframe>";
    buf_t b = BUF_INIT;
    assert_int_equal(
        console_page_msg(&b, &ctx, &m, hdr, sizeof hdr - 1, body, sizeof body - 1, false), 0);
    assert_inert(&b);
    buf_append(&b, "", 1);
    assert_non_null(strstr(b.ptr, "&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_non_null(strstr(b.ptr, "&lt;iframe src=http://x/&gt;"));
    assert_non_null(strstr(b.ptr, "&lt;/pre&gt;&lt;script&gt;"));
    /* both forms post the session's token */
    const char *p = b.ptr;
    int forms = 0;
    while ((p = strstr(p, "name=\"csrf\" value=\"")) != NULL) {
        p += strlen("name=\"csrf\" value=\"");
        assert_memory_equal(p, TOKEN, 64);
        forms++;
    }
    assert_int_equal(forms, 3); /* logout, release, delete */
    assert_non_null(strstr(b.ptr, "Release to 4 recipients"));
    buf_free(&b);
    /* not held: no release or delete form */
    m.status = QSTORE_RELEASED;
    m.note = "to original recipients: 250 <ok>";
    assert_int_equal(console_page_msg(&b, &ctx, &m, NULL, 0, NULL, 0, false), 0);
    assert_inert(&b);
    buf_append(&b, "", 1);
    assert_null(strstr(b.ptr, "action=\"/release\""));
    assert_null(strstr(b.ptr, "action=\"/delete\""));
    assert_non_null(strstr(b.ptr, "250 &lt;ok&gt;"));
    buf_free(&b);
}

static void test_list_page(void **state)
{
    (void)state;
    struct qstore_msg v[2] = {msg(), msg()};
    v[1].id = 43;
    struct console_page_ctx ctx = {.user = "admin", .csrf = TOKEN};
    struct console_page_search s = {
        .sender = "\"><script>", .rcpt = "a&b=c", .page = 2, .per_page = 2, .status = "any"};
    buf_t b = BUF_INIT;
    assert_int_equal(console_page_list(&b, &ctx, &s, v, 2, 7), 0);
    assert_inert(&b);
    buf_append(&b, "", 1);
    assert_non_null(strstr(b.ptr, "7 messages match; showing 3 to 4."));
    assert_non_null(strstr(b.ptr, "href=\"/msg?id=43\""));
    assert_non_null(strstr(b.ptr, "and 1 more"));
    assert_non_null(strstr(b.ptr, "Page 2 of 4"));
    /* paging links keep the search, encoded then escaped */
    assert_non_null(strstr(b.ptr, "href=\"/?sender=%22%3E%3Cscript%3E&amp;rcpt=a%26b%3Dc&amp;"
                                  "status=any&amp;page=1\""));
    assert_non_null(strstr(b.ptr, "page=3\""));
    assert_non_null(strstr(b.ptr, "<option value=\"any\" selected>"));
    assert_non_null(strstr(b.ptr, "value=\"&quot;&gt;&lt;script&gt;\""));
    buf_free(&b);
    assert_int_equal(console_page_list(&b, &ctx, &s, NULL, 0, 0), 0);
    buf_append(&b, "", 1);
    assert_non_null(strstr(b.ptr, "No message matches."));
    buf_free(&b);
    s.page = 9; /* past the end */
    assert_int_equal(console_page_list(&b, &ctx, &s, NULL, 0, 7), 0);
    buf_append(&b, "", 1);
    assert_non_null(strstr(b.ptr, "7 messages match; none on this page."));
    assert_non_null(strstr(b.ptr, "Previous page"));
    buf_free(&b);
}

static void test_login_page(void **state)
{
    (void)state;
    struct console_page_ctx ctx = {0};
    buf_t b = BUF_INIT;
    assert_int_equal(console_page_login(&b, &ctx, "Wrong user name or password."), 0);
    assert_inert(&b);
    buf_append(&b, "", 1);
    assert_non_null(strstr(b.ptr, "<label for=\"user\">"));
    assert_non_null(strstr(b.ptr, "<label for=\"password\">"));
    assert_non_null(strstr(b.ptr, "type=\"password\""));
    assert_null(strstr(b.ptr, "Sign out")); /* no session, no menu */
    buf_free(&b);
}

static void test_parse_time(void **state)
{
    (void)state;
    assert_int_equal(console_page_parse_time(""), 0);
    assert_int_equal(console_page_parse_time(NULL), 0);
    assert_int_equal(console_page_parse_time("1970-01-02"), 86400);
    assert_int_equal(console_page_parse_time("2026-12-06"), 1796515200);
    assert_int_equal(console_page_parse_time("2026-12-06T01:02"), 1796515200 + 3720);
    assert_int_equal(console_page_parse_time("2026-12-06 01:02"), 1796515200 + 3720);
    const char *bad[] = {"2026-13-01", "2026-02-30",       "2026-1-01",        "2026-01-01x",
                         "x026-01-01", "2026-01-01T24:00", "2026-01-01T1:000", "1969-12-31",
                         "+026-01-01", "2026-01-01T01:0x", " 2026-01-01"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (console_page_parse_time(bad[i]) != -1)
            fail_msg("%s accepted", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_page_is_inert),
        cmocka_unit_test(test_list_page),
        cmocka_unit_test(test_login_page),
        cmocka_unit_test(test_parse_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
