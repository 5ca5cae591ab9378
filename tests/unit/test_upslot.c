/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for upslot: limits, first come first served, one address's
 * share, which holder is taken back (outside a transaction first, then the
 * longest idle past reclaim_idle, the first to fall idle when two did in
 * the same millisecond), callbacks never inside a call, a waiter that
 * leaves gets no callback. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "upslot.h"

#include <string.h>

struct owner {
    struct upslot sl;
    int granted, expired, reclaimed;
    bool release_on_reclaim;
};

static bool in_call; /* set around every upslot_* call: callbacks must not run then */

static struct owner *of(struct upslot *sl)
{
    return (struct owner *)((char *)sl - offsetof(struct owner, sl));
}

static void on_granted(struct upslot *sl)
{
    assert_false(in_call);
    of(sl)->granted++;
}

static void on_expired(struct upslot *sl)
{
    assert_false(in_call);
    of(sl)->expired++;
}

static void on_reclaim(struct upslot *sl)
{
    assert_false(in_call);
    of(sl)->reclaimed++;
    if (of(sl)->release_on_reclaim)
        upslot_release(sl);
}

static const struct upslot_ops ops = {on_granted, on_expired, on_reclaim};

static struct upslot_pool pool;
static uv_loop_t loop;
static uv_timer_t keepalive; /* the pool's timer is unref'd, as the daemon has listeners */

static void keepalive_cb(uv_timer_t *t)
{
    (void)t;
}

static bool acquire(struct owner *o, const char *key)
{
    in_call = true;
    bool r = upslot_acquire(&pool, &o->sl, &ops, key);
    in_call = false;
    return r;
}

static void release(struct owner *o)
{
    in_call = true;
    upslot_release(&o->sl);
    in_call = false;
}

static void idle(struct owner *o, bool in_tx, uint64_t ago_ms)
{
    uint64_t now = uv_now(&loop);
    upslot_activity(&o->sl, now - ago_ms, false, true, in_tx);
}

static void turn(void)
{
    defer_run();
}

static void run_ms(unsigned ms)
{
    uint64_t until = uv_now(&loop) + ms;
    while (uv_now(&loop) < until) {
        uv_run(&loop, UV_RUN_NOWAIT);
        defer_run();
        uv_sleep(5);
        uv_update_time(&loop);
    }
}

static int setup(void **state)
{
    (void)state;
    uv_loop_init(&loop);
    defer_init(&loop);
    uv_update_time(&loop);
    uv_timer_init(&loop, &keepalive);
    uv_timer_start(&keepalive, keepalive_cb, 60000, 60000);
    struct upslot_limits lim = {
        .max = 2, .max_per_ip = 0, .reclaim_idle = 10000, .queue_timeout = 300};
    upslot_pool_init(&pool, &loop, &lim);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    upslot_pool_close(&pool);
    uv_close((uv_handle_t *)&keepalive, NULL);
    defer_shutdown();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}

static void test_limit_and_fifo(void **state)
{
    (void)state;
    struct owner a = {0}, b = {0}, c = {0}, d = {0};
    assert_true(acquire(&a, "1"));
    assert_true(acquire(&b, "2"));
    assert_false(acquire(&c, "3"));
    assert_false(acquire(&d, "4"));
    assert_int_equal(pool.nheld, 2);
    assert_int_equal(pool.nwaiting, 2);
    release(&a); /* c came first */
    assert_int_equal(c.granted, 0);
    turn();
    assert_int_equal(c.granted, 1);
    assert_int_equal(d.granted, 0);
    /* a newcomer does not pass d, even with a slot free */
    release(&b);
    struct owner e = {0};
    assert_false(acquire(&e, "5"));
    turn();
    assert_int_equal(d.granted, 1);
    release(&c);
    release(&d);
    turn();
    assert_int_equal(e.granted, 1);
    release(&e);
    assert_int_equal(pool.nheld, 0);
}

