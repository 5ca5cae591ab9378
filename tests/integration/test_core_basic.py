# SPDX-License-Identifier: GPL-2.0-or-later
"""End-to-end basics: one message (swaks, smtplib), many transactions per
session, RSET, pipelining (incl. past DATA), command sequence and syntax,
address forms, the per-transaction log line, and the CLI."""

import re
import smtplib
import socket
import threading
import time

import pytest

import harness
from harness import Client, transaction

MSG = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: hello\r\n\r\nbody line 1\r\nbody line 2\r\n"


def open_session(sl, name="client.test"):
    c = Client(sl.port)
    c.greeting()
    c.ehlo(name)
    return c


# ---- one message ---------------------------------------------------------
def test_one_message_smtplib(fake, sluice):
    refused = harness.smtp_send(sluice.port, "a@example.com", ["b@example.net"], MSG)
    assert refused == {}
    msgs = fake.wait_messages(1)
    assert len(msgs) == 1
    m = msgs[0]
    assert m.mail_from == "a@example.com"
    assert m.rcpts == ["b@example.net"]
    # Exactly the bytes the client sent, canonical CRLF, nothing added.
    assert m.data == MSG


def test_one_message_swaks(fake, sluice):
    r = harness.swaks("--server", "127.0.0.1:%d" % sluice.port, "--from", "a@example.com",
                      "--to", "b@example.net,c@example.net", "--helo", "swaks.test",
                      "--header", "Subject: via swaks", "--body", "swaks body")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"<- {2}250 ", r.stdout), r.stdout
    m = fake.wait_messages(1)[0]
    assert m.rcpts == ["b@example.net", "c@example.net"]
    assert b"Subject: via swaks" in m.data and b"swaks body" in m.data


def test_ehlo_advertises_extensions(sluice):
    with Client(sluice.port) as c:
        g = c.greeting()
        assert "sluice.test" in g.text
        r = c.ehlo()
        kws = [ln.split(" ")[0].upper() for ln in r.lines[1:]]
        for want in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES"):
            assert want in kws, r
        # No TLS configured: STARTTLS must not be offered.
        assert "STARTTLS" not in kws
        c.expect("QUIT", 221, "2.0.0")
        assert c.is_closed()


# ---- many transactions ---------------------------------------------------
def test_many_transactions_one_session_with_rset(fake, sluice):
    with open_session(sluice) as c:
        for i in range(3):
            r = transaction(c, "s%d@example.com" % i, ["r%d@example.net" % i],
                            b"Subject: n%d\r\n\r\nmessage %d\r\n" % (i, i))
            assert r.code == 250, r
            c.expect("RSET", 250, "2.0.0")
        # A transaction abandoned by RSET is not delivered.
        c.expect("MAIL FROM:<dropped@example.com>", 250)
        c.expect("RCPT TO:<x@example.net>", 250)
        c.expect("RSET", 250)
        r = transaction(c, "last@example.com", ["r@example.net"])
        assert r.code == 250
        c.expect("QUIT", 221)
    msgs = fake.wait_messages(4)
    assert [m.mail_from for m in msgs] == ["s0@example.com", "s1@example.com",
                                           "s2@example.com", "last@example.com"]
    assert [m.data for m in msgs[:3]] == [b"Subject: n%d\r\n\r\nmessage %d\r\n" % (i, i)
                                          for i in range(3)]
    # The upstream connection is reused for the whole client session.
    assert len(fake.tx_sessions) == 1
    assert "RSET" in fake.tx_sessions[0].verbs()


def test_smtplib_several_messages_and_recipients(fake, sluice):
    with smtplib.SMTP("127.0.0.1", sluice.port, timeout=15) as s:
        s.ehlo("client.test")
        for i in range(5):
            s.sendmail("a@example.com", ["x@example.net", "y@example.net"],
                       b"Subject: %d\r\n\r\n%d\r\n" % (i, i))
    msgs = fake.wait_messages(5)
    assert len(msgs) == 5
    assert all(m.rcpts == ["x@example.net", "y@example.net"] for m in msgs)


# ---- pipelining ------------------------------------------------------------
def test_pipelining_envelope_in_one_write(fake, sluice):
    with open_session(sluice) as c:
        c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n"
               "RCPT TO:<c@example.net>\r\nDATA\r\n")
        got = [r.code for r in c.replies(4)]
        assert got == [250, 250, 250, 354]
        c.send(b"Subject: p\r\n\r\npipelined\r\n.\r\n")
        assert c.reply().code == 250
    m = fake.wait_messages(1)[0]
    assert m.rcpts == ["b@example.net", "c@example.net"]


