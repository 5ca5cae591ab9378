# SPDX-License-Identifier: GPL-2.0-or-later
"""rewrite plugin end to end: sluice with the rewrite plugin in front of a
recording fake upstream.

Each rule type is checked on what the upstream received: the envelope
(MAIL FROM / RCPT TO as sent) and the message, byte for byte. Also:
conditions (client network, sender, another plugin's score), `stop`,
reload (file change and SIGHUP, a broken file keeping the old rules),
`sluice --check` and sluice-rewrite-lint errors as FILE:LINE, non-ASCII
subjects (encoded words in and out), SRS forward and bounce, and a rewrite
into an invalid address (451 and a log line, nothing malformed upstream).
Loopback only; every wait is bounded.
"""

import os
import re
import signal
import subprocess
import time

import harness
import plugkit

REWRITE_SO = os.path.abspath(os.path.join(plugkit.BUILD, "plugins", "rewrite.so"))
SPAM_SO = os.path.abspath(os.path.join(plugkit.BUILD, "plugins", "spam.so"))
LINT = os.path.abspath(os.path.join(plugkit.BUILD, "bin", "sluice-rewrite-lint"))
SHIPPED = os.path.join(harness.SRC_DIR, "rules", "rewrite.rules")

MSG = (b"Received: from pc12.corp.example (pc12.corp.example [10.0.0.5])\r\n"
       b"\tby mx.corp.example; Mon, 6 May 2024 10:00:00 +0200\r\n"
       b"Received: from out.partner.example (out.partner.example [203.0.113.9])\r\n"
       b"\tby mx.corp.example; Mon, 6 May 2024 09:59:00 +0200\r\n"
       b"From: Alice Example <alice@old.example>\r\n"
       b"To: Bob <bob+lists@Example.NET>, \"Carol, C.\" <carol@example.net>\r\n"
       b"Cc: dave@old.example (Dave)\r\n"
       b"Subject: Lunch on Thursday\r\n"
       b"Date: Mon, 6 May 2024 10:00:00 +0200\r\n"
       b"Message-ID: <20240506100000.1234@old.example>\r\n"
       b"X-Originating-IP: [10.0.0.5]\r\n"
       b"User-Agent: Mutt/2.2\r\n"
       b"\r\n"
       b"Hi Bob,\r\n\r\nsee you at noon.\r\n.leading dot line\r\n")


def write(path, text):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, str(path))


def start(sluice_factory, fake, tmp_path, rules_text, extra=None, before=None, stats_port=None, **keys):
    rules = str(tmp_path / "rewrite.rules")
    write(rules, rules_text)
    k = {"rules": rules}
    k.update(keys)
    instances = list(before or []) + [("rewrite", REWRITE_SO, k)]
    stats = {"listen": "127.0.0.1:%d" % stats_port} if stats_port else None
    sl = plugkit.start(sluice_factory, fake, *instances, stats=stats)
    sl.rules_path = rules
    return sl


def deliver(sl, fake, n=1, **kw):
    kw.setdefault("body", MSG)
    d = plugkit.send(sl.port, **kw)
    assert d["eod"].code == 250, d
    return fake.wait_messages(n)[-1]


def test_header_rules_byte_exact(sluice_factory, fake, tmp_path):
    sl = start(sluice_factory, fake, tmp_path,
               "header add X-Scanned-By \"sluice rewrite\"\n"
               "strip-received 10.0.0.0/8\n"
               "header remove X-Originating-IP\n"
               "header remove User-Agent /^Mutt/\n"
               "header replace Message-ID /@old\\.example>$/ @new.example>\n"
               "header prepend Date \"\"\n"
               "subject-tag [EXTERNAL]\n"
               "header append Subject \" (via partner)\"\n")
    m = deliver(sl, fake)
    want = (b"Received: from out.partner.example (out.partner.example [203.0.113.9])\r\n"
            b"\tby mx.corp.example; Mon, 6 May 2024 09:59:00 +0200\r\n"
            b"From: Alice Example <alice@old.example>\r\n"
            b"To: Bob <bob+lists@Example.NET>, \"Carol, C.\" <carol@example.net>\r\n"
            b"Cc: dave@old.example (Dave)\r\n"
            b"Subject: [EXTERNAL] Lunch on Thursday (via partner)\r\n"
            b"Date: Mon, 6 May 2024 10:00:00 +0200\r\n"
            b"Message-ID: <20240506100000.1234@new.example>\r\n"
            b"X-Scanned-By: sluice rewrite\r\n"
            b"\r\n"
            b"Hi Bob,\r\n\r\nsee you at noon.\r\n.leading dot line\r\n")
    assert m.data == want, m.data
    assert m.mail_from == "sender@example.com" and m.rcpts == ["rcpt@example.net"]
    assert sl.wait_log(r"rewrite headers: 7 rules fired", timeout=5), sl.output()


