# SPDX-License-Identifier: GPL-2.0-or-later
"""Daemon behaviour: SIGTERM drains in-flight transactions, SIGHUP reloads
(and keeps the old config when the new one is bad), a client vanishing
mid-DATA, a client that never reads its replies, spool trouble."""

import os
import signal
import socket
import subprocess
import time

import pytest

import harness
from harness import Client


def session(sl, name="client.test"):
    c = Client(sl.port)
    c.greeting()
    c.ehlo(name)
    return c


# ---- client gone mid-DATA -------------------------------------------------------
def test_client_gone_mid_data(fake, sluice):
    c = session(sluice)
    c.expect("MAIL FROM:<a@example.com>", 250)
    c.expect("RCPT TO:<b@example.net>", 250)
    c.expect("DATA", 354)
    c.send(b"Subject: half\r\n\r\nonly half of the mess")
    time.sleep(0.2)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    ok = fake.wait_for(lambda f: f.tx_sessions and (
        {"RSET", "QUIT"} & set(f.tx_sessions[0].verbs()) or f.tx_sessions[0].closed.is_set()), 10)
    assert ok, fake.tx_sessions[0].verbs() if fake.tx_sessions else "no upstream session"
    s = fake.tx_sessions[0]
    assert "DATA" not in s.verbs(), s.verbs()
    assert {"RSET", "QUIT"} & set(s.verbs()), "upstream saw neither RSET nor QUIT: %s" % s.verbs()
    assert fake.all_messages == []
    t = sluice.wait_transactions(1, timeout=3)
    if t:
        assert t[0]["verdict"] != "accepted", t


def test_client_gone_then_next_client_ok(fake, sluice):
    c = session(sluice)
    c.expect("MAIL FROM:<a@example.com>", 250)
    c.close()
    assert harness.smtp_send(sluice.port) == {}
    assert len(fake.wait_messages(1)) == 1


# ---- SIGTERM ----------------------------------------------------------------------
def test_sigterm_lets_transaction_finish(fake, sluice):
    c = session(sluice)
    c.expect("MAIL FROM:<a@example.com>", 250)
    c.expect("RCPT TO:<b@example.net>", 250)
    c.expect("DATA", 354)
    c.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
    time.sleep(0.3)
    sluice.signal(signal.SIGTERM)
    time.sleep(0.5)
    # No new sessions once draining.
    refused = False
    try:
        with Client(sluice.port, timeout=3) as n:
            r = n.reply()
            refused = r.code == 421
    except (OSError, harness.ConnectionClosed, TimeoutError):
        refused = True
    assert refused, "new connection served during shutdown"
    assert sluice.alive(), "exited before the in-flight transaction finished"
    c.send(b"second half\r\n.\r\n")
    r = c.reply()
    assert r.code == 250, r
    try:
        c.cmd("QUIT")
    except (harness.ConnectionClosed, OSError):
        pass
    c.close()
    assert sluice.wait_exit(15) == 0, sluice.output()
    m = fake.wait_messages(1)[0]
    assert m.data == b"Subject: in flight\r\n\r\nfirst half\r\nsecond half\r\n"


def test_sigterm_idle_exits_zero(sluice):
    sluice.signal(signal.SIGTERM)
    assert sluice.wait_exit(10) == 0, sluice.output()


def test_sigterm_deadline(fake, sluice_factory):
    sl = sluice_factory(fake.port, server={"shutdown_timeout": "2s"})
    c = session(sl)   # idle client that never quits
    sl.signal(signal.SIGTERM)
    t0 = time.monotonic()
    rc = sl.wait_exit(15)
    assert rc == 0, sl.output()
    assert time.monotonic() - t0 < 10
    c.close()


# ---- SIGHUP -----------------------------------------------------------------------
def test_sighup_reload_good_and_bad(fake, sluice_factory):
    sl = sluice_factory(fake.port, server={"max_recipients": "2"})

    def rcpt_limit_reply():
        with session(sl) as c:
            c.expect("MAIL FROM:<a@example.com>", 250)
            c.expect("RCPT TO:<r1@example.net>", 250)
            c.expect("RCPT TO:<r2@example.net>", 250)
            return c.cmd("RCPT TO:<r3@example.net>").code

    assert rcpt_limit_reply() == 452
    # A good new config applies to new sessions.
    sl.sections["server"]["max_recipients"] = "5"
    sl.write_config()
    n = len(sl.lines)
    sl.signal(signal.SIGHUP)
    assert sl.wait_log(r"(?i)reload", timeout=5, start=n), sl.output()
    time.sleep(0.3)
    assert rcpt_limit_reply() == 250
    # A bad one is refused, logged, and the old config stays.
    sl.write_config(text="[server]\nlisten = 127.0.0.1:%d\nmax_recipients = many\n" % sl.port)
    n = len(sl.lines)
    sl.signal(signal.SIGHUP)
    ln = sl.wait_log(r"sluice\.conf:3", timeout=5, start=n)
    assert ln, "bad config not reported as FILE:LINE:\n" + sl.output()
    time.sleep(0.3)
    assert sl.alive()
    assert rcpt_limit_reply() == 250
    assert harness.smtp_send(sl.port) == {}


