/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz smtp_data. Invariants:
 *  - the reader consumes at most len, and all of it unless done;
 *  - done exactly at the first CRLF "." CRLF of ("\r\n" + input);
 *  - feeding whole, byte by byte, or in two pieces gives identical results;
 *  - the canonical output has only CRLF line ends;
 *  - stuffing the output and reading it back gives it back, ending exactly
 *    at the end of the stuffed text;
 *  - stuffing arbitrary bytes never yields an early end of data;
 *  - chunked mode (BDAT): consumes everything, never ends by itself; the
 *    same results whole, byte by byte or in two pieces; only CRLF line
 *    ends, the message ends with one; stuffed for DATA, it is read back
 *    whole, ending exactly at the end (no smuggled end of data).
 */
#include "fuzz.h"

#include <string.h>

#include "data.h"

#define FUZZ_OUT_MAX (1u << 20)

struct out {
    char *p;
    size_t len, cap;
    size_t calls;
};

static int out_sink(void *ctx, const char *p, size_t n)
{
    struct out *o = ctx;

    FUZZ_CHECK(n > 0);
    o->calls++;
    if (o->len + n > o->cap) {
        size_t cap = (o->len + n) * 2;
        char *q = realloc(o->p, cap);

        FUZZ_CHECK(q != NULL);
        o->p = q;
        o->cap = cap;
    }
    memcpy(o->p + o->len, p, n);
    o->len += n;
    return 0;
}

struct run {
    struct out out;
    size_t consumed;
    bool done, has_8bit;
    unsigned errors;
    uint64_t header_end, lines, out_bytes;
};

/* split 0: whole; SIZE_MAX: byte by byte; else two pieces. */
static void run_reader(const char *in, size_t len, const struct data_limits *lim, size_t split,
                       struct run *res)
{
    struct data_reader r;
    size_t off = 0;

    memset(res, 0, sizeof(*res));
    data_reader_init(&r, lim, out_sink, &res->out);
    while (off < len && !r.done) {
        size_t n = len - off, got;

        if (split == SIZE_MAX)
            n = 1;
        else if (split != 0 && off < split)
            n = split - off;
        got = data_reader_feed(&r, in + off, n);
        FUZZ_CHECK(got <= n);
        FUZZ_CHECK(r.done || got == n);
        off += got;
    }
    res->consumed = off;
    res->done = r.done;
    res->errors = r.errors;
    res->header_end = r.header_end;
    res->lines = r.lines;
    res->out_bytes = r.out_bytes;
    res->has_8bit = r.has_8bit;
}

static void run_chunked(const char *in, size_t len, const struct data_limits *lim, size_t split,
                        struct run *res)
{
    struct data_reader r;
    size_t off = 0;

    memset(res, 0, sizeof(*res));
    data_reader_init_chunked(&r, lim, out_sink, &res->out);
    while (off < len) {
        size_t n = len - off;

        if (split == SIZE_MAX)
            n = 1;
        else if (split != 0 && off < split)
            n = split - off;
        FUZZ_CHECK(data_reader_feed(&r, in + off, n) == n);
        FUZZ_CHECK(!r.done);
        off += n;
    }
    data_reader_finish(&r);
    res->consumed = off;
    res->done = r.done;
    res->errors = r.errors;
    res->header_end = r.header_end;
    res->lines = r.lines;
    res->out_bytes = r.out_bytes;
    res->has_8bit = r.has_8bit;
}

/* Once output stopped (TOO_BIG), how much reached the sink depends on the
 * chunking; that part is checked against the unlimited output instead. */
static void same(const struct run *a, const struct run *b)
{
    if (!(a->errors & DATA_ERR_TOO_BIG)) {
        FUZZ_CHECK(a->out.len == b->out.len);
        FUZZ_CHECK(a->out.len == 0 || memcmp(a->out.p, b->out.p, a->out.len) == 0);
    }
    FUZZ_CHECK(a->consumed == b->consumed && a->done == b->done);
    FUZZ_CHECK(a->errors == b->errors && a->header_end == b->header_end);
    FUZZ_CHECK(a->lines == b->lines && a->out_bytes == b->out_bytes);
    FUZZ_CHECK(a->has_8bit == b->has_8bit);
}

/* Offset just past the first CRLF.CRLF in "\r\n" + in, or SIZE_MAX. */
static size_t first_end(const char *in, size_t len)
{
    size_t i;

    if (len >= 3 && memcmp(in, ".\r\n", 3) == 0)
        return 3;
    for (i = 0; i + 5 <= len; i++) {
        if (memcmp(in + i, "\r\n.\r\n", 5) == 0)
            return i + 5;
    }
    return SIZE_MAX;
}

