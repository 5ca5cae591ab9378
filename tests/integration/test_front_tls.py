# SPDX-License-Identifier: GPL-2.0-or-later
"""Inbound TLS policy per listener: protocol floor, cipher lists, SNI
certificates (exact and wildcard names), client certificates (CA-verified,
optional, pinned by fingerprint), session tickets across a reload, what
plugins and the log see of the handshake, and `--check` naming the file
and line of each policy mistake. Certificates are made with the openssl
CLI in the test's directory; loopback only; every wait is bounded."""

import os
import re
import signal
import socket
import ssl
import subprocess

import pytest

import harness
import plugkit
from harness import Client, transaction


def _openssl(*args):
    subprocess.run(["openssl"] + [str(a) for a in args], check=True, capture_output=True,
                   timeout=60)


def _issue(d, ca, name, subj, ext, self_signed=False):
    """A P-256 key and certificate; signed by `ca` (harness.make_certs
    dict) unless self_signed. Returns (cert, key)."""
    key, cert = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    extfile = os.path.join(d, name + ".ext")
    with open(extfile, "w") as f:
        f.write(ext)
    if self_signed:
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", subj,
                 "-addext", ext.strip().split("\n")[0])
        return cert, key
    csr = os.path.join(d, name + ".csr")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", subj)
    _openssl("x509", "-req", "-in", csr, "-CA", ca["ca"], "-CAkey", ca["ca_key"],
             "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", extfile)
    return cert, key


