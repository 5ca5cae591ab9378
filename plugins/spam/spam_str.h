/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_str: a growable, always NUL-terminated byte string {ptr, len, cap}
 * used by the spam engine's text builders. The struct owns ptr.
 * Allocation failure aborts: the engine runs on messages already bounded
 * by max_scan_size, so running out of memory there is not recoverable.
 */
#ifndef SPAM_STR_H
#define SPAM_STR_H

#include <stddef.h>

struct spam_str {
    char *ptr; /* owned; NUL-terminated once anything was appended */
    size_t len;
    size_t cap;
};

#define SPAM_STR_INIT {NULL, 0, 0}

void spam_str_append(struct spam_str *s, const char *p, size_t n);
void spam_str_puts(struct spam_str *s, const char *p);
void spam_str_putc(struct spam_str *s, char c);
void spam_str_printf(struct spam_str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The contents ("" when nothing was appended); owned by s. */
const char *spam_str_cstr(const struct spam_str *s);
void spam_str_clear(struct spam_str *s);
void spam_str_free(struct spam_str *s);
/* Give the buffer away (a malloc'ed NUL-terminated string, never NULL). */
char *spam_str_steal(struct spam_str *s);

/* Allocation helpers that abort on failure (see above). */
void *spam_xmalloc(size_t n);
void *spam_xcalloc(size_t n, size_t size);
void *spam_xrealloc(void *p, size_t n);
char *spam_xstrdup(const char *s);
char *spam_xstrndup(const char *s, size_t n);

#endif
