/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for msg: parse shapes, lookup, unfold, edits (golden bytes),
 * folding, segments vs render, round trips and a random-edit model check. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* "name=value|" for every field, value raw (folding visible as \r\n). */
static void dump_fields(const struct msg *m, buf_t *out)
{
    for (size_t i = 0; i < msg_field_count(m); i++) {
        const struct msg_field *f = msg_field_at(m, i);
        buf_append(out, f->name, f->name_len);
        buf_puts(out, "=");
        buf_append(out, f->value, f->value_len);
        buf_puts(out, "|");
    }
}

static void assert_mem_eq(const char *got, size_t got_len, const char *want, size_t want_len)
{
    if (got_len != want_len || memcmp(got, want, want_len) != 0) {
        print_error("got  (%zu) \"%.*s\"\nwant (%zu) \"%.*s\"\n", got_len, (int)got_len, got,
                    want_len, (int)want_len, want);
        fail();
    }
}

/* The concatenated iovecs must equal msg_render, for a roomy and a tight
 * iovec budget; msg_size agrees; the result is returned in out. */
static void check_output(struct msg *m, buf_t *out)
{
    static const int maxes[] = {3, 4, 64};
    const char *r;
    size_t rlen;

    msg_render(m, &r, &rlen);
    assert_non_null(r);
    assert_int_equal(msg_size(m), rlen);
    for (size_t k = 0; k < COUNT(maxes); k++) {
        struct iovec iov[64];
        buf_t cat = BUF_INIT;
        int n = msg_segments(m, iov, maxes[k]);

        assert_true(n >= 0 && n <= maxes[k]);
        for (int i = 0; i < n; i++)
            buf_append(&cat, iov[i].iov_base, iov[i].iov_len);
        assert_mem_eq(cat.ptr ? cat.ptr : "", cat.len, r, rlen);
        buf_free(&cat);
    }
    buf_reset(out);
    buf_append(out, r, rlen);
}

/* ---- parse ------------------------------------------------------------ */

struct parse_case {
    const char *in;
    const char *fields; /* dump_fields format */
    const char *body;
    bool sep;
};

static const struct parse_case parse_cases[] = {
    {"", "", "", false},
    {"\r\n", "", "", true},
    {"\r\nbody\r\n", "", "body\r\n", true},
    {"A: 1\r\nB: 2\r\n\r\nhello\r\n", "A= 1|B= 2|", "hello\r\n", true},
    /* folded value: the raw value keeps the CRLF and the WSP */
    {"Subject: one\r\n two\r\n\tthree\r\nX: y\r\n\r\n", "Subject= one\r\n two\r\n\tthree|X= y|", "",
     true},
    /* empty values, no space, WSP before the colon (obsolete syntax) */
    {"Empty:\r\nE2: \r\nNoSp:v\r\nObs  : w\r\n\r\n", "Empty=|E2= |NoSp=v|Obs= w|", "", true},
    /* no blank line: all header, empty body */
    {"A: 1\r\nB: 2\r\n", "A= 1|B= 2|", "", false},
    /* last line without a line end */
    {"A: 1\r\nB: 2", "A= 1|B= 2|", "", false},
    /* a garbage line ends the header and starts the body */
    {"A: 1\r\nthis is not a header\r\nB: 2\r\n", "A= 1|", "this is not a header\r\nB: 2\r\n", false},
    {"A: 1\r\n:novalue\r\n\r\nx", "A= 1|", ":novalue\r\n\r\nx", false},
    /* a leading continuation line is body */
    {" folded: no\r\nA: 1\r\n\r\n", "", " folded: no\r\nA: 1\r\n\r\n", false},
    /* mbox From_ line */
    {"From alice@example.com Mon Jan  1 00:00:00 2024\r\nA: 1\r\n\r\nb\r\n", "",
     "From alice@example.com Mon Jan  1 00:00:00 2024\r\nA: 1\r\n\r\nb\r\n", false},
    /* 8-bit bytes in values are kept, in names they end the header */
    {"Subject: caf\xc3\xa9\r\n\r\n", "Subject= caf\xc3\xa9|", "", true},
    {"N\xc3\xa4me: x\r\n\r\n", "", "N\xc3\xa4me: x\r\n\r\n", false},
    /* bare LF line ends are line ends, bytes kept */
    {"A: 1\nB: 2\n two\n\nbody\n", "A= 1|B= 2\n two|", "body\n", true},
    {"A: 1\r\n\nbody", "A= 1|", "body", true},
    /* a stray CR inside a line is content */
    {"A: 1\r2\r\n\r\n", "A= 1\r2|", "", true},
    /* only the first blank line separates */
    {"A: 1\r\n\r\n\r\nB: 2\r\n", "A= 1|", "\r\nB: 2\r\n", true},
    /* a blank line that is WSP only is a continuation, not the separator */
    {"A: 1\r\n \r\nB: 2\r\n\r\n", "A= 1\r\n |B= 2|", "", true},
    /* name with all the odd printable characters */
    {"X-!#$%&'*+-.^_`{|}~: v\r\n\r\n", "X-!#$%&'*+-.^_`{|}~= v|", "", true},
};

