#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# fuzz.sh: replay each libFuzzer driver's seed corpus, then fuzz it for a
# while; exits non-zero on any crash, leak, sanitizer report, timeout or
# broken invariant. FUZZ_JOBS drivers at a time (default: the number of
# cores), each a single process (no -jobs: with -jobs=1 libFuzzer forks a
# worker that logs to ./fuzz-0.log). The seeds are never
# modified: new inputs go to a scratch directory (kept for -merge=1).
#   bash contrib/scripts/fuzz.sh BUILD_DIR SECONDS [DRIVER...]
# BUILD_DIR is a tree configured with CC=clang -DSLUICE_FUZZ=ON and built
# with --target fuzzers; DRIVER is e.g. cmd (default: all of them).
# Env: FUZZ_WORK (scratch, default BUILD_DIR/fuzz-work), FUZZ_ARGS (extra
# libFuzzer flags).
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
BUILD=${1:?usage: fuzz.sh BUILD_DIR SECONDS [DRIVER...]}
SECONDS_EACH=${2:?usage: fuzz.sh BUILD_DIR SECONDS [DRIVER...]}
shift 2
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
WORK=${FUZZ_WORK:-$BUILD/fuzz-work}
BIN=$BUILD/tests/fuzz
CORPUS=$ROOT/tests/fuzz/corpus
if [ $# -eq 0 ]; then
  set -- $(cd "$CORPUS" && ls)
fi

# The drivers' in-memory files live in a private directory under TMPDIR
# (tests/fuzz/fuzz_file.h); a crashing run leaves it behind, so keep it here.
export TMPDIR=$WORK/tmp
mkdir -p "$TMPDIR"

# One driver: replay its seeds, then fuzz it; prints its summary line.
run_one() {
  local d=$1
  local fz=$BIN/fuzz_$d
  if [ ! -x "$fz" ]; then
    echo "fuzz.sh: $fz missing (build with --target fuzzers)" >&2
    return 1
  fi
  mkdir -p "$WORK/$d/new" "$WORK/$d/artifacts"
  local log=$WORK/$d/log
  # Replay: every seed through the sanitized driver, no mutation.
  if ! "$fz" -runs=0 -timeout=10 -rss_limit_mb=2048 "$CORPUS/$d" > "$log.replay" 2>&1; then
    echo "fuzz.sh: $d: seed corpus replay FAILED (see $log.replay)" >&2
    tail -n 30 "$log.replay" >&2
    return 1
  fi
  # Fuzz: new inputs into new/, seeds read from the corpus.
  # shellcheck disable=SC2086
  "$fz" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -print_final_stats=1 -artifact_prefix="$WORK/$d/artifacts/" \
        ${FUZZ_ARGS:-} "$WORK/$d/new" "$CORPUS/$d" > "$log" 2>&1
  local rc=$?
  # libFuzzer's last status line: "#N DONE cov: C ft: F corp: K/Sb ... exec/s: E"
  local last execs rate
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  execs=$(grep -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  rate=$(grep -m1 '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
  printf 'fuzz.sh: %-11s rc=%d execs=%s exec/s=%s %s\n' "$d" "$rc" "${execs:-?}" "${rate:-?}" \
         "$(sed -E 's/^#[0-9]+ +[A-Z]+ +//; s/ lim:.*//' <<< "$last")"
  if [ $rc -ne 0 ]; then
    echo "fuzz.sh: $d: FAILED (artifacts in $WORK/$d/artifacts, log $log)" >&2
    grep -E 'ERROR|invariant failed|SUMMARY|Test unit written' "$log" | head -n 20 >&2
    return 1
  fi
  return 0
}

# FUZZ_JOBS drivers at once (default: one per core). Each is still a single
# libFuzzer process (no -jobs/-workers); their reports are printed in
# driver order once each is done.
jobs_max=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
status=0
pids=()
names=()
for d in "$@"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do
    wait -n
  done
  run_one "$d" > "$WORK/$d.report" 2>&1 &
  pids+=($!)
  names+=("$d")
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || status=1
  cat "$WORK/${names[$i]}.report"
done
exit $status
