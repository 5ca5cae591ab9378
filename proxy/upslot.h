/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * upslot: the daemon's share of the upstream MTA's sessions.
 *
 * sluice relays the envelope as it arrives, so every client inside a
 * transaction holds one session of the MTA behind. The MTA has a process
 * limit (Postfix 100 smtpd, Exim smtp_accept_max 20): clients that say MAIL
 * and then idle can take all of them, and no one else's mail goes through.
 * The pool bounds what sluice holds ([upstream] max_sessions, and per client
 * address max_sessions_per_ip) and, when it is full and someone waits, takes
 * a session back from a client that is doing nothing with it:
 *   - first from one outside a transaction (it loses nothing: the next MAIL
 *     opens a new one), the one idle longest;
 *   - then from one inside a transaction that has made no progress (a
 *     command that moves the transaction on, message bytes) for
 *     reclaim_idle, the one idle longest: it gets 421 4.4.2 and retries.
 * Under stress (as many waiting as half the pool, at least 3, and for
 * reclaim_idle after) the newest waiter is served first and reclaim_idle
 * is cut to a tenth (at least 100 ms): a long queue is a crowd holding
 * sessions idle, and the clients that send mail arrive after it.
 * Progress is what the owner reports: NOOP, HELP, VRFY keep no one's
 * session alive. A client that waits longer than queue_timeout for a slot
 * is told so (451 4.4.5).
 *
 * Delivery: granted(), expired() and reclaim() are called from the loop
 * (a defer event or the pool's timer), never inside an upslot_* call.
 * reclaim() must give the slot back (upslot_release) before it returns.
 *
 * Ownership: the server owns the pool; each session embeds its slot and
 * must upslot_release() it (held or waiting) before it goes away.
 * Threads: loop thread only.
 */
#ifndef SLUICE_UPSLOT_H
#define SLUICE_UPSLOT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "defer.h"

struct upslot;

struct upslot_ops {
    void (*granted)(struct upslot *sl); /* the wait is over: open the upstream */
    void (*expired)(struct upslot *sl); /* waited queue_timeout in vain */
    void (*reclaim)(struct upslot *sl); /* give it back now (see in_tx) */
};

enum upslot_state { UPSLOT_NONE = 0, UPSLOT_WAITING, UPSLOT_HELD };

struct upslot {
    struct upslot *prev, *next; /* in the pool's holders or waiters */
    struct upslot *qnext;       /* in the pool's grant or reclaim queue */
    struct upslot_pool *pool;
    const struct upslot_ops *ops;
    enum upslot_state st;
    bool in_tx;          /* owner: a transaction is open */
    bool granting;       /* granted; granted() is queued */
    bool reclaiming;     /* chosen; reclaim() is queued */
    uint64_t idle_since; /* owner: loop ms since no progress; 0 = working */
    uint64_t idle_seq;   /* the pool's idle_seq when idle_since was set: orders
                            holders that fell idle in the same loop ms */
    uint64_t wait_until; /* loop ms; while waiting */
    char key[64];        /* the client's address as counted (server_ip_key) */
};

struct upslot_limits {
    unsigned max;           /* 0: no limit */
    unsigned max_per_ip;    /* 0: no limit */
    unsigned reclaim_idle;  /* ms */
    unsigned queue_timeout; /* ms */
};

struct upslot__ipc {
    char key[64];
    unsigned n;
};

struct upslot_pool {
    uv_loop_t *loop;
    struct upslot_limits lim;
    struct upslot *holders, *waiters, *waiters_tail;
    unsigned nheld, nwaiting;
    struct upslot *grant_q, *reclaim_q; /* callbacks queued (via qnext) */
    unsigned nreclaiming;
    struct upslot__ipc *ipc; /* held slots per client key (open addressing) */
    size_t ipc_cap, ipc_used;
    struct defer_ev ev;
    uv_timer_t timer; /* waiters' deadlines; idle clients becoming reclaimable */
    bool timer_on;
    uint64_t stress_until; /* loop ms: stressed until then (see upslot.c) */
    uint64_t idle_seq;     /* counts holders falling idle (upslot_activity) */
};

void upslot_pool_init(struct upslot_pool *p, uv_loop_t *loop, const struct upslot_limits *lim);
/* New limits (config reload); holders above a lower max keep their slot. */
void upslot_pool_set_limits(struct upslot_pool *p, const struct upslot_limits *lim);
/* Every slot must be released first; the timer closes with the loop. */
void upslot_pool_close(struct upslot_pool *p);

/* Ask for a slot for the client counted as `key`. true: held now. false:
 * waiting; granted() or expired() follows. */
bool upslot_acquire(struct upslot_pool *p, struct upslot *sl, const struct upslot_ops *ops,
                    const char *key);
/* A slot only if one is free now (nobody waiting): never waits. */
bool upslot_try(struct upslot_pool *p, struct upslot *sl, const struct upslot_ops *ops,
                const char *key);
/* Give the slot back (held), or leave the queue (waiting); no callback
 * follows. No-op for UPSLOT_NONE. */
void upslot_release(struct upslot *sl);

/* The owner's activity: `working` (our turn: upstream, plugins), or
 * waiting for the client; `progress` when the client moved its transaction
 * on. in_tx: a transaction is open. */
void upslot_activity(struct upslot *sl, uint64_t now, bool working, bool progress, bool in_tx);

#endif
