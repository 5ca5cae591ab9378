# SPDX-License-Identifier: GPL-2.0-or-later
"""mailauth plugin end to end: SPF and DMARC in front of a recording fake
upstream, DNS from the loopback responder (dnsstub.py), DKIM from the real
dkim plugin earlier in the chain (signatures made by dkimpy).

Here the client is 127.0.0.1, which SPF passes by rule (libspf2 gives the
local host a free ride), so these tests are about DMARC: alignment, the
organizational domain's record and sp=, the policies and what the
configuration makes of them, one Authentication-Results field with dkim,
spf and dmarc, forged fields, a silent resolver, --check. SPF itself, from
a non-local address, runs in a network namespace of its own
(test_mailauth_netns.py, started by test_spf_from_a_real_address).
"""

import os
import re
import shutil
import subprocess
import time

import pytest

import harness
import plugkit
from dnsstub import DNSStub

dkim = pytest.importorskip("dkim")
import test_dkim_plugin as tdk  # noqa: E402  (keys, dkimpy signing)

AUTHSERV = tdk.AUTHSERV
HERE = os.path.dirname(os.path.abspath(__file__))

MSG = (b"From: Ann Example <ann@example.com>\r\n"
       b"To: Bob <bob@example.net>\r\n"
       b"Subject: quarterly figures\r\n"
       b"Date: Mon, 6 May 2024 10:00:00 +0200\r\n"
       b"Message-ID: <q1.2024@example.com>\r\n"
       b"\r\n"
       b"The figures are attached.\r\n")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return tdk.Keys(tmp_path_factory.mktemp("makeys"))


def mailauth_conf(dns, **extra):
    c = {"path": "mailauth", "authserv_id": AUTHSERV, "dns_servers": "127.0.0.1:%d" % dns.port,
         "dns_timeout": "1s", "deadline": "3s"}
    c.update(extra)
    return c


def start(sluice_factory, fake, instances, stats_port=None):
    sections = {"chain": {"plugins": ", ".join(instances)}}
    for name, conf in instances.items():
        sections["plugin " + name] = conf
    stats = {"listen": "127.0.0.1:%d" % stats_port} if stats_port else None
    return sluice_factory(fake.port, extra_sections=sections, env=tdk.LSAN_ENV, stats=stats)


def send(sl, msg, mail_from="ann@example.com"):
    return plugkit.send(sl.port, mail_from=mail_from, rcpts=("bob@example.net",), body=msg)


def our_ar(data):
    return [h for h in tdk.headers(data, "Authentication-Results")
            if h.lower().startswith(AUTHSERV + ";")]


def tx_symbols(sl, n=1):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [ln for ln in list(sl.lines) if " plugins=" in ln]
        if len(lines) >= n:
            m = re.search(r" symbols=(\S+)", lines[n - 1])
            return set(m.group(1).split(",")) if m else set()
        time.sleep(0.05)
    raise AssertionError("no transaction line:\n" + sl.output()[-3000:])


def test_aligned_pass_one_field_with_dkim(keys, fake, sluice_factory):
    dns = DNSStub({("TXT", "_dmarc.example.com"): "v=DMARC1; p=reject; rua=mailto:d@example.com"})
    try:
        sl = start(sluice_factory, fake, {"dkimv": tdk.verify_conf(keys.keys_file()),
                                          "mailauth": mailauth_conf(dns)})
        d = send(sl, tdk.dkimpy_sign(keys, "rsa", MSG))
        assert d["eod"].code == 250, d
        data = fake.wait_messages(1)[-1].data
        ar = our_ar(data)
        assert len(ar) == 1, tdk.headers(data, "Authentication-Results")
        v = ar[0]
        assert "dkim=pass" in v and "header.d=example.com" in v and "header.s=rsa" in v, v
        assert "spf=pass smtp.mailfrom=ann@example.com" in v, v
        assert re.search(r"dmarc=pass \(p=reject pct=100 dis=none\) header\.from=example\.com", v), v
        assert {"DKIM_PASS", "SPF_PASS", "DMARC_PASS"} <= tx_symbols(sl)
        # the field is the first Authentication-Results, as the DKIM plugin's was
        first = tdk.headers(data, "Authentication-Results")[0]
        assert first.startswith(AUTHSERV + ";"), first
    finally:
        dns.close()


