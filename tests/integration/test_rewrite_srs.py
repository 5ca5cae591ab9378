# SPDX-License-Identifier: GPL-2.0-or-later
"""SRS interop: the rewrite plugin against the real postsrsd (Debian's
postsrsd 1.10, libsrs2's scheme) in both directions.

A private postsrsd per test (its own secrets file, loopback ports, asked
over the Postfix tcp_table protocol: "get KEY" -> "200 VALUE") and sluice
with `sender srs` / `recipient srs-reverse` for the same domain, sharing
the secrets file: an address sluice forwards is reversed by postsrsd (and
is byte for byte what postsrsd writes); an address postsrsd forwards is
reversed by sluice (a bounce through the daemon reaches the upstream with
the original recipient); SRS1 re-forwarding both ways; expired and forged
addresses refused with 550 5.1.1 by both; secret rotation through SIGHUP;
addresses of the format before still reversed; `sluice --check` errors of the secrets file as FILE:LINE. Loopback only;
every wait is bounded.
"""

import base64
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest

import harness
import plugkit

REWRITE_SO = os.path.abspath(os.path.join(plugkit.BUILD, "plugins", "rewrite.so"))
POSTSRSD = shutil.which("postsrsd") or "/usr/sbin/postsrsd"
DOMAIN = "fwd.example"
S1 = "first-secret-0123456789abcdef"
S2 = "second-secret-0123456789abcdef"
RULES = "sender srs %s if not sender /@fwd\\.example$/\nrecipient srs-reverse %s\n" % (DOMAIN, DOMAIN)

pytestmark = pytest.mark.skipif(not os.path.exists(POSTSRSD),
                                reason="postsrsd not installed (contrib/scripts/install-deps.sh)")


def write(path, text):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, str(path))


class PostSRSd:
    """A private postsrsd on two loopback ports (forward, reverse)."""

    def __init__(self, secrets_file, sep="="):
        self.fport, self.rport = harness.free_port(), harness.free_port()
        self.proc = subprocess.Popen(
            [POSTSRSD, "-s" + str(secrets_file), "-d" + DOMAIN, "-a" + sep, "-l127.0.0.1",
             "-f%d" % self.fport, "-r%d" % self.rport, "-t10"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.rport), timeout=1).close()
                break
            except OSError:
                assert self.proc.poll() is None, self.proc.stderr.read()
                assert time.monotonic() < deadline, "postsrsd did not listen"
                time.sleep(0.05)

    def _get(self, port, key):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"get " + urllib.parse.quote(key).encode() + b"\n")
            line = s.makefile("rb").readline().decode().rstrip("\n")
        code, _, val = line.partition(" ")
        return int(code), urllib.parse.unquote(val)

    def forward(self, addr):
        code, val = self._get(self.fport, addr)
        assert code == 200, (addr, code, val)
        return val

    def reverse(self, addr):
        """(200, address) or (500, reason)."""
        return self._get(self.rport, addr)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def postsrsd_factory():
    started = []

    def make(secrets_file, sep="="):
        p = PostSRSd(secrets_file, sep)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


def start(sluice_factory, fake, tmp_path, secrets_file, **keys):
    rules = str(tmp_path / "srs.rules")
    write(rules, RULES)
    k = {"rules": rules, "srs_secret_file": str(secrets_file)}
    k.update(keys)
    return plugkit.start(sluice_factory, fake, ("rewrite", REWRITE_SO, k))


def forward(sl, fake, sender, n):
    """The MAIL FROM the upstream gets for `sender`."""
    d = plugkit.send(sl.port, mail_from=sender, rcpts=("bob@example.net",))
    assert d["eod"].code == 250, d
    return fake.wait_messages(n)[-1].mail_from


def bounce(sl, fake, rcpt, n):
    """The recipient the upstream gets for a bounce to `rcpt`."""
    d = plugkit.send(sl.port, mail_from="", rcpts=(rcpt,))
    assert d["rcpt:" + rcpt].code == 250, d
    assert d["eod"].code == 250, d
    m = fake.wait_messages(n)[-1]
    assert m.mail_from == "", m
    return m.rcpts[0]


def refused(sl, rcpt):
    d = plugkit.send(sl.port, mail_from="", rcpts=(rcpt,))
    r = d["rcpt:" + rcpt]
    assert r.code == 550 and r.enh == "5.1.1", d
    return r


def sign0(secret, day, host, local, sep="="):
    """An SRS0 address of `day` (days since the epoch), computed here by the
    scheme's description; postsrsd agrees on it in test_expired_and_forged."""
    b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    d = day % 1024
    tt = b32[d >> 5] + b32[d & 31]
    mac = hmac.new(secret.encode(), (tt + host + local).lower().encode(), hashlib.sha1).digest()
    h = base64.b64encode(mac).decode()[:4]
    return "SRS0%s%s=%s=%s=%s@%s" % (sep, h, tt, host, local, DOMAIN)


def today():
    return int(time.time()) // 86400


