# SPDX-License-Identifier: GPL-2.0-or-later
"""sluice in front of a real Exim 4.96 from Debian (exim4-daemon-light,
extracted by install-deps.sh; a private daemon per test file, exim.py) with
contrib/exim/'s snippets included as they are: mail flows through sluice
into Exim's Maildirs; Exim sees sluice's address, not the client's (it has
neither XCLIENT nor XFORWARD), and the Exim message id in sluice's log line
joins the two logs; Exim's RCPT answers reach the client; the sluice port
does not relay although Debian's relay_from_hosts holds 127.0.0.1; Exim
delivers outbound mail itself, not back through sluice; the relay port of a
submission sluice; many messages on one reused connection are delivered at
once."""

import email
import re
import smtplib
from email import policy

import pytest

import exim as eximmod
import fakemta
import harness
from harness import Client


@pytest.fixture(scope="module")
def outbound():
    """The Internet's MX hosts, as far as Exim knows: every domain that is
    not example.net goes here, straight from Exim's smtp transport."""
    f = fakemta.FakeMTA(hostname="mx.remote.test").start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def exim(outbound):
    why = eximmod.unavailable()
    if why:
        pytest.skip(why)
    inst = eximmod.PrivateExim(outbound.port, users=["alice", "bob", "many"],
                               aliases={"fwd": "far@remote.test"})
    try:
        inst.start()
    except Exception:
        inst.stop()
        raise
    yield inst
    inst.stop()


@pytest.fixture
def front(exim, sluice_factory):
    return sluice_factory(exim.port)


def parse(path):
    with open(path, "rb") as f:
        return email.message_from_bytes(f.read(), policy=policy.compat32)


def test_mail_flows_through_sluice_into_exim(exim, front):
    before = exim.mail_files("alice")
    body = b"Subject: via sluice\r\n\r\nfirst\r\n.dot line\r\n..two\r\nlast\r\n"
    assert harness.smtp_send(front.port, "ann@example.com", ["alice@example.net"], body,
                             source="127.0.0.2") == {}
    files = exim.wait_mail("alice", before=before)
    assert len(files) == 1, exim.log_tail()
    msg = parse(files[0])
    assert msg["Subject"] == "via sluice"
    assert msg.get_payload() == "first\n.dot line\n..two\nlast\n"
    assert msg["Envelope-to"] == "alice@example.net"
    assert msg["Return-path"] == "<ann@example.com>"
    # What Exim sees: sluice's connection (its address and its EHLO name),
    # not the client at 127.0.0.2.
    received = " ".join(msg.get_all("Received")[0].split())
    assert received.startswith("from [127.0.0.1] (port=") and "helo=sluice.test)" in received, \
        received
    assert "127.0.0.2" not in received, received
    # The join: sluice logs the client and Exim's reply with Exim's message
    # id; Exim's log has the same id with sluice's address.
    tx = front.wait_transactions(1)
    assert len(tx) == 1, front.output()
    assert tx[0]["client"].startswith("127.0.0.2:"), tx[0]
    assert tx[0]["verdict"] == "accepted", tx[0]
    m = re.search(r"id=([0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2,4})", tx[0]["upstream"])
    assert m, tx[0]
    line = exim.wait_log("%s <= ann@example.com " % m.group(1))
    assert line and "[127.0.0.1]" in line and "127.0.0.2" not in line, exim.log_tail()


def test_exim_offers_neither_xclient_nor_xforward(exim):
    with Client(exim.port) as c:
        c.greeting()
        r = c.ehlo()
    keywords = [ln.split()[0].upper() for ln in r.lines[1:] if ln.split()]
    assert "PIPELINING" in keywords and "8BITMIME" in keywords, r
    assert "XCLIENT" not in keywords and "XFORWARD" not in keywords, r
    # localmacros.snippet: no CHUNKING for sluice (see there why).
    assert "CHUNKING" not in keywords, r


def test_unknown_user_gets_exims_550_through_sluice(exim, front):
    with Client(exim.port) as c:
        c.greeting()
        c.ehlo()
        c.expect("MAIL FROM:<a@example.com>", 250)
        direct = c.cmd("RCPT TO:<nosuchuser@example.net>")
    assert direct.code == 550, direct
    before = exim.mail_files("bob")
    with Client(front.port) as c:
        c.greeting()
        c.ehlo()
        c.expect("MAIL FROM:<a@example.com>", 250)
        r = c.cmd("RCPT TO:<nosuchuser@example.net>")
        # Exim's answer; sluice offers ENHANCEDSTATUSCODES to its clients and
        # adds the class's code where the upstream's reply has none.
        assert direct.text == "Unrouteable address", direct
        assert (r.code, r.text) == (550, "5.0.0 Unrouteable address"), r
        c.expect("RCPT TO:<bob@example.net>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: one of two\r\n\r\nbody\r\n.\r\n")
        assert c.reply().code == 250
        c.expect("QUIT", 221)
    files = exim.wait_mail("bob", before=before)
    assert len(files) == 1, exim.log_tail()
    assert parse(files[0])["Envelope-to"] == "bob@example.net"
    assert exim.wait_log("rejected RCPT <nosuchuser@example.net>: Unrouteable address")