static void test_parse_shapes(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(parse_cases); i++) {
        const struct parse_case *c = &parse_cases[i];
        size_t len = strlen(c->in);
        struct msg *m = msg_parse(c->in, len);
        buf_t got = BUF_INIT;
        const char *body;
        size_t blen;

        assert_non_null(m);
        dump_fields(m, &got);
        if (strcmp(got.ptr ? got.ptr : "", c->fields) != 0) {
            print_error("case %zu: got fields \"%s\", want \"%s\"\n", i, got.ptr ? got.ptr : "",
                        c->fields);
            fail();
        }
        msg_body(m, &body, &blen);
        assert_mem_eq(body, blen, c->body, strlen(c->body));
        assert_int_equal(msg_has_separator(m), c->sep);
        assert_false(msg_edited(m));

        /* raw pieces + separator + body cover the input exactly */
        size_t sum = blen;
        for (size_t k = 0; k < msg_field_count(m); k++)
            sum += msg_field_at(m, k)->raw_len;
        assert_true(sum <= len);
        assert_true(len - sum <= 2); /* the separator line */
        assert_int_equal(len - sum > 0, c->sep);

        /* unedited: one iovec, the original itself */
        struct iovec iov[4];
        assert_int_equal(msg_segments(m, iov, 4), 1);
        assert_ptr_equal(iov[0].iov_base, c->in);
        assert_int_equal(iov[0].iov_len, len);
        const char *r;
        size_t rlen;
        msg_render(m, &r, &rlen);
        assert_int_equal(rlen, len);
        if (len)
            assert_ptr_equal(r, c->in);
        assert_int_equal(msg_size(m), len);
        assert_int_equal(msg_segments(m, iov, 2), -1);
        buf_free(&got);
        msg_free(m);
    }
}

static void test_parse_many_fields(void **state)
{
    (void)state;
    buf_t in = BUF_INIT;
    for (int i = 0; i < 1000; i++)
        buf_printf(&in, "X-%d: value %d\r\n", i, i);
    buf_puts(&in, "\r\nbody\r\n");
    struct msg *m = msg_parse(in.ptr, in.len);
    assert_non_null(m);
    assert_int_equal(msg_field_count(m), 1000);
    const struct msg_field *f = msg_field_at(m, 999);
    assert_mem_eq(f->name, f->name_len, "X-999", 5);
    assert_mem_eq(f->value, f->value_len, " value 999", 10);
    assert_ptr_equal(f->raw, strstr(in.ptr, "X-999:"));
    assert_false(f->edited);
    assert_null(msg_field_at(m, 1000));
    msg_free(m);
    buf_free(&in);
}

static void test_parse_null(void **state)
{
    (void)state;
    struct msg *m = msg_parse(NULL, 0);
    assert_non_null(m);
    assert_int_equal(msg_field_count(m), 0);
    assert_int_equal(msg_size(m), 0);
    assert_int_equal(msg_field_add(m, "A", "1"), 0);
    buf_t out = BUF_INIT;
    check_output(m, &out);
    assert_mem_eq(out.ptr, out.len, "A: 1\r\n", 6);
    buf_free(&out);
    msg_free(m);
    msg_free(NULL);
}

/* ---- lookup and unfold ------------------------------------------------- */

static void test_find(void **state)
{
    (void)state;
    static const char in[] = "Received: a\r\nSUBJECT: s\r\nreceived: b\r\nX: 1\r\n"
                             "RECEIVED: c\r\nRec: no\r\n\r\n";
    static const struct {
        const char *name;
        size_t nth;
        long want;
    } cases[] = {
        {"received", 0, 0}, {"Received", 1, 2}, {"received", 2, 4}, {"received", 3, -1},
        {"subject", 0, 1},  {"Subject", 1, -1}, {"x", 0, 3},         {"Rece", 0, -1},
        {"Receiveds", 0, -1}, {"", 0, -1},      {"rec", 0, 5},
    };
    struct msg *m = msg_parse(in, sizeof(in) - 1);
    for (size_t i = 0; i < COUNT(cases); i++) {
        long got = msg_field_find(m, cases[i].name, cases[i].nth);
        if (got != cases[i].want) {
            print_error("find(%s, %zu): got %ld, want %ld\n", cases[i].name, cases[i].nth, got,
                        cases[i].want);
            fail();
        }
    }
    msg_free(m);
}

