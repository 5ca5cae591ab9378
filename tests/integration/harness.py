# SPDX-License-Identifier: GPL-2.0-or-later
"""harness: run the real sluice daemon for integration tests.

Everything here is bounded in time: every socket has a timeout, every wait
has a deadline, every child process is killed on teardown. Only loopback
addresses are used.

Pieces:
  free_port()          a free TCP port on 127.0.0.1
  Sluice               one daemon with a generated config in a temp dir;
                       collects stderr, waits for "listening on ...",
                       parses the per-transaction log lines
  Client               a raw SMTP client over a socket (exact bytes in,
                       replies parsed) for pipelining and hostile input
  smtp_send()/swaks()  the real clients
  make_certs()         a test CA and a server certificate, made with openssl
"""

import os
import re
import select
import shlex
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time

SLUICE_BIN = os.environ.get("SLUICE_BIN") or os.path.join(
    os.environ.get("SLUICE_BUILD_DIR", "build"), "proxy", "sluice")


def sanitized():
    """Is the daemon under test an AddressSanitizer build? (Its allocator
    keeps freed memory around: heap-size figures mean nothing there.)"""
    try:
        with open(SLUICE_BIN, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


SRC_DIR = os.environ.get("SLUICE_SRC_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port(host="127.0.0.1"):
    """A port nobody listens on right now (bind to 0, read, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_port(port, host="127.0.0.1", timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


# --------------------------------------------------------------------------
# Log lines: "sid=ab12 client=127.0.0.1 helo=x from=<a@b> upstream="250 ok" ..."
_KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_kv(line):
    """key=value pairs of a log line; quoted values are unquoted."""
    out = {}
    for k, v in _KV.findall(line):
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = re.sub(r'\\(.)', r'\1', v[1:-1])
        out.setdefault(k, v)
    return out


def render_config(sections):
    """{"server": {"listen": "..."}, ...} -> INI text (keys in given order)."""
    out = []
    for sec, kv in sections.items():
        out.append("[%s]" % sec)
        for k, v in kv.items():
            if v is None:
                continue
            if isinstance(v, bool):
                v = "yes" if v else "no"
            out.append("%s = %s" % (k, v))
        out.append("")
    return "\n".join(out)


class Sluice:
    """One sluice process. Use start()/stop() or as a context manager."""

    def __init__(self, workdir, upstream_port=None, server=None, upstream=None,
                 extra_sections=None, stats=None, args=None, port=None,
                 use_config=True, env=None):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.port = port or free_port()
        self.upstream_port = upstream_port
        self.spool = os.path.join(self.workdir, "spool")
        os.makedirs(self.spool, exist_ok=True)
        srv = {
            "listen": "127.0.0.1:%d" % self.port,
            "hostname": "sluice.test",
            "spool_dir": self.spool,
            "command_timeout": "30s",
            "data_timeout": "30s",
            # Test clients use 127.0.0.x addresses without names: their
            # reverse lookups would go to the machine's resolver, off
            # loopback. The lookup itself has its own test (127.0.0.1,
            # answered by /etc/hosts).
            "reverse_dns": "no",
        }
        srv.update(server or {})
        up = {}
        if upstream_port is not None:
            up["servers"] = "127.0.0.1:%d" % upstream_port
        up.update({"connect_timeout": "5s", "command_timeout": "10s", "data_timeout": "10s"})
        up.update(upstream or {})
        self.sections = {"server": srv, "upstream": up, "stats": dict(stats or {"listen": "no"})}
        self.sections.update(extra_sections or {})
        self.config_path = os.path.join(self.workdir, "sluice.conf")
        self.use_config = use_config
        self.args = list(args or [])
        self.env = env
        self.proc = None
        self.lines = []
        self._cond = threading.Condition()
        self._reader = None

    # ---- config ---------------------------------------------------------
    def write_config(self, sections=None, text=None):
        if text is None:
            text = render_config(sections or self.sections)
        with open(self.config_path, "w") as f:
            f.write(text)
        return self.config_path

    # ---- process ----------------------------------------------------------
    def command(self):
        cmd = [SLUICE_BIN]
        if self.use_config:
            cmd += ["-c", self.config_path]
        return cmd + self.args

    def start(self, wait=True, timeout=15.0):
        if self.use_config and not os.path.exists(self.config_path):
            self.write_config()
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        # Library-owned per-thread state only (tests/lsan.supp says which).
        env.setdefault("LSAN_OPTIONS", "suppressions=" + os.path.join(SRC_DIR, "tests", "lsan.supp"))
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        env.update(self.env or {})
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, cwd=self.workdir)
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        if wait:
            self.wait_ready(timeout)
        return self

    def _read_output(self):
        for raw in iter(self.proc.stdout.readline, b""):
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_log(self, pattern, timeout=10.0, start=0):
        """Wait for a log line matching regex `pattern` (from line index
        `start`); returns the line or None."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ln in self.lines[start:]:
                    if rx.search(ln):
                        return ln
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and
                                 not self._reader.is_alive()):
                    return None
                self._cond.wait(min(left, 0.2))

    def wait_ready(self, timeout=15.0):
        ln = self.wait_log(r"listening on 127\.0\.0\.1:%d\b" % self.port, timeout)
        if ln is None:
            if self.proc.poll() is not None:
                raise RuntimeError("sluice exited with %s before listening:\n%s"
                                   % (self.proc.returncode, self.output()))
            # Not the documented line, but maybe accepting: fall back to polling.
            if not wait_port(self.port, timeout=2):
                raise RuntimeError("sluice not listening on %d after %.0fs:\n%s"
                                   % (self.port, timeout, self.output()))

    def output(self):
        with self._cond:
            return "\n".join(self.lines)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=10.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=8.0):
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._reader:
            self._reader.join(timeout=2)
        return self.proc.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- observations -----------------------------------------------------
    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
        return None

    def transactions(self):
        """Per-transaction log lines as dicts (lines with sid= and verdict=)."""
        out = []
        with self._cond:
            lines = list(self.lines)
        for ln in lines:
            i = ln.find("sid=")
            if i < 0 or "verdict=" not in ln:
                continue
            kv = parse_kv(ln[i:])
            kv["_line"] = ln
            out.append(kv)
        return out

    def wait_transactions(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.transactions()
            if len(t) >= n:
                return t
            time.sleep(0.05)
        return self.transactions()


def run_sluice(args, timeout=20, env=None):
    """Run the binary to completion (--check, --version ...)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([SLUICE_BIN] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, env=e, text=True)


# --------------------------------------------------------------------------
class Reply:
    def __init__(self, code, lines, raw):
        self.code = code
        self.lines = lines          # text after "NNN-"/"NNN "
        self.raw = raw              # bytes as received

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enh(self):
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})\b", self.lines[0] if self.lines else "")
        return m.group(1) if m else ""

    def __str__(self):
        return " / ".join("%d %s" % (self.code, ln) for ln in self.lines)

    __repr__ = __str__


class ConnectionClosed(Exception):
    pass


class Client:
    """Raw SMTP client: exact bytes out, parsed replies in, all with timeouts."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=10.0):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.buf = b""
        self.transcript = []   # ("C"|"S", bytes) for failure messages

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.transcript.append(("C", data))
        self.sock.sendall(data)

    def _recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no reply within %.1fs; transcript: %r"
                               % (timeout, self.transcript[-6:]))
        except ConnectionResetError:
            d = b""
        if not d:
            raise ConnectionClosed("connection closed; transcript: %r" % self.transcript[-6:])
        self.transcript.append(("S", d))
        self.buf += d

    def reply(self, timeout=None):
        """Read one (possibly multi-line) reply."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        lines = []
        raw = b""
        code = None
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("partial reply %r" % raw)
                self._recv(left)
                continue
            line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
            raw += line
            s = line.decode("utf-8", "replace").rstrip("\r\n")
            m = re.match(r"(\d{3})([ -]?)(.*)$", s)
            if not m:
                raise AssertionError("malformed reply line %r" % s)
            code = int(m.group(1))
            lines.append(m.group(3))
            if m.group(2) != "-":
                return Reply(code, lines, raw)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        """Send one command line (CRLF added) and read its reply."""
        self.send(line + "\r\n")
        return self.reply(timeout)

    def greeting(self):
        r = self.reply()
        assert r.code == 220, "greeting %s" % r
        return r

    def ehlo(self, name="client.test"):
        r = self.cmd("EHLO " + name)
        assert r.code == 250, "EHLO %s" % r
        return r

    def expect(self, line, code, enh=None, timeout=None):
        r = self.cmd(line, timeout)
        assert r.code == code, "%r: got %s, want %d" % (line, r, code)
        if enh:
            assert r.enh == enh, "%r: got %s, want enhanced %s" % (line, r, enh)
        return r

    def is_closed(self, timeout=3.0):
        """True if the server closes within timeout (data before EOF is kept)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._recv(max(0.05, deadline - time.monotonic()))
            except ConnectionClosed:
                return True
            except TimeoutError:
                return False
            except OSError:
                return True
        return False

    def drain(self, seconds):
        """Everything that arrives within `seconds`: (bytes, closed)."""
        got = self.buf
        self.buf = b""
        deadline = time.monotonic() + seconds
        closed = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # recv with a timeout, not select(): on a TLS socket select()
            # also wakes for records that carry no data (session tickets).
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                break
            except OSError:
                d = b""
            if not d:
                closed = True
                break
            got += d
        return got, closed

    def nothing_for(self, seconds):
        """True if no byte arrives within `seconds` (and not closed)."""
        r, _, _ = select.select([self.sock], [], [], seconds)
        return not r and not self.buf

    def starttls(self, cafile, server_hostname="localhost"):
        ctx = ssl.create_default_context(cafile=cafile)
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        self.buf = b""


