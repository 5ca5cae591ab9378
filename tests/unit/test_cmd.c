/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for smtp_cmd: line reader, verb split, MAIL/RCPT grammar. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- cmd_reader ---------------------------------------------------- */

/* Run the reader over in[0..len) fed as two pieces split at `split`, the
 * way a connection does (keep unconsumed bytes, append new ones). The
 * events are written as "L:<line>|" or "T|" into ev. */
static void reader_run(const char *in, size_t len, size_t split, size_t max, char *ev,
                       size_t evcap)
{
    struct cmd_reader r;
    char buf[4096];
    size_t have = 0, fed = 0, evlen = 0;

    cmd_reader_init(&r, max);
    ev[0] = '\0';
    while (fed < len || have > 0) {
        size_t step = fed < split ? split - fed : len - fed;
        size_t consumed;
        const char *line;
        size_t line_len;
        enum cmd_rd rd;

        assert_true(have + step <= sizeof(buf));
        memcpy(buf + have, in + fed, step);
        have += step;
        fed += step;
        for (;;) {
            rd = cmd_reader_next(&r, buf, have, &consumed, &line, &line_len);
            assert_true(consumed <= have);
            if (rd == CMD_RD_LINE)
                evlen += (size_t)snprintf(ev + evlen, evcap - evlen, "L:%.*s|", (int)line_len,
                                          line);
            else if (rd == CMD_RD_TOO_LONG)
                evlen += (size_t)snprintf(ev + evlen, evcap - evlen, "T|");
            memmove(buf, buf + consumed, have - consumed);
            have -= consumed;
            if (rd == CMD_RD_AGAIN)
                break;
        }
        if (fed == len)
            break;
    }
}

static void test_reader_table(void **state)
{
    static const struct {
        const char *in;
        size_t max;
        const char *want;
    } t[] = {
        {"HELO a\r\n", 512, "L:HELO a|"},
        {"NOOP\nQUIT\r\n", 512, "L:NOOP|L:QUIT|"},
        {"\r\n\n", 512, "L:|L:|"},
        {"A\rB\r\n", 512, "L:A\rB|"},            /* a CR not before LF stays */
        {"12345678\r\nOK\r\n", 10, "L:12345678|L:OK|"}, /* exactly max incl CRLF */
        {"123456789\r\nOK\r\n", 10, "T|L:OK|"},          /* max + 1 */
        {"1234567890123456789012345\r\nOK\r\n", 10, "T|L:OK|"},
        {"123456789\nX\n", 10, "L:123456789|L:X|"},      /* bare LF: 10 incl LF */
        {"partial", 512, ""},
    };
    char ev[1024], ref[1024];
    size_t i, split;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t len = strlen(t[i].in);

        reader_run(t[i].in, len, len, t[i].max, ref, sizeof(ref));
        if (strcmp(ref, t[i].want) != 0)
            fail_msg("case %zu: got '%s', want '%s'", i, ref, t[i].want);
        /* Identical at every split point. */
        for (split = 0; split <= len; split++) {
            reader_run(t[i].in, len, split, t[i].max, ev, sizeof(ev));
            if (strcmp(ev, t[i].want) != 0)
                fail_msg("case %zu split %zu: got '%s', want '%s'", i, split, ev, t[i].want);
        }
    }
}

static void test_reader_bytewise_discard(void **state)
{
    /* Byte by byte through a long line: it must discard, not grow. */
    struct cmd_reader r;
    const char *in = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\nQUIT\r\n";
    char buf[64];
    size_t have = 0, i, consumed, line_len, too_long = 0, lines = 0;
    const char *line;

    (void)state;
    cmd_reader_init(&r, 16);
    for (i = 0; in[i]; i++) {
        enum cmd_rd rd;

        buf[have++] = in[i];
        do {
            rd = cmd_reader_next(&r, buf, have, &consumed, &line, &line_len);
            if (rd == CMD_RD_TOO_LONG)
                too_long++;
            if (rd == CMD_RD_LINE) {
                assert_int_equal(line_len, 4);
                assert_memory_equal(line, "QUIT", 4);
                lines++;
            }
            memmove(buf, buf + consumed, have - consumed);
            have -= consumed;
        } while (rd != CMD_RD_AGAIN);
        assert_true(have < 16);
    }
    assert_int_equal(too_long, 1);
    assert_int_equal(lines, 1);
    assert_false(r.discarding);
}

