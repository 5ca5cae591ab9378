# SPDX-License-Identifier: GPL-2.0-or-later
"""The milter plugin with real milters from Debian (milters.py starts each
privately, on loopback or a unix socket): rspamd in milter mode, OpenDKIM
signing and verifying, clamav-milter in front of a private clamd; and
several milters in one chain with a native plugin between them. What the
client hears and what the upstream receives are checked, as a user of
those milters behind Postfix would see them (test_milter_fixtures.py shows
the same milters behind Postfix).
"""

import base64
import re
import threading

import pytest

import milters
import plugkit

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*" + b"GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(body=b"Hello milter.\r\nSecond line.\r\n", sender=b"a@example.com", extra=()):
    head = [b"From: Sender <" + sender + b">", b"To: b@example.net",
            b"Subject: interop", b"Date: Mon, 01 Jan 2024 12:00:00 +0000",
            b"Message-ID: <interop-%d@example.com>" % id(body)]
    head += list(extra)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def mime(name, data):
    return message(extra=[b"MIME-Version: 1.0", b'Content-Type: multipart/mixed; boundary="=_b"'],
                   body=b"\r\n".join([
                       b"--=_b", b"Content-Type: text/plain", b"", b"See the attachment.",
                       b"--=_b", b"Content-Type: application/octet-stream",
                       b"Content-Transfer-Encoding: base64",
                       b'Content-Disposition: attachment; filename="' + name + b'"', b"",
                       base64.encodebytes(data).replace(b"\n", b"\r\n").rstrip(),
                       b"--=_b--", b""]))


def fields(data):
    head = data.split(b"\r\n\r\n", 1)[0]
    out = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + b"\r\n" + line)
        else:
            n, _, v = line.partition(b":")
            out.append((n, v.strip()))
    return out


def values(data, name):
    return [v for n, v in fields(data) if n.lower() == name.lower().encode()]