static void test_stress_newest_first(void **state)
{
    (void)state;
    struct owner h[2] = {{.release_on_reclaim = true}, {.release_on_reclaim = true}};
    struct owner w[3];
    memset(w, 0, sizeof w);
    assert_true(acquire(&h[0], "h0"));
    assert_true(acquire(&h[1], "h1"));
    for (int i = 0; i < 3; i++)
        assert_false(acquire(&w[i], "w"));
    /* three waiting on a pool of two: stress. Idle for 1.5 s in a
     * transaction is a tenth of reclaim_idle (10 s) and more. */
    idle(&h[0], true, 1500);
    upslot_activity(&h[1].sl, uv_now(&loop), true, false, true);
    run_ms(300);
    assert_int_equal(h[0].reclaimed, 1);
    assert_int_equal(h[1].reclaimed, 0);
    assert_int_equal(w[2].granted, 1); /* the newest */
    assert_int_equal(w[0].granted + w[1].granted, 0);
    for (int i = 0; i < 3; i++)
        release(&w[i]);
    release(&h[1]);
}

static void test_reclaim_order(void **state)
{
    (void)state;
    struct owner tx_old = {.release_on_reclaim = true}, out = {.release_on_reclaim = true};
    struct owner w = {0};
    assert_true(acquire(&tx_old, "1"));
    assert_true(acquire(&out, "2"));
    idle(&tx_old, true, 20000); /* in a transaction, idle 20 s */
    idle(&out, false, 10);      /* between transactions, idle 10 ms */
    assert_false(acquire(&w, "3"));
    assert_int_equal(out.reclaimed + tx_old.reclaimed, 0); /* not inside the call */
    turn();
    assert_int_equal(out.reclaimed, 1); /* outside a transaction goes first */
    assert_int_equal(tx_old.reclaimed, 0);
    turn();
    assert_int_equal(w.granted, 1);
    release(&w);
    release(&tx_old);
}

static void test_working_and_fresh_are_kept(void **state)
{
    (void)state;
    struct owner busy = {.release_on_reclaim = true}, fresh = {.release_on_reclaim = true};
    struct owner w = {0};
    assert_true(acquire(&busy, "1"));
    assert_true(acquire(&fresh, "2"));
    upslot_activity(&busy.sl, uv_now(&loop), true, false, true); /* our turn: plugins, upstream */
    idle(&fresh, true, 100);                                     /* in a tx, idle 0.1 s < 10 s */
    assert_false(acquire(&w, "3"));
    run_ms(700); /* queue_timeout 300 ms, checked every 250 ms */
    assert_int_equal(busy.reclaimed + fresh.reclaimed, 0);
    assert_int_equal(w.expired, 1);
    assert_int_equal(w.granted, 0);
    assert_int_equal(pool.nwaiting, 0);
    release(&busy);
    release(&fresh);
}

static void test_share_per_address(void **state)
{
    (void)state;
    struct upslot_limits lim = {
        .max = 3, .max_per_ip = 1, .reclaim_idle = 10000, .queue_timeout = 300};
    upslot_pool_set_limits(&pool, &lim);
    struct owner a = {0}, a2 = {0}, b = {0};
    assert_true(acquire(&a, "10.0.0.1"));
    assert_false(acquire(&a2, "10.0.0.1"));
    /* b's address has room: it passes a2, which cannot use a slot yet */
    assert_false(acquire(&b, "10.0.0.2")); /* queued behind a2 ... */
    turn();
    assert_int_equal(b.granted, 1); /* ... and granted on the same pass */
    assert_int_equal(a2.granted, 0);
    release(&a);
    turn();
    assert_int_equal(a2.granted, 1);
    release(&a2);
    release(&b);
}

static void test_leaving_waiter_gets_nothing(void **state)
{
    (void)state;
    struct owner a = {0}, b = {0}, w = {0};
    assert_true(acquire(&a, "1"));
    assert_true(acquire(&b, "2"));
    assert_false(acquire(&w, "3"));
    release(&w);
    release(&a);
    run_ms(400);
    assert_int_equal(w.granted + w.expired, 0);
    /* released while its grant was queued: no callback either */
    struct owner c = {0}, x = {0};
    assert_true(acquire(&c, "4"));
    assert_false(acquire(&x, "5"));
    release(&c); /* x is granted ... */
    release(&x); /* ... and leaves before the turn */
    turn();
    assert_int_equal(x.granted, 0);
    assert_int_equal(pool.nheld, 1);
    release(&b);
}

