# SPDX-License-Identifier: GPL-2.0-or-later
"""dkim plugin end to end: sluice between a client and a recording upstream.

Interoperability is the point, so every signature sluice makes is checked
by dkimpy (an independent verifier), and sluice verifies signatures made by
dkimpy and by rspamd's `rspamadm mime sign`. Keys are generated here, at
test time, with openssl; none is committed. Key records come from a key
file (keys_file) or, for the DNS path, from a tiny UDP DNS responder on
127.0.0.1 written below (plus a silent UDP socket for the timeout case).
"""

import base64
import os
import re
import shutil
import socket
import struct
import subprocess
import threading

import pytest

import harness
import plugkit
from dnsstub import DNSStub

dkim = pytest.importorskip("dkim")

AUTHSERV = "mx.test"


# --------------------------------------------------------------------------
# keys
def _run(*cmd, **kw):
    return subprocess.run(list(cmd), check=True, capture_output=True, timeout=60, **kw)


class Keys:
    """RSA-2048 and Ed25519 key pairs for example.com and example.org."""

    def __init__(self, d):
        self.dir = str(d)
        self.records = {}   # "sel._domainkey.dom" -> TXT text
        self.pem = {}       # selector -> path of the private PEM
        self.dkimpy = {}    # selector -> private key as dkimpy wants it
        for sel, kind in (("rsa", "rsa"), ("ed", "ed25519"), ("org", "rsa")):
            path = os.path.join(self.dir, sel + ".pem")
            if kind == "rsa":
                _run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                     "rsa_keygen_bits:2048", "-out", path)
            else:
                _run("openssl", "genpkey", "-algorithm", "ed25519", "-out", path)
            os.chmod(path, 0o600)
            pub = _run("openssl", "pkey", "-in", path, "-pubout", "-outform", "DER").stdout
            dom = "example.org" if sel == "org" else "example.com"
            if kind == "rsa":
                rec = "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode()
                self.dkimpy[sel] = open(path, "rb").read()
            else:
                rec = "v=DKIM1; k=ed25519; p=" + base64.b64encode(pub[-32:]).decode()
                der = _run("openssl", "pkey", "-in", path, "-outform", "DER").stdout
                self.dkimpy[sel] = base64.b64encode(der[-32:])
            self.records["%s._domainkey.%s" % (sel, dom)] = rec
            self.pem[sel] = path

    def keys_file(self, name="keys.txt", extra=None, drop=()):
        recs = dict(self.records)
        recs.update(extra or {})
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            for n, r in recs.items():
                if n not in drop:
                    f.write("%s %s\n" % (n, r))
        return path

    def dnsfunc(self, name, timeout=5):
        n = name.decode().rstrip(".")
        r = self.records.get(n)
        return r.encode() if r else None


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    return Keys(tmp_path_factory.mktemp("dkimkeys"))


MSG = (b"From: Ann Example <ann@example.com>\r\n"
       b"To: Bob <bob@example.net>\r\n"
       b"Subject: quarterly figures\r\n"
       b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
       b"Message-ID: <q3@example.com>\r\n"
       b"MIME-Version: 1.0\r\n"
       b"Content-Type: text/plain; charset=utf-8\r\n"
       b"\r\n"
       b"Hello Bob,\r\n\r\nthe figures are attached in spirit.\r\n"
       b".leading dot line\r\n")


