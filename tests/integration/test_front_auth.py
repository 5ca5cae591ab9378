# SPDX-License-Identifier: GPL-2.0-or-later
"""SMTP AUTH (RFC 4954) end to end: swaks -> sluice -> a real Postfix, with
a real Dovecot checking the passwords.

One private Dovecot auth service (the setup of test_dvauth.py: a passwd-file
with alice/secret as SHA512-CRYPT and bob/hunter2 as {PLAIN}, no protocols,
the auth-client socket in its own directory) serves both sluice and the
private Postfix upstream (smtpd_sasl_auth_enable, smtpd_sasl_type = dovecot
on the same socket, as a submission setup behind sluice would have it for
permit_sasl_authenticated; Postfix 3.7 takes XCLIENT LOGIN= and logs
sasl_username= even without that, as a probe by hand showed). sluice runs
three listeners:

  default (MX)   plain, chain: DKIM verify only (never signs)
  submission     STARTTLS, require_tls, auth = dovecot, require_auth,
                 chain: DKIM sign (sign_authenticated; 127.0.0.1 is not in
                 internal_networks, so only authentication makes mail
                 outbound)
  submissions    implicit TLS, the same AUTH and chain

Checked: PLAIN and LOGIN with swaks on both TLS listeners deliver a signed
message and Postfix logs the login; a wrong password gets 535 5.7.8 and no
mail; AUTH before STARTTLS gets 538 5.7.11 and EHLO does not offer it;
MAIL before AUTH gets 530 5.7.0; mail on the MX listener is not signed;
the failure counter moves in /metrics; auth_max_failures closes the session
with 421; Dovecot stopped gives 454 4.7.0. Failing attempts come from their
own 127.0.0.x address: Dovecot's auth penalty delays every later request
from an address that failed. Loopback only; every wait is bounded.
"""

import base64
import os
import re
import subprocess

import pytest

import harness
from harness import Client
from test_dvauth import DOVECOT, Dovecot

import postfix as pfmod

pytestmark = [
    pytest.mark.skipif(not os.path.exists(DOVECOT),
                       reason="dovecot not installed (Debian package dovecot-core)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a private Dovecot and Postfix need root"),
]

MSG_FROM = "ann@example.com"
MSG_TO = "bob@example.net"


# Under SLUICE_SANITIZE: DKIM's RSA signing runs on pool threads, where
# OpenSSL keeps per-thread state the suppressions in tests/lsan.supp name;
# they match only with full stacks (as in test_dkim_plugin.py).
LSAN_ENV = {
    "LSAN_OPTIONS": "suppressions=" + os.path.join(harness.SRC_DIR, "tests", "lsan.supp"),
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0",
}


def b64(s):
    return base64.b64encode(s.encode()).decode()


@pytest.fixture(scope="module")
def dovecot():
    d = Dovecot()
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def postfix(dovecot):
    why = pfmod.unavailable()
    if why:
        pytest.skip(why)
    inst = pfmod.PrivatePostfix(extra={
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": dovecot.sock,
    })
    try:
        inst.start()
    except Exception:
        inst.stop()
        raise
    yield inst
    inst.stop()


@pytest.fixture(scope="module")
def dkim_table(tmp_path_factory):
    d = tmp_path_factory.mktemp("dkim")
    key = str(d / "rsa.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", key], check=True, capture_output=True,
                   timeout=60)
    os.chmod(key, 0o600)
    pub = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True, timeout=60).stdout
    keys = str(d / "keys.txt")
    with open(keys, "w") as f:
        f.write("sel._domainkey.example.com v=DKIM1; k=rsa; p=%s\n"
                % base64.b64encode(pub).decode())
    table = str(d / "table")
    with open(table, "w") as f:
        f.write("example.com sel %s\n" % key)
    return {"table": table, "keys": keys}


