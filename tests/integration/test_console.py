# SPDX-License-Identifier: GPL-2.0-or-later
"""The quarantine console ([console] listen, issue 18) against the real daemon.

The spam plugin quarantines two messages (one with hostile header bytes),
the virus plugin one (EICAR);
the fake MTA is the upstream, so a released message shows up there.

- Refusals over plain HTTP: a page without a session is sent to /login, a
  POST without one is 403, a wrong Host 421, a login with a wrong password
  403, a POST with a missing or wrong CSRF token or from another origin 403,
  too many failed logins from one address 429 (another address still
  signs in); every answer carries the security headers; the session cookie
  is Secure, HttpOnly and SameSite=Strict.
- Headless Chromium (DevTools protocol over --remote-debugging-port, with a
  small websocket client below) signs in, searches, opens a message,
  releases it: the fake MTA gets it exactly once with its original
  envelope; a screenshot of each page is left in the test's tmp dir. The
  assertions are on the text a person sees.
- --check names the config line of a [console] problem and the users
  file's line of a bad entry.
"""

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse

import pytest

import harness
import plugkit
from test_spam_plugin import RULES, SPAM_SO, SPAMMY
from test_virus_libclamav import LSAN_ENV, eicar, mail, make_db

VIRUS_SO = os.path.abspath(os.path.join(plugkit.BUILD, "plugins", "virus.so"))
# Under ASan, libclamav's leak suppressions need the slow unwinder, which
# makes the spam plugin's start take a minute (contrib/NOTES.md): the
# sanitizer run leaves the virus plugin out and checks the console with
# the usual leak settings.
VIRUS = not harness.sanitized()
HELD = 3 if VIRUS else 2


def matching(n):
    return "%d message%s match" % (n, "" if n == 1 else "s")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PASSWORD = "c0rrect horse battery"

HOSTILE = (b"From: \"<script>alert(1)</script>\" <evil@example.org>\r\n"
           b"To: <victim@example.net>\r\n"
           b"Subject: URGENT \x1b[31m<img src=x onerror=alert(2)> ACCOUNT SUSPENDED!!!\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n"
           b"\r\n"
           b"<p>Dear Customer,</p><p>Your account has been suspended. Click here to log in"
           b" and verify your account: <a href=\"http://203.0.113.9/webscr-login.php\">"
           b"www.paypal.com</a></p><iframe src=\"http://203.0.113.9/\"></iframe>\r\n")


def sha512_crypt(password):
    """A $6$ hash made by openssl (what an admin without mkpasswd uses)."""
    return subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password,
                          capture_output=True, text=True, check=True,
                          timeout=10).stdout.strip()


def start_console(sluice_factory, upstream_port, tmp_path, virus=VIRUS):
    """sluice with the console, the spam (and virus) plugin quarantining."""
    users = tmp_path / "console-users"
    users.write_text("# quarantine admins\nadmin:%s\n" % sha512_crypt(PASSWORD))
    os.chmod(users, 0o600)
    qdir = tmp_path / "quarantine"
    qdir.mkdir(mode=0o700)
    port = harness.free_port()
    stats_port = harness.free_port()
    instances = [("spam", SPAM_SO, {"rules": RULES, "quarantine_threshold": "1",
                                    "reject_threshold": "100"})]
    if virus:
        instances.insert(0, ("virus", VIRUS_SO, {"database": make_db(tmp_path / "db"),
                                                 "action": "quarantine"}))
    sections = plugkit.chain_sections(*instances)
    sections["console"] = {"listen": "127.0.0.1:%d" % port, "users": str(users),
                           "login_max_failures": "4", "login_failure_window": "10m"}
    s = sluice_factory(upstream_port, extra_sections=sections, server={"quarantine_dir": str(qdir)},
                       stats={"listen": "127.0.0.1:%d" % stats_port},
                       env=LSAN_ENV if virus else None)
    assert s.wait_log(r"console: listening on 127\.0\.0\.1:%d" % port, 10), s.output()
    # Until the daemon serves (privileges dropped), the console answers 503.
    assert s.wait_log(r"sluice \S+ started", 10), s.output()
    s.console_port = port
    s.stats_port = stats_port
    return s


