#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# demo.sh: the README's first Quick-start command. Installs what is missing,
# builds sluice and its plugins, starts a private Postfix on loopback as the
# upstream MTA, puts sluice in front of it with the bundled chain of
# contrib/sluice.conf (DKIM verify, virus, spam, rewrite, DKIM sign), sends a
# few real messages with swaks and shows what happened to each: the client's
# answer, what Postfix delivered, sluice's log lines and its stats endpoint.
# Everything runs on 127.0.0.1 and is stopped and removed on exit.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=/usr/bin/python3
JOBS=${JOBS:-2}

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (the private Postfix needs it): bash $0 as root" >&2
  exit 1
fi

say() { printf '\n\033[1m==== %s\033[0m\n' "$*"; }

if [ "${SKIP_DEPS:-0}" != 1 ]; then
  say "installing missing packages"
  bash contrib/scripts/install-deps.sh
fi

say "building sluice and its plugins (build/)"
cmake -S "$ROOT" -B "$ROOT/build" -DSLUICE_WERROR=ON >/dev/null
cmake --build "$ROOT/build" -j "$JOBS"
SLUICE="$ROOT/build/proxy/sluice"

say "checking the example configuration: sluice --check -c contrib/sluice.conf"
"$SLUICE" --check -c contrib/sluice.conf

WORK=$(mktemp -d /tmp/sluice-demo.XXXXXX)
chmod 755 "$WORK"
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

say "starting a private Postfix on loopback (the upstream MTA)"
read -r PF_BASE PF_PORT < <("$PY" "$ROOT/tests/integration/postfix.py" start)
echo "Postfix: 127.0.0.1:$PF_PORT, Maildir under $PF_BASE/mail/Maildir, XCLIENT allowed from 127.0.0.0/8"

