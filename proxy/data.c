/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * data: the DATA phase byte stream <-> canonical message.
 *
 * The reader finds the end of data exactly where RFC 5321 puts it: at the
 * first CR LF "." CR LF in the byte stream (the CR LF ending the DATA
 * command counts as the first one, so "." CR LF right away is an empty
 * message). Nothing else ends it: that is the defence against SMTP
 * smuggling, where the upstream and we would otherwise disagree about
 * where the message stops.
 *
 * Speed: a line is located with memchr() for LF and for CR, and the bytes
 * that pass through unchanged (almost all of them) reach the sink as one
 * chunk pointing into the caller's input per feed; the sink only sees an
 * extra small static chunk where the canonical form differs from the wire
 * (a dropped stuffing dot, a CR inserted before a bare LF ...).
 *
 * No allocation and no global state; the reader is all in struct
 * data_reader, so it resumes at any byte split; held-back bytes are
 * implied by the state.
 */
#include "data.h"

#include <string.h>

enum data_state {
    DATA_S_BOL = 0,     /* at a line start that follows a real CR LF */
    DATA_S_BOL_BARE,    /* at a line start that follows a bare LF or CR */
    DATA_S_DOT,         /* "." at a real line start, held back */
    DATA_S_DOT_BARE,    /* "." at a bare line start, held back */
    DATA_S_DOTCR,       /* "." CR at a real line start, both held back */
    DATA_S_DOTCR_BARE,  /* "." CR at a bare line start, both held back */
    DATA_S_TEXT,        /* inside a line */
    DATA_S_CR,          /* inside a line, right after a CR (already output) */
    DATA_S_DONE,
};

void data_reader_init(struct data_reader *r, const struct data_limits *lim, data_sink_fn sink,
                      void *sink_ctx)
{
    memset(r, 0, sizeof(*r));
    r->lim = *lim;
    r->sink = sink;
    r->sink_ctx = sink_ctx;
    r->state = DATA_S_BOL;
    r->in_header = true;
}

void data_reader_init_chunked(struct data_reader *r, const struct data_limits *lim,
                              data_sink_fn sink, void *sink_ctx)
{
    data_reader_init(r, lim, sink, sink_ctx);
    r->chunked = true;
}

/* Hand canonical bytes to the sink, unless output already stopped.
 * out_bytes counts the whole canonical message even after it stopped, so
 * the session can log the real size of what it refused. */
static void data__emit(struct data_reader *r, const char *p, size_t n)
{
    if (n == 0)
        return;
    r->out_bytes += n;
    if (r->errors & (DATA_ERR_TOO_BIG | DATA_ERR_SINK))
        return;
    if (r->lim.max_size != 0 && r->out_bytes > r->lim.max_size) {
        r->errors |= DATA_ERR_TOO_BIG;
        return;
    }
    if (r->sink != NULL && r->sink(r->sink_ctx, p, n) != 0)
        r->errors |= DATA_ERR_SINK;
}

/* Per-byte properties of line content [p, q): NUL and 8-bit. */
static void data__account(struct data_reader *r, const char *p, const char *q)
{
    size_t n = (size_t)(q - p);

    r->line_len += n;
    if (r->lim.reject_nul && !(r->errors & DATA_ERR_NUL) && memchr(p, '\0', n) != NULL)
        r->errors |= DATA_ERR_NUL;
    if (!r->has_8bit) {
        /* Eight bytes at a time; memcpy keeps it alignment-safe. */
        const uint64_t hi = 0x8080808080808080ull;
        uint64_t acc = 0, w;

        while (n >= 8) {
            memcpy(&w, p, 8);
            acc |= w;
            p += 8;
            n -= 8;
        }
        while (n > 0) {
            acc |= (unsigned char)*p++;
            n--;
        }
        if (acc & hi)
            r->has_8bit = true;
    }
}

/* A canonical line (content line_len) was completed by CR LF. */
static void data__end_line(struct data_reader *r)
{
    r->lines++;
    if (r->lim.reject_long_lines && r->lim.max_line != 0 && r->line_len > r->lim.max_line)
        r->errors |= DATA_ERR_LINE_TOO_LONG;
    if (r->in_header) {
        if (r->line_len == 0) {
            r->in_header = false;
            /* Header lines plus the empty line's CR LF. */
            r->header_end = r->header_bytes + 2;
        } else {
            r->header_bytes += r->line_len + 2;
            if (r->lim.max_header != 0 && r->header_bytes > r->lim.max_header)
                r->errors |= DATA_ERR_HEADER_TOO_BIG;
        }
    }
    r->line_len = 0;
}

static void data__bare(struct data_reader *r)
{
    if (r->lim.bare == DATA_BARE_REJECT)
        r->errors |= DATA_ERR_BARE_NL;
}

