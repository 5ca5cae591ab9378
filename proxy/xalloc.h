/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * xalloc: the daemon's one out-of-memory policy.
 *
 * Allocation failure is fatal everywhere in sluice: these wrappers log one
 * line and abort(), as Postfix's mymalloc() does. A mail proxy that cannot
 * allocate a few hundred bytes cannot answer a client sensibly either, and
 * every "if (!p) return -ENOMEM" path that is never exercised is a place
 * for a bug. Callers therefore never test the result. Negative errno
 * returns remain for real I/O and peer errors only.
 *
 * Thread-safe (any thread may call them).
 */
#ifndef SLUICE_XALLOC_H
#define SLUICE_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n) __attribute__((malloc, alloc_size(1), returns_nonnull));
void *xcalloc(size_t nmemb, size_t size) __attribute__((malloc, alloc_size(1, 2), returns_nonnull));
/* n == 0 frees p and returns a new minimal block (never NULL). */
void *xrealloc(void *p, size_t n) __attribute__((alloc_size(2), returns_nonnull));
/* Grow an array of `size`-byte elements to at least `need` elements:
 * doubles *cap (from `first`), checks for overflow. */
void *xgrow(void *p, size_t *cap, size_t need, size_t size, size_t first)
    __attribute__((returns_nonnull));
/* NULL stays NULL. */
char *xstrdup(const char *s) __attribute__((malloc));
char *xstrndup(const char *s, size_t n) __attribute__((malloc, returns_nonnull));
/* Log "out of memory" and abort(): for libraries that report OOM
 * themselves (returned NULL where the caller cannot go on). */
void xalloc_die(size_t n) __attribute__((noreturn));
/* Give the heap's free pages back to the system (malloc_trim): after a
 * plugin chain is loaded, whose rule compilers (Hyperscan, PCRE2 JIT)
 * leave many megabytes of freed scratch below live blocks, where the
 * trim threshold never reaches them. */
void xalloc_trim(void);

#endif
