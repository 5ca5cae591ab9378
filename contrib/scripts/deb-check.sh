#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# deb-check.sh: build the Debian packages from the committed tree (HEAD),
# run lintian, install them on this machine, check what the installation
# did (the sluice user, conffiles, directories, the unit neither enabled
# nor started, man pages, the SDK), run the installed daemon with the
# installed configuration on loopback ports and send it a message, then
# purge and check that the configuration and the spool are gone.
#
# Slow (a full package build): not part of the test suite. Run as root:
#   bash contrib/scripts/deb-check.sh
# Env: JOBS (default 2), KEEP=1 keeps the build directory and the packages
# installed.
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
JOBS=${JOBS:-2}
fail=0
step() { printf '\n==== %s ====\n' "$*"; }
ok() { printf 'ok: %s\n' "$*"; }
bad() { printf 'FAILED: %s\n' "$*" >&2; fail=1; }

if [ "$(id -u)" -ne 0 ]; then
  echo "deb-check.sh: run as root" >&2
  exit 1
fi

step "tools"
need=()
for p in debhelper dpkg-dev fakeroot lintian; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" || exit 1
fi
ok "debhelper dpkg-dev fakeroot lintian"

WORK=$(mktemp -d /tmp/sluice-deb.XXXXXX)
SRC="$WORK/sluice-0.1.0"
cleanup() {
  [ -n "${SLUICE_PID:-}" ] && kill "$SLUICE_PID" 2>/dev/null
  [ -n "${FAKE_PID:-}" ] && kill "$FAKE_PID" 2>/dev/null
  if [ "${KEEP:-0}" != 1 ]; then
    rm -rf "$WORK"
  else
    echo "kept $WORK"
  fi
}
trap cleanup EXIT

step "source (git HEAD $(git rev-parse --short HEAD))"
mkdir -p "$SRC"
git archive HEAD | tar -x -C "$SRC" || exit 1

step "build dependencies"
(cd "$SRC" && dpkg-checkbuilddeps) || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends devscripts equivs || exit 1
  (cd "$SRC" && DEBIAN_FRONTEND=noninteractive mk-build-deps --install --remove \
     --tool 'apt-get -y --no-install-recommends' debian/control) || exit 1
}

step "dpkg-buildpackage -us -uc -b"
start=$(date +%s)
(cd "$SRC" && DEB_BUILD_OPTIONS="nocheck parallel=$JOBS" dpkg-buildpackage -us -uc -b) \
  >"$WORK/build.log" 2>&1 || { tail -50 "$WORK/build.log"; echo "build failed" >&2; exit 1; }
echo "built in $(( $(date +%s) - start )) s:"
ls -l "$WORK"/*.deb

step "lintian"
lintian --info --display-info --pedantic --fail-on error,warning "$WORK"/sluice_*.changes
rc=$?
[ $rc -eq 0 ] && ok "lintian: no errors or warnings" || bad "lintian (status $rc)"

step "contents"
dpkg-deb -c "$WORK"/sluice_0*.deb | awk '{print $6}' | grep -v '/$'
dpkg-deb -c "$WORK"/sluice-dev_0*.deb | awk '{print $6}' | grep -v '/$'

step "install"
if dpkg-query -W -f='${Status}' sluice 2>/dev/null | grep -q installed; then
  apt-get purge -y sluice sluice-dev >/dev/null
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y "$WORK"/sluice_0*.deb "$WORK"/sluice-dev_0*.deb \
  || { bad "apt-get install"; exit 1; }

step "what the installation did"
if getent passwd sluice >/dev/null; then
  ok "user: $(getent passwd sluice)"
  [ "$(getent passwd sluice | cut -d: -f3)" -lt 1000 ] && ok "a system user" || bad "not a system user"
else
  bad "no sluice user"
fi
for d in /var/spool/sluice /var/spool/sluice/quarantine /var/lib/sluice; do
  owner=$(stat -c '%U:%G %a' "$d" 2>/dev/null)
  case "$owner" in sluice:sluice*) ok "$d $owner" ;; *) bad "$d: '$owner'" ;; esac
done
conffiles=$(dpkg-query -W -f='${Conffiles}\n' sluice)
for f in /etc/sluice/sluice.conf /etc/sluice/rules/spam.rules /etc/sluice/rules/rewrite.rules \
         /etc/sluice/rules/access/client.map /etc/sluice/dkim/signing.table; do
  echo "$conffiles" | grep -q " $f " && ok "conffile $f" || bad "$f is not a conffile"
done
if ls /etc/systemd/system/*.wants/sluice.service >/dev/null 2>&1; then
  bad "sluice.service was enabled"
else
  ok "sluice.service installed ($(ls /lib/systemd/system/sluice.service)), not enabled"
fi
# (by executable: other sluice processes, a test suite's, may run here)
started=""
for exe in /proc/[0-9]*/exe; do
  [ "$(readlink "$exe" 2>/dev/null)" = /usr/sbin/sluice ] && started="$started ${exe//[^0-9]/}"