def transaction(c, mail_from="sender@example.com", rcpts=("rcpt@example.net",),
                body=b"Subject: test\r\n\r\nhello\r\n"):
    """MAIL/RCPT/DATA/message on an open Client; returns the final reply.
    Asserts every step before the message succeeded."""
    c.expect("MAIL FROM:<%s>" % mail_from, 250)
    for r in rcpts:
        c.expect("RCPT TO:<%s>" % r, 250)
    c.expect("DATA", 354)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    c.send(dot_stuff(body) + b".\r\n")
    return c.reply()


def dot_stuff(body):
    lines = body.split(b"\r\n")
    return b"\r\n".join((b"." + ln) if ln.startswith(b".") else ln for ln in lines)


def smtp_send(port, mail_from="sender@example.com", rcpts=("rcpt@example.net",),
              msg=b"Subject: test\r\n\r\nhello\r\n", source=None, timeout=15,
              mail_options=(), starttls_ca=None):
    """Send one message with smtplib. Returns the dict of refused recipients
    (smtplib's contract); raises smtplib exceptions on failure."""
    src = (source, 0) if source else None
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test",
                      timeout=timeout, source_address=src) as s:
        s.ehlo()
        if starttls_ca:
            s.starttls(context=ssl.create_default_context(cafile=starttls_ca))
            s.ehlo()
        return s.sendmail(mail_from, list(rcpts), msg, mail_options=list(mail_options))


def swaks(*args, timeout=30):
    """Run swaks; returns CompletedProcess (text)."""
    cmd = ["swaks", "--timeout", "15"] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------
def make_certs(d, cn="localhost"):
    """A CA and a server cert for `cn` (+ 127.0.0.1) signed by it.
    Returns dict(ca=..., cert=..., key=..., ca_key=...)."""
    d = str(d)
    os.makedirs(d, exist_ok=True)
    p = {k: os.path.join(d, k + ".pem") for k in ("ca", "ca_key", "cert", "key", "csr")}
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\n"
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n" % cn)

    def run(*a):
        subprocess.run(["openssl"] + list(a), check=True, capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", p["ca_key"], "-out", p["ca"], "-days", "2",
        "-subj", "/CN=sluice test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", p["key"], "-out", p["csr"], "-subj", "/CN=%s" % cn)
    run("x509", "-req", "-in", p["csr"], "-CA", p["ca"], "-CAkey", p["ca_key"],
        "-CAcreateserial", "-out", p["cert"], "-days", "2", "-extfile", ext)
    return p


def shell_quote(cmd):
    return " ".join(shlex.quote(str(c)) for c in cmd)
