/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_bayes: the statistical half of the spam plugin. Pure: no I/O.
 *
 * Tokens. A message becomes a set of 64-bit token hashes: words of its
 * decoded text (HTML as text), words of the Subject, the sender's address,
 * name and domain, the Reply-To domain, the mailer, the MIME part types,
 * attachment extensions, the host names of its links (with their parent
 * domains) and the words of their paths, the relays' host names and
 * IPv4 /24 and /16 from the Received fields, the Message-ID's domain and
 * shape, the Date's shape, the charset, the MIME boundary's shape, the
 * number of visible recipients and the HTML tag names, each kind under
 * its own prefix so that "free" in the
 * Subject and "free" in the body are different tokens. Words are
 * lower-cased (ASCII), 3 to 20 bytes; a longer run becomes one
 * "skip:<first byte>:<length/10>" token, as SpamBayes does, so that
 * base64 blobs and hashes neither flood the store nor vanish. The set is
 * de-duplicated: a word counts once per message.
 *
 * Classifier. Per token, Gary Robinson's smoothed probability
 *   f(w) = (s*x + n*p(w)) / (s + n),  p(w) = (b/NS) / (b/NS + g/NH)
 * (b, g: spam and ham messages with the token; NS, NH: messages learned;
 * s = 0.45, x = 0.5), then the at most 150 tokens with |f - 0.5| >= 0.1
 * combined with Fisher's method (chi-square, as SpamBayes and
 * SpamAssassin do): S and H are the chi-square tests that the spammy and
 * the hammy probabilities are random; the result (1 + S - H) / 2 is near
 * 1 for spam, near 0 for ham and near 0.5 when the evidence conflicts or
 * is missing. Chi-square combining was chosen over Graham's or Robinson's
 * geometric mean because its "unsure" middle is wide and honest, which
 * keeps false positives low.
 *
 * Snapshot. Lookups run against an immutable in-memory table of counts
 * (open addressing), built from the store and swapped whole when the store
 * changes; readers never lock.
 */
#ifndef SPAM_BAYES_H
#define SPAM_BAYES_H

#include <stddef.h>
#include <stdint.h>

#include "spam_msg.h"

#define SPAM_BAYES_MAX_TOKENS 4000 /* distinct tokens taken from one message */
#define SPAM_BAYES_MAX_DISCRIMINATORS 150

/* The distinct tokens of m into out[0..max), sorted; returns how many. */
size_t spam_bayes_tokens(const struct spam_msg *m, uint64_t *out, size_t max);
/* The hash of one token string (for tests and dumps). */
uint64_t spam_bayes_hash(const char *tok, size_t len);

struct spam_bayes_count {
    uint32_t spam, ham;
};

/* Robinson's f(w) for one token. */
double spam_bayes_token_prob(struct spam_bayes_count c, uint32_t nspam, uint32_t nham);

/* Fisher-combined spam probability of a message whose tokens have the
 * counts c[0..n) (tokens never seen: {0, 0}). *used: discriminators. */
double spam_bayes_classify(const struct spam_bayes_count *c, size_t n, uint32_t nspam,
                           uint32_t nham, size_t *used);

/* ---- snapshot ------------------------------------------------------------ */

struct spam_bayes_snap;

/* An empty table sized for `n` tokens, with the message totals. */
struct spam_bayes_snap *spam_bayes_snap_new(size_t n, uint32_t nspam, uint32_t nham);
/* Add one token (while building; a token added twice keeps the last). */
void spam_bayes_snap_put(struct spam_bayes_snap *s, uint64_t h, struct spam_bayes_count c);
struct spam_bayes_count spam_bayes_snap_get(const struct spam_bayes_snap *s, uint64_t h);
void spam_bayes_snap_totals(const struct spam_bayes_snap *s, uint32_t *nspam, uint32_t *nham);
size_t spam_bayes_snap_size(const struct spam_bayes_snap *s);
void spam_bayes_snap_free(struct spam_bayes_snap *s);

/* Classify m against a snapshot: the probability, or -1 when fewer than
 * min_learned spam or ham messages were learned (not enough to judge). */
double spam_bayes_score(const struct spam_bayes_snap *s, const struct spam_msg *m,
                        uint32_t min_learned, size_t *ntokens, size_t *used);

/* ---- symbols ------------------------------------------------------------- */

/* The probability bands and the symbol each one adds to the message's
 * score, after SpamAssassin's BAYES_* (the bands a mail admin already
 * knows); the scores are fitted to sluice's thresholds. Band b covers
 * probabilities below b.below (and at or above the band before it). */
struct spam_bayes_band {
    double below;
    const char *name;
    double score;
};

/* The band of probability p (0 to 1; the last band for anything above),
 * with its default (hand-set) score; a rule set may override the score
 * (spam_ruleset.bayes_score, set by `score BAYES_95 3.5` lines). */
const struct spam_bayes_band *spam_bayes_band(double p);

#define SPAM_BAYES_NBANDS 10
/* Index (0 to SPAM_BAYES_NBANDS - 1, BAYES_00 first) of the band of p. */
size_t spam_bayes_band_index(double p);
/* Band i (i < SPAM_BAYES_NBANDS), or NULL. */
const struct spam_bayes_band *spam_bayes_band_at(size_t i);
/* Index of the band named `name` (len bytes, e.g. "BAYES_95"), or -1. */
long spam_bayes_band_find(const char *name, size_t len);

#endif