def test_sluice_forwards_postsrsd_reverses(sluice_factory, fake, tmp_path, postsrsd_factory):
    secrets = tmp_path / "srs.secret"
    write(secrets, S1 + "\n" + S2 + "\n")
    ps = postsrsd_factory(secrets)
    sl = start(sluice_factory, fake, tmp_path, secrets)
    day = today()
    srs = forward(sl, fake, "Alice.Smith@Example.ORG", 1)
    assert re.match(r"^SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=Example\.ORG=Alice\.Smith@fwd\.example$", srs), srs
    assert ps.reverse(srs) == (200, "Alice.Smith@Example.ORG")
    if today() == day:  # not across midnight UTC
        assert srs == ps.forward("Alice.Smith@Example.ORG")
    # sluice reverses its own too (the plugin's existing case)
    assert bounce(sl, fake, srs, 2) == "Alice.Smith@Example.ORG"


def test_postsrsd_forwards_sluice_reverses(sluice_factory, fake, tmp_path, postsrsd_factory):
    secrets = tmp_path / "srs.secret"
    write(secrets, S1 + "\n")
    ps = postsrsd_factory(secrets)
    sl = start(sluice_factory, fake, tmp_path, secrets)
    srs = ps.forward("a+tag=x@sub.example.com")
    assert srs.startswith("SRS0=") and srs.endswith("=sub.example.com=a+tag=x@fwd.example"), srs
    assert bounce(sl, fake, srs, 1) == "a+tag=x@sub.example.com"
    # an MTA on the way lower-cased the local part: the hash compares without case
    low = srs.split("@")[0].lower() + "@" + DOMAIN
    assert bounce(sl, fake, low, 2) == "a+tag=x@sub.example.com"
    assert sl.wait_log(r"rewrite recipient <%s> -> <a\+tag=x@sub\.example\.com>" % re.escape(srs), timeout=5)


def test_srs1_both_ways(sluice_factory, fake, tmp_path, postsrsd_factory):
    secrets = tmp_path / "srs.secret"
    write(secrets, S1 + "\n")
    ps = postsrsd_factory(secrets)
    sl = start(sluice_factory, fake, tmp_path, secrets)
    # An SRS0 sender of another forwarder is shortened into SRS1 pointing
    # at it (not wrapped again), exactly as postsrsd does.
    first = "SRS0=abcd=AB=example.org=alice@fwd1.example"
    srs1 = forward(sl, fake, first, 1)
    assert re.match(r"^SRS1=[A-Za-z0-9+/]{4}=fwd1\.example==abcd=AB=example\.org=alice@fwd\.example$", srs1), srs1
    assert srs1 == ps.forward(first)
    assert ps.reverse(srs1) == (200, first)
    # re-forwarding an SRS1 keeps pointing at the first forwarder
    assert forward(sl, fake, "SRS1=wxyz=fwd1.example==abcd=AB=example.org=alice@fwd2.example", 2) == srs1
    # postsrsd's SRS1 reversed by sluice: the bounce goes on to fwd1's SRS0
    other = "SRS0+wxyz=CD=example.net=bob@fwd3.example"
    ps1 = ps.forward(other)
    assert ps1.startswith("SRS1=") and "=fwd3.example=+wxyz=" in ps1, ps1
    assert bounce(sl, fake, ps1, 3) == other


def test_separator(sluice_factory, fake, tmp_path, postsrsd_factory):
    secrets = tmp_path / "srs.secret"
    write(secrets, S1 + "\n")
    ps = postsrsd_factory(secrets, sep="+")
    sl = start(sluice_factory, fake, tmp_path, secrets, srs_separator="+")
    day = today()
    srs = forward(sl, fake, "alice@example.org", 1)
    assert srs.startswith("SRS0+"), srs
    assert ps.reverse(srs) == (200, "alice@example.org")
    if today() == day:
        assert srs == ps.forward("alice@example.org")
    srs1 = forward(sl, fake, "SRS0-abcd=AB=example.org=alice@fwd1.example", 2)
    assert srs1.startswith("SRS1+") and "=fwd1.example=-abcd=" in srs1, srs1
    assert ps.reverse(srs1) == (200, "SRS0-abcd=AB=example.org=alice@fwd1.example")
    # any separator is reversed, whatever the one we write
    assert bounce(sl, fake, sign0(S1, today(), "example.org", "carol"), 3) == "carol@example.org"


def test_expired_and_forged(sluice_factory, fake, tmp_path, postsrsd_factory):
    secrets = tmp_path / "srs.secret"
    write(secrets, S1 + "\n")
    ps = postsrsd_factory(secrets)
    sl = start(sluice_factory, fake, tmp_path, secrets, srs_max_age="21")
    d = today()
    # 21 days old: still good for both; 22: expired for both (postsrsd's
    # max age is 21 days too)
    ok = sign0(S1, d - 21, "example.org", "alice")
    assert ps.reverse(ok) == (200, "alice@example.org")
    assert bounce(sl, fake, ok, 1) == "alice@example.org"
    old = sign0(S1, d - 22, "example.org", "alice")
    code, why = ps.reverse(old)
    assert code == 500 and "out of date" in why.lower(), why
    r = refused(sl, old)
    assert "SRS" in r.text, r
    # forged: another secret, a changed hash, a changed address
    for bad in (sign0(S2, d, "example.org", "alice"),
                ps.forward("alice@example.org").replace("=alice@", "=mallory@"),
                re.sub(r"^SRS0=(.)", lambda m: "SRS0=" + ("B" if m.group(1) in "Aa" else "A"),
                       ps.forward("alice@example.org"))):
        assert ps.reverse(bad)[0] == 500, bad
        refused(sl, bad)
    assert sl.wait_log(r"rewrite recipient <%s> refused: forged, damaged or expired SRS address"
                       % re.escape(old), timeout=5), sl.output()
    assert len(fake.messages) == 1, fake.messages


