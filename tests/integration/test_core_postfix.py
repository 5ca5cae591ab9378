# SPDX-License-Identifier: GPL-2.0-or-later
"""End to end into a real, private Postfix (one instance for this file):
delivery to a Maildir, dot-stuffing preserved, XCLIENT makes Postfix see
the original client address, Postfix's own recipient validation relayed,
and STARTTLS from the client in front of it."""

import email
import re
import time
from email import policy

import pytest

import harness
from harness import Client


@pytest.fixture
def front(postfix, sluice_factory):
    return sluice_factory(postfix.port)


def read_mail(path):
    with open(path, "rb") as f:
        return f.read()


def test_swaks_delivery_to_maildir(postfix, front):
    before = postfix.mail_files()
    r = harness.swaks("--server", "127.0.0.1:%d" % front.port, "--from", "a@example.com",
                      "--to", "pf1@example.net", "--header", "Subject: real postfix",
                      "--body", "delivered through sluice")
    assert r.returncode == 0, r.stdout + r.stderr
    # Postfix's own queue id comes back in the final reply.
    # Postfix's reply to BDAT LAST (sluice forwards with BDAT: Postfix
    # offers CHUNKING) says "Ok: N bytes queued as ID".
    assert re.search(r"<- +250 2\.0\.0 Ok: (\d+ bytes )?queued as [0-9A-F]+", r.stdout), r.stdout
    files = postfix.wait_mail(1, before=before)
    assert len(files) == 1, postfix.log_tail()
    raw = read_mail(files[0])
    assert b"Subject: real postfix" in raw
    assert b"delivered through sluice" in raw
    assert b"Delivered-To: pf1@example.net" in raw


def test_dot_stuffing_into_maildir(postfix, front):
    before = postfix.mail_files()
    body = (b"Subject: dots\r\n\r\nline one\r\n.\r\n..\r\n.hidden\r\n"
            b"..two dots\r\nlast\r\n")
    with Client(front.port) as c:
        c.greeting()
        c.ehlo()
        c.expect("MAIL FROM:<a@example.com>", 250)
        c.expect("RCPT TO:<dots@example.net>", 250)
        c.expect("DATA", 354)
        c.send(harness.dot_stuff(body) + b".\r\n")
        r = c.reply()
        assert r.code == 250, r
    f = postfix.wait_mail(1, before=before)
    assert f, postfix.log_tail()
    raw = read_mail(f[0])
    text = raw.split(b"\n\n", 1)[1]   # Maildir files have LF line endings
    assert text == b"line one\n.\n..\n.hidden\n..two dots\nlast\n", raw


def test_xclient_original_client_address(postfix, front):
    before = postfix.mail_files()
    assert harness.smtp_send(front.port, "x@example.com", ["xclient@example.net"],
                             b"Subject: xclient\r\n\r\nfrom 127.0.0.2\r\n",
                             source="127.0.0.2") == {}
    f = postfix.wait_mail(1, before=before)
    assert f, postfix.log_tail()
    msg = email.message_from_bytes(read_mail(f[0]), policy=policy.compat32)
    received = msg.get_all("Received")[0]
    assert "127.0.0.2" in received, received


def test_xclient_original_helo(postfix, front):
    before = postfix.mail_files()
    assert harness.smtp_send(front.port, "x@example.com", ["helo@example.net"],
                             b"Subject: helo\r\n\r\nhelo\r\n", source="127.0.0.2") == {}
    f = postfix.wait_mail(1, before=before)
    assert f, postfix.log_tail()
    msg = email.message_from_bytes(read_mail(f[0]), policy=policy.compat32)
    received = msg.get_all("Received")[0]
    # Postfix's HELO checks and Received header should see the client's name.
    assert received.startswith("from client.test "), received


def test_postfix_judges_the_clients_helo(postfix, front):
    """Hardening defect 7: a HELO Postfix refuses directly is refused through
    sluice too, also when the client changes it later in the session."""
    # Directly: Postfix refuses the name (at RCPT, smtpd_delay_reject).
    with Client(postfix.port) as c:
        c.greeting()
        c.ehlo("bad!host")
        c.expect("MAIL FROM:<a@example.com>", 250)
        direct = c.cmd("RCPT TO:<helo@example.net>")
    assert direct.code // 100 == 5 and "Helo command rejected" in direct.text, direct
    # Through sluice: the same answer.
    with Client(front.port) as c:
        c.greeting()
        c.ehlo("bad!host")
        c.expect("MAIL FROM:<a@example.com>", 250)
        r = c.cmd("RCPT TO:<helo@example.net>")
        assert r.code // 100 == 5 and "Helo command rejected" in r.text, r
    # A good name first, then a bad one in the same session: judged again.
    with Client(front.port) as c:
        c.greeting()
        c.ehlo("client.test")
        c.expect("MAIL FROM:<a@example.com>", 250)
        c.expect("RCPT TO:<helo@example.net>", 250)
        c.expect("RSET", 250)
        c.ehlo("bad!host")
        c.expect("MAIL FROM:<a@example.com>", 250)
        r = c.cmd("RCPT TO:<helo@example.net>")
        assert r.code // 100 == 5 and "Helo command rejected" in r.text, r


def test_postfix_recipient_validation_relayed(postfix, front):
    with Client(front.port) as c:
        c.greeting()
        c.ehlo()
        c.expect("MAIL FROM:<a@example.com>", 250)
        # postfix.py makes Postfix refuse exactly this recipient.
        r = c.cmd("RCPT TO:<unknown@example.net>")
        assert (r.code, r.text) == (
            550, "5.1.1 <unknown@example.net>: Recipient address rejected: User unknown"), r
        c.expect("RCPT TO:<ok@example.net>", 250)


def test_many_messages_one_session(postfix, front):
    before = postfix.mail_files()
    import smtplib
    with smtplib.SMTP("127.0.0.1", front.port, timeout=20) as s:
        s.ehlo("client.test")
        for i in range(5):
            s.sendmail("a@example.com", ["many%d@example.net" % i],
                       b"Subject: many %d\r\n\r\nbody %d\r\n" % (i, i))
    files = postfix.wait_mail(5, before=before)
    assert len(files) == 5, postfix.log_tail()


def test_8bit_into_postfix(postfix, front):
    before = postfix.mail_files()
    body = "Subject: utf8\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" \
           "Content-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n"
    assert harness.smtp_send(front.port, msg=body.encode(), mail_options=["BODY=8BITMIME"]) == {}
    f = postfix.wait_mail(1, before=before)
    assert f and "Grüße".encode() in read_mail(f[0])


def test_tls_client_to_postfix(postfix, sluice_factory, certs):
    sl = sluice_factory(postfix.port, server={"tls_cert_file": certs["cert"],
                                              "tls_key_file": certs["key"]})
    before = postfix.mail_files()
    r = harness.swaks("--server", "127.0.0.1:%d" % sl.port, "--tls", "--tls-verify",
                      "--tls-ca-path", certs["ca"], "--from", "a@example.com",
                      "--to", "tls@example.net", "--body", "tls end to end")
    assert r.returncode == 0, r.stdout + r.stderr
    f = postfix.wait_mail(1, before=before)
    assert f and b"tls end to end" in read_mail(f[0])


def test_log_line_carries_postfix_reply(postfix, front):
    assert harness.smtp_send(front.port) == {}
    t = front.wait_transactions(1)
    assert t and t[-1]["verdict"] == "accepted", front.output()
    assert re.match(r"250 2\.0\.0 Ok: (\d+ bytes )?queued as [0-9A-F]+", t[-1]["upstream"]), t[-1]
    time.sleep(0.1)