def test_sluice_port_does_not_relay(exim, front):
    # Through sluice: Exim refuses, although 127.0.0.1 (sluice) is in
    # relay_from_hosts as on every Debian Exim.
    with Client(front.port) as c:
        c.greeting()
        c.ehlo()
        c.expect("MAIL FROM:<spam@example.com>", 250)
        r = c.cmd("RCPT TO:<victim@remote.test>")
        assert (r.code, r.text) == (550, "5.7.1 Relay not permitted"), r
    # Debian's stock acl_check_rcpt on another port relays for 127.0.0.1:
    # what sluice's port would do without acl_sluice.snippet.
    with Client(exim.plain_port) as c:
        c.greeting()
        c.ehlo()
        c.expect("MAIL FROM:<spam@example.com>", 250)
        c.expect("RCPT TO:<victim@remote.test>", 250)
        c.expect("RSET", 250)
    # And the port is sluice's only: another host may not use it directly.
    with Client(exim.port, source="127.0.0.2") as c:
        c.greeting()
        c.ehlo()
        c.expect("MAIL FROM:<a@example.com>", 250)
        r = c.cmd("RCPT TO:<alice@example.net>")
        assert (r.code, r.text) == (550, "5.7.1 This port is reserved for sluice"), r


def test_forwarded_mail_leaves_through_exim_not_sluice(exim, front, outbound):
    n0 = len(outbound.messages)
    assert harness.smtp_send(front.port, "ann@example.com", ["fwd@example.net"],
                             b"Subject: forward me\r\n\r\nto far\r\n") == {}
    assert len(outbound.wait_messages(n0 + 1, timeout=15)) > n0, exim.log_tail()
    m = outbound.messages[-1]
    assert m.rcpts == ["far@remote.test"] and m.mail_from == "ann@example.com", m
    # Exim's own smtp transport made this delivery: its Received line is on
    # top and sluice handled exactly one transaction (the inbound one).
    assert b"Subject: forward me" in m.data
    assert re.search(rb"Received: from .*\r\n\tby upstream\.test", m.data), m.data[:400]
    assert exim.wait_log("=> far@remote.test <fwd@example.net> R=outbound T=outbound_smtp")
    tx = front.wait_transactions(1)
    assert len(tx) == 1 and tx[0]["verdict"] == "accepted", tx


def test_relay_port_of_a_submission_sluice(exim, sluice_factory, outbound):
    # A second sluice as the submission path (in production its listener
    # has require_auth = yes) relays to SLUICE_RELAY_PORT; Exim relays for
    # it and still checks local recipients.
    sub = sluice_factory(exim.relay_port)
    n0 = len(outbound.messages)
    with smtplib.SMTP("127.0.0.1", sub.port, local_hostname="client.test", timeout=20) as s:
        s.ehlo()
        refused = s.sendmail("alice@example.net", ["out@remote.test", "nobody@example.net"],
                             b"Subject: outbound\r\n\r\nout\r\n")
    assert refused == {"nobody@example.net": (550, b"5.0.0 Unrouteable address")}, refused
    assert len(outbound.wait_messages(n0 + 1, timeout=15)) > n0, exim.log_tail()
    m = outbound.messages[-1]
    assert m.rcpts == ["out@remote.test"] and m.mail_from == "alice@example.net", m


def test_many_messages_on_one_connection_are_delivered_at_once(exim, front):
    # More than Exim's default smtp_accept_queue_per_connection (10) on one
    # upstream connection: localmacros.snippet turns that limit off, so
    # none waits for a queue run (this daemon has none).
    before = exim.mail_files("many")
    with smtplib.SMTP("127.0.0.1", front.port, local_hostname="client.test", timeout=20) as s:
        s.ehlo()
        for i in range(12):
            s.sendmail("a@example.com", ["many@example.net"], b"Subject: n%d\r\n\r\n%d\r\n" % (i, i))
    files = exim.wait_mail("many", 12, before=before, timeout=30)
    assert len(files) == 12, exim.log_tail()
    assert "no immediate delivery" not in exim.log()
