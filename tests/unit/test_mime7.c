/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mime7: 8BITMIME -> 7-bit downgrade. Tables of messages, each checked for
 * what the result must contain, and every converted output checked for the
 * invariants: 7-bit only, CRLF line endings, and (where it was re-encoded)
 * content that decodes back to the original bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mime7.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- helpers ----------------------------------------------------------- */

static int run(const char *in, size_t len, buf_t *out, char *why, size_t whylen)
{
    buf_init(out);
    return mime7_downgrade(in, len, out, why, whylen);
}

/* 7-bit only, no NUL, every CR followed by LF and every LF preceded by CR. */
static void assert_clean(const char *name, const buf_t *out)
{
    for (size_t i = 0; i < out->len; i++) {
        unsigned char c = (unsigned char)out->ptr[i];
        if (c >= 0x80 || c == 0)
            fail_msg("%s: byte 0x%02x at %zu", name, c, i);
        if (c == '\r' && (i + 1 >= out->len || out->ptr[i + 1] != '\n'))
            fail_msg("%s: bare CR at %zu", name, i);
        if (c == '\n' && (i == 0 || out->ptr[i - 1] != '\r'))
            fail_msg("%s: bare LF at %zu", name, i);
    }
}

static size_t longest_line(const char *p, size_t n)
{
    size_t best = 0, start = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            size_t l = i - start - (i > start && p[i - 1] == '\r');
            if (l > best)
                best = l;
            start = i + 1;
        }
    }
    return n - start > best ? n - start : best;
}

/* The body of the first entity whose header block contains `marker`:
 * from after its blank line up to the next "\r\n--" delimiter or the end. */
static bool body_after(const buf_t *out, const char *marker, const char **b, size_t *blen)
{
    const char *m = strstr(out->ptr, marker);
    const char *start, *end;

    if (m == NULL)
        return false;
    start = strstr(m, "\r\n\r\n");
    if (start == NULL)
        return false;
    start += 4;
    end = strstr(start, "\r\n--");
    if (end == NULL)
        end = out->ptr + out->len;
    else
        end += 2; /* the CRLF before a delimiter belongs to the delimiter */
    *b = start;
    *blen = (size_t)(end - start);
    return true;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* RFC 2045 §6.7 decoding, strict enough for a test: soft breaks vanish,
 * hard breaks stay CRLF, =XX becomes the byte. */
static void qp_decode(const char *p, size_t n, buf_t *dst)
{
    buf_init(dst);
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '=') {
            assert_int_equal(buf_append(dst, p + i, 1), 0);
            continue;
        }
        if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n') {
            i += 2;
            continue;
        }
        assert_true(i + 2 < n);
        int hi = hexval(p[i + 1]), lo = hexval(p[i + 2]);
        assert_true(hi >= 0 && lo >= 0);
        char c = (char)(hi * 16 + lo);
        assert_int_equal(buf_append(dst, &c, 1), 0);
        i += 2;
    }
}

static void b64_decode(const char *p, size_t n, buf_t *dst)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned acc = 0;
    int bits = 0;

    buf_init(dst);
    for (size_t i = 0; i < n; i++) {
        const char *q;
        if (p[i] == '=')
            break;
        if (p[i] == '\r' || p[i] == '\n')
            continue;
        q = memchr(al, p[i], 64);
        assert_non_null(q);
        acc = (acc << 6) | (unsigned)(q - al);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char c = (char)((acc >> bits) & 0xff);
            assert_int_equal(buf_append(dst, &c, 1), 0);
        }
    }
}

static void assert_contains(const char *name, const buf_t *out, const char *want)
{
    if (strstr(out->ptr, want) == NULL)
        fail_msg("%s: want \"%s\" in:\n%s", name, want, out->ptr);
}

static void assert_lacks(const char *name, const buf_t *out, const char *absent)
{
    if (strstr(out->ptr, absent) != NULL)
        fail_msg("%s: did not want \"%s\" in:\n%s", name, absent, out->ptr);
}

/* ---- mime7_is_8bit ------------------------------------------------------ */

