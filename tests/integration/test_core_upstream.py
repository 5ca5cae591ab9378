# SPDX-License-Identifier: GPL-2.0-or-later
"""The upstream side: replies relayed faithfully, faults turned into
4xx (never 250), XCLIENT/XFORWARD, STARTTLS to the upstream, 8BITMIME
downgrade, SMTPUTF8 and DSN parameters."""

import quopri
import time

import pytest

import harness
import plugkit
from fakemta import CLOSE, HANG
from harness import Client, transaction

BODY = b"Subject: up\r\n\r\nupstream test\r\n"


def session(sl, name="client.test", source=None):
    c = Client(sl.port, source=source)
    c.greeting()
    c.ehlo(name)
    return c


def no_delivery(up, wait=0.5):
    time.sleep(wait)
    return up.messages == []


# ---- replies relayed faithfully -------------------------------------------
@pytest.mark.parametrize("phase,reply", [
    ("MAIL", "451 4.3.2 sender check deferred, try later"),
    ("MAIL", "550 5.7.1 sender <a@example.com> refused by policy"),
    ("MAIL", "421 4.3.2 upstream shutting down"),
    ("RCPT", "450 4.2.1 mailbox busy"),
    ("RCPT", "452 4.2.2 mailbox full"),
    ("RCPT", "550 5.1.1 <b@example.net>: Recipient address rejected: User unknown"),
    ("RCPT", "553 5.1.3 bad destination mailbox address syntax"),
    ("EOD", "451 4.3.0 temporary content failure"),
    ("EOD", "552 5.3.4 message too big for upstream"),
    ("EOD", "554 5.7.1 spam detected upstream"),
])
def test_upstream_reply_relayed(fake_factory, sluice_factory, phase, reply):
    up = fake_factory(faults={phase: reply})
    sl = sluice_factory(up.port)
    want_code = int(reply[:3])
    want_text = reply[4:]
    with session(sl) as c:
        r = c.cmd("MAIL FROM:<a@example.com>")
        if phase == "MAIL":
            assert (r.code, r.text) == (want_code, want_text)
            return
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<b@example.net>")
        if phase == "RCPT":
            assert (r.code, r.text) == (want_code, want_text)
            # No accepted recipient: DATA is refused by sluice itself.
            c.expect("DATA", 554, "5.5.1")
            assert no_delivery(up)
            return
        assert r.code == 250
        c.expect("DATA", 354)
        c.send(BODY + b".\r\n")
        r = c.reply()
        assert (r.code, r.text) == (want_code, want_text)
        c.expect("QUIT", 221)
    assert up.messages == []


def test_upstream_multiline_reply_relayed(fake_factory, sluice_factory):
    up = fake_factory(faults={"RCPT": "550-5.1.1 first line\r\n550 5.1.1 second line"})
    sl = sluice_factory(up.port)
    with session(sl) as c:
        c.expect("MAIL FROM:<a@example.com>", 250)
        r = c.cmd("RCPT TO:<b@example.net>")
        assert r.code == 550
        assert r.lines == ["5.1.1 first line", "5.1.1 second line"]


def test_rcpt_mixed_accept_reject(fake_factory, sluice_factory):
    def rcpt(_s, arg):
        return "550 5.1.1 unknown user" if "bad" in arg else None
    up = fake_factory(faults={"RCPT": rcpt})
    sl = sluice_factory(up.port)
    refused = harness.smtp_send(sl.port, "a@example.com",
                                ["good1@example.net", "bad@example.net", "good2@example.net"])
    assert list(refused) == ["bad@example.net"]
    assert refused["bad@example.net"][0] == 550
    m = up.wait_messages(1)[0]
    assert m.rcpts == ["good1@example.net", "good2@example.net"]


# ---- upstream faults -------------------------------------------------------
def test_upstream_down_at_mail(sluice_factory):
    sl = sluice_factory(harness.free_port())
    with session(sl) as c:
        r = c.cmd("MAIL FROM:<a@example.com>")
        assert (r.code, r.enh) == (451, "4.4.1"), r
        # The session survives: the client may retry.
        c.expect("NOOP", 250)


def test_upstream_reset_mid_data(fake_factory, sluice_factory):
    up = fake_factory(faults={"DATA_BODY": CLOSE})
    sl = sluice_factory(up.port)
    with session(sl) as c:
        r = transaction(c, body=BODY + b"more\r\n" * 1000)
        assert r.code in (421, 451), r
        assert r.enh.startswith("4."), r
    assert no_delivery(up)


