/* SPDX-License-Identifier: GPL-2.0-or-later */
/* xalloc: allocation that never returns NULL; see xalloc.h. */
#include "xalloc.h"

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void xalloc_die(size_t n)
{
    /* No log module here: it may itself need memory. One write(2). */
    char line[96];
    int len = snprintf(line, sizeof line, "FATAL out of memory (allocating %zu bytes)\n", n);
    if (len > 0)
        (void)!write(STDERR_FILENO, line, (size_t)len);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        xalloc_die(n);
    return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p)
        xalloc_die(nmemb * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        xalloc_die(n);
    return q;
}

void *xgrow(void *p, size_t *cap, size_t need, size_t size, size_t first)
{
    if (need <= *cap && p)
        return p;
    size_t ncap = *cap ? *cap : (first ? first : 4);
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            xalloc_die(SIZE_MAX);
        ncap *= 2;
    }
    if (size && ncap > SIZE_MAX / size)
        xalloc_die(SIZE_MAX);
    p = xrealloc(p, ncap * size);
    *cap = ncap;
    return p;
}

char *xstrdup(const char *s)
{
    return s ? xstrndup(s, strlen(s)) : NULL;
}

char *xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = 0;
    return p;
}

void xalloc_trim(void)
{
    (void)malloc_trim(0);
}
