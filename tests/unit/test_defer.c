/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for defer: never inside the caller's stack, order, once,
 * cancel (also from another callback), posts during a run wait a turn. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "defer.h"

#include <string.h>

struct probe {
    struct defer_ev ev;
    int id;
    struct probe *cancel; /* cancel this one when run */
    struct probe *repost; /* post this one when run */
};

static int order[16];
static int norder;

static void probe_cb(struct defer_ev *ev)
{
    struct probe *p = (struct probe *)ev;
    order[norder++] = p->id;
    if (p->cancel)
        defer_cancel(&p->cancel->ev);
    if (p->repost)
        defer_post(&p->repost->ev, probe_cb);
}

static int setup(void **state)
{
    (void)state;
    defer_init(uv_default_loop());
    norder = 0;
    memset(order, 0, sizeof order);
    return 0;
}

static void test_not_in_callers_stack(void **state)
{
    (void)state;
    struct probe a = {.id = 1};
    defer_post(&a.ev, probe_cb);
    assert_int_equal(norder, 0); /* nothing ran inside defer_post */
    assert_true(defer_queued(&a.ev));
    uv_run(uv_default_loop(), UV_RUN_NOWAIT);
    assert_int_equal(norder, 1);
    assert_false(defer_queued(&a.ev));
}

static void test_order_and_once(void **state)
{
    (void)state;
    struct probe a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    defer_post(&a.ev, probe_cb);
    defer_post(&b.ev, probe_cb);
    defer_post(&a.ev, probe_cb); /* already queued: still once, first place */
    defer_post(&c.ev, probe_cb);
    defer_run();
    assert_int_equal(norder, 3);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 3);
}

static void test_cancel(void **state)
{
    (void)state;
    struct probe a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    a.cancel = &c; /* a runs first and cancels c, already in the batch */
    defer_post(&a.ev, probe_cb);
    defer_post(&b.ev, probe_cb);
    defer_post(&c.ev, probe_cb);
    defer_cancel(&b.ev);
    defer_cancel(&b.ev); /* twice is harmless */
    defer_run();
    assert_int_equal(norder, 1);
    assert_int_equal(order[0], 1);
}

static void test_post_during_run_waits(void **state)
{
    (void)state;
    struct probe a = {.id = 1}, b = {.id = 2};
    a.repost = &b;
    defer_post(&a.ev, probe_cb);
    defer_run();
    assert_int_equal(norder, 1); /* b waits for the next turn */
    assert_true(defer_queued(&b.ev));
    uv_run(uv_default_loop(), UV_RUN_NOWAIT);
    assert_int_equal(norder, 2);
    assert_int_equal(order[1], 2);
    /* Nothing left: the loop has no active handle and returns. */
    assert_int_equal(uv_run(uv_default_loop(), UV_RUN_NOWAIT), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_not_in_callers_stack, setup),
        cmocka_unit_test_setup(test_order_and_once, setup),
        cmocka_unit_test_setup(test_cancel, setup),
        cmocka_unit_test_setup(test_post_during_run_waits, setup),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    defer_shutdown();
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    return rc;
}
