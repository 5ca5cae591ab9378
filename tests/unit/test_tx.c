/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for tx: recipient states, plugin edits, the envelope plan
 * (table-driven: envelope as given -> plan), commit, clone. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tx.h"

#include <errno.h>
#include <string.h>

static struct tx *mk(void)
{
    struct client_info ci;
    memset(&ci, 0, sizeof ci);
    strcpy(ci.sid, "T1");
    struct tx *tx = tx_new(&ci, 1);
    tx_set_sender(tx, "a@example.org", "");
    return tx;
}

/* RCPT as the session does it: current, sent, answered. */
static void rcpt(struct tx *tx, const char *addr, bool accepted)
{
    tx_set_current(tx, addr, "");
    size_t i = tx_rcpt_sent(tx);
    tx_rcpt_answered(tx, i, accepted);
}

/* One row: recipients the upstream answered, then plugin edits at end of
 * data, and the plan wanted. Letters: 'A' accepted, 'R' refused;
 * edits: "+x" add, "-x" remove, "S" change sender. */
struct plan_case {
    const char *name;
    const char *rcpts; /* e.g. "A:b@x R:c@x" */
    const char *edits; /* e.g. "-b@x +d@x" */
    enum tx_plan want;
    size_t visible; /* recipients plugins see afterwards */
};

static const struct plan_case plan_cases[] = {
    {"nothing changed", "A:b@x A:c@x", "", TX_PLAN_AS_IS, 2},
    {"refused ones do not count", "A:b@x R:c@x", "", TX_PLAN_AS_IS, 1},
    {"one added", "A:b@x", "+d@x", TX_PLAN_ADD_RCPTS, 2},
    {"added twice is one", "A:b@x", "+d@x +D@X", TX_PLAN_ADD_RCPTS, 2},
    {"adding an existing one is nothing", "A:b@x", "+B@x", TX_PLAN_AS_IS, 1},
    {"added then removed", "A:b@x", "+d@x -d@x", TX_PLAN_AS_IS, 1},
    {"accepted one removed", "A:b@x A:c@x", "-c@x", TX_PLAN_REPLAY, 1},
    {"removal is case-insensitive", "A:b@x A:c@x", "-C@X", TX_PLAN_REPLAY, 1},
    {"removing a refused one is nothing", "A:b@x R:c@x", "-c@x", TX_PLAN_AS_IS, 1},
    {"sender changed", "A:b@x", "S", TX_PLAN_REPLAY, 1},
    {"removed and added", "A:b@x", "-b@x +d@x", TX_PLAN_REPLAY, 1},
    {"all removed", "A:b@x A:c@x", "-b@x -c@x", TX_PLAN_NONE_LEFT, 0},
    {"none accepted", "R:b@x", "", TX_PLAN_NONE_LEFT, 0},
};

static void apply_row(struct tx *tx, const struct plan_case *pc)
{
    char buf[200];
    strcpy(buf, pc->rcpts);
    for (char *t = strtok(buf, " "); t; t = strtok(NULL, " "))
        rcpt(tx, t + 2, t[0] == 'A');
    strcpy(buf, pc->edits);
    for (char *t = strtok(buf, " "); t; t = strtok(NULL, " ")) {
        if (t[0] == '+')
            tx_rcpt_add(tx, t + 1, "", false);
        else if (t[0] == '-')
            tx_rcpt_remove(tx, t + 1, false);
        else if (t[0] == 'S')
            tx_change_sender(tx, "new@example.org", "");
    }
}

static void test_plan_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof plan_cases / sizeof plan_cases[0]; i++) {
        const struct plan_case *pc = &plan_cases[i];
        struct tx *tx = mk();
        apply_row(tx, pc);
        enum tx_plan got = tx_envelope_plan(tx);
        if (got != pc->want)
            fail_msg("%s: plan %d, want %d", pc->name, got, pc->want);
        if (tx_visible_count(tx) != pc->visible)
            fail_msg("%s: %zu visible, want %zu", pc->name, tx_visible_count(tx), pc->visible);
        /* After the upstream got the new envelope nothing is left to do. */
        if (got != TX_PLAN_NONE_LEFT) {
            tx_envelope_committed(tx);
            if (tx_envelope_plan(tx) != TX_PLAN_AS_IS)
                fail_msg("%s: plan after commit is %d", pc->name, tx_envelope_plan(tx));
            if (tx_accepted(tx) != pc->visible)
                fail_msg("%s: %zu accepted after commit", pc->name, tx_accepted(tx));
        }
        tx_unref(tx);
    }
}

static void test_pending_not_visible(void **state)
{
    (void)state;
    struct tx *tx = mk();
    tx_set_current(tx, "b@x", " NOTIFY=NEVER");
    size_t i = tx_rcpt_sent(tx);
    assert_int_equal(tx_visible_count(tx), 0); /* reply outstanding */
    assert_int_equal(tx_accepted(tx), 0);
    tx_rcpt_answered(tx, i, true);
    assert_int_equal(tx_visible_count(tx), 1);
    assert_string_equal(tx_visible_at(tx, 0)->params, " NOTIFY=NEVER");
    tx_rcpt_answered(tx, i, false); /* a second answer changes nothing */
    assert_int_equal(tx_accepted(tx), 1);
    assert_int_equal(tx->rcpts_sent, 1);
    tx_unref(tx);
}

