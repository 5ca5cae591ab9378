#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# demo.sh: install what is missing, build sluice, and show it working in
# front of a real (private, throw-away) Postfix on loopback:
#   1. a normal message                  -> 250, delivered to a Maildir
#   2. a recipient Postfix refuses       -> Postfix's 550 relayed verbatim
#   3. an SMTP smuggling attempt         -> 550 5.5.2, nothing smuggled
# then the per-transaction log lines and the stats endpoint.
# Everything started here is stopped on exit. Run as root:
#   sudo bash contrib/scripts/demo.sh
# Env: SKIP_DEPS=1 to skip apt, JOBS (default 2).
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=/usr/bin/python3
JOBS=${JOBS:-2}

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (the private Postfix needs it): sudo bash $0" >&2
  exit 1
fi

say() { printf '\n\033[1m==== %s\033[0m\n' "$*"; }

if [ "${SKIP_DEPS:-0}" != 1 ]; then
  say "installing missing packages"
  bash contrib/scripts/install-deps.sh
fi

say "building sluice (build/)"
cmake -S "$ROOT" -B "$ROOT/build" -DSLUICE_WERROR=ON >/dev/null
cmake --build "$ROOT/build" -j "$JOBS" --target sluice
SLUICE="$ROOT/build/proxy/sluice"

WORK=$(mktemp -d /tmp/sluice-demo.XXXXXX)
PF_BASE=""
SLUICE_PID=""
cleanup() {
  set +e
  if [ -n "$SLUICE_PID" ] && kill -0 "$SLUICE_PID" 2>/dev/null; then
    kill -TERM "$SLUICE_PID"; wait "$SLUICE_PID" 2>/dev/null
  fi
  if [ -n "$PF_BASE" ]; then
    "$PY" "$ROOT/tests/integration/postfix.py" stop "$PF_BASE" >/dev/null 2>&1
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

say "starting a private Postfix on loopback (upstream MTA)"
read -r PF_BASE PF_PORT < <("$PY" "$ROOT/tests/integration/postfix.py" start)
echo "Postfix: 127.0.0.1:$PF_PORT, Maildir under $PF_BASE/mail/Maildir, XCLIENT allowed from 127.0.0.0/8"

PORT=$(free_port)
STATS=127.0.0.1:9025
if "$PY" -c 'import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(("127.0.0.1",9025))!=0)'; then
  STATS=127.0.0.1:$(free_port)   # 9025 is taken on this machine
fi
mkdir -p "$WORK/spool"
cat > "$WORK/sluice.conf" <<CONF
[server]
listen = 127.0.0.1:$PORT
hostname = sluice.demo
spool_dir = $WORK/spool
max_message_size = 10M

[upstream]
servers = 127.0.0.1:$PF_PORT
xclient = yes

[stats]
listen = $STATS
CONF

say "starting sluice on 127.0.0.1:$PORT in front of Postfix"
"$SLUICE" --check -c "$WORK/sluice.conf"
"$SLUICE" -c "$WORK/sluice.conf" 2>"$WORK/sluice.log" &
SLUICE_PID=$!
for _ in $(seq 1 100); do
  grep -q "listening on 127.0.0.1:$PORT" "$WORK/sluice.log" 2>/dev/null && break
  kill -0 "$SLUICE_PID" 2>/dev/null || { cat "$WORK/sluice.log"; exit 1; }
  sleep 0.1
done

# outcome TITLE SWAKS-ARGS...: run swaks, show the dialogue and the final answer.
outcome() {
  local title=$1; shift
  say "$title"
  local out rc=0
  out=$(swaks --server "127.0.0.1:$PORT" --timeout 20 "$@" 2>&1) || rc=$?
  printf '%s\n' "$out" | sed 's/^/    /'
  local last
  last=$(printf '%s\n' "$out" | grep -E '^(<-|<\*\*) ' | grep -vE '^(<-|<\*\*) +(221|354)' | tail -n 1)
  echo "  => outcome: ${last:-no reply} (swaks exit $rc)"
}

outcome "1. a normal message" --from alice@example.com --to bob@example.net \
  --helo client.demo --header "Subject: hello through sluice" --body "A normal message."

outcome "2. a recipient the upstream refuses (Postfix's answer relayed)" \
  --from alice@example.com --to unknown@example.net --helo client.demo

# swaks --no-data-fixup sends the file as is plus one CRLF: so no final CRLF.
printf 'Subject: smuggling attempt\r\n\r\nfirst message\n.\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.' \
  > "$WORK/smuggle.eml"
outcome "3. an SMTP smuggling attempt (bare LF.LF inside DATA)" \
  --from mallory@example.com --to bob@example.net --helo client.demo \
  --no-data-fixup --data "@$WORK/smuggle.eml"

sleep 1
say "what Postfix delivered (expect exactly 1 message: #1)"
n=$(find "$PF_BASE/mail/Maildir/new" -type f 2>/dev/null | wc -l)
echo "  messages in the Maildir: $n"
for f in "$PF_BASE"/mail/Maildir/new/*; do
  [ -f "$f" ] || continue
  echo "  --- $f"; grep -E '^(Received: from|Subject:)' "$f" | sed 's/^/    /'
done
if grep -rqs "smuggled" "$PF_BASE/mail/Maildir/new"; then
  echo "  !! a smuggled message reached Postfix"
else
  echo "  no smuggled message reached Postfix"
fi

say "sluice's per-transaction log lines"
grep -E 'sid=.*verdict=' "$WORK/sluice.log" | sed 's/^/    /' || echo "    (none found)"

say "stats endpoint: curl http://$STATS/metrics | grep sluice_ (optional part)"
if metrics=$(curl -fsS --max-time 5 "http://$STATS/metrics" 2>/dev/null); then
  printf '%s\n' "$metrics" | grep '^sluice_' | head -n 30 | sed 's/^/    /' || echo "    (no sluice_ metrics yet)"
else
  echo "    stats endpoint not available in this build (skipped)"
fi

say "stopping sluice (SIGTERM) and Postfix"
kill -TERM "$SLUICE_PID"
wait "$SLUICE_PID" && echo "sluice exited 0" || echo "sluice exited $?"
SLUICE_PID=""
echo "demo finished"
