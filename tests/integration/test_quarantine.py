# SPDX-License-Identifier: GPL-2.0-or-later
"""The quarantine store end to end (issue 18): sluice in front of a real,
private Postfix, with the virus plugin (EICAR) and the spam plugin (a rule
that hits) quarantining mail; `sluice-quarantine` lists it with its
decision record, shows it (text decoded, control bytes made visible),
releases it exactly once through Postfix with the original envelope (the
Maildir file's Return-Path and Delivered-To), refuses a second release,
deletes (row and file), re-indexes an orphaned file; the daemon's sweep
expires old mail (tiny max_age); files are 0600; /metrics counts it all.
Loopback only; every wait is bounded."""

import http.client
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time

import pytest

import harness
import plugkit
from fakemta import HANG
from test_spam_plugin import SPAMMY, SPAM_SO
from test_virus_libclamav import LSAN_ENV, eicar, mail, make_db

QCLI = os.path.join(os.environ.get("SLUICE_BUILD_DIR", "build"), "proxy", "sluice-quarantine")


# Two rules that hit the phishing test message: the bundled rule set takes
# seconds to compile under the sanitizers, and these tests are about the
# quarantine, not the rules.
TINY_RULES = """\
header   SUBJECT_URGENT   Subject =~ /\\burgent\\b/i
score    SUBJECT_URGENT   2.0
describe SUBJECT_URGENT   Subject says urgent
body     PHISH_SUSPENDED  /\\byour\\s+account\\s+has\\s+been\\s+suspended/i
score    PHISH_SUSPENDED  2.0
describe PHISH_SUSPENDED  Says your account is suspended
"""


def start(sluice_factory, postfix, tmp_path, server=None, stats=None, upstream=None):
    qdir = tmp_path / "quarantine"
    qdir.mkdir(mode=0o700)
    db = make_db(tmp_path / "db")
    rules = tmp_path / "tiny.rules"
    rules.write_text(TINY_RULES)
    srv = {"quarantine_dir": str(qdir)}
    srv.update(server or {})
    sections = {"chain": {"plugins": "virus spam"},
                "plugin virus": {"path": "virus", "database": db, "action": "quarantine"},
                "plugin spam": {"path": SPAM_SO, "rules": str(rules), "quarantine_threshold": "1",
                                "reject_threshold": "100"}}
    s = sluice_factory(postfix.port, extra_sections=sections, server=srv, stats=stats,
                       upstream=upstream, env=LSAN_ENV)
    s.qdir = str(qdir)
    return s


def qcli(s, *args, timeout=30):
    return subprocess.run([QCLI, "-c", s.config_path] + list(args), capture_output=True,
                          text=True, timeout=timeout)


