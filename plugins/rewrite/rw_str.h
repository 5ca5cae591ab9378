/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rw_str: a growable, always NUL-terminated byte string {ptr, len, cap}
 * for the rewrite engine's builders. The struct owns ptr. Allocation
 * failure aborts: the engine works on header fields and addresses, which
 * are small and bounded by the host, so running out of memory there is
 * not something to recover from.
 */
#ifndef RW_STR_H
#define RW_STR_H

#include <stddef.h>

struct rw_str {
    char *ptr; /* owned; NUL-terminated once anything was appended */
    size_t len;
    size_t cap;
};

#define RW_STR_INIT {NULL, 0, 0}

void rw_str_append(struct rw_str *s, const char *p, size_t n);
void rw_str_puts(struct rw_str *s, const char *p);
void rw_str_putc(struct rw_str *s, char c);
void rw_str_printf(struct rw_str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The contents ("" when nothing was appended); owned by s. */
const char *rw_str_cstr(const struct rw_str *s);
void rw_str_clear(struct rw_str *s);
void rw_str_free(struct rw_str *s);
/* Give the buffer away (malloc'ed, NUL-terminated, never NULL). */
char *rw_str_steal(struct rw_str *s);

void *rw_xmalloc(size_t n);
void *rw_xcalloc(size_t n, size_t size);
void *rw_xrealloc(void *p, size_t n);
char *rw_xstrdup(const char *s);
char *rw_xstrndup(const char *s, size_t n);

#endif
