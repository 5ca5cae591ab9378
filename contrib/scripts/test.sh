#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# test.sh: install what is missing, build sluice with -Werror and run the
# whole suite (cmocka units + integration against real daemons on
# loopback), then do it again in an AddressSanitizer + UBSan build.
# Exits non-zero if any step fails. Run as root from anywhere:
#   bash contrib/scripts/test.sh
# Then the fuzz drivers (tests/fuzz) are built with clang + libFuzzer in
# build-fuzz/, each seed corpus is replayed and each driver fuzzed for
# FUZZ_SECONDS (default 15) seconds; any crash fails the run.
# Env: JOBS (default 2), SKIP_DEPS=1 to skip apt, SKIP_ASAN=1 for a quick run,
# SKIP_FUZZ=1 to skip the fuzz section, FUZZ_SECONDS per driver.
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
JOBS=${JOBS:-2}
status=0
start=$(date +%s)

step() { printf '\n==== %s ====\n' "$*"; }

if [ "${SKIP_DEPS:-0}" != 1 ]; then
  step "dependencies"
  bash contrib/scripts/install-deps.sh || exit 1
fi

step "format of changed lines"
if ! bash contrib/scripts/format-check.sh; then
  echo "test.sh: FAILED format check" >&2
  status=1
fi

# build_and_test DIR CMAKE_ARGS...: configure, build and ctest one tree.
build_and_test() {
  local dir=$1; shift
  step "configure $dir ($*)"
  cmake -S "$ROOT" -B "$ROOT/$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DSLUICE_WERROR=ON "$@" || return 1
  step "build $dir"
  cmake --build "$ROOT/$dir" -j "$JOBS" || return 1
  step "test $dir"
  (cd "$ROOT/$dir" && ctest -j "$JOBS" --output-on-failure --timeout 600) || return 1
}

if ! build_and_test build; then
  echo "test.sh: FAILED in build/" >&2
  status=1
fi

if [ "${SKIP_ASAN:-0}" != 1 ]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  if ! build_and_test build-asan -DSLUICE_SANITIZE=ON; then
    echo "test.sh: FAILED in build-asan/ (ASan+UBSan)" >&2
    status=1
  fi
fi

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  # 15 drivers x FUZZ_SECONDS, one process at a time (about 4 minutes with
  # the default), plus the clang build of sluice_core and the engines.
  step "configure build-fuzz (clang, libFuzzer + ASan + UBSan)"
  if CC=clang cmake -S "$ROOT" -B "$ROOT/build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DSLUICE_WERROR=ON -DSLUICE_FUZZ=ON &&
     step "build build-fuzz (fuzzers)" &&
     cmake --build "$ROOT/build-fuzz" -j "$JOBS" --target fuzzers; then
    step "fuzz: replay the corpora, then ${FUZZ_SECONDS:-15} s per driver"
    rm -rf "$ROOT/build-fuzz/fuzz-work"
    if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
         bash contrib/scripts/fuzz.sh build-fuzz "${FUZZ_SECONDS:-15}"; then
      echo "test.sh: FAILED in build-fuzz/ (fuzzers)" >&2
      status=1
    fi
  else
    echo "test.sh: FAILED to build build-fuzz/" >&2
    status=1
  fi
fi

step "summary"
echo "test.sh: $( [ $status -eq 0 ] && echo PASSED || echo FAILED ) in $(( $(date +%s) - start )) s"
exit $status
