/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * plugdone: api->complete() from any thread. A plugin that answers from a
 * thread of its own (a worker, a library callback) calls complete() there;
 * the host's completion work (apply the journal, run the next hook, answer
 * the session) must run on the loop thread. plugdone_post() queues the
 * answer on a mutex-protected list and wakes the loop with a uv_async_t;
 * the loop then calls the completion function back with the same ctx and
 * verdict, on its own thread.
 *
 * One uv_async_t per loop, created on the loop thread when its first host
 * connection starts (plugdone_attach) and closed when its last one ends
 * (plugdone_detach): a ctx waiting for an answer holds its connection, so
 * the handle outlives every answer that can still come, and a loop with no
 * connections has no handle left (unit tests close their loops).
 *
 * Threads: attach/detach on the loop thread; post from any thread.
 * Ownership: queued answers are small nodes owned by this module until the
 * loop has delivered them.
 */
#ifndef SLUICE_PLUGDONE_H
#define SLUICE_PLUGDONE_H

#include <stdbool.h>

#include <uv.h>

#include <sluice/plugin.h>

typedef void (*plugdone_fn)(sluice_ctx *ctx, int verdict);

void plugdone_attach(uv_loop_t *loop);
void plugdone_detach(uv_loop_t *loop);

/* Called off the loop thread of `loop`: queue fn(ctx, verdict) to run on
 * it and return true. On the loop thread (or for a loop never attached):
 * false, and the caller does the work itself. */
bool plugdone_post(uv_loop_t *loop, sluice_ctx *ctx, int verdict, plugdone_fn fn);

#endif