static void test_unfold(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"", ""},
        {" plain", "plain"},
        {"  lots  of   space  ", "lots  of   space"},
        {" one\r\n two", "one two"},
        {" one\r\n\ttwo\r\n  three", "one\ttwo  three"},
        {"\r\n starts folded", "starts folded"},
        {" lf\n fold", "lf fold"},
        {" a\r\nb", "a\r\nb"}, /* not a fold: kept */
        {" cr\rinside", "cr\rinside"},
        {" trailing\r\n ", "trailing"},
        {"\t\r\n \t", ""},
        {" caf\xc3\xa9\r\n ok", "caf\xc3\xa9 ok"},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        buf_t out = BUF_INIT;
        buf_puts(&out, "pre>"); /* appends, never touches what was there */
        msg_unfold(cases[i].in, strlen(cases[i].in), &out);
        assert_true(out.len >= 4);
        assert_memory_equal(out.ptr, "pre>", 4);
        assert_mem_eq(out.ptr + 4, out.len - 4, cases[i].want, strlen(cases[i].want));
        buf_free(&out);
    }
}

/* ---- edits: golden bytes --------------------------------------------- */

enum op_kind { OP_END = 0, OP_ADD, OP_INS, OP_CHG, OP_DEL, OP_BODY };

struct op {
    enum op_kind kind;
    size_t index;
    const char *name;
    const char *value; /* or body */
    int want_rc;
};

struct edit_case {
    const char *in;
    struct op ops[6];
    const char *want;
};

static const char base[] = "Received: from a\r\n\tby b\r\nFrom: x@example.com\r\n"
                           "Subject:   spaced  \r\n\r\nBody line\r\n";

