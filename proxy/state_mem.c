/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * state_mem: see state_mem.h. A chained hash table (power-of-two buckets,
 * keyed SipHash) plus one doubly linked LRU list; the table owns every
 * entry, value and member.
 */
#include "state_mem.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

enum { STATE_MEM__INT, STATE_MEM__STR, STATE_MEM__SET };

struct state_mem__member {
    size_t len;
    char *p; /* owned */
};

struct state_mem__ent {
    struct state_mem__ent *hnext;       /* bucket chain */
    struct state_mem__ent *prev, *next; /* LRU: head = most recent */
    uint64_t hash;
    uint64_t expires_ms; /* 0: never */
    size_t bytes;        /* what this entry counts against max_bytes */
    int type;
    int64_t ival;                      /* INT */
    char *sval;                        /* STR, owned */
    size_t slen;                       /* STR */
    struct state_mem__member *members; /* SET, owned */
    size_t nmembers, cap;              /* SET */
    char num[24];                      /* INT as text, for get */
    size_t klen;
    char key[];
};

struct state_mem {
    struct state_mem__ent **bucket;
    size_t nbuckets;    /* power of two, about the number of entries */
    size_t max_buckets; /* what max_entries needs (at most 2^22) */
    struct state_mem__ent *head, *tail;
    size_t n, max_entries, bytes, max_bytes;
    size_t sweep_pos; /* next bucket the sweep looks at */
    uint64_t evicted, expired;
    uint8_t seed[16];
};

/* ---- SipHash-2-4 (Aumasson and Bernstein, 2012) ---- */

#define STATE_MEM__ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static uint64_t state_mem__le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define STATE_MEM__ROUND(v0, v1, v2, v3)                                                           \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = STATE_MEM__ROTL(v1, 13);                                                              \
        v1 ^= v0;                                                                                  \
        v0 = STATE_MEM__ROTL(v0, 32);                                                              \
        v2 += v3;                                                                                  \
        v3 = STATE_MEM__ROTL(v3, 16);                                                              \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = STATE_MEM__ROTL(v3, 21);                                                              \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = STATE_MEM__ROTL(v1, 17);                                                              \
        v1 ^= v2;                                                                                  \
        v2 = STATE_MEM__ROTL(v2, 32);                                                              \
    } while (0)

uint64_t state_mem_siphash(const uint8_t key[16], const void *data, size_t len)
{
    const uint8_t *in = data;
    uint64_t k0 = state_mem__le64(key), k1 = state_mem__le64(key + 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = state_mem__le64(in + i);
        v3 ^= m;
        STATE_MEM__ROUND(v0, v1, v2, v3);
        STATE_MEM__ROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)in[whole + i] << (8 * i);
    v3 ^= b;
    STATE_MEM__ROUND(v0, v1, v2, v3);
    STATE_MEM__ROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        STATE_MEM__ROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- table ---- */

struct state_mem *state_mem_new(size_t max_entries, size_t max_bytes, const uint8_t seed[16])
{
    struct state_mem *m = xcalloc(1, sizeof *m);
    m->max_entries = max_entries;
    m->max_bytes = max_bytes;
    memcpy(m->seed, seed, sizeof m->seed);
    m->max_buckets = 16;
    while (m->max_buckets < max_entries && m->max_buckets < ((size_t)1 << 22))
        m->max_buckets <<= 1;
    /* The array grows with the entries (state_mem__grow): the default
     * bound of a million keys would otherwise cost 8 MB up front, and the
     * sweep would read all of it every second however few keys there are. */
    m->nbuckets = m->max_buckets < 1024 ? m->max_buckets : 1024;
    m->bucket = xcalloc(m->nbuckets, sizeof *m->bucket);
    return m;
}

/* Twice the buckets, every entry rehashed into them: O(n) once per
 * doubling, so O(1) amortised per insert. The load stays at most one. */
static void state_mem__grow(struct state_mem *m)
{
    size_t nb = m->nbuckets * 2;
    struct state_mem__ent **b = xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < m->nbuckets; i++) {
        for (struct state_mem__ent *e = m->bucket[i], *next; e; e = next) {
            next = e->hnext;
            size_t k = e->hash & (nb - 1);
            e->hnext = b[k];
            b[k] = e;
        }
    }
    free(m->bucket);
    m->bucket = b;
    m->nbuckets = nb;
    m->sweep_pos &= nb - 1;
}

