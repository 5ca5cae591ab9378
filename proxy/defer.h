/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * defer: run a function from the event loop, on a later iteration, never
 * inside the caller's stack.
 *
 * This is how sluice keeps its rule "nothing calls back inside its
 * caller's stack": a module that would answer at once (a plugin chain that
 * decided without going asynchronous, an upstream command queued on a dead
 * connection, a session that must be torn down) posts an event instead, and
 * the callback runs from the loop with a clean stack, where the owner can
 * free itself safely.
 *
 * Ownership: the event is embedded in its owner (no allocation here). An
 * owner that goes away with an event queued must defer_cancel() it first.
 * Posting a queued event again is a no-op (it runs once). Events run in
 * the order they were posted; an event posted while the queue runs waits
 * for the next loop iteration, so a callback that posts itself cannot
 * starve the loop.
 *
 * Threads: loop thread only.
 */
#ifndef SLUICE_DEFER_H
#define SLUICE_DEFER_H

#include <stdbool.h>

#include <uv.h>

struct defer_ev;
typedef void (*defer_fn)(struct defer_ev *ev);

struct defer_ev {
    struct defer_ev *next, *prev; /* queue links; NULL when not queued */
    defer_fn fn;
};

/* Bind the module to the loop (once, before any post). */
void defer_init(uv_loop_t *loop);
/* Queue ev to run `fn(ev)` from the loop. */
void defer_post(struct defer_ev *ev, defer_fn fn);
/* Unqueue ev if it is queued; its callback will not run. */
void defer_cancel(struct defer_ev *ev);
static inline bool defer_queued(const struct defer_ev *ev)
{
    return ev->next != NULL;
}
/* Run everything queued now (tests; the loop does it by itself). */
void defer_run(void);
/* At exit: close the loop handle. */
void defer_shutdown(void);

#endif
