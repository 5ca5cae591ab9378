/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * plugdone: answers posted from other threads run on the loop thread, in
 * order, once each; the loop thread itself is told to do the work at once;
 * the loop ends up with no handle of ours once its last user detached.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <time.h>

#include "plugdone.h"

#define NPOSTS 200

static pthread_t loop_thread;
static int got[NPOSTS];
static int ngot;
static int wrong_thread;

static void done(sluice_ctx *ctx, int verdict)
{
    if (!pthread_equal(pthread_self(), loop_thread))
        wrong_thread++;
    got[ngot++] = verdict;
    (void)ctx;
}

struct poster {
    uv_loop_t *loop;
    int posted;
};

static void *post_all(void *arg)
{
    struct poster *p = arg;
    for (int i = 0; i < NPOSTS; i++)
        p->posted += plugdone_post(p->loop, (sluice_ctx *)p, i, done);
    return NULL;
}

static void noop_timer(uv_timer_t *t)
{
    (void)t;
}

static void test_post_from_a_thread(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    loop_thread = pthread_self();
    ngot = wrong_thread = 0;
    plugdone_attach(&loop);
    plugdone_attach(&loop); /* two connections */

    /* On the loop thread: do it yourself. */
    assert_false(plugdone_post(&loop, NULL, 1, done));

    /* A session waiting for an answer has its timeout timer running: that
     * keeps the loop polling, not our (unreferenced) handle. */
    uv_timer_t session_timer;
    uv_timer_init(&loop, &session_timer);
    uv_timer_start(&session_timer, noop_timer, 10000, 0);

    struct poster p = {&loop, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, post_all, &p), 0);
    struct timespec end, now;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += 10;
    while (ngot < NPOSTS) {
        uv_run(&loop, UV_RUN_NOWAIT);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > end.tv_sec)
            fail_msg("only %d of %d answers arrived", ngot, NPOSTS);
    }
    pthread_join(t, NULL);
    assert_int_equal(p.posted, NPOSTS);
    assert_int_equal(wrong_thread, 0);
    for (int i = 0; i < NPOSTS; i++)
        assert_int_equal(got[i], i);

    uv_close((uv_handle_t *)&session_timer, NULL);
    plugdone_detach(&loop);
    plugdone_detach(&loop);
    while (uv_run(&loop, UV_RUN_NOWAIT) != 0)
        ;
    assert_int_equal(uv_loop_close(&loop), 0);
    /* A loop nobody attached: the caller does the work. */
    assert_false(plugdone_post(&loop, NULL, 1, done));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post_from_a_thread),
    };
    return cmocka_run_group_tests_name("plugdone", tests, NULL, NULL);
}
