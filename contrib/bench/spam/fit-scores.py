#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""fit-scores.py: fit the spam rules' scores to labelled mail.

    fit-scores.py RULES RESULTS.json [--lambda L] [--ham-weight W]
                  [--threshold T] [--iterations N] [--folds K] > spam-scores.rules

RULES is the rule file whose scores are the starting point (the hand-set
scores, e.g. rules/spam.rules). RESULTS.json is what eval.sh keeps with
EVAL_KEEP=FILE (EVAL_ONLY=sluice is enough): per message its class, its
total score and the rules it hit, the Bayes band included (its Bayes
trained on the other folds of the same run, as in production it is
trained on other mail than it scores).

The model is the plugin's: a message's score is the sum of its rules'
scores plus its Bayes band's score, and it is spam from the threshold T
(default 6, the tag threshold). Rule scores are fitted by projected
gradient descent (N steps, default 4000) on a logistic loss of
(score - T), ham weighted W times (default 2: a false positive costs more
than a miss), with an L2 penalty L (default 0.3, in units of one message's
loss) pulling every score back towards its hand-set value, so that a
rule seen on few messages keeps about the score a person gave it;
a score stays between half and twice its hand value (or hand + 1; at
most 5), and rises above its hand value only for a rule that hits spam at least five times as often
as ham in the given messages (so that a rule whose ham hits the Bayes
happens to cancel does not grow); negative scores are left alone, and
the Bayes bands are not touched. With --folds K it first prints (to stderr) the
recall and false positives of K-fold cross-validation of the fit on the
given messages, so that L and W can be chosen without looking at other
mail. The fitted scores go to stdout as a rule file of `score` lines, to
be included after the rules.

Pure Python (no numpy): a few thousand messages fit in seconds.
"""
import argparse
import json
import math
import random
import re
import sys


def hand_scores(path):
    """Scores of reported rules in a rule file (last definition wins),
    with an unscored rule at the format's default of 1."""
    scores, defined = {}, []
    for line in open(path, encoding="utf-8"):
        f = line.split()
        if len(f) >= 3 and f[0] in ("header", "body", "rawbody", "full", "uri", "meta"):
            if not f[1].startswith("__") and f[1] not in scores:
                scores[f[1]] = 1.0
                defined.append(f[1])
        elif len(f) >= 3 and f[0] == "score":
            scores[f[1]] = float(f[2])
    return scores, defined


def load(path, hand):
    """(label, bayes_part, [rule names]) per message; the Bayes part is the
    total less the hand scores of the rules that hit."""
    rows = json.load(open(path))["sluice"]["rows"]
    out = []
    for cls, total, syms in rows:
        rules = [s for s in syms if s in hand and not s.startswith("BAYES_")]
        rest = total - sum(hand[r] for r in rules)
        out.append((1 if cls == "spam" else 0, rest, rules))
    return out


def fit(msgs, hand, lam, ham_w, thr, iters, rate=0.05):
    w = dict(hand)
    names = sorted({r for _, _, rs in msgs for r in rs})
    # Bounds: the corpus may tune a person's score, not overturn it. A
    # score goes down to half its hand value at least (a sign this corpus
    # lacks, say modern phishing, keeps weight), and up to twice its hand
    # value (or hand + 1, at most 5) only for a
    # rule that hits spam at least five times as often as ham here (a
    # rule whose ham hits the Bayes happens to cancel must not grow).
    ns = sum(1 for y, _, _ in msgs if y) or 1
    nh = (len(msgs) - ns) or 1
    hs = {r: 0 for r in names}
    hh = {r: 0 for r in names}
    for y, _, rs in msgs:
        for r in rs:
            (hs if y else hh)[r] += 1
    lo = {r: hand[r] / 2.0 for r in names}
    hi = {r: min(5.0, max(2.0 * hand[r], hand[r] + 1.0)) if hs[r] / ns >= 5.0 * hh[r] / nh
          else hand[r] for r in names}
    for _ in range(iters):
        grad = {r: 0.0 for r in names}
        for y, rest, rs in msgs:
            m = rest + sum(w[r] for r in rs) - thr
            p = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, m))))
            g = (p - 1.0) if y else ham_w * p
            for r in rs:
                grad[r] += g
        n = len(msgs)
        for r in names:
            if hand[r] <= 0:
                continue
            step = grad[r] / n + lam * (w[r] - hand[r]) / n
            w[r] = min(hi[r], max(lo[r], w[r] - rate * n / 100.0 * step))
    return w


def judge(msgs, w, thr):
    s = [rest + sum(w[r] for r in rs) for y, rest, rs in msgs if y]
    h = [rest + sum(w[r] for r in rs) for y, rest, rs in msgs if not y]
    return (sum(x >= thr for x in s), len(s), sum(x >= thr for x in h), len(h))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rules")
    ap.add_argument("results")
    ap.add_argument("--lambda", dest="lam", type=float, default=0.3)
    ap.add_argument("--ham-weight", type=float, default=2.0)
    ap.add_argument("--iterations", type=int, default=4000)
    ap.add_argument("--threshold", type=float, default=6.0)
    ap.add_argument("--folds", type=int, default=0)
    a = ap.parse_args()
    hand, defined = hand_scores(a.rules)
    msgs = load(a.results, hand)
    if a.folds > 1:
        order = list(range(len(msgs)))
        random.Random(7).shuffle(order)
        tot_hand = [0, 0, 0, 0]
        tot_fit = [0, 0, 0, 0]
        for k in range(a.folds):
            test = [msgs[i] for j, i in enumerate(order) if j % a.folds == k]
            train = [msgs[i] for j, i in enumerate(order) if j % a.folds != k]
            w = fit(train, hand, a.lam, a.ham_weight, a.threshold, a.iterations)
            for t, ww in ((tot_hand, hand), (tot_fit, w)):
                r = judge(test, ww, a.threshold)
                for i in range(4):
                    t[i] += r[i]
        for what, t in (("hand scores", tot_hand), ("fitted", tot_fit)):
            print("%d-fold CV, %s: spam recall %.1f %% (%d/%d), ham false positives %.2f %% (%d/%d)"
                  % (a.folds, what, 100.0 * t[0] / t[1], t[0], t[1], 100.0 * t[2] / t[3], t[2], t[3]),
                  file=sys.stderr)
    w = fit(msgs, hand, a.lam, a.ham_weight, a.threshold, a.iterations)
    print("# spam-scores.rules: scores fitted by contrib/bench/spam/fit-scores.py")
    print("# (lambda %g, ham weight %g, threshold %g, %d steps, %d messages); hand-set" % (
        a.lam, a.ham_weight, a.threshold, a.iterations, len(msgs)))
    print("# scores are in spam.rules; a rule not listed here keeps its own.")
    for r in defined:
        if r in w and abs(round(w[r], 1) - hand[r]) >= 0.05:
            print("score    %-28s %.1f" % (r, round(w[r], 1)))


if __name__ == "__main__":
    main()
