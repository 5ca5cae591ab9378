/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dns_cache: see dns_cache.h. A chained hash table (power-of-two buckets,
 * sized for max_entries) plus one doubly linked LRU list; the cache owns
 * every entry and every stored value.
 */
#include "dns_cache.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xalloc.h"

struct dns_cache__ent {
    struct dns_cache__ent *hnext;       /* bucket chain */
    struct dns_cache__ent *prev, *next; /* LRU: head = most recent */
    int type;
    uint64_t expires_ms;
    struct dns_cache_val *val; /* owned */
    char name[];
};

struct dns_cache {
    struct dns_cache__ent **bucket;
    size_t nbuckets; /* power of two */
    struct dns_cache__ent *head, *tail;
    size_t n, max;
    uint32_t max_ttl;
};

struct dns_cache_val *dns_cache_val_new(int status, const char *const *rr, unsigned n, uint32_t ttl)
{
    size_t bytes = sizeof(struct dns_cache_val) + (size_t)n * sizeof(char *);
    for (unsigned i = 0; i < n; i++)
        bytes += strlen(rr[i]) + 1;
    struct dns_cache_val *v = xmalloc(bytes);
    char *p = (char *)&v->rr[n];
    v->status = status;
    v->n = n;
    v->ttl = ttl;
    for (unsigned i = 0; i < n; i++) {
        size_t l = strlen(rr[i]) + 1;
        memcpy(p, rr[i], l);
        v->rr[i] = p;
        p += l;
    }
    return v;
}

struct dns_cache_val *dns_cache_val_dup(const struct dns_cache_val *v)
{
    return dns_cache_val_new(v->status, (const char *const *)v->rr, v->n, v->ttl);
}

static size_t dns_cache__hash(int type, const char *name)
{
    size_t h = 2166136261u ^ (size_t)type;
    for (; *name; name++)
        h = (h ^ (unsigned char)tolower((unsigned char)*name)) * 16777619u;
    return h;
}

struct dns_cache *dns_cache_new(size_t max_entries, uint32_t max_ttl)
{
    struct dns_cache *c = xcalloc(1, sizeof *c);
    c->max = max_entries;
    c->max_ttl = max_ttl;
    c->nbuckets = 16;
    while (c->nbuckets < max_entries && c->nbuckets < ((size_t)1 << 20))
        c->nbuckets <<= 1;
    c->bucket = xcalloc(c->nbuckets, sizeof *c->bucket);
    return c;
}

static void dns_cache__unlink(struct dns_cache *c, struct dns_cache__ent *e)
{
    struct dns_cache__ent **pp = &c->bucket[dns_cache__hash(e->type, e->name) & (c->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    c->n--;
    free(e->val);
    free(e);
}

void dns_cache_free(struct dns_cache *c)
{
    if (!c)
        return;
    while (c->head)
        dns_cache__unlink(c, c->head);
    free(c->bucket);
    free(c);
}

static struct dns_cache__ent *dns_cache__find(struct dns_cache *c, int type, const char *name)
{
    struct dns_cache__ent *e = c->bucket[dns_cache__hash(type, name) & (c->nbuckets - 1)];
    for (; e; e = e->hnext)
        if (e->type == type && strcasecmp(e->name, name) == 0)
            return e;
    return NULL;
}

static void dns_cache__to_front(struct dns_cache *c, struct dns_cache__ent *e)
{
    if (c->head == e)
        return;
    e->prev->next = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = NULL;
    e->next = c->head;
    c->head->prev = e;
    c->head = e;
}

struct dns_cache_val *dns_cache_get(struct dns_cache *c, int type, const char *name,
                                    uint64_t now_ms)
{
    struct dns_cache__ent *e = dns_cache__find(c, type, name);
    if (!e)
        return NULL;
    if (e->expires_ms <= now_ms) {
        dns_cache__unlink(c, e);
        return NULL;
    }
    dns_cache__to_front(c, e);
    struct dns_cache_val *v = dns_cache_val_dup(e->val);
    v->ttl = (uint32_t)((e->expires_ms - now_ms + 999) / 1000);
    return v;
}

void dns_cache_put(struct dns_cache *c, int type, const char *name, const struct dns_cache_val *v,
                   uint32_t ttl, uint64_t now_ms)
{
    if (ttl > c->max_ttl)
        ttl = c->max_ttl;
    if (ttl == 0 || c->max == 0)
        return;
    struct dns_cache__ent *e = dns_cache__find(c, type, name);
    if (e)
        dns_cache__unlink(c, e);
    while (c->n >= c->max)
        dns_cache__unlink(c, c->tail);
    size_t nl = strlen(name) + 1;
    e = xcalloc(1, sizeof *e + nl);
    memcpy(e->name, name, nl);
    e->type = type;
    e->expires_ms = now_ms + (uint64_t)ttl * 1000;
    e->val = dns_cache_val_dup(v);
    size_t b = dns_cache__hash(type, name) & (c->nbuckets - 1);
    e->hnext = c->bucket[b];
    c->bucket[b] = e;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
    c->n++;
}

size_t dns_cache_count(const struct dns_cache *c)
{
    return c->n;
}
