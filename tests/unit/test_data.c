/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for smtp_data: the DATA reader (table, every split point,
 * byte by byte, against a naive reference model), and dot-stuffing
 * (table, chunking, random round trips through the reader).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- helpers --------------------------------------------------------- */

struct sink {
    char *p;
    size_t len, cap;
    size_t calls;
    int fail_at; /* return -1 on this call number (1-based), 0 = never */
};

static int sink_fn(void *ctx, const char *p, size_t n)
{
    struct sink *s = ctx;

    s->calls++;
    if (s->fail_at != 0 && (int)s->calls >= s->fail_at)
        return -1;
    assert_true(n > 0);
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2 + 64;
        s->p = realloc(s->p, s->cap);
        assert_non_null(s->p);
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    return 0;
}

static void sink_free(struct sink *s)
{
    free(s->p);
    memset(s, 0, sizeof(*s));
}

struct result {
    struct sink out;
    size_t consumed;
    bool done;
    unsigned errors;
    uint64_t header_end, lines, out_bytes;
    bool has_8bit;
};

/* Feed in[0..len): split == 0 means all at once, split == SIZE_MAX byte by
 * byte, otherwise two pieces at `split`. Stops feeding once done. */
static void run(const char *in, size_t len, const struct data_limits *lim, size_t split,
                struct result *res)
{
    struct data_reader r;
    size_t off = 0;

    memset(res, 0, sizeof(*res));
    data_reader_init(&r, lim, sink_fn, &res->out);
    while (off < len && !data_reader_done(&r)) {
        size_t n = len - off, got;

        if (split == SIZE_MAX)
            n = 1;
        else if (split != 0 && off < split)
            n = split - off;
        got = data_reader_feed(&r, in + off, n);
        assert_true(got <= n);
        if (!data_reader_done(&r))
            assert_int_equal(got, n);
        off += got;
    }
    res->consumed = off;
    res->done = data_reader_done(&r);
    res->errors = data_reader_errors(&r);
    res->header_end = r.header_end;
    res->lines = r.lines;
    res->out_bytes = r.out_bytes;
    res->has_8bit = r.has_8bit;
    /* Feeding after the end consumes nothing. */
    if (res->done)
        assert_int_equal(data_reader_feed(&r, "x", 1), 0);
}

/* memcmp() must not see NULL, even for zero bytes. */
static bool bytes_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void same_result(const struct result *a, const struct result *b, const char *what,
                        size_t where)
{
    if (!bytes_eq(a->out.p, a->out.len, b->out.p, b->out.len))
        fail_msg("%s %zu: output differs", what, where);
    if (a->consumed != b->consumed || a->done != b->done || a->errors != b->errors ||
        a->header_end != b->header_end || a->lines != b->lines || a->has_8bit != b->has_8bit ||
        a->out_bytes != b->out_bytes)
        fail_msg("%s %zu: state differs (consumed %zu/%zu errors %x/%x)", what, where,
                 a->consumed, b->consumed, a->errors, b->errors);
}

/* Whole input vs. every two-piece split vs. byte by byte. */
static void check_splits(const char *in, size_t len, const struct data_limits *lim,
                         struct result *whole)
{
    struct result r;
    size_t split;

    run(in, len, lim, 0, whole);
    for (split = 1; split < len; split++) {
        run(in, len, lim, split, &r);
        same_result(whole, &r, "split", split);
        sink_free(&r.out);
    }
    run(in, len, lim, SIZE_MAX, &r);
    same_result(whole, &r, "bytewise", 0);
    sink_free(&r.out);
}

static const struct data_limits lim_reject = {
    .max_line = 998, .reject_long_lines = true, .bare = DATA_BARE_REJECT, .reject_nul = true,
};
static const struct data_limits lim_norm = {
    .max_line = 998, .reject_long_lines = true, .bare = DATA_BARE_NORMALIZE, .reject_nul = true,
};

/* ---- reader table ---------------------------------------------------- */