@pytest.mark.parametrize("phase,action", [
    ("MAIL", b"this is not smtp\r\n"),
    ("MAIL", b"2500 almost\r\n"),
    ("RCPT", b"999 nonsense\r\n"),
    ("EOD", b"hello world\r\n"),
    ("EOD", b"250-continued but\r\n354 changed code\r\n"),
    ("EOD", CLOSE),
    ("DATA", b"250 2.0.0 not a 354\r\n"),
    ("DATA", CLOSE),
    ("MAIL", CLOSE),
    ("RCPT", CLOSE),
    ("MAIL", b"221 2.0.0 bye\r\n"),
    ("RCPT", b"220 ready\r\n"),
    ("EOD", b"252 2.1.5 maybe\r\n"),
], ids=lambda v: v if isinstance(v, str) else ("CLOSE" if v is CLOSE else repr(v)[:20]))
def test_upstream_out_of_protocol_never_250(fake_factory, sluice_factory, phase, action):
    up = fake_factory(faults={phase: action})
    sl = sluice_factory(up.port)
    with session(sl) as c:
        steps = [("MAIL FROM:<a@example.com>", "MAIL"), ("RCPT TO:<b@example.net>", "RCPT"),
                 ("DATA", "DATA")]
        for line, ph in steps:
            r = c.cmd(line)
            # sluice answers DATA itself (354) and sends the upstream its DATA
            # only after the message and the chain: DATA faults show at the end.
            if ph == phase and ph != "DATA":
                assert r.code in (421, 451), r
                assert r.enh.startswith("4.4") or r.enh.startswith("4.3"), r
                break
            assert r.code in (250, 354), r
        else:
            c.send(BODY + b".\r\n")
            r = c.reply()
            assert r.code in (421, 451), r
            assert r.enh.startswith("4."), r
    # The transaction's log line says so too (a MAIL that failed upstream
    # never opened a transaction).
    if phase != "MAIL":
        t = sl.wait_transactions(1)
        assert t and t[0]["verdict"] != "accepted", t


@pytest.mark.parametrize("phase", ["MAIL", "RCPT", "EOD"])
def test_upstream_timeout(fake_factory, sluice_factory, phase):
    up = fake_factory(faults={phase: HANG})
    sl = sluice_factory(up.port, upstream={"command_timeout": "2s", "data_timeout": "2s"})
    with session(sl) as c:
        t0 = time.monotonic()
        if phase == "MAIL":
            r = c.cmd("MAIL FROM:<a@example.com>", timeout=15)
        elif phase == "RCPT":
            c.expect("MAIL FROM:<a@example.com>", 250)
            r = c.cmd("RCPT TO:<b@example.net>", timeout=15)
        else:
            c.expect("MAIL FROM:<a@example.com>", 250)
            c.expect("RCPT TO:<b@example.net>", 250)
            c.expect("DATA", 354)
            c.send(BODY + b".\r\n")
            r = c.reply(timeout=15)
        took = time.monotonic() - t0
        assert r.code in (421, 451), r
        assert r.enh.startswith("4.4"), r
        assert 1.5 <= took <= 10, took


def test_upstream_banner_timeout(fake_factory, sluice_factory):
    up = fake_factory(faults={"CONNECT": HANG})
    sl = sluice_factory(up.port, upstream={"command_timeout": "2s", "connect_timeout": "2s"})
    with session(sl) as c:
        r = c.cmd("MAIL FROM:<a@example.com>", timeout=15)
        assert r.code in (421, 451) and r.enh.startswith("4.4"), r


def test_upstream_greeting_refused(fake_factory, sluice_factory):
    up = fake_factory(faults={"CONNECT": "554 5.3.2 go away"})
    sl = sluice_factory(up.port)
    with session(sl) as c:
        r = c.cmd("MAIL FROM:<a@example.com>")
        assert r.code in (421, 451, 554) and r.code != 250, r


def test_upstream_double_250_at_mail(fake_factory, sluice_factory):
    """An unsolicited second reply must never be taken as the answer to RCPT."""
    up = fake_factory(faults={"MAIL": b"250 2.1.0 ok\r\n250 2.1.0 unsolicited extra\r\n",
                              "RCPT": "550 5.1.1 the real rcpt answer"})
    sl = sluice_factory(up.port)
    with session(sl) as c:
        r = c.cmd("MAIL FROM:<a@example.com>")
        time.sleep(0.5)
        r = c.cmd("RCPT TO:<b@example.net>")
        assert "unsolicited" not in r.text, r
        assert r.code != 250, r
        assert r.code in (550, 421, 451), r