static void test_owner_that_keeps_its_slot(void **state)
{
    (void)state;
    struct owner lazy = {.release_on_reclaim = false}, other = {0}, w = {0};
    assert_true(acquire(&lazy, "1"));
    assert_true(acquire(&other, "2"));
    idle(&lazy, false, 50);
    upslot_activity(&other.sl, uv_now(&loop), true, false, true);
    assert_false(acquire(&w, "3"));
    turn(); /* reclaim() did not release: the pool does, no slot leaks */
    assert_int_equal(lazy.reclaimed, 1);
    assert_int_equal(lazy.sl.st, UPSLOT_NONE);
    turn();
    assert_int_equal(w.granted, 1);
    release(&w);
    release(&other);
    assert_int_equal(pool.nheld, 0);
}

/* The loop's clock counts whole milliseconds and is read once per loop
 * turn: two clients that fall idle within the same millisecond get the
 * same idle_since. The one that fell idle first has waited longest and
 * gives its session back, whichever took its slot last (holders are kept
 * newest first). This is what test_idle_transactions_give_way met when the
 * second client's whole dialogue fitted in the first one's millisecond. */
static void test_same_millisecond_longest_idle_first(void **state)
{
    (void)state;
    struct owner first = {.release_on_reclaim = true}, second = {.release_on_reclaim = true};
    struct owner w = {0};
    assert_true(acquire(&first, "1"));
    assert_true(acquire(&second, "2"));
    uint64_t stamp = uv_now(&loop) - 20000; /* both past reclaim_idle (10 s) */
    upslot_activity(&first.sl, stamp, false, true, true);
    upslot_activity(&second.sl, stamp, false, true, true);
    assert_int_equal(first.sl.idle_since, second.sl.idle_since);
    assert_false(acquire(&w, "3"));
    turn();
    assert_int_equal(first.reclaimed, 1);
    assert_int_equal(second.reclaimed, 0);
    turn();
    assert_int_equal(w.granted, 1);
    release(&w);
    release(&second);

    /* The same the other way round: the later holder fell idle first. */
    struct owner a = {.release_on_reclaim = true}, b = {.release_on_reclaim = true};
    struct owner w2 = {0};
    assert_true(acquire(&a, "4"));
    assert_true(acquire(&b, "5"));
    stamp = uv_now(&loop) - 20000;
    upslot_activity(&b.sl, stamp, false, true, true);
    upslot_activity(&a.sl, stamp, false, true, true);
    assert_false(acquire(&w2, "6"));
    turn();
    assert_int_equal(b.reclaimed, 1);
    assert_int_equal(a.reclaimed, 0);
    turn();
    assert_int_equal(w2.granted, 1);
    release(&w2);
    release(&a);
}

/* Only falling idle (or progress) restarts the clock: a second "waiting
 * for the client" report, as every timer re-arm makes, keeps the stamp
 * and the place in the order. */
static void test_rearm_keeps_idle_order(void **state)
{
    (void)state;
    struct owner first = {.release_on_reclaim = true}, second = {.release_on_reclaim = true};
    struct owner w = {0};
    assert_true(acquire(&first, "1"));
    assert_true(acquire(&second, "2"));
    uint64_t stamp = uv_now(&loop) - 20000;
    upslot_activity(&first.sl, stamp, false, true, true);
    upslot_activity(&second.sl, stamp + 2, false, true, true);
    upslot_activity(&first.sl, stamp + 5, false, false, true); /* a re-arm, no progress */
    assert_true(first.sl.idle_since < second.sl.idle_since);
    assert_false(acquire(&w, "3"));
    turn();
    assert_int_equal(first.reclaimed, 1);
    assert_int_equal(second.reclaimed, 0);
    turn();
    release(&w);
    release(&second);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_limit_and_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reclaim_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stress_newest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_working_and_fresh_are_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_share_per_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leaving_waiter_gets_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_owner_that_keeps_its_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_millisecond_longest_idle_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rearm_keeps_idle_order, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
