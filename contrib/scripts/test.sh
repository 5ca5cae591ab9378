#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# test.sh: install what is missing, build sluice with -Werror and run the
# whole suite (cmocka units + integration against real daemons on
# loopback), then do it again in an AddressSanitizer + UBSan build, then
# build with ThreadSanitizer and run the tests that exercise the thread pool.
# Exits non-zero if any step fails. Run as root from anywhere:
#   bash contrib/scripts/test.sh
# Then the fuzz drivers (tests/fuzz) are built with clang + libFuzzer in
# build-fuzz/, each seed corpus is replayed and each driver fuzzed for
# FUZZ_SECONDS (default 12) seconds; any crash fails the run.
# Env: JOBS (default 2), SKIP_DEPS=1 to skip apt, SKIP_ASAN=1, SKIP_TSAN=1 and
# SKIP_FUZZ=1 for a quick run, FUZZ_SECONDS per driver.
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

# configure_and_build DIR CMAKE_ARGS...
configure_and_build() {
  local dir=$1; shift
  step "configure $dir ($*)"
  cmake -S "$ROOT" -B "$ROOT/$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DSLUICE_WERROR=ON "$@" || return 1
  step "build $dir"
  cmake --build "$ROOT/$dir" -j "$JOBS" || return 1
}

# build_and_test DIR CMAKE_ARGS...: configure, build and ctest one tree.
build_and_test() {
  local dir=$1; shift
  configure_and_build "$dir" "$@" || return 1
  step "test $dir"
  (cd "$ROOT/$dir" && ctest -j "$JOBS" --output-on-failure --timeout 600) || return 1
}

# The ThreadSanitizer run: the tests that put hooks on the thread pool
# (blocking hooks, hook timeouts, answers from plugin threads, reload while
# hooks run, quarantine writes, libclamav scans and database reloads, rule
# reloads of spam and rewrite, DKIM's key cache, dnsbl's link extraction)
# and the unit tests of the modules that cross threads. Not the whole suite:
# TSan slows everything 5-15x and the rest is single-threaded.
TSAN_UNITS='^(test_host|test_plugdone|test_stats|test_defer|test_sess)$'
TSAN_INTEG=(
  test_plugins_failures.py test_plugins_reload.py test_plugins_sdk.py
  test_plugins_verdicts.py::test_quarantine
  test_plugins_verdicts.py::test_quarantine_without_dir_tempfails
  test_core_hardening.py::test_quarantine_files_private
  test_virus_libclamav.py::test_action_quarantine
  test_virus_libclamav.py::test_database_reload_while_mail_flows
  test_virus_libclamav.py::test_eicar_attachment_rejected_with_signature_name
  test_spam_plugin.py::test_reload_broken_file_keeps_old_rules
  test_rewrite_plugin.py::test_reload_file_change_sighup_and_broken_file
  test_dkim_plugin.py::test_verify_over_dns_with_cache
  test_dnsbl_plugin.py::test_listed_client_links_and_sender
  test_dnsbl_plugin.py::test_transaction_ends_with_lookups_out
)
tsan_test() {
  local dir=build-tsan
  configure_and_build "$dir" -DSLUICE_TSAN=ON || return 1
  # A report makes the daemon exit 66 at the end (the integration fixtures
  # fail the test on that status and on the report in its output).
  export TSAN_OPTIONS="halt_on_error=0:exitcode=66:second_deadlock_stack=1:suppressions=$ROOT/tests/tsan.supp"
  step "test $dir: units ($TSAN_UNITS)"
  (cd "$ROOT/$dir" && ctest -j "$JOBS" --output-on-failure --timeout 300 -R "$TSAN_UNITS") || return 1
  step "test $dir: integration (thread pool)"
  (cd "$ROOT/tests/integration" &&
   SLUICE_BIN="$ROOT/$dir/proxy/sluice" SLUICE_BUILD_DIR="$ROOT/$dir" SLUICE_SRC_DIR="$ROOT" \
     timeout 600 /usr/bin/python3 -m pytest -q -p no:cacheprovider "${TSAN_INTEG[@]}") || return 1
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

if [ "${SKIP_TSAN:-0}" != 1 ]; then
  t=$(date +%s)
  if ! tsan_test; then
    echo "test.sh: FAILED in build-tsan/ (ThreadSanitizer)" >&2
    status=1
  fi
  echo "test.sh: ThreadSanitizer section took $(( $(date +%s) - t )) s"
fi
if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  # 25 drivers x FUZZ_SECONDS, one per core at a time (about 3 minutes on
  # two cores with the default), plus the clang build of sluice_core and
  # the engines.
  step "configure build-fuzz (clang, libFuzzer + ASan + UBSan)"
  if CC=clang cmake -S "$ROOT" -B "$ROOT/build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DSLUICE_WERROR=ON -DSLUICE_FUZZ=ON &&
     step "build build-fuzz (fuzzers)" &&
     cmake --build "$ROOT/build-fuzz" -j "$JOBS" --target fuzzers; then
    step "fuzz: replay the corpora, then ${FUZZ_SECONDS:-12} s per driver"
    rm -rf "$ROOT/build-fuzz/fuzz-work"
    if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
         bash contrib/scripts/fuzz.sh build-fuzz "${FUZZ_SECONDS:-12}"; then
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
