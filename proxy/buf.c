/* SPDX-License-Identifier: GPL-2.0-or-later */
/* buf: growable byte buffer; see buf.h (allocation failure is fatal). */
#include "buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xalloc.h"

void buf_init(buf_t *b)
{
    b->ptr = NULL;
    b->len = b->cap = 0;
}

int buf_reserve(buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len)
        xalloc_die(SIZE_MAX);
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < need)
        ncap *= 2;
    b->ptr = xrealloc(b->ptr, ncap);
    b->cap = ncap;
    return 0;
}

int buf_append(buf_t *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    if (n)
        memcpy(b->ptr + b->len, p, n);
    b->len += n;
    b->ptr[b->len] = 0;
    return 0;
}

int buf_puts(buf_t *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

/*
 * vsnprintf() fails only for text over INT_MAX bytes or a bad wide
 * character: a bug in the caller, not a condition to handle at run time.
 */
static void buf__format_bug(const char *fmt) __attribute__((noreturn));

static void buf__format_bug(const char *fmt)
{
    char line[160];
    int len =
        snprintf(line, sizeof line, "PANIC buf_printf: vsnprintf failed for \"%.100s\"\n", fmt);
    if (len > 0)
        (void)!write(STDERR_FILENO, line,
                     (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
    abort();
}

int buf_vprintf(buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        buf__format_bug(fmt);
    if ((size_t)n < sizeof tmp)
        return buf_append(b, tmp, (size_t)n);
    buf_reserve(b, (size_t)n);
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void buf_consume(buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->ptr, b->ptr + n, b->len - n);
        b->len -= n;
    }
    if (b->ptr)
        b->ptr[b->len] = 0;
}

void buf_reset(buf_t *b)
{
    b->len = 0;
    if (b->ptr)
        b->ptr[0] = 0;
}

void buf_free(buf_t *b)
{
    free(b->ptr);
    buf_init(b);
}
