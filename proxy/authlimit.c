/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "authlimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

struct authlimit_entry {
    char key[64];      /* "" never used */
    unsigned fails;    /* in the window that started at `start_ms` */
    uint64_t start_ms; /* the window's start */
};

struct authlimit {
    struct authlimit_entry *v; /* owned; NULL while limit is 0 */
    size_t cap;                /* a power of two */
    unsigned limit;
    uint64_t window_ms;
    uint64_t untracked;
};

static size_t authlimit__hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool authlimit__live(const struct authlimit *al, const struct authlimit_entry *e,
                            uint64_t now_ms)
{
    return e->key[0] && e->fails && now_ms - e->start_ms < al->window_ms;
}

struct authlimit *authlimit_new(size_t cap, unsigned limit, uint64_t window_ms)
{
    struct authlimit *al = xcalloc(1, sizeof *al);
    size_t c = 16;
    while (c < cap)
        c <<= 1;
    al->cap = c;
    authlimit_set(al, limit, window_ms);
    return al;
}

void authlimit_set(struct authlimit *al, unsigned limit, uint64_t window_ms)
{
    al->limit = limit;
    al->window_ms = window_ms ? window_ms : 1;
    if (limit && !al->v)
        al->v = xcalloc(al->cap, sizeof *al->v);
}

void authlimit_free(struct authlimit *al)
{
    if (!al)
        return;
    free(al->v);
    free(al);
}

/* The entry of `key` (live or not), or NULL; *free_slot gets the first
 * reusable slot on the probe path (an empty or ended one). */
static struct authlimit_entry *authlimit__find(const struct authlimit *al, const char *key,
                                               uint64_t now_ms, struct authlimit_entry **free_slot)
{
    size_t mask = al->cap - 1, i = authlimit__hash(key) & mask;
    *free_slot = NULL;
    for (size_t probe = 0; probe < al->cap; probe++, i = (i + 1) & mask) {
        struct authlimit_entry *e = &al->v[i];
        if (e->key[0] == 0) {
            if (!*free_slot)
                *free_slot = e;
            return NULL; /* the probe path ends at a never-used slot */
        }
        if (strcmp(e->key, key) == 0)
            return e;
        if (!*free_slot && !authlimit__live(al, e, now_ms))
            *free_slot = e;
    }
    return NULL;
}

bool authlimit_blocked(const struct authlimit *al, const char *key, uint64_t now_ms,
                       uint64_t *retry_ms)
{
    if (!al || !al->limit || !al->v)
        return false;
    struct authlimit_entry *slot;
    const struct authlimit_entry *e = authlimit__find(al, key, now_ms, &slot);
    if (!e || !authlimit__live(al, e, now_ms) || e->fails < al->limit)
        return false;
    if (retry_ms)
        *retry_ms = al->window_ms - (now_ms - e->start_ms);
    return true;
}

unsigned authlimit_fail(struct authlimit *al, const char *key, uint64_t now_ms)
{
    if (!al || !al->limit || !al->v || !key[0])
        return 0;
    struct authlimit_entry *slot;
    struct authlimit_entry *e = authlimit__find(al, key, now_ms, &slot);
    if (!e) {
        if (!slot) {
            al->untracked++;
            return 0;
        }
        e = slot;
        snprintf(e->key, sizeof e->key, "%s", key);
        e->fails = 0;
    }
    if (!authlimit__live(al, e, now_ms)) {
        e->fails = 0;
        e->start_ms = now_ms;
    }
    if (e->fails < UINT32_MAX)
        e->fails++;
    return e->fails;
}

void authlimit_refund(struct authlimit *al, const char *key, uint64_t now_ms)
{
    if (!al || !al->limit || !al->v)
        return;
    struct authlimit_entry *slot;
    struct authlimit_entry *e = authlimit__find(al, key, now_ms, &slot);
    if (e && authlimit__live(al, e, now_ms) && e->fails > 0)
        e->fails--;
}

uint64_t authlimit_untracked(const struct authlimit *al)
{
    return al ? al->untracked : 0;
}
