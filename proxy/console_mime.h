/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * console_mime: the text rendering of a held message for the console's
 * message page. The message is parsed with GMime (already set up by the
 * daemon, mime7_init); every leaf part gets a line naming it (type, file
 * name), text parts follow decoded (transfer encoding undone, charset
 * converted to UTF-8; HTML as its source, never rendered), other parts
 * are only named. The output is plain text: the page escapes it. No I/O,
 * no globals; any thread (each call has its own GMime objects).
 */
#ifndef SLUICE_CONSOLE_MIME_H
#define SLUICE_CONSOLE_MIME_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Append the rendering of message `msg` (len bytes: header and body) to b,
 * at most `max` bytes of part text in all (*truncated set when more was
 * left out). 0, or -1 when GMime finds no message (the caller shows the
 * raw body instead). */
int console_mime_text(buf_t *b, const char *msg, size_t len, size_t max, bool *truncated);

#endif