size_t data_reader_feed(struct data_reader *r, const char *in, size_t len)
{
    const char *p, *end, *run;

    /* len 0 may come with in == NULL, where even in + 0 is undefined. */
    if (r->done || len == 0)
        return 0;
    p = in;
    end = in + len;
    run = in; /* start of input bytes that are output verbatim */

    while (p < end) {
        if (r->binary && !r->in_header) {
            /* The body of a BINARYMIME message: every byte as it came. */
            data__emit(r, run, (size_t)(p - run));
            data__emit(r, p, (size_t)(end - p));
            return len;
        }
        switch ((enum data_state)r->state) {
        case DATA_S_BOL:
        case DATA_S_BOL_BARE:
            if (*p == '.' && !r->chunked) {
                data__emit(r, run, (size_t)(p - run));
                p++;
                run = p;
                r->state = r->state == DATA_S_BOL ? DATA_S_DOT : DATA_S_DOT_BARE;
            } else
                r->state = DATA_S_TEXT;
            break;

        case DATA_S_DOT:
        case DATA_S_DOT_BARE:
            if (*p == '\r') {
                p++;
                run = p;
                r->state = r->state == DATA_S_DOT ? DATA_S_DOTCR : DATA_S_DOTCR_BARE;
            } else if (*p == '\n') {
                /* "." then a bare LF: the line is just "." and is content
                 * (never an end). The LF is handled as a bare LF. */
                data__emit(r, ".", 1);
                r->line_len = 1;
                r->state = DATA_S_TEXT;
            } else {
                /* Dot-stuffing: the held dot is dropped. */
                r->state = DATA_S_TEXT;
            }
            break;

        case DATA_S_DOTCR:
        case DATA_S_DOTCR_BARE:
            if (*p == '\n' && r->state == DATA_S_DOTCR) {
                p++;
                run = p;
                r->state = DATA_S_DONE;
                r->done = true;
                return (size_t)(p - in);
            }
            /* The line is "." followed by CR LF after a bare line end, or
             * by a bare CR: the dot is content, and S_CR decides about the
             * CR and the byte at p. */
            data__emit(r, ".\r", 2);
            r->line_len = 1;
            r->state = DATA_S_CR;
            break;

        case DATA_S_CR:
            if (*p == '\n') {
                p++; /* the CR is already in the run: CR LF is verbatim */
                data__end_line(r);
                r->state = DATA_S_BOL;
            } else {
                data__bare(r);
                data__emit(r, run, (size_t)(p - run));
                run = p;
                data__emit(r, "\n", 1);
                data__end_line(r);
                r->state = DATA_S_BOL_BARE;
            }
            break;

        case DATA_S_TEXT: {
            const char *lf = memchr(p, '\n', (size_t)(end - p));
            const char *seg_end = lf != NULL ? lf : end;
            const char *cr = memchr(p, '\r', (size_t)(seg_end - p));

            if (cr != NULL && !(lf != NULL && cr == lf - 1)) {
                /* A CR not directly before the LF: bare, or its LF is in
                 * the next feed. S_CR decides; the CR goes out as is. */
                data__account(r, p, cr);
                p = cr + 1;
                r->state = DATA_S_CR;
                break;
            }
            if (lf == NULL) {
                data__account(r, p, end);
                p = end;
                break;
            }
            if (cr != NULL) {
                data__account(r, p, cr);
                p = lf + 1;
                data__end_line(r);
                r->state = DATA_S_BOL;
            } else {
                /* Bare LF: a CR goes out in front of it. */
                data__account(r, p, lf);
                data__bare(r);
                data__emit(r, run, (size_t)(lf - run));
                data__emit(r, "\r", 1);
                run = lf;
                p = lf + 1;
                data__end_line(r);
                r->state = DATA_S_BOL_BARE;
            }
            break;
        }

        case DATA_S_DONE:
            return (size_t)(p - in);
        }
    }
    /* Held bytes (a "." or "." CR at a line start) are not in the run. */
    data__emit(r, run, (size_t)(p - run));
    return len;
}

void data_reader_set_binary(struct data_reader *r)
{
    if (r->chunked)
        r->binary = true;
}

void data_reader_finish(struct data_reader *r)
{
    if (r->done)
        return;
    if (r->binary && !r->in_header) {
        r->state = DATA_S_DONE; /* byte-exact: no line end is added */
        r->done = true;
        return;
    }
    switch ((enum data_state)r->state) {
    case DATA_S_CR:
        /* The CR went out with its line; no LF will follow. */
        data__bare(r);
        data__emit(r, "\n", 1);
        data__end_line(r);
        break;
    case DATA_S_TEXT:
        data__emit(r, "\r\n", 2);
        data__end_line(r);
        break;
    default:
        /* At a line start: nothing held. (The dot states cannot occur in
         * chunked mode; in DATA mode the reader ends by itself.) */
        break;
    }
    r->state = DATA_S_DONE;
    r->done = true;
}

/* ---- dot-stuffing for the wire ----------------------------------------- */

int data_stuff(const char *in, size_t len, bool *at_line_start, data_sink_fn sink, void *ctx)
{
    const char *p, *end, *run;
    bool bol = *at_line_start;
    int rc;

    if (len == 0)
        return 0; /* in may be NULL */
    p = in;
    end = in + len;
    run = in;

    while (p < end) {
        const char *lf;

        if (bol && *p == '.') {
            /* Emit up to the dot, then an extra "."; the original dot
             * starts the next chunk. */
            if (p > run && (rc = sink(ctx, run, (size_t)(p - run))) != 0)
                return rc;
            if ((rc = sink(ctx, ".", 1)) != 0)
                return rc;
            run = p;
        }
        /* Any LF starts a line for stuffing purposes, so even a
         * non-canonical input cannot put "\n.\r\n" on the wire. */
        lf = memchr(p, '\n', (size_t)(end - p));
        if (lf == NULL) {
            bol = false;
            p = end;
        } else {
            bol = true;
            p = lf + 1;
        }
    }
    if (p > run && (rc = sink(ctx, run, (size_t)(p - run))) != 0)
        return rc;
    *at_line_start = bol;
    return 0;
}

int data_stuff_end(bool at_line_start, data_sink_fn sink, void *ctx)
{
    if (at_line_start)
        return sink(ctx, ".\r\n", 3);
    return sink(ctx, "\r\n.\r\n", 5);
}