say "demo data: a test virus database, a DKIM key pair (made now, never committed)"
mkdir -p "$WORK/clamav" "$WORK/dkim" "$WORK/spool" "$WORK/quarantine"
# The EICAR test string, assembled here so that no scanner flags this file.
EICAR="X5O!P%@AP[4\\PZX54(P^)7CC)7}\$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!\$H+H*"
printf '%s' "$EICAR" > "$WORK/eicar.com"
printf 'Demo.EICAR:0:*:%s\n' "$(od -An -tx1 -v "$WORK/eicar.com" | tr -d ' \n')" > "$WORK/clamav/demo.ndb"
echo "  $WORK/clamav/demo.ndb: 1 signature (Demo.EICAR)"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/dkim/demo.pem" 2>/dev/null
chmod 600 "$WORK/dkim/demo.pem"
PUB=$(openssl pkey -in "$WORK/dkim/demo.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
printf 'demo._domainkey.example.com v=DKIM1; k=rsa; p=%s\n' "$PUB" > "$WORK/dkim/keys.txt"
printf 'example.com demo %s rsa-sha256\n' "$WORK/dkim/demo.pem" > "$WORK/dkim/signing.table"
echo "  DKIM: example.com selector 'demo' (RSA-2048); sluice signs mail From: example.com"
# Demo rewrite rules: the shipped rules/rewrite.rules only touch mail from
# internal RFC 1918 clients, so add two visible ones for loopback clients.
cat "$ROOT/rules/rewrite.rules" > "$WORK/rewrite.rules"
cat >> "$WORK/rewrite.rules" <<'RULES'
# demo: a domain migration (envelope and To:) and a tag for outside senders
recipient /^(.+)@old\.example$/i $1@example.net headers
subject-tag [EXTERNAL] if not sender /@example\.com$/i
RULES
echo "  rewrite: recipients @old.example -> @example.net, [EXTERNAL] tag for senders outside example.com"

PORT=$(free_port)
STATS=127.0.0.1:9025
if "$PY" -c 'import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(("127.0.0.1",9025))!=0)'; then
  STATS=127.0.0.1:$(free_port)   # 9025 is taken on this machine
fi

# The demo's configuration is contrib/sluice.conf with these keys changed:
# ports, the demo data above, and no DNS for DKIM keys (keys_file).
"$PY" - "$ROOT/contrib/sluice.conf" "$WORK/sluice.conf" <<PYEOF
import re, sys
src, dst = sys.argv[1], sys.argv[2]
set_keys = {
    "server": {"listen": "127.0.0.1:$PORT", "hostname": "sluice.demo",
               "spool_dir": "$WORK/spool", "quarantine_dir": "$WORK/quarantine"},
    "upstream": {"servers": "127.0.0.1:$PF_PORT"},
    "stats": {"listen": "$STATS"},
    "plugin dkim_verify": {"keys_file": "$WORK/dkim/keys.txt"},
    "plugin virus": {"database": "$WORK/clamav", "reload_check": "0"},
    "plugin dkim_sign": {"signing_table": "$WORK/dkim/signing.table"},
    "plugin rewrite": {"rules": "$WORK/rewrite.rules"},
}
out, section, done = [], None, set()
def flush(sec):
    for k, v in set_keys.get(sec, {}).items():
        if (sec, k) not in done:
            out.append("%s = %s" % (k, v)); done.add((sec, k))
for line in open(src):
    line = line.rstrip("\n")
    m = re.match(r"^\[(.+)\]\s*$", line)
    if m:
        flush(section); section = m.group(1).strip()
    else:
        m = re.match(r"^([A-Za-z_]+)\s*=", line)
        if m and section in set_keys and m.group(1) in set_keys[section]:
            k = m.group(1)
            if (section, k) in done:
                continue
            line = "%s = %s" % (k, set_keys[section][k]); done.add((section, k))
    out.append(line)
flush(section)
open(dst, "w").write("\n".join(out) + "\n")
PYEOF

say "starting sluice on 127.0.0.1:$PORT in front of Postfix"
(cd "$ROOT" && "$SLUICE" --check -c "$WORK/sluice.conf")
(cd "$ROOT" && exec "$SLUICE" -c "$WORK/sluice.conf" 2>"$WORK/sluice.log") &
SLUICE_PID=$!
for _ in $(seq 1 100); do
  grep -q "listening on 127.0.0.1:$PORT" "$WORK/sluice.log" 2>/dev/null && break
  kill -0 "$SLUICE_PID" 2>/dev/null || { cat "$WORK/sluice.log"; exit 1; }
  sleep 0.1
done
grep -E "chain:" "$WORK/sluice.log" | sed 's/^.*info: /    /'

outcome() {
  local title=$1; shift
  say "$title"
  local out rc=0
  out=$(swaks --server "127.0.0.1:$PORT" --timeout 30 --helo client.demo "$@" 2>&1) || rc=$?
  printf '%s\n' "$out" | grep -E '^(<-|<\*\*|\*\*\*) ' | sed 's/^/    /'
  local last
  last=$(printf '%s\n' "$out" | grep -E '^(<-|<\*\*) ' | grep -vE '^(<-|<\*\*) +(221|354)' | tail -n 1)
  echo "  => outcome: ${last:-no reply} (swaks exit $rc)"
}

outcome "1. a normal message from example.com (verified, scanned, scored, DKIM-signed)" \
  --from alice@example.com --to bob@example.net \
  --header "Subject: quarterly report" --body "Hello Bob, the figures are attached as promised."

outcome "2. a recipient the upstream refuses (Postfix's own answer relayed)" \
  --from alice@example.com --to unknown@example.net

printf 'Subject: smuggling attempt\r\n\r\nfirst message\n.\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.' \
  > "$WORK/smuggle.eml"
outcome "3. an SMTP smuggling attempt (bare LF.LF inside DATA)" \
  --from mallory@example.org --to bob@example.net \
  --no-data-fixup --data "@$WORK/smuggle.eml"

GTUBE="XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
outcome "4. spam (the GTUBE test string): refused by the spam plugin" \
  --from spammer@example.org --to bob@example.net \
  --header "Subject: you won" --body "$GTUBE"

outcome "5. a virus (EICAR test file as an attachment): refused by the virus plugin" \
  --from mallory@example.org --to bob@example.net \
  --header "Subject: invoice" --body "see attachment" --attach "@$WORK/eicar.com"

"$PY" - "$WORK" <<'PYEOF'
import sys, dkim
work = sys.argv[1]
key = open(work + "/dkim/demo.pem", "rb").read()
msg = (b"From: carol@example.com\r\nTo: bob@example.net\r\nSubject: signed elsewhere\r\n"
       b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <demo-dkimpy@example.com>\r\n\r\n"
       b"This message was DKIM-signed by dkimpy before it reached sluice.\r\n")
sig = dkim.sign(msg, b"demo", b"example.com", key, include_headers=[b"from", b"to", b"subject", b"date"])
open(work + "/signed.eml", "wb").write(sig + msg)
PYEOF
outcome "6. a message already DKIM-signed by another implementation (dkimpy): dkim=pass" \
  --from carol@example.com --to bob@example.net --data "@$WORK/signed.eml"

outcome "7. an address rewrite: To bob@old.example, from outside example.com" \
  --from dave@partner.example --to bob@old.example \
  --header "Subject: meeting notes" --body "Notes from today's meeting."

sleep 1
say "what Postfix delivered (expect #1, #6 and #7)"
n=$(find "$PF_BASE/mail/Maildir/new" -type f 2>/dev/null | wc -l)
echo "  messages in the Maildir: $n"
for f in "$PF_BASE"/mail/Maildir/new/*; do
  [ -f "$f" ] || continue
  echo "  --- $(grep -m1 '^Subject:' "$f")"
  grep -E '^(Received: from|To:|Authentication-Results|X-Spam-|DKIM-Signature|X-Virus|X-Sluice)' "$f" \
    | cut -c1-110 | sed 's/^/    /'
done
if grep -rqs "smuggled" "$PF_BASE/mail/Maildir/new"; then
  echo "  !! a smuggled message reached Postfix"
else
  echo "  no smuggled message reached Postfix"
fi

say "sluice's per-transaction log lines (key=value, session id first)"
grep -E 'event=tx' "$WORK/sluice.log" | sed 's/^.*info: /    /' | cut -c1-230 || echo "    (none found)"

say "stats endpoint: curl http://$STATS/metrics (a few of the figures)"
if metrics=$(curl -fsS --max-time 5 "http://$STATS/metrics" 2>/dev/null); then
  printf '%s\n' "$metrics" | grep -E '^sluice_(transactions_total|messages_total|connections_total|plugin_verdicts_total|smtp_replies_total)' \
    | grep -v ' 0$' | head -n 30 | sed 's/^/    /'
  echo "  /readyz: $(curl -s -o /dev/null -w '%{http_code}' "http://$STATS/readyz")"
  echo "  latest decisions (GET /stats):"
  curl -fsS --max-time 5 "http://$STATS/stats" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
for r in d.get("decisions", [])[:6]:
    print("    %-10s %-12s plugin=%-8s score=%-7s %s" % (r.get("sid"), r.get("verdict"),
          r.get("plugin") or "-", r.get("score"), (r.get("reason") or "")[:60]))'
  echo "  dashboard: http://$STATS/ (open it in a browser while the demo runs)"
else
  echo "    stats endpoint not reachable"
fi

say "stopping sluice (SIGTERM) and Postfix"
kill -TERM "$SLUICE_PID"
wait "$SLUICE_PID" && echo "sluice exited 0" || echo "sluice exited $?"
SLUICE_PID=""
echo "demo finished"
