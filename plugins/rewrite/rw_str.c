/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rw_str: growable strings and aborting allocators (see rw_str.h for why
 * aborting is the right policy here).
 */
#include "rw_str.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void rw_str__oom(void)
{
    fputs("rewrite: out of memory\n", stderr);
    abort();
}

void *rw_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        rw_str__oom();
    return p;
}

void *rw_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        rw_str__oom();
    return p;
}

void *rw_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        rw_str__oom();
    return q;
}

char *rw_xstrndup(const char *s, size_t n)
{
    char *p = rw_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *rw_xstrdup(const char *s)
{
    return rw_xstrndup(s, strlen(s));
}

static void rw_str__grow(struct rw_str *s, size_t extra)
{
    if (s->len + extra + 1 <= s->cap)
        return;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < s->len + extra + 1)
        cap *= 2;
    s->ptr = rw_xrealloc(s->ptr, cap);
    s->cap = cap;
}

void rw_str_append(struct rw_str *s, const char *p, size_t n)
{
    rw_str__grow(s, n);
    if (n)
        memcpy(s->ptr + s->len, p, n);
    s->len += n;
    s->ptr[s->len] = 0;
}

void rw_str_puts(struct rw_str *s, const char *p)
{
    rw_str_append(s, p, strlen(p));
}

void rw_str_putc(struct rw_str *s, char c)
{
    rw_str_append(s, &c, 1);
}

void rw_str_printf(struct rw_str *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    rw_str__grow(s, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(s->ptr + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

const char *rw_str_cstr(const struct rw_str *s)
{
    return s->ptr ? s->ptr : "";
}

void rw_str_clear(struct rw_str *s)
{
    s->len = 0;
    if (s->ptr)
        s->ptr[0] = 0;
}

void rw_str_free(struct rw_str *s)
{
    free(s->ptr);
    s->ptr = NULL;
    s->len = s->cap = 0;
}

char *rw_str_steal(struct rw_str *s)
{
    char *p = s->ptr ? s->ptr : rw_xstrdup("");
    s->ptr = NULL;
    s->len = s->cap = 0;
    return p;
}