def test_subject_tag_once_and_folding(sluice_factory, fake, tmp_path):
    sl = start(sluice_factory, fake, tmp_path, "subject-tag [EXTERNAL]\n")
    reply = MSG.replace(b"Subject: Lunch on Thursday", b"Subject: Re: [EXTERNAL] Lunch on Thursday")
    m = deliver(sl, fake, body=reply)
    assert m.data == reply, m.data          # already tagged: untouched, byte for byte
    long = MSG.replace(b"Subject: Lunch on Thursday",
                       b"Subject: The quarterly report for the northern region is attached, please review it")
    m = deliver(sl, fake, n=2, body=long)
    assert b"Subject: [EXTERNAL] The quarterly report for the northern region is attached,\r\n" \
           b" please review it\r\nDate:" in m.data, m.data
    assert m.data.replace(b"[EXTERNAL] The", b"The").replace(b"attached,\r\n please", b"attached, please") == long


def test_non_ascii_subjects(sluice_factory, fake, tmp_path):
    sl = start(sluice_factory, fake, tmp_path,
               "subject-tag [EXT]\n"
               "header replace X-Topic /^Invoice (\\d+)$/ \"Facture n\u00b0 $1\"\n"
               "header add X-Note \"v\u00e9rifi\u00e9\"\n")
    body = MSG.replace(b"Subject: Lunch on Thursday", b"Subject: =?UTF-8?B?Q2Fmw6kgYXUgbGFpdA==?=\r\nX-Topic: Invoice 42")
    m = deliver(sl, fake, body=body)
    h = plugkit.header_block(m.data)
    assert b"Subject: [EXT] =?UTF-8?B?Q2Fmw6kgYXUgbGFpdA==?=\r\n" in h, h
    assert b"X-Topic: Facture =?UTF-8?b?bsKw?= 42\r\n" in h, h
    assert b"X-Note: =?UTF-8?b?dsOpcmlmacOp?=\r\n" in h, h
    assert all(c < 0x80 for c in h)
    # An encoded subject that already carries the tag (decoded) is not tagged again.
    tagged = MSG.replace(b"Subject: Lunch on Thursday", b"Subject: =?UTF-8?Q?=5BEXT=5D_Caf=C3=A9?=")
    m = deliver(sl, fake, n=2, body=tagged)
    assert b"Subject: =?UTF-8?Q?=5BEXT=5D_Caf=C3=A9?=\r\n" in m.data, m.data
    assert b"[EXT] =?UTF-8?Q" not in m.data


