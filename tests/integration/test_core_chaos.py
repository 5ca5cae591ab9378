# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile clients at random: garbage bytes, NULs, 8-bit, over-long lines,
random pipelined command mixes, bare CR/LF inside DATA, disconnects at any
point, upstream faults. Seeded, bounded in count and time. Whatever happens,
the daemon must stay up (the fixture's teardown fails on a crash, a non-zero
exit or a sanitizer report), every reply must be a well-formed SMTP reply,
nothing the client did not complete may reach the upstream, and a normal
message must still go through at the end."""

import random
import re
import socket
import time

import harness
from fakemta import CLOSE

REPLY = re.compile(rb"^[2-5][0-9][0-9][ -]")

VERBS = [b"EHLO x.test", b"HELO x.test", b"MAIL FROM:<a@example.com>", b"MAIL FROM:<>",
         b"MAIL FROM:<bad", b"RCPT TO:<b@example.net>", b"RCPT TO:<\"q u\"@example.net>",
         b"RCPT TO:<@route:c@example.net> NOTIFY=SUCCESS", b"DATA", b"RSET", b"NOOP",
         b"VRFY x", b"HELP", b"STARTTLS", b"BDAT 10", b"AUTH PLAIN", b"QUIT", b"",
         b"MAIL FROM:<a@example.com> SIZE=999999999999", b"RCPT TO:<b@example.net> FOO=BAR"]


def noise(rng):
    kind = rng.randrange(6)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    if kind == 1:
        return b"X" * rng.choice([511, 512, 513, 2000, 70000]) + b"\r\n"
    if kind == 2:
        return b"NOOP\x00\r\n"
    if kind == 3:
        return "MAIL FROM:<zoë@exämple.com>\r\n".encode()
    if kind == 4:
        return rng.choice([b"\r", b"\n", b"\r\r\n", b".\r\n", b"\n.\n"])
    return rng.choice(VERBS) + b"\r\n"


def data_body(rng):
    parts = [b"Subject: chaos\r\n\r\n"]
    for _ in range(rng.randrange(1, 20)):
        parts.append(rng.choice([b"line\r\n", b".dot\r\n", b"..\r\n", b"bare\nLF\r\n",
                                 b"bare\rCR\r\n", b"\n.\n", b"\r\n.\n", b"8bit \xe9\r\n",
                                 b"x" * 1200 + b"\r\n"]))
    if rng.random() < 0.8:
        parts.append(b".\r\n")
    return b"".join(parts)


def chaos_session(port, rng, deadline, sent=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    got = b""
    stream = b""
    try:
        s.settimeout(0.05)
        ops = rng.randrange(1, 25)
        for _ in range(ops):
            if time.monotonic() > deadline:
                break
            r = rng.random()
            if r < 0.45:
                payload = b"".join(noise(rng) for _ in range(rng.randrange(1, 6)))
            elif r < 0.75:
                payload = (b"EHLO c.test\r\nMAIL FROM:<a@example.com>\r\n"
                           b"RCPT TO:<b@example.net>\r\nDATA\r\n" + data_body(rng))
            else:
                payload = rng.choice(VERBS) + b"\r\n"
            try:
                s.sendall(payload)
            except OSError:
                break
            stream += payload
            if rng.random() < 0.1:
                break  # vanish mid-way
            try:
                got += s.recv(65536)
            except (socket.timeout, OSError):
                pass
    finally:
        s.close()
        if sent is not None:
            sent.append(stream)
    return got


def test_random_hostile_clients(fake_factory, sluice_factory):
    rng = random.Random(20261127)
    faults_on = [True]  # the upstream's random 451s stop for the final check
    fake = fake_factory(faults={"RCPT": lambda sess, arg: ("451 4.3.0 busy" if
                                                            faults_on[0] and rng.random() < 0.1
                                                            else None)})
    sl = sluice_factory(fake.port, server={"max_errors": "50", "command_timeout": "5s",
                                           "data_timeout": "5s", "max_line_length": "998"})
    deadline = time.monotonic() + 20
    replies = b""
    sent = []
    n = 0
    while time.monotonic() < deadline and n < 300:
        replies += chaos_session(sl.port, rng, deadline, sent)
        n += 1
    assert sl.alive(), sl.output()
    assert n >= 50, n  # the load really happened
    for line in replies.split(b"\r\n"):
        if line:
            assert REPLY.match(line), line[:120]
    # Every message the upstream got is one a client sent after DATA, never
    # a fragment or a command line taken for one: a body of ours, or exactly
    # the bytes a client sent between a lone DATA (answered 354: MAIL and
    # RCPT went through) and a dot line, whatever they look like (a random
    # "MAIL FROM:<>", "RCPT", "DATA", then a MAIL line and "." is one).
    for m in fake.messages:
        ours = m.data.startswith(b"Subject: chaos\r\n\r\n")
        framed = b"DATA\r\n" + m.data + b".\r\n"
        assert ours or any(framed in st for st in sent), m.data[:80]
        # Bare LF/CR are refused by default: nothing forwarded carries one.
        rest = m.data.replace(b"\r\n", b"")
        assert b"\n" not in rest and b"\r" not in rest, m.data[:200]
    assert len(fake.messages) > 0  # some complete transactions went through
    # And the daemon still serves a normal client (the upstream no longer
    # refuses at random: its 451 would be relayed, correctly).
    faults_on[0] = False
    assert harness.smtp_send(sl.port) == {}