def test_pipelining_past_data_354(fake, sluice):
    with open_session(sluice) as c:
        c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
               "Subject: all at once\r\n\r\nline\r\n.\r\n"
               "MAIL FROM:<second@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
               "Subject: two\r\n\r\nline2\r\n.\r\nQUIT\r\n")
        got = [(r.code, r.enh) for r in c.replies(9)]
        assert [g[0] for g in got] == [250, 250, 354, 250, 250, 250, 354, 250, 221], got
        assert c.is_closed()
    msgs = fake.wait_messages(2)
    assert [m.data for m in msgs] == [b"Subject: all at once\r\n\r\nline\r\n",
                                      b"Subject: two\r\n\r\nline2\r\n"]


def test_pipelining_past_data_554(fake_factory, sluice_factory):
    """DATA refused (no valid recipient): the pipelined message lines are
    commands, each gets an error, nothing is delivered, replies stay in order."""
    up = fake_factory(faults={"RCPT": "550 5.1.1 <nobody@example.net>: no such user"})
    sl = sluice_factory(up.port)
    with open_session(sl) as c:
        c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<nobody@example.net>\r\nDATA\r\n"
               "Subject: x\r\n.\r\nQUIT\r\n")
        r = c.replies(3)
        assert [x.code for x in r] == [250, 550, 554], r
        assert r[1].text == "5.1.1 <nobody@example.net>: no such user"
        assert r[2].enh == "5.5.1"
        rest = []
        try:
            while True:
                rest.append(c.reply(timeout=5))
                if rest[-1].code in (221, 421):
                    break
        except harness.ConnectionClosed:
            pass
        assert rest and rest[-1].code in (221, 421), rest
        assert all(x.code >= 400 for x in rest[:-1]), rest
    assert fake_messages_none(up)
    assert "DATA" not in up.tx_sessions[0].verbs()


def fake_messages_none(up, wait=0.5):
    import time
    time.sleep(wait)
    return up.all_messages == []