def test_reject_policy_refuses_unaligned_mail(keys, fake, sluice_factory):
    """No signature, the envelope of another domain (SPF passes for it, not
    aligned): p=reject refuses at the end of data, nothing reaches the MTA."""
    dns = DNSStub({("TXT", "_dmarc.example.com"): "v=DMARC1; p=reject"})
    port = harness.free_port()
    try:
        sl = start(sluice_factory, fake, {"dkimv": tdk.verify_conf(keys.keys_file()),
                                          "mailauth": mailauth_conf(dns)}, stats_port=port)
        d = send(sl, MSG, mail_from="bounce@mailer.example")
        assert (d["eod"].code, d["eod"].enh) == (550, "5.7.1"), d
        assert "DMARC policy of example.com" in d["eod"].text
        time.sleep(0.3)
        assert [m for m in fake.messages if m.accepted] == []
        m = plugkit.metrics(port)
        assert plugkit.metric_value(m, "sluice_plugin_mailauth_actions_total",
                                    {"action": "dmarc_reject"}) == 1, m
        assert plugkit.metric_value(m, "sluice_plugin_mailauth_dmarc_total",
                                    {"result": "fail"}) == 1, m
        # A signature of the From domain aligns: accepted.
        d = send(sl, tdk.dkimpy_sign(keys, "ed", MSG), mail_from="bounce@mailer.example")
        assert d["eod"].code == 250, d
        v = our_ar(fake.wait_messages(1)[-1].data)[0]
        assert "dmarc=pass" in v and "spf=pass smtp.mailfrom=bounce@mailer.example" in v, v
    finally:
        dns.close()


def test_policy_tagged_when_configured(fake, sluice_factory):
    dns = DNSStub({("TXT", "_dmarc.example.com"): "v=DMARC1; p=reject"})
    try:
        sl = start(sluice_factory, fake, {"mailauth": mailauth_conf(dns, dmarc_reject="tag")})
        d = send(sl, MSG, mail_from="bounce@mailer.example")
        assert d["eod"].code == 250, d
        v = our_ar(fake.wait_messages(1)[-1].data)
        assert len(v) == 1 and "dmarc=fail (p=reject pct=100 dis=none)" in v[0], v
        assert "DMARC_FAIL_REJECT" in tx_symbols(sl)
    finally:
        dns.close()


def test_organizational_record_and_subdomain_policy(fake, sluice_factory):
    """Nothing at _dmarc.news.example.com: the organizational domain's
    record, and its sp= for the subdomain (quarantine -> tag here)."""
    dns = DNSStub({("TXT", "_dmarc.example.com"): "v=DMARC1; p=reject; sp=quarantine",
                   ("TXT", "_dmarc.news.example.com"): "google-site-verification=x"})
    try:
        sl = start(sluice_factory, fake, {"mailauth": mailauth_conf(dns)})
        msg = MSG.replace(b"ann@example.com", b"ann@news.example.com")
        d = send(sl, msg, mail_from="bounce@mailer.example")
        assert d["eod"].code == 250, d
        v = our_ar(fake.wait_messages(1)[-1].data)[0]
        assert "dmarc=fail" in v and "header.from=news.example.com" in v, v
        assert "DMARC_FAIL_QUARANTINE" in tx_symbols(sl)
        txt = [n for t, n in dns.queries if t == "TXT"]
        assert txt == ["_dmarc.news.example.com", "_dmarc.example.com"], txt
    finally:
        dns.close()


def test_quarantine_policy_held(fake, sluice_factory, tmp_path):
    dns = DNSStub({("TXT", "_dmarc.example.com"): "v=DMARC1; p=quarantine"})
    qdir = tmp_path / "q"
    qdir.mkdir()
    try:
        sections = {"chain": {"plugins": "mailauth"},
                    "plugin mailauth": mailauth_conf(dns, dmarc_quarantine="quarantine")}
        sl = sluice_factory(fake.port, extra_sections=sections, env=tdk.LSAN_ENV,
                            server={"quarantine_dir": str(qdir)})
        d = send(sl, MSG, mail_from="bounce@mailer.example")
        assert d["eod"].code == 250, d
        time.sleep(0.3)
        assert [m for m in fake.messages if m.accepted] == []
        held = list(qdir.glob("*.eml"))  # index.db is there too (issue 18)
        assert len(held) == 1, held
        assert b"dmarc=fail" in held[0].read_bytes()
    finally:
        dns.close()


