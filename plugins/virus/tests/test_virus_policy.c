/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vir_policy: scan result x config -> verdict, reply, headers (table). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "plugcfg.h"
#include "vir_policy.h"

static const char *no_value(void *ud, const char *key)
{
    (void)ud;
    (void)key;
    return NULL;
}

static void no_error(void *ud, const char *key, const char *msg)
{
    (void)ud;
    fail_msg("default of %s: %s", key, msg);
}

/* The keys' defaults, as the host fills them for an empty section. */
static void vir_cfg_defaults(struct vir_config *c)
{
    memset(c, 0, sizeof *c);
    struct plugcfg_io io = {no_value, no_error, NULL, NULL};
    assert_int_equal(plugcfg_load(vir_cfg_keys, sizeof vir_cfg_keys[0], c, 0, &io), 0);
}

struct pcase {
    enum vir_kind kind;
    const char *name;
    enum vir_action action;
    enum vir_limit_action limit;
    enum vir_failure failure;
    bool scanned_header;
    /* want */
    enum vir_verdict verdict;
    int code;
    const char *enh;
    const char *text;    /* substring of the reply text, or NULL */
    const char *headers; /* "Name: value|Name: value|" */
};

static const struct pcase decide_cases[] = {
    {VIR_CLEAN, "", VIR_ACT_REJECT, VIR_LIM_TEMPFAIL, VIR_FAIL_TEMPFAIL, false, VIR_V_CONTINUE,
     0, "", NULL, ""},
    {VIR_CLEAN, "", VIR_ACT_REJECT, VIR_LIM_TEMPFAIL, VIR_FAIL_TEMPFAIL, true, VIR_V_CONTINUE, 0,
     "", NULL, "X-Virus-Scanned: sluice (ClamAV 9.9)|"},
    {VIR_VIRUS, "Eicar.NDB.UNOFFICIAL", VIR_ACT_REJECT, VIR_LIM_TEMPFAIL, VIR_FAIL_TEMPFAIL,
     true, VIR_V_REJECT, 554, "5.7.1", "Virus found: Eicar.NDB.UNOFFICIAL", ""},
    {VIR_VIRUS, "X", VIR_ACT_QUARANTINE, VIR_LIM_TEMPFAIL, VIR_FAIL_TEMPFAIL, true,
     VIR_V_QUARANTINE, 0, "", NULL, ""},
    {VIR_VIRUS, "Win.Test", VIR_ACT_TAG, VIR_LIM_TEMPFAIL, VIR_FAIL_TEMPFAIL, false,
     VIR_V_CONTINUE, 0, "", NULL, "X-Virus: Win.Test|"},
    {VIR_VIRUS, "Win.Test", VIR_ACT_TAG, VIR_LIM_TEMPFAIL, VIR_FAIL_TEMPFAIL, true,
     VIR_V_CONTINUE, 0, "", NULL, "X-Virus: Win.Test|X-Virus-Scanned: sluice (ClamAV 9.9)|"},
    {VIR_LIMIT, "MaxRecursion", VIR_ACT_REJECT, VIR_LIM_TEMPFAIL, VIR_FAIL_ACCEPT, false,
     VIR_V_TEMPFAIL, 452, "4.3.4", "(MaxRecursion)", ""},
    {VIR_LIMIT, "MaxScanSize", VIR_ACT_REJECT, VIR_LIM_REJECT, VIR_FAIL_TEMPFAIL, false,
     VIR_V_REJECT, 552, "5.3.4", "(MaxScanSize)", ""},
    {VIR_LIMIT, "MaxScanSize", VIR_ACT_REJECT, VIR_LIM_TAG, VIR_FAIL_TEMPFAIL, false,
     VIR_V_CONTINUE, 0, "", NULL, "X-Virus-Limit: limit exceeded (MaxScanSize)|"},
    {VIR_ERROR, VIR_ERR_CONNECT, VIR_ACT_REJECT, VIR_LIM_TAG, VIR_FAIL_TEMPFAIL, true,
     VIR_V_TEMPFAIL, 451, "4.7.1", "Virus scan failed", ""},
    {VIR_ERROR, VIR_ERR_NOT_READY, VIR_ACT_REJECT, VIR_LIM_TAG, VIR_FAIL_TEMPFAIL, true,
     VIR_V_TEMPFAIL, 451, "4.7.1", "scanner not ready", ""},
    {VIR_ERROR, VIR_ERR_TIMEOUT, VIR_ACT_REJECT, VIR_LIM_TAG, VIR_FAIL_ACCEPT, true,
     VIR_V_CONTINUE, 0, "", NULL, ""},
    {VIR_ERROR, VIR_ERR_TIMEOUT, VIR_ACT_REJECT, VIR_LIM_TAG, VIR_FAIL_TAG, true, VIR_V_CONTINUE,
     0, "", NULL, "X-Sluice-Skipped: av1 (virus scan failed: timeout)|"},
};