@pytest.fixture
def console(sluice_factory, fake, tmp_path):
    s = start_console(sluice_factory, fake.port, tmp_path)
    for sender, rcpts, body in (("spammer@example.com", ["victim@example.net",
                                                         "other@example.net"], SPAMMY),
                                ("evil@example.org", ["victim@example.net"], HOSTILE),
                                ("infected@example.com", ["rcpt@example.net"],
                                 mail([("eicar.com", eicar())])))[:HELD]:
        d = plugkit.send(s.port, mail_from=sender, rcpts=rcpts, body=body)
        assert d["eod"].code == 250, d
    return s


# ---- plain HTTP -------------------------------------------------------------

def request(port, method, path, body=None, headers=None, host=None, source="127.0.0.1"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                   source_address=(source, 0))
    h = {"Host": host if host is not None else "127.0.0.1:%d" % port}
    if body is not None:
        h["Content-Type"] = "application/x-www-form-urlencoded"
        body = urllib.parse.urlencode(body)
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    r.text = r.read().decode("utf-8", "replace")
    c.close()
    return r


def login(port, password=PASSWORD, source="127.0.0.1"):
    return request(port, "POST", "/login", {"user": "admin", "password": password},
                   source=source)


def session_of(r):
    m = re.match(r"sluice_console=([0-9a-f]{64});", r.getheader("Set-Cookie") or "")
    assert m, r.getheaders()
    return "sluice_console=" + m.group(1)


def wait_listed(port, cookie, n, timeout=10.0):
    """The list page once it shows n messages (the index is written on the pool)."""
    deadline = time.monotonic() + timeout
    while True:
        r = request(port, "GET", "/", headers={"Cookie": cookie})
        assert r.status == 200, r.text
        m = re.search(r'id="count">(\d+) message', r.text)
        if (m and int(m.group(1)) >= n) or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def test_empty_quarantine(sluice_factory, fake, tmp_path):
    """Nothing held yet (no index): an empty list, not an error."""
    s = start_console(sluice_factory, fake.port, tmp_path, virus=False)
    cookie = session_of(login(s.console_port))
    r = request(s.console_port, "GET", "/", headers={"Cookie": cookie})
    assert r.status == 200 and "No message matches." in r.text, r.text
    r = request(s.console_port, "GET", "/msg?id=7", headers={"Cookie": cookie})
    assert r.status == 404 and "No such message." in r.text