struct rd_case {
    const char *in;
    size_t in_len;
    const char *out;
    size_t out_len;
    size_t consumed;
    bool done;
    unsigned err_reject; /* errors under DATA_BARE_REJECT; NORMALIZE gets none of BARE_NL */
};

#define RD(in, out, consumed, done, err) {in, sizeof(in) - 1, out, sizeof(out) - 1, consumed, done, err}

static void test_reader_table(void **state)
{
    static const struct rd_case t[] = {
        RD(".\r\n", "", 3, true, 0),
        RD(".\r\nQUIT\r\n", "", 3, true, 0),
        RD("a\r\n.\r\n", "a\r\n", 6, true, 0),
        RD("a\r\n.\r\nQUIT\r\n", "a\r\n", 6, true, 0),
        RD("..x\r\n.\r\n", ".x\r\n", 8, true, 0),
        RD("..\r\n.\r\n", ".\r\n", 7, true, 0),
        RD(". \r\n.\r\n", " \r\n", 7, true, 0),
        RD(".x\r\n.\r\n", "x\r\n", 7, true, 0),
        RD("a\r\n..\r\n...\r\n.\r\n", "a\r\n.\r\n..\r\n", 15, true, 0),
        RD("\r\n.\r\n", "\r\n", 5, true, 0),
        RD("a.\r\n.\r\n", "a.\r\n", 7, true, 0),
        /* never an end: LF.LF, CR.CR, LF.CRLF, CRLF.LF, ".\r\r\n" */
        RD("a\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 10, true, DATA_ERR_BARE_NL),
        RD("a\r.\rb\r\n.\r\n", "a\r\n.\r\nb\r\n", 10, true, DATA_ERR_BARE_NL),
        RD("a\n.\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 11, true, DATA_ERR_BARE_NL),
        RD("a\r\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 11, true, DATA_ERR_BARE_NL),
        RD("a\r\n.\r\r\n.\r\n", "a\r\n.\r\n\r\n", 10, true, DATA_ERR_BARE_NL),
        RD(".\n.\r\n", ".\r\n.\r\n", 5, false, DATA_ERR_BARE_NL),
        RD("\n.\r\n.\r\n", "\r\n.\r\n", 7, true, DATA_ERR_BARE_NL),
        /* smuggling attempt: the second message stays content */
        RD("a\r\n\n.\r\nMAIL FROM:<x@y>\r\n.\r\n", "a\r\n\r\n.\r\nMAIL FROM:<x@y>\r\n", 27,
           true, DATA_ERR_BARE_NL),
        /* a literal CRLF.CRLF after a bare CR is a real end */
        RD("a\r\r\n.\r\nX", "a\r\n\r\n", 7, true, DATA_ERR_BARE_NL),
        RD("a\n\r\n.\r\nX", "a\r\n\r\n", 7, true, DATA_ERR_BARE_NL),
        /* bare CR / LF inside lines */
        RD("a\rb\r\n.\r\n", "a\r\nb\r\n", 8, true, DATA_ERR_BARE_NL),
        RD("a\nb\r\n.\r\n", "a\r\nb\r\n", 8, true, DATA_ERR_BARE_NL),
        RD("\n\r\n.\r\n", "\r\n\r\n", 6, true, DATA_ERR_BARE_NL),
        RD("\r\r\n.\r\n", "\r\n\r\n", 6, true, DATA_ERR_BARE_NL),
        RD("..\n.\r\n", ".\r\n.\r\n", 6, false, DATA_ERR_BARE_NL),
        RD("\n..x\r\n.\r\n", "\r\n.x\r\n", 9, true, DATA_ERR_BARE_NL),
        /* not finished */
        RD("a\r\nb", "a\r\nb", 4, false, 0),
        RD("a\r\n.", "a\r\n", 4, false, 0),
        RD("a\r\n.\r", "a\r\n", 5, false, 0),
        RD("a\r\n", "a\r\n", 3, false, 0),
        RD("a\r", "a\r", 2, false, 0),
        RD("", "", 0, false, 0),
        /* NUL */
        RD("a\0b\r\n.\r\n", "a\0b\r\n", 8, true, DATA_ERR_NUL),
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int pol;

        for (pol = 0; pol < 2; pol++) {
            const struct data_limits *lim = pol == 0 ? &lim_reject : &lim_norm;
            unsigned want_err = pol == 0 ? t[i].err_reject : t[i].err_reject & ~DATA_ERR_BARE_NL;
            struct result res;

            check_splits(t[i].in, t[i].in_len, lim, &res);
            if (!bytes_eq(res.out.p, res.out.len, t[i].out, t[i].out_len))
                fail_msg("case %zu pol %d: output '%.*s' (%zu), want '%s' (%zu)", i, pol,
                         (int)res.out.len, res.out.p ? res.out.p : "", res.out.len, t[i].out,
                         t[i].out_len);
            if (res.consumed != t[i].consumed || res.done != t[i].done)
                fail_msg("case %zu pol %d: consumed %zu done %d, want %zu %d", i, pol,
                         res.consumed, res.done, t[i].consumed, t[i].done);
            if (res.errors != want_err)
                fail_msg("case %zu pol %d: errors %#x, want %#x", i, pol, res.errors, want_err);
            assert_int_equal(res.out_bytes, t[i].out_len);
            sink_free(&res.out);
        }
    }
}

static void test_reader_limits(void **state)
{
    struct data_limits lim = lim_reject;
    struct result res;

    (void)state;
    /* Long lines: max_line 5 */
    lim.max_line = 5;
    check_splits(S("12345\r\n.\r\n"), &lim, &res);
    assert_int_equal(res.errors, 0);
    sink_free(&res.out);
    check_splits(S("123456\r\n.\r\n"), &lim, &res);
    assert_int_equal(res.errors, DATA_ERR_LINE_TOO_LONG);
    sink_free(&res.out);
    check_splits(S("..2345\r\n.\r\n"), &lim, &res); /* 5 after unstuffing */
    assert_int_equal(res.errors, 0);
    sink_free(&res.out);
    lim.reject_long_lines = false;
    check_splits(S("1234567890\r\n.\r\n"), &lim, &res);
    assert_int_equal(res.errors, 0);
    assert_int_equal(res.out.len, 12);
    assert_memory_equal(res.out.p, "1234567890\r\n", 12);
    sink_free(&res.out);

    /* NUL allowed when not rejected */
    lim = lim_reject;
    lim.reject_nul = false;
    check_splits(S("a\0\r\n.\r\n"), &lim, &res);
    assert_int_equal(res.errors, 0);
    assert_int_equal(res.out.len, 4);
    sink_free(&res.out);

    /* Header section size and end */
    lim = lim_reject;
    check_splits(S("A: b\r\nC: d\r\n\r\nbody\r\n.\r\n"), &lim, &res);
    assert_int_equal(res.header_end, 14);
    assert_int_equal(res.lines, 4);
    assert_int_equal(res.errors, 0);
    sink_free(&res.out);
    lim.max_header = 12;
    check_splits(S("A: b\r\nC: d\r\n\r\nbody\r\n.\r\n"), &lim, &res);
    assert_int_equal(res.errors, 0);
    sink_free(&res.out);
    lim.max_header = 11;
    check_splits(S("A: b\r\nC: d\r\n\r\nbody\r\n.\r\n"), &lim, &res);
    assert_int_equal(res.errors, DATA_ERR_HEADER_TOO_BIG);
    sink_free(&res.out);
    /* no blank line: no header end */
    lim = lim_reject;
    check_splits(S("A: b\r\n.\r\n"), &lim, &res);
    assert_int_equal(res.header_end, 0);
    sink_free(&res.out);
    check_splits(S("\r\nbody\r\n.\r\n"), &lim, &res);
    assert_int_equal(res.header_end, 2);
    sink_free(&res.out);

    /* 8-bit */
    check_splits(S("A: b\r\n\r\nk\xc3\xa4se\r\n.\r\n"), &lim, &res);
    assert_true(res.has_8bit);
    sink_free(&res.out);
    check_splits(S("A: b\r\n\r\nkaese and a long line of text\r\n.\r\n"), &lim, &res);
    assert_false(res.has_8bit);
    sink_free(&res.out);
}

static void test_reader_max_size(void **state)
{
    static const char msg[] = "0123456789\r\nabcdefghij\r\n.\r\nNEXT";
    size_t len = sizeof(msg) - 1, split;
    struct data_limits lim = lim_reject;

    (void)state;
    for (lim.max_size = 20; lim.max_size <= 26; lim.max_size++) {
        for (split = 0; split <= len; split++) {
            struct result res;

            run(msg, len, &lim, split == len ? SIZE_MAX : split, &res);
            /* Scanning goes on to the terminator whatever the size. */
            assert_true(res.done);
            assert_int_equal(res.consumed, len - 4);
            assert_int_equal(res.out_bytes, 24);
            if (lim.max_size < 24) {
                assert_int_equal(res.errors, DATA_ERR_TOO_BIG);
                /* what reached the sink is a prefix, within the limit */
                assert_true(res.out.len <= lim.max_size);
                if (res.out.len > 0)
                    assert_memory_equal(res.out.p, msg, res.out.len);
            } else {
                assert_int_equal(res.errors, 0);
                assert_int_equal(res.out.len, 24);
            }
            sink_free(&res.out);
        }
    }
}

static void test_reader_sink_error(void **state)
{
    static const char msg[] = "a\n.b\r\n..\r\nc\r\n.\r\n";
    struct data_reader r;
    struct sink s = {0};
    size_t got;

    (void)state;
    s.fail_at = 2;
    data_reader_init(&r, &lim_norm, sink_fn, &s);
    got = data_reader_feed(&r, msg, sizeof(msg) - 1);
    assert_int_equal(got, sizeof(msg) - 1);
    assert_true(data_reader_done(&r));
    assert_int_equal(data_reader_errors(&r), DATA_ERR_SINK);
    assert_int_equal(s.calls, 2); /* never called again after the failure */
    sink_free(&s);
}

/* Bulk text goes out as one chunk per feed, not per line. */
static void test_reader_chunking(void **state)
{
    char msg[8192];
    size_t len = 0;
    struct data_reader r;
    struct sink s = {0};
    int i;

    (void)state;
    for (i = 0; i < 100; i++)
        len += (size_t)snprintf(msg + len, sizeof(msg) - len, "line %d of the message\r\n", i);
    memcpy(msg + len, ".\r\n", 3);
    data_reader_init(&r, &lim_reject, sink_fn, &s);
    assert_int_equal(data_reader_feed(&r, msg, len + 3), len + 3);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.len, len);
    assert_int_equal(r.lines, 100);
    sink_free(&s);
}

/* ---- reference model ------------------------------------------------- */

/* The rules written the slow, obvious way: find the first CRLF.CRLF in
 * "\r\n" + in; split the content at CRLF, bare LF, bare CR; a line that
 * starts with "." and has more loses the dot. */
static bool ref_run(const char *in, size_t len, struct sink *out, size_t *consumed,
                    bool *bare, uint64_t *lines, uint64_t *header_end)
{
    size_t k, i = 0, cend;
    bool found = false, in_header = true;
    uint64_t pos = 0;

    for (k = 0; k + 3 <= len + 2; k++) {
        /* S[k..k+5) with S = "\r\n" + in */
        char w[5];
        size_t j;

        for (j = 0; j < 5; j++) {
            size_t si = k + j;
            w[j] = si < 2 ? "\r\n"[si] : (si - 2 < len ? in[si - 2] : '\0');
        }
        if (k + 5 <= len + 2 && memcmp(w, "\r\n.\r\n", 5) == 0) {
            found = true;
            break;
        }
    }
    if (!found)
        return false;
    *consumed = k + 3;
    cend = k; /* content is in[0..k) */
    *bare = false;
    *lines = 0;
    *header_end = 0;
    while (i < cend) {
        size_t start = i, end_of_line, next;

        while (i < cend && in[i] != '\r' && in[i] != '\n')
            i++;
        end_of_line = i;
        if (in[i] == '\r' && i + 1 < cend && in[i + 1] == '\n')
            next = i + 2;
        else {
            *bare = true;
            next = i + 1;
        }
        if (end_of_line - start > 1 && in[start] == '.')
            start++;
        if (end_of_line > start)
            sink_fn(out, in + start, end_of_line - start);
        sink_fn(out, "\r\n", 2);
        pos += end_of_line - start + 2;
        (*lines)++;
        if (in_header && end_of_line == start) {
            in_header = false;
            *header_end = pos;
        }
        i = next;
    }
    return true;
}

static void test_reader_vs_reference(void **state)
{
    static const char alpha[] = "\r\n.a\r\n.";
    char in[48];
    unsigned seed = 12345;
    int iter;

    (void)state;
    for (iter = 0; iter < 3000; iter++) {
        size_t len = (size_t)(rand_r(&seed) % 40), i;
        struct result res;
        struct sink ref = {0};
        size_t ref_consumed = 0;
        bool bare = false;
        uint64_t lines = 0, hend = 0;

        for (i = 0; i < len; i++)
            in[i] = alpha[rand_r(&seed) % (sizeof(alpha) - 1)];
        memcpy(in + len, "\r\n.\r\n", 5); /* always terminated */
        len += 5;
        check_splits(in, len, &lim_reject, &res);
        assert_true(ref_run(in, len, &ref, &ref_consumed, &bare, &lines, &hend));
        if (!bytes_eq(res.out.p, res.out.len, ref.p, ref.len) ||
            res.consumed != ref_consumed)
            fail_msg("iter %d: output/consumed differ from the reference", iter);
        assert_int_equal(!!(res.errors & DATA_ERR_BARE_NL), bare);
        assert_int_equal(res.lines, lines);
        assert_int_equal(res.header_end, hend);
        sink_free(&res.out);
        /* NORMALIZE: same output, no error */
        check_splits(in, len, &lim_norm, &res);
        assert_int_equal(res.out.len, ref.len);
        assert_int_equal(res.errors, 0);
        sink_free(&res.out);
        sink_free(&ref);
    }
}

/* ---- data_stuff ------------------------------------------------------ */

static void stuff_all(const char *in, size_t len, size_t chunk, struct sink *out)
{
    bool bol = true;
    size_t off = 0;

    while (off < len) {
        size_t n = chunk == 0 || len - off < chunk ? len - off : chunk;
        assert_int_equal(data_stuff(in + off, n, &bol, sink_fn, out), 0);
        off += n;
    }
    assert_int_equal(data_stuff_end(bol, sink_fn, out), 0);
}

static void test_stuff_table(void **state)
{
    static const struct {
        const char *in, *want;
        size_t calls; /* sink calls incl. the end, when stuffed in one piece */
    } t[] = {
        {"", ".\r\n", 1},
        {"a\r\n", "a\r\n.\r\n", 2},
        {"a", "a\r\n.\r\n", 2},
        {".\r\n", "..\r\n.\r\n", 3},
        {"a\r\nb\r\nc\r\n", "a\r\nb\r\nc\r\n.\r\n", 2},
        {"a\r\n.b\r\nc\r\n", "a\r\n..b\r\nc\r\n.\r\n", 4},
        {"a\r\n.b\r\n..\r\n", "a\r\n..b\r\n...\r\n.\r\n", 6},
        {"a.b\r\n", "a.b\r\n.\r\n", 2},
        {"x\n.\r\n", "x\n..\r\n.\r\n", 4}, /* defensive: LF starts a line */
    };
    size_t i, chunk;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        for (chunk = 0; chunk <= 4; chunk++) {
            struct sink s = {0};

            stuff_all(t[i].in, strlen(t[i].in), chunk, &s);
            if (!bytes_eq(s.p, s.len, t[i].want, strlen(t[i].want)))
                fail_msg("case %zu chunk %zu: got '%.*s', want '%s'", i, chunk, (int)s.len,
                         s.p, t[i].want);
            if (chunk == 0 && s.calls != t[i].calls)
                fail_msg("case %zu: %zu sink calls, want %zu", i, s.calls, t[i].calls);
            sink_free(&s);
        }
    }
}

static void test_stuff_sink_error(void **state)
{
    struct sink s = {0};
    bool bol = true;

    (void)state;
    s.fail_at = 2;
    assert_int_equal(data_stuff(S("a\r\n.b\r\n"), &bol, sink_fn, &s), -1);
    assert_int_equal(s.calls, 2);
    sink_free(&s);
}

/* Random canonical messages -> stuff -> reader -> the same message. */
static void test_roundtrip(void **state)
{
    static const char alpha[] = "..a b\t\xe9";
    unsigned seed = 4242;
    int iter;

    (void)state;
    for (iter = 0; iter < 2000; iter++) {
        char msg[512];
        size_t len = 0, nlines = (size_t)(rand_r(&seed) % 12), l, split;
        bool unterminated = rand_r(&seed) % 5 == 0;
        struct sink wire = {0};
        struct result res;

        for (l = 0; l < nlines; l++) {
            size_t ll = (size_t)(rand_r(&seed) % 8), c;
            for (c = 0; c < ll; c++)
                msg[len++] = alpha[rand_r(&seed) % (sizeof(alpha) - 1)];
            msg[len++] = '\r';
            msg[len++] = '\n';
        }
        if (unterminated) {
            msg[len++] = '.';
            msg[len++] = 'z';
        }
        stuff_all(msg, len, (size_t)(rand_r(&seed) % 5), &wire);
        /* Pipelined next command after the data. */
        sink_fn(&wire, "QUIT\r\n", 6);
        split = (size_t)rand_r(&seed) % (wire.len + 1);
        run(wire.p, wire.len, &lim_reject, split, &res);
        assert_true(res.done);
        assert_int_equal(res.consumed, wire.len - 6);
        assert_int_equal(res.errors, 0);
        if (unterminated) {
            msg[len++] = '\r';
            msg[len++] = '\n';
        }
        if (!bytes_eq(res.out.p, res.out.len, msg, len))
            fail_msg("iter %d: round trip differs", iter);
        sink_free(&res.out);
        sink_free(&wire);
    }
}

/* ---- chunked mode (BDAT) ---------------------------------------------- */

/* Feed in[0..len) in chunked mode, in two pieces at `split` (0: one piece;
 * SIZE_MAX: byte by byte), then finish. */
static void run_chunked(const char *in, size_t len, const struct data_limits *lim, size_t split,
                        struct result *res)
{
    struct data_reader r;
    size_t off = 0;

    memset(res, 0, sizeof(*res));
    data_reader_init_chunked(&r, lim, sink_fn, &res->out);
    while (off < len) {
        size_t n = len - off;
        if (split == SIZE_MAX)
            n = 1;
        else if (split != 0 && off < split)
            n = split - off;
        /* Nothing in the content ends a chunked message. */
        assert_int_equal(data_reader_feed(&r, in + off, n), n);
        assert_false(data_reader_done(&r));
        off += n;
    }
    data_reader_finish(&r);
    data_reader_finish(&r); /* idempotent */
    res->consumed = off;
    res->done = data_reader_done(&r);
    res->errors = data_reader_errors(&r);
    res->header_end = r.header_end;
    res->lines = r.lines;
    res->out_bytes = r.out_bytes;
    res->has_8bit = r.has_8bit;
    assert_true(res->done);
    assert_int_equal(data_reader_feed(&r, "x", 1), 0);
}

static void test_chunked_table(void **state)
{
    static const struct {
        const char *in;
        bool normalize;
        const char *want;
        unsigned errors;
    } t[] = {
        {"", false, "", 0},
        {"a\r\n", false, "a\r\n", 0},
        {"a", false, "a\r\n", 0}, /* the last line gets its CR LF */
        /* Dots are content: no unstuffing, no end of data. */
        {".\r\n", false, ".\r\n", 0},
        {"a\r\n.\r\nMAIL FROM:<x@y>\r\n", false, "a\r\n.\r\nMAIL FROM:<x@y>\r\n", 0},
        {"..x\r\n.\r\n", false, "..x\r\n.\r\n", 0},
        {".", false, ".\r\n", 0},
        /* Bare LF / bare CR: DATA's policy, DATA's normalisation. */
        {"a\nb\r\n", false, "a\r\nb\r\n", DATA_ERR_BARE_NL},
        {"a\nb\r\n", true, "a\r\nb\r\n", 0},
        {"a\rb\r\n", true, "a\r\nb\r\n", 0},
        {"x\n.\n", false, "x\r\n.\r\n", DATA_ERR_BARE_NL},
        {"x\n.\n", true, "x\r\n.\r\n", 0},
        {"x\r\n.\r", false, "x\r\n.\r\n", DATA_ERR_BARE_NL}, /* CR at the very end */
        {"x\r", true, "x\r\n", 0},
        {"a\0b\r\n", false, "a\0b\r\n", DATA_ERR_NUL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        /* The NUL case has an explicit length. */
        size_t len = i == sizeof t / sizeof t[0] - 1 ? 5 : strlen(t[i].in);
        size_t wlen = i == sizeof t / sizeof t[0] - 1 ? 5 : strlen(t[i].want);
        struct result whole, r;
        run_chunked(t[i].in, len, t[i].normalize ? &lim_norm : &lim_reject, 0, &whole);
        if (!bytes_eq(whole.out.p, whole.out.len, t[i].want, wlen) || whole.errors != t[i].errors)
            fail_msg("case %zu: got '%.*s' errors %x, want '%s' %x", i, (int)whole.out.len,
                     whole.out.p ? whole.out.p : "", whole.errors, t[i].want, t[i].errors);
        /* Chunk boundaries anywhere (a CR LF split across chunks is one
         * CR LF) change nothing. */
        for (size_t split = 1; split < len; split++) {
            run_chunked(t[i].in, len, t[i].normalize ? &lim_norm : &lim_reject, split, &r);
            same_result(&whole, &r, "chunked split", split);
            sink_free(&r.out);
        }
        run_chunked(t[i].in, len, t[i].normalize ? &lim_norm : &lim_reject, SIZE_MAX, &r);
        same_result(&whole, &r, "chunked bytewise", i);
        sink_free(&r.out);
        sink_free(&whole.out);
    }
}

/* The canonical message and every count (lines, header end, size, 8-bit,
 * errors) are the same whether the text came by BDAT or, stuffed, by
 * DATA; also with bare line ends and limits in play. */
/* BODY=BINARYMIME: the header section by the line rules, then the body
 * byte for byte, whatever the split; nothing added at the end. */
static void test_binary_body(void **state)
{
    static const char in[] = "Subject: b\r\n\r\n\0\n.\r\n\r.\r\r\nx";
    const size_t len = sizeof in - 1, head = 14;
    (void)state;
    for (size_t split = 0; split <= len; split++) {
        struct data_reader r;
        struct sink out = {0};
        data_reader_init_chunked(&r, &lim_reject, sink_fn, &out);
        data_reader_set_binary(&r);
        assert_int_equal(data_reader_feed(&r, in, split), split);
        assert_int_equal(data_reader_feed(&r, in + split, len - split), len - split);
        data_reader_finish(&r);
        assert_true(data_reader_done(&r));
        assert_int_equal(data_reader_errors(&r), 0);
        assert_int_equal(r.header_end, head);
        assert_true(bytes_eq(out.p, out.len, in, len));
        sink_free(&out);
    }
    /* A bare LF in the header section is still one. */
    struct data_reader r;
    struct sink out = {0};
    data_reader_init_chunked(&r, &lim_reject, sink_fn, &out);
    data_reader_set_binary(&r);
    static const char bare[] = "A: 1\nB: 2\r\n\r\n\n";
    data_reader_feed(&r, bare, sizeof bare - 1);
    data_reader_finish(&r);
    assert_int_equal(data_reader_errors(&r), DATA_ERR_BARE_NL);
    sink_free(&out);
    /* The size limit holds in the body. */
    struct data_limits small = lim_reject;
    small.max_size = 10;
    struct sink out2 = {0};
    data_reader_init_chunked(&r, &small, sink_fn, &out2);
    data_reader_set_binary(&r);
    static const char big[] = "A: 1\r\n\r\n0123456789";
    data_reader_feed(&r, big, sizeof big - 1);
    data_reader_finish(&r);
    assert_true(data_reader_errors(&r) & DATA_ERR_TOO_BIG);
    sink_free(&out2);
}

static void test_chunked_same_as_data(void **state)
{
    static const char alpha[] = "..a b\t\xe9\n\r";
    unsigned seed = 777;
    struct data_limits lims[3] = {lim_reject, lim_norm, lim_reject};

    (void)state;
    lims[2].max_line = 6;
    lims[2].max_header = 20;
    lims[2].max_size = 40;
    for (int iter = 0; iter < 3000; iter++) {
        char msg[256];
        size_t len = 0, nlines = (size_t)(rand_r(&seed) % 10);
        const struct data_limits *lim = &lims[iter % 3];
        struct sink wire = {0};
        struct result viadata, viabdat;
        bool bol = true;

        for (size_t l = 0; l < nlines; l++) {
            size_t ll = (size_t)(rand_r(&seed) % 9);
            for (size_t c = 0; c < ll; c++)
                msg[len++] = alpha[rand_r(&seed) % (sizeof(alpha) - 1)];
            msg[len++] = '\r';
            msg[len++] = '\n';
        }
        /* DATA: the wire form a client would send, a dot stuffed at every
         * line start the DATA reader sees (after CR LF, a bare LF or a
         * bare CR); every line ends in CR LF, so ".\r\n" ends it. */
        for (size_t i = 0; i < len; i++) {
            if (bol && msg[i] == '.')
                sink_fn(&wire, ".", 1);
            sink_fn(&wire, &msg[i], 1);
            bol = msg[i] == '\n' || (msg[i] == '\r' && !(i + 1 < len && msg[i + 1] == '\n'));
        }
        sink_fn(&wire, ".\r\n", 3);
        run(wire.p, wire.len, lim, 0, &viadata);
        assert_true(viadata.done);
        run_chunked(msg, len, lim, len ? (size_t)rand_r(&seed) % len : 0, &viabdat);
        viabdat.consumed = viadata.consumed;
        if (viadata.errors & DATA_ERR_TOO_BIG) {
            /* Output stops at a piece boundary, and pieces differ; it is
             * thrown away anyway. The counts must still agree. */
            sink_free(&viadata.out);
            sink_free(&viabdat.out);
        }
        same_result(&viadata, &viabdat, "bdat vs data", (size_t)iter);
        sink_free(&viadata.out);
        sink_free(&viabdat.out);
        sink_free(&wire);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_table),
        cmocka_unit_test(test_reader_limits),
        cmocka_unit_test(test_reader_max_size),
        cmocka_unit_test(test_reader_sink_error),
        cmocka_unit_test(test_reader_chunking),
        cmocka_unit_test(test_reader_vs_reference),
        cmocka_unit_test(test_stuff_table),
        cmocka_unit_test(test_stuff_sink_error),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_chunked_table),
        cmocka_unit_test(test_chunked_same_as_data),
        cmocka_unit_test(test_binary_body),
    };

    return cmocka_run_group_tests_name("smtp_data", tests, NULL, NULL);
}