def test_second_upstream_tried_in_order(fake, sluice_factory):
    dead = harness.free_port()
    sl = sluice_factory(None, upstream={"servers": "127.0.0.1:%d, 127.0.0.1:%d"
                                        % (dead, fake.port)})
    assert harness.smtp_send(sl.port) == {}
    assert len(fake.wait_messages(1)) == 1


def test_connect_at_connect(fake, sluice_factory):
    sl = sluice_factory(fake.port, upstream={"connect": "connect"})
    with Client(sl.port) as c:
        c.greeting()
        # A session's own upstream connection (not the capability probe)
        # opens before any MAIL: at least two connections, one per client + probe.
        assert fake.wait_for(lambda f: len(f.sessions) >= 2, 5), len(fake.sessions)
        c.ehlo()
        assert transaction(c).code == 250


# ---- XCLIENT / XFORWARD -----------------------------------------------------
def test_xclient_to_fake(fake_factory, sluice_factory):
    up = fake_factory(xclient=True)
    sl = sluice_factory(up.port)
    with session(sl, "xclient-helo.test", source="127.0.0.2") as c:
        assert transaction(c).code == 250
    s = up.tx_sessions[0]
    assert s.xclient.get("ADDR") == "127.0.0.2", s.command_strs()
    assert s.xclient.get("HELO") == "xclient-helo.test"
    assert "PORT" in s.xclient and "PROTO" in s.xclient
    assert s.xclient["PROTO"].upper() == "ESMTP"
    verbs = s.verbs()
    i = verbs.index("XCLIENT")
    # After XCLIENT's new greeting the session restarts from EHLO.
    assert verbs[i + 1] in ("EHLO", "XCLIENT"), verbs
    assert verbs.index("MAIL") > i
    assert "XFORWARD" not in verbs


def _xclient_lines(s):
    return [ln for ln in s.command_strs() if ln.upper().startswith("XCLIENT")]


def _two_clients(sl, up, helos=("h.test", "h.test")):
    """One message each from 127.0.0.2 then 127.0.0.3, the second after the
    first connection is back in the pool; both reach the upstream."""
    for src, helo in zip(("127.0.0.2", "127.0.0.3"), helos):
        with session(sl, helo, source=src) as c:
            assert transaction(c).code == 250
            c.cmd("QUIT")
        time.sleep(0.3)
    assert len(up.wait_messages(2)) == 2


def test_xclient_connection_reused_when_offered_again(fake_factory, sluice_factory):
    """An MTA that offers XCLIENT again after one lets the next client be
    told on the same connection: one upstream connection serves both
    sessions, and the second XCLIENT names the second client alone (HELO
    and LOGIN re-told, nothing of the first carried over)."""
    up = fake_factory(xclient=True, xclient_again=True)
    stats = harness.free_port()
    sl = sluice_factory(up.port, stats={"listen": "127.0.0.1:%d" % stats})
    _two_clients(sl, up, ("first.test", "second.test"))
    txs = up.tx_sessions
    assert len(txs) == 1, [t.command_strs() for t in txs]
    lines = _xclient_lines(txs[0])
    assert len(lines) == 2, txs[0].command_strs()
    assert "ADDR=127.0.0.2" in lines[0] and "HELO=first.test" in lines[0], lines
    assert "ADDR=127.0.0.3" in lines[1] and "HELO=second.test" in lines[1], lines
    assert "LOGIN=[UNAVAILABLE]" in lines[1], lines
    # Postfix keeps the last reverse name on NAME=[UNAVAILABLE]: re-told.
    assert "REVERSE_NAME=[UNAVAILABLE]" in lines[1], lines
    # Each message went out after its own client's XCLIENT and EHLO.
    verbs = txs[0].verbs()
    x2 = [i for i, v in enumerate(verbs) if v == "XCLIENT"][1]
    mails = [i for i, v in enumerate(verbs) if v == "MAIL"]
    assert mails[0] < x2 < mails[1] and verbs[x2 + 1] == "EHLO", verbs
    m = plugkit.metrics(stats)
    assert plugkit.metric_value(m, "sluice_upstream_connections_total", {"event": "reused"}) == 1


def test_xclient_connection_not_reused_without_reverse_name(fake_factory, sluice_factory):
    """XCLIENT offered again, but without REVERSE_NAME among its attributes:
    the next client could not clear the last one's reverse name, so the
    connection is not reused."""
    caps = ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES",
            "XCLIENT NAME ADDR PORT PROTO HELO LOGIN"]
    up = fake_factory(caps=caps, xclient_again=True)
    stats = harness.free_port()
    sl = sluice_factory(up.port, stats={"listen": "127.0.0.1:%d" % stats})
    _two_clients(sl, up)
    assert [len(_xclient_lines(t)) for t in up.tx_sessions] == [1, 1]
    m = plugkit.metrics(stats)
    assert plugkit.metric_value(m, "sluice_upstream_connections_total", {"event": "reused"}) == 0


