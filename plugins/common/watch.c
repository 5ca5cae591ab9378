/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * watch: files -> object, rebuilt on change; see watch.h.
 *
 * State under `mu`: the current object, the signature of the files it was
 * last (tried to be) built from, the time of the last check, `busy` while a
 * check runs (one at a time, whichever thread), `stopped` once the owner
 * let go. `refs` counts the owner and a running check; the last one out
 * frees the watch.
 */
#include "watch.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

struct watch {
    const struct watch_ops *ops;
    void *arg;
    void (*arg_free)(void *);
    void *owner;
    unsigned interval_ms;

    pthread_mutex_t mu;
    void *obj;        /* current; one reference held */
    uint64_t sig;     /* files of the last build attempt */
    uint64_t last_ms; /* last check started */
    bool busy;
    bool stopped;
    int refs;

    uv_work_t work;
    void (*done)(void *ud, int stopped); /* watch_check_async() */
    void *done_ud;
    /* one check: in -> out */
    void *cur;
    bool changed;
    void *nobj;
    uint64_t nsig;
    struct pstr errors;
};

static uint64_t watch__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t watch_signature(const struct watch_ops *ops, const void *obj)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a over the stat fields */
    const char *p;
    for (size_t i = 0; (p = ops->path(obj, i)); i++) {
        struct stat st;
        uint64_t v[5] = {0, 0, 0, 0, 0};
        if (stat(p, &st) == 0) {
            v[0] = (uint64_t)st.st_ino;
            v[1] = (uint64_t)st.st_size;
            v[2] = (uint64_t)st.st_mtim.tv_sec;
            v[3] = (uint64_t)st.st_mtim.tv_nsec;
            v[4] = (uint64_t)st.st_dev;
        }
        for (int k = 0; k < 5; k++) {
            h ^= v[k];
            h *= 1099511628211ULL;
        }
    }
    return h;
}

struct watch *watch_new(const struct watch_ops *ops, void *arg, void (*arg_free)(void *),
                        void *owner, void *obj, unsigned interval_ms)
{
    struct watch *w = pstr_xcalloc(1, sizeof *w);
    w->ops = ops;
    w->arg = arg;
    w->arg_free = arg_free;
    w->owner = owner;
    w->interval_ms = interval_ms;
    pthread_mutex_init(&w->mu, NULL);
    w->obj = obj;
    w->sig = watch_signature(ops, obj);
    w->last_ms = watch__now_ms();
    w->refs = 1;
    return w;
}

static void watch__destroy(struct watch *w)
{
    w->ops->unref(w->obj);
    if (w->arg_free)
        w->arg_free(w->arg);
    pstr_free(&w->errors);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

void *watch_get(struct watch *w)
{
    pthread_mutex_lock(&w->mu);
    void *o = w->obj;
    w->ops->ref(o);
    pthread_mutex_unlock(&w->mu);
    return o;
}

/* Start a check if one is due: busy, a reference to the watch (the check
 * may outlive the owner) and one to the current object in w->cur. */
static bool watch__begin(struct watch *w)
{
    uint64_t now = watch__now_ms();
    pthread_mutex_lock(&w->mu);
    bool due = !w->busy && !w->stopped && now - w->last_ms >= w->interval_ms;
    if (due) {
        w->busy = true;
        w->last_ms = now;
        w->refs++;
        w->cur = w->obj;
        w->ops->ref(w->cur);
        w->changed = false;
        w->nobj = NULL;
    }
    pthread_mutex_unlock(&w->mu);
    return due;
}

/* The blocking part: stat, and build when the files changed. */
static void watch__check(struct watch *w)
{
    uint64_t sig = watch_signature(w->ops, w->cur);
    w->changed = sig != w->sig; /* w->sig only changes while busy: ours */
    w->nobj = NULL;
    w->nsig = sig;
    pstr_clear(&w->errors);
    if (!w->changed)
        return;
    w->nobj = w->ops->load(w->arg, &w->errors);
    if (w->nobj)
        w->nsig = watch_signature(w->ops, w->nobj);
}

/*
 * Swap the new object in, tell the owner (under the lock, so that once
 * watch_free() has set `stopped` no call is running or can start), drop
 * the check's references. Returns whether the owner had let go.
 */
static bool watch__end(struct watch *w)
{
    void *old = NULL;
    pthread_mutex_lock(&w->mu);
    w->ops->unref(w->cur);
    w->cur = NULL;
    if (w->nobj) {
        old = w->obj;
        w->obj = w->nobj;
    }
    /* A failed build is not retried until the files change again. */
    w->sig = w->nsig;
    w->busy = false;
    if (w->changed && !w->stopped && w->ops->reloaded)
        w->ops->reloaded(w->owner, w->nobj, pstr_cstr(&w->errors));
    w->nobj = NULL;
    bool stopped = w->stopped;
    bool last = --w->refs == 0;
    pthread_mutex_unlock(&w->mu);
    if (old)
        w->ops->unref(old);
    if (last)
        watch__destroy(w);
    return stopped;
}

void watch_poll(struct watch *w)
{
    if (!watch__begin(w))
        return;
    watch__check(w);
    watch__end(w);
}

/* ---- on the loop ------------------------------------------------------- */

static void watch__work(uv_work_t *req)
{
    watch__check(req->data);
}

static void watch__after_work(uv_work_t *req, int status)
{
    struct watch *w = req->data;
    void (*done)(void *, int) = w->done;
    void *ud = w->done_ud;
    if (status != 0) { /* cancelled: nothing was built */
        w->changed = false;
        w->nobj = NULL;
        w->nsig = w->sig;
    }
    bool stopped = watch__end(w); /* may free w */
    done(ud, stopped);
}

int watch_check_async(struct watch *w, uv_loop_t *loop, void (*done)(void *ud, int stopped),
                      void *ud)
{
    if (!watch__begin(w))
        return 0;
    w->done = done;
    w->done_ud = ud;
    w->work.data = w;
    if (uv_queue_work(loop, &w->work, watch__work, watch__after_work) != 0) {
        /* No pool: check on this thread rather than never. */
        watch__check(w);
        watch__end(w);
        return 0;
    }
    return 1;
}

void watch_free(struct watch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopped = true;
    bool last = --w->refs == 0;
    pthread_mutex_unlock(&w->mu);
    if (last)
        watch__destroy(w);
}
