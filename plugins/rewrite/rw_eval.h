/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rw_eval: apply a rewrite rule set to one transaction.
 *
 * Three entry points, one per SMTP phase, over the same rule list in file
 * order: rw_eval_sender (MAIL FROM: sender rules), rw_eval_rcpt (each RCPT
 * TO: recipient rules) and rw_eval_headers (end of data: header rules and
 * the header side of envelope rules with the `headers` flag). A struct
 * rw_tx carries what one phase tells the later ones: where a `stop` ended
 * processing, and which envelope rules fired. The engine does no I/O and
 * knows nothing of the host: the session facts come in a struct rw_env.
 *
 * A rule fires when its conditions hold and it changed something (a bare
 * `stop` when its conditions hold). A firing rule with `stop` ends the
 * processing: for a recipient rule, of that recipient; otherwise of the
 * message (later phases skip the rules after it).
 */
#ifndef RW_EVAL_H
#define RW_EVAL_H

#include "rw_hdr.h"
#include "rw_rules.h"
#include "rw_srs.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct rw_env {
    const char *sender;       /* envelope sender, "" for <> */
    const char *const *rcpts; /* accepted recipients */
    size_t nrcpts;
    const char *rcpt;         /* RCPT phase: the recipient being decided */
    const char *client_ip;
    int authenticated;
    /* Other plugins' verdict record; NULL: no symbols, score 0. */
    int (*has_symbol)(void *ud, const char *name);
    double (*score)(void *ud);
    void *ud;
    /* SRS: secrets, separator and max age; NULL when none */
    time_t now;
    const struct rw_srs *srs;
};

/* Per transaction; holds a reference to the rule set it started with so
 * that a reload in the middle cannot shift rule indices. */
struct rw_tx {
    struct rw_ruleset *rs;
    size_t stop_at;         /* rules at this index and after are skipped */
    unsigned char *fired;   /* per rule: fired in the envelope phases */
};

struct rw_tx *rw_tx_new(struct rw_ruleset *rs); /* takes a reference */
void rw_tx_free(struct rw_tx *tx);

/* Regex scratch: per thread (one instance's loop thread). */
struct rw_scratch;
struct rw_scratch *rw_scratch_new(uint32_t match_limit);
void rw_scratch_free(struct rw_scratch *s);
/* Regex runs stopped by the match limit (counted as no match). */
uint64_t rw_scratch_limited(const struct rw_scratch *s);

enum rw_result {
    RW_KEEP = 0,     /* no rule changed the address */
    RW_CHANGED = 1,  /* *out is the new address */
    RW_INVALID = -1, /* the rules produced *out, which is no valid address */
    RW_SRS_BAD = -2, /* srs-reverse: a forged, damaged or expired SRS address */
};

/*
 * Sender and recipient rules. *out gets a malloc'ed address for
 * RW_CHANGED and RW_INVALID; *line the line of the last rule that changed
 * it (or of the srs-reverse rule for RW_SRS_BAD).
 */
int rw_eval_sender(struct rw_tx *tx, const struct rw_env *env, struct rw_scratch *sc, char **out,
                   unsigned *line);
int rw_eval_rcpt(struct rw_tx *tx, const struct rw_env *env, struct rw_scratch *sc, char **out,
                 unsigned *line);

/* Header rules on the model; returns how many rules fired. Problems
 * (a value that cannot be folded) are appended to `warn`, one per line. */
int rw_eval_headers(struct rw_tx *tx, const struct rw_env *env, struct rw_scratch *sc, struct rw_hdrs *h,
                    struct pstr *warn);

#endif