static const struct edit_case edit_cases[] = {
    {base, {{OP_ADD, 0, "X-Spam", "yes", 0}},
     "Received: from a\r\n\tby b\r\nFrom: x@example.com\r\nSubject:   spaced  \r\n"
     "X-Spam: yes\r\n\r\nBody line\r\n"},
    {base, {{OP_INS, 0, "X-First", "1", 0}},
     "X-First: 1\r\nReceived: from a\r\n\tby b\r\nFrom: x@example.com\r\nSubject:   spaced  \r\n"
     "\r\nBody line\r\n"},
    {base, {{OP_INS, 1, "X-Mid", "m", 0}, {OP_INS, 4, "X-End", "e", 0}},
     "Received: from a\r\n\tby b\r\nX-Mid: m\r\nFrom: x@example.com\r\nSubject:   spaced  \r\n"
     "X-End: e\r\n\r\nBody line\r\n"},
    {base, {{OP_INS, 4, "X", "1", -EINVAL}}, NULL},
    /* change keeps the name as written, folding of others untouched */
    {base, {{OP_CHG, 2, NULL, "new subject", 0}},
     "Received: from a\r\n\tby b\r\nFrom: x@example.com\r\nSubject: new subject\r\n"
     "\r\nBody line\r\n"},
    {"sUbJeCt:old\r\n\r\n", {{OP_CHG, 0, NULL, "new", 0}}, "sUbJeCt: new\r\n\r\n"},
    {"Obs : old\r\n\r\n", {{OP_CHG, 0, NULL, "new", 0}}, "Obs: new\r\n\r\n"},
    /* value starting with WSP: no space added */
    {base, {{OP_CHG, 1, NULL, "\tx@example.org", 0}},
     "Received: from a\r\n\tby b\r\nFrom:\tx@example.org\r\nSubject:   spaced  \r\n"
     "\r\nBody line\r\n"},
    {base, {{OP_CHG, 3, NULL, "x", -ENOENT}}, NULL},
    /* empty value */
    {"A: 1\r\n\r\n", {{OP_CHG, 0, NULL, "", 0}}, "A: \r\n\r\n"},
    /* already folded value kept as is */
    {"A: 1\r\n\r\n", {{OP_ADD, 0, "B", "one\r\n two\r\n\tthree", 0}},
     "A: 1\r\nB: one\r\n two\r\n\tthree\r\n\r\n"},
    /* delete */
    {base, {{OP_DEL, 0, NULL, NULL, 0}},
     "From: x@example.com\r\nSubject:   spaced  \r\n\r\nBody line\r\n"},
    {base, {{OP_DEL, 2, NULL, NULL, 0}, {OP_DEL, 0, NULL, NULL, 0}, {OP_DEL, 0, NULL, NULL, 0}},
     "\r\nBody line\r\n"},
    {base, {{OP_DEL, 3, NULL, NULL, -ENOENT}}, NULL},
    /* change twice, delete an edited one */
    {base,
     {{OP_CHG, 1, NULL, "a", 0}, {OP_CHG, 1, NULL, "b", 0}, {OP_ADD, 0, "Z", "z", 0},
      {OP_DEL, 3, NULL, NULL, 0}},
     "Received: from a\r\n\tby b\r\nFrom: b\r\nSubject:   spaced  \r\n\r\nBody line\r\n"},
    /* body replace: line ends canonicalised, final CRLF added */
    {base, {{OP_BODY, 0, NULL, "a\nb\rc\r\nd", 0}},
     "Received: from a\r\n\tby b\r\nFrom: x@example.com\r\nSubject:   spaced  \r\n"
     "\r\na\r\nb\r\nc\r\nd\r\n"},
    {base, {{OP_BODY, 0, NULL, "", 0}},
     "Received: from a\r\n\tby b\r\nFrom: x@example.com\r\nSubject:   spaced  \r\n\r\n"},
    {base, {{OP_BODY, 0, NULL, "\n\n", 0}, {OP_BODY, 0, NULL, "x\r\r\n", 0}},
     "Received: from a\r\n\tby b\r\nFrom: x@example.com\r\nSubject:   spaced  \r\n\r\nx\r\n\r\n"},
    /* bare-LF original: untouched bytes stay LF */
    {"A: 1\nB: 2\n\nbody\n", {{OP_INS, 1, "C", "3", 0}}, "A: 1\nC: 3\r\nB: 2\n\nbody\n"},
    /* no blank line, last line without a line end */
    {"A: 1\r\nB: 2", {{OP_ADD, 0, "C", "3", 0}}, "A: 1\r\nB: 2\r\nC: 3\r\n"},
    {"A: 1\r\nB: 2", {{OP_CHG, 0, NULL, "9", 0}}, "A: 9\r\nB: 2"},
    {"A: 1\r\nB: 2", {{OP_BODY, 0, NULL, "b", 0}}, "A: 1\r\nB: 2\r\n\r\nb\r\n"},
    /* a garbage line after the header stays where it is */
    {"A: 1\r\ngarbage\r\n", {{OP_ADD, 0, "C", "3", 0}}, "A: 1\r\nC: 3\r\ngarbage\r\n"},
    {"A: 1\r\ngarbage\r\n", {{OP_DEL, 0, NULL, NULL, 0}}, "garbage\r\n"},
    /* a body starting with WSP must not become a continuation */
    {" lead\r\n", {{OP_ADD, 0, "C", "3", 0}}, "C: 3\r\n\r\n lead\r\n"},
    /* empty message */
    {"", {{OP_ADD, 0, "A", "1", 0}, {OP_ADD, 0, "B", "2", 0}}, "A: 1\r\nB: 2\r\n"},
    {"", {{OP_BODY, 0, NULL, "x", 0}}, "\r\nx\r\n"},
    /* refusals leave the message untouched */
    {base, {{OP_ADD, 0, "Bad Name", "x", -EINVAL}}, NULL},
    {base, {{OP_ADD, 0, "", "x", -EINVAL}}, NULL},
    {base, {{OP_ADD, 0, "Colon:", "x", -EINVAL}}, NULL},
    {base, {{OP_ADD, 0, "N\xc3\xa4me", "x", -EINVAL}}, NULL},
    {base,
     {{OP_ADD, 0, "X-Name-That-Is-Far-Too-Long-For-Any-Line-And-Goes-On-And-On-And-On-And-On-abc",
       "x", -EINVAL}},
     NULL},
    {"\r\n",
     {{OP_ADD, 0, "X-Name-That-Is-Exactly-76-Long-For-The-Line-And-Goes-On-And-On-And-On-And-On",
       "x", 0}},
     "X-Name-That-Is-Exactly-76-Long-For-The-Line-And-Goes-On-And-On-And-On-And-On: x\r\n\r\n"},
    {base, {{OP_ADD, 0, "A", "bare\nlf", -EINVAL}}, NULL},
    {base, {{OP_ADD, 0, "A", "bare\rcr", -EINVAL}}, NULL},
    {base, {{OP_ADD, 0, "A", "crlf\r\nnot folded", -EINVAL}}, NULL},
    {base, {{OP_ADD, 0, "A", "ends\r\n", -EINVAL}}, NULL},
    {base, {{OP_CHG, 0, NULL, "x\r\n", -EINVAL}}, NULL},
    {base, {{OP_ADD, 0, "A", NULL, -EINVAL}}, NULL},
    {base, {{OP_ADD, 0, NULL, "x", -EINVAL}}, NULL},
    /* 8-bit values are fine */
    {"\r\n", {{OP_ADD, 0, "Subject", "caf\xc3\xa9", 0}}, "Subject: caf\xc3\xa9\r\n\r\n"},
};