static void test_is_8bit(void **state)
{
    char big[200];
    (void)state;

    assert_false(mime7_is_8bit("", 0));
    assert_false(mime7_is_8bit(S("plain ascii\r\n\x7f\x01")));
    assert_true(mime7_is_8bit(S("\x80")));
    assert_true(mime7_is_8bit(S("caf\xc3\xa9")));
    /* Every position, across the 32-byte fast path and the tail. */
    for (size_t pos = 0; pos < sizeof(big); pos++) {
        memset(big, 'a', sizeof(big));
        big[pos] = (char)0xff;
        if (!mime7_is_8bit(big, sizeof(big)))
            fail_msg("8-bit byte at %zu not seen", pos);
        if (mime7_is_8bit(big, pos))
            fail_msg("byte %zu outside the range was seen", pos);
    }
}

/* ---- already 7-bit: byte-identical ------------------------------------- */

static void test_seven_bit_unchanged(void **state)
{
    static const struct {
        const char *name, *in;
    } cases[] = {
        {"simple", "From: a@b\r\nSubject: hi\r\n\r\nbody\r\n.\r\n..dots\r\n"},
        {"8bit label, 7bit bytes", "Content-Transfer-Encoding: 8bit\r\n\r\nascii\r\n"},
        {"odd folding", "Subject:x\r\n\t y\r\nX-A  :  v  \r\n\r\n"},
        {"no final CRLF", "Subject: x\r\n\r\nno newline"},
        {"headers only", "Subject: x\r\n"},
        {"multipart", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b \r\n\r\nx\r\n--b--\r\n"},
        {"empty", ""},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_t out;
        char why[128];
        size_t len = strlen(cases[i].in);
        int rc = run(cases[i].in, len, &out, why, sizeof(why));
        if (rc != 0)
            fail_msg("%s: rc %d (%s)", cases[i].name, rc, why);
        assert_int_equal(out.len, len);
        if (len > 0 && memcmp(out.ptr, cases[i].in, len) != 0)
            fail_msg("%s: got\n%s\nwant\n%s", cases[i].name, out.ptr, cases[i].in);
        buf_free(&out);
    }
}

/* ---- text bodies: QP that decodes back to the same bytes ---------------- */

static void test_text_qp_roundtrip(void **state)
{
    static const struct {
        const char *name, *headers, *body;
    } cases[] = {
        {"utf-8 plain", "Content-Type: text/plain; charset=utf-8\r\n",
         "h\xc3\xa9llo w\xc3\xb6rld\r\nsecond line\r\n"},
        {"cte 8bit", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
         "gr\xc3\xbc\xc3\x9f" "e\r\n"},
        {"no mime headers", "", "caf\xc3\xa9\r\n"},
        {"dots and From", "Content-Type: text/plain; charset=utf-8\r\n",
         ".\r\n..\r\n.\xc3\xa9\r\nFrom me\r\n"},
        {"trailing blanks, = and tab", "Content-Type: text/plain; charset=utf-8\r\n",
         "a = b \r\n\t\xe2\x82\xac\t\r\n\r\n\r\n"},
        {"long lines", "Content-Type: text/plain; charset=utf-8\r\n",
         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\r\n"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9"
         "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n"},
        {"latin-1 bytes", "Content-Type: text/plain; charset=iso-8859-1\r\n", "caf\xe9 cr\xe8me\r\n"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_t in = BUF_INIT, out, dec;
        char why[128];
        const char *b;
        size_t blen;

        assert_int_equal(buf_printf(&in, "From: a@example.org\r\nSubject: t\r\n%s\r\n%s",
                                    cases[i].headers, cases[i].body), 0);
        int rc = run(in.ptr, in.len, &out, why, sizeof(why));
        if (rc != 0)
            fail_msg("%s: rc %d (%s)", cases[i].name, rc, why);
        assert_clean(cases[i].name, &out);
        assert_contains(cases[i].name, &out, "Content-Transfer-Encoding: quoted-printable\r\n");
        assert_lacks(cases[i].name, &out, "8bit");
        assert_contains(cases[i].name, &out, "MIME-Version: 1.0\r\n");
        assert_contains(cases[i].name, &out, "From: a@example.org\r\nSubject: t\r\n");
        if (longest_line(out.ptr, out.len) > 76)
            fail_msg("%s: a line of %zu chars", cases[i].name, longest_line(out.ptr, out.len));
        assert_true(body_after(&out, "quoted-printable", &b, &blen));
        qp_decode(b, blen, &dec);
        if (dec.len != strlen(cases[i].body) || memcmp(dec.ptr, cases[i].body, dec.len) != 0)
            fail_msg("%s: decoded\n%s\nwant\n%s", cases[i].name, dec.ptr, cases[i].body);
        buf_free(&dec);
        buf_free(&out);
        buf_free(&in);
    }
}

/* ---- non-text leaves: base64 of the exact bytes ------------------------- */

static void test_binary_base64_roundtrip(void **state)
{
    static const char body[] = "\xff\xfe\x01\x02 binary\r\n\x80\x81\r\nend\r\n";
    buf_t in = BUF_INIT, out, dec;
    char why[128];
    const char *b;
    size_t blen;
    (void)state;

    assert_int_equal(buf_printf(&in,
                                "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
                                "--b\r\nContent-Type: application/octet-stream\r\n"
                                "Content-Transfer-Encoding: 8bit\r\n\r\n%s\r\n--b--\r\n", body),
                     0);
    assert_int_equal(run(in.ptr, in.len, &out, why, sizeof(why)), 0);
    assert_clean("base64", &out);
    assert_contains("base64", &out, "Content-Type: application/octet-stream\r\n"
                                    "Content-Transfer-Encoding: base64\r\n");
    assert_true(body_after(&out, "Content-Transfer-Encoding: base64", &b, &blen));
    b64_decode(b, blen, &dec);
    assert_int_equal(dec.len, sizeof(body) - 1);
    assert_memory_equal(dec.ptr, body, dec.len);
    buf_free(&dec);
    buf_free(&out);
    buf_free(&in);
}

/* ---- structures and header decisions ------------------------------------ */

struct conv_case {
    const char *name;
    const char *in;
    int want_rc;             /* 0 or MIME7_UNCONVERTIBLE */
    const char *want[6];     /* substrings of the output (rc 0) or of why */
    const char *absent[3];   /* must not be in the output */
};

static const struct conv_case conv_cases[] = {
    {"multipart: 8-bit text part + untouched 7-bit part",
     "From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
     "preamble\r\n--XX\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
     "seven bit\r\n  kept  as is \r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n"
     "Content-Transfer-Encoding: 8bit\r\n\r\nh\xc3\xa9llo\r\n--XX--\r\nepilogue\r\n",
     0,
     {"preamble\r\n--XX\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
      "seven bit\r\n  kept  as is \r\n--XX\r\n",
      "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
      "\r\nh=C3=A9llo\r\n--XX--\r\n",
      "epilogue\r\n"},
     {"8bit"}},
    {"8-bit Subject becomes an RFC 2047 encoded-word",
     "From: a@b\r\nSubject: caf\xc3\xa9 au lait\r\nTo: c@d\r\n\r\nascii body\r\n", 0,
     {"From: a@b\r\nSubject: =?", "?= au lait\r\nTo: c@d\r\n\r\nascii body\r\n"},
     {"MIME-Version"}},
    {"8-bit display name is encoded, address kept",
     "From: J\xc3\xb6rg <j@example.org>\r\n\r\nx\r\n", 0, {"From: =?", "?= <j@example.org>\r\n"}, {NULL}},
    {"8-bit X- field is encoded",
     "X-Mailer: M\xc3\xa4iler 1.0\r\n\r\nx\r\n", 0, {"X-Mailer: =?"}, {NULL}},
    {"8-bit local part is refused",
     "From: <j\xc3\xb6@example.org>\r\n\r\nx\r\n", MIME7_UNCONVERTIBLE, {"8-bit"}, {NULL}},
    {"8-bit Received is refused",
     "Received: from h (\xc3\xa9)\r\n\r\nx\r\n", MIME7_UNCONVERTIBLE, {"Received"}, {NULL}},
    {"8-bit filename parameter is refused",
     "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf\r\n"
     "Content-Disposition: attachment; filename=\"r\xc3\xa9sum\xc3\xa9.pdf\"\r\n\r\nx\r\n--b--\r\n",
     MIME7_UNCONVERTIBLE, {"Content-Disposition"}, {NULL}},
    {"latin-1 Subject is refused (charset unknown)",
     "Subject: \xe9t\xe9\r\n\r\nx\r\n", MIME7_UNCONVERTIBLE, {"UTF-8"}, {NULL}},
    {"message/rfc822 with an 8-bit inner part",
     "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n"
     "--o\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
     "Subject: inner \xc3\xa9\r\nMIME-Version: 1.0\r\n"
     "Content-Type: multipart/alternative; boundary=\"i\"\r\n\r\n"
     "--i\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xe2\x82\xac 5\r\n"
     "--i\r\nContent-Type: image/gif\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGIF\x89\r\n"
     "--i--\r\n--o--\r\n",
     0,
     {"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n",
      "Subject: inner =?",
      "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
      "\r\n=E2=82=AC 5\r\n--i\r\n",
      "Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\nR0lGiQ==\r\n",
      "--i--\r\n", "--o--\r\n"},
     {"8bit"}},
    {"text without charset gets one",
     "Content-Type: text/html\r\n\r\n<p>\xc3\xa9</p>\r\n", 0,
     {"Content-Type: text/html; charset=utf-8\r\n", "<p>=C3=A9</p>\r\n"}, {NULL}},
    {"non-UTF-8 text without charset is labelled unknown-8bit",
     "Subject: x\r\n\r\ncaf\xe9\r\n", 0, {"charset=unknown-8bit", "caf=E9\r\n"}, {NULL}},
    {"multipart labelled 8bit is relabelled 7bit",
     "Content-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
     "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xc3\xa9\r\n--b--\r\n",
     0, {"boundary=b\r\nContent-Transfer-Encoding: 7bit\r\n"}, {"8bit"}},
    {"8-bit preamble and epilogue become ?",
     "Content-Type: multipart/mixed; boundary=b\r\n\r\npre \xc3\xa9\r\n"
     "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\npost \xc3\xa9\r\n",
     0, {"pre ??\r\n--b\r\n", "--b--\r\npost ??\r\n"}, {NULL}},
    {"QP part with stray 8-bit bytes is re-encoded",
     "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
     "a=3Db \xc3\xa9\r\n", 0, {"a=3Db =C3=A9\r\n"}, {NULL}},
    {"CTE binary is re-encoded even when 7-bit",
     "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/x-y\r\n"
     "Content-Transfer-Encoding: binary\r\n\r\nabc\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
     "\xc3\xa9\r\n--b--\r\n",
     0, {"Content-Type: application/x-y\r\nContent-Transfer-Encoding: base64\r\n\r\nYWJj"}, {"binary"}},
    {"8-bit inside multipart/signed is refused",
     "Content-Type: multipart/signed; boundary=s; protocol=\"application/pgp-signature\"\r\n\r\n"
     "--s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsigned \xc3\xa9\r\n"
     "--s\r\nContent-Type: application/pgp-signature\r\n\r\nSIG\r\n--s--\r\n",
     MIME7_UNCONVERTIBLE, {"signed"}, {NULL}},
    {"8-bit signature-neighbour outside the signed part is fine",
     "Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n"
     "Content-Type: multipart/signed; boundary=s; protocol=\"application/pgp-signature\"\r\n\r\n"
     "--s\r\nContent-Type: text/plain\r\n\r\nsigned ascii\r\n"
     "--s\r\nContent-Type: application/pgp-signature\r\n\r\nSIG\r\n--s--\r\n"
     "--m\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xc3\xa9\r\n--m--\r\n",
     0, {"\r\nsigned ascii\r\n--s\r\n", "\r\n=C3=A9\r\n--m--"}, {NULL}},
    {"invalid header line in the message header is refused, not dropped",
     "Subject: x\r\nbroken header line\r\nFrom: a@b\r\n\r\nbody \xc3\xa9\r\n",
     MIME7_UNCONVERTIBLE, {"malformed", "header line"}, {NULL}},
    {"invalid header line in a part header is refused, not dropped",
     "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n"
     "no colon here\r\n\r\nbody \xc3\xa9\r\n--b--\r\n",
     MIME7_UNCONVERTIBLE, {"malformed"}, {NULL}},
    {"8-bit header name is refused",
     "X-\xc3\xa9: 1\r\n\r\nbody\r\n", MIME7_UNCONVERTIBLE, {"name"}, {NULL}},
    {"multipart without a boundary: body is refused",
     "Content-Type: multipart/mixed\r\n\r\nno boundary \xc3\xa9\r\n", MIME7_UNCONVERTIBLE,
     {"multipart"}, {NULL}},
};

static void test_conversions(void **state)
{
    (void)state;

    for (size_t i = 0; i < sizeof(conv_cases) / sizeof(conv_cases[0]); i++) {
        const struct conv_case *c = &conv_cases[i];
        buf_t out;
        char why[160];
        int rc = run(c->in, strlen(c->in), &out, why, sizeof(why));

        if (rc != c->want_rc)
            fail_msg("%s: got rc %d (%s), want %d\n%s", c->name, rc, why, c->want_rc,
                     out.ptr ? out.ptr : "");
        if (rc == 0) {
            assert_clean(c->name, &out);
            for (size_t k = 0; k < 6 && c->want[k] != NULL; k++)
                assert_contains(c->name, &out, c->want[k]);
            for (size_t k = 0; k < 3 && c->absent[k] != NULL; k++)
                assert_lacks(c->name, &out, c->absent[k]);
        } else {
            assert_int_equal(out.len, 0);
            for (size_t k = 0; k < 6 && c->want[k] != NULL; k++)
                if (strstr(why, c->want[k]) == NULL)
                    fail_msg("%s: why \"%s\" lacks \"%s\"", c->name, why, c->want[k]);
        }
        buf_free(&out);
    }
}

/* ---- malformed input: no crash, either clean 7-bit or refused ----------- */

static void test_malformed(void **state)
{
    static const char *const cases[] = {
        /* missing end boundary */
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        "\xc3\xa9 never closed\r\n",
        /* boundary never used */
        "Content-Type: multipart/mixed; boundary=zz\r\n\r\n--b\r\n\r\n\xc3\xa9\r\n",
        /* no blank line after the headers */
        "Subject: x\r\nbroken header line \xc3\xa9\r\n",
        /* garbage */
        "\xff\xfe\xfd\r\n\r\n\xff",
        /* header continuation first */
        " continued\r\nContent-Type: text/plain\r\n\r\n\xc3\xa9\r\n",
        /* empty boundary parameter */
        "Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n\r\n\xc3\xa9\r\n----\r\n",
        /* message/rfc822 with nothing inside */
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\n\xc3\xa9\r\n--b--\r\n",
        /* bare LF and bare CR in an 8-bit body */
        "Subject: x\r\n\r\na\nb\rc \xc3\xa9\r\n",
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_t out;
        char why[160];
        int rc = run(cases[i], strlen(cases[i]), &out, why, sizeof(why));
        char name[32];

        snprintf(name, sizeof(name), "malformed #%zu", i);
        if (rc == 0)
            assert_clean(name, &out);
        else if (rc != MIME7_UNCONVERTIBLE)
            fail_msg("%s: rc %d (%s)", name, rc, why);
        else
            assert_true(why[0] != '\0');
        buf_free(&out);
    }
}

/* Nesting far beyond any real message: bounded, no stack trouble. */
static void test_deep_nesting(void **state)
{
    buf_t in = BUF_INIT, out;
    char why[160];
    int rc;
    (void)state;

    for (int i = 0; i < 200; i++)
        assert_int_equal(buf_printf(&in, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i), 0);
    assert_int_equal(buf_puts(&in, "Content-Type: text/plain\r\n\r\n\xc3\xa9\r\n"), 0);
    rc = run(in.ptr, in.len, &out, why, sizeof(why));
    if (rc == 0)
        assert_clean("deep", &out);
    else
        assert_int_equal(rc, MIME7_UNCONVERTIBLE);
    buf_free(&out);
    buf_free(&in);
}

/* ---- the output buffer contract ----------------------------------------- */

static void test_appends_and_keeps_out_on_failure(void **state)
{
    buf_t out = BUF_INIT;
    char why[160];
    (void)state;

    assert_int_equal(buf_puts(&out, "PREFIX"), 0);
    assert_int_equal(mime7_downgrade(S("Received: x \xc3\xa9\r\n\r\nb\xc3\xa9\r\n"), &out, why, sizeof(why)),
                     MIME7_UNCONVERTIBLE);
    assert_string_equal(out.ptr, "PREFIX");
    assert_int_equal(out.len, 6);

    assert_int_equal(mime7_downgrade(S("Subject: x\r\n\r\nb\xc3\xa9\r\n"), &out, why, sizeof(why)), 0);
    assert_int_equal(strncmp(out.ptr, "PREFIXSubject: x\r\n", 18), 0);
    assert_non_null(strstr(out.ptr, "b=C3=A9\r\n"));
    size_t kept = out.len;

    /* A tiny or absent reason buffer is fine. */
    assert_int_equal(mime7_downgrade(S("Received: \xc3\xa9\r\n\r\n"), &out, why, 4), MIME7_UNCONVERTIBLE);
    assert_int_equal(strlen(why), 3);
    assert_int_equal(mime7_downgrade(S("Received: \xc3\xa9\r\n\r\n"), &out, NULL, 0), MIME7_UNCONVERTIBLE);
    /* NUL cannot be in 8BITMIME data and would cut GMime's strings */
    assert_int_equal(mime7_downgrade(S("Subject: a\0b\r\n\r\n\xc3\xa9\r\n"), &out, why, sizeof(why)),
                     MIME7_UNCONVERTIBLE);
    assert_non_null(strstr(why, "NUL"));
    assert_int_equal(out.len, kept);
    buf_free(&out);
}

/* Big body: linear work, still correct. */
static void test_large_message(void **state)
{
    buf_t in = BUF_INIT, out, dec;
    char why[64];
    const char *b;
    size_t blen, body_off;
    (void)state;

    assert_int_equal(buf_puts(&in, "Subject: big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"), 0);
    body_off = in.len;
    for (int i = 0; i < 40000; i++)
        assert_int_equal(buf_printf(&in, "line %d \xc3\xa9\xc3\xa0 and some more text here\r\n", i), 0);
    assert_int_equal(run(in.ptr, in.len, &out, why, sizeof(why)), 0);
    assert_clean("large", &out);
    assert_true(longest_line(out.ptr, out.len) <= 76);
    assert_true(body_after(&out, "quoted-printable", &b, &blen));
    qp_decode(b, blen, &dec);
    assert_int_equal(dec.len, in.len - body_off);
    assert_memory_equal(dec.ptr, in.ptr + body_off, dec.len);
    buf_free(&dec);
    buf_free(&out);
    buf_free(&in);
}

/* Runs last: shutdown is final. */
static void test_init_shutdown(void **state)
{
    buf_t out;
    char why[64];
    (void)state;

    mime7_init();
    mime7_init();
    assert_int_equal(run(S("Subject: x\r\n\r\n\xc3\xa9\r\n"), &out, why, sizeof(why)), 0);
    assert_clean("after double init", &out);
    buf_free(&out);
    mime7_shutdown();
    mime7_shutdown();
    mime7_init(); /* no effect */
    assert_int_equal(run(S("Subject: x\r\n\r\n\xc3\xa9\r\n"), &out, why, sizeof(why)), -EINVAL);
    assert_int_equal(out.len, 0);
    /* 7-bit messages need no MIME library */
    assert_int_equal(run(S("Subject: x\r\n\r\nx\r\n"), &out, why, sizeof(why)), 0);
    assert_string_equal(out.ptr, "Subject: x\r\n\r\nx\r\n");
    buf_free(&out);
}

static int setup(void **state)
{
    (void)state;
    mime7_init();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mime7_shutdown();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_8bit),
        cmocka_unit_test(test_seven_bit_unchanged),
        cmocka_unit_test(test_text_qp_roundtrip),
        cmocka_unit_test(test_binary_base64_roundtrip),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_appends_and_keeps_out_on_failure),
        cmocka_unit_test(test_large_message),
        cmocka_unit_test(test_init_shutdown), /* last */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