static void state_mem__free_value(struct state_mem__ent *e)
{
    free(e->sval);
    e->sval = NULL;
    e->slen = 0;
    for (size_t i = 0; i < e->nmembers; i++)
        free(e->members[i].p);
    free(e->members);
    e->members = NULL;
    e->nmembers = e->cap = 0;
}

static void state_mem__account(struct state_mem *m, struct state_mem__ent *e, size_t bytes)
{
    m->bytes = m->bytes - e->bytes + bytes;
    e->bytes = bytes;
}

static void state_mem__lru_unlink(struct state_mem *m, struct state_mem__ent *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        m->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        m->tail = e->prev;
    e->prev = e->next = NULL;
}

static void state_mem__lru_front(struct state_mem *m, struct state_mem__ent *e)
{
    e->next = m->head;
    e->prev = NULL;
    if (m->head)
        m->head->prev = e;
    m->head = e;
    if (!m->tail)
        m->tail = e;
}

static void state_mem__remove(struct state_mem *m, struct state_mem__ent *e)
{
    struct state_mem__ent **pp = &m->bucket[e->hash & (m->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    state_mem__lru_unlink(m, e);
    m->bytes -= e->bytes;
    m->n--;
    state_mem__free_value(e);
    free(e);
}

static int state_mem__expired(const struct state_mem__ent *e, uint64_t now_ms)
{
    return e->expires_ms && e->expires_ms <= now_ms;
}

/* The live entry for key (moved to the LRU head), or NULL; an expired one
 * is dropped on the way. */
static struct state_mem__ent *state_mem__find(struct state_mem *m, const char *key, uint64_t h,
                                              uint64_t now_ms)
{
    size_t klen = strlen(key);
    for (struct state_mem__ent *e = m->bucket[h & (m->nbuckets - 1)]; e; e = e->hnext) {
        if (e->hash != h || e->klen != klen || memcmp(e->key, key, klen) != 0)
            continue;
        if (state_mem__expired(e, now_ms)) {
            m->expired++;
            state_mem__remove(m, e);
            return NULL;
        }
        if (m->head != e) {
            state_mem__lru_unlink(m, e);
            state_mem__lru_front(m, e);
        }
        return e;
    }
    return NULL;
}

static struct state_mem__ent *state_mem__insert(struct state_mem *m, const char *key, uint64_t h,
                                                int type)
{
    size_t klen = strlen(key);
    struct state_mem__ent *e = xcalloc(1, sizeof *e + klen + 1);
    memcpy(e->key, key, klen + 1);
    e->klen = klen;
    e->hash = h;
    e->type = type;
    size_t b = h & (m->nbuckets - 1);
    e->hnext = m->bucket[b];
    m->bucket[b] = e;
    state_mem__lru_front(m, e);
    m->n++;
    state_mem__account(m, e, sizeof *e + klen + 1);
    if (m->n > m->nbuckets && m->nbuckets < m->max_buckets)
        state_mem__grow(m);
    return e;
}

/* Evict from the LRU tail until within bounds. The entry just written is
 * at the head, so it goes last: only when it alone is over the bounds
 * (callers do not touch it after this). */
static void state_mem__bound(struct state_mem *m)
{
    while (m->tail && (m->n > m->max_entries || m->bytes > m->max_bytes)) {
        m->evicted++;
        state_mem__remove(m, m->tail);
    }
}

static uint64_t state_mem__hash(const struct state_mem *m, const char *key)
{
    return state_mem_siphash(m->seed, key, strlen(key));
}

static int64_t state_mem__ttl(const struct state_mem__ent *e, uint64_t now_ms)
{
    return e->expires_ms ? (int64_t)(e->expires_ms - now_ms) : -1;
}

/* Redis's grammar for a string INCRBY takes (string2ll): "0", or an
 * optional '-' and digits without a leading zero, nothing around them,
 * within int64. strtoll would also take " 5", "+5" and "012", which Redis
 * refuses: the backends must agree. 0, or -1 when p is not one. */
static int state_mem__parse_int(const char *p, size_t len, int64_t *out)
{
    if (len == 1 && p[0] == '0') {
        *out = 0;
        return 0;
    }
    size_t i = 0;
    bool neg = len > 0 && p[0] == '-';
    i += neg;
    if (i >= len || len > 20 || p[i] < '1' || p[i] > '9')
        return -1;
    uint64_t v = 0;
    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        unsigned dgt = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - dgt) / 10)
            return -1;
        v = v * 10 + dgt;
    }
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX)
        return -1;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* incr, and set below, without the bounds when bound is false (MINCR
 * applies them once, after its last write). */
