/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for names.c: every word of every list (they are metric label
 * values: a changed byte breaks dashboards), both directions, out-of-range
 * values, and agreement with the SDK's and stats' enums.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include <sluice/plugin.h>

#include "names.h"
#include "stats.h"

struct want {
    int value;
    const char *word;
};

static void check_list(const char *(*word)(int), int (*find)(const char *), int count,
                       const struct want *w, size_t n)
{
    assert_int_equal(count, (int)n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(word(w[i].value), w[i].word) != 0)
            fail_msg("value %d: got \"%s\", want \"%s\"", w[i].value, word(w[i].value), w[i].word);
        if (find(w[i].word) != w[i].value)
            fail_msg("\"%s\": got %d, want %d", w[i].word, find(w[i].word), w[i].value);
    }
    /* Outside the list: a fixed word, never NULL; unknown words are -1. */
    static const int outside[] = {-1, -100, 1000};
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++)
        assert_string_equal(word(outside[i]), "unknown");
    assert_string_equal(word(count), "unknown");
    assert_int_equal(find(NULL), -1);
    assert_int_equal(find(""), -1);
    assert_int_equal(find("unknown"), -1);
    char upper[32];
    strcpy(upper, w[0].word);
    upper[0] = (char)(upper[0] - 'a' + 'A');
    assert_int_equal(find(upper), -1); /* exact, case-sensitive */
    char longer[32];
    strcpy(longer, w[0].word);
    strcat(longer, "x");
    assert_int_equal(find(longer), -1);
}

static void test_phases(void **state)
{
    (void)state;
    static const struct want w[] = {
        {SLUICE_PHASE_CONNECT, "connect"}, {SLUICE_PHASE_HELO, "helo"},
        {SLUICE_PHASE_MAIL, "mail"},       {SLUICE_PHASE_RCPT, "rcpt"},
        {SLUICE_PHASE_DATA, "data"},       {SLUICE_PHASE_RESET, "reset"},
        {SLUICE_PHASE_CLOSE, "close"},
    };
    check_list(names_phase, names_phase_find, NAMES_PHASE_COUNT, w, sizeof w / sizeof w[0]);
    assert_int_equal(NAMES_PHASE_COUNT, SLUICE_PHASE_COUNT);
    assert_int_equal(NAMES_PHASE_COUNT, STATS_PH_COUNT);
    assert_string_equal(names_phase(STATS_PH_RCPT), "rcpt");
}

static void test_plugin_verdicts(void **state)
{
    (void)state;
    static const struct want w[] = {
        {SLUICE_CONTINUE, "continue"},     {SLUICE_ACCEPT, "accept"},
        {SLUICE_REJECT, "reject"},         {SLUICE_TEMPFAIL, "tempfail"},
        {SLUICE_DISCARD, "discard"},       {SLUICE_QUARANTINE, "quarantine"},
        {SLUICE_DISCONNECT, "disconnect"},
    };
    check_list(names_pverdict, names_pverdict_find, NAMES_PVERDICT_COUNT, w,
               sizeof w / sizeof w[0]);
    assert_int_equal(NAMES_PVERDICT_COUNT, STATS_PV_COUNT);
    assert_string_equal(names_pverdict(STATS_PV_QUARANTINE), "quarantine");
    /* Not verdicts a hook ends with: outside the list. */
    assert_string_equal(names_pverdict(SLUICE_ASYNC), "unknown");
    assert_string_equal(names_pverdict(SLUICE_ERROR), "unknown");
}

static void test_tx_verdicts(void **state)
{
    (void)state;
    static const struct want w[] = {
        {STATS_V_ACCEPTED, "accepted"},       {STATS_V_REJECTED, "rejected"},
        {STATS_V_TEMPFAILED, "tempfailed"},   {STATS_V_DISCARDED, "discarded"},
        {STATS_V_QUARANTINED, "quarantined"}, {STATS_V_ABORTED, "aborted"},
    };
    check_list(names_txverdict, names_txverdict_find, NAMES_TXVERDICT_COUNT, w,
               sizeof w / sizeof w[0]);
    assert_int_equal(NAMES_TXVERDICT_COUNT, STATS_V_COUNT);
}

/* The X-macros expand in list order, so a user's own table lines up. */
static void test_xmacro_order(void **state)
{
    (void)state;
#define WORD(id, word) word,
    static const char *const ph[] = {NAMES_PHASES(WORD)};
    static const char *const pv[] = {NAMES_PVERDICTS(WORD)};
    static const char *const tx[] = {NAMES_TXVERDICTS(WORD)};
#undef WORD
    for (int i = 0; i < NAMES_PHASE_COUNT; i++)
        assert_string_equal(ph[i], names_phase(i));
    for (int i = 0; i < NAMES_PVERDICT_COUNT; i++)
        assert_string_equal(pv[i], names_pverdict(i));
    for (int i = 0; i < NAMES_TXVERDICT_COUNT; i++)
        assert_string_equal(tx[i], names_txverdict(i));
    assert_int_equal(NAMES_PH_DATA, SLUICE_PHASE_DATA);
    assert_int_equal(NAMES_PV_DISCONNECT, SLUICE_DISCONNECT);
    assert_int_equal(NAMES_TX_ABORTED, STATS_V_ABORTED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_phases),
        cmocka_unit_test(test_plugin_verdicts),
        cmocka_unit_test(test_tx_verdicts),
        cmocka_unit_test(test_xmacro_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
