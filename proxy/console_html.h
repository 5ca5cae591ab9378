/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * console_html: the quarantine console's text handling, pure (no I/O, no
 * globals; unit-tested and fuzzable). Everything the console shows comes
 * from mail, i.e. from whoever sent it: every byte goes through
 * console_html_escape() before it reaches a page, and form bodies are
 * decoded here with hard bounds.
 */
#ifndef SLUICE_CONSOLE_HTML_H
#define SLUICE_CONSOLE_HTML_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Append `s` (n bytes, any content) as HTML text safe in element content
 * and in double- or single-quoted attribute values: & < > " ' become
 * entities; control characters other than TAB, LF (and CR, dropped) and
 * bytes that are not valid UTF-8 become U+FFFD; valid UTF-8 passes as is.
 * 0, or -ENOMEM. */
int console_html_escape(buf_t *b, const char *s, size_t n);
/* The same for a NUL-terminated string (NULL appends nothing). */
int console_html_escape_str(buf_t *b, const char *s);
/* Append `s` percent-encoded for a URL query value (only A-Z a-z 0-9 - . _ ~
 * stay as they are). 0, or -ENOMEM. */
int console_html_urlenc(buf_t *b, const char *s);

/*
 * Find field `name` in an application/x-www-form-urlencoded body of `len`
 * bytes (not NUL-terminated) and decode it (+ is a space, %XX a byte) into
 * out (outlen bytes, NUL-terminated). The first occurrence wins. Returns
 * the decoded length, -ENOENT when absent, -EINVAL for a bad %-escape or a
 * decoded NUL byte, -E2BIG when it does not fit.
 */
int console_html_form_get(const char *body, size_t len, const char *name, char *out, size_t outlen);

#endif
