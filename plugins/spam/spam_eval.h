/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_eval: match a rule set against a message view, bounded in time.
 *
 * Matching state that PCRE2 requires per thread (match data, match
 * context with the limits, JIT stack) lives in "scratch" objects kept in
 * a pool: a caller takes one for a message and gives it back, so any
 * thread can evaluate and nothing is thread-local (which would outlive an
 * unloaded plugin).
 *
 * Bounds: PCRE2's match limit caps the work from one start position; the
 * rules' start-of-match callout (see spam_rules.c) stops a rule once its
 * time budget is spent, and the whole message stops once the message
 * budget is spent. A rule stopped by any limit counts as not matched and
 * is flagged in the result.
 *
 * With a prefilter in the rule set (spam_prefilter.h), body, rawbody,
 * full and uri rules run PCRE2 only when the one scan of their text says
 * they can match; the others are decided "no match" without running, so
 * they are never flagged as limited either.
 */
#ifndef SPAM_EVAL_H
#define SPAM_EVAL_H

#include "spam_msg.h"
#include "spam_rules.h"

#include <stdint.h>

struct spam_eval_limits {
    uint32_t match_limit;    /* PCRE2 match limit (per start position) */
    uint32_t heap_limit_kib; /* interpreter heap limit */
    unsigned rule_time_ms;   /* budget of one rule on one message */
    unsigned msg_time_ms;    /* budget of all rules on one message */
    size_t jit_stack_max;    /* bytes */
    int no_prefilter;        /* 1: PCRE2 on every rule even with a prefilter (tests, benchmarks) */
};

#define SPAM_EVAL_LIMITS_DEFAULT                                                                   \
    {                                                                                              \
        10000, 20000, 50, 2000, 1024 * 1024, 0                                                     \
    }

struct spam_scratch_pool;

struct spam_scratch_pool *spam_scratch_pool_new(const struct spam_eval_limits *lim);
void spam_scratch_pool_free(struct spam_scratch_pool *p);

/* The standard anti-spam test string (GTUBE), always worth SPAM_GTUBE_SCORE. */
extern const char spam_gtube[];
#define SPAM_GTUBE_SCORE 1000.0

struct spam_result {
    double score;           /* sum of the scores of the rules hit (+ GTUBE) */
    size_t nrules;
    unsigned char *hit;     /* owned; per rule of the set: 1 hit */
    unsigned char *limited; /* owned; per rule: stopped by a limit */
    size_t nhits;           /* rules hit */
    size_t nlimited;
    int gtube;              /* the GTUBE string is in the message */
    int out_of_time;        /* the message budget ran out: some rules skipped */
};

/* Evaluate; res is filled (free it with spam_result_free). 0, or -1 when no
 * scratch could be had (out of memory: res then holds GTUBE only). */
int spam_eval_run(const struct spam_ruleset *rs, const struct spam_msg *m, struct spam_scratch_pool *pool,
                  struct spam_result *res);
void spam_result_free(struct spam_result *res);

#endif
