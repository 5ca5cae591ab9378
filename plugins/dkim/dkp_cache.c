/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_cache: a chained hash table under one mutex. Lookups are rare next to
 * the RSA work of a verification, so a single lock does not matter; the
 * table owns copies of every name and record.
 */
#include "dkp_cache.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct dkp__centry {
    struct dkp__centry *next;
    char *name; /* owned, lower case */
    char *rec;  /* owned, NULL for negative entries */
    enum dkp_keystat st;
    time_t expires;
};

struct dkp_cache {
    pthread_mutex_t lock;
    struct dkp__centry **buckets; /* owned */
    size_t nbuckets;
    size_t count;
    size_t max_entries;
    uint32_t min_ttl, max_ttl, neg_ttl;
};

static uint64_t dkp__hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the lower-cased name */
    for (; *s; s++) {
        h ^= (unsigned char)tolower((unsigned char)*s);
        h *= 1099511628211ull;
    }
    return h;
}

struct dkp_cache *dkp_cache_new(size_t max_entries, uint32_t min_ttl, uint32_t max_ttl,
                                uint32_t neg_ttl)
{
    struct dkp_cache *c = calloc(1, sizeof *c);

    if (!c || max_entries == 0) {
        free(c);
        return NULL;
    }
    c->nbuckets = 64;
    while (c->nbuckets < max_entries && c->nbuckets < (1u << 20))
        c->nbuckets *= 2;
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->max_entries = max_entries;
    c->min_ttl = min_ttl;
    c->max_ttl = max_ttl < min_ttl ? min_ttl : max_ttl;
    c->neg_ttl = neg_ttl;
    return c;
}

static void dkp__entry_free(struct dkp__centry *e)
{
    free(e->name);
    free(e->rec);
    free(e);
}

void dkp_cache_free(struct dkp_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct dkp__centry *e = c->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            dkp__entry_free(e);
        }
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* The link pointing at the entry for name, or at the bucket's NULL end. */
static struct dkp__centry **dkp__slot(struct dkp_cache *c, const char *name)
{
    struct dkp__centry **pp = &c->buckets[dkp__hash(name) & (c->nbuckets - 1)];
    while (*pp && strcasecmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    return pp;
}

int dkp_cache_get(struct dkp_cache *c, const char *name, time_t now, enum dkp_keystat *st,
                  char *rec, size_t reclen)
{
    int hit = 0;

    pthread_mutex_lock(&c->lock);
    struct dkp__centry **pp = dkp__slot(c, name);
    struct dkp__centry *e = *pp;
    if (e && e->expires <= now) {
        *pp = e->next;
        dkp__entry_free(e);
        c->count--;
    } else if (e) {
        *st = e->st;
        if (e->st == DKP_KEY_FOUND && rec && reclen > 0) {
            size_t n = strlen(e->rec);
            if (n >= reclen)
                n = reclen - 1;
            memcpy(rec, e->rec, n);
            rec[n] = '\0';
        }
        hit = 1;
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

/* Make room for one entry: drop the expired ones, else the soonest to
 * expire. Called with the lock held. */
static void dkp__evict(struct dkp_cache *c, time_t now)
{
    struct dkp__centry **victim = NULL;

    for (size_t i = 0; i < c->nbuckets; i++) {
        struct dkp__centry **pp = &c->buckets[i];
        while (*pp) {
            if ((*pp)->expires <= now) {
                struct dkp__centry *e = *pp;
                *pp = e->next;
                dkp__entry_free(e);
                c->count--;
                continue;
            }
            if (!victim || (*pp)->expires < (*victim)->expires)
                victim = pp;
            pp = &(*pp)->next;
        }
    }
    if (c->count >= c->max_entries && victim) {
        struct dkp__centry *e = *victim;
        *victim = e->next;
        dkp__entry_free(e);
        c->count--;
    }
}

void dkp_cache_put(struct dkp_cache *c, const char *name, enum dkp_keystat st, const char *rec,
                   uint32_t ttl, time_t now)
{
    struct dkp__centry *e;

    if (st != DKP_KEY_FOUND && st != DKP_KEY_NONE)
        return;
    if (st == DKP_KEY_FOUND) {
        if (ttl < c->min_ttl)
            ttl = c->min_ttl;
        if (ttl > c->max_ttl)
            ttl = c->max_ttl;
    } else {
        ttl = c->neg_ttl;
    }
    if (ttl == 0)
        return;
    e = calloc(1, sizeof *e);
    if (!e)
        return;
    e->name = strdup(name);
    e->rec = st == DKP_KEY_FOUND ? strdup(rec ? rec : "") : NULL;
    if (!e->name || (st == DKP_KEY_FOUND && !e->rec)) {
        dkp__entry_free(e);
        return;
    }
    for (char *p = e->name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    e->st = st;
    e->expires = now + (time_t)ttl;

    pthread_mutex_lock(&c->lock);
    struct dkp__centry **pp = dkp__slot(c, name);
    if (*pp) {
        /* replace: a fresher answer wins */
        struct dkp__centry *old = *pp;
        e->next = old->next;
        *pp = e;
        dkp__entry_free(old);
    } else {
        if (c->count >= c->max_entries) {
            dkp__evict(c, now);
            pp = dkp__slot(c, name);
        }
        e->next = NULL;
        *pp = e;
        c->count++;
    }
    pthread_mutex_unlock(&c->lock);
}

size_t dkp_cache_count(struct dkp_cache *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->count;
    pthread_mutex_unlock(&c->lock);
    return n;
}
