/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * upslot: the daemon's share of the upstream MTA's sessions (see upslot.h).
 *
 * Every decision (who gets a freed slot, who gives one back) is made in
 * upslot__pass(), which only moves slots between lists and queues the
 * owners' callbacks; the callbacks run from the pool's defer event or its
 * timer, so an owner is never called inside an upslot_* call.
 */
#include "upslot.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"
#include "xalloc.h"

#define UPSLOT_TICK_MS 250

/* ---- held slots per client key ---------------------------------------------- */

static size_t upslot__hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static struct upslot__ipc *upslot__ipc_find(struct upslot_pool *p, const char *key, bool create);

/* Rebuild at twice the size, dropping keys that hold nothing. */
static void upslot__ipc_grow(struct upslot_pool *p)
{
    struct upslot__ipc *old = p->ipc;
    size_t oldcap = p->ipc_cap;
    p->ipc_cap = oldcap ? oldcap * 2 : 64;
    p->ipc = xcalloc(p->ipc_cap, sizeof *p->ipc);
    p->ipc_used = 0;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].n > 0)
            upslot__ipc_find(p, old[i].key, true)->n = old[i].n;
    free(old);
}

static struct upslot__ipc *upslot__ipc_find(struct upslot_pool *p, const char *key, bool create)
{
    if (create && (p->ipc_used + 1) * 2 > p->ipc_cap)
        upslot__ipc_grow(p);
    if (!p->ipc_cap)
        return NULL;
    size_t mask = p->ipc_cap - 1;
    for (size_t i = upslot__hash(key) & mask;; i = (i + 1) & mask) {
        struct upslot__ipc *e = &p->ipc[i];
        if (!e->key[0]) {
            if (!create)
                return NULL;
            snprintf(e->key, sizeof e->key, "%s", key);
            p->ipc_used++;
            return e;
        }
        if (strcmp(e->key, key) == 0)
            return e;
    }
}

static unsigned upslot__held_by(struct upslot_pool *p, const char *key)
{
    struct upslot__ipc *e = upslot__ipc_find(p, key, false);
    return e ? e->n : 0;
}

/* ---- lists ------------------------------------------------------------------ */

static void upslot__hold(struct upslot_pool *p, struct upslot *sl)
{
    sl->st = UPSLOT_HELD;
    sl->prev = NULL;
    sl->next = p->holders;
    if (p->holders)
        p->holders->prev = sl;
    p->holders = sl;
    p->nheld++;
    upslot__ipc_find(p, sl->key, true)->n++;
    stats_upslots(p->nheld, p->nwaiting);
}

static void upslot__unhold(struct upslot_pool *p, struct upslot *sl)
{
    if (sl->prev)
        sl->prev->next = sl->next;
    else
        p->holders = sl->next;
    if (sl->next)
        sl->next->prev = sl->prev;
    sl->prev = sl->next = NULL;
    p->nheld--;
    struct upslot__ipc *e = upslot__ipc_find(p, sl->key, false);
    if (e && e->n > 0)
        e->n--;
    stats_upslots(p->nheld, p->nwaiting);
}

static void upslot__unwait(struct upslot_pool *p, struct upslot *sl)
{
    if (sl->prev)
        sl->prev->next = sl->next;
    else
        p->waiters = sl->next;
    if (sl->next)
        sl->next->prev = sl->prev;
    else
        p->waiters_tail = sl->prev;
    sl->prev = sl->next = NULL;
    p->nwaiting--;
    stats_upslots(p->nheld, p->nwaiting);
}

static void upslot__unqueue(struct upslot **q, struct upslot *sl)
{
    for (; *q; q = &(*q)->qnext)
        if (*q == sl) {
            *q = sl->qnext;
            sl->qnext = NULL;
            return;
        }
}

static void upslot__enqueue(struct upslot **q, struct upslot *sl)
{
    while (*q)
        q = &(*q)->qnext;
    sl->qnext = NULL;
    *q = sl;
}

/* ---- decisions --------------------------------------------------------------- */

static void upslot__ev(struct defer_ev *ev);

static bool upslot__room(const struct upslot_pool *p)
{
    return !p->lim.max || p->nheld < p->lim.max;
}

static bool upslot__ip_room(struct upslot_pool *p, const char *key)
{
    return !p->lim.max_per_ip || upslot__held_by(p, key) < p->lim.max_per_ip;
}

/* Under stress: as many waiting as half the pool (at least 3). A queue that
 * long is a crowd that holds sessions idle, not a burst of mail: the
 * newest waiter is served first (the old ones would time out anyway, and
 * the crowd queued first), and idle transactions are cut ten times sooner,
 * like Postfix's stress-adaptive timeouts. */