static int apply(struct msg *m, const struct op *o)
{
    switch (o->kind) {
    case OP_ADD:
        return msg_field_add(m, o->name, o->value);
    case OP_INS:
        return msg_field_insert(m, o->index, o->name, o->value);
    case OP_CHG:
        return msg_field_change(m, o->index, o->value);
    case OP_DEL:
        return msg_field_delete(m, o->index);
    case OP_BODY:
        return msg_body_replace(m, o->value, strlen(o->value));
    case OP_END:
        break;
    }
    return -999;
}

/* parse(render(m)) must give the same fields and body as m. */
static void check_reparse(struct msg *m)
{
    const char *r, *b1, *b2;
    size_t rlen, l1, l2;
    buf_t f1 = BUF_INIT, f2 = BUF_INIT;

    msg_render(m, &r, &rlen);
    struct msg *m2 = msg_parse(r, rlen);
    assert_non_null(m2);
    dump_fields(m, &f1);
    dump_fields(m2, &f2);
    assert_mem_eq(f2.ptr ? f2.ptr : "", f2.len, f1.ptr ? f1.ptr : "", f1.len);
    msg_body(m, &b1, &l1);
    msg_body(m2, &b2, &l2);
    assert_mem_eq(b2, l2, b1, l1);
    assert_int_equal(msg_has_separator(m2), msg_has_separator(m));
    buf_free(&f1);
    buf_free(&f2);
    msg_free(m2);
}

static void test_edits_golden(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(edit_cases); i++) {
        const struct edit_case *c = &edit_cases[i];
        struct msg *m = msg_parse(c->in, strlen(c->in));
        buf_t out = BUF_INIT;

        assert_non_null(m);
        for (const struct op *o = c->ops; o->kind != OP_END; o++) {
            int rc = apply(m, o);
            if (rc != o->want_rc) {
                print_error("case %zu op %zu: got rc %d, want %d\n", i, (size_t)(o - c->ops), rc,
                            o->want_rc);
                fail();
            }
        }
        check_output(m, &out);
        const char *want = c->want ? c->want : c->in;
        if (out.len != strlen(want) || memcmp(out.ptr ? out.ptr : "", want, out.len) != 0) {
            print_error("case %zu:\n got  \"%.*s\"\n want \"%s\"\n", i, (int)out.len,
                        out.ptr ? out.ptr : "", want);
            fail();
        }
        assert_int_equal(msg_edited(m), c->want != NULL);
        check_reparse(m);
        buf_free(&out);
        msg_free(m);
    }
}

/* Edited fields expose name/value/raw into msg-owned memory. */
static void test_edited_field_view(void **state)
{
    (void)state;
    static const char in[] = "Subject: old\r\n\r\n";
    struct msg *m = msg_parse(in, sizeof(in) - 1);

    assert_int_equal(msg_field_change(m, 0, "new"), 0);
    const struct msg_field *f = msg_field_at(m, 0);
    assert_true(f->edited);
    assert_mem_eq(f->name, f->name_len, "Subject", 7);
    assert_mem_eq(f->value, f->value_len, " new", 4);
    assert_mem_eq(f->raw, f->raw_len, "Subject: new\r\n", 14);
    assert_true(f->raw < in || f->raw >= in + sizeof(in));
    assert_int_equal(msg_field_find(m, "SUBJECT", 0), 0);
    msg_free(m);
}

/* ---- folding ----------------------------------------------------------- */