static int state_mem__incr(struct state_mem *m, const char *key, int64_t delta, uint64_t window_ms,
                           uint64_t now_ms, int64_t *value, int64_t *ttl_ms, bool bound)
{
    uint64_t h = state_mem__hash(m, key);
    struct state_mem__ent *e = state_mem__find(m, key, h, now_ms);
    if (e && e->type == STATE_MEM__STR) {
        /* Redis takes a string holding a decimal integer. */
        int64_t v;
        if (state_mem__parse_int(e->sval, e->slen, &v) != 0)
            return -EPROTOTYPE;
        state_mem__free_value(e);
        e->type = STATE_MEM__INT;
        e->ival = v;
        state_mem__account(m, e, sizeof *e + e->klen + 1);
    } else if (e && e->type != STATE_MEM__INT) {
        return -EPROTOTYPE;
    }
    if (!e) {
        e = state_mem__insert(m, key, h, STATE_MEM__INT);
        if (window_ms)
            e->expires_ms = now_ms + window_ms;
    }
    if ((delta > 0 && e->ival > INT64_MAX - delta) || (delta < 0 && e->ival < INT64_MIN - delta))
        return -ERANGE;
    e->ival += delta;
    *value = e->ival;
    *ttl_ms = state_mem__ttl(e, now_ms);
    if (bound)
        state_mem__bound(m);
    return 0;
}

int state_mem_incr(struct state_mem *m, const char *key, int64_t delta, uint64_t window_ms,
                   uint64_t now_ms, int64_t *value, int64_t *ttl_ms)
{
    return state_mem__incr(m, key, delta, window_ms, now_ms, value, ttl_ms, true);
}

int state_mem_get(struct state_mem *m, const char *key, uint64_t now_ms, const char **val,
                  size_t *len, int64_t *ttl_ms)
{
    struct state_mem__ent *e = state_mem__find(m, key, state_mem__hash(m, key), now_ms);
    if (!e)
        return -ENOENT;
    if (e->type == STATE_MEM__SET)
        return -EPROTOTYPE;
    if (e->type == STATE_MEM__INT) {
        snprintf(e->num, sizeof e->num, "%" PRId64, e->ival);
        *val = e->num;
        *len = strlen(e->num);
    } else {
        *val = e->sval;
        *len = e->slen;
    }
    *ttl_ms = state_mem__ttl(e, now_ms);
    return 0;
}

static void state_mem__set(struct state_mem *m, const char *key, const char *val, size_t len,
                           uint64_t ttl_ms, uint64_t now_ms, bool bound)
{
    uint64_t h = state_mem__hash(m, key);
    struct state_mem__ent *e = state_mem__find(m, key, h, now_ms);
    if (e)
        state_mem__free_value(e);
    else
        e = state_mem__insert(m, key, h, STATE_MEM__STR);
    e->type = STATE_MEM__STR;
    e->sval = xmalloc(len + 1);
    memcpy(e->sval, val, len);
    e->sval[len] = 0;
    e->slen = len;
    e->expires_ms = ttl_ms ? now_ms + ttl_ms : 0;
    state_mem__account(m, e, sizeof *e + e->klen + 1 + len + 1);
    if (bound)
        state_mem__bound(m);
}

void state_mem_set(struct state_mem *m, const char *key, const char *val, size_t len,
                   uint64_t ttl_ms, uint64_t now_ms)
{
    state_mem__set(m, key, val, len, ttl_ms, now_ms, true);
}

int state_mem_del(struct state_mem *m, const char *key, uint64_t now_ms)
{
    struct state_mem__ent *e = state_mem__find(m, key, state_mem__hash(m, key), now_ms);
    if (!e)
        return 0;
    state_mem__remove(m, e);
    return 1;
}

static long state_mem__member_at(const struct state_mem__ent *e, const char *p, size_t len)
{
    for (size_t i = 0; i < e->nmembers; i++)
        if (e->members[i].len == len && memcmp(e->members[i].p, p, len) == 0)
            return (long)i;
    return -1;
}

