# SPDX-License-Identifier: GPL-2.0-or-later
"""Several listeners in one daemon, each with its own TLS mode, rules and
chain: the MX listener on [server] listen, a submission listener that
requires STARTTLS, an implicit-TLS listener (RFC 8314), per-listener
message-size and recipient limits, and `--check` naming the file and line
of every listener mistake. Loopback only; every wait is bounded."""

import re
import socket
import ssl

import pytest

import harness
import plugkit
from harness import Client, transaction


@pytest.fixture
def multi(fake, sluice_factory, certs):
    """default (MX, [chain] = tag_mx), submission (STARTTLS required, chain
    tag_sub), submissions (implicit TLS, chain tag_sub, 64k size limit,
    two recipients)."""
    sub, smtps = harness.free_port(), harness.free_port()
    tp = plugkit.plugin_path("testplug")
    sections = {
        "chain": {"plugins": "tag_mx"},
        "plugin tag_mx": {"path": tp, "add_header": "X-Chain: mx"},
        "plugin tag_sub": {"path": tp, "add_header": "X-Chain: submission"},
        "listener submission": {"listen": "127.0.0.1:%d" % sub, "tls": "starttls",
                                "require_tls": True, "chain": "tag_sub"},
        "listener submissions": {"listen": "127.0.0.1:%d" % smtps, "tls": "implicit",
                                 "chain": "tag_sub", "max_message_size": "64k",
                                 "max_recipients": 2},
    }
    s = sluice_factory(fake.port, server={"tls_cert_file": certs["cert"],
                                          "tls_key_file": certs["key"]},
                       extra_sections=sections)
    s.sub_port, s.smtps_port = sub, smtps
    harness.wait_port(sub)
    harness.wait_port(smtps)
    return s


def chain_of(msg):
    m = re.search(rb"^X-Chain: (\S+)", msg.data, re.M)
    return m.group(1).decode() if m else None


def test_each_listener_runs_its_own_chain(fake, multi, certs):
    assert harness.smtp_send(multi.port) == {}
    assert chain_of(fake.wait_messages(1)[0]) == "mx"
    assert harness.smtp_send(multi.sub_port, starttls_ca=certs["ca"]) == {}
    assert chain_of(fake.wait_messages(2)[1]) == "submission"
    lines = multi.wait_log(r"event=connect .*listener=submission")
    assert lines


def test_submission_requires_starttls(fake, multi, certs):
    with Client(multi.sub_port) as c:
        c.greeting()
        r = c.ehlo()
        assert any(ln.upper() == "STARTTLS" for ln in r.lines[1:]), r
        # RFC 3207 section 4: nothing but the session basics before TLS.
        c.expect("MAIL FROM:<a@example.com>", 530, "5.7.0")
        c.expect("RCPT TO:<b@example.net>", 530, "5.7.0")
        c.expect("DATA", 530, "5.7.0")
        c.expect("NOOP", 250)
        c.expect("RSET", 250)
        c.expect("STARTTLS", 220)
        c.starttls(certs["ca"])
        c.ehlo()
        assert transaction(c).code == 250
    assert len(fake.wait_messages(1)) == 1


def test_bdat_before_starttls_has_its_chunk_read_not_run(fake, multi, certs):
    """A 530 for BDAT before STARTTLS still reads its chunk: the bytes
    inside (here commands, STARTTLS among them) are never taken as
    commands."""
    with Client(multi.sub_port) as c:
        c.greeting()
        c.ehlo()
        chunk = b"STARTTLS\r\nMAIL FROM:<x@example.com>\r\n"
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        r = c.reply()
        assert (r.code, r.enh) == (530, "5.7.0"), r
        c.expect("NOOP", 250)
        c.expect("STARTTLS", 220)
        c.starttls(certs["ca"])
        c.ehlo()
        assert transaction(c).code == 250
    assert len(fake.wait_messages(1)) == 1


def test_swaks_submission_over_starttls(fake, multi, certs):
    r = harness.swaks("--server", "127.0.0.1:%d" % multi.sub_port, "--tls",
                      "--tls-verify", "--tls-ca-path", certs["ca"],
                      "--from", "a@example.com", "--to", "b@example.net",
                      "--header", "Subject: submitted", "--body", "submitted body")
    assert r.returncode == 0, r.stdout + r.stderr
    m = fake.wait_messages(1)[0]
    assert b"submitted body" in m.data and chain_of(m) == "submission"