static void test_fold_golden(void **state)
{
    (void)state;
    static const struct {
        const char *name, *value, *want;
    } cases[] = {
        {"Subject",
         "This is a fairly long subject line that will certainly need to be folded somewhere "
         "near here, twice maybe, if we keep on writing words",
         "Subject: This is a fairly long subject line that will certainly need to be\r\n"
         " folded somewhere near here, twice maybe, if we keep on writing words\r\n"},
        {"To",
         "alice@example.com, Bob Example <bob@example.org>, carol.long.name@subdomain.example."
         "net, dave@example.com",
         "To: alice@example.com, Bob Example <bob@example.org>,\r\n"
         " carol.long.name@subdomain.example.net, dave@example.com\r\n"},
        /* exactly 78: not folded */
        {"X", "123456789012345678901234567890123456789012345678901234567890123456789012345",
         "X: 123456789012345678901234567890123456789012345678901234567890123456789012345\r\n"},
        /* 79 with one space: folded before the space */
        {"X", "1234567890123456789012345678901234567890 12345678901234567890123456789012345",
         "X: 1234567890123456789012345678901234567890\r\n 12345678901234567890123456789012345\r\n"},
        /* a WSP run stays together at the start of the continuation */
        {"X", "1234567890123456789012345678901234567890 \t 1234567890123456789012345678901234567",
         "X: 1234567890123456789012345678901234567890\r\n \t 1234567890123456789012345678901234567"
         "\r\n"},
        /* trailing WSP does not get a line of its own */
        {"X", "123456789012345678901234567890123456789012345678901234567890123456789012345   ",
         "X: 123456789012345678901234567890123456789012345678901234567890123456789012345   \r\n"},
        /* a long word that cannot be folded (< 998) stays on its line */
        {"X",
         "short "
         "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
         "89 end",
         "X: short\r\n "
         "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
         "89\r\n end\r\n"},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        struct msg *m = msg_parse("", 0);
        buf_t out = BUF_INIT, unf = BUF_INIT;

        assert_int_equal(msg_field_add(m, cases[i].name, cases[i].value), 0);
        check_output(m, &out);
        if (out.len != strlen(cases[i].want) || memcmp(out.ptr, cases[i].want, out.len) != 0) {
            print_error("case %zu:\n got  \"%s\"\n want \"%s\"\n", i, out.ptr, cases[i].want);
            fail();
        }
        /* unfolding gives back the value (modulo trailing WSP) */
        const struct msg_field *f = msg_field_at(m, 0);
        msg_unfold(f->value, f->value_len, &unf);
        buf_t want = BUF_INIT;
        msg_unfold(cases[i].value, strlen(cases[i].value), &want);
        assert_mem_eq(unf.ptr, unf.len, want.ptr, want.len);
        check_reparse(m);
        buf_free(&want);
        buf_free(&unf);
        buf_free(&out);
        msg_free(m);
    }
}

/* Line lengths of a rendered field, without CRLF. */
static void check_lines(const char *p, size_t len, size_t soft_max, size_t hard_max)
{
    size_t start = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (p[i] == '\r' && p[i + 1] == '\n') {
            size_t l = i - start;
            assert_true(l <= hard_max);
            if (soft_max)
                assert_true(l <= soft_max);
            start = i + 2;
        }
    }
}

static void test_fold_long_lists(void **state)
{
    (void)state;
    for (int n = 1; n < 60; n++) {
        buf_t v = BUF_INIT, out = BUF_INIT;
        for (int i = 0; i < n; i++)
            buf_printf(&v, "%s\"User %d\" <user%d@example.com>", i ? ", " : "", i, i * 7919);
        struct msg *m = msg_parse("", 0);
        assert_int_equal(msg_field_add(m, "To", v.ptr), 0);
        check_output(m, &out);
        check_lines(out.ptr, out.len, 78, 998);
        /* greedy: no line could have taken the next segment */
        const struct msg_field *f = msg_field_at(m, 0);
        buf_t unf = BUF_INIT;
        msg_unfold(f->value, f->value_len, &unf);
        assert_mem_eq(unf.ptr, unf.len, v.ptr, v.len);
        check_reparse(m);
        buf_free(&unf);
        buf_free(&v);
        buf_free(&out);
        msg_free(m);
    }
}

static void test_fold_998(void **state)
{
    (void)state;
    char word[1200];
    struct msg *m = msg_parse("", 0);

    /* name "X" + ": " = 3 octets: a word of 995 fits the first line */
    memset(word, 'a', sizeof(word));
    word[995] = '\0';
    assert_int_equal(msg_field_add(m, "X", word), 0);
    word[995] = 'a';
    word[996] = '\0';
    assert_int_equal(msg_field_add(m, "X", word), -EINVAL);

    /* on a continuation line (indent 1), 997 octets of word fit */
    char v[1300];
    memset(v, 'b', sizeof(v));
    memcpy(v, "start ", 6);
    v[6 + 997] = '\0';
    assert_int_equal(msg_field_add(m, "Y", v), 0);
    v[6 + 997] = 'b';
    v[6 + 998] = '\0';
    assert_int_equal(msg_field_add(m, "Y", v), -EINVAL);

    /* already folded: kept, but no line over 998 */
    char f[1300];
    memcpy(f, "ok\r\n ", 5);
    memset(f + 5, 'c', 997);
    f[5 + 997] = '\0';
    assert_int_equal(msg_field_add(m, "Z", f), 0);
    f[5 + 997] = 'c';
    f[5 + 998] = '\0';
    assert_int_equal(msg_field_add(m, "Z", f), -EINVAL);

    assert_int_equal(msg_field_count(m), 3);
    buf_t out = BUF_INIT;
    check_output(m, &out);
    check_lines(out.ptr, out.len, 0, 998);
    check_reparse(m);
    buf_free(&out);
    msg_free(m);
}