def test_envelope_rules_and_headers_flag(sluice_factory, fake, tmp_path):
    write(tmp_path / "rcpt.map", "carol@example.net  carol.c@example.net\n@old.example  @new.example\n")
    sl = start(sluice_factory, fake, tmp_path,
               "sender /^(.+)@old\\.example$/ $1@new.example headers\n"
               "recipient strip-plus\n"
               "recipient lowercase-domain\n"
               "recipient map rcpt.map headers\n"
               "recipient /^.*@catch\\.example$/ inbox@catch.example\n")
    m = deliver(sl, fake, mail_from="alice@old.example",
                rcpts=("bob+lists@Example.NET", "carol@example.net", "dave@old.example", "x@catch.example",
                       "other@example.org"))
    assert m.mail_from == "alice@new.example"
    assert m.rcpts == ["bob@example.net", "carol.c@example.net", "dave@new.example", "inbox@catch.example",
                       "other@example.org"]
    want = MSG.replace(b"From: Alice Example <alice@old.example>", b"From: Alice Example <alice@new.example>") \
              .replace(b"\"Carol, C.\" <carol@example.net>", b"\"Carol, C.\" <carol.c@example.net>") \
              .replace(b"Cc: dave@old.example (Dave)", b"Cc: dave@new.example (Dave)")
    assert m.data == want, m.data
    # before -> after in the log, one line per rewrite
    for a, b in (("alice@old.example", "alice@new.example"), ("bob+lists@Example.NET", "bob@example.net"),
                 ("x@catch.example", "inbox@catch.example")):
        assert sl.wait_log(r"plugin=rewrite rewrite (sender|recipient) <%s> -> <%s>" % (re.escape(a), re.escape(b)),
                           timeout=5), sl.output()


def test_conditions(sluice_factory, fake, tmp_path):
    # The client is 127.0.0.1; the spam plugin ahead in the chain scores.
    spam_rules = tmp_path / "spam.rules"
    write(spam_rules, "header PILLS Subject =~ /pills/i\nscore PILLS 5\n")
    spam = ("spam", SPAM_SO, {"rules": str(spam_rules), "header_threshold": "off", "tag_threshold": "off",
                              "reject_threshold": "off"})
    sl = start(sluice_factory, fake, tmp_path,
               "header add X-Internal yes if client 127.0.0.0/8\n"
               "header add X-External yes if not client 127.0.0.0/8\n"
               "header add X-Partner yes if sender /@partner\\.example$/\n"
               "header add X-Sales yes if recipient /^sales@/\n"
               "header add X-Spammy yes if score >= 5\n"
               "header add X-Pills yes if symbol PILLS and header Subject /cheap/i\n"
               "recipient /^(.*)@example\\.net$/ $1@example.com if sender /@partner\\.example$/\n",
               before=[spam])
    m = deliver(sl, fake, mail_from="a@partner.example", rcpts=("sales@example.net",),
                body=b"Subject: cheap pills\r\n\r\nbuy\r\n")
    assert m.rcpts == ["sales@example.com"]
    assert m.data == (b"Subject: cheap pills\r\nX-Internal: yes\r\nX-Partner: yes\r\nX-Sales: yes\r\n"
                      b"X-Spammy: yes\r\nX-Pills: yes\r\n\r\nbuy\r\n"), m.data
    m = deliver(sl, fake, n=2, mail_from="a@elsewhere.example", rcpts=("bob@example.net",),
                body=b"Subject: hello\r\n\r\nhi\r\n")
    assert m.rcpts == ["bob@example.net"]
    assert m.data == b"Subject: hello\r\nX-Internal: yes\r\n\r\nhi\r\n", m.data


def test_stop(sluice_factory, fake, tmp_path):
    sl = start(sluice_factory, fake, tmp_path,
               "header add X-First yes\n"
               "stop if sender /@trusted\\.example$/\n"
               "recipient lowercase\n"
               "subject-tag [EXT]\n"
               "header remove X-Drop stop\n"
               "header add X-Last yes\n")
    body = b"Subject: s\r\nX-Drop: 1\r\n\r\nb\r\n"
    m = deliver(sl, fake, mail_from="a@trusted.example", rcpts=("BOB@example.net",), body=body)
    assert m.rcpts == ["BOB@example.net"]
    assert m.data == b"Subject: s\r\nX-Drop: 1\r\nX-First: yes\r\n\r\nb\r\n", m.data
    m = deliver(sl, fake, n=2, mail_from="a@other.example", rcpts=("BOB@example.net",), body=body)
    assert m.rcpts == ["bob@example.net"]
    assert m.data == b"Subject: [EXT] s\r\nX-First: yes\r\n\r\nb\r\n", m.data


