# SPDX-License-Identifier: GPL-2.0-or-later
"""mailauth's SPF from a client that is not the local host. Runs only
inside the network namespace test_mailauth_plugin.py::test_spf_from_a_real_address
makes (SLUICE_IN_NETNS=1): there the loopback device also holds 192.0.2.10
and 2001:db8::10, and the client connects from them, so libspf2 evaluates
for real: include:, mx (MX records on the daemon's resolver), a:, -all,
~all, the HELO identity for the null sender, refusal at MAIL, a resolver
that never answers.
"""

import os
import re
import smtplib
import time

import pytest

import harness
from dnsstub import DNSStub

pytestmark = pytest.mark.skipif(os.environ.get("SLUICE_IN_NETNS") != "1",
                                reason="runs inside the namespace of test_spf_from_a_real_address")

AUTHSERV = "mx.test"
CLIENT4, CLIENT6 = "192.0.2.10", "2001:db8::10"

WORLD = {
    ("TXT", "example.com"): "v=spf1 include:_spf.other.example mx -all",
    ("MX", "example.com"): "10 mx.example.com",
    ("A", "mx.example.com"): "192.0.2.10",
    ("AAAA", "mx.example.com"): "2001:db8::10",
    ("TXT", "_spf.other.example"): "v=spf1 a:relay.other.example ~all",
    ("A", "relay.other.example"): "198.51.100.7",
    ("TXT", "strict.example"): "v=spf1 ip4:198.51.100.0/24 -all",
    ("TXT", "soft.example"): "v=spf1 ip4:198.51.100.0/24 ~all",
    ("TXT", "helo.example"): "v=spf1 ip4:192.0.2.10 -all",
    ("TXT", "_dmarc.example.com"): "v=DMARC1; p=reject",
}

MSG = (b"From: Ann <ann@example.com>\r\nTo: bob@example.net\r\nSubject: hi\r\n"
       b"Date: Mon, 6 May 2024 10:00:00 +0200\r\nMessage-ID: <n1@example.com>\r\n\r\nhello\r\n")


def start(sluice_factory, fake, dns, **extra):
    conf = {"path": "mailauth", "authserv_id": AUTHSERV,
            "dns_servers": "127.0.0.1:%d" % dns.port, "dns_timeout": "1s", "deadline": "3s",
            # SPF is the point here: example.com's p=reject only tags
            "dmarc_reject": "tag"}
    conf.update(extra)
    sections = {"chain": {"plugins": "mailauth"}, "plugin mailauth": conf}
    sl = sluice_factory(fake.port, extra_sections=sections, start=False)
    # IPv6 clients too: the same port on ::1.
    sl.sections["server"]["listen"] = "127.0.0.1:%d, [::1]:%d" % (sl.port, sl.port)
    return sl.start()


def session(port, mail_from, helo="client.test", source=CLIENT4, msg=MSG):
    """(reply to MAIL, reply to end of data or None) from `source`."""
    s = smtplib.SMTP("::1" if ":" in source else "127.0.0.1", port, local_hostname=helo,
                     timeout=20, source_address=(source, 0))
    try:
        s.ehlo(helo)
        code, text = s.mail(mail_from)
        if code != 250:
            return (code, text.decode()), None
        assert s.rcpt("bob@example.net")[0] == 250
        code, text = s.data(msg)
        return (250, ""), (code, text.decode())
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            s.close()


def our_ar(data):
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    head = re.sub(r"\r\n[ \t]+", " ", head)
    return [ln.split(":", 1)[1].strip() for ln in head.split("\r\n")
            if ln.lower().startswith("authentication-results:") and
            ln.split(":", 1)[1].strip().lower().startswith(AUTHSERV + ";")]


@pytest.fixture
def dns():
    d = DNSStub(WORLD)
    yield d
    d.close()


def test_pass_through_include_and_mx(fake, sluice_factory, dns):
    sl = start(sluice_factory, fake, dns)
    mail, eod = session(sl.port, "ann@example.com")
    assert eod and eod[0] == 250, (mail, eod)
    v = our_ar(fake.wait_messages(1)[-1].data)
    assert len(v) == 1 and "spf=pass smtp.mailfrom=ann@example.com" in v[0], v
    assert "dmarc=pass" in v[0], v
    asked = {(t, n) for t, n in dns.queries}
    assert ("MX", "example.com") in asked and ("A", "mx.example.com") in asked, asked
    assert ("TXT", "_spf.other.example") in asked, asked
    # IPv6 client: the MX host's AAAA record.
    mail, eod = session(sl.port, "ann@example.com", source=CLIENT6)
    assert eod and eod[0] == 250, (mail, eod)
    v = our_ar(fake.wait_messages(2)[-1].data)
    assert "spf=pass" in v[0], v


def test_fail_refused_at_mail_when_configured(fake, sluice_factory, dns):
    sl = start(sluice_factory, fake, dns, spf_fail="reject")
    mail, eod = session(sl.port, "x@strict.example")
    assert mail[0] == 550 and mail[1].startswith("5.7.23"), mail
    assert "strict.example" in mail[1] and CLIENT4 in mail[1], mail
    assert not [m for m in fake.messages if m.accepted]
    # the same failure is only tagged by default
    sl2 = start(sluice_factory, fake, dns)
    mail, eod = session(sl2.port, "x@strict.example")
    assert eod and eod[0] == 250
    v = our_ar(fake.wait_messages(1)[-1].data)
    assert "spf=fail smtp.mailfrom=x@strict.example" in v[0], v


def test_softfail_and_helo_identity(fake, sluice_factory, dns):
    sl = start(sluice_factory, fake, dns)
    mail, eod = session(sl.port, "x@soft.example")
    assert eod and eod[0] == 250
    v = our_ar(fake.wait_messages(1)[-1].data)
    assert "spf=softfail smtp.mailfrom=x@soft.example" in v[0], v
    # null sender: the HELO name is the identity
    mail, eod = session(sl.port, "", helo="helo.example")
    assert eod and eod[0] == 250
    v = our_ar(fake.wait_messages(2)[-1].data)
    assert "spf=pass smtp.helo=helo.example" in v[0], v
    # the log line comes just after the upstream's reply: wait for it
    assert sl.wait_log(r" plugins=.*", timeout=5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [ln for ln in list(sl.lines) if " plugins=" in ln]
        if len(lines) >= 2:
            break
        time.sleep(0.05)
    assert "SPF_SOFTFAIL" in lines[0] and "SPF_PASS" in lines[1], lines


def test_silent_resolver_is_temperror_after_the_deadline(fake, sluice_factory):
    silent = DNSStub({}, silent={"TXT", "A", "MX", "AAAA"})
    try:
        sl = start(sluice_factory, fake, silent, spf_fail="reject", dns_timeout="5s",
                   deadline="1s")
        t0 = time.monotonic()
        mail, eod = session(sl.port, "ann@example.com")
        assert eod and eod[0] == 250, (mail, eod)
        assert time.monotonic() - t0 < 6
        v = our_ar(fake.wait_messages(1)[-1].data)
        assert "spf=temperror" in v[0] and "dmarc=temperror" in v[0], v
    finally:
        silent.close()
