/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mime7: downgrade an 8-bit message to 7-bit MIME for an upstream that does
 * not offer 8BITMIME (RFC 6152 §3, RFC 1652, RFC 2045/2046/2047), using
 * GMime 3. Pure: bytes in, bytes out, no I/O. May run on any thread once
 * mime7_init() has been called (it is also called lazily).
 *
 * What is converted:
 * - a leaf part whose content has 8-bit bytes (or CTE binary) is re-encoded:
 *   text/ types as quoted-printable, everything else as base64; its
 *   Content-Transfer-Encoding header is updated. A text part with 8-bit
 *   content and no charset gets charset=utf-8 (valid UTF-8) or
 *   charset=unknown-8bit (RFC 1428). A part labelled 8bit whose content is
 *   7-bit is relabelled 7bit.
 * - message/rfc822 parts and multiparts: their inner parts are converted
 *   recursively (RFC 2046 forbids encoding message/ and multipart/ bodies
 *   themselves) and their own 8bit/binary label becomes 7bit.
 * - 8-bit bytes in a multipart's preamble or epilogue (text that readers
 *   ignore, RFC 2046 §5.1.1) become '?'.
 * - 8-bit header fields that are valid UTF-8 are RFC 2047 encoded when the
 *   field is unstructured (Subject, Comments, Content-Description, X-*) or
 *   an address list (From, Sender, Reply-To, To, Cc, Bcc, Resent-*: only the
 *   display names can be encoded; an 8-bit addr-spec is refused).
 * Headers, parts and bytes that need no change are written as they came
 * (GMime keeps raw header values of unmodified headers); GMime may
 * normalise a multipart boundary delimiter line with trailing blanks.
 *
 * What is refused (MIME7_UNCONVERTIBLE, reply 554 5.6.3): 8-bit data in any
 * other header field or not valid UTF-8 in a header, 8-bit data inside
 * multipart/signed (re-encoding would break the signature), 8-bit
 * message/partial, a multipart without any part but 8-bit text, a NUL
 * byte, MIME that GMime would parse only by skipping or reinterpreting
 * input (a header line without a colon, conflicting MIME headers, a part
 * without headers or content: converting it would silently lose data),
 * anything still 8-bit after conversion. BODY=BINARYMIME is refused by the caller
 * (the envelope is not this module's business).
 */
#ifndef SLUICE_MIME7_H
#define SLUICE_MIME7_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* mime7_downgrade(): the message cannot be made 7-bit; reply 554 5.6.3. */
#define MIME7_UNCONVERTIBLE 1

/* Initialise GMime once. Idempotent and thread-safe; call it from main. */
void mime7_init(void);
/* Release GMime's global state, for a clean exit. Idempotent and final:
 * GMime cannot be set up again, so afterwards mime7_init() does nothing and
 * mime7_downgrade() of an 8-bit message returns -EINVAL. No
 * mime7_downgrade() may be running. */
void mime7_shutdown(void);

/*
 * Returns 0 and appends the converted message (canonical CRLF lines, 7-bit
 * only) to `out`; MIME7_UNCONVERTIBLE (>0) when it cannot be converted
 * (reply 554 5.6.3) with a reason in why; negative on internal error (reply
 * 451 4.3.0). msg is the canonical message (CRLF). A message without any
 * 8-bit byte is appended unchanged. why (NUL-terminated, may be NULL when
 * whylen is 0) gets a one-line reason on any non-zero return. On failure
 * `out` is left as it was.
 */
int mime7_downgrade(const char *msg, size_t len, buf_t *out, char *why, size_t whylen);

/* true if msg[0..len) has any byte >= 0x80 (fast scan). */
bool mime7_is_8bit(const char *msg, size_t len);

#endif