@pytest.fixture
def front(sluice_factory, postfix, dovecot, certs, dkim_table):
    sub, smtps, stats = harness.free_port(), harness.free_port(), harness.free_port()
    auth = {"auth": "dovecot", "auth_socket": dovecot.sock, "require_auth": True}
    sections = {
        "chain": {"plugins": "dkimv"},
        "plugin dkimv": {"path": "dkim", "mode": "verify", "authserv_id": "sluice.test",
                         "keys_file": dkim_table["keys"]},
        "plugin dkims": {"path": "dkim", "mode": "sign", "signing_table": dkim_table["table"],
                         "internal_networks": "10.0.0.0/8", "sign_authenticated": True},
        "listener submission": dict({"listen": "127.0.0.1:%d" % sub, "tls": "starttls",
                                     "require_tls": True, "chain": "dkimv, dkims"}, **auth),
        "listener submissions": dict({"listen": "127.0.0.1:%d" % smtps, "tls": "implicit",
                                      "chain": "dkimv, dkims"}, **auth),
    }
    s = sluice_factory(postfix.port, server={"tls_cert_file": certs["cert"],
                                             "tls_key_file": certs["key"]},
                       stats={"listen": "127.0.0.1:%d" % stats},
                       extra_sections=sections, env=LSAN_ENV)
    s.sub_port, s.smtps_port, s.stats_port = sub, smtps, stats
    harness.wait_port(sub)
    harness.wait_port(smtps)
    return s


def swaks_auth(port, implicit, mech, user, password, certs, subject, source=None):
    args = ["--server", "127.0.0.1:%d" % port, "--tlsc" if implicit else "--tls",
            "--tls-verify", "--tls-ca-path", certs["ca"], "--helo", "client.test",
            "--auth", mech, "--auth-user", user, "--auth-password", password,
            "--from", MSG_FROM, "--to", MSG_TO,
            "--header", "From: Ann <%s>" % MSG_FROM, "--header", "Subject: %s" % subject,
            "--body", "body of %s" % subject]
    if source:
        args += ["--local-interface", source]
    return harness.swaks(*args)


def delivered(postfix, subject, before, n=1):
    for path in postfix.wait_mail(n, before=before):
        data = open(path, "rb").read()
        if ("Subject: %s" % subject).encode() in data:
            return data
    return None


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_auth_delivers_signed_and_upstream_sees_login(front, postfix, certs, mech, implicit):
    subject = "auth %s %s" % (mech, "implicit" if implicit else "starttls")
    before = postfix.mail_files()
    port = front.smtps_port if implicit else front.sub_port
    r = swaks_auth(port, implicit, mech, "alice", "secret", certs, subject)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "235 2.7.0" in out, out
    assert "secret" not in front.output(), "a password reached the log"
    data = delivered(postfix, subject, before)
    assert data is not None, postfix.log_tail()
    assert re.search(rb"^DKIM-Signature:.*d=example\.com", data, re.M | re.S), data[:800]
    t = front.wait_transactions(1)
    assert t and t[-1].get("auth") == "alice", t
    # Postfix took the login from XCLIENT (it names it sasl_username).
    assert re.search(r"sasl_username=alice", postfix.log_tail(400)), postfix.log_tail()


def test_wrong_password_535_and_no_mail(front, postfix, certs):
    before = postfix.mail_files()
    r = swaks_auth(front.sub_port, False, "PLAIN", "alice", "wrong", certs, "wrong pw",
                   source="127.0.0.21")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "535 5.7.8" in out, out
    assert "wrong" not in re.sub(r"Subject: wrong pw|subject=.*", "", front.output())
    assert postfix.wait_mail(1, timeout=1.5, before=before) == []
    st, text = harness_metrics(front.stats_port)
    assert re.search(r'^sluice_smtp_auth_total\{result="failure"\} [1-9]', text, re.M), text


def harness_metrics(port):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def test_auth_before_starttls_538_and_not_offered(front, certs):
    with Client(front.sub_port) as c:
        c.greeting()
        r = c.ehlo()
        assert not any(ln.upper().startswith("AUTH") for ln in r.lines[1:]), r
        c.expect("AUTH PLAIN " + b64("\0alice\0secret"), 538, "5.7.11")
        c.expect("STARTTLS", 220)
        c.starttls(certs["ca"])
        r = c.ehlo()
        assert "AUTH PLAIN LOGIN" in [ln.upper() for ln in r.lines[1:]], r


