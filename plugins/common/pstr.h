/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pstr: a growable, always NUL-terminated byte string {ptr, len, cap}
 * used by the plugins' engines (spam, rewrite) and plugins/common. The
 * struct owns ptr. Allocation failure aborts (the daemon's policy too):
 * the engines run on messages already bounded by their size limits, so
 * running out of memory there is not recoverable.
 */
#ifndef SLUICE_PSTR_H
#define SLUICE_PSTR_H

#include <stddef.h>

struct pstr {
    char *ptr; /* owned; NUL-terminated once anything was appended */
    size_t len;
    size_t cap;
};

#define PSTR_INIT {NULL, 0, 0}

void pstr_append(struct pstr *s, const char *p, size_t n);
void pstr_puts(struct pstr *s, const char *p);
void pstr_putc(struct pstr *s, char c);
void pstr_printf(struct pstr *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The contents ("" when nothing was appended); owned by s. */
const char *pstr_cstr(const struct pstr *s);
void pstr_clear(struct pstr *s);
void pstr_free(struct pstr *s);
/* Give the buffer away (a malloc'ed NUL-terminated string, never NULL). */
char *pstr_steal(struct pstr *s);

/* Allocation helpers that abort on failure (see above). */
void *pstr_xmalloc(size_t n);
void *pstr_xcalloc(size_t n, size_t size);
void *pstr_xrealloc(void *p, size_t n);
char *pstr_xstrdup(const char *s);
char *pstr_xstrndup(const char *s, size_t n);

#endif