static bool upslot__stressed(const struct upslot_pool *p)
{
    unsigned level = p->lim.max / 2;
    if (p->nwaiting >= (level > 3 ? level : 3))
        return true;
    /* ... and for reclaim_idle after: the crowd served last still idles
     * in the sessions it got. */
    return p->stress_until && uv_now(p->loop) < p->stress_until;
}

static void upslot__note_stress(struct upslot_pool *p)
{
    unsigned level = p->lim.max / 2;
    if (p->nwaiting >= (level > 3 ? level : 3))
        p->stress_until = uv_now(p->loop) + p->lim.reclaim_idle;
}

/* May sl be taken back now? Outside a transaction when idle at all, inside
 * one after reclaim_idle without progress (a tenth under stress). */
static bool upslot__reclaimable(const struct upslot_pool *p, const struct upslot *sl, uint64_t now)
{
    if (sl->st != UPSLOT_HELD || sl->granting || !sl->idle_since)
        return false;
    if (!sl->in_tx)
        return true;
    uint64_t limit = p->lim.reclaim_idle;
    if (upslot__stressed(p))
        limit = limit / 10 > 100 ? limit / 10 : 100;
    return now >= sl->idle_since && now - sl->idle_since >= limit;
}

/* Has a fallen idle before b? idle_since is the loop's cached clock in
 * whole ms: clients whose replies went out in the same ms share it (a
 * client's whole MAIL-RCPT dialogue on loopback takes 2-3 ms), and the
 * holders list (newest first) is no guide, so the order in which they
 * fell idle decides. */
static bool upslot__idle_before(const struct upslot *a, const struct upslot *b)
{
    if (a->idle_since != b->idle_since)
        return a->idle_since < b->idle_since;
    return a->idle_seq < b->idle_seq;
}

/* The holder to take back: one outside a transaction before one inside,
 * the longest idle first. */
static struct upslot *upslot__victim(struct upslot_pool *p, uint64_t now)
{
    struct upslot *best = NULL;
    for (struct upslot *h = p->holders; h; h = h->next) {
        if (h->reclaiming || !upslot__reclaimable(p, h, now))
            continue;
        if (!best || (best->in_tx && !h->in_tx) ||
            (best->in_tx == h->in_tx && upslot__idle_before(h, best)))
            best = h;
    }
    return best;
}

/* Give free slots to waiters (first come first served, newest first under
 * stress; skipping those whose address holds its share already), then, for the waiters still
 * left that could use one, choose holders to take back. */
static void upslot__pass(struct upslot_pool *p)
{
    bool queued = false;
    unsigned eligible = 0;
    upslot__note_stress(p);
    bool lifo = upslot__stressed(p);
    struct upslot *w = lifo ? p->waiters_tail : p->waiters;
    while (w) {
        struct upslot *next = lifo ? w->prev : w->next;
        if (upslot__ip_room(p, w->key)) {
            if (upslot__room(p)) {
                upslot__unwait(p, w);
                upslot__hold(p, w);
                w->granting = true;
                upslot__enqueue(&p->grant_q, w);
                queued = true;
            } else {
                eligible++;
            }
        }
        w = next;
    }
    uint64_t now = uv_now(p->loop);
    while (p->nreclaiming < eligible) {
        struct upslot *v = upslot__victim(p, now);
        if (!v)
            break;
        v->reclaiming = true;
        p->nreclaiming++;
        upslot__enqueue(&p->reclaim_q, v);
        queued = true;
    }
    if (queued)
        defer_post(&p->ev, upslot__ev);
}

static void upslot__tick(uv_timer_t *t)
{
    struct upslot_pool *p = t->data;
    uint64_t now = uv_now(p->loop);
    struct upslot *w = p->waiters;
    while (w) {
        struct upslot *next = w->next;
        if (w->wait_until <= now) {
            upslot__unwait(p, w);
            w->st = UPSLOT_NONE;
            stats_upslot(STATS_UPSLOT_EXPIRED);
            w->ops->expired(w); /* may release other slots: `next` stays ours */
        }
        w = next;
    }
    upslot__pass(p);
    if (!p->waiters && p->timer_on) {
        uv_timer_stop(&p->timer);
        p->timer_on = false;
    }
}

