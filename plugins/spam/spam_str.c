/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_str: growable string and aborting allocators for the spam engine.
 */
#include "spam_str.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void spam_str__oom(void)
{
    fputs("spam: out of memory\n", stderr);
    abort();
}

void *spam_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        spam_str__oom();
    return p;
}

void *spam_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        spam_str__oom();
    return p;
}

void *spam_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        spam_str__oom();
    return q;
}

char *spam_xstrdup(const char *s)
{
    return spam_xstrndup(s, strlen(s));
}

char *spam_xstrndup(const char *s, size_t n)
{
    char *p = spam_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void spam_str__reserve(struct spam_str *s, size_t extra)
{
    size_t need = s->len + extra + 1;
    if (need <= s->cap)
        return;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < need)
        cap *= 2;
    s->ptr = spam_xrealloc(s->ptr, cap);
    s->cap = cap;
}

void spam_str_append(struct spam_str *s, const char *p, size_t n)
{
    spam_str__reserve(s, n);
    if (n)
        memcpy(s->ptr + s->len, p, n);
    s->len += n;
    s->ptr[s->len] = '\0';
}

void spam_str_puts(struct spam_str *s, const char *p)
{
    spam_str_append(s, p, strlen(p));
}

void spam_str_putc(struct spam_str *s, char c)
{
    spam_str_append(s, &c, 1);
}

void spam_str_printf(struct spam_str *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    spam_str__reserve(s, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(s->ptr + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

const char *spam_str_cstr(const struct spam_str *s)
{
    return s->ptr ? s->ptr : "";
}

void spam_str_clear(struct spam_str *s)
{
    s->len = 0;
    if (s->ptr)
        s->ptr[0] = '\0';
}

void spam_str_free(struct spam_str *s)
{
    free(s->ptr);
    s->ptr = NULL;
    s->len = s->cap = 0;
}

char *spam_str_steal(struct spam_str *s)
{
    char *p = s->ptr ? s->ptr : spam_xstrdup("");
    s->ptr = NULL;
    s->len = s->cap = 0;
    return p;
}
