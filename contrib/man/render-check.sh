#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# render-check.sh PAGE...: each page renders with man -l at 80 columns and
# neither man nor groff (all warnings on) prints anything on stderr.
status=0
for page in "$@"; do
  if [ ! -s "$page" ]; then
    echo "$page: missing or empty" >&2
    status=1
    continue
  fi
  warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
  lines=$(LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$page" 2>/dev/null | wc -l)
  if [ -n "$warnings" ]; then
    printf '%s:\n%s\n' "$page" "$warnings" >&2
    status=1
  elif [ "$lines" -lt 10 ]; then
    echo "$page: renders to $lines lines" >&2
    status=1
  else
    echo "$page: ok ($lines lines)"
  fi
done
exit $status
