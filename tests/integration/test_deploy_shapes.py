# SPDX-License-Identifier: GPL-2.0-or-later
"""The deployment shapes of the README, from the files in contrib/examples/:

  mx.conf             the MX alone (dkim verify, virus, spam)
  mx-submission.conf  MX + submission (587, STARTTLS + AUTH) + submissions
                      (465, implicit TLS) with rewrite and DKIM signing
  behind-haproxy.conf behind HAProxy (contrib/examples/haproxy.cfg): PROXY
                      v2 on the MX, TLS ended at HAProxy for submissions

Each file is used as shipped except for what belongs to the machine: its
addresses become free loopback ports (10.0.0.5 -> 127.0.0.1, the balancer
10.0.0.2 -> 127.0.0.5), its paths the test's certificates, virus database,
DKIM table, Dovecot socket and the repository's rules, and reverse_dns is
turned off (the names of 127.0.0.x would be asked of the machine's
resolver, off loopback). Then `sluice --check` must accept it, and mail
must flow through it into a private Postfix as the README says. Loopback
only; every wait is bounded."""

import base64
import os
import re
import shutil
import subprocess

import pytest

import harness
from test_dvauth import DOVECOT
from test_front_proxy import HAProxy
from test_virus_libclamav import make_db

EXAMPLES = os.path.join(harness.SRC_DIR, "contrib", "examples")

pytestmark = [
    pytest.mark.skipif(not os.path.exists(DOVECOT),
                       reason="dovecot not installed (Debian package dovecot-core)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a private Dovecot and Postfix need root"),
]

# Under AddressSanitizer these shapes run without the leak check. Telling
# OpenSSL's per-thread state on the pool threads (tests/lsan.supp) from a
# leak needs the slow unwinder on every malloc, and with it the spam
# plugin's Hyperscan compile at start takes ~50 s instead of ~1 s. Each
# plugin of these chains runs under the leak check in its own tests
# (test_dkim_plugin, test_virus_libclamav, test_spam_plugin, test_front_auth);
# memory errors are still caught here.
ASAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
}


# The private Dovecot of the AUTH tests; the suite's plain private Postfix
# (conftest.py) is the upstream.
from test_front_auth import dovecot  # noqa: F401,E402  (a pytest fixture)


@pytest.fixture(scope="module")
def site(tmp_path_factory, certs):
    """What the examples' paths point to on this machine."""
    d = tmp_path_factory.mktemp("site")
    key = str(d / "dkim.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", key], check=True,
                   capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    table = str(d / "signing.table")
    with open(table, "w") as f:
        f.write("example.com sel %s ed25519-sha256\n" % key)
    combined = d / "haproxy.pem"
    combined.write_bytes(open(certs["cert"], "rb").read() + open(certs["key"], "rb").read())
    return {"db": make_db(d / "clamav"), "table": table, "haproxy_pem": str(combined)}


def render(name, tmp_path, certs, site, dovecot, postfix, ports):
    """The example `name` with this machine's addresses and paths."""
    text = open(os.path.join(EXAMPLES, name)).read()
    subs = [
        (r"/etc/sluice/tls/[\w.-]+\.crt", certs["cert"]),
        (r"/etc/sluice/tls/[\w.-]+\.key", certs["key"]),
        (r"/var/lib/clamav", site["db"]),
        (r"/usr/share/sluice/rules", os.path.join(harness.SRC_DIR, "rules")),
        (r"/etc/sluice/dkim/signing\.table", site["table"]),
        (r"/var/spool/sluice/auth", dovecot.sock),
        (r"127\.0\.0\.1:10025", "127.0.0.1:%d" % postfix.port),
        (r"127\.0\.0\.1:9025", "127.0.0.1:%d" % ports["stats"]),
        (r"reverse_dns = yes", "reverse_dns = no"),
        (r"10\.0\.0\.2/32, 10\.0\.0\.3/32", "127.0.0.5/32"),
    ]
    for port_name in ("25", "587", "465", "2525", "2465"):
        # "0.0.0.0:25, [::]:25" and "10.0.0.5:2525" become one loopback port
        subs.append((r"(?:0\.0\.0\.0|10\.0\.0\.5):%s\b(?:, \[::\]:%s\b)?" % (port_name, port_name),
                     "127.0.0.1:%d" % ports[port_name]))
    for rx, to in subs:
        text = re.sub(rx, lambda _m, to=to: to, text)
    assert "10.0.0." not in text and "/etc/sluice" not in text, text
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture
def ports():
    return {k: harness.free_port() for k in ("25", "587", "465", "2525", "2465", "stats")}


def check_ok(path):
    r = harness.run_sluice(["--check", "-c", path])
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def start(sluice_factory, path, port):
    s = sluice_factory(None, start=False, port=port, use_config=False,
                       args=["-c", path], env=ASAN_ENV)
    s.start()
    return s