def dkimpy_sign(keys, sel, msg=MSG, domain=b"example.com"):
    alg = b"ed25519-sha256" if sel == "ed" else b"rsa-sha256"
    sig = dkim.sign(msg, sel.encode(), domain, keys.dkimpy[sel],
                    canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=alg,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return sig.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n") + msg


def verify_conf(keys_file=None, **extra):
    c = {"path": "dkim", "mode": "verify", "authserv_id": AUTHSERV}
    if keys_file:
        c["keys_file"] = keys_file
    c.update(extra)
    return c


def sign_conf(table, **extra):
    c = {"path": "dkim", "mode": "sign", "signing_table": table}
    c.update(extra)
    return c


# Under SLUICE_SANITIZE: libopendkim 2.11 leaks the key of every Ed25519
# signature (plugins/dkim/lsan.supp says where); suppress only that.
LSAN_ENV = {
    "LSAN_OPTIONS": "suppressions=" + os.path.join(harness.SRC_DIR, "tests", "lsan.supp"),
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0",
}


def start(sluice_factory, fake, instances, stats_port=None):
    """sluice with the given {name: section} plugin instances, in order
    (and /metrics on stats_port if given)."""
    sections = {"chain": {"plugins": ", ".join(instances)}}
    for name, conf in instances.items():
        sections["plugin " + name] = conf
    stats = {"listen": "127.0.0.1:%d" % stats_port} if stats_port else None
    return sluice_factory(fake.port, extra_sections=sections, env=LSAN_ENV, stats=stats)


def send(s, fake, msg, n, mail_from="ann@example.com"):
    refused = harness.smtp_send(s.port, mail_from=mail_from, rcpts=["bob@example.net"], msg=msg)
    assert refused == {}
    got = fake.wait_messages(n)
    assert len(got) >= n, "upstream got %d messages" % len(got)
    return got[n - 1].data


def burst(s, fake, msg, n=12):
    """n clients at once, one message each; what the upstream got."""
    import concurrent.futures

    def one(i):
        return harness.smtp_send(s.port, mail_from="ann@example.com",
                                 rcpts=["bob%d@example.net" % i], msg=msg)
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        assert list(ex.map(one, range(n))) == [{}] * n
    got = fake.wait_messages(n)
    assert len(got) == n
    return got


def headers(data, name):
    """Unfolded values of all fields called name, in order."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    out = []
    for m in re.finditer(r"^%s:[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)" % re.escape(name), head,
                         re.M | re.I):
        out.append(re.sub(r"\r\n[ \t]*", " ", m.group(1)))
    return out


def ar_results(data):
    return [h for h in headers(data, "Authentication-Results") if h.startswith(AUTHSERV + ";")]


# --------------------------------------------------------------------------
# signing
def write_table(keys, lines, name="table"):
    path = os.path.join(keys.dir, name)
    with open(path, "w") as f:
        f.write("# domain selector key [algorithm]\n" + "\n".join(lines) + "\n")
    return path


def test_sign_dual_rsa_ed25519_verified_by_dkimpy(keys, fake, sluice_factory):
    table = write_table(keys, ["example.com rsa rsa.pem",
                               "example.com ed %s ed25519-sha256" % keys.pem["ed"]])
    s = start(sluice_factory, fake, {"dkims": sign_conf(table)})
    data = send(s, fake, MSG, 1)
    sigs = headers(data, "DKIM-Signature")
    assert len(sigs) == 2, data
    assert data.startswith(b"DKIM-Signature:") or data.split(b"\r\n")[1].startswith(b"DKIM"), \
        "signatures belong at the top"
    algs = sorted(re.search(r"a=([\w-]+)", v).group(1) for v in sigs)
    assert algs == ["ed25519-sha256", "rsa-sha256"]
    for v in sigs:
        assert "c=relaxed/relaxed" in v
        assert not re.search(r"(^|;)\s*l=", v), "no l= tag"
        h = re.search(r"(?:^|;)\s*h=([^;]*)", v).group(1).replace(" ", "").lower().split(":")
        for name in ("from", "to", "subject", "date"):
            assert h.count(name) == 2, "%s over-signed: %s" % (name, h)
        assert "message-id" in h
    for idx in range(2):
        d = dkim.DKIM(data)
        assert d.verify(idx=idx, dnsfunc=keys.dnsfunc), "dkimpy rejects signature %d" % idx
    # and tampering is noticed by the independent verifier
    bad = data.replace(b"figures are", b"figures were")
    with pytest.raises(dkim.ValidationError):
        dkim.DKIM(bad).verify(idx=0, dnsfunc=keys.dnsfunc)


def test_sign_only_outbound_mail(keys, fake, sluice_factory):
    table = write_table(keys, ["example.com rsa rsa.pem"], "table2")
    # 127.0.0.1 is not internal here and nobody authenticates: no signature
    s = start(sluice_factory, fake, {"dkims": sign_conf(table, internal_networks="10.0.0.0/8")})
    data = send(s, fake, MSG, 1)
    assert headers(data, "DKIM-Signature") == []
    s.stop()
    # internal client, but a From domain that is not in the table: no signature
    s2 = start(sluice_factory, fake, {"dkims": sign_conf(table)})
    other = MSG.replace(b"ann@example.com", b"ann@elsewhere.example")
    data = send(s2, fake, other, 2)
    assert headers(data, "DKIM-Signature") == []
    # and the same client with the table's domain: signed
    data = send(s2, fake, MSG, 3)
    assert len(headers(data, "DKIM-Signature")) == 1


def test_signing_burst_waits_for_its_threads(keys, fake, sluice_factory):
    """max_threads = 1: DKIM's jobs take one pool thread at a time and the
    rest wait in order (the pool serves every blocking plugin). Twelve
    clients at once: every message is signed, none is refused."""
    table = write_table(keys, ["example.com rsa rsa.pem"], "table-burst")
    stats_port = harness.free_port()
    s = start(sluice_factory, fake, {"dkims": sign_conf(table, max_threads="1")}, stats_port)
    for m in burst(s, fake, MSG):
        sig = headers(m.data, "DKIM-Signature")
        assert len(sig) == 1, m.data[:300]
        assert dkim.DKIM(m.data).verify(dnsfunc=keys.dnsfunc)
    m = plugkit.metrics(stats_port)
    waits = plugkit.metric_value(m, "sluice_plugin_dkims_thread_waits_total")
    # twelve jobs at once on one thread: some waited (9 of 12 in a run)
    assert waits is not None and waits >= 1, m


def test_verify_then_sign_burst_on_one_thread_each(keys, fake, sluice_factory):
    """Signed mail through two pooled DKIM instances, one thread each:
    verify's answer reaches the host from DKIM's own after-work callback,
    and the host starts sign's job from inside it. Twelve clients at once:
    every message passes verification once and is signed once, in order of
    the chain (the new signature above the A-R field it covers)."""
    # RSA signing: the dearest job, so that jobs overlap and wait
    table = write_table(keys, ["example.com rsa rsa.pem"], "table-vs")
    signed = dkimpy_sign(keys, "rsa")
    original = headers(signed, "DKIM-Signature")
    stats_port = harness.free_port()
    s = start(sluice_factory, fake,
              {"dkimv": verify_conf(keys.keys_file(), max_threads="1"),
               "dkims": sign_conf(table, max_threads="1")}, stats_port)
    for m in burst(s, fake, signed):
        res = ar_results(m.data)
        assert len(res) == 1 and res[0].startswith(AUTHSERV + "; dkim=pass "), res
        sigs = headers(m.data, "DKIM-Signature")
        assert len(sigs) == 2 and sigs[1:] == original, sigs
        assert m.data.startswith(b"DKIM-Signature: "), m.data[:200]
        assert dkim.DKIM(m.data).verify(dnsfunc=keys.dnsfunc)
    # Twelve jobs at once for one thread: some waited. Which instance's
    # waited depends on timing (verify's jobs come first, and sign's can
    # find a thread free), so the two counts are taken together.
    m = plugkit.metrics(stats_port)
    waits = [plugkit.metric_value(m, "sluice_plugin_%s_thread_waits_total" % n)
             for n in ("dkimv", "dkims")]
    assert None not in waits and sum(waits) >= 1, m


def test_sign_after_verify_chain_and_roundtrip(keys, fake, sluice_factory):
    """verify first, sign last: the signature covers the edited message
    (with the new Authentication-Results) and sluice's own verifier passes
    it on a second pass."""
    table = write_table(keys, ["example.com ed ed.pem ed25519-sha256"], "table3")
    kf = keys.keys_file()
    s = start(sluice_factory, fake, {"dkimv": verify_conf(kf), "dkims": sign_conf(table)})
    data = send(s, fake, MSG, 1)
    assert ar_results(data) == [AUTHSERV + "; dkim=none"]
    assert dkim.DKIM(data).verify(dnsfunc=keys.dnsfunc)
    # the signed output verifies as pass in sluice too
    s2 = start(sluice_factory, fake, {"dkimv": verify_conf(kf, authserv_id="mx2.test")})
    out = send(s2, fake, data, 2)
    res = [h for h in headers(out, "Authentication-Results") if h.startswith("mx2.test;")]
    assert len(res) == 1 and "dkim=pass" in res[0] and "header.s=ed" in res[0], res


# --------------------------------------------------------------------------
# verifying
def test_verify_dkimpy_signatures_pass(keys, fake, sluice_factory):
    s = start(sluice_factory, fake, {"dkimv": verify_conf(keys.keys_file())})
    for n, sel in enumerate(("rsa", "ed"), 1):
        signed = dkimpy_sign(keys, sel)
        b = re.search(rb"b=([A-Za-z0-9+/]{8})", signed.split(b"bh=")[1]).group(1).decode()
        data = send(s, fake, signed, n)
        res = ar_results(data)
        assert len(res) == 1, res
        assert res[0].startswith(AUTHSERV + "; dkim=pass "), res
        assert "header.d=example.com" in res[0] and "header.s=%s" % sel in res[0]
        assert re.search(r'header\.b="?%s"?' % re.escape(b), res[0]), (b, res)
        assert data.startswith(b"Authentication-Results: " + AUTHSERV.encode()), \
            "A-R at the top"


@pytest.mark.parametrize("case,mutate,want,reason", [
    ("body", lambda m: m.replace(b"in spirit", b"in person"), "fail", "body hash"),
    ("header", lambda m: m.replace(b"Subject: quarterly", b"Subject: yearly"), "fail",
     "signature did not verify"),
])
def test_verify_tampered(keys, fake, sluice_factory, case, mutate, want, reason):
    s = start(sluice_factory, fake, {"dkimv": verify_conf(keys.keys_file())})
    data = send(s, fake, mutate(dkimpy_sign(keys, "rsa")), 1)
    res = ar_results(data)
    assert len(res) == 1 and ("dkim=%s" % want) in res[0] and reason in res[0], res


def test_verify_key_problems_and_unsigned(keys, fake, sluice_factory):
    kf = keys.keys_file("keys-bad.txt", drop=("ed._domainkey.example.com",),
                        extra={"rsa._domainkey.example.com": "v=DKIM1; k=rsa; p=!!not-base64!!"})
    s = start(sluice_factory, fake, {"dkimv": verify_conf(kf)})
    data = send(s, fake, dkimpy_sign(keys, "ed"), 1)          # no key record at all
    res = ar_results(data)
    assert len(res) == 1 and "dkim=permerror" in res[0] and "no key" in res[0], res
    data = send(s, fake, dkimpy_sign(keys, "rsa"), 2)         # malformed key record
    res = ar_results(data)
    assert len(res) == 1 and "dkim=permerror" in res[0], res
    data = send(s, fake, MSG, 3)                              # unsigned
    assert ar_results(data) == [AUTHSERV + "; dkim=none"]
    nofrom = re.sub(rb"(?m)^From: [^\r]*\r\n", b"", dkimpy_sign(keys, "ed"))
    data = send(s, fake, nofrom, 4)                           # signed, From: gone
    res = ar_results(data)
    assert len(res) == 1 and "dkim=permerror" in res[0] and "not verifiable" in res[0], res
    data = send(s, fake, re.sub(rb"(?m)^From: [^\r]*\r\n", b"", MSG), 5)
    assert ar_results(data) == [AUTHSERV + "; dkim=none"]


def test_verify_several_signatures_and_forged_ar(keys, fake, sluice_factory):
    s = start(sluice_factory, fake, {"dkimv": verify_conf(keys.keys_file())})
    m = dkimpy_sign(keys, "rsa")
    m = dkimpy_sign(keys, "ed", m)
    m = dkimpy_sign(keys, "org", m, domain=b"example.org")
    forged = (b"Authentication-Results: " + AUTHSERV.encode() + b"; dkim=pass header.d=bank.example\r\n"
              b"Authentication-Results: MX.TEST (forged\r\n  again); spf=pass\r\n"
              b"Authentication-Results: other.example; dkim=pass header.d=kept.example\r\n")
    data = send(s, fake, forged + m, 1)
    res = ar_results(data)
    assert len(res) == 3, res
    assert all("dkim=pass" in r for r in res), res
    assert sorted(re.search(r"header\.s=(\w+)", r).group(1) for r in res) == ["ed", "org", "rsa"]
    all_ar = headers(data, "Authentication-Results")
    assert not any("bank.example" in h for h in all_ar), "forged A-R kept"
    assert not any("forged" in h for h in all_ar), "forged A-R (case, comment) kept"
    assert any("kept.example" in h for h in all_ar), "someone else's A-R removed"
    # (the daemon's log is written in batches: wait for the line)
    assert s.wait_log(r"removed Authentication-Results", 5), s.output()
    # Unsigned (answered without libopendkim): the same clean-up.
    long_comment = b"(" + (b"c" * 70 + b"\r\n ") * 40 + b")"
    data = send(s, fake, forged + b"Authentication-Results: " + long_comment + b"\r\n "
                + AUTHSERV.encode() + b"; dkim=pass header.d=long.example\r\n" + MSG, 2)
    assert ar_results(data) == [AUTHSERV + "; dkim=none"]
    all_ar = headers(data, "Authentication-Results")
    assert not any("bank.example" in h or "forged" in h or "long.example" in h
                   for h in all_ar), all_ar
    assert any("kept.example" in h for h in all_ar), "someone else's A-R removed"


def test_verify_rspamd_signature_pass(keys, fake, sluice_factory, tmp_path):
    if not shutil.which("rspamadm"):
        pytest.skip("rspamadm (rspamd) not installed")
    msgf = tmp_path / "m.eml"
    msgf.write_bytes(MSG)
    out = subprocess.run(["rspamadm", "mime", "sign", "-d", "example.com", "-s", "rsa",
                          "-k", keys.pem["rsa"], str(msgf)], capture_output=True, timeout=60)
    if out.returncode != 0 or b"DKIM-Signature" not in out.stdout:
        pytest.skip("rspamadm mime sign failed: %r" % out.stderr[-300:])
    signed = out.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    s = start(sluice_factory, fake, {"dkimv": verify_conf(keys.keys_file())})
    data = send(s, fake, signed, 1)
    res = ar_results(data)
    assert len(res) == 1 and "dkim=pass" in res[0] and "header.s=rsa" in res[0], res


# --------------------------------------------------------------------------
# DNS path: the loopback responder (dnsstub.py), and one that never answers
def txt_dns(records, silent=False):
    return DNSStub({("TXT", n): v for n, v in records.items()}, silent={"TXT"} if silent else ())


def test_verify_over_dns_with_cache(keys, fake, sluice_factory):
    dns = txt_dns(keys.records)
    try:
        s = start(sluice_factory, fake, {"dkimv": verify_conf(
            dns_servers="127.0.0.1:%d" % dns.port, dns_timeout="2s")})
        for n in (1, 2):
            data = send(s, fake, dkimpy_sign(keys, "rsa"), n)
            res = ar_results(data)
            assert len(res) == 1 and "dkim=pass" in res[0], res
        assert [n for t, n in dns.queries] == ["rsa._domainkey.example.com"], \
            "second message must be answered from the cache: %r" % dns.queries
        data = send(s, fake, dkimpy_sign(keys, "ed").replace(b"s=ed", b"s=gone"), 3)
        res = ar_results(data)
        assert len(res) == 1 and "dkim=permerror" in res[0], res
    finally:
        dns.close()


def test_dns_timeout_temperror_and_tempfail(keys, fake, sluice_factory):
    silent = txt_dns({}, silent=True)
    try:
        s = start(sluice_factory, fake, {"dkimv": verify_conf(
            dns_servers="127.0.0.1:%d" % silent.port, dns_timeout="500ms")})
        data = send(s, fake, dkimpy_sign(keys, "rsa"), 1)
        res = ar_results(data)
        assert len(res) == 1 and "dkim=temperror" in res[0], res
        s.stop()
        s2 = start(sluice_factory, fake, {"dkimv": verify_conf(
            dns_servers="127.0.0.1:%d" % silent.port, dns_timeout="500ms",
            require_valid_from="example.com")})
        with harness.Client(s2.port) as c:
            c.greeting()
            c.ehlo()
            r = harness.transaction(c, mail_from="ann@example.com",
                                    body=dkimpy_sign(keys, "rsa"))
            assert r.code == 451 and r.enh == "4.7.20", r
    finally:
        silent.close()


def test_signature_cap_bounds_key_lookups(keys, fake, sluice_factory):
    """A message with 300 DKIM-Signatures whose key zones never answer:
    only max_signatures (default 5) key queries reach the DNS server, the
    message gets a verdict once they time out, the signatures past the cap
    get one dkim=policy result, and a normal message sent meanwhile is not
    held up (key lookups wait on the loop, not on pool threads)."""
    import time
    from dnsstub import DNSStub
    junk = lambda n: n.startswith("junk")
    dns = DNSStub({("TXT", n): r for n, r in keys.records.items()}, silent_name=junk)
    try:
        s = start(sluice_factory, fake, {"dkimv": verify_conf(
            dns_servers="127.0.0.1:%d" % dns.port, dns_timeout="2s")})
        signed = dkimpy_sign(keys, "rsa")
        cut = signed.index(MSG)
        fakes = b"".join(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;"
                         b" d=example.com; s=junk%d; h=from:to; bh=AAAA; b=AAAA\r\n" % i
                         for i in range(299))
        big = signed[:cut] + fakes + MSG
        done = {}

        def send_big():
            t0 = time.monotonic()
            done["refused"] = harness.smtp_send(s.port, mail_from="ann@example.com",
                                                rcpts=["bob@example.net"], msg=big, timeout=30)
            done["took"] = time.monotonic() - t0
        t = threading.Thread(target=send_big)
        t.start()
        deadline = time.monotonic() + 5
        while dns.count("TXT", lambda n: n.startswith("junk3")) < 1 and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        # The big message waits for its silent key lookups; another one flows.
        t0 = time.monotonic()
        assert harness.smtp_send(s.port, mail_from="ann@example.com", rcpts=["bob@example.net"],
                                 msg=dkimpy_sign(keys, "ed"), timeout=30) == {}
        other = time.monotonic() - t0
        t.join(30)
        print("300 signatures: verdict after %.2f s; another message meanwhile: %.2f s"
              % (done.get("took", -1), other))
        assert done.get("refused") == {}, done
        assert other < 1.5, "the other message took %.1f s" % other
        assert done["took"] < 6, "the 300-signature message took %.1f s" % done["took"]
        # One name per evaluated signature (c-ares may retransmit each once).
        asked = sorted({n for t, n in dns.queries if junk(n)})
        assert asked == ["junk%d._domainkey.example.com" % i for i in range(4)], dns.queries
        got = fake.wait_messages(2)
        data = [m.data for m in got if m.data.count(b"DKIM-Signature") > 100][0]
        res = ar_results(data)
        assert len(res) == 6, res
        assert "dkim=pass" in res[0] and "header.s=rsa" in res[0], res
        assert all("dkim=temperror" in r for r in res[1:5]), res
        assert "dkim=policy" in res[5] and "295 more not evaluated" in res[5], res
    finally:
        dns.close()


# --------------------------------------------------------------------------
# policy
@pytest.mark.parametrize("case,msg_fn,code,enh", [
    ("unsigned", lambda k: MSG, 550, "5.7.20"),
    ("broken", lambda k: dkimpy_sign(k, "rsa").replace(b"in spirit", b"in person"), 550, "5.7.20"),
    ("other domain", lambda k: dkimpy_sign(k, "org", domain=b"example.org"), 550, "5.7.22"),
    ("author signed", lambda k: dkimpy_sign(k, "ed"), 250, None),
])
def test_require_valid_from(keys, fake, sluice_factory, case, msg_fn, code, enh):
    s = start(sluice_factory, fake, {"dkimv": verify_conf(
        keys.keys_file(), require_valid_from="example.com, example.net")})
    with harness.Client(s.port) as c:
        c.greeting()
        c.ehlo()
        r = harness.transaction(c, mail_from="ann@example.com", body=msg_fn(keys))
        assert r.code == code, r
        if enh:
            assert r.enh == enh, r


def test_policy_default_only_tags(keys, fake, sluice_factory):
    s = start(sluice_factory, fake, {"dkimv": verify_conf(keys.keys_file())})
    data = send(s, fake, MSG, 1)
    assert ar_results(data) == [AUTHSERV + "; dkim=none"]


# --------------------------------------------------------------------------
# configuration errors under --check
def check(tmp_path, instances):
    s = harness.Sluice(tmp_path / "chk", upstream_port=1,
                       extra_sections=dict([("chain", {"plugins": ", ".join(instances)})] +
                                           [("plugin " + k, v) for k, v in instances.items()]))
    s.write_config()
    return harness.run_sluice(["-c", s.config_path, "--check"]), s.config_path


def test_check_errors(keys, tmp_path):
    loose = os.path.join(keys.dir, "loose.pem")
    shutil.copy(keys.pem["rsa"], loose)
    os.chmod(loose, 0o644)
    badpem = os.path.join(keys.dir, "bad.pem")
    with open(badpem, "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    os.chmod(badpem, 0o600)
    cases = [
        (["example.com rsa rsa.pem", "example.com sel"], ":3: too few fields"),
        (["example.com rsa loose.pem"], "group or others"),
        (["example.com rsa bad.pem"], "not a PEM private key"),
        (["example.com rsa missing.pem"], "cannot open key file"),
        (["example.com ed rsa.pem ed25519-sha256"], "needs an Ed25519 key"),
    ]
    for n, (lines, want) in enumerate(cases):
        table = write_table(keys, lines, "chk%d" % n)
        r, conf = check(tmp_path / str(n), {"dkims": sign_conf(table)})
        out = r.stdout + r.stderr
        assert r.returncode != 0, out
        assert want in out, (want, out)
        assert re.search(r"%s:\d+: " % re.escape(table), out), "TABLE:LINE missing: " + out
    # config keys: FILE:LINE of the key in the config
    r, conf = check(tmp_path / "k", {"dkimv": verify_conf(keys.keys_file(), dns_timeout="forever",
                                                         on_fail="drop")})
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert re.search(r"%s:\d+: .*dns_timeout" % re.escape(conf), out), out
    assert "on_fail" in out
    r, conf = check(tmp_path / "m", {"dkimx": {"path": "dkim", "mode": "both"}})
    assert r.returncode != 0 and "mode" in r.stdout + r.stderr
    # and a good configuration passes
    table = write_table(keys, ["example.com rsa rsa.pem", "example.com ed ed.pem ed25519-sha256"],
                        "good")
    r, conf = check(tmp_path / "ok", {"dkimv": verify_conf(keys.keys_file()),
                                      "dkims": sign_conf(table)})
    assert r.returncode == 0, r.stdout + r.stderr


def test_one_duration_grammar_with_the_host(keys, tmp_path):
    """dns_timeout is read with the daemon's grammar: what the instance's
    own `timeout` refuses (fractions, days) it refuses too, at its line."""
    for n, (text, ok) in enumerate((("1.5s", False), ("2d", False), ("1500ms", True),
                                    ("2s", True), ("1m", True))):
        r1, c1 = check(tmp_path / ("d%d" % n), {"dkimv": verify_conf(keys.keys_file(),
                                                                     dns_timeout=text)})
        r2, c2 = check(tmp_path / ("t%d" % n), {"dkimv": verify_conf(keys.keys_file(),
                                                                     timeout=text)})
        out1, out2 = r1.stdout + r1.stderr, r2.stdout + r2.stderr
        assert (r1.returncode == 0) == ok, (text, out1)
        assert (r2.returncode == 0) == ok, (text, out2)
        if not ok:
            assert re.search(r"%s:\d+: \[plugin dkimv\] dns_timeout: not a duration '%s'"
                             % (re.escape(c1), re.escape(text)), out1), out1
    # and a key neither dkim nor the host knows is reported
    r, conf = check(tmp_path / "u", {"dkimv": verify_conf(keys.keys_file(), dns_timout="2s")})
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert re.search(r"%s:\d+: \[plugin dkimv\] dns_timout: unknown key" % re.escape(conf), out), out


# --------------------------------------------------------------------------
# opendkim-testmsg: a second independent verifier. It has no key-file
# option and always asks the DNS of /etc/resolv.conf, so it runs in a
# private network + mount namespace where resolv.conf points at a responder
# on that namespace's own 127.0.0.1:53 (nothing touches the host's network).
RESPONDER = r'''
import socket, struct, sys, os
recs = dict(l.rstrip("\n").split(" ", 1) for l in open(sys.argv[1]) if l.strip())
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
open(sys.argv[2], "w").close()
s.settimeout(30)
while True:
    try:
        q, peer = s.recvfrom(4096)
    except socket.timeout:
        break
    labels, i = [], 12
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode()); i += 1 + q[i]
    rec = recs.get(".".join(labels).lower())
    out = q[:2] + struct.pack(">HHHHH", 0x8180 if rec else 0x8183, 1, 1 if rec else 0, 0, 0) + q[12:i + 5]
    if rec:
        raw = rec.encode()
        ch = b"".join(bytes([len(raw[k:k + 255])]) + raw[k:k + 255] for k in range(0, len(raw), 255))
        out += struct.pack(">HHHIH", 0xc00c, 16, 1, 300, len(ch)) + ch
    s.sendto(out, peer)
'''


def opendkim_testmsg(workdir, keys, msg):
    """Exit status of opendkim-testmsg verifying msg, and its output."""
    d = str(workdir)
    for name, text in (("resp.py", RESPONDER), ("resolv.conf", "nameserver 127.0.0.1\n"),
                       ("recs", "".join("%s %s\n" % kv for kv in keys.records.items()))):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    with open(os.path.join(d, "msg.eml"), "wb") as f:
        f.write(msg)
    script = ("set -e; rm -f {d}/ready; ip link set lo up; "
              "mount --bind {d}/resolv.conf /etc/resolv.conf; "
              "/usr/bin/python3 {d}/resp.py {d}/recs {d}/ready </dev/null >/dev/null 2>&1 & p=$!; "
              "for i in $(seq 1 100); do [ -e {d}/ready ] && break; sleep 0.05; done; "
              "set +e; timeout 20 opendkim-testmsg -C < {d}/msg.eml; rc=$?; kill $p; exit $rc"
              ).format(d=d)
    r = subprocess.run(["unshare", "-m", "-n", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=40)
    return r.returncode, r.stdout + r.stderr


def test_sign_verified_by_opendkim_testmsg(keys, fake, sluice_factory, tmp_path):
    if not shutil.which("opendkim-testmsg") or not shutil.which("unshare") or os.geteuid() != 0:
        pytest.skip("needs opendkim-testmsg, unshare and root")
    probe = subprocess.run(["unshare", "-m", "-n", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip("no namespaces here: %s" % probe.stderr)
    table = write_table(keys, ["example.com rsa rsa.pem",
                               "example.com ed ed.pem ed25519-sha256"], "table-tm")
    s = start(sluice_factory, fake, {"dkims": sign_conf(table)})
    data = send(s, fake, MSG, 1)
    head, body = data.split(b"\r\n\r\n", 1)
    fields = re.split(rb"\r\n(?![ \t])", head)
    sigs = [f for f in fields if f.lower().startswith(b"dkim-signature:")]
    rest = [f for f in fields if not f.lower().startswith(b"dkim-signature:")]
    assert len(sigs) == 2
    for n, sig in enumerate(sigs):
        # one signature at a time, so each algorithm is judged on its own
        one = b"\r\n".join([sig] + rest) + b"\r\n\r\n" + body
        rc, out = opendkim_testmsg(tmp_path, keys, one)
        assert rc == 0, "opendkim-testmsg rejects %r: rc=%d %s" % (sig[:60], rc, out)
        bad = one.replace(b"figures are", b"figures were")
        rc, out = opendkim_testmsg(tmp_path, keys, bad)
        assert rc != 0 and "Bad signature" in out, (rc, out)
