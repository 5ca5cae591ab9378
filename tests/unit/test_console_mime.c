/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for console_mime: a held message rendered as text (parts
 * named, text decoded to UTF-8, other parts only named, a bound). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <gmime/gmime.h>
#include <string.h>

#include "buf.h"
#include "console_mime.h"

static const char MSG[] = "From: a@example.com\r\n"
                          "Subject: test\r\n"
                          "MIME-Version: 1.0\r\n"
                          "Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
                          "\r\n"
                          "--b1\r\n"
                          "Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
                          "\r\n"
                          "--b2\r\n"
                          "Content-Type: text/plain; charset=iso-8859-1\r\n"
                          "Content-Transfer-Encoding: base64\r\n"
                          "\r\n"
                          "Q2Fm6SDgIG1pZGkK\r\n" /* "Café à midi\n" in Latin-1 */
                          "--b2\r\n"
                          "Content-Type: text/html; charset=utf-8\r\n"
                          "Content-Transfer-Encoding: quoted-printable\r\n"
                          "\r\n"
                          "<p onclick=3D\"x()\">Caf=C3=A9</p>\r\n"
                          "--b2--\r\n"
                          "--b1\r\n"
                          "Content-Type: application/pdf; name=\"invoice.pdf\"\r\n"
                          "Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n"
                          "Content-Transfer-Encoding: base64\r\n"
                          "\r\n"
                          "JVBERi0xLjQK\r\n"
                          "--b1--\r\n";

static void test_parts(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    bool cut = false;
    assert_int_equal(console_mime_text(&b, MSG, sizeof MSG - 1, 65536, &cut), 0);
    buf_append(&b, "", 1);
    assert_false(cut);
    assert_non_null(strstr(b.ptr, "--- part 1: text/plain ---\nCaf\xc3\xa9 \xc3\xa0 midi\n"));
    assert_non_null(strstr(b.ptr, "--- part 2: text/html ---\n<p onclick=\"x()\">Caf\xc3\xa9</p>"));
    assert_non_null(strstr(b.ptr, "--- part 3: application/pdf, file invoice.pdf (not shown)"));
    assert_null(strstr(b.ptr, "%PDF"));
    assert_null(strstr(b.ptr, "multipart"));
    buf_free(&b);
}

static void test_bound(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    bool cut = false;
    assert_int_equal(console_mime_text(&b, MSG, sizeof MSG - 1, 5, &cut), 0);
    buf_append(&b, "", 1);
    assert_true(cut);
    assert_non_null(strstr(b.ptr, "--- part 1: text/plain ---\nCaf\xc3\xa9\n"));
    assert_non_null(strstr(b.ptr, "--- part 2: text/html ---\n"));
    buf_free(&b);
    /* a plain message, and garbage */
    const char plain[] = "Subject: x\r\n\r\nhello\r\n";
    assert_int_equal(console_mime_text(&b, plain, sizeof plain - 1, 100, &cut), 0);
    buf_append(&b, "", 1);
    assert_non_null(strstr(b.ptr, "hello"));
    buf_free(&b);
    const char junk[] = "\x00\x01\xff\r\n\r\n\x00";
    console_mime_text(&b, junk, sizeof junk - 1, 100, &cut); /* no crash, any answer */
    buf_free(&b);
}

int main(void)
{
    g_mime_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parts),
        cmocka_unit_test(test_bound),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    g_mime_shutdown();
    return rc;
}