static void stuff(const char *in, size_t len, struct out *wire)
{
    bool bol = true;
    size_t half = len / 2;

    /* An empty message may be a NULL pointer; that must be fine too. */
    FUZZ_CHECK(data_stuff(in, half, &bol, out_sink, wire) == 0);
    if (len > 0)
        FUZZ_CHECK(data_stuff(in + half, len - half, &bol, out_sink, wire) == 0);
    FUZZ_CHECK(data_stuff_end(bol, out_sink, wire) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct data_limits lim;
    struct run whole, other, full = {0};
    struct out wire = {0};
    const char *in;
    size_t len, end, i, split;

    if (size < 2 || size > FUZZ_OUT_MAX)
        return 0;
    /* Two config bytes: policy and limits, small enough to be hit. */
    memset(&lim, 0, sizeof(lim));
    lim.bare = (data[0] & 1) ? DATA_BARE_NORMALIZE : DATA_BARE_REJECT;
    lim.reject_long_lines = (data[0] & 2) != 0;
    lim.reject_nul = (data[0] & 4) != 0;
    lim.max_line = (data[0] >> 3) & 31;
    lim.max_header = (data[1] & 15) * 8;
    lim.max_size = (data[1] >> 4) * 16;
    in = (const char *)data + 2;
    len = size - 2;
    split = len ? data[1] % len : 0;

    run_reader(in, len, &lim, 0, &whole);
    if (whole.errors & DATA_ERR_TOO_BIG) {
        struct data_limits unlimited = lim;

        unlimited.max_size = 0;
        run_reader(in, len, &unlimited, 0, &full);
        FUZZ_CHECK(full.out_bytes == whole.out_bytes && full.out.len == full.out_bytes);
        FUZZ_CHECK(whole.out_bytes > lim.max_size);
    }
    for (i = 0; i < 3; i++) {
        struct run *r = i == 0 ? &whole : &other;

        if (i > 0) {
            run_reader(in, len, &lim, i == 1 ? SIZE_MAX : split, &other);
            same(&whole, &other);
        }
        if (whole.errors & DATA_ERR_TOO_BIG)
            FUZZ_CHECK(r->out.len <= lim.max_size &&
                       (r->out.len == 0 || memcmp(r->out.p, full.out.p, r->out.len) == 0));
        if (i > 0)
            free(other.out.p);
    }
    free(full.out.p);

    end = first_end(in, len);
    FUZZ_CHECK(whole.done == (end != SIZE_MAX));
    FUZZ_CHECK(whole.consumed == (whole.done ? end : len));
    if (lim.max_size != 0)
        FUZZ_CHECK(whole.out.len <= lim.max_size);
    FUZZ_CHECK((whole.errors & DATA_ERR_SINK) == 0);

    if (!(whole.errors & DATA_ERR_TOO_BIG)) {
        FUZZ_CHECK(whole.out_bytes == whole.out.len);
        /* Only CRLF line ends in the canonical form. */
        for (i = 0; i < whole.out.len; i++) {
            if (whole.out.p[i] == '\r')
                FUZZ_CHECK(i + 1 < whole.out.len ? whole.out.p[i + 1] == '\n' : !whole.done);
            if (whole.out.p[i] == '\n')
                FUZZ_CHECK(i > 0 && whole.out.p[i - 1] == '\r');
        }
        if (whole.done) {
            struct data_limits open_lim = {.bare = DATA_BARE_REJECT};
            struct run back;

            FUZZ_CHECK(whole.out.len == 0 ||
                       (whole.out.len >= 2 && whole.out.p[whole.out.len - 1] == '\n'));
            /* Round trip. */
            stuff(whole.out.p, whole.out.len, &wire);
            run_reader(wire.p, wire.len, &open_lim, 0, &back);
            FUZZ_CHECK(back.done && back.consumed == wire.len && back.errors == 0);
            FUZZ_CHECK(back.out.len == whole.out.len);
            FUZZ_CHECK(back.out.len == 0 || memcmp(back.out.p, whole.out.p, back.out.len) == 0);
            free(back.out.p);
            free(wire.p);
            memset(&wire, 0, sizeof(wire));
        }
    }

    /* Stuffing raw bytes: no end of data before the real one. A message
     * ending in a bare LF is outside data_stuff's contract (it cannot add
     * the CR), so then the end may be missing, but never early. */
    {
        struct data_limits open_lim = {.bare = DATA_BARE_NORMALIZE};
        struct run back;

        stuff(in, len, &wire);
        run_reader(wire.p, wire.len, &open_lim, 0, &back);
        if (back.done)
            FUZZ_CHECK(back.consumed == wire.len);
        else
            FUZZ_CHECK(len > 0 && in[len - 1] == '\n' && (len < 2 || in[len - 2] != '\r'));
        free(back.out.p);
        free(wire.p);
        memset(&wire, 0, sizeof(wire));
    }

    /* Chunked mode on the same bytes. */
    {
        struct run ch, ch2, back;

        run_chunked(in, len, &lim, 0, &ch);
        FUZZ_CHECK(ch.done && ch.consumed == len && (ch.errors & DATA_ERR_SINK) == 0);
        run_chunked(in, len, &lim, SIZE_MAX, &ch2);
        same(&ch, &ch2);
        free(ch2.out.p);
        run_chunked(in, len, &lim, split, &ch2);
        same(&ch, &ch2);
        free(ch2.out.p);
        if (!(ch.errors & DATA_ERR_TOO_BIG)) {
            struct data_limits open_lim = {.bare = DATA_BARE_REJECT};

            FUZZ_CHECK(ch.out_bytes == ch.out.len);
            FUZZ_CHECK(ch.out.len == 0 || (ch.out.len >= 2 && ch.out.p[ch.out.len - 2] == '\r' &&
                                           ch.out.p[ch.out.len - 1] == '\n'));
            for (i = 0; i < ch.out.len; i++) {
                if (ch.out.p[i] == '\r')
                    FUZZ_CHECK(i + 1 < ch.out.len && ch.out.p[i + 1] == '\n');
                if (ch.out.p[i] == '\n')
                    FUZZ_CHECK(i > 0 && ch.out.p[i - 1] == '\r');
            }
            /* As the DATA fallback sends it: read back whole, ending at
             * the very end, byte for byte the same. */
            stuff(ch.out.p, ch.out.len, &wire);
            run_reader(wire.p, wire.len, &open_lim, 0, &back);
            FUZZ_CHECK(back.done && back.consumed == wire.len && back.errors == 0);
            FUZZ_CHECK(back.out.len == ch.out.len);
            FUZZ_CHECK(back.out.len == 0 || memcmp(back.out.p, ch.out.p, back.out.len) == 0);
            free(back.out.p);
            free(wire.p);
        }
        free(ch.out.p);
    }
    free(whole.out.p);
    return 0;
}
