/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * json: the two JSON helpers the daemon needs, written once: quoting a C
 * string into a buffer, and checking that a text is one JSON object.
 * Pure functions (no I/O, no globals): any thread, reentrant.
 */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stdbool.h>

#include "buf.h"

/*
 * Append s to b as a quoted JSON string (RFC 8259), always valid JSON:
 *   "  \  ->  \"  \\
 *   bytes 0x01..0x1f  ->  \u00XX (lower-case hex)
 *   well-formed UTF-8 (DEL included)  ->  copied as is
 *   a byte that does not start a well-formed UTF-8 sequence (stray
 *   continuation, overlong form, surrogate, above U+10FFFF, cut short)
 *                ->  \u00XX, i.e. read as Latin-1, so no byte is lost
 * s == NULL appends the literal null. Never fails (see buf.h).
 */
void json_escape(buf_t *b, const char *s);

/* Nesting deeper than this is refused, so hostile input cannot exhaust the stack. */
#define JSON_MAX_DEPTH 32

/*
 * True when text is exactly one JSON object (RFC 8259 grammar, white space
 * around it allowed, nothing after it) nested at most JSON_MAX_DEPTH deep.
 * Strings are checked for escapes and control characters, not for UTF-8.
 */
bool json_is_object(const char *text);

#endif