static void test_decide(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof decide_cases / sizeof decide_cases[0]; i++) {
        const struct pcase *pc = &decide_cases[i];
        struct vir_config cfg;
        vir_cfg_defaults(&cfg);
        cfg.action = pc->action;
        cfg.limit_action = pc->limit;
        cfg.failure = pc->failure;
        cfg.scanned_header = pc->scanned_header;
        struct vir_result r;
        if (pc->kind == VIR_ERROR)
            vir_result_error(&r, pc->name, "detail");
        else
            vir_result_set(&r, pc->kind, pc->name, strlen(pc->name));
        struct vir_outcome o;
        vir_policy_decide(&cfg, &r, "ClamAV 9.9", "av1", &o);
        char hdrs[1024] = "";
        for (size_t h = 0; h < o.nheaders; h++) {
            size_t n = strlen(hdrs);
            snprintf(hdrs + n, sizeof hdrs - n, "%s: %s|", o.headers[h].name, o.headers[h].value);
        }
        if (o.verdict != pc->verdict || o.code != pc->code || strcmp(o.enh, pc->enh) ||
            (pc->text && !strstr(o.text, pc->text)) || strcmp(hdrs, pc->headers))
            fail_msg("case %zu: got verdict %d %d %s \"%s\" headers \"%s\"; want %d %d %s \"%s\" "
                     "headers \"%s\"",
                     i, o.verdict, o.code, o.enh, o.text, hdrs, pc->verdict, pc->code, pc->enh,
                     pc->text ? pc->text : "", pc->headers);
    }
}

static void test_render(void **state)
{
    (void)state;
    static const struct {
        const char *tmpl, *name, *want;
        size_t outsz;
    } cases[] = {
        {"Virus found: %s", "Eicar", "Virus found: Eicar", 64},
        {"%s", "A.B", "A.B", 64},
        {"100%% %s!", "X", "100% X!", 64},
        {"no name", "X", "no name", 64},
        {"Virus found: %s", "Eicar", "Virus", 6}, /* truncated, NUL-terminated */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64];
        vir_policy_render(cases[i].tmpl, cases[i].name, out, cases[i].outsz);
        if (strcmp(out, cases[i].want))
            fail_msg("render \"%s\": got \"%s\", want \"%s\"", cases[i].tmpl, out,
                     cases[i].want);
    }
}

static void test_clean_name(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"Win.Test.EICAR_HDB-1", "Win.Test.EICAR_HDB-1"},
        {"bad name\r\n", "bad_name__"},
        {"a<b>\"c\"", "a_b__c_"},
        {"Heuristics.Limits.Exceeded.MaxFileSize", "Heuristics.Limits.Exceeded.MaxFileSize"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[VIR_NAME_MAX];
        vir_result_clean_name(out, sizeof out, cases[i].in, strlen(cases[i].in));
        if (strcmp(out, cases[i].want))
            fail_msg("clean \"%s\": got \"%s\", want \"%s\"", cases[i].in, out, cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_clean_name),
    };
    return cmocka_run_group_tests_name("virus_policy", tests, NULL, NULL);
}