def _fingerprint(cert):
    out = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    return "sha256:" + out.split("=", 1)[1].strip().replace(":", "").lower()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The harness CA and its localhost certificate, plus: mx.example.com
    and *.example.org server certificates, a client certificate from the
    same CA, and a self-signed client certificate."""
    d = str(tmp_path_factory.mktemp("tlspki"))
    p = harness.make_certs(d)
    srv = "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:%s\n"
    cli = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
    p["mx_cert"], p["mx_key"] = _issue(d, p, "mx", "/CN=mx.example.com", srv % "mx.example.com")
    p["wild_cert"], p["wild_key"] = _issue(d, p, "wild", "/CN=*.example.org", srv % "*.example.org")
    p["cli_cert"], p["cli_key"] = _issue(d, p, "client", "/O=Sluice Tests/CN=client.test", cli)
    p["self_cert"], p["self_key"] = _issue(d, p, "self", "/CN=self.test",
                                           "subjectAltName=DNS:self.test\n", self_signed=True)
    p["cli_fp"] = _fingerprint(p["cli_cert"])
    p["self_fp"] = _fingerprint(p["self_cert"])
    return p


def _start(sluice_factory, fake, pki, listener, server=None, with_plugin=True):
    """sluice with [server] certificates and one extra listener `tls`
    (implicit TLS unless `listener` says otherwise); testplug writes what it
    sees of TLS into X-TLS."""
    port = harness.free_port()
    sec = {"listen": "127.0.0.1:%d" % port, "tls": "implicit"}
    sec.update(listener)
    srv = {"tls_cert_file": pki["cert"], "tls_key_file": pki["key"]}
    srv.update(server or {})
    extra = {"listener tls": sec}
    if with_plugin:
        extra.update(plugkit.chain_sections(("tlsinfo", "testplug", {"tls_header": "X-TLS"})))
    s = sluice_factory(fake.port, server=srv, extra_sections=extra)
    s.tls_port = port
    harness.wait_port(port)
    return s


def _ctx(pki, cert=None, key=None, maximum=None, minimum=None, ciphers=None, verify=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(pki["ca"])
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    if maximum:
        ctx.maximum_version = maximum
    if minimum:
        ctx.minimum_version = minimum
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def _implicit(port, ctx, name="localhost"):
    """A harness Client over implicit TLS, greeting read (raises what the
    handshake or the first read raises)."""
    c = Client(port)
    try:
        c.sock = ctx.wrap_socket(c.sock, server_hostname=name)
        c.greeting()
    except Exception:
        c.close()
        raise
    return c


def _refused(port, ctx, name="localhost"):
    """True when the server ends the session in the handshake: an alert or
    a close instead of a greeting (TLS 1.3 clients learn it at their first
    read, after their side of the handshake)."""
    try:
        c = _implicit(port, ctx, name)
    except (ssl.SSLError, ConnectionError, harness.ConnectionClosed, OSError):
        return True
    c.close()
    return False


def _tls_header(msg):
    m = re.search(rb"^X-TLS:((?:.*\r\n)(?:[ \t].*\r\n)*)", msg.data, re.M)
    assert m, msg.data
    value = re.sub(r"\r\n[ \t]", " ", m.group(1).decode()).strip()  # unfolded
    return dict(kv.split("=", 1) for kv in value.split("; "))


def _send_one(c):
    c.ehlo()
    assert transaction(c).code == 250
    c.cmd("QUIT")
    c.close()


# ---- protocol floor and ciphers ----------------------------------------------


def test_min_protocol_tls13_refuses_a_tls12_client(fake, sluice_factory, pki):
    s = _start(sluice_factory, fake, pki, {"tls_min_protocol": "TLSv1.3"})
    assert _refused(s.tls_port, _ctx(pki, maximum=ssl.TLSVersion.TLSv1_2))
    assert s.wait_log(r"TLS handshake failed")
    c = _implicit(s.tls_port, _ctx(pki))
    assert c.sock.version() == "TLSv1.3"
    _send_one(c)
    # The [server] default (TLSv1.2) still lets a TLS 1.2 client in on
    # the default listener's STARTTLS.
    with Client(s.port) as p:
        p.greeting()
        p.ehlo()
        p.expect("STARTTLS", 220)
        p.sock = _ctx(pki, maximum=ssl.TLSVersion.TLSv1_2).wrap_socket(
            p.sock, server_hostname="localhost")
        assert p.sock.version() == "TLSv1.2"
        _send_one(p)


def test_cipher_lists_restrict_the_choice(fake, sluice_factory, pki):
    s = _start(sluice_factory, fake, pki, {
        "tls_ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256",
        "tls_ciphersuites": "TLS_CHACHA20_POLY1305_SHA256"})
    tls12 = ssl.TLSVersion.TLSv1_2
    c = _implicit(s.tls_port, _ctx(pki, maximum=tls12))
    assert c.sock.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256", c.sock.cipher()
    _send_one(c)
    # A TLS 1.2 client that offers only other ciphers finds none in common.
    assert _refused(s.tls_port, _ctx(pki, maximum=tls12,
                                     ciphers="ECDHE-ECDSA-AES256-GCM-SHA384"))
    # TLS 1.3: the one suite allowed is the one chosen.
    c = _implicit(s.tls_port, _ctx(pki))
    assert c.sock.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256", c.sock.cipher()
    _send_one(c)
    t = s.wait_transactions(2)
    assert [x.get("cipher") for x in t] == ["ECDHE-ECDSA-AES128-GCM-SHA256",
                                           "TLS_CHACHA20_POLY1305_SHA256"], t


# ---- SNI ---------------------------------------------------------------------


def test_sni_selects_the_certificate(fake, sluice_factory, pki):
    # tls_sni repeats: the harness writes "key = value" lines, so the second
    # line rides in the first one's value.
    s = _start(sluice_factory, fake, pki, {
        "tls_sni": "mx.example.com %s %s\ntls_sni = *.example.org %s %s" % (
            pki["mx_cert"], pki["mx_key"], pki["wild_cert"], pki["wild_key"])},
        server={"tls_sni": "mx.example.com %s %s" % (pki["mx_cert"], pki["mx_key"])})

    def served(name, verify=True):
        ctx = _ctx(pki, verify=verify)
        c = _implicit(s.tls_port, ctx, name)
        der = c.sock.getpeercert(binary_form=True)
        c.cmd("QUIT")
        c.close()
        pem = ssl.DER_cert_to_PEM_cert(der)
        out = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253"],
                             input=pem, capture_output=True, text=True, timeout=30).stdout
        return out.strip().split("CN=", 1)[1]

    # verified against the CA, host name checked by Python's ssl
    assert served("mx.example.com") == "mx.example.com"
    assert served("MX.Example.Com") == "mx.example.com"
    assert served("smtp.example.org") == "*.example.org"
    assert served("localhost") == "localhost"
    # no match: the listener's own certificate (which does not carry the name)
    assert served("a.b.example.org", verify=False) == "localhost"
    assert served("other.test", verify=False) == "localhost"
    assert s.wait_log(r'event=tls .*sni="?mx\.example\.com"?')
    # the default listener inherits [server]'s single tls_sni line
    with Client(s.port) as p:
        p.greeting()
        p.ehlo()
        p.expect("STARTTLS", 220)
        p.sock = _ctx(pki).wrap_socket(p.sock, server_hostname="mx.example.com")
        pem = ssl.DER_cert_to_PEM_cert(p.sock.getpeercert(binary_form=True))
        assert "mx.example.com" in subprocess.run(
            ["openssl", "x509", "-noout", "-subject"], input=pem, capture_output=True,
            text=True, timeout=30).stdout


# ---- client certificates -----------------------------------------------------


def test_client_cert_required_from_the_ca(fake, sluice_factory, pki):
    s = _start(sluice_factory, fake, pki, {"tls_verify_client": "require",
                                           "tls_client_ca_file": pki["ca"]})
    c = _implicit(s.tls_port, _ctx(pki, pki["cli_cert"], pki["cli_key"]))
    _send_one(c)
    h = _tls_header(fake.wait_messages(1)[0])
    assert h["version"] == "TLSv1.3" and h["cipher"].startswith("TLS_"), h
    assert h["fp"] == pki["cli_fp"], h
    assert h["subject"] == "CN=client.test,O=Sluice Tests", h
    assert h["issuer"] == "CN=sluice test CA", h
    line = s.wait_log(r"event=tls .*peer_cert=verified")
    assert line and "peer_fp=%s" % pki["cli_fp"] in line, line
    assert "tls=TLSv1.3" in line and "cipher=TLS_" in line, line
    # no certificate, or one the CA did not sign: the handshake fails, logged
    n = len(s.lines)
    assert _refused(s.tls_port, _ctx(pki))
    assert s.wait_log(r"TLS handshake failed: .*certificate", start=n), s.lines[n:]
    n = len(s.lines)
    assert _refused(s.tls_port, _ctx(pki, pki["self_cert"], pki["self_key"]))
    assert s.wait_log(r"TLS handshake failed: .*certificate", start=n), s.lines[n:]
    assert len(fake.messages) == 1


def test_client_cert_optional(fake, sluice_factory, pki):
    s = _start(sluice_factory, fake, pki, {"tls_verify_client": "optional",
                                           "tls_client_ca_file": pki["ca"]})
    _send_one(_implicit(s.tls_port, _ctx(pki)))
    _send_one(_implicit(s.tls_port, _ctx(pki, pki["self_cert"], pki["self_key"])))
    _send_one(_implicit(s.tls_port, _ctx(pki, pki["cli_cert"], pki["cli_key"])))
    msgs = fake.wait_messages(3)
    fps = [_tls_header(m)["fp"] for m in msgs]
    assert fps == ["-", "-", pki["cli_fp"]], fps   # only a verified one is passed on
    assert s.wait_log(r"event=tls .*peer_cert=none")
    line = s.wait_log(r"event=tls .*peer_cert=unverified")
    assert line and "peer_fp=%s" % pki["self_fp"] in line, line  # logged, for pinning it


def test_client_cert_pinned_by_fingerprint(fake, sluice_factory, pki):
    """No CA: the pinned self-signed certificate is accepted, the CA's
    client certificate (another fingerprint) and no certificate are not.
    Over STARTTLS on the default listener, set in [server]."""
    s = _start(sluice_factory, fake, pki, {"tls": "none"}, server={
        "tls_verify_client": "require",
        "tls_client_fingerprints": "sha256:%s, %s" % ("00" * 32, pki["self_fp"].upper())})

    def starttls(ctx):
        c = Client(s.port)
        c.greeting()
        c.ehlo()
        c.expect("STARTTLS", 220)
        c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
        return c

    c = starttls(_ctx(pki, pki["self_cert"], pki["self_key"]))
    _send_one(c)
    assert _tls_header(fake.wait_messages(1)[0])["fp"] == pki["self_fp"]
    for ctx in (_ctx(pki, pki["cli_cert"], pki["cli_key"]), _ctx(pki)):
        n = len(s.lines)
        try:
            c = starttls(ctx)
            with pytest.raises((ssl.SSLError, ConnectionError, harness.ConnectionClosed,
                                OSError)):
                c.cmd("EHLO client.test")
            c.close()
        except (ssl.SSLError, ConnectionError, OSError):
            pass
        assert s.wait_log(r"TLS handshake failed", start=n), s.lines[n:]
    assert len(fake.messages) == 1


def test_swaks_with_a_client_certificate(fake, sluice_factory, pki):
    s = _start(sluice_factory, fake, pki, {"tls": "starttls", "require_tls": True,
                                           "tls_verify_client": "require",
                                           "tls_client_ca_file": pki["ca"]})
    r = harness.swaks("--server", "127.0.0.1:%d" % s.tls_port, "--tls", "--tls-verify",
                      "--tls-ca-path", pki["ca"], "--tls-cert", pki["cli_cert"],
                      "--tls-key", pki["cli_key"], "--from", "a@example.com",
                      "--to", "b@example.net", "--body", "with a client certificate")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _tls_header(fake.wait_messages(1)[0])["fp"] == pki["cli_fp"]
    r = harness.swaks("--server", "127.0.0.1:%d" % s.tls_port, "--tls", "--tls-verify",
                      "--tls-ca-path", pki["ca"], "--from", "a@example.com",
                      "--to", "b@example.net")
    assert r.returncode != 0, r.stdout + r.stderr
    assert len(fake.messages) == 1


# ---- sessions ----------------------------------------------------------------


def _session(port, ctx, session=None):
    c = Client(port)
    c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost", session=session)
    c.greeting()
    reused, sess = c.sock.session_reused, c.sock.session
    c.cmd("QUIT")
    c.close()
    return reused, sess


def test_session_tickets_resume_across_a_reload(fake, sluice_factory, pki):
    s = _start(sluice_factory, fake, pki, {}, with_plugin=False)
    ctx = _ctx(pki, maximum=ssl.TLSVersion.TLSv1_2)
    reused, sess = _session(s.tls_port, ctx)
    assert not reused and sess.has_ticket
    assert _session(s.tls_port, ctx, sess)[0]
    n = len(s.lines)
    s.signal(signal.SIGHUP)
    assert s.wait_log(r"configuration reloaded", start=n), s.lines[n:]
    # the new context took the ticket keys: the old ticket still resumes
    assert _session(s.tls_port, ctx, sess)[0]
    assert s.wait_log(r"event=tls .*resumed=yes")


def test_session_tickets_off_uses_the_cache(fake, sluice_factory, pki):
    s = _start(sluice_factory, fake, pki, {"tls_session_tickets": False}, with_plugin=False)
    ctx = _ctx(pki, maximum=ssl.TLSVersion.TLSv1_2)
    reused, sess = _session(s.tls_port, ctx)
    assert not reused and not sess.has_ticket
    assert _session(s.tls_port, ctx, sess)[0]   # session id from the server's cache


def test_session_of_another_client_policy_is_not_resumed(fake, sluice_factory, pki):
    """A reload that pins another fingerprint changes the session id
    context: the old session cannot skip the new check."""
    s = _start(sluice_factory, fake, pki, {"tls_verify_client": "optional",
                                           "tls_client_fingerprints": pki["self_fp"]},
               with_plugin=False)
    ctx = _ctx(pki, pki["self_cert"], pki["self_key"], maximum=ssl.TLSVersion.TLSv1_2)
    _, sess = _session(s.tls_port, ctx)
    assert _session(s.tls_port, ctx, sess)[0]
    s.sections["listener tls"]["tls_client_fingerprints"] = pki["cli_fp"]
    s.write_config()
    n = len(s.lines)
    s.signal(signal.SIGHUP)
    assert s.wait_log(r"configuration reloaded", start=n), s.lines[n:]
    assert not _session(s.tls_port, ctx, sess)[0]
    assert s.wait_log(r"event=tls .*resumed=no peer_cert=unverified", start=n)


# ---- --check ------------------------------------------------------------------


def test_check_reports_tls_policy_mistakes_with_lines(tmp_path, pki):
    text = "\n".join([
        "[server]",                                                        # 1
        "listen = 127.0.0.1:2525",                                         # 2
        "tls_cert_file = %s" % pki["cert"],                                # 3
        "tls_key_file = %s" % pki["key"],                                  # 4
        "tls_ciphers = HIGH:NO-SUCH-CIPHER",                               # 5
        "tls_min_protocol = TLSv1.1",                                      # 6
        "[listener sub]",                                                  # 7
        "listen = 127.0.0.1:2587",                                         # 8
        "tls_ciphersuites = TLS_AES_128_GCM_SHA256:TLS_NOPE",              # 9
        "tls_sni = *.com %s %s" % (pki["cert"], pki["key"]),               # 10
        "tls_sni = mx.example.com %s/missing.pem %s" % (tmp_path, pki["key"]),  # 11
        "tls_sni = a.example.com %s" % pki["cert"],                        # 12
        "tls_verify_client = require",                                     # 13
        "tls_client_fingerprints = sha256:abcd",                           # 14
        "tls_client_ca_file = %s/no-ca.pem" % tmp_path,                    # 15
        "[listener opt]",                                                  # 16
        "listen = 127.0.0.1:2588",                                         # 17
        "tls_verify_client = optional",                                    # 18
        "tls_sni = mx.example.com %s %s" % (pki["cert"], pki["mx_key"]),   # 19
        "",
    ])
    p = tmp_path / "tls.conf"
    p.write_text(text)
    r = harness.run_sluice(["--check", "-c", str(p)])
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    want = [
        (5, "'tls_ciphers': 'NO-SUCH-CIPHER'"),
        (6, "'tls_min_protocol': expected TLSv1.2|TLSv1.3"),
        (9, "'tls_ciphersuites': 'TLS_NOPE'"),
        (10, "'*.com' is not a host name"),
        (11, "missing.pem': cannot read"),
        (12, "expected HOSTNAME CERTFILE KEYFILE"),
        (14, "'tls_client_fingerprints': 'sha256:abcd' is not a fingerprint"),
        (15, "no-ca.pem': cannot read"),
        (18, "tls_verify_client = optional needs tls_client_ca_file"),
    ]
    for line, msg in want:
        assert "%s:%d: " % (p, line) in out and msg in out, (line, msg, out)
    # A key that does not match its certificate is found when --check
    # loads the contexts, on the tls_sni line.
    good = "\n".join([
        "[server]",                                                        # 1
        "listen = 127.0.0.1:%d" % harness.free_port(),                     # 2
        "tls_cert_file = %s" % pki["cert"],                                # 3
        "tls_key_file = %s" % pki["key"],                                  # 4
        "[upstream]",                                                      # 5
        "servers = 127.0.0.1:25",                                          # 6
        "[listener mx]",                                                   # 7
        "listen = 127.0.0.1:%d" % harness.free_port(),                     # 8
        "tls_sni = mx.example.com %s %s" % (pki["mx_cert"], pki["mx_key"]),  # 9
        "tls_sni = *.example.org %s %s" % (pki["wild_cert"], pki["key"]),  # 10
        "",
    ])
    p.write_text(good)
    r = harness.run_sluice(["--check", "-c", str(p)])
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "%s:10: " % p in out and "private key" in out, out
    p.write_text(good.replace("%s %s" % (pki["wild_cert"], pki["key"]),
                              "%s %s" % (pki["wild_cert"], pki["wild_key"])))
    r = harness.run_sluice(["--check", "-c", str(p)])
    assert r.returncode == 0, r.stdout + r.stderr


# ---- milters -------------------------------------------------------------------


def test_milter_gets_tls_and_certificate_macros(fake, sluice_factory, pki):
    import milters
    why = milters.TestMilter.unavailable()
    if why:
        pytest.skip(str(why))
    with milters.TestMilter(transport="unix") as tm:
        so = os.path.abspath(os.path.join(plugkit.BUILD, "plugins", "milter.so"))
        port = harness.free_port()
        extra = {
            "plugin m": {"path": so, "socket": tm.socket},
            "listener tls": {"listen": "127.0.0.1:%d" % port, "tls": "implicit", "chain": "m",
                             "tls_verify_client": "require", "tls_client_ca_file": pki["ca"]},
        }
        sluice_factory(fake.port, server={"tls_cert_file": pki["cert"],
                                          "tls_key_file": pki["key"]}, extra_sections=extra)
        harness.wait_port(port)
        c = _implicit(port, _ctx(pki, pki["cli_cert"], pki["cli_key"]))
        c.ehlo()
        assert transaction(c, mail_from="certified@example.com").code == 250
        c.close()
        t = tm.wait_transaction(sender="<certified@example.com>")
        m = t.macros("helo")
        assert m.get("{tls_version}") == "TLSv1.3", m
        assert m.get("{cipher}", "").startswith("TLS_"), m
        assert m.get("{cert_subject}") == "CN=client.test,O=Sluice Tests", m
        assert m.get("{cert_issuer}") == "CN=sluice test CA", m


def test_new_client_ca_contents_stop_resumption(sluice_factory, fake, pki, tmp_path):
    """The client CA file is replaced (same path) and sluice reloaded: a
    session verified under the old CA no longer resumes (its session id
    context covers the CA file's contents), and a fresh handshake with the
    old CA's certificate is refused."""
    import shutil
    import signal
    cafile = str(tmp_path / "clientca.pem")
    shutil.copy(pki["ca"], cafile)
    s = _start(sluice_factory, fake, pki, {"tls_verify_client": "require",
                                            "tls_client_ca_file": cafile}, with_plugin=False)
    ctx = _ctx(pki, cert=pki["cli_cert"], key=pki["cli_key"])
    c = _implicit(s.tls_port, ctx)
    c.ehlo()
    sess = c.sock.session
    c.cmd("QUIT")
    c.close()
    assert s.wait_log(r"event=tls .*peer_cert=verified")
    other = harness.make_certs(str(tmp_path / "ca2"))
    shutil.copy(other["ca"], cafile)
    n0 = len(s.lines)
    s.signal(signal.SIGHUP)
    assert s.wait_log(r"configuration reloaded", start=n0)
    assert _refused(s.tls_port, ctx)
    c = Client(s.tls_port)
    try:
        c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost", session=sess)
        resumed = c.sock.session_reused
        c.greeting()
    except (ssl.SSLError, OSError, AssertionError):
        resumed = False
    finally:
        c.close()
    assert not resumed
    assert not s.wait_log(r"event=tls .*resumed=yes", start=n0, timeout=1)


def test_policy_change_with_an_unreadable_key_refuses_the_reload(sluice_factory, fake, pki):
    """Started as root with user = nobody and a 0600 key (the hardened
    setup): a reload that changes the client-certificate pins cannot build
    the new context, so it is refused with a clear error instead of
    keeping the old policy under a 'reloaded' message. pytest's own temp
    tree is private to root (and pytest makes it so again whenever another
    session starts), so the configuration and spool live in a directory of
    their own that nobody can read."""
    import pwd
    import shutil
    import tempfile
    nobody = pwd.getpwnam("nobody")
    d = tempfile.mkdtemp(prefix="sluice-hup-", dir="/tmp")
    os.chmod(d, 0o755)
    spool = os.path.join(d, "spool")
    os.mkdir(spool)
    os.chown(spool, nobody.pw_uid, nobody.pw_gid)
    key = os.path.join(d, "rootonly.key")
    shutil.copy(pki["key"], key)
    os.chmod(key, 0o600)
    port = harness.free_port()
    lst = {"listen": "127.0.0.1:%d" % port, "tls": "implicit", "tls_verify_client": "require",
           "tls_client_fingerprints": pki["self_fp"]}
    s = sluice_factory(fake.port, start=False,
                       server={"user": "nobody", "spool_dir": spool, "memory_buffer": "0",
                               "tls_cert_file": pki["cert"], "tls_key_file": key},
                       extra_sections={"listener tls": lst})
    s.config_path = os.path.join(d, "sluice.conf")
    try:
        s.write_config()
        os.chmod(s.config_path, 0o644)
        s.start()
        harness.wait_port(port)
        s.tls_port = port
        ctx = _ctx(pki, cert=pki["self_cert"], key=pki["self_key"])
        assert not _refused(s.tls_port, ctx)
        s.sections["listener tls"]["tls_client_fingerprints"] = pki["cli_fp"]
        s.write_config()
        n = len(s.lines)
        s.signal(signal.SIGHUP)
        assert s.wait_log(r"the TLS policy changed .*restart sluice to apply it", start=n), \
            "\n".join(s.lines[n:])
        assert s.wait_log(r"reload of .* refused", start=n)
        assert not s.wait_log(r"configuration reloaded", start=n, timeout=0.5)
        assert not _refused(s.tls_port, ctx)  # the running policy, as the log says
        # Unchanged policy, same unreadable key: the reload goes through.
        s.sections["listener tls"]["tls_client_fingerprints"] = pki["self_fp"]
        s.write_config()
        n = len(s.lines)
        s.signal(signal.SIGHUP)
        assert s.wait_log(r"configuration reloaded", start=n), "\n".join(s.lines[n:])
    finally:
        s.stop()  # before its directory goes; the fixture's own stop is then a no-op
        shutil.rmtree(d, ignore_errors=True)