def test_xclient_connection_not_reused_when_login_no_longer_listed(fake_factory, sluice_factory):
    """The first EHLO lists LOGIN, the one after XCLIENT does not: the
    next client could not be told it has no login (the MTA may keep the
    last one's SASL identity, and with it relay rights), so the connection
    is not reused."""
    up = fake_factory(xclient=True, xclient_again=True,
                      xclient_again_cap="XCLIENT NAME ADDR PORT PROTO HELO REVERSE_NAME")
    stats = harness.free_port()
    sl = sluice_factory(up.port, stats={"listen": "127.0.0.1:%d" % stats})
    _two_clients(sl, up)
    assert [len(_xclient_lines(t)) for t in up.tx_sessions] == [1, 1]
    m = plugkit.metrics(stats)
    assert plugkit.metric_value(m, "sluice_upstream_connections_total", {"event": "reused"}) == 0


def test_xclient_connection_not_reused_when_not_offered_again(fake_factory, sluice_factory):
    """Like Postfix: no XCLIENT in the EHLO after an XCLIENT (a further one
    would be judged by the client's address). The connection is never given
    to the next client: a connection of its own per session, one XCLIENT
    each, never a refused second one."""
    up = fake_factory(xclient=True)
    stats = harness.free_port()
    sl = sluice_factory(up.port, stats={"listen": "127.0.0.1:%d" % stats})
    _two_clients(sl, up)
    txs = up.tx_sessions
    assert len(txs) == 2
    assert [len(_xclient_lines(t)) for t in txs] == [1, 1]
    assert all("550" not in "".join(t.replies) for t in txs)
    m = plugkit.metrics(stats)
    assert plugkit.metric_value(m, "sluice_upstream_connections_total", {"event": "reused"}) == 0


def test_xclient_refused_permanently_is_a_tempfail(fake_factory, sluice_factory):
    """550 to XCLIENT (sluice not in Postfix's authorized_xclient_hosts) is
    about sluice, not the client: it used to reach the client as a 5xx and
    bounce real mail. Now a 451 4.4.0 and a log line saying why."""
    up = fake_factory(xclient=True, faults={"XCLIENT": "550 5.7.0 Error: insufficient authorization"})
    sl = sluice_factory(up.port)
    with session(sl, "client.test") as c:
        r = c.cmd("MAIL FROM:<a@example.com>")
        assert r.code == 451 and r.enh == "4.4.0", r
    assert sl.wait_log(r"upstream refused XCLIENT: 550 5\.7\.0 Error: insufficient authorization",
                       5), sl.output()


def test_xclient_without_addr_gives_way_to_xforward(fake_factory, sluice_factory):
    """smtp-sink's kind of offer: XCLIENT NAME HELO (the MTA cannot be told
    the client's address, so it cannot judge the client) beside XFORWARD
    with ADDR. XFORWARD carries the address, and the connection, not bound
    to one client, serves the next session."""
    caps = ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "XCLIENT NAME HELO",
            "XFORWARD NAME ADDR PROTO HELO"]
    up = fake_factory(caps=caps)
    stats = harness.free_port()
    sl = sluice_factory(up.port, stats={"listen": "127.0.0.1:%d" % stats})
    _two_clients(sl, up)
    txs = up.tx_sessions
    assert len(txs) == 1, [t.command_strs() for t in txs]
    assert not _xclient_lines(txs[0]), txs[0].command_strs()
    # Each MAIL right behind its own client's XFORWARD, one line while it
    # fits (one command less for the MTA to answer per transaction).
    cmds = txs[0].command_strs()
    mails = [i for i, ln in enumerate(cmds) if ln.upper().startswith("MAIL")]
    assert len(mails) == 2, cmds
    for m, addr in zip(mails, ("127.0.0.2", "127.0.0.3")):
        assert cmds[m - 1] == "XFORWARD ADDR=%s PROTO=ESMTP NAME=[UNAVAILABLE] HELO=h.test" % addr, \
            cmds
    # Only what the offer lists: no PORT.
    assert not any("PORT=" in ln for ln in cmds if ln.upper().startswith("XFORWARD")), cmds
    m = plugkit.metrics(stats)
    assert plugkit.metric_value(m, "sluice_upstream_connections_total", {"event": "reused"}) == 1