/* ---- segments ------------------------------------------------------------- */

static void test_segments_zero_copy(void **state)
{
    (void)state;
    static const char in[] = "A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody\r\n";
    struct iovec iov[8];
    struct msg *m = msg_parse(in, sizeof(in) - 1);

    /* a field added at the front: the new field + the whole original */
    assert_int_equal(msg_field_insert(m, 0, "X", "x"), 0);
    assert_int_equal(msg_segments(m, iov, 8), 2);
    assert_ptr_equal(iov[1].iov_base, in);
    assert_int_equal(iov[1].iov_len, sizeof(in) - 1);

    /* a field deleted in the middle: two runs of the original */
    msg_free(m);
    m = msg_parse(in, sizeof(in) - 1);
    assert_int_equal(msg_field_delete(m, 1), 0);
    assert_int_equal(msg_segments(m, iov, 8), 2);
    assert_ptr_equal(iov[0].iov_base, in);
    assert_int_equal(iov[0].iov_len, 6);
    assert_ptr_equal(iov[1].iov_base, in + 12);

    /* body replaced: the header + separator as one run, then the body */
    msg_free(m);
    m = msg_parse(in, sizeof(in) - 1);
    assert_int_equal(msg_body_replace(m, "new", 3), 0);
    assert_int_equal(msg_segments(m, iov, 8), 2);
    assert_ptr_equal(iov[0].iov_base, in);
    assert_int_equal(iov[0].iov_len, 20);
    assert_mem_eq(iov[1].iov_base, iov[1].iov_len, "new\r\n", 5);

    /* many edits, 3 iovecs: the header is rendered in one piece */
    assert_int_equal(msg_field_change(m, 0, "a"), 0);
    assert_int_equal(msg_field_change(m, 2, "c"), 0);
    assert_int_equal(msg_segments(m, iov, 3), 3);
    assert_mem_eq(iov[0].iov_base, iov[0].iov_len, "A: a\r\nB: 2\r\nC: c\r\n", 18);
    assert_ptr_equal(iov[1].iov_base, in + 18);
    assert_mem_eq(iov[2].iov_base, iov[2].iov_len, "new\r\n", 5);

    /* render is cached until the next edit */
    const char *r1, *r2;
    size_t l1, l2;
    msg_render(m, &r1, &l1);
    msg_render(m, &r2, &l2);
    assert_ptr_equal(r1, r2);
    assert_mem_eq(r1, l1, "A: a\r\nB: 2\r\nC: c\r\n\r\nnew\r\n", 25);
    assert_int_equal(msg_field_delete(m, 1), 0);
    msg_render(m, &r2, &l2);
    assert_mem_eq(r2, l2, "A: a\r\nC: c\r\n\r\nnew\r\n", 19);
    msg_free(m);
}

/* ---- random edits vs a reference model ----------------------------------- */

/* The model: a list of raw field strings + the body. */
struct model {
    char *raw[64];
    size_t name_len[64];
    size_t n;
    buf_t body;
    const char *sep;
    bool has_sep;
    bool body_replaced;
};

static uint32_t rng_state = 12345;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state % n;
}

