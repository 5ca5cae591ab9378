/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * buf: a growable byte buffer {ptr, len, cap}. The struct owns ptr.
 * Appends never move data that was consumed from the front until the
 * buffer is compacted, so pointers into it are valid until the next append.
 *
 * Out of memory: the project has one policy (xalloc.h): allocation failure
 * is fatal. buf_reserve() and the appends grow through xalloc and abort
 * when memory runs out, so they never fail: they keep their int return for
 * the callers written before this rule, but it is always 0. New code does
 * not test it. Negative errno returns in sluice mean real I/O or peer
 * errors, never memory.
 *
 * No locking: one buffer, one thread at a time.
 */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
    char *ptr;  /* owned; NUL-terminated when cap > 0 (ptr[len] == 0) */
    size_t len;
    size_t cap;
} buf_t;

#define BUF_INIT {NULL, 0, 0}

void buf_init(buf_t *b);
/* Make room for `extra` more bytes (+1 for the NUL). Always 0. */
int buf_reserve(buf_t *b, size_t extra);
/* Append bytes / a C string / formatted text. Always 0. */
int buf_append(buf_t *b, const void *p, size_t n);
int buf_puts(buf_t *b, const char *s);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Drop the first n bytes (memmove). */
void buf_consume(buf_t *b, size_t n);
void buf_reset(buf_t *b);
/* Release the memory; the buffer is empty and reusable afterwards. */
void buf_free(buf_t *b);

#endif
