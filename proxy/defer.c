/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * defer: loop-deferred calls; see defer.h.
 *
 * Two circular lists with sentinels: `queue` collects posts, `batch` is the
 * part being run. Running first moves the whole queue into the batch, so
 * events posted by callbacks wait for the next iteration, and a cancel
 * works whichever list the event is on (unlinking needs no head). A uv_idle
 * handle is active while anything is queued: it keeps the loop from
 * sleeping in poll and runs the batch once per iteration.
 */
#include "defer.h"

#include <assert.h>
#include <stddef.h>

static struct defer_ev queue = {&queue, &queue, NULL};
static struct defer_ev batch = {&batch, &batch, NULL};
static uv_idle_t idle;
static bool idle_ready;

static void defer__idle_cb(uv_idle_t *h)
{
    (void)h;
    defer_run();
}

void defer_init(uv_loop_t *loop)
{
    if (idle_ready)
        return;
    uv_idle_init(loop, &idle);
    idle_ready = true;
}

static void defer__unlink(struct defer_ev *ev)
{
    ev->prev->next = ev->next;
    ev->next->prev = ev->prev;
    ev->next = ev->prev = NULL;
}

void defer_post(struct defer_ev *ev, defer_fn fn)
{
    assert(idle_ready);
    ev->fn = fn;
    if (ev->next)
        return; /* already queued: runs once */
    ev->prev = queue.prev;
    ev->next = &queue;
    queue.prev->next = ev;
    queue.prev = ev;
    if (!uv_is_active((uv_handle_t *)&idle))
        uv_idle_start(&idle, defer__idle_cb);
}

void defer_cancel(struct defer_ev *ev)
{
    if (ev->next)
        defer__unlink(ev);
}

void defer_run(void)
{
    if (queue.next == &queue) {
        if (idle_ready)
            uv_idle_stop(&idle);
        return;
    }
    /* batch <- queue */
    batch.next = queue.next;
    batch.prev = queue.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    queue.next = queue.prev = &queue;
    while (batch.next != &batch) {
        struct defer_ev *ev = batch.next;
        defer__unlink(ev);
        ev->fn(ev); /* may free ev's owner, post, or cancel others */
    }
    if (queue.next == &queue)
        uv_idle_stop(&idle);
}

void defer_shutdown(void)
{
    if (!idle_ready)
        return;
    while (queue.next != &queue)
        defer__unlink(queue.next);
    uv_idle_stop(&idle);
    uv_close((uv_handle_t *)&idle, NULL);
    idle_ready = false;
}