def test_invalid_rewrite_is_tempfailed_and_logged(sluice_factory, fake, tmp_path):
    sl = start(sluice_factory, fake, tmp_path,
               "recipient /^(.*)@broken\\.example$/ $1@@broken.example\n"
               "sender /^(.*)@loop\\.example$/ $1..x@loop.example\n")
    d = plugkit.send(sl.port, rcpts=("bob@broken.example", "ok@example.net"))
    assert d["rcpt:bob@broken.example"].code == 451, d
    assert d["rcpt:bob@broken.example"].enh == "4.3.0", d
    assert d["rcpt:ok@example.net"].code == 250
    assert d["eod"].code == 250
    m = fake.wait_messages(1)[-1]
    assert m.rcpts == ["ok@example.net"]
    assert sl.wait_log(r"rewrite recipient <bob@broken\.example> -> <bob@@broken\.example> refused: not a valid "
                       r"address \(%s:1\)" % re.escape(sl.rules_path), timeout=5), sl.output()
    d = plugkit.send(sl.port, mail_from="a@loop.example")
    assert d["mail"].code == 451, d
    assert sl.wait_log(r"rewrite sender <a@loop\.example> -> <a\.\.x@loop\.example> refused", timeout=5)
    # nothing malformed ever reached the upstream
    for s in fake.sessions:
        for c in s.command_strs():
            assert "@@" not in c and ".." not in c, c


def test_srs_forward_and_bounce(sluice_factory, fake, tmp_path):
    sl = start(sluice_factory, fake, tmp_path,
               "sender srs fwd.example if not sender /@fwd\\.example$/\n"
               "recipient srs-reverse fwd.example\n",
               srs_secret="a-long-test-secret-0123456789")
    m = deliver(sl, fake, mail_from="alice@example.org", rcpts=("bob@example.net",))
    srs = m.mail_from
    assert re.match(r"^SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=example\.org=alice@fwd\.example$", srs), srs
    # The bounce to the SRS address goes back to the original sender.
    m = deliver(sl, fake, n=2, mail_from="", rcpts=(srs,))
    assert m.mail_from == "" and m.rcpts == ["alice@example.org"], m
    # A forged one is refused.
    forged = srs[:5] + ("A" if srs[5] not in "Aa" else "B") + srs[6:]
    d = plugkit.send(sl.port, mail_from="", rcpts=(forged,))
    assert d["rcpt:" + forged].code == 550, d


def test_reload_file_change_sighup_and_broken_file(sluice_factory, fake, tmp_path):
    sl = start(sluice_factory, fake, tmp_path, "header add X-Version one\n")
    m = deliver(sl, fake)
    assert b"X-Version: one\r\n" in m.data
    # A changed file is picked up (checked at most once a second).
    time.sleep(1.1)
    write(sl.rules_path, "header add X-Version two\n")
    time.sleep(1.1)
    m = deliver(sl, fake, n=2)
    assert b"X-Version: two\r\n" in m.data, m.data
    assert sl.wait_log(r"rules reloaded from", timeout=5)
    # A broken file is refused with FILE:LINE; the old rules stay.
    time.sleep(1.1)
    write(sl.rules_path, "header add X-Version three\nheader frob X-A\n")
    time.sleep(1.1)
    mark = len(sl.lines)
    m = deliver(sl, fake, n=3)
    assert b"X-Version: two\r\n" in m.data, m.data
    assert sl.wait_log(r"%s:2: header: unknown operation 'frob'" % re.escape(sl.rules_path), timeout=5,
                       start=mark), sl.output()
    assert sl.wait_log(r"keeping the previous rules", timeout=5, start=mark)
    # SIGHUP with the broken file: the new instance fails, the old one stays.
    mark = len(sl.lines)
    sl.signal(signal.SIGHUP)
    assert sl.wait_log(r"%s:2: header: unknown operation" % re.escape(sl.rules_path), timeout=5, start=mark)
    time.sleep(0.5)
    assert sl.alive()
    m = deliver(sl, fake, n=4)
    assert b"X-Version: two\r\n" in m.data, m.data
    # Fixed, then SIGHUP: the new rules (the watch is off to be sure it is the signal).
    write(sl.rules_path, "header add X-Version four\n")
    mark = len(sl.lines)
    sl.signal(signal.SIGHUP)
    assert sl.wait_log(r"rewrite rules from %s" % re.escape(sl.rules_path), timeout=5, start=mark)
    time.sleep(0.3)
    m = deliver(sl, fake, n=5)
    assert b"X-Version: four\r\n" in m.data, m.data


