#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""fit-scores.py: fit the spam rules' scores to labelled mail.

    fit-scores.py RULES RESULTS.json --fit-bayes [--lambda L] [--ham-weight W]
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
happens to cancel does not grow); negative scores are left alone.

With --fit-bayes (the documented way since issue 13) the scores of the
Bayes bands BAYES_00 ... BAYES_999 are fitted too, in the same descent,
from the plugin's default table (plugins/spam/spam_bayes.c, read from the
source tree; a `score BAYES_xx N` line in RULES replaces a default) with
the same L2 pull, and after every step put back into what a spam engineer
would defend (the Euclidean projection: the isotonic regression of the ten
scores, then clipped): non-decreasing from BAYES_00 to BAYES_999, BAYES_50
exactly 0, the bands below it at most 0 and the bands above it at least
0, BAYES_999 at most T (Bayes alone can tag, but no band scores more than
a verdict). The band scores come out as `score BAYES_95 3.5` lines, which
the rule parser applies to the band (spam_rules.c). Without --fit-bayes
the bands keep the scores they had in the results (as before).

With --folds K it first prints (to stderr) the
recall and false positives of K-fold cross-validation of the fit on the
given messages, so that L and W can be chosen without looking at other
mail. The fitted scores go to stdout as a rule file of `score` lines, to
be included after the rules.

Pure Python (no numpy): a few thousand messages fit in seconds.
"""
import argparse
import json
import math
import os
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


def default_bands(path):
    """[(name, score)] of the plugin's band table, BAYES_00 first, read
    from spam_bayes.c so that there is one table."""
    text = open(path, encoding="utf-8").read()
    table = text[text.index("spam_bayes__bands[] = {"):]
    table = table[:table.index("};")]
    bands = [(n, float(v)) for n, v in
             re.findall(r'\{\s*[0-9.]+\s*,\s*"(BAYES_[0-9]+)"\s*,\s*(-?[0-9.]+)\s*\}', table)]
    if len(bands) != 10 or bands[4][0] != "BAYES_50":
        sys.exit("fit-scores: %s: cannot read the Bayes band table" % path)
    return bands


def load(path, hand, bands, fit_bayes):
    """(label, rest, [rule names], band index or None) per message; rest
    is the total less the hand scores of the rules that hit and, with
    fit_bayes, less the band's score in the results (the hand one)."""
    rows = json.load(open(path))["sluice"]["rows"]
    index = {n: i for i, (n, _) in enumerate(bands)}
    out = []
    for cls, total, syms in rows:
        rules = [s for s in syms if s in hand and not s.startswith("BAYES_")]
        rest = total - sum(hand[r] for r in rules)
        band = next((index[s] for s in syms if s in index), None)
        if fit_bayes and band is not None:
            rest -= hand.get(bands[band][0], bands[band][1])
        out.append((1 if cls == "spam" else 0, rest, rules, band if fit_bayes else None))
    return out


def project_bands(b, thr):
    """The nearest scores (least squares) that are non-decreasing, 0 at
    BAYES_50 (index 4), <= 0 below it, >= 0 above it and <= thr: the
    bounds are themselves non-decreasing, so clipping the isotonic
    regression (pool adjacent violators) is the projection."""
    blocks = []  # [sum, count]
    for x in b:
        blocks.append([x, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    out = []
    for s, c in blocks:
        out += [s / c] * c
    lo = [-1e9] * 4 + [0.0] * 6
    hi = [0.0] * 5 + [thr] * 5
    return [min(hi[i], max(lo[i], x)) for i, x in enumerate(out)]


def fit(msgs, hand, lam, ham_w, thr, iters, band0=None, blam=None, rate=0.05):
    """Fitted rule scores, and band scores (None unless band0, the
    starting band scores, is given)."""
    w = dict(hand)
    names = sorted({r for _, _, rs, _ in msgs for r in rs})
    bw = list(band0) if band0 else None
    blam = lam if blam is None else blam
    # Bounds: the corpus may tune a person's score, not overturn it. A
    # score goes down to half its hand value at least (a sign this corpus
    # lacks, say modern phishing, keeps weight), and up to twice its hand
    # value (or hand + 1, at most 5) only for a
    # rule that hits spam at least five times as often as ham here (a
    # rule whose ham hits the Bayes happens to cancel must not grow).
    ns = sum(1 for y, _, _, _ in msgs if y) or 1
    nh = (len(msgs) - ns) or 1
    hs = {r: 0 for r in names}
    hh = {r: 0 for r in names}
    for y, _, rs, _ in msgs:
        for r in rs:
            (hs if y else hh)[r] += 1
    lo = {r: hand[r] / 2.0 for r in names}
    hi = {r: min(5.0, max(2.0 * hand[r], hand[r] + 1.0)) if hs[r] / ns >= 5.0 * hh[r] / nh
          else hand[r] for r in names}
    for _ in range(iters):
        grad = {r: 0.0 for r in names}
        bgrad = [0.0] * len(bw) if bw else None
        for y, rest, rs, band in msgs:
            m = rest + sum(w[r] for r in rs) - thr
            if band is not None and bw:
                m += bw[band]
            p = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, m))))
            g = (p - 1.0) if y else ham_w * p
            for r in rs:
                grad[r] += g
            if band is not None and bw:
                bgrad[band] += g
        n = len(msgs)
        for r in names:
            if hand[r] <= 0:
                continue
            step = grad[r] / n + lam * (w[r] - hand[r]) / n
            w[r] = min(hi[r], max(lo[r], w[r] - rate * n / 100.0 * step))
        if bw:
            # The same step and pull as a rule's, then back into the
            # defensible set.
            bw = project_bands([x - rate / 100.0 * (bgrad[i] + blam * (x - band0[i]))
                                for i, x in enumerate(bw)], thr)
    return w, bw