int state_mem_sadd(struct state_mem *m, const char *key, const char *member, size_t len,
                   uint64_t ttl_ms, uint64_t now_ms)
{
    uint64_t h = state_mem__hash(m, key);
    struct state_mem__ent *e = state_mem__find(m, key, h, now_ms);
    if (e && e->type != STATE_MEM__SET)
        return -EPROTOTYPE;
    if (!e)
        e = state_mem__insert(m, key, h, STATE_MEM__SET);
    if (state_mem__member_at(e, member, len) >= 0) {
        if (ttl_ms)
            e->expires_ms = now_ms + ttl_ms;
        return 0;
    }
    if (e->nmembers >= STATE_MEM_SET_MAX)
        return -ENOSPC; /* as the Redis script: a full set's expiry stays */
    if (ttl_ms)
        e->expires_ms = now_ms + ttl_ms;
    if (e->nmembers == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 4;
        e->members = xrealloc(e->members, e->cap * sizeof *e->members);
    }
    struct state_mem__member *mb = &e->members[e->nmembers++];
    mb->p = xmalloc(len + 1);
    memcpy(mb->p, member, len);
    mb->p[len] = 0;
    mb->len = len;
    state_mem__account(m, e, e->bytes + sizeof *mb + len + 1);
    state_mem__bound(m);
    return 1;
}

int state_mem_sismember(struct state_mem *m, const char *key, const char *member, size_t len,
                        uint64_t now_ms)
{
    struct state_mem__ent *e = state_mem__find(m, key, state_mem__hash(m, key), now_ms);
    if (!e)
        return 0;
    if (e->type != STATE_MEM__SET)
        return -EPROTOTYPE;
    return state_mem__member_at(e, member, len) >= 0;
}

/* The counter value of e (a decimal string counts, as in Redis), or
 * -EPROTOTYPE. */
static int state_mem__number(const struct state_mem__ent *e, int64_t *v)
{
    if (e->type == STATE_MEM__INT) {
        *v = e->ival;
        return 0;
    }
    if (e->type != STATE_MEM__STR || state_mem__parse_int(e->sval, e->slen, v) != 0)
        return -EPROTOTYPE;
    return 0;
}

int state_mem_mincr(struct state_mem *m, const char *const *keys, const int64_t *deltas, size_t n,
                    int64_t limit, const char *guard, const char *gval, size_t glen,
                    uint64_t gttl_ms, uint64_t now_ms, int *applied)
{
    *applied = 0;
    if (guard && state_mem__find(m, guard, state_mem__hash(m, guard), now_ms))
        return 0;
    /* Every check before the first write: all or none. That includes the
     * bounds: the call's own entries must fit in the table (then evicting
     * older keys once, after the last write, makes room, and never takes
     * out a counter this call incremented). */
    size_t need = n + (guard != NULL), bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += sizeof(struct state_mem__ent) + strlen(keys[i]) + 1;
    if (guard)
        bytes += sizeof(struct state_mem__ent) + strlen(guard) + 1 + glen + 1;
    if (need > m->max_entries || bytes > m->max_bytes)
        return -ENOSPC;
    for (size_t i = 0; i < n; i++) {
        if (deltas[i] > limit || deltas[i] < -limit)
            return -ERANGE;
        struct state_mem__ent *e = state_mem__find(m, keys[i], state_mem__hash(m, keys[i]), now_ms);
        int64_t v = 0;
        if (e && state_mem__number(e, &v) != 0)
            return -EPROTOTYPE;
        if (v > limit || v < -limit || v + deltas[i] > limit || v + deltas[i] < -limit)
            return -ERANGE;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t v, ttl;
        /* cannot fail: checked above, and nothing is evicted before the end */
        (void)state_mem__incr(m, keys[i], deltas[i], 0, now_ms, &v, &ttl, false);
    }
    if (guard)
        state_mem__set(m, guard, gval, glen, gttl_ms, now_ms, false);
    state_mem__bound(m);
    *applied = 1;
    return 0;
}

size_t state_mem_sweep(struct state_mem *m, uint64_t now_ms, size_t budget)
{
    size_t dropped = 0, looked = 0;
    if (m->n == 0)
        return 0;
    for (size_t nb = 0; nb < m->nbuckets && looked < budget; nb++) {
        size_t b = m->sweep_pos;
        m->sweep_pos = (m->sweep_pos + 1) & (m->nbuckets - 1);
        struct state_mem__ent *e = m->bucket[b];
        while (e) {
            struct state_mem__ent *next = e->hnext;
            looked++;
            if (state_mem__expired(e, now_ms)) {
                m->expired++;
                state_mem__remove(m, e);
                dropped++;
            }
            e = next;
        }
    }
    return dropped;
}

void state_mem_stats(const struct state_mem *m, struct state_mem_stats *out)
{
    out->entries = m->n;
    out->bytes = m->bytes;
    out->evicted = m->evicted;
    out->expired = m->expired;
}

void state_mem_free(struct state_mem *m)
{
    if (!m)
        return;
    while (m->head)
        state_mem__remove(m, m->head);
    free(m->bucket);
    free(m);
}