done
if [ -n "$started" ]; then bad "/usr/sbin/sluice runs after install:$started"; else ok "not started"; fi
for p in sluice.8 sluice-quarantine.8 sluice.conf.5 sluice-rules.5 sluice-plugin.3 sluice-rules-lint.1 \
         sluice-spam-learn.1 sluice-rewrite-lint.1; do
  w=$(man -w "${p%.*}" 2>/dev/null | head -1)
  [ -n "$w" ] && ok "man ${p%.*}: $w" || bad "man page $p"
done
/usr/sbin/sluice --version && ok "--version" || bad "--version"
/usr/sbin/sluice --check -c /etc/sluice/sluice.conf && ok "--check of the installed config" \
  || bad "--check -c /etc/sluice/sluice.conf"
plugindir=$(pkg-config --variable=plugindir sluice-plugin)
[ -f "$plugindir/spam.so" ] && ok "pkg-config plugindir $plugindir" || bad "plugindir '$plugindir'"
if cc -std=c11 -shared -fPIC -fvisibility=hidden -Wl,-z,defs $(pkg-config --cflags sluice-plugin) \
     -o "$WORK/rcptblock.so" /usr/share/doc/sluice-dev/examples/rcptblock.c; then
  ok "the SDK example builds against the installed header"
else
  bad "SDK example build"
fi
sluice-rules-lint -q /etc/sluice/rules/spam.rules && ok "sluice-rules-lint" || bad "sluice-rules-lint"
sluice-rewrite-lint -q /etc/sluice/rules/rewrite.rules && ok "sluice-rewrite-lint" \
  || bad "sluice-rewrite-lint"

step "smoke run: installed daemon, installed config, as user sluice"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SMTP=$(port); UP=$(port); STATS=$(port)
mkdir -p "$WORK/mail"
python3 "$ROOT/tests/integration/fakemta.py" --port "$UP" --dir "$WORK/mail" >"$WORK/fake.log" 2>&1 &
FAKE_PID=$!
# The example chain without virus and DKIM (they need a ClamAV database and
# keys); the service user from the package.
sed -e 's/^plugins = .*/plugins = spam, rewrite/' \
    -e 's/^\[server\]$/[server]\nuser = sluice\ngroup = sluice/' \
    /etc/sluice/sluice.conf >"$WORK/smoke.conf"
chmod 0644 "$WORK/smoke.conf"
chmod 0755 "$WORK"
/usr/sbin/sluice -c "$WORK/smoke.conf" --listen "127.0.0.1:$SMTP" --upstream "127.0.0.1:$UP" \
  --stats-listen "127.0.0.1:$STATS" 2>"$WORK/sluice.log" &
SLUICE_PID=$!
for _ in $(seq 100); do
  (echo >"/dev/tcp/127.0.0.1/$SMTP") 2>/dev/null && break
  sleep 0.1
done
python3 - "$SMTP" <<'EOF'
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=15) as s:
    s.sendmail("alice@example.org", ["bob@example.net"],
               b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: deb smoke\r\n\r\nhello\r\n")
EOF
[ $? -eq 0 ] && ok "message accepted" || bad "SMTP send"
for _ in $(seq 50); do ls "$WORK/mail"/*.eml >/dev/null 2>&1 && break; sleep 0.1; done
grep -q "Subject: deb smoke" "$WORK/mail"/*.eml 2>/dev/null && ok "delivered upstream" \
  || bad "not delivered"
health=$(curl -s "http://127.0.0.1:$STATS/healthz")
[ -n "$health" ] && ok "/healthz: $health" || bad "/healthz"
user=$(ps -o user= -p "$SLUICE_PID")
[ "$user" = sluice ] && ok "runs as $user" || bad "runs as '$user'"
kill -TERM "$SLUICE_PID"
wait "$SLUICE_PID"
rc=$?
SLUICE_PID=
[ $rc -eq 0 ] && ok "SIGTERM: exit 0" || bad "exit status $rc after SIGTERM"
kill "$FAKE_PID" 2>/dev/null; wait "$FAKE_PID" 2>/dev/null; FAKE_PID=
echo "--- daemon log"; cat "$WORK/sluice.log"

if [ "${KEEP:-0}" = 1 ]; then
  echo "KEEP=1: packages stay installed"
  exit $fail
fi

step "purge"
apt-get purge -y sluice sluice-dev >/dev/null || bad "apt-get purge"
for f in /etc/sluice /var/spool/sluice /var/lib/sluice /usr/sbin/sluice /lib/systemd/system/sluice.service \
         /usr/include/sluice; do
  [ -e "$f" ] && bad "$f left after purge" || ok "$f gone"
done
dpkg-query -W sluice >/dev/null 2>&1 && bad "sluice still known to dpkg" || ok "sluice purged"
getent passwd sluice >/dev/null && ok "the sluice system user stays (Debian practice)"

step "result"
[ $fail -eq 0 ] && echo "deb-check: all checks passed" || echo "deb-check: FAILED" >&2
exit $fail