def test_mail_before_auth_530(front, certs):
    with Client(front.sub_port) as c:
        c.greeting()
        c.ehlo()
        c.expect("STARTTLS", 220)
        c.starttls(certs["ca"])
        c.ehlo()
        c.expect("MAIL FROM:<%s>" % MSG_FROM, 530, "5.7.0")
        c.expect("RCPT TO:<%s>" % MSG_TO, 530, "5.7.0")
        c.expect("NOOP", 250)
        # LOGIN by hand: the prompts, then the session goes on authenticated.
        c.expect("AUTH LOGIN", 334)
        c.expect(b64("alice"), 334)
        c.expect(b64("secret"), 235, "2.7.0")
        c.expect("MAIL FROM:<%s>" % MSG_FROM, 250)
        c.expect("RSET", 250)


def test_mx_listener_does_not_sign(front, postfix):
    before = postfix.mail_files()
    msg = ("From: Ann <%s>\r\nTo: <%s>\r\nSubject: via mx\r\n\r\nunsigned\r\n"
           % (MSG_FROM, MSG_TO)).encode()
    assert harness.smtp_send(front.port, mail_from=MSG_FROM, rcpts=[MSG_TO], msg=msg) == {}
    data = delivered(postfix, "via mx", before)
    assert data is not None, postfix.log_tail()
    assert b"DKIM-Signature:" not in data
    with Client(front.port) as c:  # AUTH is not a thing on the MX
        c.greeting()
        r = c.ehlo()
        assert not any(ln.upper().startswith("AUTH") for ln in r.lines[1:]), r
        c.expect("AUTH PLAIN " + b64("\0alice\0secret"), 502, "5.5.1")


def test_auth_max_failures_closes(front, certs):
    bad = "AUTH PLAIN " + b64("\0alice\0nope")
    with Client(front.smtps_port, source="127.0.0.22", timeout=30) as c:
        c.sock = __import__("ssl").create_default_context(cafile=certs["ca"]).wrap_socket(
            c.sock, server_hostname="localhost")
        c.greeting()
        c.ehlo()
        c.expect(bad, 535, "5.7.8")
        c.expect(bad, 535, "5.7.8")
        c.expect(bad, 535, "5.7.8")
        r = c.reply()
        assert r.code == 421 and r.enh == "4.7.0", r
        assert c.is_closed()
    front.wait_log(r"event=auth .*result=fail .*failures=3")


def test_failures_per_address_across_connections(sluice_factory, postfix, dovecot):
    """auth_max_failures_per_ip: reconnecting buys no more guesses; the
    right password from that address is refused too until the window ends,
    and other addresses are not affected."""
    s = sluice_factory(postfix.port, server={"auth": "dovecot", "auth_plaintext": True,
                                             "auth_socket": dovecot.sock,
                                             "auth_max_failures": 5,
                                             "auth_max_failures_per_ip": 2,
                                             "auth_failure_window": "10m"},
                       stats={"listen": "127.0.0.1:%d" % harness.free_port()})
    bad = "AUTH PLAIN " + b64("\0alice\0nope")
    good = "AUTH PLAIN " + b64("\0alice\0secret")
    with Client(s.port, source="127.0.0.31", timeout=30) as c:
        c.greeting()
        c.ehlo()
        c.expect(bad, 535, "5.7.8")
    with Client(s.port, source="127.0.0.31", timeout=30) as c:
        c.greeting()
        c.ehlo()
        c.expect(bad, 535, "5.7.8")
        c.expect(good, 454, "4.7.0")
    with Client(s.port, source="127.0.0.31", timeout=30) as c:
        c.greeting()
        c.ehlo()
        c.expect(good, 454, "4.7.0")
    with Client(s.port, source="127.0.0.32", timeout=30) as c:
        c.greeting()
        c.ehlo()
        c.expect(good, 235, "2.7.0")
    assert s.wait_log(r"event=auth client=127\.0\.0\.31 result=blocked retry_in=\d+s")
    assert not s.wait_log(r"client=127\.0\.0\.32 result=blocked", timeout=0.3)


