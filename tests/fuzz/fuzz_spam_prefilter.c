/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz the spam plugin's Hyperscan prefilter (spam_prefilter) against
 * PCRE2 alone: for any rules and any message, the rules that hit are the
 * same with the prefilter as without it. The prefilter rewrites patterns
 * (loosening, its own reading of classes and groups) and splits them over
 * databases; a rule it drops that PCRE2 matches is a missed spam rule.
 * Without Hyperscan both runs are PCRE2 only and agree trivially.
 *
 * Input: RULES NUL MESSAGE (a rule file text, at most 1 KiB, compiled in
 * process; then the message, parsed as the plugin does).
 */
#include "fuzz.h"

#include <string.h>

#include "spam_eval.h"
#include "spam_msg.h"
#include "spam_prefilter.h"
#include "spam_rules.h"

#define RULES_MAX 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul || (size_t)(nul - data) > RULES_MAX)
        return 0;
    size_t rlen = (size_t)(nul - data);
    const char *msg = (const char *)nul + 1;
    size_t mlen = size - rlen - 1;

    /* No child per input: the same compile, without a fork each time. */
    spam_prefilter_set_mode(SPAM_PREFILTER_IN_PROCESS);
    struct spam_rules_builder *b = spam_rules_builder_new();
    spam_rules_builder_add_text(b, "fuzz.rules", (const char *)data, rlen);
    struct spam_rules_errors errs;
    struct spam_ruleset *rs = spam_rules_builder_finish(b, &errs);
    spam_rules_errors_free(&errs);
    if (!rs)
        return 0;

    /* Matching is compared, not time: no budget may cut one run short. */
    struct spam_eval_limits lim = SPAM_EVAL_LIMITS_DEFAULT;
    lim.rule_time_ms = 600000;
    lim.msg_time_ms = 600000;
    struct spam_scratch_pool *on = spam_scratch_pool_new(&lim);
    lim.no_prefilter = 1;
    struct spam_scratch_pool *off = spam_scratch_pool_new(&lim);
    FUZZ_CHECK(on && off);

    struct spam_msg *m = spam_msg_parse(msg, mlen, NULL, 64 * 1024);
    struct spam_result a, c;
    FUZZ_CHECK(spam_eval_run(rs, m, on, &a) == 0);
    FUZZ_CHECK(spam_eval_run(rs, m, off, &c) == 0);
    for (size_t i = 0; i < rs->nrules; i++) {
        if (a.hit[i] != c.hit[i])
            fprintf(stderr, "rule %s: prefilter %d, PCRE2 alone %d (always %d, own database %d)\n",
                    rs->rules[i].name, a.hit[i], c.hit[i], spam_prefilter_always(rs->pf, i),
                    spam_prefilter_own_database(rs->pf, i));
        FUZZ_CHECK(a.hit[i] == c.hit[i]);
    }
    FUZZ_CHECK(a.nhits == c.nhits);
    spam_result_free(&a);
    spam_result_free(&c);
    spam_msg_free(m);
    spam_scratch_pool_free(on);
    spam_scratch_pool_free(off);
    spam_ruleset_unref(rs);
    return 0;
}