# ---- the end of a session --------------------------------------------------
def _read_to_eof(sock, timeout=15.0):
    """Everything the server sends until its orderly close. A reset raises
    (ConnectionResetError) and so fails the test: replies could be lost."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        b = sock.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


@pytest.mark.parametrize("noops,slow_reader", [(0, False), (3, False), (20000, True)])
def test_quit_every_reply_then_orderly_close(fake_factory, sluice_factory, noops, slow_reader):
    """After QUIT the client reads every reply, 221 last, then the server's
    FIN, never a reset: for a plain session, and for a client with a small
    window that sends 20,000 NOOPs before it starts reading (280 kB of
    replies for sluice to hold back and send before it closes)."""
    fake = fake_factory()
    sl = sluice_factory(fake.port, server={"junk_command_limit": "100000"})
    for _ in range(1 if slow_reader else 20):
        s = socket.socket()
        sender = None
        try:
            if slow_reader:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", sl.port))
            script = b"EHLO client.test\r\n" + b"NOOP\r\n" * noops + b"QUIT\r\n"
            # A thread sends while this one reads (late): one thread doing
            # both would stall once sluice stops reading to let its replies
            # drain.
            sender = threading.Thread(target=s.sendall, args=(script,), daemon=True)
            sender.start()
            if slow_reader:
                time.sleep(0.5)
            lines = _read_to_eof(s).split(b"\r\n")
            sender.join(10)
            assert not sender.is_alive()
        finally:
            s.close()
        assert lines[-1] == b"", lines[-3:]
        finals = [ln for ln in lines if ln[:4] in (b"220 ", b"250 ", b"221 ")]
        assert finals[0].startswith(b"220 "), finals[:2]
        assert finals[1].startswith(b"250 "), finals[:2]  # EHLO's last line
        assert finals[2:-1] == [b"250 2.0.0 Ok"] * noops, (len(finals), finals[-3:])
        assert finals[-1].startswith(b"221 2.0.0"), finals[-2:]


# ---- sequence, unknown, syntax -------------------------------------------
@pytest.mark.parametrize("script", [
    # (command, want code, want enhanced code)
    [("RCPT TO:<b@example.net>", 503, "5.5.1")],
    [("DATA", 503, "5.5.1")],
    [("MAIL FROM:<a@example.com>", 250, None), ("MAIL FROM:<a@example.com>", 503, "5.5.1")],
    [("MAIL FROM:<a@example.com>", 250, None), ("DATA", 554, "5.5.1")],
    [("FROB", 500, "5.5.1")],
    [("MAIL FROM:<a@example.com", 501, "5.1.7")],
    [("MAIL FROM:<a b@example.com>", 501, "5.1.7")],
    [("MAIL FROM:<a@example.com>", 250, None), ("RCPT TO:<b@example.net", 501, "5.1.3")],
    [("MAIL FROM:<a@example.com>", 250, None), ("RCPT TO:<>", 501, "5.1.3")],
    [("VRFY postmaster", 252, "2.1.5")],
    [("NOOP", 250, "2.0.0")],
    [("HELP", 214, None)],
    [("RSET", 250, "2.0.0")],
], ids=lambda s: " / ".join(x[0] for x in s))
def test_command_table(sluice, script):
    with open_session(sluice) as c:
        for line, code, enh in script:
            c.expect(line, code, enh)
        c.expect("QUIT", 221, "2.0.0")


def test_mail_before_ehlo_is_bad_sequence(sluice):
    with Client(sluice.port) as c:
        c.greeting()
        c.expect("MAIL FROM:<a@example.com>", 503, "5.5.1")
        c.expect("HELO client.test", 250)
        c.expect("MAIL FROM:<a@example.com>", 250)


@pytest.mark.parametrize("sent,upstream_from", [
    ("MAIL FROM:<>", ""),
    ("MAIL FROM:<@relay1.example,@relay2.example:user@example.com>", "user@example.com"),
    ('MAIL FROM:<"john q. doe"@example.com>', '"john q. doe"@example.com'),
    ('MAIL FROM:<"odd\\"quote"@example.com>', '"odd\\"quote"@example.com'),
    ("mail from:<Mixed.Case@Example.COM>", "Mixed.Case@Example.COM"),
], ids=["null", "source-route", "quoted", "quoted-escape", "lowercase-verb"])
def test_sender_forms(fake, sluice, sent, upstream_from):
    with open_session(sluice) as c:
        c.expect(sent, 250)
        c.expect('RCPT TO:<"rcpt with space"@example.net>', 250)
        c.expect("DATA", 354)
        c.send(b"Subject: f\r\n\r\nx\r\n.\r\n")
        assert c.reply().code == 250
    m = fake.wait_messages(1)[0]
    assert m.mail_from == upstream_from
    assert m.rcpts == ['"rcpt with space"@example.net']


def test_source_route_in_rcpt_ignored(fake, sluice):
    with open_session(sluice) as c:
        c.expect("MAIL FROM:<a@example.com>", 250)
        c.expect("RCPT TO:<@hop.example:b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(b"x\r\n.\r\n")
        assert c.reply().code == 250
    assert fake.wait_messages(1)[0].rcpts == ["b@example.net"]


# ---- log line ----------------------------------------------------------------
def test_transaction_log_line(fake, sluice):
    body = b"Subject: log\r\n\r\n" + (b"x" * 498 + b"\r\n") * 2
    with open_session(sluice, "helo.example") as c:
        assert transaction(c, "log@example.com", ["r1@example.net", "r2@example.net"],
                           body).code == 250
        c.expect("QUIT", 221)
    tx = sluice.wait_transactions(1)
    assert len(tx) >= 1, sluice.output()
    t = tx[0]
    # log.c prefixes "TIMESTAMP LEVEL: "; the message itself starts with sid=.
    assert re.search(r"(^|: )sid=\S+ ", t["_line"]), t["_line"]
    assert t.get("client", "").startswith("127.0.0.1"), t
    assert t.get("helo") == "helo.example", t
    assert t.get("from") == "<log@example.com>", t
    assert t.get("rcpts") == "2", t
    assert int(t.get("size", "-1")) in (len(body), len(body) + 3), t   # with or without "."
    assert t.get("verdict") == "accepted", t
    assert t.get("upstream", "").startswith("250"), t
    assert "tls" in t and "duration" in t, t


def test_log_line_rejected_verdict(fake_factory, sluice_factory):
    up = fake_factory(faults={"EOD": "554 5.7.1 content rejected by upstream"})
    sl = sluice_factory(up.port)
    with open_session(sl) as c:
        r = transaction(c)
        assert (r.code, r.text) == (554, "5.7.1 content rejected by upstream")
    t = sl.wait_transactions(1)[0]
    assert t["verdict"] == "rejected", t
    assert t["upstream"].startswith("554 5.7.1"), t


def test_log_line_multiline_upstream_reply(fake_factory, sluice_factory):
    """Exim answers BDAT LAST with two lines and names its message id in the
    second: the log line keeps every line of the upstream's final reply."""
    up = fake_factory(faults={"EOD": "250-1234 byte chunk, total 1234\r\n250 OK id=1wXyZ-000abc-7Q"})
    sl = sluice_factory(up.port)
    with open_session(sl) as c:
        r = transaction(c)
        assert r.code == 250, r
    t = sl.wait_transactions(1)[0]
    assert t["verdict"] == "accepted", t
    assert t["upstream"].startswith("250 1234 byte chunk"), t
    assert "id=1wXyZ-000abc-7Q" in t["upstream"], t