def check_config(tmp_path, rules, **keys):
    conf = str(tmp_path / "check.conf")
    sections = {"server": {"listen": "127.0.0.1:%d" % harness.free_port()},
                "upstream": {"servers": "127.0.0.1:%d" % harness.free_port()},
                "stats": {"listen": "no"}}
    k = {"rules": rules}
    k.update(keys)
    sections.update(plugkit.chain_sections(("rewrite", REWRITE_SO, k)))
    with open(conf, "w") as f:
        f.write(harness.render_config(sections))
    r = harness.run_sluice(["--check", "-c", conf])
    return r.returncode, r.stdout + r.stderr


def test_check_reports_rule_file_errors(tmp_path):
    rules = str(tmp_path / "bad.rules")
    write(tmp_path / "bad.map", "a@x.example b@y.example\nbroken line here\n")
    write(rules, "header add X-Ok yes\n"
                 "header replace Subject /(a)/ $2\n"
                 "sender /(.*)/ \"$1 x\"\n"
                 "recipient map bad.map\n"
                 "subject-tag [X] if client 999.1.1.1\n")
    rc, out = check_config(tmp_path, rules, match_limit="5", watch_rules="maybe")
    assert rc != 0, out
    assert "%s:2: replacement uses $2 but the pattern has 1 group" % rules in out, out
    assert "%s:3: replacement would make an invalid address" % rules in out, out
    assert "%s:2: want two fields" % str(tmp_path / "bad.map") in out, out
    assert "%s:5: bad network '999.1.1.1'" % rules in out, out
    assert "rule file %s has 4 errors" % rules in out, out
    assert "match_limit" in out and "watch_rules" in out, out


def test_check_srs_needs_secret(tmp_path):
    rules = str(tmp_path / "srs.rules")
    write(rules, "sender srs fwd.example\n")
    rc, out = check_config(tmp_path, rules)
    assert rc != 0 and "srs_secret" in out, out
    rc, out = check_config(tmp_path, rules, srs_secret="short")
    assert rc != 0 and "too short" in out, out
    rc, out = check_config(tmp_path, rules, srs_secret="a-long-test-secret-0123456789")
    assert rc == 0, out


def test_check_accepts_shipped_rules(tmp_path):
    rc, out = check_config(tmp_path, SHIPPED)
    assert rc == 0, out


def test_lint_tool(tmp_path):
    rules = str(tmp_path / "l.rules")
    write(rules, "header add X-A b\nfrob\nsender lowercase if header Subject /x/\n")
    r = subprocess.run([LINT, rules], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert "%s:2: unknown rule 'frob'" % rules in r.stderr, r.stderr
    assert "%s:3: envelope rules run before the message arrives" % rules in r.stderr, r.stderr
    r = subprocess.run([LINT, SHIPPED], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    # --test shows the rewritten envelope and message
    write(rules, "sender /@old\\.example$/ @new.example headers\nsubject-tag [EXT]\n")
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"From: a@old.example\nSubject: hi\n\nbody\n")
    r = subprocess.run([LINT, "--test", str(msg), "--from", "a@old.example", "--rcpt", "b@example.net", rules],
                       capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(b"MAIL FROM:<a@new.example>\nRCPT TO:<b@example.net>\n"
                             b"From: a@new.example\r\nSubject: [EXT] hi\r\n\r\nbody\r\n"), r.stdout


def test_metrics(sluice_factory, fake, tmp_path):
    port = harness.free_port()
    sl = start(sluice_factory, fake, tmp_path, "recipient lowercase\nsubject-tag [EXT]\n", stats_port=port)
    deliver(sl, fake, rcpts=("BOB@example.net",))
    m = plugkit.metrics(port)
    assert plugkit.metric_value(m, "sluice_plugin_rewrite_rewrites_total", {"what": "recipient"}) == 1, m
    assert plugkit.metric_value(m, "sluice_plugin_rewrite_rewrites_total", {"what": "header"}) == 1, m
