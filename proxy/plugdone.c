/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * plugdone: completions handed to the loop thread; see plugdone.h.
 *
 * All records live on one list under one mutex (a daemon has one loop; the
 * unit tests one at a time). uv_async_send() may be called from any thread
 * and coalesces wake-ups, so the callback drains everything queued.
 */
#include "plugdone.h"

#include <pthread.h>
#include <stdlib.h>

#include "xalloc.h"

struct plugdone__item {
    struct plugdone__item *next;
    sluice_ctx *ctx;
    int verdict;
    plugdone_fn fn;
};

struct plugdone__loop {
    struct plugdone__loop *next;
    uv_loop_t *loop;
    pthread_t thread;  /* the loop's thread (where attach ran) */
    unsigned users;    /* attached connections */
    uv_async_t *async; /* owned; freed by its close callback */
    struct plugdone__item *head, **tail;
};

static pthread_mutex_t plugdone__mu = PTHREAD_MUTEX_INITIALIZER;
static struct plugdone__loop *plugdone__loops;

static struct plugdone__loop *plugdone__find(uv_loop_t *loop)
{
    for (struct plugdone__loop *l = plugdone__loops; l; l = l->next)
        if (l->loop == loop)
            return l;
    return NULL;
}

static void plugdone__async_cb(uv_async_t *h)
{
    struct plugdone__loop *l = h->data;
    pthread_mutex_lock(&plugdone__mu);
    struct plugdone__item *it = l->head;
    l->head = NULL;
    l->tail = &l->head;
    pthread_mutex_unlock(&plugdone__mu);
    /* `l` may be detached by the completions below (the last connection
     * ending): not touched again. */
    while (it) {
        struct plugdone__item *next = it->next;
        it->fn(it->ctx, it->verdict);
        free(it);
        it = next;
    }
}

static void plugdone__closed(uv_handle_t *h)
{
    free(h->data);
    free(h);
}

void plugdone_attach(uv_loop_t *loop)
{
    pthread_mutex_lock(&plugdone__mu);
    struct plugdone__loop *l = plugdone__find(loop);
    if (!l) {
        l = xcalloc(1, sizeof *l);
        l->loop = loop;
        l->thread = pthread_self();
        l->tail = &l->head;
        l->async = xmalloc(sizeof *l->async);
        uv_async_init(loop, l->async, plugdone__async_cb);
        l->async->data = l;
        /* Waiting for an answer is the session's business (its timer
         * keeps the loop alive); this handle must not. */
        uv_unref((uv_handle_t *)l->async);
        l->next = plugdone__loops;
        plugdone__loops = l;
    }
    l->users++;
    pthread_mutex_unlock(&plugdone__mu);
}

void plugdone_detach(uv_loop_t *loop)
{
    pthread_mutex_lock(&plugdone__mu);
    struct plugdone__loop **pp = &plugdone__loops;
    while (*pp && (*pp)->loop != loop)
        pp = &(*pp)->next;
    struct plugdone__loop *l = *pp;
    if (l && --l->users == 0) {
        /* No connection left, so no ctx that could still be answered:
         * nothing is queued. The record goes with the handle. */
        *pp = l->next;
        uv_close((uv_handle_t *)l->async, plugdone__closed);
    }
    pthread_mutex_unlock(&plugdone__mu);
}

bool plugdone_post(uv_loop_t *loop, sluice_ctx *ctx, int verdict, plugdone_fn fn)
{
    pthread_mutex_lock(&plugdone__mu);
    struct plugdone__loop *l = plugdone__find(loop);
    if (!l || pthread_equal(l->thread, pthread_self())) {
        pthread_mutex_unlock(&plugdone__mu);
        return false;
    }
    struct plugdone__item *it = xmalloc(sizeof *it);
    *it = (struct plugdone__item){NULL, ctx, verdict, fn};
    *l->tail = it;
    l->tail = &it->next;
    uv_async_send(l->async);
    pthread_mutex_unlock(&plugdone__mu);
    return true;
}