static char *dupn(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static char *make_raw(const char *name, size_t nlen, const char *value)
{
    buf_t b = BUF_INIT;
    buf_append(&b, name, nlen);
    buf_printf(&b, ": %s\r\n", value);
    return b.ptr;
}

static void model_check(struct msg *m, struct model *md)
{
    buf_t want = BUF_INIT, got = BUF_INIT;

    assert_int_equal(msg_field_count(m), md->n);
    for (size_t i = 0; i < md->n; i++) {
        const struct msg_field *f = msg_field_at(m, i);
        assert_mem_eq(f->raw, f->raw_len, md->raw[i], strlen(md->raw[i]));
        assert_mem_eq(f->name, f->name_len, md->raw[i], md->name_len[i]);
        buf_append(&want, md->raw[i], strlen(md->raw[i]));
    }
    if (md->has_sep)
        buf_puts(&want, md->sep);
    else if (md->body_replaced && md->body.len > 0)
        buf_puts(&want, "\r\n");
    buf_append(&want, md->body.ptr ? md->body.ptr : "", md->body.len);
    check_output(m, &got);
    assert_mem_eq(got.ptr ? got.ptr : "", got.len, want.ptr ? want.ptr : "", want.len);
    check_reparse(m);
    buf_free(&want);
    buf_free(&got);
}

static void test_random_model(void **state)
{
    (void)state;
    static const char *const bases[] = {
        "Received: from a\r\n\tby b\r\nFrom: x@example.com\r\nSubject: s\r\n\r\nBody\r\n",
        "A: 1\nB: 2\n  cont\n\nlf body\n",
        "",
        "\r\n",
        "A: 1\r\nnot a field\r\nmore\r\n",
        "Only: header\r\n",
    };
    static const char *const names[] = {"X-A", "x-b", "Subject", "DKIM-Signature", "To"};
    static const char *const words[] = {"alpha", "b", "c@d.e", "<x>", "caf\xc3\xa9", "1234"};
    static const struct {
        const char *in, *canon;
    } bodies[] = {
        {"", ""}, {"x", "x\r\n"}, {"a\nb\n", "a\r\nb\r\n"}, {"a\r\n\r\n", "a\r\n\r\n"},
        {"\rz", "\r\nz\r\n"}, {"A: looks like a header\n", "A: looks like a header\r\n"},
    };

    for (int iter = 0; iter < 300; iter++) {
        const char *in = bases[rnd(COUNT(bases))];
        struct msg *m = msg_parse(in, strlen(in));
        struct model md = {.n = 0};
        const char *b;
        size_t blen;

        assert_non_null(m);
        for (size_t i = 0; i < msg_field_count(m); i++) {
            const struct msg_field *f = msg_field_at(m, i);
            md.raw[md.n] = dupn(f->raw, f->raw_len);
            md.name_len[md.n++] = f->name_len;
        }
        msg_body(m, &b, &blen);
        buf_append(&md.body, b, blen);
        md.has_sep = msg_has_separator(m);
        md.sep = strstr(in, "\n\n") ? "\n" : "\r\n";

        for (int step = 0; step < 15; step++) {
            char value[128];
            size_t vl = 0;
            int nw = 1 + (int)rnd(5);
            for (int w = 0; w < nw; w++)
                vl += (size_t)snprintf(value + vl, sizeof(value) - vl, "%s%s", w ? " " : "",
                                       words[rnd(COUNT(words))]);
            const char *name = names[rnd(COUNT(names))];
            int op = (int)rnd(5);

            if (op == 0 && md.n < 60) {
                assert_int_equal(msg_field_add(m, name, value), 0);
                md.raw[md.n] = make_raw(name, strlen(name), value);
                md.name_len[md.n++] = strlen(name);
            } else if (op == 1 && md.n < 60) {
                size_t at = rnd((uint32_t)md.n + 1);
                assert_int_equal(msg_field_insert(m, at, name, value), 0);
                memmove(&md.raw[at + 1], &md.raw[at], (md.n - at) * sizeof(md.raw[0]));
                memmove(&md.name_len[at + 1], &md.name_len[at], (md.n - at) * sizeof(size_t));
                md.raw[at] = make_raw(name, strlen(name), value);
                md.name_len[at] = strlen(name);
                md.n++;
            } else if (op == 2 && md.n > 0) {
                size_t at = rnd((uint32_t)md.n);
                assert_int_equal(msg_field_change(m, at, value), 0);
                char *nr = make_raw(md.raw[at], md.name_len[at], value);
                free(md.raw[at]);
                md.raw[at] = nr;
            } else if (op == 3 && md.n > 0) {
                size_t at = rnd((uint32_t)md.n);
                assert_int_equal(msg_field_delete(m, at), 0);
                free(md.raw[at]);
                memmove(&md.raw[at], &md.raw[at + 1], (md.n - at - 1) * sizeof(md.raw[0]));
                memmove(&md.name_len[at], &md.name_len[at + 1], (md.n - at - 1) * sizeof(size_t));
                md.n--;
            } else if (op == 4) {
                size_t k = rnd(COUNT(bodies));
                assert_int_equal(msg_body_replace(m, bodies[k].in, strlen(bodies[k].in)), 0);
                buf_reset(&md.body);
                buf_puts(&md.body, bodies[k].canon);
                md.body_replaced = true;
            }
            /* out-of-range indexes are refused without effect */
            assert_int_equal(msg_field_change(m, md.n, "x"), -ENOENT);
            assert_int_equal(msg_field_delete(m, md.n + 1), -ENOENT);
            assert_int_equal(msg_field_insert(m, md.n + 1, "X", "x"), -EINVAL);
            model_check(m, &md);
        }
        for (size_t i = 0; i < md.n; i++)
            free(md.raw[i]);
        buf_free(&md.body);
        msg_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_shapes),
        cmocka_unit_test(test_parse_many_fields),
        cmocka_unit_test(test_parse_null),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_unfold),
        cmocka_unit_test(test_edits_golden),
        cmocka_unit_test(test_edited_field_view),
        cmocka_unit_test(test_fold_golden),
        cmocka_unit_test(test_fold_long_lists),
        cmocka_unit_test(test_fold_998),
        cmocka_unit_test(test_segments_zero_copy),
        cmocka_unit_test(test_random_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