def test_xclient_without_addr_and_no_xforward(fake_factory, sluice_factory):
    """The same XCLIENT offer without XFORWARD: XCLIENT still carries what
    it can (the name and HELO), one connection per session."""
    caps = ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "XCLIENT NAME HELO"]
    up = fake_factory(caps=caps)
    sl = sluice_factory(up.port)
    with session(sl, "xclient-helo.test", source="127.0.0.2") as c:
        assert transaction(c).code == 250
    lines = _xclient_lines(up.tx_sessions[0])
    assert len(lines) == 1 and "HELO=xclient-helo.test" in lines[0], lines
    assert "ADDR=" not in lines[0], lines


def test_xforward_refused_mail_still_delivered(fake_factory, sluice_factory):
    """XFORWARD goes in one group with MAIL (PIPELINING). An MTA that
    refuses it (sluice not in smtpd_authorized_xforward_hosts) still gets
    the mail: the refusal is logged once and XFORWARD is not sent again on
    that connection (each refusal counts against it at the MTA)."""
    up = fake_factory(xforward=True,
                      faults={"XFORWARD": "550 5.7.0 Error: insufficient authorization"})
    sl = sluice_factory(up.port)
    _two_clients(sl, up)
    txs = up.tx_sessions
    assert len(txs) == 1, [t.command_strs() for t in txs]
    verbs = txs[0].verbs()
    assert verbs.count("XFORWARD") == 1 and verbs.count("MAIL") == 2, verbs
    assert verbs.index("MAIL") == verbs.index("XFORWARD") + 1, verbs
    assert sl.wait_log(r"refused XFORWARD: 550 5\.7\.0 Error: insufficient authorization", 5), \
        sl.output()
    time.sleep(0.3)
    assert len([ln for ln in sl.lines if "refused XFORWARD" in ln]) == 1, sl.output()


def test_xforward_refused_without_pipelining(fake_factory, sluice_factory):
    """Without PIPELINING the XFORWARD lines are answered before MAIL: a
    refusal (sluice's rights at the MTA, not the client's) still lets the
    mail through, logged, instead of a 5xx bounce for the client."""
    caps = ["8BITMIME", "ENHANCEDSTATUSCODES", "XFORWARD NAME ADDR PORT PROTO HELO"]
    up = fake_factory(caps=caps,
                      faults={"XFORWARD": "550 5.7.0 Error: insufficient authorization"})
    sl = sluice_factory(up.port)
    with session(sl, "h.test", source="127.0.0.2") as c:
        assert transaction(c).code == 250
    assert len(up.wait_messages(1)) == 1
    assert sl.wait_log(r"refused XFORWARD: 550", 5), sl.output()


def test_xforward_long_encoded_helo(fake_factory, sluice_factory):
    """A HELO that is over 255 octets once xtext-encoded ('=' takes three)
    would make Postfix refuse the whole XFORWARD (501, "attribute value too
    long"): it goes as [UNAVAILABLE], the MTA still learns the client's
    address, and XFORWARD stays on for the next client on the connection."""
    up = fake_factory(xforward=True)
    stats = harness.free_port()
    sl = sluice_factory(up.port, stats={"listen": "127.0.0.1:%d" % stats})
    _two_clients(sl, up, helos=("h" + "=" * 100, "next.test"))
    txs = up.tx_sessions
    assert len(txs) == 1, [t.command_strs() for t in txs]
    cmds = txs[0].command_strs()
    xf = [ln for ln in cmds if ln.upper().startswith("XFORWARD")]
    assert len(xf) == 2, cmds
    assert "ADDR=127.0.0.2" in xf[0] and "HELO=[UNAVAILABLE]" in xf[0], cmds
    assert "ADDR=127.0.0.3" in xf[1] and "HELO=next.test" in xf[1], cmds
    assert txs[0].xforward.get("ADDR") == "127.0.0.3"
    assert not [ln for ln in sl.lines if "refused XFORWARD" in ln], sl.output()


def test_xforward_without_xclient(fake_factory, sluice_factory):
    up = fake_factory(xforward=True)
    sl = sluice_factory(up.port)
    with session(sl, "xforward-helo.test", source="127.0.0.3") as c:
        assert transaction(c).code == 250
    s = up.tx_sessions[0]
    assert s.xforward.get("ADDR") == "127.0.0.3", s.command_strs()
    assert s.xforward.get("HELO") == "xforward-helo.test"
    verbs = s.verbs()
    assert "XCLIENT" not in verbs
    assert verbs.index("XFORWARD") < verbs.index("MAIL")