def test_control_bytes_in_a_name_fail_alone(sluice_factory, postfix, dovecot):
    """A user name with a control byte is a counted failure (535), Dovecot
    is not asked, and the shared Dovecot connection is not torn down: a
    login on another session at the same time succeeds."""
    s = sluice_factory(postfix.port, server={"auth": "dovecot", "auth_plaintext": True,
                                             "auth_socket": dovecot.sock,
                                             "auth_max_failures": 2})
    good = Client(s.port, source="127.0.0.41", timeout=30)
    good.greeting()
    good.ehlo()
    with Client(s.port, source="127.0.0.42", timeout=30) as c:
        c.greeting()
        c.ehlo()
        c.expect("AUTH PLAIN " + b64("\0a\x01b\0x"), 535, "5.7.8")
        c.expect("AUTH PLAIN " + b64("\0a\x1bb\0x"), 535, "5.7.8")
        r = c.reply()
        assert (r.code, r.enh) == (421, "4.7.0"), r
    good.expect("AUTH PLAIN " + b64("\0alice\0secret"), 235, "2.7.0")
    good.close()
    assert not s.wait_log(r"malformed reply", timeout=0.3)


def test_concurrent_guesses_stop_at_the_address_limit(sluice_factory, postfix, dovecot):
    """Sessions of one address guessing at the same time: the attempts in
    flight count, so no more than auth_max_failures_per_ip reach Dovecot."""
    s = sluice_factory(postfix.port, server={"auth": "dovecot", "auth_plaintext": True,
                                             "auth_socket": dovecot.sock,
                                             "auth_max_failures_per_ip": 2})
    cs = []
    for _ in range(6):
        c = Client(s.port, source="127.0.0.43", timeout=30)
        c.greeting()
        c.ehlo()
        cs.append(c)
    for c in cs:
        c.send(("AUTH PLAIN " + b64("\0alice\0guess") + "\r\n").encode())
    codes = sorted(c.reply().code for c in cs)
    for c in cs:
        c.close()
    assert codes == [454, 454, 454, 454, 535, 535], codes


def test_auth_cancel_counts_as_junk(sluice_factory, postfix, dovecot):
    s = sluice_factory(postfix.port, server={"auth": "dovecot", "auth_plaintext": True,
                                             "auth_socket": dovecot.sock,
                                             "junk_command_limit": 5})
    with Client(s.port, timeout=30) as c:
        c.greeting()
        c.ehlo()  # 1 junk
        for _ in range(4):
            c.expect("AUTH LOGIN", 334)
            c.expect("*", 501, "5.0.0")
        r = c.cmd("AUTH LOGIN")
        assert (r.code, r.enh) == (421, "4.7.0"), r


def test_reload_changes_auth_socket(sluice_factory, postfix, dovecot):
    """A reload applies a changed auth_socket to the sessions after it; a
    session of the old configuration still gets its answer."""
    import signal
    s = sluice_factory(postfix.port, server={"auth": "dovecot", "auth_plaintext": True,
                                             "auth_socket": "/nonexistent/auth"})
    old = Client(s.port)
    old.greeting()
    old.ehlo()
    old.expect("AUTH PLAIN " + b64("\0alice\0secret"), 454, "4.7.0")
    s.sections["server"]["auth_socket"] = dovecot.sock
    s.write_config()
    s.signal(signal.SIGHUP)
    s.wait_log(r"configuration reloaded")
    with Client(s.port) as c:
        c.greeting()
        c.ehlo()
        c.expect("AUTH PLAIN " + b64("\0alice\0secret"), 235, "2.7.0")
    # the older session keeps its configuration (and its socket)
    old.expect("AUTH PLAIN " + b64("\0alice\0secret"), 454, "4.7.0")
    old.close()


def test_dovecot_stopped_454(front, dovecot, certs):
    """Last: stops the module's Dovecot."""
    dovecot.stop()
    with Client(front.sub_port) as c:
        c.greeting()
        c.ehlo()
        c.expect("STARTTLS", 220)
        c.starttls(certs["ca"])
        c.ehlo()
        c.expect("AUTH PLAIN " + b64("\0alice\0secret"), 454, "4.7.0")
        c.expect("MAIL FROM:<%s>" % MSG_FROM, 530, "5.7.0")
    st, text = harness_metrics(front.stats_port)
    assert re.search(r'^sluice_smtp_auth_total\{result="tempfail"\} [1-9]', text, re.M), text
