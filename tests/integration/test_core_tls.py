# SPDX-License-Identifier: GPL-2.0-or-later
"""STARTTLS from the client: swaks --tls with a verified certificate made at
test time, smtplib, the session restart after TLS, and the CVE-2011-0411
injection case (bytes pipelined after STARTTLS are discarded)."""

import re
import ssl

import pytest

import harness
from harness import Client, transaction


@pytest.fixture
def tls_sluice(fake, sluice_factory, certs):
    return sluice_factory(fake.port, server={"tls_cert_file": certs["cert"],
                                             "tls_key_file": certs["key"]})


def test_starttls_offered(tls_sluice):
    with Client(tls_sluice.port) as c:
        c.greeting()
        r = c.ehlo()
        assert any(ln.upper() == "STARTTLS" for ln in r.lines[1:]), r


def test_swaks_tls(fake, tls_sluice, certs):
    r = harness.swaks("--server", "127.0.0.1:%d" % tls_sluice.port, "--tls",
                      "--tls-verify", "--tls-ca-path", certs["ca"],
                      "--from", "a@example.com", "--to", "b@example.net",
                      "--header", "Subject: over tls", "--body", "secret body")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "<~  250 " in out or re.search(r"<~ +250", out), out
    m = fake.wait_messages(1)[0]
    assert b"secret body" in m.data
    t = tls_sluice.wait_transactions(1)
    assert t and t[0].get("tls") not in (None, "", "no", "none"), t


def test_smtplib_starttls_and_restart(fake, tls_sluice, certs):
    assert harness.smtp_send(tls_sluice.port, starttls_ca=certs["ca"]) == {}
    assert len(fake.wait_messages(1)) == 1


def test_state_reset_after_starttls(tls_sluice, certs):
    with Client(tls_sluice.port) as c:
        c.greeting()
        c.ehlo()
        c.expect("STARTTLS", 220)
        c.starttls(certs["ca"])
        # RFC 3207: after TLS the session restarts; MAIL before EHLO is refused.
        c.expect("MAIL FROM:<a@example.com>", 503, "5.5.1")
        r = c.ehlo()
        assert not any(ln.upper() == "STARTTLS" for ln in r.lines[1:]), r
        c.expect("STARTTLS", 503, "5.5.1")
        assert transaction(c).code == 250


def test_starttls_injection_discarded(fake, tls_sluice, certs):
    with Client(tls_sluice.port) as c:
        c.greeting()
        c.ehlo()
        c.send(b"STARTTLS\r\nNOOP\r\nMAIL FROM:<injected@example.com>\r\n")
        r = c.reply()
        if r.code != 220:
            # Rejecting a pipelined STARTTLS outright is also safe.
            assert r.code >= 500, r
            return
        # Nothing beyond the 220 came in plaintext.
        assert c.buf == b"", c.buf
        c.starttls(certs["ca"])
        # The injected NOOP/MAIL must not be answered inside TLS.
        extra, closed = c.drain(1.5)
        assert extra == b"" and not closed, "answer to injected command: %r" % extra
        c.ehlo()
        # And the injected MAIL did not open a transaction.
        c.expect("RCPT TO:<b@example.net>", 503, "5.5.1")
    assert all(not any("injected" in x for x in s.command_strs()) for s in fake.sessions)


def test_starttls_with_garbage_handshake(tls_sluice):
    with Client(tls_sluice.port) as c:
        c.greeting()
        c.ehlo()
        c.expect("STARTTLS", 220)
        c.send(b"this is not a TLS ClientHello\r\n" * 4)
        assert c.is_closed(10)
    # The daemon survives and serves the next client.
    assert harness.smtp_send(tls_sluice.port) == {}


def test_plain_client_still_served(fake, tls_sluice):
    assert harness.smtp_send(tls_sluice.port) == {}
    assert len(fake.wait_messages(1)) == 1


def test_tls_protocol_and_verify(tls_sluice, certs):
    import socket
    s = socket.create_connection(("127.0.0.1", tls_sluice.port), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220")
    s.sendall(b"EHLO x\r\n")
    while True:
        ln = f.readline()
        if ln[3:4] == b" ":
            break
    s.sendall(b"STARTTLS\r\n")
    assert f.readline().startswith(b"220")
    ctx = ssl.create_default_context(cafile=certs["ca"])
    t = ctx.wrap_socket(s, server_hostname="localhost")
    assert t.version() in ("TLSv1.2", "TLSv1.3")
    t.close()
