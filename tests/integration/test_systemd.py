# SPDX-License-Identifier: GPL-2.0-or-later
"""sluice under systemd, as far as a test can see it without a running
systemd: log_format = json (and its switch on reload), journald fields
(a fake journald in a private mount namespace, when the test runs as
root), sd_notify readiness, reload, stop and watchdog messages to a fake
NOTIFY_SOCKET, and the unit file through systemd-analyze verify and
security --offline."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

import harness
from harness import Client

# What a client may put in a log line: HELO is printable ASCII (8-bit is
# refused), quotes and backslashes included; the sender may be UTF-8.
HOSTILE_HELO = b'evil"},{"verdict":"x\\\\"'
HOSTILE_HELO_TEXT = HOSTILE_HELO.decode()
UTF8_FROM = '"j\u00fcrgen \\"} x"@ex\u00e4mple.com'


def send_mail(port, helo=b"client.test", mail_from="sender@example.com"):
    with Client(port) as c:
        c.greeting()
        c.send(b"EHLO " + helo + b"\r\n")
        assert c.reply().code == 250
        utf8 = " SMTPUTF8" if not mail_from.isascii() else ""
        c.expect("MAIL FROM:<%s>%s" % (mail_from, utf8), 250)
        c.expect("RCPT TO:<rcpt@example.net>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: test\r\n\r\nhello\r\n.\r\n")
        r = c.reply()
        assert r.code == 250, r
        c.cmd("QUIT")


def json_lines(sl):
    """Every output line as a JSON object (each must be one)."""
    out = []
    for ln in sl.output().splitlines():
        try:
            out.append(json.loads(ln))
        except ValueError:
            raise AssertionError("not a JSON line: %r" % ln)
    return out


# ---- log_format = json -----------------------------------------------------------
def test_json_lines_with_hostile_helo(fake, sluice_factory):
    sl = sluice_factory(fake.port, server={"log_format": "json"})
    send_mail(sl.port, HOSTILE_HELO, UTF8_FROM)
    assert len(fake.wait_messages(1)) == 1
    assert sl.wait_log(r'"event":"tx"', 10), sl.output()
    sl.stop()
    recs = json_lines(sl)
    for r in recs:
        assert set(r) >= {"time", "level", "program", "msg"}, r
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]), r
        assert r["program"] == "sluice"
        assert r["level"] in ("debug", "info", "warning", "error", "fatal")
    tx = [r for r in recs if r.get("event") == "tx"]
    assert len(tx) == 1, recs
    tx = tx[0]
    # The same fields as the text line, the client's bytes read back exactly.
    assert tx["helo"] == HOSTILE_HELO_TEXT, tx
    assert tx["verdict"] == "accepted"
    assert tx["from"] == "<%s>" % UTF8_FROM
    assert tx["rcpts"] == "1"
    assert tx["client"].startswith("127.0.0.1:")
    assert tx["sid"] and tx["msg"].startswith("sid=" + tx["sid"] + " event=tx ")
    assert "verdict" not in {k for r in recs for k in r if r.get("event") != "tx"}
    connect = [r for r in recs if r.get("event") == "connect"]
    assert connect and connect[0]["sid"] == tx["sid"]


def test_log_format_bad_value_names_line(tmp_path):
    conf = tmp_path / "sluice.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:%d\n\nlog_format = xml\n" % harness.free_port())
    r = harness.run_sluice(["--check", "-c", str(conf)])
    assert r.returncode == 1
    assert "%s:4: 'log_format': expected text|json, not 'xml'" % conf in r.stderr, r.stderr


def test_reload_switches_format(fake, sluice_factory):
    sl = sluice_factory(fake.port)
    assert re.match(r"\d{4}-\d\d-\d\dT\S+Z info: ", sl.lines[-1]), sl.lines
    sl.sections["server"]["log_format"] = "json"
    sl.write_config()
    n = len(sl.lines)
    sl.signal(signal.SIGHUP)
    ln = sl.wait_log(r"configuration reloaded", 10, start=n)
    assert ln, sl.output()
    assert json.loads(ln)["msg"].startswith("configuration reloaded from ")
    send_mail(sl.port)
    assert sl.wait_log(r'"event":"tx"', 10, start=n), sl.output()
    sl.sections["server"]["log_format"] = "text"
    sl.write_config()
    n = len(sl.lines)
    sl.signal(signal.SIGHUP)
    ln = sl.wait_log(r"configuration reloaded", 10, start=n)
    assert re.match(r"\S+Z info: configuration reloaded from ", ln), ln


# ---- journald ----------------------------------------------------------------------
def test_journal_stream_elsewhere_keeps_text(fake, sluice_factory):
    """JOURNAL_STREAM names another file (a child of a service whose stderr
    was redirected): stderr stays as it is, text lines."""
    st = os.stat("/dev/null")
    sl = sluice_factory(fake.port, env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
    send_mail(sl.port)
    t = sl.wait_transactions(1)
    assert t and t[0]["verdict"] == "accepted", sl.output()
    assert re.match(r"\S+Z info: sid=\S+ event=tx ", t[0]["_line"]), t[0]["_line"]


# Runs as root in its own mount namespace: a tmpfs on /run holds a fake
# journald socket, so the test never touches the machine's journal.
JOURNAL_HELPER = textwrap.dedent(r'''
    import json, os, re, select, signal, socket, struct, subprocess, sys, time
    STARTED = re.compile(r"sluice \S+ started")
    binary, conf, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    os.makedirs("/run/systemd/journal")

    def start():
        r, w = os.pipe()
        st = os.fstat(w)
        env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
        p = subprocess.Popen([binary, "-c", conf], stdin=subprocess.DEVNULL, stdout=w,
                             stderr=w, env=env)
        os.close(w)
        return p, r

    def read_until(r, timeout=15):
        # The port accepts before the signal handlers are set: wait for the
        # line logged after them, not for the port.
        out, deadline = b"", time.monotonic() + timeout
        while not STARTED.search(out.decode("utf-8", "replace")) and time.monotonic() < deadline:
            if select.select([r], [], [], 0.2)[0]:
                d = os.read(r, 65536)
                if not d:
                    break
                out += d
        return out

    def stop(p, r, out=b""):
        p.send_signal(signal.SIGTERM)
        p.wait(15)
        while True:
            d = os.read(r, 65536)
            if not d:
                break
            out += d
        os.close(r)
        rcs.append(p.returncode)
        return out.decode("utf-8", "replace")

    def parse(d):
        # "NAME=value\n", or "NAME\n" + le64 length + value + "\n"
        rec, i = {}, 0
        while i < len(d):
            nl = d.index(b"\n", i)
            line = d[i:nl]
            if b"=" in line:
                k, v = line.split(b"=", 1)
                i = nl + 1
            else:
                k = line
                n = struct.unpack("<Q", d[nl + 1:nl + 9])[0]
                v = d[nl + 9:nl + 9 + n]
                i = nl + 9 + n + 1
            rec[k.decode()] = v.decode("utf-8", "strict")
        return rec

    rcs = []
    # 1. No journald listening: the records come to stderr.
    p, r = start()
    fallback = stop(p, r, read_until(r))

    # 2. A journald.
    j = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    j.bind("/run/systemd/journal/socket")
    j.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    p, r = start()
    recs, deadline = [], time.monotonic() + 15
    j.settimeout(0.2)
    while time.monotonic() < deadline and not any(
            STARTED.match(x.get("MESSAGE", "")) for x in recs):
        try:
            recs.append(parse(j.recv(1 << 20)))
        except socket.timeout:
            pass
    print("up", flush=True)
    sys.stdin.readline()  # the test sends its mail, then a line
    stderr = stop(p, r)
    while True:
        try:
            recs.append(parse(j.recv(1 << 20)))
        except socket.timeout:
            break
    print(json.dumps({"fallback": fallback, "stderr": stderr, "records": recs, "rcs": rcs}),
          flush=True)
''')


def test_journald_fields(fake, tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private /run with a fake journald")
    port = harness.free_port()
    conf = tmp_path / "sluice.conf"
    conf.write_text(harness.render_config({
        "server": {"listen": "127.0.0.1:%d" % port, "hostname": "sluice.test",
                   "reverse_dns": "no", "spool_dir": str(tmp_path), "log_format": "json"},
        "upstream": {"servers": "127.0.0.1:%d" % fake.port},
        "stats": {"listen": "no"}}))
    helper = tmp_path / "journal_helper.py"
    helper.write_text(JOURNAL_HELPER)
    p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", sys.executable,
                          str(helper), harness.SLUICE_BIN, str(conf), str(port)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        up = p.stdout.readline()
        if up.strip() != "up":
            out, err = p.communicate(timeout=10)
            if "unshare failed" in err or "mount" in err:
                pytest.skip("no private mount namespace here: %s" % err.strip())
            raise AssertionError("helper: %r %s %s" % (up, out, err))
        send_mail(port, HOSTILE_HELO, UTF8_FROM)
        assert len(fake.wait_messages(1)) == 1
        out, err = p.communicate("done\n", timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    res = json.loads(out)
    assert res["rcs"] == [0, 0], res
    # Without a journald the lines are the usual ones, whatever log_format
    # says about stderr (JSON here).
    assert '"msg":"listening on 127.0.0.1:%d' % port in res["fallback"], res["fallback"]
    # With one, nothing goes to stderr and each record carries its fields.
    assert res["stderr"] == "", res["stderr"]
    recs = res["records"]
    assert recs, "no journal records"
    for r in recs:
        assert r["SYSLOG_IDENTIFIER"] == "sluice"
        assert r["PRIORITY"] in "234567"
        assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", k) for k in r), r
    tx = [r for r in recs if r.get("SLUICE_EVENT") == "tx"]
    assert len(tx) == 1, recs
    tx = tx[0]
    assert tx["PRIORITY"] == "6"
    assert tx["SLUICE_HELO"] == HOSTILE_HELO_TEXT, tx
    assert tx["SLUICE_VERDICT"] == "accepted"
    assert tx["SLUICE_FROM"] == "<%s>" % UTF8_FROM
    assert tx["MESSAGE"].startswith("sid=%s event=tx " % tx["SLUICE_SID"]), tx
    assert any(r["MESSAGE"].startswith("listening on 127.0.0.1:%d" % port) for r in recs)
    # Warnings keep their priority (the probe's, if the upstream probe failed, is 4).
    print("journal record of the transaction:", json.dumps(tx, ensure_ascii=False))


# ---- sd_notify -----------------------------------------------------------------------
class NotifySocket:
    """What systemd's notification socket would receive."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sdn", dir="/tmp")  # short: sun_path
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.msgs = []  # (monotonic time, {NAME: value})

    def recv(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            d = self.sock.recv(4096).decode()
        except socket.timeout:
            return None
        m = dict(ln.split("=", 1) for ln in d.split("\n") if "=" in ln)
        self.msgs.append((time.monotonic(), m))
        return m

    def wait(self, key, timeout=10.0, value="1"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.recv(deadline - time.monotonic())
            if m is not None and m.get(key) == value:
                return m
        return None

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify():
    n = NotifySocket()
    yield n
    n.close()


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_notify_ready_reload_stop(fake, sluice_factory, notify):
    sl = sluice_factory(fake.port, start=False, env={"NOTIFY_SOCKET": notify.path})
    sl.start(wait=False)
    m = notify.wait("READY", 15)
    assert m is not None, sl.output()
    # READY=1 means bound, chain loaded: the port takes a connection now.
    assert accepts(sl.port)
    assert m["STATUS"].startswith("serving: 1 listener(s)"), m
    assert all("READY" not in x for _, x in notify.msgs[:-1])
    send_mail(sl.port)

    # A good reload: RELOADING=1, then READY=1.
    sl.signal(signal.SIGHUP)
    m = notify.wait("RELOADING", 10)
    assert m is not None and "MONOTONIC_USEC" in m, notify.msgs
    m = notify.wait("READY", 10)
    assert m is not None and m["STATUS"].startswith("serving:"), notify.msgs

    # A refused one: READY=1 as well (systemd must not wait for ever), and
    # the status says so.
    with open(sl.config_path, "a") as f:
        f.write("\n[server]\nno_such_key = 1\n")
    sl.signal(signal.SIGHUP)
    assert notify.wait("RELOADING", 10) is not None
    m = notify.wait("READY", 10)
    assert m is not None and m["STATUS"].startswith("reload refused"), notify.msgs
    assert accepts(sl.port)

    sl.signal(signal.SIGTERM)
    m = notify.wait("STOPPING", 10)
    assert m is not None and m["STATUS"].startswith("stopping"), notify.msgs
    assert sl.wait_exit(10) == 0
    # Without WATCHDOG_USEC, no keep-alives.
    assert not any("WATCHDOG" in x for _, x in notify.msgs), notify.msgs


def test_notify_watchdog(fake, sluice_factory, notify):
    sl = sluice_factory(fake.port, start=False,
                        env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"})
    sl.start(wait=False)
    assert notify.wait("READY", 15) is not None, sl.output()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:
        notify.recv(0.1)
    ticks = [t for t, m in notify.msgs if m.get("WATCHDOG") == "1" and t >= t0]
    # Every 200 ms (half of 400 ms): some 7 in 1.5 s. A gap is at most the
    # period plus scheduling noise (0.6 s leaves room for a loaded machine).
    assert len(ticks) >= 5, notify.msgs
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 0.6, gaps
    assert sl.wait_log(r"watchdog: keep-alive every 200 ms", 5), sl.output()


def test_notify_watchdog_for_another_pid(fake, sluice_factory, notify):
    """WATCHDOG_PID names another process (inherited): not ours to feed."""
    sl = sluice_factory(fake.port, start=False,
                        env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000",
                             "WATCHDOG_PID": "1"})
    sl.start(wait=False)
    assert notify.wait("READY", 15) is not None, sl.output()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:
        notify.recv(0.1)
    assert not any("WATCHDOG" in m for _, m in notify.msgs), notify.msgs


# ---- the unit ---------------------------------------------------------------------------
UNIT = os.path.join(harness.SRC_DIR, "contrib", "systemd", "sluice.service")


def unit_copy(tmp_path):
    """The unit with ExecStart* pointing at the binary under test (verify
    checks that the programs exist)."""
    text = open(UNIT).read().replace("/usr/sbin/sluice", os.path.abspath(harness.SLUICE_BIN))
    p = tmp_path / "sluice.service"
    p.write_text(text)
    return p


@pytest.fixture
def analyze():
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed (package systemd)")
    return shutil.which("systemd-analyze")


def test_unit_verify(analyze, tmp_path):
    # --man=no: the man pages named by Documentation= are installed by the
    # package, not present in a build tree.
    r = subprocess.run([analyze, "verify", "--man=no", str(unit_copy(tmp_path))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", \
        "rc=%d\n%s%s" % (r.returncode, r.stdout, r.stderr)


def test_unit_security_exposure(analyze, tmp_path):
    r = subprocess.run([analyze, "security", "--offline=yes", "--no-pager",
                        str(unit_copy(tmp_path))],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for sluice\.service: (\d+\.\d+)", r.stdout)
    assert m, "rc=%d\n%s%s" % (r.returncode, r.stdout, r.stderr)
    print("systemd-analyze security exposure:", m.group(1))
    print("\n".join(ln for ln in r.stdout.splitlines() if "\u2717" in ln))
    assert float(m.group(1)) < 2.0, r.stdout
    with open(UNIT) as f:
        unit = f.read()
    for want in ("Type=notify", "NotifyAccess=main", "WatchdogSec=", "User=sluice",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "ProtectSystem=strict",
                 "SystemCallFilter=@system-service", "ReadWritePaths=-/var/spool/sluice"):
        assert re.search(r"^%s" % re.escape(want), unit, re.M), want


# ---- what the unit's privileges amount to -------------------------------------------------
def free_low_port():
    for port in range(600, 1000):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free port below 1024")


def test_unprivileged_with_ambient_capability(fake):
    """As the unit runs it (approximated with setpriv: another user, only
    CAP_NET_BIND_SERVICE, ambient, no new privileges): a port below 1024 is
    bound, mail flows; a root-only key file is refused with its name."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv(1)")
    # Not under tmp_path: pytest's base directory is 0700 root.
    work = tempfile.mkdtemp(prefix="sdpriv", dir="/tmp")
    try:
        run_unprivileged(fake, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_unprivileged(fake, work):
    os.chmod(work, 0o755)
    certs = harness.make_certs(os.path.join(work, "certs"))
    os.chmod(os.path.join(work, "certs"), 0o755)
    cert, key = certs["cert"], certs["key"]
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    port = free_low_port()
    spool = os.path.join(work, "spool")
    os.mkdir(spool)
    os.chown(spool, 65534, 65534)
    conf = os.path.join(work, "sluice.conf")
    text = harness.render_config({
        "server": {"listen": "127.0.0.1:%d" % port, "hostname": "sluice.test",
                   "reverse_dns": "no", "spool_dir": spool, "user": "nobody",
                   "tls_cert_file": cert, "tls_key_file": key},
        "upstream": {"servers": "127.0.0.1:%d" % fake.port},
        "stats": {"listen": "no"}})
    with open(conf, "w") as f:
        f.write(text)
    os.chmod(conf, 0o644)
    key_line = text.split("\n").index("tls_key_file = %s" % key) + 1
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           "--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service",
           "--bounding-set=-all,+net_bind_service", "--no-new-privs",
           harness.SLUICE_BIN, "-c", conf]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    if "setpriv:" in r.stderr:  # e.g. a container without the capability to hand on
        pytest.skip(r.stderr.strip())
    assert r.returncode == 1
    want = "%s:%d: tls_key_file '%s': cannot read: Permission denied" % (conf, key_line, key)
    assert want in r.stderr, r.stderr
    os.chmod(key, 0o644)  # as with 0640 root:sluice
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL)
    try:
        assert harness.wait_port(port, timeout=10)
        send_mail(port)
        assert len(fake.wait_messages(1)) == 1
    finally:
        p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=10)[0]
    assert p.returncode == 0, out
    assert "not running as root: ignoring user=nobody" in out
    assert "running as user" not in out
