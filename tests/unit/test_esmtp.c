/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for esmtp (pure): EHLO capabilities, xtext, the plain-HELO
 * rule, and the XCLIENT / XFORWARD lines. Table-driven: got X, want Y.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "esmtp.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Parse a whole reply text with the real reply parser. */
static void parse_reply(const char *text, struct smtp_reply *out)
{
    struct reply_reader rr;
    reply_reader_init(&rr);
    size_t used = 0;
    assert_int_equal(reply_reader_next(&rr, text, strlen(text), &used, out), REPLY_DONE);
    assert_int_equal(used, strlen(text));
}

static void test_caps(void **state)
{
    (void)state;
    static const struct {
        const char *ehlo;
        unsigned want;
        unsigned long long want_size;
    } cases[] = {
        {"250 mx.example\r\n", 0, 0},
        {"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250-DSN\r\n"
         "250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-CHUNKING\r\n"
         "250-XCLIENT NAME ADDR PORT PROTO HELO\r\n250 XFORWARD NAME ADDR PROTO HELO\r\n",
         ESMTP_PIPELINING | ESMTP_SIZE | ESMTP_8BITMIME | ESMTP_DSN | ESMTP_SMTPUTF8 |
             ESMTP_ENHANCED | ESMTP_STARTTLS | ESMTP_CHUNKING | ESMTP_XCLIENT | ESMTP_XFORWARD,
         52428800},
        {"250-mx\r\n250-size\r\n250 pipelining\r\n", ESMTP_SIZE | ESMTP_PIPELINING, 0},
        {"250-mx\r\n250 SIZE 0\r\n", ESMTP_SIZE, 0},
        {"250 PIPELINING\r\n", 0, 0}, /* line 0 is the greeting text */
        {"250-mx\r\n250-PIPELININGX\r\n250 XCLIENTS\r\n", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct smtp_reply r;
        parse_reply(cases[i].ehlo, &r);
        unsigned long long size = 99;
        assert_int_equal(esmtp_caps(&r, &size), cases[i].want);
        assert_int_equal(size, cases[i].want_size);
    }
}

static void test_xtext(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"", ""},
        {"mail.example.org", "mail.example.org"},
        {"a b", "a+20b"},
        {"x+y=z", "x+2By+3Dz"},
        {"tab\there", "tab+09here"},
        {"caf\xc3\xa9", "caf+C3+A9"},
        {"~!", "~!"},
        {"\x7f", "+7F"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t b = BUF_INIT;
        esmtp_xtext(&b, cases[i].in);
        assert_string_equal(b.ptr ? b.ptr : "", cases[i].want);
        buf_free(&b);
    }
}