def swaks(port, *extra, subject="shape"):
    return harness.swaks("--server", "127.0.0.1:%d" % port, "--helo", "client.test",
                         "--from", "ann@example.com", "--to", "bob@example.net",
                         "--header", "From: Ann <ann@example.com>",
                         "--header", "Subject: %s" % subject, "--body", "hello", *extra)


def delivered(postfix, subject, before):
    for path in postfix.wait_mail(1, before=before):
        data = open(path, "rb").read()
        if ("Subject: %s" % subject).encode() in data:
            return data
    return None


@pytest.mark.parametrize("name", ["mx.conf", "mx-submission.conf", "behind-haproxy.conf"])
def test_example_passes_check(name, tmp_path, certs, site, dovecot, postfix, ports):
    check_ok(render(name, tmp_path, certs, site, dovecot, postfix, ports))


def test_mx_shape(tmp_path, certs, site, dovecot, postfix, ports, sluice_factory):
    path = render("mx.conf", tmp_path, certs, site, dovecot, postfix, ports)
    s = start(sluice_factory, path, ports["25"])
    before = postfix.mail_files()
    r = swaks(ports["25"], "--tls", subject="mx-shape")
    assert r.returncode == 0, r.stdout + r.stderr
    data = delivered(postfix, "mx-shape", before)
    assert data and b"DKIM-Signature" not in data, postfix.log_tail()
    assert s.wait_log(r"event=tx .*tls=TLSv1\.[23] .*verdict=accepted")


def test_mx_submission_shape(tmp_path, certs, site, dovecot, postfix, ports, sluice_factory):
    path = render("mx-submission.conf", tmp_path, certs, site, dovecot, postfix, ports)
    s = start(sluice_factory, path, ports["25"])
    harness.wait_port(ports["587"])
    harness.wait_port(ports["465"])
    auth = ["--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret"]
    for port, tls, subject in ((ports["587"], "--tls", "sub-587"), (ports["465"], "--tlsc",
                                                                     "sub-465")):
        before = postfix.mail_files()
        r = swaks(port, tls, *auth, subject=subject)
        assert r.returncode == 0, r.stdout + r.stderr
        data = delivered(postfix, subject, before)
        assert data and b"DKIM-Signature:" in data and b"d=example.com" in data, data
    # submission without AUTH: refused; the MX does not sign
    r = swaks(ports["587"], "--tls", subject="no-auth")
    assert r.returncode != 0 and "530 5.7.0" in r.stdout, r.stdout
    before = postfix.mail_files()
    r = swaks(ports["25"], subject="mx-unsigned")
    assert r.returncode == 0, r.stdout + r.stderr
    data = delivered(postfix, "mx-unsigned", before)
    assert data and b"DKIM-Signature" not in data
    assert s.wait_log(r"event=tx .*auth=\"alice\"")


def test_behind_haproxy_shape(tmp_path, certs, site, dovecot, postfix, ports, sluice_factory):
    if not shutil.which("haproxy"):
        pytest.skip("haproxy not installed")
    path = render("behind-haproxy.conf", tmp_path, certs, site, dovecot, postfix, ports)
    s = start(sluice_factory, path, ports["2525"])
    harness.wait_port(ports["2465"])
    # contrib/examples/haproxy.cfg with this machine's ports and files
    cfg = open(os.path.join(EXAMPLES, "haproxy.cfg")).read()
    front25, front465 = harness.free_port(), harness.free_port()
    cfg = (cfg.replace("bind :25", "bind 127.0.0.1:%d" % front25)
              .replace("bind :465", "bind 127.0.0.1:%d" % front465)
              .replace("/etc/haproxy/mx.example.com.pem", site["haproxy_pem"])
              .replace("10.0.0.5:2525", "127.0.0.1:%d" % ports["2525"])
              .replace("10.0.0.5:2465", "127.0.0.1:%d" % ports["2465"])
              .replace("source 10.0.0.2", "source 127.0.0.5")
              .replace("maxconn 20000", "maxconn 200"))
    hp = HAProxy(tmp_path / "haproxy", {})
    with open(hp.cfg, "w") as f:
        f.write(cfg)
    hp.ports = [front25, front465]
    hp.start()
    try:
        before = postfix.mail_files()
        r = swaks(front25, "--local-interface", "127.0.0.88", "--tls", subject="edge-25")
        assert r.returncode == 0, r.stdout + r.stderr
        data = delivered(postfix, "edge-25", before)
        assert data and re.search(rb"\[127\.0\.0\.88\]", data), data[:800]
        before = postfix.mail_files()
        r = swaks(front465, "--tlsc", "--local-interface", "127.0.0.89", "--auth", "PLAIN",
                  "--auth-user", "alice", "--auth-password", "secret", subject="edge-465")
        assert r.returncode == 0, r.stdout + r.stderr
        data = delivered(postfix, "edge-465", before)
        assert data and b"DKIM-Signature:" in data and re.search(rb"\[127\.0\.0\.89\]", data)
        assert s.wait_log(r"event=tx client=127\.0\.0\.89:\d+ .*tls=TLSv1\.[23] .*auth=\"alice\"")
    finally:
        hp.stop()
