/* SPDX-License-Identifier: GPL-2.0-or-later */
/* milter_codec: encoders byte for byte, every reply decoded, every
 * malformed reply refused, the reader split anywhere, SMTP reply texts,
 * option negotiation, and the constants against libmilter's headers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "milter_codec.h"

#if defined(__has_include)
#if __has_include(<libmilter/mfapi.h>)
#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>
#define HAVE_LIBMILTER 1
#endif
#endif

/* A byte string literal with its length (may hold NUL). */
#define B(s) s, sizeof(s) - 1

static void assert_bytes(const struct pstr *got, const char *want, size_t want_len)
{
    if (got->len != want_len || memcmp(got->ptr, want, want_len) != 0) {
        fprintf(stderr, "got %zu bytes:", got->len);
        for (size_t i = 0; i < got->len; i++)
            fprintf(stderr, " %02x", (unsigned char)got->ptr[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(got->len, want_len);
    assert_memory_equal(got->ptr, want, want_len);
}

/* ---- encoders ----------------------------------------------------------- */

static void test_put_optneg(void **state)
{
    (void)state;
    struct pstr out = PSTR_INIT;
    assert_int_equal(milter_put_optneg(&out, 6, MILTER_ACT_ALL, MILTER_STEP_ALL), 0);
    assert_bytes(&out, B("\0\0\0\x0d"
                         "O"
                         "\0\0\0\x06"
                         "\0\0\x01\xff"
                         "\0\x1f\xff\xff"));
    assert_int_equal(milter_put_optneg(&out, 1, MILTER_ACT_ALL, MILTER_STEP_ALL), -EINVAL);
    assert_int_equal(milter_put_optneg(&out, 6, 0, MILTER_STEP_ALL), -EINVAL);
    assert_int_equal(milter_put_optneg(&out, 6, MILTER_ACT_ALL, 0), -EINVAL);
    assert_int_equal(out.len, 17);
    pstr_free(&out);
}

static void test_put_macro(void **state)
{
    (void)state;
    struct pstr out = PSTR_INIT;
    const struct milter_macro m[] = {{"j", "mx.example"}, {"{daemon_name}", ""}};
    assert_int_equal(milter_put_macro(&out, MILTER_CMD_CONNECT, m, 2), 0);
    assert_bytes(&out, B("\0\0\0\x1e"
                         "D"
                         "C"
                         "j\0mx.example\0"
                         "{daemon_name}\0\0"));
    pstr_clear(&out);
    assert_int_equal(milter_put_macro(&out, MILTER_CMD_EOM, m, 0), 0);
    assert_int_equal(out.len, 0);

    const struct milter_macro empty[] = {{"", "x"}};
    assert_int_equal(milter_put_macro(&out, MILTER_CMD_RCPT, empty, 1), -EINVAL);
    assert_int_equal(milter_put_macro(&out, MILTER_CMD_ABORT, m, 1), -EINVAL);
    assert_int_equal(milter_put_macro(&out, MILTER_CMD_BODY, m, 1), -EINVAL);
    /* Stage byte + "j\0" + value + NUL: 65535 fits, one more does not. */
    char *big = calloc(65532, 1);
    memset(big, 'v', 65531);
    const struct milter_macro fits[] = {{"j", big}};
    assert_int_equal(milter_put_macro(&out, MILTER_CMD_HELO, fits, 1), 0);
    assert_int_equal(out.len, 5 + 65535);
    pstr_clear(&out);
    big[65531] = 'v';
    big = realloc(big, 65533);
    big[65532] = '\0';
    const struct milter_macro over[] = {{"j", big}};
    assert_int_equal(milter_put_macro(&out, MILTER_CMD_HELO, over, 1), -EMSGSIZE);
    assert_int_equal(out.len, 0);
    free(big);
    pstr_free(&out);
}

static void test_put_connect(void **state)
{
    (void)state;
    struct pstr out = PSTR_INIT;
    assert_int_equal(milter_put_connect(&out, "mail.example", MILTER_FAMILY_INET, 25, "192.0.2.1"),
                     0);
    assert_bytes(&out, B("\0\0\0\x1b"
                         "C"
                         "mail.example\0"
                         "4"
                         "\0\x19"
                         "192.0.2.1\0"));
    pstr_clear(&out);
    assert_int_equal(milter_put_connect(&out, "h", MILTER_FAMILY_INET6, 587, "2001:db8::1"), 0);
    assert_bytes(&out, B("\0\0\0\x12"
                         "C"
                         "h\0"
                         "6"
                         "\x02\x4b"
                         "2001:db8::1\0"));
    pstr_clear(&out);
    assert_int_equal(milter_put_connect(&out, "localhost", MILTER_FAMILY_UNIX, 0, "/run/s"), 0);
    assert_bytes(&out, B("\0\0\0\x15"
                         "C"
                         "localhost\0"
                         "L"
                         "\0\0"
                         "/run/s\0"));
    pstr_clear(&out);
    assert_int_equal(milter_put_connect(&out, "unknown", MILTER_FAMILY_UNKNOWN, 0, NULL), 0);
    assert_bytes(&out, B("\0\0\0\x0a"
                         "C"
                         "unknown\0"
                         "U"));
    pstr_clear(&out);

    char path[109];
    memset(path, 'p', sizeof path - 1);
    path[108] = '\0';
    static const struct {
        enum milter_family family;
        uint16_t port;
        const char *address;
    } bad[] = {
        {MILTER_FAMILY_INET, 25, "300.1.1.1"}, {MILTER_FAMILY_INET, 25, "::1"},
        {MILTER_FAMILY_INET, 25, NULL},        {MILTER_FAMILY_INET6, 25, "IPv6:::1"},
        {MILTER_FAMILY_INET6, 25, "1.2.3.4"},  {MILTER_FAMILY_UNIX, 0, ""},
        {MILTER_FAMILY_UNIX, 1, "/run/s"},     {(enum milter_family)'X', 0, "x"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(milter_put_connect(&out, "h", bad[i].family, bad[i].port, bad[i].address),
                         -EINVAL);
    assert_int_equal(milter_put_connect(&out, "h", MILTER_FAMILY_UNIX, 0, path), -EINVAL);
    path[107] = '\0'; /* 107 bytes + NUL fill libmilter's sun_path */
    assert_int_equal(milter_put_connect(&out, "h", MILTER_FAMILY_UNIX, 0, path), 0);
    pstr_free(&out);
}

static void test_put_helo_unknown(void **state)
{
    (void)state;
    struct pstr out = PSTR_INIT;
    assert_int_equal(milter_put_helo(&out, "client.example"), 0);
    assert_int_equal(milter_put_unknown(&out, "XFOO bar"), 0);
    assert_bytes(&out, B("\0\0\0\x10"
                         "H"
                         "client.example\0"
                         "\0\0\0\x0a"
                         "U"
                         "XFOO bar\0"));
    pstr_free(&out);
}

static void test_put_envelope(void **state)
{
    (void)state;
    struct pstr out = PSTR_INIT;
    const char *from_args[] = {"SIZE=100", "BODY=8BITMIME"};
    const char *rcpt_args[] = {"NOTIFY=NEVER"};
    assert_int_equal(milter_put_envfrom(&out, "<a@b.example>", from_args, 2), 0);
    assert_int_equal(milter_put_envrcpt(&out, "<c@d.example>", rcpt_args, 1), 0);
    assert_int_equal(milter_put_envfrom(&out, "<>", NULL, 0), 0);
    assert_bytes(&out, B("\0\0\0\x26"
                         "M"
                         "<a@b.example>\0SIZE=100\0BODY=8BITMIME\0"
                         "\0\0\0\x1c"
                         "R"
                         "<c@d.example>\0NOTIFY=NEVER\0"
                         "\0\0\0\x04"
                         "M"
                         "<>\0"));
    size_t before = out.len;
    const char *empty_arg[] = {""};
    assert_int_equal(milter_put_envfrom(&out, "", NULL, 0), -EINVAL);
    assert_int_equal(milter_put_envrcpt(&out, "<x@y>", empty_arg, 1), -EINVAL);
    assert_int_equal(out.len, before);
    pstr_free(&out);
}

static void test_put_bare(void **state)
{
    (void)state;
    struct pstr out = PSTR_INIT;
    assert_int_equal(milter_put_data(&out), 0);
    assert_int_equal(milter_put_eoh(&out), 0);
    assert_int_equal(milter_put_eom(&out), 0);
    assert_int_equal(milter_put_abort(&out), 0);
    assert_int_equal(milter_put_quit(&out), 0);
    assert_int_equal(milter_put_quit_nc(&out), 0);
    assert_bytes(&out, B("\0\0\0\x01T\0\0\0\x01N\0\0\0\x01"
                         "E\0\0\0\x01"
                         "A\0\0\0\x01Q\0\0\0\x01K"));
    pstr_free(&out);
}

static void test_put_header(void **state)
{
    (void)state;
    struct pstr out = PSTR_INIT;
    assert_int_equal(milter_put_header(&out, B("Subject"), B("hi")), 0);
    assert_int_equal(milter_put_header(&out, B("X-F"), B("a\n\tb")), 0);
    assert_int_equal(milter_put_header(&out, B("X-E"), B("")), 0);
    assert_bytes(&out, B("\0\0\0\x0c"
                         "L"
                         "Subject\0hi\0"
                         "\0\0\0\x0a"
                         "L"
                         "X-F\0a\n\tb\0"
                         "\0\0\0\x06"
                         "L"
                         "X-E\0\0"));
    size_t before = out.len;
    assert_int_equal(milter_put_header(&out, B("X"), B("a\0b")), -EINVAL);
    assert_int_equal(milter_put_header(&out, B("X\0Y"), B("v")), -EINVAL);
    assert_int_equal(milter_put_header(&out, B(""), B("v")), -EINVAL);
    /* name NUL + value NUL: 65535 in all fits, 65536 does not. */
    char *v = malloc(65533);
    memset(v, 'v', 65533);
    assert_int_equal(milter_put_header(&out, "X", 1, v, 65533), -EMSGSIZE);
    assert_int_equal(out.len, before);
    assert_int_equal(milter_put_header(&out, "X", 1, v, 65532), 0);
    assert_int_equal(out.len, before + 5 + 65535);
    free(v);
    pstr_free(&out);
}

static void test_put_body(void **state)
{
    (void)state;
    struct pstr out = PSTR_INIT;
    assert_int_equal(milter_put_body(&out, B("a\0b\r\n")), 0);
    assert_bytes(&out, B("\0\0\0\x06"
                         "B"
                         "a\0b\r\n"));
    pstr_clear(&out);
    char *chunk = calloc(65536, 1);
    assert_int_equal(milter_put_body(&out, chunk, 0), -EINVAL);
    assert_int_equal(milter_put_body(&out, chunk, 65536), -EMSGSIZE);
    assert_int_equal(out.len, 0);
    assert_int_equal(milter_put_body(&out, chunk, 65535), 0);
    assert_int_equal(out.len, 5 + 65535);
    assert_memory_equal(out.ptr,
                        "\0\x01\0\0"
                        "B",
                        5);
    free(chunk);
    pstr_free(&out);
}

/* ---- decoding ------------------------------------------------------------ */

/* A reply rendered as text: enough to compare two decodings. */
static void digest(struct pstr *d, const struct milter_reply *r)
{
    pstr_printf(d, "%c", (char)r->type);
    switch (r->type) {
    case MILTER_REPLY_OPTNEG:
        pstr_printf(d, " %u %#x %#x %zu", (unsigned)r->optneg.version, (unsigned)r->optneg.actions,
                    (unsigned)r->optneg.steps, r->optneg.macros_len);
        pstr_append(d, (const char *)r->optneg.macros, r->optneg.macros_len);
        break;
    case MILTER_REPLY_REPLYCODE:
    case MILTER_REPLY_QUARANTINE:
        pstr_printf(d, " [%s]", r->text);
        break;
    case MILTER_REPLY_ADDHEADER:
    case MILTER_REPLY_INSHEADER:
    case MILTER_REPLY_CHGHEADER:
        pstr_printf(d, " %u [%s] [%s]", (unsigned)r->header.index, r->header.name, r->header.value);
        break;
    case MILTER_REPLY_CHGFROM:
    case MILTER_REPLY_ADDRCPT:
    case MILTER_REPLY_ADDRCPT_PAR:
    case MILTER_REPLY_DELRCPT:
        pstr_printf(d, " [%s] %s%s", r->env.addr, r->env.args ? "+" : "-",
                    r->env.args ? r->env.args : "");
        break;
    case MILTER_REPLY_REPLBODY:
        pstr_printf(d, " %zu ", r->body.len);
        pstr_append(d, (const char *)r->body.data, r->body.len);
        break;
    case MILTER_REPLY_SETSYMLIST:
        pstr_printf(d, " %d [%s]", (int)r->symlist.stage, r->symlist.names);
        break;
    default:
        break;
    }
    pstr_putc(d, '\n');
}

/* Feed in[0..len) in pieces of `step` bytes (split at `at` when step is 0),
 * draining after each; the digests of the replies, then "E:" + the error. */
static void run_reader(const char *in, size_t len, size_t step, size_t at, struct pstr *d)
{
    struct milter_reader r;
    struct milter_reply rep;
    milter_reader_init(&r);
    for (size_t off = 0; off < len;) {
        size_t n = step ? (len - off < step ? len - off : step) : (off < at ? at : len - off);
        milter_reader_feed(&r, in + off, n);
        off += n;
        int rc;
        while ((rc = milter_reader_next(&r, &rep)) == 1)
            digest(d, &rep);
        if (rc < 0)
            break;
    }
    if (milter_reader_error(&r)) {
        pstr_printf(d, "E:%s\n", milter_reader_error(&r));
        assert_int_equal(milter_reader_next(&r, &rep), -EPROTO);
    } else if (!milter_reader_idle(&r)) {
        pstr_puts(d, "partial\n");
    }
    milter_reader_free(&r);
}

/* Append a packet: length word, command byte, payload. */
static void add_pkt(struct pstr *s, char cmd, const char *payload, size_t len)
{
    unsigned char w[4] = {(unsigned char)((len + 1) >> 24), (unsigned char)((len + 1) >> 16),
                          (unsigned char)((len + 1) >> 8), (unsigned char)(len + 1)};
    pstr_append(s, (const char *)w, 4);
    pstr_putc(s, cmd);
    pstr_append(s, payload, len);
}

/* One of each reply, in a row. */
static void all_replies(struct pstr *s)
{
    add_pkt(s, 'O',
            B("\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff"
              "\0\0\0\x01j {my}\0"
              "\0\0\0\x03k\0"));
    static const char bare[] = "cpsartd4f";
    for (const char *c = bare; *c; c++)
        add_pkt(s, *c, "", 0);
    add_pkt(s, 'y', B("550 5.7.1 Go away\r\n550 5.7.1 now\0"));
    add_pkt(s, 'h', B("X-Spam\0yes\0"));
    add_pkt(s, 'i', B("\0\0\0\0X-First\0a\n\tb\0"));
    add_pkt(s, 'm', B("\0\0\0\x02Subject\0\0"));
    add_pkt(s, 'e', B("<a@b>\0"));
    add_pkt(s, 'e', B("<a@b>\0SIZE=10\0"));
    add_pkt(s, '+', B("<c@d>\0"));
    add_pkt(s, '2', B("<c@d>\0NOTIFY=N\0"));
    add_pkt(s, '-', B("<e@f>\0"));
    add_pkt(s, 'b', B("ab\0c\r\n"));
    add_pkt(s, 'b', "", 0);
    add_pkt(s, 'q', B("suspicious\0"));
    add_pkt(s, 'q', B("\0"));
    add_pkt(s, 'l', B("\0\0\0\x02{mail_addr}\0"));
}

static const char all_digest[] = "O 6 0x1ff 0x1fffff 17\0\0\0\x01j {my}\0\0\0\0\x03k\0\n"
                                 "c\np\ns\na\nr\nt\nd\n4\nf\n"
                                 "y [550 5.7.1 Go away\r\n550 5.7.1 now]\n"
                                 "h 0 [X-Spam] [yes]\n"
                                 "i 0 [X-First] [a\n\tb]\n"
                                 "m 2 [Subject] []\n"
                                 "e [<a@b>] -\n"
                                 "e [<a@b>] +SIZE=10\n"
                                 "+ [<c@d>] -\n"
                                 "2 [<c@d>] +NOTIFY=N\n"
                                 "- [<e@f>] -\n"
                                 "b 6 ab\0c\r\n\n"
                                 "b 0 \n"
                                 "q [suspicious]\n"
                                 "q []\n"
                                 "l 2 [{mail_addr}]\n";

static void test_decode_every_reply(void **state)
{
    (void)state;
    struct pstr in = PSTR_INIT, d = PSTR_INIT;
    all_replies(&in);
    run_reader(in.ptr, in.len, 0, 0, &d);
    assert_int_equal(d.len, sizeof all_digest - 1);
    assert_memory_equal(d.ptr, all_digest, d.len);
    pstr_free(&in);
    pstr_free(&d);
}

/* Every split point, and byte by byte, give the same replies. */
static void test_reader_splits(void **state)
{
    (void)state;
    struct pstr in = PSTR_INIT, whole = PSTR_INIT, d = PSTR_INIT;
    all_replies(&in);
    run_reader(in.ptr, in.len, 0, 0, &whole);
    for (size_t at = 0; at <= in.len; at++) {
        pstr_clear(&d);
        run_reader(in.ptr, in.len, 0, at, &d);
        assert_int_equal(d.len, whole.len);
        assert_memory_equal(d.ptr, whole.ptr, d.len);
    }
    for (size_t step = 1; step <= 7; step++) {
        pstr_clear(&d);
        run_reader(in.ptr, in.len, step, 0, &d);
        assert_int_equal(d.len, whole.len);
        assert_memory_equal(d.ptr, whole.ptr, d.len);
    }
    pstr_free(&in);
    pstr_free(&whole);
    pstr_free(&d);
}

static void test_reader_partial_and_idle(void **state)
{
    (void)state;
    struct milter_reader r;
    struct milter_reply rep;
    milter_reader_init(&r);
    assert_true(milter_reader_idle(&r));
    assert_int_equal(milter_reader_next(&r, &rep), 0);
    milter_reader_feed(&r, B("\0\0\0\x03"));
    assert_false(milter_reader_idle(&r));
    assert_int_equal(milter_reader_next(&r, &rep), 0);
    milter_reader_feed(&r, B("h"));
    assert_int_equal(milter_reader_next(&r, &rep), 0);
    milter_reader_feed(&r, B("X\0"));
    assert_int_equal(milter_reader_next(&r, &rep), -EPROTO); /* no value */
    assert_string_equal(milter_reader_error(&r), "bad milter addheader reply: string missing");
    assert_true(milter_reader_idle(&r));
    /* Sticky: a good packet afterwards yields nothing. */
    milter_reader_feed(&r, B("\0\0\0\x01"
                             "c"));
    assert_int_equal(milter_reader_next(&r, &rep), -EPROTO);
    milter_reader_free(&r);

    /* A reply stays valid while more replies are taken out. */
    milter_reader_init(&r);
    milter_reader_feed(&r, B("\0\0\0\x05q1st\0\0\0\0\x05q2nd\0\0\0"));
    assert_int_equal(milter_reader_next(&r, &rep), 1);
    struct milter_reply second;
    assert_int_equal(milter_reader_next(&r, &second), 1);
    assert_string_equal(rep.text, "1st");
    assert_string_equal(second.text, "2nd");
    assert_int_equal(milter_reader_next(&r, &second), 0);
    assert_false(milter_reader_idle(&r));
    assert_null(milter_reader_error(&r));
    milter_reader_free(&r);
}

static void test_reader_limits(void **state)
{
    (void)state;
    struct milter_reader r;
    struct milter_reply rep;
    /* The largest packet the reader takes: MILTER_READ_MAX bytes of body. */
    size_t n = 5 + MILTER_READ_MAX;
    unsigned char *big = calloc(n, 1);
    big[1] = 0x01; /* 0x0001ffff = 1 + 131070 */
    big[2] = 0xff;
    big[3] = 0xff;
    big[4] = 'b';
    milter_reader_init(&r);
    milter_reader_feed(&r, big, n);
    assert_int_equal(milter_reader_next(&r, &rep), 1);
    assert_int_equal(rep.body.len, MILTER_READ_MAX);
    assert_true(milter_reader_idle(&r));
    milter_reader_free(&r);

    /* One more is refused as soon as the length is in. */
    milter_reader_init(&r);
    milter_reader_feed(&r, B("\0\x02\0\0"));
    assert_int_equal(milter_reader_next(&r, &rep), -EPROTO);
    assert_string_equal(milter_reader_error(&r), "milter packet length 131072 not in 1..131071");
    milter_reader_free(&r);
    free(big);
}

/* The reader's error for in[0..len), whole and byte by byte. */
static void expect_error(const char *in, size_t len, const char *before, const char *error)
{
    char want[200];
    snprintf(want, sizeof want, "%sE:%s\n", before, error);
    for (size_t step = 0; step < 2; step++) {
        struct pstr d = PSTR_INIT;
        run_reader(in, len, step, 0, &d);
        if (strcmp(pstr_cstr(&d), want) != 0)
            fprintf(stderr, "want %sgot %s\n", want, pstr_cstr(&d));
        assert_string_equal(pstr_cstr(&d), want);
        pstr_free(&d);
    }
}

static void test_reader_bad_frames(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *before; /* replies before the error */
        const char *error;
    } cases[] = {
        {B("\0\0\0\0"), "", "milter packet length 0 not in 1..131071"},
        {B("\xff\xff\xff\xff"), "", "milter packet length 4294967295 not in 1..131071"},
        {B("\0\0\0\x01Z"), "", "unknown milter reply command 0x5a"},
        {B("\0\0\0\x05\x80"), "", "unknown milter reply command 0x80"},
        {B("\0\0\0\x01\0"), "", "unknown milter reply command 0x00"},
        {B("\0\0\0\x01"
           "C"),
         "", "unknown milter reply command 0x43"},
        /* A good reply, then a bad frame: the reply comes out first. */
        {B("\0\0\0\x01"
           "c\0\0\0\0"),
         "c\n", "milter packet length 0 not in 1..131071"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_error(cases[i].in, cases[i].len, cases[i].before, cases[i].error);
}

static void test_reader_bad_payloads(void **state)
{
    (void)state;
    static const struct {
        char cmd;
        const char *payload;
        size_t len;
        const char *error;
    } cases[] = {
        {'a', B("x"), "bad milter accept reply: data after a reply that has none"},
        {'c', B("\0"), "bad milter continue reply: data after a reply that has none"},
        {'s', B("x"), "bad milter skip reply: data after a reply that has none"},
        {'p', B("x"), "bad milter progress reply: data after a reply that has none"},
        {'4', B("x"), "bad milter shutdown reply: data after a reply that has none"},
        {'O', B("\0\0\0\x06\0\0\0\x01\0\0\0"),
         "bad milter optneg reply: optneg shorter than 12 bytes"},
        {'y', B("550"), "bad milter replycode reply: string without NUL"},
        {'y', B(""), "bad milter replycode reply: string missing"},
        {'y', B("550\0x"), "bad milter replycode reply: string without NUL"},
        {'y', B("550\0x\0"), "bad milter replycode reply: data after the last string"},
        {'q', B("\0\0"), "bad milter quarantine reply: data after the last string"},
        {'q', B(""), "bad milter quarantine reply: string missing"},
        {'h', B("X\0"), "bad milter addheader reply: string missing"},
        {'h', B("X\0v"), "bad milter addheader reply: string without NUL"},
        {'h', B("\0v\0"),
         "bad milter addheader reply: header name empty or not printable ASCII without ':'"},
        {'h', B("X:Y\0\0"),
         "bad milter addheader reply: header name empty or not printable ASCII without ':'"},
        {'h', B("X Y\0\0"),
         "bad milter addheader reply: header name empty or not printable ASCII without ':'"},
        {'h', B("X\xc3\xa9\0\0"),
         "bad milter addheader reply: header name empty or not printable ASCII without ':'"},
        {'h', B("X\0a\nBcc: x\0"),
         "bad milter addheader reply: line break in a header value not followed by a blank"},
        {'h', B("X\0a\r\0"),
         "bad milter addheader reply: line break in a header value not followed by a blank"},
        {'h', B("X\0a\r b\0"),
         "bad milter addheader reply: line break in a header value not followed by a blank"},
        {'h', B("X\0a\n\0"),
         "bad milter addheader reply: line break in a header value not followed by a blank"},
        {'h', B("X\0v\0w\0"), "bad milter addheader reply: data after the last string"},
        {'i', B("\0\0\0"), "bad milter insheader reply: header index missing"},
        {'i', B("\0\0\0\0\0v\0"),
         "bad milter insheader reply: header name empty or not printable ASCII without ':'"},
        {'m', B("\0\0\0\x01"), "bad milter chgheader reply: string missing"},
        {'m', B("\0\0\0\x01X\0"), "bad milter chgheader reply: string missing"},
        {'m', B("\0\0\0\x01X\0a\nb\0"),
         "bad milter chgheader reply: line break in a header value not followed by a blank"},
        {'+', B("\0"), "bad milter addrcpt reply: empty address"},
        {'+', B("a\0b"), "bad milter addrcpt reply: string without NUL"},
        {'+', B("a\0b\0"), "bad milter addrcpt reply: data after the last string"},
        {'-', B("a"), "bad milter delrcpt reply: string without NUL"},
        {'-', B(""), "bad milter delrcpt reply: string missing"},
        {'e', B("a\0b\0c\0"), "bad milter chgfrom reply: data after the last string"},
        {'e', B(""), "bad milter chgfrom reply: string missing"},
        {'2', B("\0b\0"), "bad milter addrcpt_par reply: empty address"},
        {'l', B("\0\0\0\x07j\0"), "bad milter setsymlist reply: setsymlist without a known stage"},
        {'l', B("\0\0\0"), "bad milter setsymlist reply: setsymlist without a known stage"},
        {'l', B("\0\0\0\x01j"), "bad milter setsymlist reply: string without NUL"},
        {'l', B("\0\0\0\x01\t\0"), "bad milter setsymlist reply: macro names not printable ASCII"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pstr in = PSTR_INIT;
        add_pkt(&in, cases[i].cmd, cases[i].payload, cases[i].len);
        expect_error(in.ptr, in.len, "", cases[i].error);
        pstr_free(&in);
    }
}

static void test_reader_truncated(void **state)
{
    (void)state;
    /* Every prefix of a valid stream gives the replies it holds whole,
     * then nothing or a partial packet, never an error. */
    struct pstr in = PSTR_INIT;
    all_replies(&in);
    for (size_t cut = 0; cut < in.len; cut++) {
        struct pstr d = PSTR_INIT;
        run_reader(in.ptr, cut, 0, 0, &d);
        size_t n = d.len;
        if (n >= 8 && memcmp(d.ptr + n - 8, "partial\n", 8) == 0)
            n -= 8;
        assert_true(n <= sizeof all_digest - 1);
        assert_memory_equal(pstr_cstr(&d), all_digest, n);
        pstr_free(&d);
    }
    pstr_free(&in);
}

static void test_decode_direct(void **state)
{
    (void)state;
    struct milter_reply rep;
    const char *why = NULL;
    assert_int_equal(milter_reply_decode('Z', NULL, 0, &rep, &why), -EPROTO);
    assert_string_equal(why, "unknown reply command");
    const unsigned char hdr[] = "\0\0\0\x03X-A\0v\0";
    assert_int_equal(milter_reply_decode('i', hdr, sizeof hdr - 1, &rep, &why), 0);
    assert_int_equal(rep.type, MILTER_REPLY_INSHEADER);
    assert_int_equal(rep.header.index, 3);
    assert_string_equal(rep.header.name, "X-A");
    assert_string_equal(rep.header.value, "v");
    assert_string_equal(milter_reply_name('i'), "insheader");
    assert_null(milter_reply_name('Z'));
}

static void test_reply_action(void **state)
{
    (void)state;
    static const struct {
        enum milter_reply_type type;
        uint32_t action;
    } cases[] = {
        {MILTER_REPLY_ADDHEADER, MILTER_ACT_ADDHDRS},
        {MILTER_REPLY_INSHEADER, MILTER_ACT_ADDHDRS},
        {MILTER_REPLY_CHGHEADER, MILTER_ACT_CHGHDRS},
        {MILTER_REPLY_REPLBODY, MILTER_ACT_CHGBODY},
        {MILTER_REPLY_ADDRCPT, MILTER_ACT_ADDRCPT},
        {MILTER_REPLY_ADDRCPT_PAR, MILTER_ACT_ADDRCPT_PAR},
        {MILTER_REPLY_DELRCPT, MILTER_ACT_DELRCPT},
        {MILTER_REPLY_QUARANTINE, MILTER_ACT_QUARANTINE},
        {MILTER_REPLY_CHGFROM, MILTER_ACT_CHGFROM},
        {MILTER_REPLY_SETSYMLIST, MILTER_ACT_SETSYMLIST},
        {MILTER_REPLY_ACCEPT, 0},
        {MILTER_REPLY_CONTINUE, 0},
        {MILTER_REPLY_REJECT, 0},
        {MILTER_REPLY_TEMPFAIL, 0},
        {MILTER_REPLY_DISCARD, 0},
        {MILTER_REPLY_REPLYCODE, 0},
        {MILTER_REPLY_SKIP, 0},
        {MILTER_REPLY_PROGRESS, 0},
        {MILTER_REPLY_OPTNEG, 0},
        {MILTER_REPLY_SHUTDOWN, 0},
        {MILTER_REPLY_CONNFAIL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(milter_reply_action(cases[i].type), cases[i].action);
}

/* ---- option negotiation -------------------------------------------------- */

static void test_optneg_check(void **state)
{
    (void)state;
    const struct milter_optneg offer = {6, MILTER_ACT_ALL & ~MILTER_ACT_SETSYMLIST,
                                        MILTER_STEP_ALL & ~MILTER_STEP_RCPT_REJ, NULL, 0};
    static const struct {
        uint32_t version, actions, steps;
        const char *why;
    } cases[] = {
        {6, MILTER_ACT_ADDHDRS, MILTER_STEP_NR_HDR | MILTER_STEP_SKIP, NULL},
        {2, 0, 0, NULL},
        {6, MILTER_ACT_ALL & ~MILTER_ACT_SETSYMLIST, MILTER_STEP_ALL & ~MILTER_STEP_RCPT_REJ, NULL},
        {1, 0, 0, "milter protocol version below 2"},
        {0, 0, 0, "milter protocol version below 2"},
        {7, 0, 0, "milter protocol version above the one offered"},
        {6, MILTER_ACT_SETSYMLIST, 0, "milter asks for actions not offered"},
        {6, 0x200, 0, "milter asks for actions not offered"},
        {6, 0, MILTER_STEP_RCPT_REJ, "milter asks for protocol steps not offered"},
        {6, 0, 0x10000000, "milter asks for protocol steps not offered"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct milter_optneg reply = {cases[i].version, cases[i].actions, cases[i].steps,
                                            NULL, 0};
        const char *why = NULL;
        int rc = milter_optneg_check(&offer, &reply, &why);
        if (cases[i].why) {
            assert_int_equal(rc, -EPROTO);
            assert_string_equal(why, cases[i].why);
        } else {
            assert_int_equal(rc, 0);
        }
    }
}

static void test_optneg_macros(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *why;
        const char *want[MILTER_STAGES];
    } cases[] = {
        {B(""), NULL, {NULL}},
        {B("\0\0\0\x01j {my}\0\0\0\0\x03k {other}\0"),
         NULL,
         {NULL, "j {my}", NULL, "k {other}", NULL, NULL, NULL}},
        {B("\0\0\0\x06\0\0\0\0\0{client_addr}\0"),
         NULL,
         {"{client_addr}", NULL, NULL, NULL, NULL, NULL, ""}},
        {B("\0\0\0\x07j\0"), "macro list without a known stage", {NULL}},
        {B("\x80\0\0\0j\0"), "macro list without a known stage", {NULL}},
        {B("\0\0\0"), "macro list without a known stage", {NULL}},
        {B("\0\0\0\x01j\0\0\0"), "macro list without a known stage", {NULL}},
        {B("\0\0\0\x01j"), "macro list without NUL", {NULL}},
        {B("\0\0\0\x01j\0\0\0\0\x01i\0"), "two macro lists for one stage", {NULL}},
        {B("\0\0\0\x01j\x01\0"), "macro names not printable ASCII", {NULL}},
        {B("\0\0\0\x01j\xe9\0"), "macro names not printable ASCII", {NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct milter_optneg neg = {6, 0, 0, (const unsigned char *)cases[i].in,
                                          cases[i].len};
        struct milter_macro_lists lists;
        const char *why = NULL;
        int rc = milter_optneg_macros(&neg, &lists, &why);
        if (cases[i].why) {
            assert_int_equal(rc, -EPROTO);
            assert_string_equal(why, cases[i].why);
            continue;
        }
        assert_int_equal(rc, 0);
        for (int s = 0; s < MILTER_STAGES; s++) {
            if (cases[i].want[s])
                assert_string_equal(lists.names[s], cases[i].want[s]);
            else
                assert_null(lists.names[s]);
        }
    }
}

/* ---- SMTP reply texts ---------------------------------------------------- */

static void test_replycode_good(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int code;
        const char *enh;
        const char *lines; /* joined with '|' */
    } cases[] = {
        {"550 5.7.1 Blocked", 550, "5.7.1", "Blocked"},
        {"451 4.7.1 Try later", 451, "4.7.1", "Try later"},
        {"550 Blocked", 550, "", "Blocked"},
        {"550", 550, "", ""},
        {"550 ", 550, "", ""},
        {"550 5.7.1", 550, "5.7.1", ""},
        {"550 5.7.1 ", 550, "5.7.1", ""},
        {"554 5.123.456 x", 554, "5.123.456", "x"},
        {"550 5.7.1  two spaces\tand tab", 550, "5.7.1", " two spaces\tand tab"},
        {"550-5.7.1 line1\r\n550 5.7.1 line2", 550, "5.7.1", "line1|line2"},
        {"421-4.3.2 a\r\n421-4.3.2 \r\n421 4.3.2 c", 421, "4.3.2", "a||c"},
        {"550-one\r\n550-\r\n550 three", 550, "", "one||three"},
        {"550-x\r\n550", 550, "", "x|"},
        {"550 5.7.1 100%% sure", 550, "5.7.1", "100% sure"},
        {"550 5.7.1 100% sure%", 550, "5.7.1", "100 sure"},
        {"550 5.7.1 %%%", 550, "5.7.1", "%"},
        {"550 Text 5.7.1 later", 550, "", "Text 5.7.1 later"},
    };
    static struct milter_replycode rc;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = "";
        int r = milter_replycode_parse(cases[i].in, &rc, &why);
        if (r != 0)
            fprintf(stderr, "case %zu: %s\n", i, why);
        assert_int_equal(r, 0);
        assert_int_equal(rc.code, cases[i].code);
        assert_string_equal(rc.enh, cases[i].enh);
        char joined[256] = "";
        for (size_t l = 0; l < rc.nlines; l++) {
            if (l)
                strcat(joined, "|");
            strcat(joined, rc.lines[l]);
        }
        assert_string_equal(joined, cases[i].lines);
    }
}

static void test_replycode_limits(void **state)
{
    (void)state;
    static struct milter_replycode rc;
    static char text[40000];
    const char *why;
    /* 32 lines of 980 octets of text each: the most libmilter sends. */
    char *p = text;
    for (int l = 0; l < 32; l++) {
        p += sprintf(p, "550%c5.7.1 ", l == 31 ? ' ' : '-');
        memset(p, 'a' + l % 26, 980);
        p += 980;
        if (l < 31)
            p += sprintf(p, "\r\n");
    }
    *p = '\0';
    assert_int_equal(milter_replycode_parse(text, &rc, &why), 0);
    assert_int_equal(rc.nlines, 32);
    assert_int_equal(strlen(rc.lines[31]), 980);
    assert_int_equal(rc.lines[31][0], 'a' + 31 % 26);
    /* A 33rd line is refused. */
    text[strlen(text) - 980 - 7] = '-';
    strcat(text, "\r\n550 5.7.1 x");
    assert_int_equal(milter_replycode_parse(text, &rc, &why), -EPROTO);
    assert_string_equal(why, "more than 32 lines");
    /* 981 octets of text are refused. */
    memset(text, 'b', sizeof text);
    memcpy(text, "550 5.7.1 ", 10);
    text[10 + 981] = '\0';
    assert_int_equal(milter_replycode_parse(text, &rc, &why), -EPROTO);
    assert_string_equal(why, "line text over 980 octets");
}

static void test_replycode_bad(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *why;
    } cases[] = {
        {"", "line without a 4xx or 5xx code"},
        {"250 2.0.0 ok", "line without a 4xx or 5xx code"},
        {"354 go", "line without a 4xx or 5xx code"},
        {"650 x", "line without a 4xx or 5xx code"},
        {"55 x", "line without a 4xx or 5xx code"},
        {"5a0 x", "line without a 4xx or 5xx code"},
        {"5500 x", "code not followed by '-' on a continued line or ' ' on the last"},
        {"550x", "code not followed by '-' on a continued line or ' ' on the last"},
        {"550-5.7.1 last line continued", "code not followed by '-' on a continued line or ' ' "
                                          "on the last"},
        {"550 5.7.1 a\r\n550 5.7.1 b", "code not followed by '-' on a continued line or ' ' on "
                                       "the last"},
        {"550\r\n550 x", "code not followed by '-' on a continued line or ' ' on the last"},
        {"550-a\r\n", "line without a 4xx or 5xx code"},
        {"550-a\r\n551 b", "lines with different codes"},
        {"550-a\r\n450 b", "lines with different codes"},
        {"550 4.7.1 x", "enhanced code class differs from the reply code's"},
        {"450 5.7.1 x", "enhanced code class differs from the reply code's"},
        {"550 2.0.0 x", "enhanced code class differs from the reply code's"},
        {"550 5.7 x", "malformed enhanced status code"},
        {"550 5.7.", "malformed enhanced status code"},
        {"550 5..1 x", "malformed enhanced status code"},
        {"550 5.1234.1 x", "malformed enhanced status code"},
        {"550 5.7.1234 x", "malformed enhanced status code"},
        {"550 5.7.1x", "malformed enhanced status code"},
        {"550 5 x", "malformed enhanced status code"},
        {"550 2013 was a year", "malformed enhanced status code"},
        {"550-5.7.1 a\r\n550 5.7.2 b", "lines with different enhanced codes"},
        {"550-5.7.1 a\r\n550 b", "lines with different enhanced codes"},
        {"550-a\r\n550 5.7.1 b", "lines with different enhanced codes"},
        {"550 5.7.1 caf\xc3\xa9", "text not printable ASCII"},
        {"550 5.7.1 bell\a", "text not printable ASCII"},
        {"550 5.7.1 a\rb", "text not printable ASCII"},
        {"550 5.7.1 a\nb", "text not printable ASCII"},
        {"550 5.7.1 del\x7f", "text not printable ASCII"},
        {"550-5.7.1 a\n550 5.7.1 b", "code not followed by '-' on a continued line or ' ' on the "
                                     "last"},
    };
    static struct milter_replycode rc;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = NULL;
        int r = milter_replycode_parse(cases[i].in, &rc, &why);
        if (r == 0 || strcmp(why, cases[i].why) != 0)
            fprintf(stderr, "case %zu (%s): %s\n", i, cases[i].in, r == 0 ? "accepted" : why);
        assert_int_equal(r, -EPROTO);
        assert_string_equal(why, cases[i].why);
    }
}

/* ---- constants ------------------------------------------------------------ */

static void test_constants_match_libmilter(void **state)
{
    (void)state;
#ifdef HAVE_LIBMILTER
    static const struct {
        const char *name;
        long ours, theirs;
    } pairs[] = {
#define P(ours, theirs) {#theirs, (long)(ours), (long)(theirs)}
        P(MILTER_VERSION, SMFI_PROT_VERSION),
        P(MILTER_PAYLOAD_MAX, MILTER_MAX_DATA_SIZE),
        P(MILTER_PAYLOAD_MAX, MILTER_CHUNK_SIZE),
        P(MILTER_CMD_ABORT, SMFIC_ABORT),
        P(MILTER_CMD_BODY, SMFIC_BODY),
        P(MILTER_CMD_CONNECT, SMFIC_CONNECT),
        P(MILTER_CMD_MACRO, SMFIC_MACRO),
        P(MILTER_CMD_EOM, SMFIC_BODYEOB),
        P(MILTER_CMD_HELO, SMFIC_HELO),
        P(MILTER_CMD_QUIT_NC, SMFIC_QUIT_NC),
        P(MILTER_CMD_HEADER, SMFIC_HEADER),
        P(MILTER_CMD_MAIL, SMFIC_MAIL),
        P(MILTER_CMD_EOH, SMFIC_EOH),
        P(MILTER_CMD_OPTNEG, SMFIC_OPTNEG),
        P(MILTER_CMD_QUIT, SMFIC_QUIT),
        P(MILTER_CMD_RCPT, SMFIC_RCPT),
        P(MILTER_CMD_DATA, SMFIC_DATA),
        P(MILTER_CMD_UNKNOWN, SMFIC_UNKNOWN),
        P(MILTER_REPLY_ADDRCPT, SMFIR_ADDRCPT),
        P(MILTER_REPLY_DELRCPT, SMFIR_DELRCPT),
        P(MILTER_REPLY_ADDRCPT_PAR, SMFIR_ADDRCPT_PAR),
        P(MILTER_REPLY_SHUTDOWN, SMFIR_SHUTDOWN),
        P(MILTER_REPLY_OPTNEG, SMFIC_OPTNEG),
        P(MILTER_REPLY_ACCEPT, SMFIR_ACCEPT),
        P(MILTER_REPLY_REPLBODY, SMFIR_REPLBODY),
        P(MILTER_REPLY_CONTINUE, SMFIR_CONTINUE),
        P(MILTER_REPLY_DISCARD, SMFIR_DISCARD),
        P(MILTER_REPLY_CHGFROM, SMFIR_CHGFROM),
        P(MILTER_REPLY_CONNFAIL, SMFIR_CONN_FAIL),
        P(MILTER_REPLY_ADDHEADER, SMFIR_ADDHEADER),
        P(MILTER_REPLY_INSHEADER, SMFIR_INSHEADER),
        P(MILTER_REPLY_SETSYMLIST, SMFIR_SETSYMLIST),
        P(MILTER_REPLY_CHGHEADER, SMFIR_CHGHEADER),
        P(MILTER_REPLY_PROGRESS, SMFIR_PROGRESS),
        P(MILTER_REPLY_QUARANTINE, SMFIR_QUARANTINE),
        P(MILTER_REPLY_REJECT, SMFIR_REJECT),
        P(MILTER_REPLY_SKIP, SMFIR_SKIP),
        P(MILTER_REPLY_TEMPFAIL, SMFIR_TEMPFAIL),
        P(MILTER_REPLY_REPLYCODE, SMFIR_REPLYCODE),
        P(MILTER_FAMILY_UNKNOWN, SMFIA_UNKNOWN),
        P(MILTER_FAMILY_UNIX, SMFIA_UNIX),
        P(MILTER_FAMILY_INET, SMFIA_INET),
        P(MILTER_FAMILY_INET6, SMFIA_INET6),
        P(MILTER_ACT_ADDHDRS, SMFIF_ADDHDRS),
        P(MILTER_ACT_CHGBODY, SMFIF_CHGBODY),
        P(MILTER_ACT_ADDRCPT, SMFIF_ADDRCPT),
        P(MILTER_ACT_DELRCPT, SMFIF_DELRCPT),
        P(MILTER_ACT_CHGHDRS, SMFIF_CHGHDRS),
        P(MILTER_ACT_QUARANTINE, SMFIF_QUARANTINE),
        P(MILTER_ACT_CHGFROM, SMFIF_CHGFROM),
        P(MILTER_ACT_ADDRCPT_PAR, SMFIF_ADDRCPT_PAR),
        P(MILTER_ACT_SETSYMLIST, SMFIF_SETSYMLIST),
        P(MILTER_ACT_ALL, SMFI_CURR_ACTS),
        P(MILTER_STEP_NOCONNECT, SMFIP_NOCONNECT),
        P(MILTER_STEP_NOHELO, SMFIP_NOHELO),
        P(MILTER_STEP_NOMAIL, SMFIP_NOMAIL),
        P(MILTER_STEP_NORCPT, SMFIP_NORCPT),
        P(MILTER_STEP_NOBODY, SMFIP_NOBODY),
        P(MILTER_STEP_NOHDRS, SMFIP_NOHDRS),
        P(MILTER_STEP_NOEOH, SMFIP_NOEOH),
        P(MILTER_STEP_NR_HDR, SMFIP_NR_HDR),
        P(MILTER_STEP_NOUNKNOWN, SMFIP_NOUNKNOWN),
        P(MILTER_STEP_NODATA, SMFIP_NODATA),
        P(MILTER_STEP_SKIP, SMFIP_SKIP),
        P(MILTER_STEP_RCPT_REJ, SMFIP_RCPT_REJ),
        P(MILTER_STEP_NR_CONN, SMFIP_NR_CONN),
        P(MILTER_STEP_NR_HELO, SMFIP_NR_HELO),
        P(MILTER_STEP_NR_MAIL, SMFIP_NR_MAIL),
        P(MILTER_STEP_NR_RCPT, SMFIP_NR_RCPT),
        P(MILTER_STEP_NR_DATA, SMFIP_NR_DATA),
        P(MILTER_STEP_NR_UNKN, SMFIP_NR_UNKN),
        P(MILTER_STEP_NR_EOH, SMFIP_NR_EOH),
        P(MILTER_STEP_NR_BODY, SMFIP_NR_BODY),
        P(MILTER_STEP_HDR_LEADSPC, SMFIP_HDR_LEADSPC),
        P(MILTER_STEP_ALL, SMFI_CURR_PROT),
        P(MILTER_STAGE_CONNECT, SMFIM_CONNECT),
        P(MILTER_STAGE_HELO, SMFIM_HELO),
        P(MILTER_STAGE_ENVFROM, SMFIM_ENVFROM),
        P(MILTER_STAGE_ENVRCPT, SMFIM_ENVRCPT),
        P(MILTER_STAGE_DATA, SMFIM_DATA),
        P(MILTER_STAGE_EOM, SMFIM_EOM),
        P(MILTER_STAGE_EOH, SMFIM_EOH),
        P(MILTER_STAGES, SMFIM_LAST + 1),
#undef P
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        if (pairs[i].ours != pairs[i].theirs)
            fprintf(stderr, "%s: ours %#lx, libmilter %#lx\n", pairs[i].name, pairs[i].ours,
                    pairs[i].theirs);
        assert_int_equal(pairs[i].ours, pairs[i].theirs);
    }
#else
    skip(); /* libmilter-dev not installed (contrib/scripts/install-deps.sh) */
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_optneg),
        cmocka_unit_test(test_put_macro),
        cmocka_unit_test(test_put_connect),
        cmocka_unit_test(test_put_helo_unknown),
        cmocka_unit_test(test_put_envelope),
        cmocka_unit_test(test_put_bare),
        cmocka_unit_test(test_put_header),
        cmocka_unit_test(test_put_body),
        cmocka_unit_test(test_decode_every_reply),
        cmocka_unit_test(test_reader_splits),
        cmocka_unit_test(test_reader_partial_and_idle),
        cmocka_unit_test(test_reader_limits),
        cmocka_unit_test(test_reader_bad_frames),
        cmocka_unit_test(test_reader_bad_payloads),
        cmocka_unit_test(test_reader_truncated),
        cmocka_unit_test(test_decode_direct),
        cmocka_unit_test(test_reply_action),
        cmocka_unit_test(test_optneg_check),
        cmocka_unit_test(test_optneg_macros),
        cmocka_unit_test(test_replycode_good),
        cmocka_unit_test(test_replycode_limits),
        cmocka_unit_test(test_replycode_bad),
        cmocka_unit_test(test_constants_match_libmilter),
    };
    return cmocka_run_group_tests_name("milter_codec", tests, NULL, NULL);
}