/* ---- cmd_parse ----------------------------------------------------- */

static void test_parse_table(void **state)
{
    static const struct {
        const char *line;
        enum cmd_verb verb;
        const char *arg; /* NULL: arg must be NULL */
    } t[] = {
        {"HELO mx.example.com", CMD_HELO, "mx.example.com"},
        {"ehlo   mx.example.com  ", CMD_EHLO, "mx.example.com"},
        {"EHLO", CMD_EHLO, ""},
        {"MAIL FROM:<a@b> SIZE=10", CMD_MAIL, "<a@b> SIZE=10"},
        {"mail from: <a@b>", CMD_MAIL, "<a@b>"},
        {"Mail From:<a@b>   ", CMD_MAIL, "<a@b>"},
        {"MAIL FROM:", CMD_MAIL, ""},
        {"MAIL <a@b>", CMD_MAIL, NULL},
        {"MAIL", CMD_MAIL, NULL},
        {"MAIL FROM :<a@b>", CMD_MAIL, NULL},
        {"RCPT TO:<x@y>", CMD_RCPT, "<x@y>"},
        {"rcpt to:<x@y> NOTIFY=NEVER", CMD_RCPT, "<x@y> NOTIFY=NEVER"},
        {"RCPT FROM:<x@y>", CMD_RCPT, NULL},
        {"DATA", CMD_DATA, ""},
        {"data ", CMD_DATA, ""},
        {"RSET", CMD_RSET, ""},
        {"NOOP hello", CMD_NOOP, "hello"},
        {"NOOPX", CMD_UNKNOWN, ""},
        {"QUIT", CMD_QUIT, ""},
        {"HELP me", CMD_HELP, "me"},
        {"VRFY joe", CMD_VRFY, "joe"},
        {"EXPN list", CMD_EXPN, "list"},
        {"StartTLS", CMD_STARTTLS, ""},
        {"AUTH PLAIN AGZvbwBiYXI=", CMD_AUTH, "PLAIN AGZvbwBiYXI="},
        {"BDAT 100 LAST", CMD_BDAT, "100 LAST"},
        {"ETRN example.com", CMD_ETRN, "example.com"},
        {"TURN", CMD_TURN, ""},
        {"XCLIENT ADDR=1.2.3.4", CMD_XCLIENT, "ADDR=1.2.3.4"},
        {"XFORWARD NAME=x", CMD_XFORWARD, "NAME=x"},
        {"FOO bar", CMD_UNKNOWN, "bar"},
        {"", CMD_UNKNOWN, ""},
        {"HEL", CMD_UNKNOWN, ""},
        {"HELOO x", CMD_UNKNOWN, "x"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct cmd c;

        cmd_parse(t[i].line, strlen(t[i].line), &c);
        if (c.verb != t[i].verb)
            fail_msg("'%s': got verb %s, want %s", t[i].line, cmd_verb_name(c.verb),
                     cmd_verb_name(t[i].verb));
        if (t[i].arg == NULL) {
            if (c.arg != NULL)
                fail_msg("'%s': got arg '%.*s', want NULL", t[i].line, (int)c.arg_len, c.arg);
            continue;
        }
        if (c.arg == NULL || c.arg_len != strlen(t[i].arg) ||
            memcmp(c.arg, t[i].arg, c.arg_len) != 0)
            fail_msg("'%s': got arg '%.*s', want '%s'", t[i].line, c.arg ? (int)c.arg_len : 4,
                     c.arg ? c.arg : "NULL", t[i].arg);
        assert_false(c.has_nul);
        assert_false(c.has_8bit);
    }
}

static void test_parse_flags(void **state)
{
    struct cmd c;

    (void)state;
    cmd_parse(S("NOOP a\0b"), &c);
    assert_int_equal(c.verb, CMD_NOOP);
    assert_true(c.has_nul);
    assert_int_equal(c.arg_len, 3);
    cmd_parse(S("RCPT TO:<j\xc3\xb6rg@example.com>"), &c);
    assert_int_equal(c.verb, CMD_RCPT);
    assert_true(c.has_8bit);
    assert_false(c.has_nul);
    assert_string_equal(cmd_verb_name(CMD_STARTTLS), "STARTTLS");
    assert_string_equal(cmd_verb_name(CMD_UNKNOWN), "UNKNOWN");
    assert_string_equal(cmd_verb_name(CMD_VERB_COUNT), "?");
}

/* ---- cmd_parse_mailrcpt -------------------------------------------- */

struct mr_case {
    const char *arg;
    bool rcpt;
    enum cmd_path_err want;
    const char *addr; /* expected addr when OK */
};

static void test_mailrcpt_paths(void **state)
{
    static const struct mr_case t[] = {
        {"<a@b>", false, CMD_PATH_OK, "a@b"},
        {"<user@example.com>", true, CMD_PATH_OK, "user@example.com"},
        {"<>", false, CMD_PATH_OK, ""},
        {"<>", true, CMD_PATH_NULL_RCPT, NULL},
        {"<@a,@b.c:user@d>", false, CMD_PATH_OK, "user@d"},
        {"<@a:user@d>", true, CMD_PATH_OK, "user@d"},
        {"<@a,b:user@d>", true, CMD_PATH_SYNTAX, NULL},
        {"<@:user@d>", true, CMD_PATH_SYNTAX, NULL},
        {"<\"john doe\"@example.com>", false, CMD_PATH_OK, "\"john doe\"@example.com"},
        {"<\"a>b\"@example.com>", false, CMD_PATH_OK, "\"a>b\"@example.com"},
        {"<\"a\\\"b\"@example.com>", false, CMD_PATH_OK, "\"a\\\"b\"@example.com"},
        {"<\"unterminated@example.com>", false, CMD_PATH_SYNTAX, NULL},
        {"<first.last+tag@sub.example.co.uk>", true, CMD_PATH_OK,
         "first.last+tag@sub.example.co.uk"},
        {"<a@[1.2.3.4]>", true, CMD_PATH_OK, "a@[1.2.3.4]"},
        {"<a@[IPv6:2001:db8::1]>", true, CMD_PATH_OK, "a@[IPv6:2001:db8::1]"},
        {"<a@[ipv6:::1]>", true, CMD_PATH_OK, "a@[ipv6:::1]"},
        {"<a@[IPv6:2001:db8::zz]>", true, CMD_PATH_SYNTAX, NULL},
        {"<a@[1.2.3.256]>", true, CMD_PATH_SYNTAX, NULL},
        {"<a@[1.2.3]>", true, CMD_PATH_SYNTAX, NULL},
        {"<a@[tag:foo]>", true, CMD_PATH_SYNTAX, NULL},
        {"<postmaster>", true, CMD_PATH_OK, "postmaster"},
        {"<PostMaster>", true, CMD_PATH_OK, "PostMaster"},
        {"<postmaster>", false, CMD_PATH_SYNTAX, NULL},
        {"<postmaster@example.com>", true, CMD_PATH_OK, "postmaster@example.com"},
        {"a@b", false, CMD_PATH_SYNTAX, NULL},
        {"", false, CMD_PATH_SYNTAX, NULL},
        {"<a@b", false, CMD_PATH_SYNTAX, NULL},
        {"<a@b>x", false, CMD_PATH_SYNTAX, NULL},
        {"<a>", false, CMD_PATH_SYNTAX, NULL},
        {"<@b>", false, CMD_PATH_SYNTAX, NULL},
        {"<a@>", false, CMD_PATH_SYNTAX, NULL},
        {"<a..b@c>", false, CMD_PATH_SYNTAX, NULL},
        {"<.a@c>", false, CMD_PATH_SYNTAX, NULL},
        {"<a.@c>", false, CMD_PATH_SYNTAX, NULL},
        {"<a@b..c>", false, CMD_PATH_SYNTAX, NULL},
        {"<a@b.>", false, CMD_PATH_SYNTAX, NULL},
        {"<a@-b.c>", false, CMD_PATH_SYNTAX, NULL},
        {"<a@b-.c>", false, CMD_PATH_SYNTAX, NULL},
        {"<a@b_c.d>", false, CMD_PATH_SYNTAX, NULL},
        {"<a b@c>", false, CMD_PATH_SYNTAX, NULL},
        {"<a@b@c>", false, CMD_PATH_SYNTAX, NULL},
        {"<a@b>   ", false, CMD_PATH_OK, "a@b"},
        {"<j\xc3\xb6rg@b\xc3\xbc" "cher.example>", false, CMD_PATH_OK,
         "j\xc3\xb6rg@b\xc3\xbc" "cher.example"},
        {"<j\xff@b>", false, CMD_PATH_SYNTAX, NULL},       /* not UTF-8 */
        {"<j\xc3@b>", false, CMD_PATH_SYNTAX, NULL},       /* truncated */
        {"<j\xc0\xaf@b>", false, CMD_PATH_SYNTAX, NULL},   /* overlong */
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct cmd_path p;
        struct cmd_params pr;
        const char *why = NULL;
        enum cmd_path_err e =
            cmd_parse_mailrcpt(t[i].arg, strlen(t[i].arg), t[i].rcpt, &p, &pr, &why);

        if (e != t[i].want)
            fail_msg("case %zu '%s': got %d (%s), want %d", i, t[i].arg, e, why, t[i].want);
        assert_non_null(why);
        if (e == CMD_PATH_OK) {
            assert_string_equal(p.addr, t[i].addr);
            assert_int_equal(p.addr_len, strlen(t[i].addr));
            assert_int_equal(p.null_path, t[i].addr[0] == '\0');
        }
    }
}

static void test_mailrcpt_flags_and_lengths(void **state)
{
    struct cmd_path p;
    struct cmd_params pr;
    const char *why;
    char arg[1024];
    int n;

    (void)state;
    assert_int_equal(cmd_parse_mailrcpt(S("<PostMaster>"), true, &p, &pr, &why), CMD_PATH_OK);
    assert_true(p.postmaster);
    assert_int_equal(cmd_parse_mailrcpt(S("<postmaster@x.y>"), true, &p, &pr, &why),
                     CMD_PATH_OK);
    assert_false(p.postmaster);
    assert_int_equal(cmd_parse_mailrcpt(S("<\xc3\xa9@x.y>"), false, &p, &pr, &why), CMD_PATH_OK);
    assert_true(p.utf8);
    assert_int_equal(cmd_parse_mailrcpt(S("<e@x.y>"), false, &p, &pr, &why), CMD_PATH_OK);
    assert_false(p.utf8);
    assert_int_equal(cmd_parse_mailrcpt(NULL, 0, false, &p, &pr, &why), CMD_PATH_SYNTAX);

    /* local part: 64 ok, 65 too long */
    n = snprintf(arg, sizeof(arg), "<%.*s@x.y>", 64, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_int_equal(cmd_parse_mailrcpt(arg, (size_t)n, false, &p, &pr, &why), CMD_PATH_OK);
    n = snprintf(arg, sizeof(arg), "<%.*s@x.y>", 65, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_int_equal(cmd_parse_mailrcpt(arg, (size_t)n, false, &p, &pr, &why),
                     CMD_PATH_TOO_LONG);
    /* domain: 255 ok (labels of 63), 256 too long */
    {
        char dom[300];
        size_t dl = 0;

        while (dl < 255) {
            size_t k = 255 - dl >= 64 ? 63 : 255 - dl;
            memset(dom + dl, 'd', k);
            dl += k;
            if (dl < 255)
                dom[dl++] = '.';
        }
        dom[dl] = '\0';
        assert_int_equal(strlen(dom), 255);
        n = snprintf(arg, sizeof(arg), "<u@%s>", dom);
        assert_int_equal(cmd_parse_mailrcpt(arg, (size_t)n, true, &p, &pr, &why), CMD_PATH_OK);
        assert_int_equal(p.addr_len, 257);
        n = snprintf(arg, sizeof(arg), "<u@x.%s>", dom);
        assert_int_equal(cmd_parse_mailrcpt(arg, (size_t)n, true, &p, &pr, &why),
                         CMD_PATH_TOO_LONG);
        assert_string_equal(why, "address too long");
    }
    /* label over 63 octets */
    n = snprintf(arg, sizeof(arg), "<u@%.*s.com>", 64, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    assert_int_equal(cmd_parse_mailrcpt(arg, (size_t)n, true, &p, &pr, &why), CMD_PATH_SYNTAX);
}

struct param_case {
    const char *arg;
    bool rcpt;
    enum cmd_path_err want;
    const char *bad; /* expected bad_param token, if an error */
};

static void test_mailrcpt_params(void **state)
{
    static const struct param_case t[] = {
        {"<a@b> SIZE=10", false, CMD_PATH_OK, NULL},
        {"<a@b> size=0", false, CMD_PATH_OK, NULL},
        {"<a@b> SIZE=18446744073709551615", false, CMD_PATH_OK, NULL},
        {"<a@b> SIZE=18446744073709551616", false, CMD_PATH_PARAM, "SIZE=18446744073709551616"},
        {"<a@b> SIZE=1x", false, CMD_PATH_PARAM, "SIZE=1x"},
        {"<a@b> SIZE=", false, CMD_PATH_PARAM, "SIZE="},
        {"<a@b> SIZE", false, CMD_PATH_PARAM, "SIZE"},
        {"<a@b> SIZE=1 SIZE=2", false, CMD_PATH_PARAM_DUP, "SIZE=2"},
        {"<a@b> BODY=8BITMIME", false, CMD_PATH_OK, NULL},
        {"<a@b> body=7bit", false, CMD_PATH_OK, NULL},
        {"<a@b> BODY=BINARYMIME", false, CMD_PATH_OK, NULL},
        {"<a@b> BODY=9BIT", false, CMD_PATH_PARAM, "BODY=9BIT"},
        {"<a@b> SMTPUTF8", false, CMD_PATH_OK, NULL},
        {"<a@b> SMTPUTF8=yes", false, CMD_PATH_PARAM, "SMTPUTF8=yes"},
        {"<a@b> RET=FULL", false, CMD_PATH_OK, NULL},
        {"<a@b> RET=hdrs", false, CMD_PATH_OK, NULL},
        {"<a@b> RET=ALL", false, CMD_PATH_PARAM, "RET=ALL"},
        {"<a@b> ENVID=QQ314159+2B", false, CMD_PATH_OK, NULL},
        {"<a@b> ENVID=a+2", false, CMD_PATH_PARAM, "ENVID=a+2"},
        {"<a@b> ENVID=a+ZZ", false, CMD_PATH_PARAM, "ENVID=a+ZZ"},
        {"<a@b> AUTH=<>", false, CMD_PATH_OK, NULL},
        {"<a@b> AUTH=joe+40example.com", false, CMD_PATH_OK, NULL},
        {"<a@b> AUTH=<x>", false, CMD_PATH_OK, NULL}, /* '<' '>' are xchars */
        {"<a@b> NOTIFY=NEVER", false, CMD_PATH_PARAM, "NOTIFY=NEVER"},
        {"<a@b> ORCPT=rfc822;a@b", false, CMD_PATH_PARAM, "ORCPT=rfc822;a@b"},
        {"<a@b> FOO=bar", false, CMD_PATH_PARAM, "FOO=bar"},
        {"<a@b> SIZE=1 FOO", false, CMD_PATH_PARAM, "FOO"},
        {"<a@b>  SIZE=1   BODY=8BITMIME  ", false, CMD_PATH_OK, NULL},
        {"<x@y> NOTIFY=NEVER", true, CMD_PATH_OK, NULL},
        {"<x@y> NOTIFY=SUCCESS,FAILURE,DELAY", true, CMD_PATH_OK, NULL},
        {"<x@y> notify=delay", true, CMD_PATH_OK, NULL},
        {"<x@y> NOTIFY=NEVER,SUCCESS", true, CMD_PATH_PARAM, "NOTIFY=NEVER,SUCCESS"},
        {"<x@y> NOTIFY=SUCCESS,", true, CMD_PATH_PARAM, "NOTIFY=SUCCESS,"},
        {"<x@y> NOTIFY=SOMETIMES", true, CMD_PATH_PARAM, "NOTIFY=SOMETIMES"},
        {"<x@y> ORCPT=rfc822;x+40y", true, CMD_PATH_OK, NULL},
        {"<x@y> ORCPT=utf-8;x@y", true, CMD_PATH_OK, NULL},
        {"<x@y> ORCPT=rfc822", true, CMD_PATH_PARAM, "ORCPT=rfc822"},
        {"<x@y> ORCPT=;x@y", true, CMD_PATH_PARAM, "ORCPT=;x@y"},
        {"<x@y> ORCPT=rfc822;", true, CMD_PATH_PARAM, "ORCPT=rfc822;"},
        {"<x@y> ORCPT=a;b ORCPT=a;b", true, CMD_PATH_PARAM_DUP, "ORCPT=a;b"},
        {"<x@y> SIZE=10", true, CMD_PATH_PARAM, "SIZE=10"},
        {"<x@y> RET=FULL", true, CMD_PATH_PARAM, "RET=FULL"},
        {"<x@y> BODY=8BITMIME", true, CMD_PATH_PARAM, "BODY=8BITMIME"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct cmd_path p;
        struct cmd_params pr;
        const char *why = NULL, *bad = NULL;
        size_t bad_len = 0;
        enum cmd_path_err e = cmd_parse_mailrcpt_ex(t[i].arg, strlen(t[i].arg), t[i].rcpt, &p,
                                                    &pr, &why, &bad, &bad_len);

        if (e != t[i].want)
            fail_msg("case %zu '%s': got %d (%s), want %d", i, t[i].arg, e, why, t[i].want);
        if (t[i].bad != NULL) {
            if (bad == NULL || bad_len != strlen(t[i].bad) || memcmp(bad, t[i].bad, bad_len))
                fail_msg("case %zu: got bad '%.*s', want '%s'", i, bad ? (int)bad_len : 4,
                         bad ? bad : "NULL", t[i].bad);
        } else {
            assert_null(bad);
        }
    }
}

static void test_mailrcpt_param_values(void **state)
{
    struct cmd_path p;
    struct cmd_params pr;
    const char *why;
    const char *mail = "<a@b> SIZE=12345 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc+2Bd AUTH=<>";
    const char *rcpt = "<x@y> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x+40y";

    (void)state;
    assert_int_equal(cmd_parse_mailrcpt(mail, strlen(mail), false, &p, &pr, &why), CMD_PATH_OK);
    assert_string_equal(why, "ok");
    assert_true(pr.has_size);
    assert_int_equal(pr.size, 12345);
    assert_int_equal(pr.body, CMD_BODY_8BITMIME);
    assert_true(pr.smtputf8);
    assert_int_equal(pr.ret, CMD_RET_HDRS);
    assert_int_equal(pr.envid_len, 7);
    assert_memory_equal(pr.envid, "abc+2Bd", 7);
    assert_int_equal(pr.auth_len, 2);
    assert_memory_equal(pr.auth, "<>", 2);
    assert_int_equal(pr.notify, 0);

    assert_int_equal(cmd_parse_mailrcpt(rcpt, strlen(rcpt), true, &p, &pr, &why), CMD_PATH_OK);
    assert_int_equal(pr.notify, CMD_NOTIFY_FAILURE | CMD_NOTIFY_DELAY);
    assert_int_equal(pr.orcpt_len, strlen("rfc822;x+40y"));
    assert_memory_equal(pr.orcpt, "rfc822;x+40y", pr.orcpt_len);
    assert_false(pr.has_size);

    /* ENVID: 100 decoded characters ok, 101 not. */
    {
        char arg[512];
        int n;

        n = snprintf(arg, sizeof(arg), "<a@b> ENVID=%0100d", 0);
        assert_int_equal(cmd_parse_mailrcpt(arg, (size_t)n, false, &p, &pr, &why), CMD_PATH_OK);
        n = snprintf(arg, sizeof(arg), "<a@b> ENVID=%0101d", 0);
        assert_int_equal(cmd_parse_mailrcpt(arg, (size_t)n, false, &p, &pr, &why),
                         CMD_PATH_PARAM);
        assert_string_equal(why, "bad ENVID value");
    }
    /* A failure leaves nothing half-parsed behind. */
    assert_int_equal(cmd_parse_mailrcpt(S("<a@b> SIZE=5 BODY=x"), false, &p, &pr, &why),
                     CMD_PATH_PARAM);
    assert_false(pr.has_size);
    assert_string_equal(why, "bad BODY value");
}

static void test_mailbox_and_helo(void **state)
{
    static const struct {
        const char *addr;
        bool utf8;
        bool want;
    } mb[] = {
        {"a@b", false, true},
        {"\"x y\"@b.c", false, true},
        {"a@[10.0.0.1]", false, true},
        {"<a@b>", false, false},
        {"a", false, false},
        {"a@b c", false, false},
        {"\xc3\xa9@b", false, false},
        {"\xc3\xa9@b", true, true},
        {"a@\xc3\xa9.com", true, true},
        {"", false, false},
    };
    static const struct {
        const char *arg;
        bool want;
    } helo[] = {
        {"mx.example.com", true}, {"[1.2.3.4]", true}, {"localhost", true},
        {"", false},              {"a b", false},      {"a\tb", false},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(mb) / sizeof(mb[0]); i++) {
        if (cmd_mailbox_valid(mb[i].addr, strlen(mb[i].addr), mb[i].utf8) != mb[i].want)
            fail_msg("mailbox '%s' utf8=%d: got %d", mb[i].addr, mb[i].utf8, !mb[i].want);
    }
    for (i = 0; i < sizeof(helo) / sizeof(helo[0]); i++) {
        if (cmd_helo_valid(helo[i].arg, strlen(helo[i].arg)) != helo[i].want)
            fail_msg("helo '%s': got %d", helo[i].arg, !helo[i].want);
    }
    assert_false(cmd_helo_valid(NULL, 0));
}

/* A path embedded in a full line goes through cmd_parse first. */
static void test_line_to_path(void **state)
{
    struct cmd c;
    struct cmd_path p;
    struct cmd_params pr;
    const char *why;

    (void)state;
    cmd_parse(S("mail from: <a@b.c>  SIZE=99  "), &c);
    assert_int_equal(c.verb, CMD_MAIL);
    assert_int_equal(cmd_parse_mailrcpt(c.arg, c.arg_len, false, &p, &pr, &why), CMD_PATH_OK);
    assert_string_equal(p.addr, "a@b.c");
    assert_int_equal(pr.size, 99);
}

/* BDAT's argument as cmd_parse leaves it: got X, want (ok, size, last). */
static void test_bdat_args(void **state)
{
    static const struct {
        const char *arg;
        bool ok;
        uint64_t size;
        bool last;
    } cases[] = {
        {"0", true, 0, false},
        {"0 LAST", true, 0, true},
        {"100 LAST", true, 100, true},
        {"100 last", true, 100, true},
        {"100 LaSt", true, 100, true},
        {"100   LAST", true, 100, true},
        {"007", true, 7, false},
        {"1", true, 1, false},
        {"9999999999999999999", true, 9999999999999999999ull, false}, /* 19 digits */
        {"18446744073709551615 LAST", false, 0, false},               /* 20 digits */
        {"99999999999999999999", false, 0, false},
        {"", false, 0, false},
        {"LAST", false, 0, false},
        {"-1", false, 0, false},
        {"+1", false, 0, false},
        {"1x", false, 0, false},
        {"10LAST", false, 0, false},
        {"10 LASTX", false, 0, false},
        {"10 LAS", false, 0, false},
        {"10 FIRST", false, 0, false},
        {"10 LAST x", false, 0, false},
        {"10\tLAST", false, 0, false},
        {" 10", false, 0, false},
        {"0x10", false, 0, false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t size = 12345;
        bool last = true;
        bool ok = cmd_parse_bdat(cases[i].arg, strlen(cases[i].arg), &size, &last);
        if (ok != cases[i].ok || size != cases[i].size || last != cases[i].last)
            fail_msg("BDAT %s: got ok=%d size=%llu last=%d", cases[i].arg, ok,
                     (unsigned long long)size, last);
    }
    /* Through cmd_parse, as the session sees it (trailing spaces dropped). */
    struct cmd c;
    uint64_t size;
    bool last;
    cmd_parse(S("bdat 42 last  "), &c);
    assert_int_equal(c.verb, CMD_BDAT);
    assert_true(cmd_parse_bdat(c.arg, c.arg_len, &size, &last));
    assert_true(size == 42 && last);
    assert_false(cmd_parse_bdat(NULL, 0, &size, &last));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_table),     cmocka_unit_test(test_reader_bytewise_discard),
        cmocka_unit_test(test_parse_table),      cmocka_unit_test(test_parse_flags),
        cmocka_unit_test(test_mailrcpt_paths),   cmocka_unit_test(test_mailrcpt_flags_and_lengths),
        cmocka_unit_test(test_mailrcpt_params),  cmocka_unit_test(test_mailrcpt_param_values),
        cmocka_unit_test(test_mailbox_and_helo), cmocka_unit_test(test_line_to_path),
        cmocka_unit_test(test_bdat_args),
    };

    return cmocka_run_group_tests_name("smtp_cmd", tests, NULL, NULL);
}