def listing(s, *args):
    r = qcli(s, "list", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_listed(s, n, *args, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = listing(s, *args)
        if got["total"] >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def send(s, sender, rcpts, body):
    d = plugkit.send(s.port, mail_from=sender, rcpts=rcpts, body=body)
    assert d["eod"].code == 250, d
    return d


def test_spam_and_virus_listed_released_once(postfix, sluice_factory, tmp_path):
    stats_port = harness.free_port()
    s = start(sluice_factory, postfix, tmp_path, stats={"listen": "127.0.0.1:%d" % stats_port},
              server={"quarantine_sweep_interval": "1s"})
    before = postfix.mail_files()
    send(s, "spammer@example.com", ["victim@example.net", "other@example.net"], SPAMMY)
    send(s, "infected@example.com", ["rcpt@example.net"], mail([("eicar.com", eicar())]))
    got = wait_listed(s, 2)
    assert got["total"] == 2, got
    # nothing reached Postfix
    time.sleep(0.5)
    assert postfix.mail_files() == before

    by_plugin = {m["plugin"]: m for m in got["messages"]}
    assert set(by_plugin) == {"spam", "virus"}, got
    sp, vi = by_plugin["spam"], by_plugin["virus"]
    assert sp["sender"] == "spammer@example.com"
    assert sp["rcpts"] == ["victim@example.net", "other@example.net"]
    assert sp["score"] >= 1 and sp["symbols"], sp
    assert sp["record"]["verdict"] == "quarantined" and sp["record"]["plugin"] == "spam"
    assert sp["record"]["helo"] == "client.test" and sp["client"] == "127.0.0.1"
    assert vi["sender"] == "infected@example.com" and vi["rcpts"] == ["rcpt@example.net"]
    # the virus plugin names no reason for a quarantine (its log line has
    # the signature); the held message is the one with the attachment
    shown = qcli(s, "show", str(vi["id"]))
    assert shown.returncode == 0 and "plugin: virus" in shown.stdout, shown
    assert "name=eicar.com" in shown.stdout, shown.stdout
    # filters
    assert [m["id"] for m in listing(s, "--plugin", "virus")["messages"]] == [vi["id"]]
    assert [m["id"] for m in listing(s, "--sender", "SPAMMER@")["messages"]] == [sp["id"]]
    assert [m["id"] for m in listing(s, "--rcpt", "other@")["messages"]] == [sp["id"]]
    assert listing(s, "--since", "1h", "--until", "2099-01-01")["total"] == 2
    assert listing(s, "--until", "2000-01-01")["total"] == 0
    table = qcli(s, "list")
    assert table.returncode == 0 and "spammer@example.com" in table.stdout, table
    # files and index are the service's only
    for f in os.listdir(s.qdir):
        if f.endswith(".eml") or f == "index.db":
            assert stat.S_IMODE(os.stat(os.path.join(s.qdir, f)).st_mode) == 0o600, f

    # two releases of the spam message at once: one wins, one is refused
    results = []

    def rel():
        results.append(qcli(s, "release", str(sp["id"])))
    ts = [threading.Thread(target=rel) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 4], [(r.returncode, r.stdout, r.stderr) for r in results]
    assert any("not held" in r.stderr for r in results), results
    files = postfix.wait_mail(2, before=before)
    assert len(files) == 2, postfix.log_tail()
    seen = set()
    for f in files:
        raw = open(f, "rb").read()
        assert b"Return-Path: <spammer@example.com>" in raw, raw[:400]
        m = re.search(rb"Delivered-To: (\S+)", raw)
        seen.add(m.group(1).decode())
        assert b"X-Sluice-" not in raw, raw[:600]
        assert b"URGENT: YOUR ACCOUNT" in raw
    assert seen == {"victim@example.net", "other@example.net"}
    # a third release is refused, nothing delivered twice
    r = qcli(s, "release", str(sp["id"]))
    assert r.returncode == 4 and "released" in r.stderr, r
    time.sleep(1.0)
    assert len([p for p in postfix.mail_files() if p not in before]) == 2
    row = listing(s, "--status", "released")["messages"]
    assert [m["id"] for m in row] == [sp["id"]] and "queued as" in row[0]["note"], row
    assert not os.path.exists(sp["path"])
    shown = qcli(s, "show", str(sp["id"]))
    assert shown.returncode == 0 and "status: released" in shown.stdout, shown

    # the virus message to another address only (--to)
    before2 = postfix.mail_files()
    r = qcli(s, "release", str(vi["id"]), "--to", "abuse@example.net")
    assert r.returncode == 0, r
    f = postfix.wait_mail(1, before=before2)
    assert len(f) == 1
    raw = open(f[0], "rb").read()
    assert b"Delivered-To: abuse@example.net" in raw and b"Return-Path: <infected@example.com>" in raw

    # metrics: held by the daemon; the index's counts from the sweep
    deadline = time.monotonic() + 5
    while True:
        c = http.client.HTTPConnection("127.0.0.1", stats_port, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        if 'sluice_quarantine_messages{status="released"} 2' in text or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert 'sluice_quarantine_events_total{event="held"} 2' in text, text
    assert 'sluice_quarantine_messages{status="released"} 2' in text, text
    assert 'sluice_quarantine_messages{status="held"} 0' in text, text


def test_show_delete_reindex(postfix, sluice_factory, tmp_path):
    s = start(sluice_factory, postfix, tmp_path)
    body = (b"From: \"PayPal Security Team\" <paypal.security.7731@gmail.com>\r\n"
            b"To: undisclosed-recipients:;\r\n"
            b"Subject: URGENT: YOUR ACCOUNT HAS BEEN SUSPENDED!!!\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"Dear Customer, your account has been suspended. Click here to log in and verify"
            b" your account: http://203.0.113.9/webscr-login.php\r\n"
            b"color \x1b[31mred=C3=A9\r\n<script>alert(1)</script>\r\n")
    send(s, "x@example.com", ["y@example.net"], body)
    got = wait_listed(s, 1)
    assert got["total"] == 1, got
    m = got["messages"][0]
    r = qcli(s, "show", str(m["id"]))
    assert r.returncode == 0, r
    assert "sender: <x@example.com>" in r.stdout
    assert "plugin: spam" in r.stdout
    assert re.search(r"^Subject: .*URGENT: YOUR ACCOUNT", r.stdout, re.M), r.stdout
    assert "\x1b" not in r.stdout and "\\x1b[31mredé" in r.stdout, r.stdout
    assert "<script>alert(1)</script>" in r.stdout  # shown as text, never run
    assert qcli(s, "show", "999999").returncode == 3

    # delete: the row leaves the held list, the file goes
    r = qcli(s, "delete", str(m["id"]))
    assert r.returncode == 0, r
    assert not os.path.exists(m["path"])
    assert listing(s)["total"] == 0
    assert [x["id"] for x in listing(s, "--status", "deleted")["messages"]] == [m["id"]]
    assert qcli(s, "delete", str(m["id"])).returncode == 4
    assert qcli(s, "release", str(m["id"])).returncode == 4

    # an orphaned file (its index write failed) comes back with reindex
    send(s, "orphan@example.com", ["z@example.net"], SPAMMY)
    got = wait_listed(s, 1)
    src = got["messages"][0]["path"]
    orphan = os.path.join(s.qdir, "1700000000-orphan.eml")
    shutil.copy(src, orphan)
    os.chmod(orphan, 0o600)
    r = qcli(s, "reindex")
    assert r.returncode == 0 and "1 files indexed" in r.stdout, r
    got = listing(s, "--sender", "orphan@")
    assert got["total"] == 2, got
    old = [x for x in got["messages"] if x["path"] == orphan][0]
    assert old["time"] == 1700000000 and old["plugin"] == "spam" and old["rcpts"] == ["z@example.net"]
    assert old["symbols"], old
    assert qcli(s, "reindex").stdout.startswith("sluice-quarantine: 0 files indexed")
    # purge --older-than: the 2023 one goes, today's stays
    r = qcli(s, "purge", "--older-than", "1d")
    assert r.returncode == 0 and "purged 1 messages" in r.stdout, r
    assert not os.path.exists(orphan)
    assert listing(s, "--sender", "orphan@")["total"] == 1


def test_sweep_expires_old_mail(postfix, sluice_factory, tmp_path):
    s = start(sluice_factory, postfix, tmp_path,
              server={"quarantine_max_age": "1h", "quarantine_sweep_interval": "1s"})
    send(s, "old@example.com", ["y@example.net"], SPAMMY)
    got = wait_listed(s, 1, "--status", "all")
    assert got["total"] == 1, got
    path = got["messages"][0]["path"]
    time.sleep(2.5)  # sweeps ran: an hour is not up
    assert listing(s)["total"] == 1
    # a reload makes the limit tiny: the next sweeps expire it
    s.sections["server"]["quarantine_max_age"] = "1s"
    s.write_config()
    s.signal(signal.SIGHUP)
    assert s.wait_log(r"configuration reloaded", timeout=10), s.output()
    assert s.wait_log(r"quarantine sweep: expired 1 message", timeout=10), s.output()
    got = listing(s, "--status", "expired")
    assert got["total"] == 1, got
    assert not os.path.exists(path)
    assert listing(s)["total"] == 0


def test_check_reports_bad_quarantine_keys(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:2525\nquarantine_max_age = forever\n"
                    "quarantine_sweep_interval = 0\n[upstream]\nservers = 127.0.0.1:25\n")
    r = harness.run_sluice(["--check", "-c", str(conf)])
    assert r.returncode != 0
    assert re.search(r"bad\.conf:3: .*quarantine_max_age", r.stderr + r.stdout), r.stderr
    assert re.search(r"bad\.conf:4: .*quarantine_sweep_interval", r.stderr + r.stdout), r.stderr


def test_index_failure_keeps_the_message(postfix, sluice_factory, tmp_path):
    stats_port = harness.free_port()
    s = start(sluice_factory, postfix, tmp_path, stats={"listen": "127.0.0.1:%d" % stats_port})
    # an index that cannot be opened (a directory where the database goes)
    os.mkdir(os.path.join(s.qdir, "index.db"))
    send(s, "kept@example.com", ["y@example.net"],
         SPAMMY + b".leading dot\r\n..two dots\r\n.\r\nlast")
    assert s.wait_log(r"quarantine index: cannot add .*\.eml \(the file is kept; run "
                      r"sluice-quarantine reindex\)", timeout=10), s.output()
    files = [f for f in os.listdir(s.qdir) if f.endswith(".eml")]
    assert len(files) == 1
    c = http.client.HTTPConnection("127.0.0.1", stats_port, timeout=5)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    assert 'sluice_quarantine_events_total{event="index_error"} 1' in text, text
    assert qcli(s, "list").returncode == 1
    # the admin repairs the index: the message comes back
    os.rmdir(os.path.join(s.qdir, "index.db"))
    r = qcli(s, "reindex")
    assert r.returncode == 0 and "1 files indexed" in r.stdout, r
    got = listing(s)
    assert got["total"] == 1 and got["messages"][0]["sender"] == "kept@example.com", got
    assert got["messages"][0]["plugin"] == "spam"
    # released as it was held: dots survive both ways, no line is lost
    before = postfix.mail_files()
    r = qcli(s, "release", str(got["messages"][0]["id"]))
    assert r.returncode == 0, r
    f = postfix.wait_mail(1, before=before)
    assert f, postfix.log_tail()
    raw = open(f[0], "rb").read()
    assert raw.endswith(b"\n.leading dot\n..two dots\n.\nlast\n"), raw[-200:]


def test_message_own_xsluice_headers_are_not_the_envelope(postfix, sluice_factory, tmp_path):
    """A message that starts with X-Sluice-* header fields of its own: after
    the index is rebuilt from the file they do not add recipients or change
    the sender (a client could have the quarantine relay to anyone), and a
    release delivers them as part of the message, to the real recipient
    only."""
    s = start(sluice_factory, postfix, tmp_path)
    os.mkdir(os.path.join(s.qdir, "index.db"))  # the index write fails: reindex later
    own = (b"X-Sluice-Envelope-To: <evil@example.net>\r\n"
           b"X-Sluice-Envelope-From: <spoof@example.com>\r\n"
           b"X-Sluice-Decision: {\"plugin\":\"none\"}\r\n")
    send(s, "real@example.com", ["y@example.net"], own + SPAMMY)
    assert s.wait_log(r"quarantine index: cannot add", timeout=10), s.output()
    os.rmdir(os.path.join(s.qdir, "index.db"))
    assert qcli(s, "reindex").returncode == 0
    got = listing(s)
    assert got["total"] == 1, got
    m = got["messages"][0]
    assert m["sender"] == "real@example.com" and m["rcpts"] == ["y@example.net"], m
    assert m["plugin"] == "spam", m
    before = postfix.mail_files()
    r = qcli(s, "release", str(m["id"]))
    assert r.returncode == 0, r
    f = postfix.wait_mail(1, before=before)
    assert len(f) == 1, f
    raw = open(f[0], "rb").read()
    assert b"X-Sluice-Envelope-To: <evil@example.net>" in raw, raw[:600]
    assert b"Delivered-To: y@example.net" in raw, raw[:600]
    assert b"Return-Path: <real@example.com>" in raw, raw[:600]
    time.sleep(1)
    assert len(postfix.mail_files()) == len(before) + 1  # nothing to evil@


def test_release_normalises_bare_cr_and_lf(fake, sluice_factory, tmp_path):
    """A held message stored byte for byte (BDAT BODY=BINARYMIME keeps bare
    CR and LF) is released over DATA with every line end CRLF and every
    line-leading dot doubled: a bare CR before a dot must not let an
    upstream that ends lines at CR see the end of the data."""
    s = start(sluice_factory, fake, tmp_path)
    body = b"Subject: raw\r\n\r\nline\r.\rsmuggled\n.\nlf\r\n.\r\ncrlf\rend\r"
    with open(os.path.join(s.qdir, "1700000000-00000001.eml"), "wb") as f:
        f.write(b"X-Sluice-Quarantine: sid=00000001 client=192.0.2.1\r\n"
                b"X-Sluice-Envelope-From: <a@example.com>\r\n"
                b"X-Sluice-Envelope-To: <b@example.net>\r\n"
                b"X-Sluice-Decision: {\"plugin\":\"spam\"}\r\n" + body)
    os.chmod(os.path.join(s.qdir, "1700000000-00000001.eml"), 0o600)
    assert qcli(s, "reindex").returncode == 0
    mid = str(listing(s)["messages"][0]["id"])
    r = qcli(s, "release", mid)
    assert r.returncode == 0, r
    msgs = fake.wait_messages(1)
    assert len(msgs) == 1, msgs
    assert msgs[0].raw == (b"Subject: raw\r\n\r\nline\r\n..\r\nsmuggled\r\n..\r\nlf\r\n"
                           b"..\r\ncrlf\r\nend\r\n.\r\n"), msgs[0].raw


def test_release_failures_keep_or_hold_the_row(fake, sluice_factory, tmp_path):
    """Against a scripted MTA: a refusal or a temporary failure after the
    data leaves the message held (exit 5, the MTA's reply shown); no reply
    after the final dot leaves it releasing (exit 6), after which a plain
    or forced release sends nothing (exit 4) and the MTA saw one copy."""
    s = start(sluice_factory, fake, tmp_path, upstream={"data_timeout": "1s"})
    send(s, "a@example.com", ["b@example.net"], SPAMMY)
    got = wait_listed(s, 1)
    mid = str(got["messages"][0]["id"])
    for reply in ("554 5.7.1 refused by policy", "451 4.3.0 try later"):
        fake.faults["EOD"] = reply
        r = qcli(s, "release", mid)
        assert r.returncode == 5 and reply in r.stderr, r
        assert [m["status"] for m in listing(s, "--status", "all")["messages"]] == ["held"]
    fake.faults["EOD"] = "550 5.1.1 no such user"
    fake.faults["RCPT"] = "550 5.1.1 no such user"
    r = qcli(s, "release", mid)
    assert r.returncode == 5 and "550 5.1.1" in r.stderr, r
    del fake.faults["RCPT"]
    fake.faults["EOD"] = HANG
    t0 = time.monotonic()
    r = qcli(s, "release", mid)
    assert r.returncode == 6 and "no reply" in r.stderr, r
    assert time.monotonic() - t0 < 10
    row = listing(s, "--status", "all")["messages"][0]
    assert row["status"] == "releasing", row
    assert os.path.exists(row["path"])
    for extra in ([], ["--force"]):
        r = qcli(s, "release", mid, *extra)
        assert r.returncode == 4 and "releasing" in r.stderr, r
    assert qcli(s, "delete", mid).returncode == 4
    sent = [m for m in fake.all_messages if m.mail_from == "a@example.com"]
    assert len(sent) == 3, sent   # 554, 451, and the unanswered one
    assert all(m.rcpts == ["b@example.net"] for m in sent)
    assert all(not m.data.startswith(b"X-Sluice-") for m in sent)
