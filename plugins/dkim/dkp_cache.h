/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_cache: DKIM key records (TXT) by query name, kept until their DNS TTL
 * runs out, shared by the verification threads (one mutex). Answers that a
 * name does not exist are cached too (negative caching, RFC 2308), for a
 * shorter time; temporary failures are never cached so the next message
 * retries. The clock is passed in so tests control it.
 */
#ifndef DKP_CACHE_H
#define DKP_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Outcome of a key lookup. */
enum dkp_keystat {
    DKP_KEY_FOUND = 0, /* record text available */
    DKP_KEY_NONE,      /* NXDOMAIN or no TXT record: permanent */
    DKP_KEY_TEMPFAIL,  /* timeout, SERVFAIL, network trouble */
    DKP_KEY_BADREPLY,  /* answer unusable (malformed, too long) */
};

struct dkp_cache;

/* max_entries > 0; TTLs are clamped to [min_ttl, max_ttl]; negative
 * answers are kept neg_ttl seconds. NULL on allocation failure. */
struct dkp_cache *dkp_cache_new(size_t max_entries, uint32_t min_ttl, uint32_t max_ttl,
                                uint32_t neg_ttl);
void dkp_cache_free(struct dkp_cache *c);

/* Look up `name` (case-insensitive) at time `now`. On a hit returns 1,
 * sets *st and, for DKP_KEY_FOUND, copies the record into rec (truncated
 * to reclen-1, NUL-terminated). Returns 0 on a miss or expiry. */
int dkp_cache_get(struct dkp_cache *c, const char *name, time_t now, enum dkp_keystat *st,
                  char *rec, size_t reclen);

/* Store an outcome. DKP_KEY_TEMPFAIL and DKP_KEY_BADREPLY are ignored.
 * When the cache is full, expired entries go first, then the entry closest
 * to expiry. */
void dkp_cache_put(struct dkp_cache *c, const char *name, enum dkp_keystat st, const char *rec,
                   uint32_t ttl, time_t now);

/* Entries currently held (expired ones included until evicted). */
size_t dkp_cache_count(struct dkp_cache *c);

#endif
