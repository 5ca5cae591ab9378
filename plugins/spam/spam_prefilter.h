/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_prefilter: one multi-pattern scan of a message's text that tells
 * which body-like rules (body, rawbody, full, uri) can possibly match, so
 * that PCRE2 runs only for those.
 *
 * With Hyperscan (found by CMake at build time) every regex of a type is
 * compiled into one database in prefilter mode: Hyperscan reports a
 * superset of the rules PCRE2 would match, and PCRE2 confirms each one,
 * so hits and scores are exactly those of PCRE2 alone. A rule Hyperscan
 * refuses even in prefilter mode is "always run". Without Hyperscan
 * spam_prefilter_new() returns NULL and every rule runs PCRE2.
 *
 * A prefilter belongs to one rule set (spam_ruleset.pf) and is immutable
 * once built: any number of threads may scan with it at once, each with
 * its own scratch. A scratch is owned by one caller at a time (spam_eval
 * keeps one in each of its pooled scratches); it follows whichever
 * prefilter it is used with, so it survives rule reloads.
 */
#ifndef SPAM_PREFILTER_H
#define SPAM_PREFILTER_H

#include "spam_rules.h"

#include <stddef.h>

/* "hyperscan 5.4.0 ..." or "none": for the startup log line. */
const char *spam_prefilter_engine(void);

/*
 * Build the prefilter of rs (the rules' patterns and flags; rs keeps no
 * pointer to it, the caller stores it). NULL when built without Hyperscan,
 * when this CPU cannot run it, when rs has no rule to filter, when the
 * compile failed, or out of memory: the caller then runs PCRE2 on every
 * rule. why[0..whylen) gets the reason of a failed compile worth telling
 * an admin, else "".
 */
struct spam_prefilter *spam_prefilter_new(const struct spam_ruleset *rs, char *why, size_t whylen);

/*
 * Where spam_prefilter_new() compiles: in a forked child that hands the
 * serialized databases back (the default: Hyperscan's compiler never
 * touches the daemon's memory; in this process only when no child can be
 * made), in this process, or (tests) in a child that fails, which leaves
 * the rules without a prefilter. Process-wide; set it before loading
 * rules.
 */
enum spam_prefilter_mode {
    SPAM_PREFILTER_CHILD,
    SPAM_PREFILTER_IN_PROCESS,
    SPAM_PREFILTER_CHILD_FAILS,
};
void spam_prefilter_set_mode(enum spam_prefilter_mode m);
/* pf was compiled by a child process (not the fallback in process). */
int spam_prefilter_isolated(const struct spam_prefilter *pf);
void spam_prefilter_free(struct spam_prefilter *pf);

/* Rule i is run by PCRE2 whatever the scan says (Hyperscan refused it). */
int spam_prefilter_always(const struct spam_prefilter *pf, size_t i);
/* Rule i has a Hyperscan database of its own (it has no literal). */
int spam_prefilter_own_database(const struct spam_prefilter *pf, size_t i);
/* Rules in the databases and rules always run (for logs and tests). */
void spam_prefilter_counts(const struct spam_prefilter *pf, size_t *filtered, size_t *always);

struct spam_prefilter_scratch;

void spam_prefilter_scratch_free(struct spam_prefilter_scratch *s);

/*
 * Set cand[i] = 1 (cand has one byte per rule; nothing is cleared) for
 * every rule of type t that may match text[0..len), the always-run ones
 * included. *sp is the caller's scratch, allocated or grown here (NULL the
 * first time). Returns 0; -1 when no scan was done (type not filtered,
 * empty text, out of memory, scan error): the caller must then treat every
 * rule of type t as a candidate.
 */
int spam_prefilter_scan(const struct spam_prefilter *pf, struct spam_prefilter_scratch **sp,
                        enum spam_rule_type t, const char *text, size_t len, unsigned char *cand);

#endif