static void test_ehlo_name(void **state)
{
    (void)state;
    static const struct {
        const char *helo, *addr, *want;
    } cases[] = {
        {"mail.example.org", "192.0.2.1", "mail.example.org"},
        {"[192.0.2.1]", "192.0.2.1", "[192.0.2.1]"},
        {"[IPv6:2001:db8::1]", "2001:db8::1", "[IPv6:2001:db8::1]"},
        /* what the client sent, so the upstream's HELO checks see it */
        {"bad!host", "192.0.2.1", "bad!host"},
        {"x+y", "192.0.2.1", "x+y"},
        {"host_name", "192.0.2.1", "host_name"},
        /* cannot go on an EHLO line: the address literal */
        {"", "192.0.2.1", "[192.0.2.1]"},
        {"a b", "192.0.2.1", "[192.0.2.1]"},
        {"caf\xc3\xa9", "2001:db8::7", "[IPv6:2001:db8::7]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];
        esmtp_ehlo_name(out, sizeof out, cases[i].helo, cases[i].addr);
        if (strcmp(out, cases[i].want) != 0)
            fail_msg("helo '%s': got %s, want %s", cases[i].helo, out, cases[i].want);
    }
    char small[4];
    esmtp_ehlo_name(small, sizeof small, "abcd", "1.2.3.4"); /* does not fit */
    assert_string_equal(small, "[1.");
}

static void test_xclient_and_xforward_lines(void **state)
{
    (void)state;
    static const struct {
        struct esmtp_client w;
        const char *want_xclient, *want_xf_addr, *want_xf_helo;
    } cases[] = {
        {{"192.0.2.1", 40000, "mx.example", "mx.example", true, NULL, false, 0},
         "XCLIENT ADDR=192.0.2.1 PORT=40000 NAME=mx.example PROTO=ESMTP HELO=mx.example",
         "XFORWARD ADDR=192.0.2.1 PORT=40000 PROTO=ESMTP NAME=mx.example HELO=mx.example",
         ""},
        {{"2001:db8::1", 25, "", "", false, "", false, 0},
         "XCLIENT ADDR=IPV6:2001:db8::1 PORT=25 NAME=[UNAVAILABLE] PROTO=SMTP",
         "XFORWARD ADDR=IPV6:2001:db8::1 PORT=25 PROTO=SMTP NAME=[UNAVAILABLE] HELO=[UNAVAILABLE]",
         ""},
        {{"192.0.2.2", 1, NULL, "bad helo=1", true, NULL, false, 0},
         "XCLIENT ADDR=192.0.2.2 PORT=1 NAME=[UNAVAILABLE] PROTO=ESMTP HELO=bad+20helo+3D1",
         "XFORWARD ADDR=192.0.2.2 PORT=1 PROTO=ESMTP NAME=[UNAVAILABLE] HELO=bad+20helo+3D1",
         ""},
        /* the AUTH login goes with XCLIENT only (XFORWARD has no such
         * attribute), xtext-encoded */
        {{"192.0.2.3", 2, "c.example", "c.example", true, "ann+x=y@example.com", false, 0},
         "XCLIENT ADDR=192.0.2.3 PORT=2 NAME=c.example PROTO=ESMTP HELO=c.example "
         "LOGIN=ann+2Bx+3Dy@example.com",
         "XFORWARD ADDR=192.0.2.3 PORT=2 PROTO=ESMTP NAME=c.example HELO=c.example",
         ""},
        /* a reused connection: nothing of the last client (its login)
         * may stick, so absent HELO and LOGIN are cleared explicitly */
        {{"192.0.2.4", 3, "d.example", "", true, NULL, true, 0},
         "XCLIENT ADDR=192.0.2.4 PORT=3 NAME=d.example PROTO=ESMTP HELO=[UNAVAILABLE] "
         "LOGIN=[UNAVAILABLE]",
         "XFORWARD ADDR=192.0.2.4 PORT=3 PROTO=ESMTP NAME=d.example HELO=[UNAVAILABLE]",
         ""},
        {{"192.0.2.5", 4, "e.example", "e.example", true, "bob", true, 0},
         "XCLIENT ADDR=192.0.2.5 PORT=4 NAME=e.example PROTO=ESMTP HELO=e.example LOGIN=bob",
         "XFORWARD ADDR=192.0.2.5 PORT=4 PROTO=ESMTP NAME=e.example HELO=e.example",
         ""},
        /* a reused connection on an MTA that lists REVERSE_NAME (Postfix
         * keeps the last client's on NAME=[UNAVAILABLE]) but not LOGIN (it
         * would refuse the attribute, and was never told one) */
        {{"192.0.2.6", 5, "", "f.example", true, NULL, true,
          ESMTP_XA_NAME | ESMTP_XA_ADDR | ESMTP_XA_PORT | ESMTP_XA_PROTO | ESMTP_XA_HELO |
              ESMTP_XA_REVERSE_NAME},
         "XCLIENT ADDR=192.0.2.6 PORT=5 NAME=[UNAVAILABLE] PROTO=ESMTP "
         "REVERSE_NAME=[UNAVAILABLE] HELO=f.example",
         "XFORWARD ADDR=192.0.2.6 PORT=5 PROTO=ESMTP NAME=[UNAVAILABLE] HELO=f.example",
         ""},
        {{"192.0.2.7", 6, "g.example", "", true, NULL, true,
          ESMTP_XA_NAME | ESMTP_XA_ADDR | ESMTP_XA_REVERSE_NAME | ESMTP_XA_LOGIN},
         "XCLIENT ADDR=192.0.2.7 NAME=g.example REVERSE_NAME=g.example LOGIN=[UNAVAILABLE]",
         "XFORWARD ADDR=192.0.2.7 NAME=g.example",
         ""},
        /* only what the MTA lists (smtp-sink: NAME HELO), even a login */
        {{"192.0.2.8", 7, "h.example", "h.example", true, "ann", false,
          ESMTP_XA_NAME | ESMTP_XA_HELO},
         "XCLIENT NAME=h.example HELO=h.example",
         "XFORWARD NAME=h.example HELO=h.example",
         ""},
        /* smtp-sink's XFORWARD offer: NAME ADDR PROTO HELO, no PORT */
        {{"192.0.2.9", 8, "i.example", "i.example", true, NULL, false,
          ESMTP_XA_NAME | ESMTP_XA_ADDR | ESMTP_XA_PROTO | ESMTP_XA_HELO},
         "XCLIENT ADDR=192.0.2.9 NAME=i.example PROTO=ESMTP HELO=i.example",
         "XFORWARD ADDR=192.0.2.9 PROTO=ESMTP NAME=i.example HELO=i.example",
         ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t x = BUF_INIT, a = BUF_INIT, h = BUF_INIT;
        esmtp_xclient_line(&x, &cases[i].w);
        esmtp_xforward_lines(&a, &h, &cases[i].w);
        assert_string_equal(x.ptr, cases[i].want_xclient);
        assert_string_equal(a.len ? a.ptr : "", cases[i].want_xf_addr);
        assert_string_equal(h.len ? h.ptr : "", cases[i].want_xf_helo);
        buf_free(&x);
        buf_free(&a);
        buf_free(&h);
    }
}

/* One XFORWARD command while it fits in a command line (510 octets before
 * the CRLF), two beyond. */
static void test_xforward_one_line_while_it_fits(void **state)
{
    (void)state;
    /* "XFORWARD ADDR=192.0.2.1 PORT=25 PROTO=ESMTP NAME=" is 49 octets,
     * " HELO=" 6: NAME and HELO share the other 455 (each at most 255). */
    static const size_t fixed = 49 + 6;
    char name[300], helo[300];
    for (size_t helo_len = 201; helo_len <= ESMTP_VALUE_MAX; helo_len++) {
        size_t name_len = ESMTP_LINE_MAX + 1 - fixed - helo_len; /* one over */
        for (int fits = 0; fits <= 1; fits++) {
            size_t nl = name_len - (size_t)fits;
            memset(name, 'n', nl);
            name[nl] = 0;
            memset(helo, 'h', helo_len);
            helo[helo_len] = 0;
            struct esmtp_client w = {"192.0.2.1", 25, name, helo, true, NULL, false, 0};
            buf_t a = BUF_INIT, h = BUF_INIT;
            esmtp_xforward_lines(&a, &h, &w);
            if (fits) {
                assert_int_equal(a.len, ESMTP_LINE_MAX);
                assert_int_equal(h.len, 0);
                /* ... ending in " HELO=hhh..." */
                assert_memory_equal(a.ptr + a.len - helo_len - 6, " HELO=", 6);
                assert_memory_equal(a.ptr + a.len - helo_len, helo, helo_len);
            } else {
                assert_int_equal(a.len, ESMTP_LINE_MAX + 1 - 6 - helo_len);
                assert_null(strstr(a.ptr, "HELO="));
                assert_int_equal(h.len, 14 + helo_len);
                assert_int_equal(strncmp(h.ptr, "XFORWARD HELO=", 14), 0);
            }
            buf_free(&a);
            buf_free(&h);
        }
    }
}

/* Postfix refuses a whole XCLIENT or XFORWARD with one value over 255
 * octets as sent: a name or HELO that long once xtext-encoded goes as
 * [UNAVAILABLE]; 255 octets still go as they are. */
static void test_values_over_255_octets_unavailable(void **state)
{
    (void)state;
    char helo[300], name[300];
    for (size_t n = 84; n <= 86; n++) { /* 252, 255, 258 octets encoded */
        memset(helo, '=', n);
        helo[n] = 0;
        memset(name, 'n', 253);
        snprintf(name + 253, 4, "%s", n == 86 ? "xyz" : (n == 85 ? "xy" : "x"));
        struct esmtp_client w = {"192.0.2.1", 25, name, helo, true, NULL, false, 0};
        buf_t x = BUF_INIT, a = BUF_INIT, h = BUF_INIT;
        esmtp_xclient_line(&x, &w);
        esmtp_xforward_lines(&a, &h, &w);
        const char *helo_sent = h.len ? h.ptr : a.ptr;
        bool over = n == 86;
        assert_true(over == (strstr(x.ptr, " HELO=[UNAVAILABLE]") != NULL));
        assert_true(over == (strstr(x.ptr, " NAME=[UNAVAILABLE]") != NULL));
        assert_true(over == (strstr(helo_sent, "HELO=[UNAVAILABLE]") != NULL));
        assert_true(over == (strstr(a.ptr, " NAME=[UNAVAILABLE]") != NULL));
        if (!over) {
            assert_non_null(strstr(x.ptr, " HELO=+3D"));
            assert_non_null(strstr(helo_sent, "HELO=+3D"));
        }
        /* No value over 255 octets, no line over 510. */
        buf_t *lines[3] = {&x, &a, &h};
        for (size_t i = 0; i < 3; i++) {
            const char *p = lines[i]->ptr ? lines[i]->ptr : "";
            if (i > 0)
                assert_true(lines[i]->len <= ESMTP_LINE_MAX);
            for (const char *t = p; (t = strchr(t, '=')) != NULL;) {
                size_t v = strcspn(t + 1, " ");
                assert_true(v <= ESMTP_VALUE_MAX);
                t += 1 + v;
            }
        }
        buf_free(&x);
        buf_free(&a);
        buf_free(&h);
    }
}

static void test_xclient_attrs(void **state)
{
    (void)state;
    struct smtp_reply r = {.code = 250, .nlines = 3};
    r.lines[0] = "mta.example";
    r.lines[1] = "XCLIENT NAME addr PORT PROTO HELO REVERSE_NAME LOGIN";
    r.lines[2] = "PIPELINING";
    assert_int_equal(esmtp_xclient_attrs(&r), ESMTP_XA_NAME | ESMTP_XA_ADDR | ESMTP_XA_PORT |
                                                  ESMTP_XA_PROTO | ESMTP_XA_HELO |
                                                  ESMTP_XA_REVERSE_NAME | ESMTP_XA_LOGIN);
    assert_int_equal(esmtp_xforward_attrs(&r), 0); /* not offered */
    r.lines[2] = "XFORWARD NAME ADDR PROTO HELO";
    assert_int_equal(esmtp_xforward_attrs(&r),
                     ESMTP_XA_NAME | ESMTP_XA_ADDR | ESMTP_XA_PROTO | ESMTP_XA_HELO);
    r.lines[2] = "PIPELINING";
    r.lines[1] = "XCLIENT NAME HELO  NAMEX REVERSE";
    assert_int_equal(esmtp_xclient_attrs(&r), ESMTP_XA_NAME | ESMTP_XA_HELO);
    r.lines[1] = "XCLIENTS NAME";
    assert_int_equal(esmtp_xclient_attrs(&r), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xclient_attrs),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_xtext),
        cmocka_unit_test(test_ehlo_name),
        cmocka_unit_test(test_xclient_and_xforward_lines),
        cmocka_unit_test(test_xforward_one_line_while_it_fits),
        cmocka_unit_test(test_values_over_255_octets_unavailable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
