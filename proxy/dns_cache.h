/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dns_cache: the resolver's answer cache, pure (no I/O, no clock: callers
 * pass "now" in milliseconds), so it is unit-tested on its own.
 *
 * Bounded twice: an entry lives at most min(its TTL, max_ttl) seconds, and
 * the cache holds at most max_entries entries (the least recently used one
 * goes first). Keys are (record type, name), names compared without case.
 *
 * Values are struct dns_cache_val: one allocation holding the outcome, the
 * TTL and the records as NUL-terminated strings. The cache keeps its own
 * copies; dns_cache_get() hands out a fresh copy the caller frees.
 *
 * Threads: one owner (the loop thread); no locking.
 */
#ifndef SLUICE_DNS_CACHE_H
#define SLUICE_DNS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One answer. status is enum dns_status (dns.h); rr[0..n) point into the
 * same allocation. Free with free(). */
struct dns_cache_val {
    int status;
    unsigned n;
    uint32_t ttl; /* seconds, as the answer gave it */
    char *rr[];
};

/* A value with copies of rr[0..n). Never NULL (out of memory is fatal). */
struct dns_cache_val *dns_cache_val_new(int status, const char *const *rr, unsigned n,
                                        uint32_t ttl);
struct dns_cache_val *dns_cache_val_dup(const struct dns_cache_val *v);

struct dns_cache;

/* max_entries 0: a cache that keeps nothing. */
struct dns_cache *dns_cache_new(size_t max_entries, uint32_t max_ttl);
void dns_cache_free(struct dns_cache *c);

/* A copy of the fresh entry for (type, name), its ttl lowered to what is
 * left, or NULL (absent or expired; an expired entry is dropped). */
struct dns_cache_val *dns_cache_get(struct dns_cache *c, int type, const char *name,
                                    uint64_t now_ms);
/* Store a copy of v for min(ttl, max_ttl) seconds; ttl 0 stores nothing. */
void dns_cache_put(struct dns_cache *c, int type, const char *name, const struct dns_cache_val *v,
                   uint32_t ttl, uint64_t now_ms);
size_t dns_cache_count(const struct dns_cache *c);

#endif