static void test_rcpt_phase_rewrite(void **state)
{
    (void)state;
    struct tx *tx = mk();
    tx_set_current(tx, "Bob@X", " NOTIFY=NEVER");
    assert_int_equal(tx_rcpt_remove(tx, "bob@x", true), 0);
    assert_true(tx->cur.removed);
    tx_rcpt_add(tx, "robert@x", "", true); /* remove + add = rewrite */
    assert_false(tx->cur.removed);
    assert_string_equal(tx->cur.addr, "robert@x");
    assert_string_equal(tx->cur.params, " NOTIFY=NEVER"); /* client's DSN kept */
    assert_int_equal(tx_visible_count(tx), 0);
    assert_int_equal(tx_rcpt_remove(tx, "nobody@x", true), -ENOENT);
    tx_unref(tx);
}

/* In the RCPT phase a removal never reaches an earlier recipient that
 * differs only in case (rewrite's lowercase-domain on bob@EXAMPLE.NET after
 * bob@example.net was accepted). */
static void test_rcpt_phase_removal_current_only(void **state)
{
    (void)state;
    struct tx *tx = mk();
    rcpt(tx, "bob@example.net", true);
    tx_set_current(tx, "bob@EXAMPLE.NET", "");
    assert_int_equal(tx_rcpt_remove(tx, "bob@EXAMPLE.NET", true), 0);
    tx_rcpt_add(tx, "bob@example.net", "", true);
    assert_false(tx->rcpts[0].removed);
    assert_int_equal(tx_envelope_plan(tx), TX_PLAN_AS_IS);
    /* Outside the RCPT phase a removal matches every recipient. */
    assert_int_equal(tx_rcpt_remove(tx, "BOB@example.net", false), 0);
    assert_true(tx->rcpts[0].removed);
    tx_unref(tx);
}

static void test_clone_is_deep(void **state)
{
    (void)state;
    struct tx *tx = mk();
    rcpt(tx, "b@x", true);
    tx_sym_add(tx, "SYM", 1.5, "d", "spam");
    struct tx *c = tx_clone(tx);
    tx_rcpt_remove(tx, "b@x", false);
    tx_change_sender(tx, "z@x", "");
    assert_int_equal(tx_visible_count(c), 1);
    assert_string_equal(c->sender, "a@example.org");
    assert_string_equal(c->orig_sender, "a@example.org");
    assert_int_equal(c->nsyms, 1);
    assert_true(c->score > 1.4 && c->score < 1.6);
    tx_unref(tx);
    tx_unref(c);
}

static int freed;
static void free_cb(void *p)
{
    (void)p;
    freed++;
}

static void test_private_data_freed_with_last_ref(void **state)
{
    (void)state;
    struct tx *tx = mk();
    static int a, b;
    freed = 0;
    tx_data_set(tx, 3, &a, free_cb);
    tx_data_set(tx, 3, &b, free_cb); /* replaced: the old one is freed */
    assert_int_equal(freed, 1);
    assert_ptr_equal(tx_data_get(tx, 3), &b);
    tx_ref(tx);
    tx_unref(tx);
    assert_int_equal(freed, 1);
    tx_unref(tx);
    assert_int_equal(freed, 2);
}

/* A renewed tx is empty, its plugin data freed, and the same memory. */
static void test_renew(void **state)
{
    (void)state;
    static int a;
    struct tx *tx = mk();
    rcpt(tx, "b@x", true);
    tx_sym_add(tx, "S", 1, "", "p");
    freed = 0;
    tx_data_set(tx, 1, &a, free_cb);
    struct client_info ci;
    memset(&ci, 0, sizeof ci);
    strcpy(ci.sid, "T2");
    struct tx *again = tx_renew(tx, &ci, 7);
    assert_ptr_equal(again, tx);
    assert_int_equal(freed, 1);
    assert_int_equal(again->nrcpts, 0);
    assert_int_equal(again->nsyms, 0);
    assert_null(again->sender);
    assert_null(tx_data_get(again, 1));
    assert_string_equal(again->client.sid, "T2");
    assert_int_equal(again->started_ns, 7);
    /* Held elsewhere (an abandoned hook): a new one, the old released. */
    tx_ref(again);
    struct tx *other = tx_renew(again, &ci, 8);
    assert_ptr_not_equal(other, again);
    tx_unref(again);
    tx_unref(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_table),
        cmocka_unit_test(test_pending_not_visible),
        cmocka_unit_test(test_rcpt_phase_rewrite),
        cmocka_unit_test(test_rcpt_phase_removal_current_only),
        cmocka_unit_test(test_clone_is_deep),
        cmocka_unit_test(test_private_data_freed_with_last_ref),
        cmocka_unit_test(test_renew),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
