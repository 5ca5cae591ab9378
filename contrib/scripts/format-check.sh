#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# format-check.sh: every C line changed since the formatting baseline
# (.ci/format-base, a commit) must be as clang-format (.clang-format) would
# write it. Lines nobody touched are left alone, so the check never asks for
# a reformatting commit. Prints the wanted diff and exits 1 otherwise.
#   bash contrib/scripts/format-check.sh [BASE]
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
base=${1:-$(cat .ci/format-base)}
fmtdiff=$(command -v clang-format-diff-14 || command -v clang-format-diff || true)
if [ -z "$fmtdiff" ]; then
  echo "format-check: clang-format-diff not found (apt-get install clang-format)" >&2
  exit 1
fi
if ! command -v git >/dev/null; then
  echo "format-check: git not found (apt-get install git)" >&2
  exit 1
fi
if ! git cat-file -e "$base^{commit}" 2>/dev/null; then
  # A shallow clone without the baseline: check what the last commit changed.
  echo "format-check: baseline $base not in this clone; checking HEAD's own changes" >&2
  base=HEAD~1
  git cat-file -e "$base^{commit}" 2>/dev/null || { echo "format-check: no history, skipped"; exit 0; }
fi
out=$(git diff -U0 --no-color "$base" -- '*.c' '*.h' | "$fmtdiff" -p1 -style=file)
if [ -n "$out" ]; then
  printf '%s\n' "$out"
  echo "format-check: the lines above are not clang-formatted (fix: clang-format-diff -p1 -i < <(git diff -U0 $base))" >&2
  exit 1
fi
echo "format-check: changed lines since ${base:0:12} are clang-formatted"
