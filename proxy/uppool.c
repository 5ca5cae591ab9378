/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * uppool: upstream connections kept open between client sessions; see
 * uppool.h.
 *
 * An entry is on one of two lists: `reset` while its RSET is answered
 * (the RSET callback moves it to `idle` or closes it), `idle` while it
 * waits. A connection whose last message was answered and that has
 * nothing in flight (up_settled) goes to `idle` at once, without RSET.
 * The RSET callback is the up's own (called from the up's read path, never
 * from inside a uppool_* call), and closing the up cancels it, so an entry
 * never outlives its up.
 */
#include "uppool.h"

#include <stdlib.h>

#include "log.h"
#include "stats.h"
#include "xalloc.h"

struct uppool_ent {
    struct uppool_ent *prev, *next;
    struct uppool *pool;
    struct up *u;
    uint64_t since; /* loop ms: idle since */
};

static void uppool__unlink(struct uppool_ent **head, struct uppool_ent *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        *head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    e->prev = e->next = NULL;
}

static void uppool__push(struct uppool_ent **head, struct uppool_ent *e)
{
    e->prev = NULL;
    e->next = *head;
    if (*head)
        (*head)->prev = e;
    *head = e;
}

static void uppool__gauge(const struct uppool *p)
{
    stats_upconn_idle(p->nidle);
}

/* Drop an idle entry and close its connection. */
static void uppool__drop_idle(struct uppool *p, struct uppool_ent *e)
{
    uppool__unlink(&p->idle, e);
    p->nidle--;
    up_free(e->u);
    free(e);
}

static bool uppool__expired(const struct uppool *p, const struct uppool_ent *e, uint64_t now)
{
    return up_failed(e->u) || now - e->since >= p->lim.idle_ms || up_age_ms(e->u) >= p->lim.age_ms;
}

static void uppool__timer_cb(uv_timer_t *t);

static void uppool__arm(struct uppool *p)
{
    if (p->nidle == 0 || p->closed) {
        if (p->timer_on)
            uv_timer_stop(&p->timer);
        p->timer_on = false;
        return;
    }
    if (p->timer_on)
        return;
    /* A quarter of the idle timeout, at least 100 ms: an expired connection
     * waits at most that much longer, and the loop wakes rarely. */
    uint64_t every = p->lim.idle_ms / 4 < 100 ? 100 : p->lim.idle_ms / 4;
    uv_timer_start(&p->timer, uppool__timer_cb, every, every);
    p->timer_on = true;
}

static void uppool__sweep(struct uppool *p)
{
    uint64_t now = uv_now(p->loop);
    struct uppool_ent *e = p->idle, *next;
    for (; e; e = next) {
        next = e->next;
        if (uppool__expired(p, e, now)) {
            stats_upconn(up_failed(e->u) ? STATS_UPCONN_ENDED : STATS_UPCONN_EXPIRED);
            uppool__drop_idle(p, e);
        }
    }
    uppool__gauge(p);
    uppool__arm(p);
}

static void uppool__timer_cb(uv_timer_t *t)
{
    uppool__sweep(t->data);
}

void uppool_init(struct uppool *p, uv_loop_t *loop, const struct uppool_limits *lim,
                 const struct upslot_pool *slots)
{
    *p = (struct uppool){.loop = loop, .lim = *lim, .slots = slots};
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
}

/* Room for one more kept connection (`kept` kept already)? */
static bool uppool__room(const struct uppool *p, unsigned kept)
{
    unsigned max = p->slots ? p->slots->lim.max : 0;
    unsigned held = p->slots ? p->slots->nheld : 0;
    return !p->closed && kept < p->lim.max_idle && (!max || held + kept < max);
}

static void uppool__flush(struct uppool *p)
{
    while (p->idle) {
        stats_upconn(STATS_UPCONN_NOT_KEPT);
        uppool__drop_idle(p, p->idle);
    }
    while (p->reset) {
        struct uppool_ent *e = p->reset;
        uppool__unlink(&p->reset, e);
        p->nreset--;
        stats_upconn(STATS_UPCONN_NOT_KEPT);
        up_free(e->u); /* cancels the RSET callback */
        free(e);
    }
    uppool__gauge(p);
    uppool__arm(p);
}

void uppool_set_limits(struct uppool *p, const struct uppool_limits *lim)
{
    p->lim = *lim;
    uppool__flush(p);
}

void uppool_close(struct uppool *p)
{
    p->closed = true;
    uppool__flush(p);
    if (!uv_is_closing((uv_handle_t *)&p->timer))
        uv_close((uv_handle_t *)&p->timer, NULL);
}

struct up *uppool_take(struct uppool *p, const struct cfg *cfg, const char *log_sid)
{
    uint64_t now = uv_now(p->loop);
    while (p->idle) {
        struct uppool_ent *e = p->idle;
        if (uppool__expired(p, e, now) || up_cfg(e->u) != cfg) {
            stats_upconn(up_failed(e->u) ? STATS_UPCONN_ENDED : STATS_UPCONN_EXPIRED);
            uppool__drop_idle(p, e);
            continue;
        }
        uppool__unlink(&p->idle, e);
        p->nidle--;
        struct up *u = e->u;
        log_debug("sid=%s upstream=%s reused (idle %llu ms)", log_sid, up_server(u),
                  (unsigned long long)(now - e->since));
        free(e);
        up_rebind(u, log_sid);
        stats_upconn(STATS_UPCONN_REUSED);
        uppool__gauge(p);
        uppool__arm(p);
        return u;
    }
    uppool__gauge(p);
    uppool__arm(p);
    return NULL;
}

static void uppool__idle_add(struct uppool *p, struct uppool_ent *e)
{
    up_park(e->u, true);
    e->since = uv_now(p->loop);
    uppool__push(&p->idle, e);
    p->nidle++;
    uppool__gauge(p);
    uppool__arm(p);
}

static void uppool__rset_cb(void *ud, const struct up_result *r)
{
    struct uppool_ent *e = ud;
    struct uppool *p = e->pool;
    uppool__unlink(&p->reset, e);
    p->nreset--;
    if (r->err != UP_OK || r->reply->code != 250 || !uppool__room(p, p->nidle + p->nreset)) {
        stats_upconn(r->err == UP_ERR_LOST ? STATS_UPCONN_ENDED : STATS_UPCONN_NOT_KEPT);
        up_free(e->u); /* allowed inside its own callback */
        free(e);
        return;
    }
    uppool__idle_add(p, e);
}

void uppool_put(struct uppool *p, struct up *u)
{
    if (!uppool__room(p, p->nidle + p->nreset) || up_age_ms(u) >= p->lim.age_ms || !up_detach(u)) {
        stats_upconn(STATS_UPCONN_NOT_KEPT);
        up_free(u);
        return;
    }
    struct uppool_ent *e = xcalloc(1, sizeof *e);
    e->pool = p;
    e->u = u;
    if (up_settled(u)) {
        /* The last owner's message was answered and nothing followed: the
         * MTA has already ended that transaction (and with it XFORWARD's
         * attributes), so an RSET would only cost both sides a round trip
         * per message. Its other use, proof of life, would be stale by the
         * time the next client comes anyway: a connection the MTA closes
         * while idle is dropped when it ends or when it is taken. */
        uppool__idle_add(p, e);
        return;
    }
    uppool__push(&p->reset, e);
    p->nreset++;
    /* Ends whatever the last owner left open, and proves the connection
     * alive before anyone relies on it. */
    up_reset(u, uppool__rset_cb, e);
}
