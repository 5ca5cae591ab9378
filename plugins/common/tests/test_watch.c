/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * watch: a rule set rebuilt when its file changes, kept when the new file
 * is broken, swapped on the loop thread when run from a timer, and never
 * reported to an owner that let go (even with a build in flight).
 *
 * The "rule set" here is a file holding a number; "broken" is a refusal.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "watch.h"

struct set {
    atomic_int refs;
    char *path;
    int version;
};

static atomic_int live_sets;
static atomic_int loads_started;
static int slow_load_ms;

struct arg {
    char path[256];
};

static void *set_load(const void *a, struct pstr *errors)
{
    const struct arg *arg = a;
    atomic_fetch_add(&loads_started, 1);
    if (slow_load_ms) {
        struct timespec ts = {0, slow_load_ms * 1000000L};
        nanosleep(&ts, NULL);
    }
    FILE *f = fopen(arg->path, "r");
    int v = 0;
    if (!f || fscanf(f, "%d", &v) != 1) {
        pstr_printf(errors, "%s:1: not a version\n", arg->path);
        if (f)
            fclose(f);
        return NULL;
    }
    fclose(f);
    struct set *s = calloc(1, sizeof *s);
    atomic_init(&s->refs, 1);
    s->path = strdup(arg->path);
    s->version = v;
    atomic_fetch_add(&live_sets, 1);
    return s;
}

static const char *set_path(const void *o, size_t i)
{
    const struct set *s = o;
    return i == 0 ? s->path : NULL;
}

static void set_ref(void *o)
{
    atomic_fetch_add(&((struct set *)o)->refs, 1);
}

static void set_unref(void *o)
{
    struct set *s = o;
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
        free(s->path);
        free(s);
        atomic_fetch_sub(&live_sets, 1);
    }
}

struct owner {
    int reloads, failures;
    int last_version;
    char last_errors[256];
    pthread_t thread;
};

static void set_reloaded(void *o, const void *obj, const char *errors)
{
    struct owner *ow = o;
    ow->thread = pthread_self();
    if (obj) {
        ow->reloads++;
        ow->last_version = ((const struct set *)obj)->version;
    } else {
        ow->failures++;
    }
    snprintf(ow->last_errors, sizeof ow->last_errors, "%s", errors);
}

static const struct watch_ops ops = {set_load, set_path, set_ref, set_unref, set_reloaded};

static void write_file(const char *path, const char *text)
{
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0); /* a new inode: always a change */
}

static struct arg *new_arg(const char *text)
{
    struct arg *a = calloc(1, sizeof *a);
    snprintf(a->path, sizeof a->path, "/tmp/sluice-test-watch.%d.%p", (int)getpid(), (void *)a);
    write_file(a->path, text);
    return a;
}

static void free_arg(void *p)
{
    struct arg *a = p;
    unlink(a->path);
    free(a);
}

static void test_poll(void **state)
{
    (void)state;
    struct arg *a = new_arg("1\n");
    struct pstr e = PSTR_INIT;
    struct set *first = set_load(a, &e);
    assert_non_null(first);
    struct owner ow = {0};
    struct watch *w = watch_new(&ops, a, free_arg, &ow, first, 0);

    watch_poll(w); /* nothing changed */
    assert_int_equal(ow.reloads + ow.failures, 0);

    struct set *held = watch_get(w); /* a transaction in flight */
    write_file(a->path, "2\n");
    watch_poll(w);
    assert_int_equal(ow.reloads, 1);
    assert_int_equal(ow.last_version, 2);
    assert_int_equal(held->version, 1); /* still the old one, still alive */
    struct set *now = watch_get(w);
    assert_int_equal(now->version, 2);
    set_unref(now);
    set_unref(held);

    /* Broken: reported, the current set stays, not retried unchanged. */
    write_file(a->path, "broken\n");
    watch_poll(w);
    assert_int_equal(ow.failures, 1);
    assert_non_null(strstr(ow.last_errors, ":1: not a version"));
    watch_poll(w);
    assert_int_equal(ow.failures, 1);
    now = watch_get(w);
    assert_int_equal(now->version, 2);
    set_unref(now);

    /* Fixed: picked up. */
    write_file(a->path, "3\n");
    watch_poll(w);
    assert_int_equal(ow.reloads, 2);
    assert_int_equal(ow.last_version, 3);

    watch_free(w);
    assert_int_equal(atomic_load(&live_sets), 0);
    pstr_free(&e);
}