# ---- CLI ------------------------------------------------------------------
def test_version_and_help():
    r = harness.run_sluice(["--version"])
    assert r.returncode == 0
    assert re.search(r"\d+\.\d+", r.stdout + r.stderr)
    r = harness.run_sluice(["--help"])
    assert r.returncode == 0
    out = r.stdout + r.stderr
    for opt in ("--check", "--listen", "--upstream", "-c"):
        assert opt in out, out


def test_no_config_file_overrides(fake, sluice_factory):
    sl = sluice_factory(None, use_config=False, start=False)
    sl.args = ["--listen", "127.0.0.1:%d" % sl.port, "--upstream", "127.0.0.1:%d" % fake.port,
               "--stats-listen", "127.0.0.1:%d" % harness.free_port()]
    sl.start()
    assert harness.smtp_send(sl.port) == {}
    assert len(fake.wait_messages(1)) == 1


def test_check_good_and_bad(tmp_path, fake):
    good = tmp_path / "good.conf"
    good.write_text(harness.render_config({
        "server": {"listen": "127.0.0.1:%d" % harness.free_port(), "spool_dir": str(tmp_path),
                   "max_recipients": "10", "command_timeout": "2s", "max_message_size": "64k"},
        "upstream": {"servers": "127.0.0.1:%d" % fake.port},
        "stats": {"listen": "no"},
    }))
    r = harness.run_sluice(["--check", "-c", str(good)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "configuration OK" in r.stdout + r.stderr

    bad = tmp_path / "bad.conf"
    bad.write_text("[server]\n"                              # 1
                   "listen = 127.0.0.1:%d\n"                 # 2
                   "max_recipients = lots\n"                 # 3
                   "command_timeout = 5 fortnights\n"        # 4
                   "[upstream]\n"                            # 5
                   "servers = 127.0.0.1:%d\n"                # 6
                   "tls = perhaps\n"                         # 7
                   "tls_cert_file_typo = /nonexistent\n"     # 8
                   % (harness.free_port(), fake.port))
    r = harness.run_sluice(["--check", "-c", str(bad)])
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    for line in (3, 4, 7, 8):
        assert re.search(r"(^|\n)%s:%d: \S" % (re.escape(str(bad)), line), out), \
            "no %s:%d: message in:\n%s" % (bad, line, out)
    assert "configuration OK" not in out


def test_check_names_missing_files(tmp_path):
    bad = tmp_path / "files.conf"
    bad.write_text("[server]\n"
                   "listen = 127.0.0.1:%d\n"
                   "tls_cert_file = %s/missing-cert.pem\n"
                   "tls_key_file = %s/missing-key.pem\n"
                   "spool_dir = %s/no/such/dir\n" % (harness.free_port(), tmp_path, tmp_path,
                                                     tmp_path))
    r = harness.run_sluice(["--check", "-c", str(bad)])
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert re.search(r"%s:3: " % re.escape(str(bad)), out), out
    assert re.search(r"%s:5: " % re.escape(str(bad)), out), out


def test_contrib_config_passes_check(tmp_path):
    import os
    path = os.path.join(harness.SRC_DIR, "contrib", "sluice.conf")
    if not os.path.exists(path):
        pytest.skip("contrib/sluice.conf not written yet")
    r = harness.run_sluice(["--check", "-c", path])
    # The sample names system paths (spool dir, user) that may not exist on a
    # test machine; it must at least parse, and report FILE:LINE otherwise.
    out = r.stdout + r.stderr
    assert r.returncode == 0 or re.search(r"sluice\.conf:\d+: ", out), out