def test_xclient_disabled_in_config(fake_factory, sluice_factory):
    up = fake_factory(xclient=True)
    sl = sluice_factory(up.port, upstream={"xclient": "no", "xforward": "no"})
    assert harness.smtp_send(sl.port) == {}
    up.wait_messages(1)
    assert "XCLIENT" not in up.tx_sessions[0].verbs()


def test_neither_offered(fake, sluice):
    assert harness.smtp_send(sluice.port) == {}
    fake.wait_messages(1)
    verbs = fake.tx_sessions[0].verbs()
    assert "XCLIENT" not in verbs and "XFORWARD" not in verbs


# ---- STARTTLS to the upstream -------------------------------------------------
def test_upstream_starttls_verified(fake_factory, sluice_factory, certs):
    up = fake_factory(cert=certs["cert"], key=certs["key"], caps=None)
    sl = sluice_factory(up.port, upstream={"tls": "encrypt", "tls_verify": "yes",
                                           "tls_ca_file": certs["ca"],
                                           "tls_verify_name": "localhost"})
    assert harness.smtp_send(sl.port) == {}
    m = up.wait_messages(1)[0]
    s = m.session
    assert s.tls
    assert s.tls_leftover == b""
    verbs = s.verbs()
    # EHLO, STARTTLS, EHLO again, then the transaction.
    assert verbs[:3] == ["EHLO", "STARTTLS", "EHLO"], verbs


def test_upstream_starttls_bad_name_refused(fake_factory, sluice_factory, certs):
    up = fake_factory(cert=certs["cert"], key=certs["key"])
    sl = sluice_factory(up.port, upstream={"tls": "encrypt", "tls_verify": "yes",
                                           "tls_ca_file": certs["ca"],
                                           "tls_verify_name": "wrong.example"})
    with session(sl) as c:
        r = c.cmd("MAIL FROM:<a@example.com>")
        assert r.code in (421, 451) and r.enh.startswith("4."), r
    assert no_delivery(up)


def test_upstream_tls_encrypt_but_not_offered(fake, sluice_factory):
    sl = sluice_factory(fake.port, upstream={"tls": "encrypt"})
    with session(sl) as c:
        r = c.cmd("MAIL FROM:<a@example.com>")
        assert r.code in (421, 451), r
    assert no_delivery(fake)
    # Plaintext was not an option: the envelope never went out in clear.
    assert all("MAIL" not in s.verbs() for s in fake.sessions)


def test_upstream_tls_may_without_offer(fake, sluice_factory):
    sl = sluice_factory(fake.port, upstream={"tls": "may"})
    assert harness.smtp_send(sl.port) == {}
    assert not fake.wait_messages(1)[0].session.tls


# ---- 8BITMIME / SMTPUTF8 / DSN -------------------------------------------------
TEXT_8BIT = "Grüße aus Köln – ½ € ✓\r\nzweite Zeile: naïve café\r\n"


def caps_without(*names):
    from fakemta import DEFAULT_CAPS
    return [c for c in DEFAULT_CAPS if c.split()[0] not in names]


