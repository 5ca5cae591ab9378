/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * msg: the one canonical parse of a message in transit, shared by every
 * plugin of the chain, and the edits they make to it.
 *
 * Input: the canonical message (CRLF line ends, dot-unstuffed), owned by
 * the caller (msgbuf), which must stay valid until msg_free(). The parse
 * finds the header fields (name, raw value with folding, position) and the
 * body offset. Edits (add/insert/change/delete fields, replace the body)
 * are kept as an edited field list and an optional replacement body; the
 * original bytes are never modified. msg_segments() gives the message as
 * the upstream must receive it, as a few iovecs pointing into the original
 * and into msg-owned memory: unedited headers are byte-exact, the body is
 * the original unless replaced, so an unedited message costs no copy.
 *
 * Pure: no I/O, no globals; not thread-safe per object (one writer).
 */
#ifndef SLUICE_MSG_H
#define SLUICE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "buf.h"

struct msg;

struct msg_field {
    const char *name;   /* not NUL-terminated */
    size_t name_len;
    const char *value;  /* raw, after the colon, folding kept, without the final CRLF */
    size_t value_len;
    const char *raw;    /* the whole field "Name: value\r\n..." incl. final CRLF */
    size_t raw_len;
    bool edited;        /* created or changed by an edit (raw is msg-owned) */
};

/* Parse data[0..len). Never fails on malformed input: a header section
 * without a blank line ends at the first line that is not a field or
 * continuation (that line starts the body, as RFC 5322 parsers do); a
 * message without a blank line has an empty body. NULL only on ENOMEM. */
struct msg *msg_parse(const char *data, size_t len);
void msg_free(struct msg *m);

size_t msg_field_count(const struct msg *m);
const struct msg_field *msg_field_at(const struct msg *m, size_t i);
/* Index of the nth (0-based) field named `name` (case-insensitive), or -1. */
long msg_field_find(const struct msg *m, const char *name, size_t nth);
/* Unfold a raw value: remove CRLF before WSP, trim leading/trailing WSP.
 * Appends to out. */
void msg_unfold(const char *value, size_t len, buf_t *out);

/* Body (after the blank line), original or replaced. */
void msg_body(const struct msg *m, const char **data, size_t *len);
/* Whether there was a blank line separating header and body. */
bool msg_has_separator(const struct msg *m);

/*
 * Edits. Names must be RFC 5322 field names (printable ASCII except ':',
 * 1..76 chars); values must not contain NUL, bare CR or bare LF (CRLF only
 * before WSP, i.e. already-folded values are accepted). Values longer than
 * 78 columns are folded at whitespace (RFC 5322 §2.2.3); a value with a
 * word that cannot be folded under 998 octets is refused (-EINVAL).
 * 0 or negative errno.
 */
int msg_field_add(struct msg *m, const char *name, const char *value);            /* at the end */
int msg_field_insert(struct msg *m, size_t index, const char *name, const char *value);
int msg_field_change(struct msg *m, size_t index, const char *value);              /* keep name */
int msg_field_delete(struct msg *m, size_t index);
int msg_body_replace(struct msg *m, const char *data, size_t len);                 /* copied */
/* Canonicalise a replacement body: LF or CR line ends become CRLF. */

/* Any edit made since parse? */
bool msg_edited(const struct msg *m);
/* Changes with every edit (for copies of the rendered message kept
 * elsewhere). */
unsigned long msg_generation(const struct msg *m);

/*
 * The message to forward: header fields in order, the separator, the body.
 * Fills at most `max` iovecs (pointing into the original data and msg-owned
 * memory, valid until the next edit or msg_free) and returns how many; if
 * the edited header needs more than max-2 pieces, the header is rendered
 * into one msg-owned buffer. Returns -1 if max < 3.
 */
int msg_segments(struct msg *m, struct iovec *iov, int max);
/* The whole current message in one contiguous buffer (msg-owned, cached
 * until the next edit): the whole message in memory. The daemon renders an
 * edited message into a spool-backed msgbuf instead (tx_render_edits). */
void msg_render(struct msg *m, const char **data, size_t *len);
size_t msg_size(const struct msg *m);

#endif
