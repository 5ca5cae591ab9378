/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * msgbuf: where a message in transit lives. Bytes stay in memory up to a
 * configured limit, then everything moves to a private temporary file in the
 * spool directory (created 0600, unlinked at once, so nothing is left behind
 * by a crash). A write error (ENOSPC, EIO ...) is sticky: the message is
 * then refused with 452 4.3.1, never forwarded truncated.
 *
 * Ownership: the session owns its msgbuf and reuses it across
 * transactions; a transaction borrows it from end of data until it ends
 * (tx_set_message / tx_take_msgbuf). Threads: one writer (the loop);
 * after msgbuf_finish() the contents are read-only and may be read from
 * pool threads.
 */
#ifndef SLUICE_MSGBUF_H
#define SLUICE_MSGBUF_H

#include <stddef.h>

struct msgbuf;

/* spool_dir: directory for the temp file (must exist). mem_limit: bytes kept
 * in memory before spilling. NULL on ENOMEM. */
struct msgbuf *msgbuf_new(size_t mem_limit, const char *spool_dir);
/* A new, empty msgbuf with m's memory limit and spool directory. */
struct msgbuf *msgbuf_new_like(const struct msgbuf *m);
/* Append; 0 or negative errno (sticky: later appends fail the same way). */
int msgbuf_append(struct msgbuf *m, const char *p, size_t n);
/* Compatible with data_sink_fn: ctx is the msgbuf. */
int msgbuf_sink(void *ctx, const char *p, size_t n);
/* Writing is over: flush the file and map it. 0 or negative errno. */
int msgbuf_finish(struct msgbuf *m);
/* After finish: the whole message, contiguous (heap or read-only mmap),
 * valid until msgbuf_free. */
const char *msgbuf_data(const struct msgbuf *m, size_t *len);
size_t msgbuf_len(const struct msgbuf *m);
int msgbuf_error(const struct msgbuf *m); /* 0 or the sticky negative errno */
int msgbuf_on_disk(const struct msgbuf *m);
/* Forget the contents, keep the object for the next transaction. */
void msgbuf_reset(struct msgbuf *m);
void msgbuf_free(struct msgbuf *m);

#endif