def test_refusals_over_http(console, fake):
    port = console.console_port
    # no session: pages send to the sign-in form, state changes are refused
    r = request(port, "GET", "/")
    assert r.status == 303 and r.getheader("Location") == "/login"
    r = request(port, "GET", "/msg?id=1")
    assert r.status == 303 and r.getheader("Location") == "/login"
    r = request(port, "POST", "/release", {"id": "1", "csrf": "0" * 64})
    assert r.status == 403
    r = request(port, "GET", "/login")
    assert r.status == 200 and "Sign in" in r.text
    # every answer: no framing, no scripts, nothing remote, no referrer, no cache
    for name, want in (("Content-Security-Policy", "default-src 'none'"),
                       ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"),
                       ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")):
        assert want in (r.getheader(name) or ""), (name, r.getheaders())
    assert "frame-ancestors 'none'" in r.getheader("Content-Security-Policy")
    # DNS rebinding: another name for the listener
    for host in ("evil.example:%d" % port, "127.0.0.1:%d" % (port + 1), ""):
        r = request(port, "GET", "/login", host=host)
        assert r.status == 421, host
    r = request(port, "POST", "/login", {"user": "admin", "password": PASSWORD},
                host="evil.example")
    assert r.status == 421 and r.getheader("Set-Cookie") is None
    # wrong password, unknown user
    r = login(port, "wrong")
    assert r.status == 403 and "Wrong user name or password" in r.text
    assert r.getheader("Set-Cookie") is None
    r = request(port, "POST", "/login", {"user": "root", "password": PASSWORD})
    assert r.status == 403
    # a hostile name cannot forge log lines
    r = request(port, "POST", "/login", {"user": "x\r\nFAKE: admin signed in", "password": "p"})
    assert r.status == 403
    assert console.wait_log(r'login failed user="x\\x0d\\x0aFAKE: admin signed in"', 5), \
        console.output()
    assert not any(ln.startswith("FAKE") for ln in console.output().splitlines())
    # a login from another site (login CSRF) is refused before the password
    r = request(port, "POST", "/login", {"user": "admin", "password": PASSWORD},
                headers={"Origin": "http://evil.example"})
    assert r.status == 403 and r.getheader("Set-Cookie") is None
    # the right one: a session cookie only the server can read, sent only to us
    r = login(port)
    assert r.status == 303 and r.getheader("Location") == "/"
    sc = r.getheader("Set-Cookie")
    for attr in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert attr in sc, sc
    cookie = session_of(r)
    page = wait_listed(port, cookie, HELD)
    assert matching(HELD) in page.text, page.text
    msg_id = re.search(r'href="/msg\?id=(\d+)"', page.text).group(1)
    view = request(port, "GET", "/msg?id=" + msg_id, headers={"Cookie": cookie})
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', view.text).group(1)
    # cross-site state changes: missing token, wrong token, foreign origin
    bad = [({"id": msg_id}, {}),
           ({"id": msg_id, "csrf": "f" * 64}, {}),
           ({"id": msg_id, "csrf": csrf[:-1]}, {}),
           ({"id": msg_id, "csrf": csrf}, {"Origin": "http://evil.example"}),
           ({"id": msg_id, "csrf": csrf}, {"Origin": "null"}),
           ({"id": msg_id, "csrf": csrf}, {"Sec-Fetch-Site": "cross-site"})]
    for form, extra in bad:
        for path in ("/release", "/delete"):
            h = {"Cookie": cookie}
            h.update(extra)
            r = request(port, "POST", path, form, headers=h)
            assert r.status == 403, (path, form, extra, r.status, r.text)
    # a state change by GET is not a thing
    r = request(port, "GET", "/release?id=%s&csrf=%s" % (msg_id, csrf),
                headers={"Cookie": cookie})
    assert r.status == 405
    # a forged, a malformed and a doubled cookie are no session
    for bad_cookie in ("sluice_console=" + "0" * 64, "sluice_console=" + "A" * 64,
                       cookie + "; " + cookie):
        r = request(port, "GET", "/", headers={"Cookie": bad_cookie})
        assert r.status == 303, bad_cookie
    # nothing was released or deleted by any of that
    assert matching(HELD) in wait_listed(port, cookie, HELD).text
    assert fake.messages == []
    # throttle: 4 failures from 127.0.0.2, then 429 even with the right
    # password; 127.0.0.1 is not affected
    for _ in range(4):
        assert login(port, "nope", source="127.0.0.2").status == 403
    r = login(port, source="127.0.0.2")
    assert r.status == 429 and int(r.getheader("Retry-After")) > 0
    assert r.getheader("Set-Cookie") is None
    assert login(port).status == 303
    # logout ends the session on the server (the old cookie is dead)
    r = request(port, "POST", "/logout", {"csrf": csrf}, headers={"Cookie": cookie})
    assert r.status == 303 and r.getheader("Location") == "/login"
    assert "Max-Age=0" in r.getheader("Set-Cookie")
    r = request(port, "GET", "/", headers={"Cookie": cookie})
    assert r.status == 303
    assert console.wait_log(r"console: client=127\.0\.0\.2 login refused: too many failures", 5)


def test_hostile_message_is_inert_and_delete(console, fake):
    port = console.console_port
    cookie = session_of(login(port))
    page = wait_listed(port, cookie, HELD)
    # the hostile display name is text, never markup
    assert "<script>" not in page.text
    assert "evil@example.org" in page.text
    m = re.search(r'<tr><td><a href="/msg\?id=(\d+)">[^<]*</a></td><td>evil@example\.org',
                  page.text)
    assert m, page.text
    view = request(port, "GET", "/msg?id=" + m.group(1), headers={"Cookie": cookie})
    assert view.status == 200
    assert "<script>" not in view.text and "<img" not in view.text
    assert "<iframe" not in view.text and "\x1b" not in view.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in view.text
    assert "&lt;iframe src=&quot;http://203.0.113.9/&quot;&gt;" in view.text
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', view.text).group(1)
    r = request(port, "POST", "/delete", {"id": m.group(1), "csrf": csrf},
                headers={"Cookie": cookie, "Origin": "http://127.0.0.1:%d" % port})
    assert r.status == 303 and r.getheader("Location") == "/?done=deleted"
    r = request(port, "GET", "/?done=deleted", headers={"Cookie": cookie})
    assert "The message was deleted." in r.text and matching(HELD - 1) in r.text
    # the virus plugin's and the spam plugin's catches, apart
    if VIRUS:
        r = request(port, "GET", "/?plugin=virus", headers={"Cookie": cookie})
        assert "1 message match" in r.text and "infected@example.com" in r.text
        assert "spammer@example.com" not in r.text
    r = request(port, "GET", "/?status=deleted", headers={"Cookie": cookie})
    assert "1 message match" in r.text and "evil@example.org" in r.text
    # deleted is deleted: a second delete or a release does nothing
    r = request(port, "POST", "/release", {"id": m.group(1), "csrf": csrf},
                headers={"Cookie": cookie})
    assert r.status == 303 and r.getheader("Location").endswith("&done=notheld")
    r = request(port, "GET", r.getheader("Location"), headers={"Cookie": cookie})
    assert "Not released: the message is no longer held." in r.text
    assert fake.messages == []


def test_slow_release_blocks_nobody(console, fake):
    """A release waits for the MTA on its own connection's thread: while the
    MTA takes 3 s over the end of data, other requests are answered at once,
    and two releases of one message racing each other send it once."""
    port = console.console_port
    cookie = session_of(login(port))
    page = wait_listed(port, cookie, HELD)
    msg_id = re.search(r'href="/msg\?id=(\d+)">[^<]*</a></td><td>spammer@', page.text).group(1)
    view = request(port, "GET", "/msg?id=" + msg_id, headers={"Cookie": cookie})
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', view.text).group(1)

    def slow(sess, arg):
        time.sleep(3)
        return None  # then the default 250
    fake.faults["EOD"] = slow
    results = []

    def release():
        results.append(request(port, "POST", "/release", {"id": msg_id, "csrf": csrf},
                               headers={"Cookie": cookie}))
    threads = [threading.Thread(target=release) for _ in range(2)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.5)
    for path in ("/", "/console.css", "/msg?id=" + msg_id):
        t1 = time.monotonic()
        r = request(port, "GET", path, headers={"Cookie": cookie})
        assert r.status == 200 and time.monotonic() - t1 < 1.0, (path, time.monotonic() - t1)
    assert "releasing" in request(port, "GET", "/msg?id=" + msg_id,
                                  headers={"Cookie": cookie}).text
    for t in threads:
        t.join(20)
    assert time.monotonic() - t0 >= 3
    done = sorted(r.getheader("Location").rsplit("=", 1)[1] for r in results)
    assert done == ["notheld", "released"], done
    assert len(fake.wait_messages(1)) == 1
    time.sleep(0.3)
    assert len(fake.messages) == 1


def test_release_through_postfix(postfix, sluice_factory, tmp_path):
    """Released from the console, the message reaches a real Postfix once
    per recipient with its original envelope (Return-Path, Delivered-To)."""
    s = start_console(sluice_factory, postfix.port, tmp_path, virus=False)
    port = s.console_port
    before = postfix.mail_files()
    d = plugkit.send(s.port, mail_from="spammer@example.com",
                     rcpts=["victim@example.net", "other@example.net"], body=SPAMMY)
    assert d["eod"].code == 250, d
    cookie = session_of(login(port))
    page = wait_listed(port, cookie, 1)
    time.sleep(0.3)
    assert postfix.mail_files() == before  # held, not delivered
    msg_id = re.search(r'href="/msg\?id=(\d+)"', page.text).group(1)
    view = request(port, "GET", "/msg?id=" + msg_id, headers={"Cookie": cookie})
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', view.text).group(1)
    for want in ("released", "notheld"):
        r = request(port, "POST", "/release", {"id": msg_id, "csrf": csrf},
                    headers={"Cookie": cookie})
        assert r.status == 303 and r.getheader("Location").endswith("done=" + want), \
            (r.getheader("Location"), postfix.log_tail())
    files = postfix.wait_mail(2, before=before)
    assert len(files) == 2, postfix.log_tail()
    seen = set()
    for f in files:
        raw = open(f, "rb").read()
        assert b"Return-Path: <spammer@example.com>" in raw, raw[:400]
        seen.add(re.search(rb"Delivered-To: (\S+)", raw).group(1).decode())
        assert b"X-Sluice-" not in raw and b"URGENT: YOUR ACCOUNT" in raw
    assert seen == {"victim@example.net", "other@example.net"}
    view = request(port, "GET", "/msg?id=" + msg_id, headers={"Cookie": cookie})
    assert re.search(r'id="status">released at [^<]*250 ', view.text), view.text
    time.sleep(1.0)
    assert len([p for p in postfix.mail_files() if p not in before]) == 2


def test_check_names_console_problems(tmp_path):
    (tmp_path / "q").mkdir(mode=0o700)
    users = tmp_path / "users"
    users.write_text("admin:%s\nbob:$1$abc$def\n" % sha512_crypt("x"))
    conf = tmp_path / "sluice.conf"
    conf.write_text("[server]\nquarantine_dir = %s\n\n[stats]\nlisten = no\n\n[console]\n"
                    "listen = 127.0.0.1:8026\nusers = %s\n" % (tmp_path / "q", users))
    r = harness.run_sluice(["-c", str(conf), "--check"])
    assert r.returncode == 1
    assert "%s:9: [console] users" % conf in r.stderr, r.stderr
    assert "%s:2: user bob: unsupported hash method" % users in r.stderr, r.stderr
    conf.write_text("[server]\nquarantine_dir = %s\n[console]\nlisten = 127.0.0.1:8026\n"
                    % (tmp_path / "q"))
    r = harness.run_sluice(["-c", str(conf), "--check"])
    assert r.returncode == 1
    assert "%s:4: [console] listen needs [console] users" % conf in r.stderr, r.stderr
    conf.write_text("[console]\nsession_timeout = 5s\n")
    r = harness.run_sluice(["-c", str(conf), "--check"])
    assert r.returncode == 1 and "%s:2:" % conf in r.stderr, r.stderr


# ---- headless Chromium through the DevTools protocol --------------------------

class WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol: text frames, client
    masking, no extensions; every read has a deadline."""

    def __init__(self, url, timeout=30.0):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n"
                           % (u.path, u.hostname, u.port, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, "DevTools closed the handshake"
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        want = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        assert want in head

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            assert chunk, "DevTools closed the connection"
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text):
        data = text.encode()
        head = bytes([0x81])
        if len(data) < 126:
            head += bytes([0x80 | len(data)])
        elif len(data) < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", len(data))
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", len(data))
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        msg = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7f
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            op = b0 & 0x0f
            if op == 0x9:  # ping
                continue
            msg += payload
            if b0 & 0x80:
                return msg.decode("utf-8", "replace")

    def close(self):
        self.sock.close()


class Browser:
    """One headless Chromium, one page, driven over the DevTools protocol."""

    def __init__(self, shots):
        self.shots = shots
        self.profile = tempfile.mkdtemp(prefix="console-chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-extensions", "--user-data-dir=" + self.profile,
             "--window-size=1280,1400", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            assert time.monotonic() < deadline and self.proc.poll() is None, "no DevTools port"
            time.sleep(0.1)
        port = int(open(port_file).read().split("\n")[0])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/json/list")
        pages = [t for t in json.loads(c.getresponse().read()) if t["type"] == "page"]
        c.close()
        self.ws = WebSocket(pages[0]["webSocketDebuggerUrl"])
        self.next_id = 0
        self.call("Page.enable")

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == self.next_id:
                assert "error" not in m, (method, m)
                return m.get("result", {})

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        assert "exceptionDetails" not in r, (expr, r)
        return r["result"].get("value")

    def _loaded(self, timeout=20.0):
        """Wait for the page that replaced the marked one to be complete."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.js("window.__old === undefined && document.readyState === 'complete'"):
                    return
            except AssertionError:
                pass  # evaluated while the old page was going away
            time.sleep(0.1)
        raise AssertionError("page did not load: " + str(self.js("location.href")))

    def go(self, url):
        self.js("window.__old = 1")
        self.call("Page.navigate", url=url)
        self._loaded()

    def act(self, script):
        """Run script (which submits a form or follows a link) and wait for
        the next page."""
        self.js("window.__old = 1")
        self.js(script)
        self._loaded()

    def text(self):
        return self.js("document.body.innerText")

    def shot(self, name):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path = os.path.join(self.shots, name + ".png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        assert os.path.getsize(path) > 1000
        return path

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.kill()
            self.proc.wait(10)
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_chromium_login_search_view_release(console, fake, tmp_path):
    port = console.console_port
    base = "http://127.0.0.1:%d" % port
    wait_listed(port, session_of(login(port)), HELD)
    b = Browser(str(tmp_path))
    try:
        b.go(base + "/")
        assert b.js("location.pathname") == "/login"
        assert "Sign in" in b.text()
        b.shot("1-login")
        # a wrong password first: the person is told, no session
        b.act("document.getElementById('user').value = 'admin';"
              "document.getElementById('password').value = 'wrong';"
              "document.querySelector('form[action=\"/login\"]').submit()")
        assert "Wrong user name or password." in b.text()
        b.act("document.getElementById('user').value = 'admin';"
              "document.getElementById('password').value = %s;"
              "document.querySelector('form[action=\"/login\"]').submit()" % json.dumps(PASSWORD))
        text = b.text()
        assert "Quarantined messages" in text, text
        assert matching(HELD) in text, text
        assert "spammer@example.com" in text and "evil@example.org" in text
        assert ("infected@example.com" in text) == VIRUS
        assert "Sign out admin" in text and "Live dashboard" in text
        assert b.js("document.querySelector('nav a[href=\"http://127.0.0.1:%d/\"]') !== null"
                    % console.stats_port)
        # the cookie is not readable by a script on the page (HttpOnly)
        assert "sluice_console" not in b.js("document.cookie")
        b.shot("2-list")
        # search by sender
        b.act("document.getElementById('f-sender').value = 'spammer';"
              "document.querySelector('form[role=search]').submit()")
        text = b.text()
        assert "1 message match" in text, text
        assert "spammer@example.com" in text and "evil@example.org" not in text
        assert b.js("document.getElementById('f-sender').value") == "spammer"
        b.shot("3-search")
        # open it
        b.act("document.querySelector('tbody a').click()")
        text = b.text()
        assert re.search(r"Message \d+", text), text
        assert "spammer@example.com" in text
        assert "victim@example.net" in text and "other@example.net" in text
        assert "Plugin\tspam" in text or "Plugin\nspam" in text or "spam" in text
        assert "URGENT: YOUR ACCOUNT HAS BEEN SUSPENDED!!!" in text
        assert "Dear Customer" in text
        assert "Release to 2 recipients" in text
        b.shot("4-message")
        # release it: the MTA gets it once, with the original envelope
        b.act("document.getElementById('release').click()")
        text = b.text()
        assert "Released: the MTA accepted the message" in text, text
        assert b.js("document.getElementById('status').innerText").startswith("released"), text
        assert "Release to 2 recipients" not in text  # no button for a released message
        b.shot("5-released")
        msgs = fake.wait_messages(1)
        assert len(msgs) == 1
        assert msgs[0].mail_from == "spammer@example.com"
        assert sorted(msgs[0].rcpts) == ["other@example.net", "victim@example.net"]
        assert b"YOUR ACCOUNT HAS BEEN SUSPENDED" in msgs[0].data
        assert b"X-Sluice-" not in msgs[0].data
        # seen again: released, no button; a resubmitted release sends nothing
        msg_url = b.js("location.href")
        b.go(msg_url)
        assert b.js("document.getElementById('release') === null")
        assert b.js("document.getElementById('status').innerText").startswith("released")
        cookie = session_of(login(port))
        q = urllib.parse.parse_qs(urllib.parse.urlparse(msg_url).query)
        assert q["done"] == ["released"]
        msg_id = q["id"][0]
        view = request(port, "GET", "/msg?id=" + msg_id, headers={"Cookie": cookie})
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', view.text).group(1)
        r = request(port, "POST", "/release", {"id": msg_id, "csrf": csrf},
                    headers={"Cookie": cookie})
        assert r.status == 303, r.text
        r = request(port, "GET", r.getheader("Location"), headers={"Cookie": cookie})
        assert "Not released: the message is no longer held" in r.text
        time.sleep(0.5)
        assert len(fake.messages) == 1
        # the list of held messages no longer has it
        b.go(base + "/")
        text = b.text()
        assert matching(HELD - 1) in text and "spammer@example.com" not in text
        b.shot("6-after")
        # sign out: back to the form, and the old session is gone
        b.act("document.querySelector('form[action=\"/logout\"] button').click()")
        assert "Sign in" in b.text()
        b.go(base + "/")
        assert b.js("location.pathname") == "/login"
    finally:
        b.close()
    for name in ("1-login", "2-list", "3-search", "4-message", "5-released", "6-after"):
        assert os.path.exists(os.path.join(str(tmp_path), name + ".png"))
    assert console.wait_log(r"console: user=admin release id=\d+ rc=0", 5)