# ---- backpressure -----------------------------------------------------------------
def test_client_not_reading_is_paused(fake, sluice_factory):
    """50 MB of NOOPs without reading a reply: sluice stops reading that
    client (bounded output queue), its RSS stays small, others are served.
    (The junk-command limit would end this client after 100 NOOPs; it is
    turned off here so that the output bound is what is tested.)"""
    sluice = sluice_factory(fake.port, server={"junk_command_limit": "0"})
    base_rss = sluice.rss_kb()
    s = socket.create_connection(("127.0.0.1", sluice.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    chunk = b"NOOP\r\n" * 10000
    total = 0
    stalled_since = None
    deadline = time.monotonic() + 25
    while total < 50 * 1024 * 1024 and time.monotonic() < deadline:
        try:
            total += s.send(chunk)
            stalled_since = None
        except BlockingIOError:
            now = time.monotonic()
            stalled_since = stalled_since or now
            if now - stalled_since > 3:
                break
            time.sleep(0.05)
    rss = sluice.rss_kb()
    try:
        assert rss is not None and rss < 100 * 1024, "RSS %d kB after %d bytes" % (rss, total)
        assert total < 50 * 1024 * 1024, \
            "sluice kept reading a client that reads no replies (%d bytes taken)" % total
        # Another client is still served promptly.
        t0 = time.monotonic()
        assert harness.smtp_send(sluice.port) == {}
        assert time.monotonic() - t0 < 5
    finally:
        s.close()
    assert sluice.alive()
    print("paused after %d bytes; RSS %d kB (was %d kB)" % (total, rss, base_rss))


def test_idle_connections_memory(fake, sluice_factory):
    """Not the benchmark, just a guard: 200 idle sessions stay well under
    64 KiB each."""
    sluice = sluice_factory(fake.port, server={"max_connections_per_ip": "1000"})
    before = sluice.rss_kb()
    conns = []
    try:
        for _ in range(200):
            c = Client(sluice.port)
            c.greeting()
            conns.append(c)
        time.sleep(0.5)
        after = sluice.rss_kb()
        per = (after - before) * 1024 / len(conns)
        assert per <= 64 * 1024, "%.0f bytes per idle connection" % per
    finally:
        for c in conns:
            c.close()


# ---- spool trouble ------------------------------------------------------------------
@pytest.fixture
def small_tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d = tmp_path / "tinyspool"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0777", "tmpfs", str(d)],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        pytest.skip("cannot mount tmpfs here: %s" % r.stderr.strip())
    yield str(d)
    subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=10)


def test_spool_full_tempfails(fake, sluice_factory, small_tmpfs):
    sl = sluice_factory(fake.port, server={"spool_dir": small_tmpfs, "memory_buffer": "0",
                                           "max_message_size": "10M"})
    # Fill most of the tmpfs so the message cannot fit.
    with open(os.path.join(small_tmpfs, "filler"), "wb") as f:
        try:
            f.write(b"\0" * (200 * 1024))
        except OSError:
            pass
    with session(sl) as c:
        c.expect("MAIL FROM:<a@example.com>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: big\r\n\r\n" + (b"s" * 78 + b"\r\n") * 3000 + b".\r\n")
        r = c.reply(timeout=20)
        assert (r.code, r.enh) == (452, "4.3.1"), r
    time.sleep(0.3)
    assert fake.messages == [], "a truncated message was forwarded"
    # The temp file was removed: only the filler is left.
    assert sorted(os.listdir(small_tmpfs)) == ["filler"]
    os.unlink(os.path.join(small_tmpfs, "filler"))
    # With space again it works.
    assert harness.smtp_send(sl.port) == {}
    assert len(fake.wait_messages(1)) == 1


# ---- least privilege ----------------------------------------------------------------

def test_drops_privileges_after_binding(fake, sluice_factory):
    """Started as root with [server] user = nobody: the listener is bound,
    then the process runs as nobody (real, effective and saved uid), and mail
    still flows (the spool is writable by nobody)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    import pwd
    nobody = pwd.getpwnam("nobody")
    import shutil
    import tempfile
    # pytest's own temp tree is private to root: the spool lives beside it.
    spool = tempfile.mkdtemp(prefix="sluice-nobody-", dir="/tmp")
    os.chown(spool, nobody.pw_uid, nobody.pw_gid)
    request_cleanup = lambda: shutil.rmtree(spool, ignore_errors=True)  # noqa: E731
    sl = sluice_factory(fake.port, server={"user": "nobody", "spool_dir": spool,
                                           "memory_buffer": "0"})
    assert sl.wait_log(r"running as user nobody", 5), sl.output()
    with open("/proc/%d/status" % sl.proc.pid) as f:
        uids = [l.split()[1:] for l in f if l.startswith("Uid:")][0]
    assert uids[:3] == [str(nobody.pw_uid)] * 3, uids
    try:
        assert harness.smtp_send(sl.port) == {}
        assert len(fake.wait_messages(1)) == 1
    finally:
        request_cleanup()