def test_swaks_without_tls_is_refused_on_submission(fake, multi):
    r = harness.swaks("--server", "127.0.0.1:%d" % multi.sub_port,
                      "--from", "a@example.com", "--to", "b@example.net")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "530 5.7.0" in out, out
    assert fake.messages == []


def test_implicit_tls_with_swaks(fake, multi, certs):
    r = harness.swaks("--server", "127.0.0.1:%d" % multi.smtps_port, "--tlsc",
                      "--tls-verify", "--tls-ca-path", certs["ca"],
                      "--from", "a@example.com", "--to", "b@example.net",
                      "--header", "Subject: smtps", "--body", "implicit tls body")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    m = fake.wait_messages(1)[0]
    assert b"implicit tls body" in m.data and chain_of(m) == "submission"
    t = multi.wait_transactions(1)
    assert t and t[0].get("tls", "none") != "none", t


def test_implicit_tls_listener_limits_and_no_starttls(fake, multi, certs):
    ctx = ssl.create_default_context(cafile=certs["ca"])
    raw = socket.create_connection(("127.0.0.1", multi.smtps_port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        f = tls.makefile("rb")

        def reply():
            lines = []
            while True:
                ln = f.readline().decode().rstrip("\r\n")
                assert ln, lines
                lines.append(ln)
                if ln[3:4] == " ":
                    return lines

        def cmd(line):
            tls.sendall(line.encode() + b"\r\n")
            return reply()

        assert reply()[0].startswith("220 ")
        ehlo = cmd("EHLO client.test")
        assert "250-SIZE 65536" in ehlo, ehlo
        assert not any("STARTTLS" in ln for ln in ehlo), ehlo
        assert cmd("STARTTLS")[0].startswith("503 5.5.1"), "TLS is already on"
        assert cmd("MAIL FROM:<a@example.com> SIZE=70000")[0].startswith("552 5.3.4")
        assert cmd("MAIL FROM:<a@example.com>")[0].startswith("250")
        assert cmd("RCPT TO:<b1@example.net>")[0].startswith("250")
        assert cmd("RCPT TO:<b2@example.net>")[0].startswith("250")
        third = cmd("RCPT TO:<b3@example.net>")[0]
        assert third.startswith("452") or third.startswith("4"), third
        cmd("QUIT")


def test_plain_client_on_implicit_tls_port_gets_no_greeting(multi):
    """A client that speaks plain SMTP to port 465 hears nothing in clear
    and is cut off (a TLS alert at most), never a 220."""
    s = socket.create_connection(("127.0.0.1", multi.smtps_port), timeout=5)
    try:
        s.sendall(b"EHLO plain.test\r\n")
        data = b""
        try:
            while len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        assert not data.startswith(b"220"), data
        assert b"ESMTP" not in data, data
    finally:
        s.close()


def test_mx_listener_keeps_server_defaults(fake, multi):
    with Client(multi.port) as c:
        c.greeting()
        r = c.ehlo()
        assert any(ln.startswith("SIZE 26214400") for ln in r.lines[1:]), r
        # MX: STARTTLS offered, not required.
        assert any(ln.upper() == "STARTTLS" for ln in r.lines[1:]), r
        assert transaction(c).code == 250


def check(tmp_path, text):
    p = tmp_path / "bad.conf"
    p.write_text(text)
    r = harness.run_sluice(["--check", "-c", str(p)])
    return r, r.stdout + r.stderr, str(p)


def test_check_reports_listener_mistakes_with_lines(tmp_path, certs):
    text = "\n".join([
        "[server]",                                   # 1
        "listen = 127.0.0.1:2525",                    # 2
        "[listener smtps]",                           # 3
        "listen = 127.0.0.1:4650",                    # 4
        "tls = implicit",                             # 5
        "[listener submission]",                      # 6
        "listen = 127.0.0.1:2525",                    # 7
        "require_tls = yes",                          # 8
        "tls = none",                                 # 9
        "[listener edge]",                            # 10
        "listen = 127.0.0.1:2600",                    # 11
        "proxy_protocol = yes",                       # 12
        "colour = blue",                              # 13
        "[listener trusted]",                         # 14
        "listen = 127.0.0.1:2601",                    # 15
        "proxy_protocol = yes",                       # 16
        "proxy_trusted = 10.0.0.300/8",               # 17
        "[listener default]",                         # 18
        "listen = 127.0.0.1:2602",                    # 19
        "",
    ])
    r, out, path = check(tmp_path, text)
    assert r.returncode != 0, out
    want = [
        (5, "tls = implicit needs a certificate"),
        (7, "already used by [server] listen"),
        (8, "require_tls = yes with tls = none"),
        (12, "proxy_protocol = yes needs proxy_trusted"),
        (13, "unknown key 'colour' in [listener edge]"),
        (17, "proxy_trusted"),
        (18, "bad listener name 'default'"),
    ]
    for line, text_ in want:
        assert "%s:%d: " % (path, line) in out and text_ in out, (line, text_, out)


def test_check_accepts_three_listener_config(tmp_path, certs):
    text = "\n".join([
        "[server]",
        "listen = 127.0.0.1:%d" % harness.free_port(),
        "tls_cert_file = %s" % certs["cert"],
        "tls_key_file = %s" % certs["key"],
        "[upstream]",
        "servers = 127.0.0.1:25",
        "[listener submission]",
        "listen = 127.0.0.1:%d" % harness.free_port(),
        "require_tls = yes",
        "chain =",
        "[listener submissions]",
        "listen = 127.0.0.1:%d" % harness.free_port(),
        "tls = implicit",
        "chain =",
        "",
    ])
    r, out, _ = check(tmp_path, text)
    assert r.returncode == 0, out


def test_only_listener_sections_bind_no_default(fake, sluice_factory, tmp_path):
    """With [listener] sections and no [server] listen, the built-in
    default address is not bound."""
    port = harness.free_port()
    s = harness.Sluice(tmp_path / "only", upstream_port=fake.port, use_config=True)
    del s.sections["server"]["listen"]
    s.sections["listener mx"] = {"listen": "127.0.0.1:%d" % port}
    s.port = port
    s.start()
    try:
        assert harness.smtp_send(port) == {}
        assert len(fake.wait_messages(1)) == 1
        assert not any("2525" in ln and "listening on" in ln for ln in s.lines), s.lines
    finally:
        assert s.stop() in (0, None)


def test_reload_changes_a_listener_chain_not_the_set(fake, multi, certs):
    import signal
    tp = plugkit.plugin_path("testplug")
    multi.sections["plugin tag_sub"] = {"path": tp, "add_header": "X-Chain: submission2"}
    multi.write_config()
    n = len(multi.lines)
    multi.signal(signal.SIGHUP)
    assert multi.wait_log(r"configuration reloaded", start=n), multi.lines[n:]
    assert harness.smtp_send(multi.sub_port, starttls_ca=certs["ca"]) == {}
    assert chain_of(fake.wait_messages(1)[0]) == "submission2"
    # Renaming a listener would need a new socket: refused, the running
    # configuration stays.
    sec = multi.sections.pop("listener submission")
    multi.sections["listener msa"] = sec
    multi.write_config()
    n = len(multi.lines)
    multi.signal(signal.SIGHUP)
    assert multi.wait_log(r"listeners added, removed, renamed or reordered", start=n), \
        multi.lines[n:]
    assert harness.smtp_send(multi.sub_port, starttls_ca=certs["ca"]) == {}
    assert chain_of(fake.wait_messages(2)[1]) == "submission2"


def test_stalled_implicit_handshake_is_cut_off(fake, sluice_factory, certs):
    smtps = harness.free_port()
    s = sluice_factory(fake.port, server={"tls_cert_file": certs["cert"],
                                          "tls_key_file": certs["key"],
                                          "command_timeout": "1s"},
                       extra_sections={"listener smtps": {"listen": "127.0.0.1:%d" % smtps,
                                                          "tls": "implicit"}})
    harness.wait_port(smtps)
    c = socket.create_connection(("127.0.0.1", smtps), timeout=5)
    try:
        c.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        c.settimeout(5)
        assert c.recv(100) == b""  # closed by sluice within the timeout
    finally:
        c.close()
    assert s.wait_log(r"timeout in state tls")
