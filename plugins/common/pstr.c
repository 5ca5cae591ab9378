/* SPDX-License-Identifier: GPL-2.0-or-later */
/* pstr: see pstr.h. */
#include "pstr.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pstr__oom(void)
{
    fputs("sluice plugin: out of memory\n", stderr);
    abort();
}

void *pstr_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        pstr__oom();
    return p;
}

void *pstr_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        pstr__oom();
    return p;
}

void *pstr_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        pstr__oom();
    return q;
}

char *pstr_xstrdup(const char *s)
{
    return pstr_xstrndup(s, strlen(s));
}

char *pstr_xstrndup(const char *s, size_t n)
{
    char *p = pstr_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void pstr__reserve(struct pstr *s, size_t extra)
{
    size_t need = s->len + extra + 1;
    if (need <= s->cap)
        return;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < need)
        cap *= 2;
    s->ptr = pstr_xrealloc(s->ptr, cap);
    s->cap = cap;
}

void pstr_append(struct pstr *s, const char *p, size_t n)
{
    pstr__reserve(s, n);
    if (n)
        memcpy(s->ptr + s->len, p, n);
    s->len += n;
    s->ptr[s->len] = '\0';
}

void pstr_puts(struct pstr *s, const char *p)
{
    pstr_append(s, p, strlen(p));
}

void pstr_putc(struct pstr *s, char c)
{
    pstr_append(s, &c, 1);
}

void pstr_printf(struct pstr *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    pstr__reserve(s, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(s->ptr + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

const char *pstr_cstr(const struct pstr *s)
{
    return s->ptr ? s->ptr : "";
}

void pstr_clear(struct pstr *s)
{
    s->len = 0;
    if (s->ptr)
        s->ptr[0] = '\0';
}

void pstr_free(struct pstr *s)
{
    free(s->ptr);
    s->ptr = NULL;
    s->len = s->cap = 0;
}

char *pstr_steal(struct pstr *s)
{
    char *p = s->ptr ? s->ptr : pstr_xstrdup("");
    s->ptr = NULL;
    s->len = s->cap = 0;
    return p;
}