def test_8bitmime_passthrough(fake, sluice):
    msg = (b"Subject: 8bit\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + TEXT_8BIT.encode())
    assert harness.smtp_send(sluice.port, msg=msg, mail_options=["BODY=8BITMIME"]) == {}
    m = fake.wait_messages(1)[0]
    assert "BODY=8BITMIME" in m.mail_params.upper()
    assert m.data == msg


def test_8bitmime_downgrade_to_quoted_printable(fake_factory, sluice_factory):
    up = fake_factory(caps=caps_without("8BITMIME"))
    sl = sluice_factory(up.port)
    msg = (b"Subject: 8bit\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + TEXT_8BIT.encode())
    assert harness.smtp_send(sl.port, msg=msg, mail_options=["BODY=8BITMIME"]) == {}
    m = up.wait_messages(1)[0]
    assert "8BITMIME" not in m.mail_params.upper()
    assert all(b < 128 for b in m.raw), "8-bit bytes sent to a 7-bit upstream"
    head, _, body = m.data.partition(b"\r\n\r\n")
    hl = head.lower()
    assert b"content-transfer-encoding: quoted-printable" in hl, head
    assert b"content-transfer-encoding: 8bit" not in hl
    assert b"subject: 8bit" in hl
    assert quopri.decodestring(body).replace(b"\r\n", b"\n") == \
        TEXT_8BIT.encode().replace(b"\r\n", b"\n")


def test_8bitmime_downgrade_multipart(fake_factory, sluice_factory):
    up = fake_factory(caps=caps_without("8BITMIME"))
    sl = sluice_factory(up.port)
    part1 = TEXT_8BIT.encode()
    msg = (b"Subject: multi\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n"
           b"preamble\r\n--BB\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + part1 +
           b"--BB\r\nContent-Type: text/plain\r\n\r\nplain ascii part\r\n--BB--\r\n")
    assert harness.smtp_send(sl.port, msg=msg, mail_options=["BODY=8BITMIME"]) == {}
    m = up.wait_messages(1)[0]
    assert all(b < 128 for b in m.raw)
    assert b"plain ascii part" in m.data
    import email
    from email import policy
    e = email.message_from_bytes(m.data, policy=policy.default)
    parts = [p for p in e.walk() if not p.is_multipart()]
    # The CRLF before a boundary belongs to the delimiter (RFC 2046).
    assert parts[0].get_content().replace("\r\n", "\n").rstrip("\n") == \
        TEXT_8BIT.replace("\r\n", "\n").rstrip("\n")


def test_8bit_headers_to_7bit_upstream(fake_factory, sluice_factory):
    """Raw 8-bit in a header cannot become 7-bit MIME body encoding: either
    554 5.6.3, or (if sluice encodes headers) a 7-bit clean delivery."""
    up = fake_factory(caps=caps_without("8BITMIME"))
    sl = sluice_factory(up.port)
    msg = "Subject: Grüße\r\nMIME-Version: 1.0\r\n\r\nbody\r\n".encode()
    with session(sl) as c:
        c.expect("MAIL FROM:<a@example.com> BODY=8BITMIME", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(msg + b".\r\n")
        r = c.reply()
    if r.code == 250:
        m = up.wait_messages(1)[0]
        assert all(b < 128 for b in m.raw)
    else:
        assert (r.code, r.enh) == (554, "5.6.3"), r
        assert no_delivery(up)


def test_smtputf8_to_upstream_without_it(fake_factory, sluice_factory):
    up = fake_factory(caps=caps_without("SMTPUTF8"))
    sl = sluice_factory(up.port)
    with session(sl) as c:
        # Not offered in the EHLO reply, so refused as an unknown parameter
        # (RFC 5321 §4.1.1.11), never a 250 first.
        r = c.cmd("MAIL FROM:<a@example.com> SMTPUTF8")
        assert (r.code, r.enh) == (555, "5.5.4"), r
    assert no_delivery(up)


def test_smtputf8_passthrough(fake, sluice):
    with session(sluice) as c:
        c.expect("MAIL FROM:<jürgen@example.com> SMTPUTF8", 250)
        c.expect("RCPT TO:<zoë@example.net>", 250)
        c.expect("DATA", 354)
        c.send("Subject: ü\r\n\r\nÜ\r\n.\r\n".encode())
        assert c.reply().code == 250
    m = fake.wait_messages(1)[0]
    assert m.mail_from == "jürgen@example.com"
    assert "SMTPUTF8" in m.mail_params.upper()
    assert m.rcpts == ["zoë@example.net"]


def test_dsn_parameters_carried(fake, sluice):
    with session(sluice) as c:
        c.expect("MAIL FROM:<a@example.com> RET=HDRS ENVID=abc123", 250)
        c.expect("RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE "
                 "ORCPT=rfc822;b@example.net", 250)
        c.expect("DATA", 354)
        c.send(BODY + b".\r\n")
        assert c.reply().code == 250
    s = fake.wait_messages(1)[0].session
    cmds = s.command_strs()
    mail = [x for x in cmds if x.upper().startswith("MAIL")][0]
    rcpt = [x for x in cmds if x.upper().startswith("RCPT")][0]
    assert "RET=HDRS" in mail and "ENVID=abc123" in mail, mail
    assert "NOTIFY=SUCCESS,FAILURE" in rcpt and "ORCPT=rfc822;b@example.net" in rcpt, rcpt


def test_dsn_parameters_refused_when_not_offered(fake_factory, sluice_factory):
    """No DSN in the EHLO reply (the upstream has none): RET/ENVID and
    NOTIFY/ORCPT are refused with 555 5.5.4, never dropped silently."""
    up = fake_factory(caps=caps_without("DSN"))
    sl = sluice_factory(up.port)
    assert harness.smtp_send(sl.port) == {}  # sluice learns the upstream's capabilities
    with session(sl) as c:
        r = c.cmd("EHLO client.test")
        assert not any(ln.upper().startswith("DSN") for ln in r.lines[1:]), r
        c.expect("MAIL FROM:<a@example.com> RET=HDRS", 555, "5.5.4")
        c.expect("MAIL FROM:<a@example.com> ENVID=abc", 555, "5.5.4")
        c.expect("MAIL FROM:<a@example.com>", 250)
        c.expect("RCPT TO:<b@example.net> NOTIFY=NEVER", 555, "5.5.4")
        c.expect("RCPT TO:<b@example.net> ORCPT=rfc822;b@example.net", 555, "5.5.4")
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(BODY + b".\r\n")
        assert c.reply().code == 250
    msgs = up.wait_messages(2)
    assert all("RET=" not in x.upper() and "NOTIFY=" not in x.upper()
               for m in msgs for x in m.session.command_strs())


def test_dsn_offered_but_this_upstream_lacks_it_is_temporary(fake_factory, sluice_factory):
    """DSN was offered from what the upstream said before; the connection
    opened for this MAIL finds no DSN (a failover to another MTA): 455
    4.5.4, a temporary refusal, not a silent drop."""
    up = fake_factory()
    # A new connection for every session, as after a failover (a reused
    # connection keeps the extensions it was opened with, rightly).
    sl = sluice_factory(up.port, upstream={"reuse_max_idle": "0"})
    assert harness.smtp_send(sl.port) == {}  # the upstream offered DSN
    up.caps[:] = caps_without("DSN")
    with session(sl) as c:
        r = c.cmd("EHLO client.test")
        assert any(ln.upper() == "DSN" for ln in r.lines[1:]), r
        c.expect("MAIL FROM:<a@example.com> RET=FULL", 455, "4.5.4")
        c.expect("MAIL FROM:<a@example.com>", 250)
        c.expect("RCPT TO:<b@example.net> NOTIFY=SUCCESS", 455, "4.5.4")
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(BODY + b".\r\n")
        assert c.reply().code == 250
    assert len(up.wait_messages(2)) == 2


def test_requiretls_and_other_unoffered_extensions_are_refused(fake, sluice):
    """REQUIRETLS (RFC 8689), MT-PRIORITY, BY are not offered: 555 5.5.4."""
    with session(sluice) as c:
        for p in ("REQUIRETLS", "MT-PRIORITY=3", "BY=120;R", "HOLDFOR=10"):
            c.expect("MAIL FROM:<a@example.com> %s" % p, 555, "5.5.4")
        c.expect("MAIL FROM:<a@example.com>", 250)


def test_size_parameter_forwarded(fake, sluice):
    with session(sluice) as c:
        c.expect("MAIL FROM:<a@example.com> SIZE=%d" % len(BODY), 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(BODY + b".\r\n")
        assert c.reply().code == 250
    m = fake.wait_messages(1)[0]
    assert "SIZE=" in m.mail_params.upper()


def _hosts_name(ip):
    """The name /etc/hosts (or the resolver) gives ip, if it maps back."""
    import socket
    try:
        name = socket.gethostbyaddr(ip)[0]
        return name if ip in socket.gethostbyname_ex(name)[2] else None
    except OSError:
        return None


def test_xclient_name_is_forward_confirmed(fake_factory, sluice_factory):
    """The client's reverse name is looked up, confirmed by a forward lookup,
    and handed to the upstream as XCLIENT NAME; without a name (or with
    reverse_dns = no) it is [UNAVAILABLE]."""
    want = _hosts_name("127.0.0.1")
    if not want:
        pytest.skip("127.0.0.1 has no forward-confirmed name on this machine")
    up = fake_factory(xclient=True)
    # 127.0.0.1 only: /etc/hosts answers, no query leaves loopback.
    sl = sluice_factory(up.port, server={"reverse_dns": "yes"})
    with session(sl, "name.test", source="127.0.0.1") as c:
        assert transaction(c).code == 250
    assert up.tx_sessions[0].xclient.get("NAME") == want, up.tx_sessions[0].command_strs()

    up2 = fake_factory(xclient=True)
    sl2 = sluice_factory(up2.port, server={"reverse_dns": "no"})
    with session(sl2, "name.test", source="127.0.0.1") as c:
        assert transaction(c).code == 250
    assert up2.tx_sessions[0].xclient.get("NAME") == "[UNAVAILABLE]"


def test_upstream_421_ends_the_client_session(fake_factory, sluice_factory):
    """The upstream's 421 is relayed, and like any 421 it ends the session."""
    up = fake_factory(faults={"RCPT": "421 4.3.2 upstream going down"})
    sl = sluice_factory(up.port)
    with session(sl) as c:
        c.expect("MAIL FROM:<a@example.com>", 250)
        r = c.cmd("RCPT TO:<b@example.net>")
        assert r.code == 421 and r.enh == "4.3.2", r
        assert c.is_closed(5)
