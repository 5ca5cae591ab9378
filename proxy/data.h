/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * data: pure, resumable DATA reader (RFC 5321 §4.1.1.4, §4.5.2).
 *
 * Bytes of the DATA phase go in; the canonical message comes out through a
 * sink callback: dot-unstuffed, every line ending CRLF, without the final
 * ".". Only CRLF "." CRLF ends the data. Bare LF and bare CR are never line
 * ends for the purpose of finding the end (SMTP smuggling, CVE-2023-51764):
 * under DATA_BARE_REJECT they set DATA_ERR_BARE_NL and the reader keeps
 * consuming until the real end so the session can reply 550 5.5.2 in
 * protocol; under DATA_BARE_NORMALIZE a bare LF or bare CR becomes CRLF in
 * the output (a following "." on that line is then content, and is
 * re-stuffed on output, so the upstream sees the same message boundary).
 *
 * Exact rules (a "real" line start follows a literal CR LF, or is the very
 * first byte: the CR LF of the DATA command counts; a "bare" line start
 * follows a bare LF or bare CR):
 *  - data ends at the first literal CR LF "." CR LF, and nowhere else;
 *  - at any line start, real or bare, a "." followed by more line content
 *    is a stuffing dot and is dropped ("..x" -> ".x", ". " -> " ");
 *  - a line that is just "." but is not the terminator (it starts bare,
 *    or ends with a bare LF/CR) is content ".": data_stuff() sends it as
 *    "..", so the upstream cannot see an end there either;
 *  - output under DATA_BARE_REJECT is the same as under NORMALIZE (bare
 *    line ends become CRLF); only DATA_ERR_BARE_NL differs. The session
 *    discards it anyway.
 * Line lengths, the header section and max_size are measured on the
 * canonical output (after unstuffing and normalisation). out_bytes counts
 * the whole canonical message even after output stopped (TOO_BIG / SINK),
 * so the real size can be logged. Bytes held back while deciding (a CR,
 * a dot) are implied by the state, never stored.
 *
 * Errors are sticky bits; the reader never stops early, because the only
 * safe point to answer is after the terminating dot.
 * Pure: no I/O, no allocation, no globals; any thread.
 */
#ifndef SLUICE_DATA_H
#define SLUICE_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum data_bare_policy { DATA_BARE_REJECT = 0, DATA_BARE_NORMALIZE };

enum data_err {
    DATA_ERR_BARE_NL = 1 << 0,     /* bare LF or CR seen (policy reject) */
    DATA_ERR_LINE_TOO_LONG = 1 << 1, /* a line > max_line (policy reject) */
    DATA_ERR_NUL = 1 << 2,         /* a NUL byte */
    DATA_ERR_HEADER_TOO_BIG = 1 << 3,
    DATA_ERR_TOO_BIG = 1 << 4,     /* output exceeded max_size: output stops */
    DATA_ERR_SINK = 1 << 5,        /* the sink returned an error: output stops */
};

struct data_limits {
    size_t max_line;          /* octets excluding CRLF; RFC 5322: 998 */
    bool reject_long_lines;   /* false: pass long lines through untouched */
    enum data_bare_policy bare;
    bool reject_nul;          /* true: NUL sets DATA_ERR_NUL */
    size_t max_header;        /* bytes of the header section; 0 = no limit */
    uint64_t max_size;        /* canonical message bytes; 0 = no limit */
};

/* Returns 0 or a negative error; a nonzero return sets DATA_ERR_SINK. */
typedef int (*data_sink_fn)(void *ctx, const char *p, size_t n);

struct data_reader {
    struct data_limits lim;
    data_sink_fn sink;
    void *sink_ctx;
    /* --- private state --- */
    int state;
    size_t line_len;      /* octets on the current line so far */
    bool in_header;       /* still in the header section */
    uint64_t out_bytes;   /* canonical bytes produced */
    uint64_t header_bytes;
    unsigned errors;      /* DATA_ERR_* */
    bool done;
    bool has_8bit;        /* any byte >= 0x80 */
    uint64_t header_end;  /* canonical offset where the body starts (just after the empty
                           * line's CRLF), or 0 if no empty line yet */
    uint64_t lines;       /* canonical lines (CRLFs) so far */
    bool chunked;         /* BDAT: no dots, no terminator (data_reader_init_chunked) */
    bool binary;          /* BODY=BINARYMIME: the body is bytes, not lines */
};

void data_reader_init(struct data_reader *r, const struct data_limits *lim, data_sink_fn sink,
                      void *sink_ctx);
/*
 * Feed in[0..len). Returns how many bytes were consumed: all of them unless
 * the end of data was reached, in which case it stops right after the
 * terminating CRLF.CRLF (r->done is set); the rest is the next pipelined
 * command and belongs to the command parser.
 */
size_t data_reader_feed(struct data_reader *r, const char *in, size_t len);

/*
 * BDAT (RFC 3030): the same reader for chunk content. The caller counts
 * the bytes (the chunk sizes), so nothing in the content ends the
 * message and a "." at a line start is content, never a stuffing dot.
 * Everything else is as in DATA (bare LF / bare CR policy and
 * normalisation, line and header limits, NUL, max_size), so the
 * canonical message is the one DATA would have stored for the same
 * text. A CR LF split across chunks is one CR LF. data_reader_feed()
 * always consumes everything; data_reader_finish() ends the message
 * after the LAST chunk.
 */
void data_reader_init_chunked(struct data_reader *r, const struct data_limits *lim,
                              data_sink_fn sink, void *sink_ctx);
/*
 * The message is complete (chunked mode): a CR left at the very end is a
 * bare CR (policy as anywhere else); a last line without a line end gets
 * CR LF, as every canonical message ends with one (DATA cannot carry
 * anything else). Sets done. Idempotent.
 */
void data_reader_finish(struct data_reader *r);
/*
 * BODY=BINARYMIME (RFC 3030 §3), chunked mode only, before the first feed:
 * the header section is read as above (lines, limits, bare line ends), and
 * from the empty line that ends it the body is taken byte for byte: no
 * line ends looked at or added, NUL allowed, only max_size applies. Such a
 * message can only go on as BDAT.
 */
void data_reader_set_binary(struct data_reader *r);

static inline bool data_reader_done(const struct data_reader *r) { return r->done; }
static inline unsigned data_reader_errors(const struct data_reader *r) { return r->errors; }

/*
 * Inverse direction: dot-stuff a canonical message for the wire. Appends the
 * stuffed form of in[0..len) to the caller's writer through `sink` (chunks
 * point into `in` or at a static "."), tracking line starts across calls in
 * *at_line_start (start with true). Call data_stuff_end() once to emit the
 * final CRLF (if the message did not end with one) and ".\r\n".
 * One sink call per run of lines, plus a "." before each line that starts
 * with "." (the original dot opens the next run). Returns 0 or the first
 * nonzero sink return (nothing more is emitted then). The input should be
 * canonical (CRLF); a bare LF also counts as a line start, so a dot after
 * it is stuffed too, but data_stuff_end() cannot tell a message ending in
 * a bare LF from one ending in CRLF.
 */
int data_stuff(const char *in, size_t len, bool *at_line_start, data_sink_fn sink, void *ctx);
int data_stuff_end(bool at_line_start, data_sink_fn sink, void *ctx);

#endif
