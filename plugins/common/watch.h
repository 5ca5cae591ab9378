/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * watch: keep an object built from files (a compiled rule set) in step
 * with those files, the way the spam and rewrite plugins reload their rule
 * files when they change: a file's identity is its device, inode, size and
 * modification time; when any file of the current object changed, a new
 * object is built from the files and swapped in. A build that fails (the
 * files have errors) is reported and the current object stays until the
 * files change again. Holders of the old object keep it by their own
 * reference (transactions in flight finish with the rules they started
 * with).
 *
 * A check is due when the interval has passed since the last one (and
 * none runs). Two ways to run it, both from the start of a transaction, so
 * that the transaction which notices a change is the first to use the new
 * object:
 *  - watch_poll(): on the calling thread; for a hook that runs on a pool
 *    thread anyway (spam's DATA hook), where blocking for a build is fine.
 *  - watch_check_async(): from a hook on the loop thread (rewrite); the
 *    stat() calls and the build run on libuv's thread pool, the swap and
 *    the callback on the loop thread. The hook answers SLUICE_ASYNC and
 *    goes on from the callback, so the loop never blocks on the files.
 *
 * Ownership: the watch holds one reference to the current object (taken
 * over from watch_new's caller) and owns `arg` (freed by arg_free once
 * nothing can use it any more). watch_free() is the owner letting go: no
 * callback reaches the owner after it, and the watch frees itself as soon
 * as no build is in flight.
 *
 * Threads: watch_get() and watch_poll() from any thread;
 * watch_check_async() on the loop thread; watch_free() on the loop thread
 * when watch_check_async() is used, any thread otherwise.
 */
#ifndef SLUICE_WATCH_H
#define SLUICE_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "pstr.h"

struct watch_ops {
    /* Build a new object from the files `arg` names. Runs on any thread,
     * maybe after the owner is gone, so it may only use `arg`. Problems go
     * to `errors`, one line each ("FILE:LINE: message\n"). NULL on failure. */
    void *(*load)(const void *arg, struct pstr *errors);
    /* The i-th file `obj` was built from (NULL past the last). */
    const char *(*path)(const void *obj, size_t i);
    void (*ref)(void *obj);
    void (*unref)(void *obj);
    /* After a build for changed files: the new object (now current), or
     * NULL when it failed; `errors` as load() left them. Called on the
     * loop thread (watch_check_async) or the thread in watch_poll(), with
     * the watch locked (it must not call the watch); never after
     * watch_free(). */
    void (*reloaded)(void *owner, const void *obj, const char *errors);
};

struct watch;

/* A watch of `obj`'s files, checked at most every interval_ms. */
struct watch *watch_new(const struct watch_ops *ops, void *arg, void (*arg_free)(void *),
                        void *owner, void *obj, unsigned interval_ms);
/* A new reference to the current object (release with ops->unref). */
void *watch_get(struct watch *w);
/* Check now if due; build and swap on this thread when the files changed. */
void watch_poll(struct watch *w);
/*
 * If a check is due, run it on the thread pool of `loop` and return 1:
 * done(ud, stopped) is then called exactly once on the loop thread, after
 * the swap, with stopped = 1 when the owner called watch_free() meanwhile
 * (the owner's state is gone; only ud may be used). Returns 0 when no
 * check is due (done is not called; go on at once).
 */
int watch_check_async(struct watch *w, uv_loop_t *loop, void (*done)(void *ud, int stopped),
                      void *ud);
void watch_free(struct watch *w);

/* The identity of files[0..): changes when one of them is replaced,
 * touched, resized or removed. For the tests. */
uint64_t watch_signature(const struct watch_ops *ops, const void *obj);

#endif