@pytest.fixture(scope="module")
def real():
    """Every real milter that can run here, started at once."""
    wanted = {
        "rspamd": (milters.RspamdMilter, {}),
        "dkim_sign": (milters.OpenDKIM, {"mode": "s"}),
        "clamav": (milters.ClamavMilter, {}),
    }
    up, skipped, errors = {}, {}, {}
    for name, (cls, kw) in wanted.items():
        why = cls.unavailable()
        if why:
            skipped[name] = why
        else:
            up[name] = cls(**kw)

    def run(name, m):
        try:
            m.start()
        except Exception as e:  # reported by the tests that need it
            errors[name] = e
    threads = [threading.Thread(target=run, args=item) for item in up.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # The verifier needs the signer's public key.
    if "dkim_sign" in up and "dkim_sign" not in errors and not milters.OpenDKIM.unavailable():
        s = up["dkim_sign"]
        v = milters.OpenDKIM(mode="v", public_keys={s.record_name: s.txt_record})
        try:
            v.start()
            up["dkim_verify"] = v
        except Exception as e:
            errors["dkim_verify"] = e

    class Env:
        def need(self, name):
            if name in skipped:
                pytest.skip("%s: %s" % (name, skipped[name]))
            if name in errors:
                raise AssertionError("%s did not start: %r" % (name, errors[name]))
            return up[name]
    yield Env()
    for m in up.values():
        try:
            m.stop()
        except Exception:
            pass


def chain(sluice_factory, fake, members, failure="tempfail"):
    """members: [(name, milter fixture | (so, keys))] in chain order."""
    sections = {"chain": {"plugins": " ".join(n for n, _ in members)}}
    for name, m in members:
        if isinstance(m, tuple):
            so, keys = m
            sec = {"path": plugkit.plugin_path(so)}
            sec.update(keys)
        else:
            sec = {"path": plugkit.os.path.join(plugkit.os.path.abspath(plugkit.BUILD),
                                                 "plugins", "milter.so"),
                   "socket": m.socket, "failure": failure}
        sections["plugin " + name] = sec
    return sluice_factory(fake.port, extra_sections=sections)


def test_rspamd_rejects_gtube_with_its_reply(real, fake, sluice_factory):
    rs = real.need("rspamd")
    sl = chain(sluice_factory, fake, [("rspamd", rs)])
    d = plugkit.send(sl.port, body=message(body=b"Spam test:\r\n" + GTUBE + b"\r\n"))
    assert d["eod"].raw == b"554 5.7.1 Gtube pattern\r\n", d
    assert not [m for m in fake.messages if m.accepted]


def test_rspamd_adds_its_headers_to_clean_mail(real, fake, sluice_factory):
    rs = real.need("rspamd")
    sl = chain(sluice_factory, fake, [("rspamd", rs)])
    d = plugkit.send(sl.port, body=message())
    assert d["eod"].code == 250, d
    data = fake.wait_messages(1)[0].data
    res = values(data, "X-Spamd-Result")
    assert len(res) == 1 and res[0].startswith(b"default: False ["), fields(data)
    assert values(data, "X-Rspamd-Server")
    assert values(data, "X-Spam-Status")[0].startswith(b"No, score=")
    # rspamd reads sluice's `i` macro as the queue id.
    qid = values(data, "X-Rspamd-Queue-Id")
    assert qid and re.match(rb"^\S+\.1$", qid[0]), qid


def test_opendkim_signs_and_the_signature_verifies(real, fake, sluice_factory):
    signer = real.need("dkim_sign")
    dkim = pytest.importorskip("dkim")
    sl = chain(sluice_factory, fake, [("dkim", signer)])
    d = plugkit.send(sl.port, body=message())
    assert d["eod"].code == 250, d
    data = fake.wait_messages(1)[0].data
    sig = values(data, "DKIM-Signature")
    assert len(sig) == 1, fields(data)
    assert b"d=example.com" in sig[0] and b"s=sel" in sig[0]
    assert dkim.verify(data, dnsfunc=signer.dnsfunc)
    assert not dkim.verify(data.replace(b"Hello milter.", b"Hello mutter."),
                           dnsfunc=signer.dnsfunc)


def test_opendkim_verify_adds_authentication_results(real, fake, sluice_factory):
    signer = real.need("dkim_sign")
    verifier = real.need("dkim_verify")
    dkim = pytest.importorskip("dkim")
    with open(signer.key_path, "rb") as f:
        key = f.read()
    msg = message()
    msg = dkim.sign(msg, b"sel", b"example.com", key, canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=[b"From", b"To", b"Subject", b"Date"]) + msg
    sl = chain(sluice_factory, fake, [("verify", verifier)])
    for body in (msg, msg.replace(b"Second line.", b"Second line!")):
        assert plugkit.send(sl.port, body=body)["eod"].code == 250
    got = fake.wait_messages(2)
    ar = [re.sub(rb"\s+", b" ", values(m.data, "Authentication-Results")[0]) for m in got]
    assert ar[0].startswith(b"dkim.test; dkim=pass"), ar
    assert b"dkim=fail" in ar[1], ar


def test_clamav_milter_rejects_eicar(real, fake, sluice_factory):
    clam = real.need("clamav")
    sl = chain(sluice_factory, fake, [("clamav", clam)])
    d = plugkit.send(sl.port, body=mime(b"eicar.com", milters.eicar()))
    assert d["eod"].raw == b"550 5.7.1 Virus found: Test.EICAR.NDB.UNOFFICIAL\r\n", d
    d = plugkit.send(sl.port, body=mime(b"notes.txt", b"nothing to see\r\n" * 50))
    assert d["eod"].code == 250, d
    data = [m for m in fake.wait_messages(1) if m.accepted][0].data
    assert values(data, "X-Virus-Status") == [b"Clean"]


def test_several_milters_and_a_native_plugin_in_order(real, fake, sluice_factory):
    """clamav-milter, a native plugin, rspamd, then OpenDKIM signing: each
    sees the edits of those before it; the signature (made last) covers
    the message as delivered."""
    clam, rs, signer = real.need("clamav"), real.need("rspamd"), real.need("dkim_sign")
    dkim = pytest.importorskip("dkim")
    sl = chain(sluice_factory, fake, [
        ("clamav", clam), ("native", ("testplug", {"add_header": "X-Native: yes"})),
        ("rspamd", rs), ("dkim", signer)])
    d = plugkit.send(sl.port, body=message())
    assert d["eod"].code == 250, d
    data = fake.wait_messages(1)[0].data
    names = [n for n, _ in fields(data)]
    assert b"X-Virus-Status" in names and b"X-Native" in names and b"X-Spamd-Result" in names
    assert names.count(b"DKIM-Signature") == 1
    assert dkim.verify(data, dnsfunc=signer.dnsfunc)
    # GTUBE still stops the chain at rspamd: the signer never sees it.
    d = plugkit.send(sl.port, body=message(body=GTUBE + b"\r\n"))
    assert d["eod"].raw == b"554 5.7.1 Gtube pattern\r\n", d