/* The interval bounds how often the files are looked at. */
static void test_interval(void **state)
{
    (void)state;
    struct arg *a = new_arg("1\n");
    struct pstr e = PSTR_INIT;
    struct owner ow = {0};
    struct watch *w = watch_new(&ops, a, free_arg, &ow, set_load(a, &e), 60000);
    write_file(a->path, "2\n");
    watch_poll(w);
    assert_int_equal(ow.reloads, 0);
    watch_free(w);
    assert_int_equal(atomic_load(&live_sets), 0);
    pstr_free(&e);
}

static void keepalive(uv_timer_t *t)
{
    (void)t;
}

struct waiter {
    int calls;
    int stopped;
    int version_then; /* what watch_get gave in the callback */
    struct watch *w;
    pthread_t thread;
};

static void waiter_done(void *ud, int stopped)
{
    struct waiter *wt = ud;
    wt->calls++;
    wt->stopped = stopped;
    wt->thread = pthread_self();
    if (!stopped) {
        struct set *s = watch_get(wt->w);
        wt->version_then = s->version;
        set_unref(s);
    }
}

static void run_until(uv_loop_t *loop, int *flag)
{
    for (int i = 0; i < 500 && !*flag; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* A hook on the loop: the check runs on the pool, the callback on the
 * loop, after the swap; nothing due means no callback. */
static void test_check_async(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_timer_t alive;
    uv_timer_init(&loop, &alive);
    uv_timer_start(&alive, keepalive, 100000, 0);

    struct arg *a = new_arg("1\n");
    struct pstr e = PSTR_INIT;
    struct owner ow = {0};
    struct watch *w = watch_new(&ops, a, free_arg, &ow, set_load(a, &e), 0);
    struct waiter wt = {.w = w};

    write_file(a->path, "5\n");
    assert_int_equal(watch_check_async(w, &loop, waiter_done, &wt), 1);
    /* one check at a time: a second transaction does not wait */
    assert_int_equal(watch_check_async(w, &loop, waiter_done, &wt), 0);
    run_until(&loop, &wt.calls);
    assert_int_equal(wt.calls, 1);
    assert_int_equal(wt.stopped, 0);
    assert_int_equal(wt.version_then, 5);
    assert_int_equal(ow.reloads, 1);
    assert_true(pthread_equal(wt.thread, pthread_self()));
    assert_true(pthread_equal(ow.thread, pthread_self())); /* swapped on the loop */

    /* Nothing changed: a check runs, nothing is reported, done still comes. */
    wt.calls = 0;
    assert_int_equal(watch_check_async(w, &loop, waiter_done, &wt), 1);
    run_until(&loop, &wt.calls);
    assert_int_equal(ow.reloads, 1);

    watch_free(w);
    uv_close((uv_handle_t *)&alive, NULL);
    while (uv_run(&loop, UV_RUN_NOWAIT) != 0)
        ;
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(atomic_load(&live_sets), 0);
    pstr_free(&e);
}

/* The owner lets go while a build runs on the pool: the waiting hook is
 * told (stopped), no reload report reaches the owner, and everything is
 * freed when the build returns. */
static void test_free_during_build(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);

    struct arg *a = new_arg("1\n");
    struct pstr e = PSTR_INIT;
    struct owner ow = {0};
    struct watch *w = watch_new(&ops, a, free_arg, &ow, set_load(a, &e), 0);
    struct waiter wt = {.w = NULL};
    atomic_store(&loads_started, 0);
    slow_load_ms = 200;
    write_file(a->path, "7\n");
    assert_int_equal(watch_check_async(w, &loop, waiter_done, &wt), 1);
    for (int i = 0; i < 500 && !atomic_load(&loads_started); i++) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_true(atomic_load(&loads_started));
    watch_free(w);
    memset(&ow, 0x5a, sizeof ow); /* the owner is gone */
    run_until(&loop, &wt.calls);
    slow_load_ms = 0;
    assert_int_equal(wt.calls, 1);
    assert_int_equal(wt.stopped, 1);
    assert_int_equal(atomic_load(&live_sets), 0);
    while (uv_run(&loop, UV_RUN_NOWAIT) != 0)
        ;
    assert_int_equal(uv_loop_close(&loop), 0);
    pstr_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_poll),
        cmocka_unit_test(test_interval),
        cmocka_unit_test(test_check_async),
        cmocka_unit_test(test_free_during_build),
    };
    return cmocka_run_group_tests_name("watch", tests, NULL, NULL);
}