def score_of(msg, w, bw):
    _, rest, rs, band = msg
    return rest + sum(w[r] for r in rs) + (bw[band] if bw and band is not None else 0.0)


def judge(msgs, w, bw, thr):
    s = [score_of(m, w, bw) for m in msgs if m[0]]
    h = [score_of(m, w, bw) for m in msgs if not m[0]]
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
    ap.add_argument("--fit-bayes", action="store_true",
                    help="fit the Bayes band scores too (see the description)")
    ap.add_argument("--bayes-lambda", type=float, default=None,
                    help="the bands' L2 pull (default: --lambda)")
    ap.add_argument("--bayes-source", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "plugins", "spam",
        "spam_bayes.c"), help="spam_bayes.c, for the default band scores")
    a = ap.parse_args()
    hand, defined = hand_scores(a.rules)
    bands = default_bands(a.bayes_source)
    band0 = [hand.get(nm, v) for nm, v in bands] if a.fit_bayes else None
    if band0 and project_bands(band0, a.threshold) != band0:
        sys.exit("fit-scores: the starting band scores %s break the constraints" % band0)
    msgs = load(a.results, hand, bands, a.fit_bayes)
    if a.folds > 1:
        order = list(range(len(msgs)))
        random.Random(7).shuffle(order)
        tot_hand = [0, 0, 0, 0]
        tot_fit = [0, 0, 0, 0]
        for k in range(a.folds):
            test = [msgs[i] for j, i in enumerate(order) if j % a.folds == k]
            train = [msgs[i] for j, i in enumerate(order) if j % a.folds != k]
            w, bw = fit(train, hand, a.lam, a.ham_weight, a.threshold, a.iterations, band0,
                        a.bayes_lambda)
            for t, ww, bb in ((tot_hand, hand, band0), (tot_fit, w, bw)):
                r = judge(test, ww, bb, a.threshold)
                for i in range(4):
                    t[i] += r[i]
        for what, t in (("hand scores", tot_hand), ("fitted", tot_fit)):
            print("%d-fold CV, %s: spam recall %.1f %% (%d/%d), ham false positives %.2f %% (%d/%d)"
                  % (a.folds, what, 100.0 * t[0] / t[1], t[0], t[1], 100.0 * t[2] / t[3], t[2], t[3]),
                  file=sys.stderr)
    w, bw = fit(msgs, hand, a.lam, a.ham_weight, a.threshold, a.iterations, band0,
                        a.bayes_lambda)
    print("# spam-scores.rules: scores fitted by contrib/bench/spam/fit-scores.py")
    print("# (lambda %g, ham weight %g, threshold %g, %d steps, %d messages%s); hand-set" % (
        a.lam, a.ham_weight, a.threshold, a.iterations, len(msgs),
        "" if not bw else ", --fit-bayes" if a.bayes_lambda is None else
        ", --fit-bayes --bayes-lambda %g" % a.bayes_lambda))
    print("# scores are in spam.rules; a rule not listed here keeps its own.")
    for r in defined:
        if r in w and abs(round(w[r], 1) - hand[r]) >= 0.05:
            print("score    %-28s %.1f" % (r, round(w[r], 1)))
    if bw:
        print("# Bayes bands (defaults in plugins/spam/spam_bayes.c; non-decreasing,")
        print("# BAYES_50 0, ham side <= 0, spam side >= 0, BAYES_999 <= %g):" % a.threshold)
        print("# every band listed, the unchanged ones too (hand: %s)" % " ".join(
            "%g" % x for x in band0))
        for (nm, _), x in zip(bands, bw):
            print("score    %-28s %.1f" % (nm, round(x, 1) + 0.0))  # + 0.0: no "-0.0"


if __name__ == "__main__":
    main()