def test_rotation(sluice_factory, fake, tmp_path, postsrsd_factory):
    secrets = tmp_path / "srs.secret"
    write(secrets, S1 + "\n")
    sl = start(sluice_factory, fake, tmp_path, secrets)
    by_s1 = forward(sl, fake, "alice@example.org", 1)
    # New secret first, the old one still verifies (postsrsd's file format)
    write(secrets, S2 + "\n" + S1 + "\n")
    ps = postsrsd_factory(secrets)
    mark = len(sl.lines)
    sl.signal(signal.SIGHUP)
    assert sl.wait_log(r"rewrite rules from", timeout=5, start=mark), sl.output()
    time.sleep(0.3)
    day = today()
    by_s2 = forward(sl, fake, "alice@example.org", 2)
    assert by_s2 != by_s1
    if today() == day:
        assert by_s2 == ps.forward("alice@example.org")
    assert bounce(sl, fake, by_s1, 3) == "alice@example.org"
    assert bounce(sl, fake, by_s2, 4) == "alice@example.org"
    assert ps.reverse(by_s1) == (200, "alice@example.org")
    # The old secret retired: its addresses are refused, the new ones go.
    write(secrets, S2 + "\n")
    mark = len(sl.lines)
    sl.signal(signal.SIGHUP)
    assert sl.wait_log(r"rewrite rules from", timeout=5, start=mark), sl.output()
    time.sleep(0.3)
    refused(sl, by_s1)
    assert bounce(sl, fake, by_s2, 5) == "alice@example.org"


def sign_old(secret, day, host, local):
    """An address of the plugin's format before the standard one: 8 base32
    letters of the first 40 bits of HMAC-SHA256 over lower("TT=host=local")."""
    b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    d = day % 1024
    tt = b32[d >> 5] + b32[d & 31]
    mac = hmac.new(secret.encode(), ("%s=%s=%s" % (tt, host, local)).lower().encode(), hashlib.sha256).digest()
    v = int.from_bytes(mac[:5], "big")
    h = "".join(b32[(v >> (35 - 5 * i)) & 31] for i in range(8))
    return "SRS0=%s=%s=%s=%s@%s" % (h, tt, host, local, DOMAIN)


def test_old_format_still_reversed(sluice_factory, fake, tmp_path):
    # Bounces to mail forwarded before the upgrade come back for max_age days.
    secrets = tmp_path / "srs.secret"
    write(secrets, S1 + "\n")
    sl = start(sluice_factory, fake, tmp_path, secrets)
    d = today()
    assert bounce(sl, fake, sign_old(S1, d - 3, "example.org", "alice"), 1) == "alice@example.org"
    refused(sl, sign_old(S1, d - 22, "example.org", "alice"))
    refused(sl, sign_old(S2, d, "example.org", "alice"))
    # new addresses are in the standard form only
    assert re.match(r"^SRS0=[A-Za-z0-9+/]{4}=", forward(sl, fake, "alice@example.org", 2))


def check_config(tmp_path, **keys):
    rules = str(tmp_path / "srs.rules")
    write(rules, RULES)
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


def test_check_secrets_file_and_separator(tmp_path):
    secrets = tmp_path / "srs.secret"
    write(secrets, S1 + "\nshort\n\n" + S2 + "\n")
    rc, out = check_config(tmp_path, srs_secret_file=str(secrets))
    assert rc != 0, out
    assert "%s:2: secret too short (at least 16 characters)" % secrets in out, out
    write(secrets, "\n\n")
    rc, out = check_config(tmp_path, srs_secret_file=str(secrets))
    assert rc != 0 and "%s: no secret in the file" % secrets in out, out
    rc, out = check_config(tmp_path, srs_secret_file=str(tmp_path / "missing"))
    assert rc != 0 and "cannot read" in out, out
    write(secrets, S1 + "\r\n" + S2 + "\r\n")
    for sep in ("=", "+", "-"):
        rc, out = check_config(tmp_path, srs_secret_file=str(secrets), srs_separator=sep)
        assert rc == 0, (sep, out)
    rc, out = check_config(tmp_path, srs_secret_file=str(secrets), srs_separator="_")
    assert rc != 0 and "srs_separator" in out, out
    rc, out = check_config(tmp_path, srs_secret_file=str(secrets), srs_secret=S1)
    assert rc != 0 and "not both" in out, out