def test_forged_results_removed_without_dkim_plugin(fake, sluice_factory):
    """Without a DKIM verify before it, a field claiming our authserv-id is
    a forgery: removed, and its dkim=pass does not count for DMARC."""
    dns = DNSStub({("TXT", "_dmarc.example.com"): "v=DMARC1; p=reject"})
    try:
        sl = start(sluice_factory, fake, {"mailauth": mailauth_conf(dns, dmarc_reject="tag")})
        forged = (b"Authentication-Results: " + AUTHSERV.upper().encode() +
                  b"; dkim=pass header.d=example.com header.s=x\r\n"
                  b"Authentication-Results: other.example; dkim=pass header.d=kept.example\r\n")
        d = send(sl, forged + MSG, mail_from="bounce@mailer.example")
        assert d["eod"].code == 250, d
        data = fake.wait_messages(1)[-1].data
        ar = our_ar(data)
        assert len(ar) == 1 and "dkim=" not in ar[0] and "dmarc=fail" in ar[0], ar
        assert any("kept.example" in h for h in tdk.headers(data, "Authentication-Results"))
        # log lines reach the test through a reader thread: wait for them
        assert sl.wait_log("removed Authentication-Results", timeout=5), sl.output()[-2000:]
    finally:
        dns.close()


def test_silent_resolver_gives_temperror_in_time(fake, sluice_factory):
    dns = DNSStub({}, silent={"TXT"})
    try:
        sl = start(sluice_factory, fake, {"mailauth": mailauth_conf(dns, dns_timeout="5s",
                                                                    deadline="1s")})
        t0 = time.monotonic()
        d = send(sl, MSG)
        assert d["eod"].code == 250, d
        assert time.monotonic() - t0 < 4.0
        v = our_ar(fake.wait_messages(1)[-1].data)[0]
        assert "dmarc=temperror" in v, v
        assert sl.wait_log("DNS deadline passed", timeout=5), sl.output()[-2000:]
    finally:
        dns.close()


def test_no_single_author(fake, sluice_factory):
    dns = DNSStub({("TXT", "_dmarc.example.com"): "v=DMARC1; p=reject"})
    try:
        sl = start(sluice_factory, fake, {"mailauth": mailauth_conf(dns)})
        two = MSG.replace(b"From: Ann Example <ann@example.com>",
                          b"From: ann@example.com, eve@evil.example")
        d = send(sl, two, mail_from="bounce@mailer.example")
        assert d["eod"].code == 250, d
        v = our_ar(fake.wait_messages(1)[-1].data)[0]
        assert "dmarc=permerror" in v, v
        assert not [n for t, n in dns.queries if n.startswith("_dmarc")]
    finally:
        dns.close()


def check(tmp_path, conf):
    path = str(tmp_path / "sluice.conf")
    sections = {"server": {"listen": "127.0.0.1:%d" % harness.free_port()},
                "upstream": {"servers": "127.0.0.1:%d" % harness.free_port()},
                "stats": {"listen": "no"}, "chain": {"plugins": "mailauth"},
                "plugin mailauth": conf}
    with open(path, "w") as f:
        f.write(harness.render_config(sections))
    r = harness.run_sluice(["--check", "-c", path])
    return r.returncode, r.stdout + r.stderr


def test_check_errors(tmp_path):
    rc, out = check(tmp_path, {"path": "mailauth", "authserv_id": "mx.test",
                               "scores": "SPF_FAIL=lots", "dmarc_reject": "bounce",
                               "deadline": "1.5s", "colour": "blue"})
    assert rc != 0, out
    assert re.search(r"sluice\.conf:\d+: \[plugin mailauth\] scores: SPF_FAIL: \"lots\" is not a "
                     r"score", out), out
    assert "dmarc_reject" in out and "deadline" in out and "colour" in out, out
    rc, out = check(tmp_path, {"path": "mailauth", "authserv_id": "bad id;"})
    assert rc != 0 and "authserv_id" in out, out
    rc, out = check(tmp_path, {"path": "mailauth", "authserv_id": "mx.test",
                               "scores": "DMARC_FAIL_REJECT=8, SPF_FAIL=3"})
    assert rc == 0, out


def test_spf_from_a_real_address(tmp_path):
    """SPF needs a client that is not the local host: test_mailauth_netns.py
    runs in a network namespace where the loopback device also holds
    192.0.2.10 and ::ffff-free 2001:db8::10, the client's source."""
    if not shutil.which("unshare") or not shutil.which("ip") or os.geteuid() != 0:
        pytest.skip("needs unshare, ip and root")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip("no network namespaces here: %s" % probe.stderr)
    script = ("set -e; ip link set lo up; ip addr add 192.0.2.10/32 dev lo; "
              "ip -6 addr add 2001:db8::10/128 dev lo nodad; "
              "exec %s -m pytest -q -p no:cacheprovider -x %s"
              % ("/usr/bin/python3", os.path.join(HERE, "test_mailauth_netns.py")))
    env = dict(os.environ, SLUICE_IN_NETNS="1")
    r = subprocess.run(["unshare", "-n", "sh", "-c", script], cwd=HERE, env=env,
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert " passed" in out and "skipped" not in out.splitlines()[-1], out[-2000:]
