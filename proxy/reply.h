/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * reply: pure, resumable parser of SMTP replies from the upstream
 * (RFC 5321 §4.2), multi-line included. Strict: anything out of protocol
 * (no 3-digit code, mixed codes across lines, over-long lines, too many
 * lines, bad separator) is reported as an error so the session can
 * synthesise its own 451/421 instead of relaying garbage.
 * Pure: no I/O, no allocation, no globals; any thread.
 */
#ifndef SLUICE_REPLY_H
#define SLUICE_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define REPLY_LINE_MAX 2048 /* generous: RFC says 512 */
#define REPLY_LINES_MAX 64

struct smtp_reply {
    int code;            /* 200..599 */
    char enh[16];        /* enhanced status "x.y.z" if the first line has one (class
                          * 2/4/5 matching the code's first digit), else "" */
    size_t nlines;
    /* Each line's text after "NNN-" / "NNN " (and after the enhanced code on
     * every line if present), NUL-terminated, into `text` storage. */
    const char *lines[REPLY_LINES_MAX];
    char text[REPLY_LINES_MAX * 128 + REPLY_LINE_MAX]; /* private storage */
    size_t text_used;
};

enum reply_rd {
    REPLY_AGAIN = 0, /* need more input */
    REPLY_DONE,      /* *out holds a complete reply */
    REPLY_ERROR,     /* protocol violation: treat the upstream as broken */
};

struct reply_reader {
    int code;        /* code of the first line of the reply in progress, 0 if none */
    size_t nlines;
    size_t text_used;
};

void reply_reader_init(struct reply_reader *r);
/*
 * Consume at most one reply from in[0..len). *consumed bytes may be
 * dropped. Only complete lines are consumed, so it resumes at any split.
 * The reply is assembled in *out: pass the SAME `out` on every call until
 * REPLY_DONE (the reader keeps counters, the lines live in out->text), and
 * do not copy *out by value afterwards (lines[] point into out->text).
 * After REPLY_DONE the reader is ready for the next reply (pipelining: the
 * bytes after *consumed are its start). Bare LF is accepted as a line end.
 * If the texts exceed out->text they are truncated (never reached by sane
 * replies; every line stays NUL-terminated). A line with a NUL byte is an
 * error. After REPLY_ERROR the connection should be dropped; *consumed is
 * then only informative.
 */
enum reply_rd reply_reader_next(struct reply_reader *r, const char *in, size_t len,
                                size_t *consumed, struct smtp_reply *out);

/* For EHLO replies: does line i (i>=1) announce `keyword`? Case-insensitive;
 * *params (optional) gets the rest of the line after the keyword and a space
 * ("" if none; NULL when not found). Line 0 is the greeting, never matched. */
bool reply_has_keyword(const struct smtp_reply *r, const char *keyword, const char **params);

#endif
