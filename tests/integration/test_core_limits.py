# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile input and limits: SMTP smuggling (every sequence, both bare
newline policies), message size, line lengths, recipients, errors per
session, connection limits, timeouts, NUL bytes."""

import time

import pytest

import harness
from harness import Client, transaction


def session(sl, source=None, name="client.test"):
    c = Client(sl.port, source=source)
    c.greeting()
    c.ehlo(name)
    return c


def start_data(c, rcpts=("b@example.net",)):
    c.expect("MAIL FROM:<a@example.com>", 250)
    for r in rcpts:
        c.expect("RCPT TO:<%s>" % r, 250)
    c.expect("DATA", 354)


# ---- SMTP smuggling -----------------------------------------------------------
SMUGGLE = {
    "LF.LF": b"\n.\n",
    "CR.CR": b"\r.\r",
    "LF.CRLF": b"\n.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CR.LF": b"\r.\n",
    "CRLF.CR": b"\r\n.\r",
    "LF.CR": b"\n.\r",
    "CR.CRLF": b"\r.\r\n",
    "bareLF": b"\n",
    "bareCR": b"\r",
}
INNER = (b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.net>\r\n"
         b"DATA\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n")


def smuggle_payload(seq):
    return b"Subject: outer\r\n\r\nouter body" + seq + INNER


@pytest.mark.parametrize("name", list(SMUGGLE))
def test_smuggling_rejected_by_default(fake, sluice, name):
    with session(sluice) as c:
        start_data(c)
        c.send(smuggle_payload(SMUGGLE[name]) + b".\r\n")
        r = c.reply()
        assert (r.code, r.enh) == (550, "5.5.2"), r
        # Exactly one reply for the whole DATA: the inner MAIL/RCPT/DATA
        # were message content, not commands. (Closing afterwards is fine.)
        extra, closed = c.drain(1.0)
        assert extra == b"", "extra reply after the 550: %r" % extra
        if not closed:
            c.expect("NOOP", 250)
    time.sleep(0.3)
    assert fake.messages == []
    assert all(not any("evil@" in x for x in s.command_strs()) for s in fake.sessions)


@pytest.mark.parametrize("name", list(SMUGGLE))
def test_smuggling_normalized_keeps_boundary(fake_factory, sluice_factory, name):
    up = fake_factory()
    sl = sluice_factory(up.port, server={"bare_newline": "normalize"})
    with session(sl) as c:
        start_data(c)
        c.send(smuggle_payload(SMUGGLE[name]) + b".\r\n")
        r = c.reply()
        assert r.code == 250, r
        extra, _ = c.drain(1.0)
        assert extra == b"", "extra reply: %r" % extra
        c.expect("QUIT", 221)
    msgs = up.wait_messages(1)
    time.sleep(0.3)
    assert len(up.all_messages) == 1, up.all_messages
    m = msgs[0]
    # One message, carrying the would-be second transaction as content.
    assert b"outer body" in m.data and b"smuggled body" in m.data
    assert b"MAIL FROM:<evil@attacker.example>" in m.data
    assert m.mail_from == "a@example.com" and m.rcpts == ["b@example.net"]
    # Canonical CRLF on the wire: no bare CR or LF left.
    stripped = m.raw.replace(b"\r\n", b"")
    assert b"\r" not in stripped and b"\n" not in stripped, m.raw
    assert sum(1 for v in up.tx_sessions[0].verbs() if v == "DATA") == 1


def test_dot_stuffing_roundtrip(fake, sluice):
    body = (b"Subject: dots\r\n\r\n.\r\n..\r\n...\r\n.leading\r\n. space\r\n"
            b"middle . dot\r\n.\r\nend\r\n")
    with session(sluice) as c:
        start_data(c)
        c.send(harness.dot_stuff(body) + b".\r\n")
        assert c.reply().code == 250
    m = fake.wait_messages(1)[0]
    assert m.data == body
    assert m.raw == harness.dot_stuff(body) + b".\r\n"


def test_empty_message(fake, sluice):
    with session(sluice) as c:
        start_data(c)
        c.send(b".\r\n")
        r = c.reply()
        assert r.code in (250, 554), r
    if r.code == 250:
        assert fake.wait_messages(1)[0].data == b""


def test_message_ending_split_across_writes(fake, sluice):
    with session(sluice) as c:
        start_data(c)
        for piece in (b"Subject: s\r\n\r\nbody\r", b"\n", b".", b"\r", b"\n"):
            c.send(piece)
            time.sleep(0.1)
        assert c.reply().code == 250
    assert fake.wait_messages(1)[0].data == b"Subject: s\r\n\r\nbody\r\n"


# ---- size --------------------------------------------------------------------
def test_size_advertised_and_mail_size_refused(fake, sluice_factory):
    sl = sluice_factory(fake.port, server={"max_message_size": "10k"})
    with session(sl) as c:
        r = c.cmd("EHLO client.test")
        sizes = [ln for ln in r.lines if ln.upper().startswith("SIZE")]
        assert sizes == ["SIZE 10240"], r
        c.expect("MAIL FROM:<a@example.com> SIZE=20000", 552, "5.3.4")
        c.expect("MAIL FROM:<a@example.com> SIZE=1000", 250)


def test_size_actual_bytes_refused(fake, sluice_factory):
    sl = sluice_factory(fake.port, server={"max_message_size": "10k"})
    with session(sl) as c:
        start_data(c)
        c.send(b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 400 + b".\r\n")
        r = c.reply()
        assert (r.code, r.enh) == (552, "5.3.4"), r
        # Session continues; a small message still goes through.
        assert transaction(c).code == 250
    msgs = fake.wait_messages(1)
    time.sleep(0.3)
    assert len(fake.all_messages) == 1 and b"big" not in msgs[0].data


def test_large_message_spooled(fake, sluice_factory):
    sl = sluice_factory(fake.port, server={"memory_buffer": "16k", "max_message_size": "8M"})
    body = b"Subject: large\r\n\r\n" + b"".join(b"%07d %s\r\n" % (i, b"z" * 60)
                                               for i in range(40000))
    assert harness.smtp_send(sl.port, msg=body, timeout=60) == {}
    m = fake.wait_messages(1, timeout=30)[0]
    assert m.data == body


# ---- line lengths -----------------------------------------------------------
def test_command_line_too_long(sluice):
    with session(sluice) as c:
        c.expect("NOOP " + "x" * 600, 500, "5.5.2")
        c.expect("MAIL FROM:<%s@example.com>" % ("a" * 600), 500, "5.5.2")
        # The session survives.
        c.expect("NOOP", 250)


def test_command_line_at_limit_ok(sluice):
    with session(sluice) as c:
        # 512 octets including CRLF is allowed.
        c.expect("NOOP " + "x" * (512 - 2 - 5), 250)


def test_text_line_too_long_rejected(fake, sluice):
    with session(sluice) as c:
        start_data(c)
        c.send(b"Subject: long\r\n\r\n" + b"L" * 1200 + b"\r\nshort\r\n.\r\n")
        r = c.reply()
        assert r.code >= 500 and r.enh == "5.5.2", r
    time.sleep(0.3)
    assert fake.messages == []


def test_text_line_too_long_passed(fake, sluice_factory):
    sl = sluice_factory(fake.port, server={"long_lines": "pass"})
    body = b"Subject: long\r\n\r\n" + b"L" * 1200 + b"\r\nshort\r\n"
    with session(sl) as c:
        start_data(c)
        c.send(body + b".\r\n")
        assert c.reply().code == 250
    assert fake.wait_messages(1)[0].data == body


def test_text_line_998_ok(fake, sluice):
    body = b"Subject: l\r\n\r\n" + b"k" * 998 + b"\r\n"
    with session(sluice) as c:
        start_data(c)
        c.send(body + b".\r\n")
        assert c.reply().code == 250
    assert fake.wait_messages(1)[0].data == body


# ---- recipients, errors -----------------------------------------------------------
def test_too_many_recipients(fake, sluice_factory):
    sl = sluice_factory(fake.port, server={"max_recipients": "3"})
    with session(sl) as c:
        c.expect("MAIL FROM:<a@example.com>", 250)
        for i in range(3):
            c.expect("RCPT TO:<r%d@example.net>" % i, 250)
        c.expect("RCPT TO:<r3@example.net>", 452, "4.5.3")
        c.expect("DATA", 354)
        c.send(b"x\r\n.\r\n")
        assert c.reply().code == 250
    assert fake.wait_messages(1)[0].rcpts == ["r0@example.net", "r1@example.net", "r2@example.net"]


def test_errors_per_session(sluice_factory, fake):
    sl = sluice_factory(fake.port, server={"max_errors": "3"})
    with session(sl) as c:
        codes = []
        for _ in range(10):
            try:
                codes.append(c.cmd("BOGUS").code)
            except harness.ConnectionClosed:
                break
            if codes[-1] == 421:
                break
        assert codes[-1] == 421, codes
        assert len(codes) <= 5, codes
        assert c.is_closed()


def test_nul_in_command(sluice):
    with session(sluice) as c:
        r = c.cmd("NOOP\0hidden")
        assert r.code >= 500, r
        r = c.cmd("MAIL FROM:<a\0b@example.com>")
        assert r.code in (500, 501), r
        c.expect("NOOP", 250)


def test_nul_in_data_does_not_smuggle(fake, sluice):
    with session(sluice) as c:
        start_data(c)
        c.send(b"Subject: nul\r\n\r\nbefore\0after\r\n.\0\r\nstill body\r\n.\r\n")
        r = c.reply()
        assert r.code in (250, 550, 554), r
        extra, _ = c.drain(0.8)
        assert extra == b"", extra
    time.sleep(0.3)
    assert len(fake.all_messages) <= 1
    for m in fake.messages:
        assert b"still body" in m.data


# ---- connections ----------------------------------------------------------------
def test_max_connections_total(fake, sluice_factory):
    sl = sluice_factory(fake.port, server={"max_connections": "3"})
    held = [Client(sl.port) for _ in range(3)]
    try:
        for c in held:
            c.greeting()
        with Client(sl.port) as extra:
            r = extra.reply()
            assert (r.code, r.enh) == (421, "4.7.0"), r
            assert extra.is_closed()
    finally:
        for c in held:
            c.close()
    time.sleep(0.5)
    assert harness.smtp_send(sl.port) == {}


def test_max_connections_per_ip(fake, sluice_factory):
    sl = sluice_factory(fake.port, server={"max_connections_per_ip": "2"})
    held = [Client(sl.port, source="127.0.0.5") for _ in range(2)]
    try:
        for c in held:
            c.greeting()
        with Client(sl.port, source="127.0.0.5") as extra:
            r = extra.reply()
            assert (r.code, r.enh) == (421, "4.7.0"), r
        # Another address is not affected.
        assert harness.smtp_send(sl.port, source="127.0.0.6") == {}
    finally:
        for c in held:
            c.close()


# ---- timeouts -------------------------------------------------------------------
def test_command_timeout(sluice_factory, fake):
    sl = sluice_factory(fake.port, server={"command_timeout": "2s"})
    with session(sl) as c:
        t0 = time.monotonic()
        r = c.reply(timeout=10)
        assert (r.code, r.enh) == (421, "4.4.2"), r
        assert 1.5 <= time.monotonic() - t0 <= 6
        assert c.is_closed()


def test_data_timeout_nothing_delivered(sluice_factory, fake):
    sl = sluice_factory(fake.port, server={"data_timeout": "2s"})
    with session(sl) as c:
        start_data(c)
        c.send(b"Subject: stalled\r\n\r\npartial")
        r = c.reply(timeout=10)
        assert r.code == 421 and r.enh.startswith("4.4"), r
        assert c.is_closed()
    time.sleep(0.5)
    assert fake.messages == []
    assert all("DATA" not in s.verbs() for s in fake.sessions)


def test_slow_client_does_not_block_others(fake, sluice_factory):
    import threading
    sl = sluice_factory(fake.port, server={"command_timeout": "20s"})
    stop = threading.Event()

    def trickle():
        with Client(sl.port) as c:
            c.greeting()
            for b in b"EHLO slow.example.with.a.long.name\r\n":
                if stop.is_set():
                    return
                c.send(bytes([b]))
                time.sleep(1)
    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    time.sleep(1.5)
    t0 = time.monotonic()
    for _ in range(3):
        assert harness.smtp_send(sl.port) == {}
    assert time.monotonic() - t0 < 5
    stop.set()
    assert len(fake.wait_messages(3)) == 3


def test_trickling_command_is_bounded(sluice_factory, fake):
    """A client sending a command a byte at a time cannot keep the session:
    the whole command must arrive within command_timeout."""
    sl = sluice_factory(fake.port, server={"command_timeout": "2s"})
    with Client(sl.port) as c:
        c.greeting()
        c.expect("EHLO trickle.test", 250)
        t0 = time.monotonic()
        closed = False
        for b in b"NOOP NOOP NOOP NOOP\r\n":
            try:
                c.send(bytes([b]))
            except OSError:
                closed = True
                break
            time.sleep(0.25)
            if c.is_closed(0.01):
                closed = True
                break
        assert closed or c.is_closed(5)
        assert time.monotonic() - t0 < 4.5


def test_trickling_data_is_bounded(sluice_factory, fake):
    """In DATA the clock restarts only when at least 1 KiB arrived: a byte a
    few times a second is cut off after data_timeout with 421 4.4.2, and
    nothing is delivered."""
    sl = sluice_factory(fake.port, server={"data_timeout": "2s"})
    with session(sl) as c:
        start_data(c)
        t0 = time.monotonic()
        got = None
        for _ in range(40):
            try:
                c.send(b"x")
            except OSError:
                break
            try:
                got = c.reply(timeout=0.2)
                break
            except Exception:
                continue
        assert got is not None and got.code == 421 and got.enh.startswith("4.4"), got
        assert time.monotonic() - t0 < 4.5
    time.sleep(0.3)
    assert fake.messages == []