static void upslot__ev(struct defer_ev *ev)
{
    struct upslot_pool *p = (struct upslot_pool *)((char *)ev - offsetof(struct upslot_pool, ev));
    uint64_t now = uv_now(p->loop);
    while (p->reclaim_q) {
        struct upslot *v = p->reclaim_q;
        p->reclaim_q = v->qnext;
        v->qnext = NULL;
        v->reclaiming = false;
        p->nreclaiming--;
        if (!upslot__reclaimable(p, v, now))
            continue; /* it came back to life since */
        stats_upslot(v->in_tx ? STATS_UPSLOT_RECLAIM_TX : STATS_UPSLOT_RECLAIM_IDLE);
        v->ops->reclaim(v);
        if (v->st == UPSLOT_HELD)
            upslot_release(v); /* the owner must have; never leak a slot */
    }
    while (p->grant_q) {
        struct upslot *g = p->grant_q;
        p->grant_q = g->qnext;
        g->qnext = NULL;
        g->granting = false;
        g->ops->granted(g);
    }
    upslot__pass(p); /* victims that came back to life leave waiters waiting */
}

/* ---- interface ----------------------------------------------------------------- */

void upslot_pool_init(struct upslot_pool *p, uv_loop_t *loop, const struct upslot_limits *lim)
{
    memset(p, 0, sizeof *p);
    p->loop = loop;
    p->lim = *lim;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    uv_unref((uv_handle_t *)&p->timer);
}

void upslot_pool_set_limits(struct upslot_pool *p, const struct upslot_limits *lim)
{
    p->lim = *lim;
    upslot__pass(p); /* a higher max lets waiters in now */
}

void upslot_pool_close(struct upslot_pool *p)
{
    defer_cancel(&p->ev);
    uv_timer_stop(&p->timer);
    if (!uv_is_closing((uv_handle_t *)&p->timer))
        uv_close((uv_handle_t *)&p->timer, NULL);
    free(p->ipc);
    p->ipc = NULL;
    p->ipc_cap = p->ipc_used = 0;
}

bool upslot_acquire(struct upslot_pool *p, struct upslot *sl, const struct upslot_ops *ops,
                    const char *key)
{
    if (sl->st != UPSLOT_NONE)
        return sl->st == UPSLOT_HELD && !sl->granting;
    sl->pool = p;
    sl->ops = ops;
    sl->qnext = NULL;
    sl->granting = sl->reclaiming = false;
    snprintf(sl->key, sizeof sl->key, "%s", key);
    /* First come first served: nobody passes those already waiting. */
    if (!p->waiters && upslot__room(p) && upslot__ip_room(p, sl->key)) {
        upslot__hold(p, sl);
        return true;
    }
    sl->st = UPSLOT_WAITING;
    sl->wait_until = uv_now(p->loop) + p->lim.queue_timeout;
    sl->next = NULL;
    sl->prev = p->waiters_tail;
    if (p->waiters_tail)
        p->waiters_tail->next = sl;
    else
        p->waiters = sl;
    p->waiters_tail = sl;
    p->nwaiting++;
    stats_upslots(p->nheld, p->nwaiting);
    stats_upslot(STATS_UPSLOT_WAIT);
    if (!p->timer_on) {
        uv_timer_start(&p->timer, upslot__tick, UPSLOT_TICK_MS, UPSLOT_TICK_MS);
        p->timer_on = true;
    }
    upslot__pass(p);
    return false;
}

bool upslot_try(struct upslot_pool *p, struct upslot *sl, const struct upslot_ops *ops,
                const char *key)
{
    if (sl->st != UPSLOT_NONE)
        return sl->st == UPSLOT_HELD && !sl->granting;
    if (p->waiters || !upslot__room(p) || !upslot__ip_room(p, key))
        return false;
    sl->pool = p;
    sl->ops = ops;
    sl->qnext = NULL;
    sl->granting = sl->reclaiming = false;
    snprintf(sl->key, sizeof sl->key, "%s", key);
    upslot__hold(p, sl);
    return true;
}

void upslot_release(struct upslot *sl)
{
    struct upslot_pool *p = sl->pool;
    if (sl->st == UPSLOT_NONE || !p)
        return;
    if (sl->st == UPSLOT_WAITING) {
        upslot__unwait(p, sl);
        sl->st = UPSLOT_NONE;
        return;
    }
    if (sl->granting) {
        upslot__unqueue(&p->grant_q, sl);
        sl->granting = false;
    }
    if (sl->reclaiming) {
        upslot__unqueue(&p->reclaim_q, sl);
        sl->reclaiming = false;
        p->nreclaiming--;
    }
    upslot__unhold(p, sl);
    sl->st = UPSLOT_NONE;
    if (p->waiters)
        upslot__pass(p);
}

void upslot_activity(struct upslot *sl, uint64_t now, bool working, bool progress, bool in_tx)
{
    sl->in_tx = in_tx;
    if (working) {
        sl->idle_since = 0;
    } else if (progress || !sl->idle_since) {
        sl->idle_since = now + 1; /* 0 means working */
        /* A slot that has never been in a pool is held by no one: its
         * order does not matter until upslot_acquire gives it a pool. */
        sl->idle_seq = sl->pool ? ++sl->pool->idle_seq : 0;
    }
}
