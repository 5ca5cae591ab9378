# SPDX-License-Identifier: GPL-2.0-or-later
"""PROXY protocol v1/v2 on a listener behind HAProxy (Debian's haproxy).

HAProxy connects to sluice from 127.0.0.5 (`source` on its server lines),
the only address in the listener's proxy_trusted; clients connect to
HAProxy from other 127/8 addresses, so every assertion can tell the real
client from the proxy. What is checked is what an admin sees: the upstream
(a private Postfix, or the fake MTA's XCLIENT) and sluice's log name the
real client; per-address limits count it; an untrusted or malformed header
closes the connection with a log line and a counter. Loopback only; every
wait is bounded."""

import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import time
import urllib.request

import pytest

import harness
from harness import Client, transaction

PROXY_SRC = "127.0.0.5"  # HAProxy's (and the tests' "proxy") source address


def v2_header(src, dst, sport, dport, tlvs=b"", command=1):
    """A PROXY v2 header for TCP over IPv4 (command 1 = PROXY, 0 = LOCAL)."""
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    if command == 0:
        return sig + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    body = addrs + tlvs
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def connect_from(port, src, timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            break
        buf += b
    return buf


def closed_without_greeting(s, timeout=10):
    """True when the peer closes (EOF or reset) before sending anything."""
    s.settimeout(timeout)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True


def metric(stats_port, name, **labels):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % stats_port,
                                  timeout=10).read().decode()
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for ln in text.splitlines():
        m = re.match(r"^(\w+)(?:\{([^}]*)\})? (\S+)$", ln)
        if m and m.group(1) == name and (m.group(2) or "") == want:
            return float(m.group(3))
    return None


class HAProxy:
    """A private haproxy in the foreground (-db) on a generated config."""

    def __init__(self, workdir, frontends):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.cfg = os.path.join(self.workdir, "haproxy.cfg")
        lines = ["global", "  maxconn 200", "",
                 "defaults", "  mode tcp", "  timeout connect 5s",
                 "  timeout client 30s", "  timeout server 30s", ""]
        for name, (port, bind_extra, target, server_extra) in frontends.items():
            lines += ["frontend fe_%s" % name,
                      "  bind 127.0.0.1:%d %s" % (port, bind_extra),
                      "  default_backend be_%s" % name, "",
                      "backend be_%s" % name,
                      "  server s1 127.0.0.1:%d source %s %s" % (target, PROXY_SRC,
                                                                 server_extra), ""]
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.ports = [p for p, _, _, _ in frontends.values()]
        self.proc = None
        self.log = os.path.join(self.workdir, "haproxy.log")

    def start(self):
        chk = subprocess.run(["haproxy", "-c", "-f", self.cfg], capture_output=True, text=True,
                             timeout=30)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        self._logf = open(self.log, "w")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg], stdout=self._logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        for p in self.ports:
            assert harness.wait_port(p), open(self.log).read()
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc:
            self._logf.close()


@pytest.fixture(scope="module")
def haproxy_bin():
    if not shutil.which("haproxy"):
        pytest.skip("haproxy not installed (contrib/scripts/install-deps.sh installs it)")


def proxy_sluice(sluice_factory, upstream_port, stats_port=None, listener=None, server=None):
    """sluice with a plain MX listener (the default) and a listener
    `edge` that takes PROXY headers from PROXY_SRC only."""
    edge = harness.free_port()
    lst = {"listen": "127.0.0.1:%d" % edge, "proxy_protocol": True,
           "proxy_trusted": PROXY_SRC + "/32"}
    lst.update(listener or {})
    kw = {}
    if stats_port:
        kw["stats"] = {"listen": "127.0.0.1:%d" % stats_port}
    s = sluice_factory(upstream_port, extra_sections={"listener edge": lst},
                       server=server, **kw)
    s.edge_port = edge
    assert harness.wait_port(edge)
    return s


@pytest.fixture
def xfake(fake_factory):
    return fake_factory(xclient=True)


def test_haproxy_v2_and_v1_postfix_sees_the_real_client(haproxy_bin, postfix, sluice_factory,
                                                         tmp_path):
    sl = proxy_sluice(sluice_factory, postfix.port)
    p2, p1 = harness.free_port(), harness.free_port()
    hp = HAProxy(tmp_path / "haproxy", {
        "v2": (p2, "", sl.edge_port, "send-proxy-v2"),
        "v1": (p1, "", sl.edge_port, "send-proxy"),
    }).start()
    try:
        for port, client, subject in ((p2, "127.0.0.77", "via-v2"), (p1, "127.0.0.78", "via-v1")):
            before = postfix.mail_files()
            r = harness.swaks("--server", "127.0.0.1:%d" % port, "--local-interface", client,
                              "--from", "a@example.com", "--to", "b@example.net",
                              "--header", "Subject: %s" % subject)
            assert r.returncode == 0, r.stdout + r.stderr
            files = postfix.wait_mail(1, before=before)
            assert files, postfix.log_tail()
            with open(files[0], "rb") as f:
                mail = f.read()
            # Postfix's own Received line names the client XCLIENT gave it.
            assert re.search(rb"Received: from \S+ \(\S*\s*\[%s\]\)" %
                             re.escape(client.encode()), mail), mail[:600]
            assert re.search(r"client=\S*\[%s\]" % re.escape(client), postfix.log_tail(200))
            ln = sl.wait_log(r"event=connect client=%s:\d+ listener=edge proxy=%s:\d+" %
                             (re.escape(client), re.escape(PROXY_SRC)))
            assert ln, "\n".join(sl.lines[-20:])
        assert sl.wait_log(r"event=proxy proxy=127\.0\.0\.5:\d+ header=\"v2 PROXY inet "
                           r"127\.0\.0\.77:\d+ -> 127\.0\.0\.1:%d" % p2)
        assert sl.wait_log(r"event=proxy proxy=127\.0\.0\.5:\d+ header=\"v1 PROXY tcp4 "
                           r"127\.0\.0\.78:\d+ -> 127\.0\.0\.1:%d" % p1)
    finally:
        hp.stop()


def test_tls_ended_at_haproxy_counts_as_tls(haproxy_bin, xfake, sluice_factory, certs, tmp_path):
    """HAProxy ends the client's TLS and says so in a PP2 SSL TLV: the
    session is TLS for require_tls, and the log shows the client's TLS."""
    sl = proxy_sluice(sluice_factory, xfake.port,
                      listener={"tls": "none", "require_tls": False})
    combined = tmp_path / "combined.pem"
    combined.write_bytes(open(certs["cert"], "rb").read() + open(certs["key"], "rb").read())
    port = harness.free_port()
    hp = HAProxy(tmp_path / "haproxy", {
        "tls": (port, "ssl crt %s" % combined, sl.edge_port, "send-proxy-v2-ssl-cn"),
    }).start()
    try:
        r = harness.swaks("--server", "127.0.0.1:%d" % port, "--tlsc", "--local-interface",
                          "127.0.0.79", "--from", "a@example.com", "--to", "b@example.net")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "STARTTLS" not in r.stdout.split("EHLO", 1)[1].split("MAIL FROM", 1)[0]
        assert len(xfake.wait_messages(1)) == 1
        assert xfake.sessions[-1].xclient.get("ADDR") == "127.0.0.79"
        assert sl.wait_log(r"event=proxy .*header=\"v2 PROXY inet 127\.0\.0\.79:\d+ .*tls=TLSv1\.[23]")
        assert sl.wait_log(r"event=tx client=127\.0\.0\.79:\d+ .*tls=TLSv1\.[23] ")
    finally:
        hp.stop()


def ssl_tlv(version=b"TLSv1.3", cipher=b"TLS_AES_256_GCM_SHA384"):
    """PP2_TYPE_SSL: client came over TLS (0x01), verify 0, with the
    version (0x21) and cipher (0x23) sub-TLVs, as HAProxy writes it."""
    sub = (b"\x21" + struct.pack("!H", len(version)) + version +
           b"\x23" + struct.pack("!H", len(cipher)) + cipher)
    val = b"\x01" + struct.pack("!I", 0) + sub
    return b"\x20" + struct.pack("!H", len(val)) + val


def test_require_tls_is_met_by_a_proxy_that_ended_tls(xfake, sluice_factory):
    """tls = none with require_tls is a listener only a TLS-ending proxy
    can use: a v2 header with PP2_TYPE_SSL (client came over TLS) meets
    require_tls; the same header without it does not."""
    sl = proxy_sluice(sluice_factory, xfake.port, listener={"tls": "none", "require_tls": True})
    with Client(sl.edge_port, source=PROXY_SRC) as c:
        c.send(v2_header("127.0.0.94", "127.0.0.1", 40020, 465, tlvs=ssl_tlv()))
        c.greeting()
        r = c.ehlo()
        assert not any(ln.upper() == "STARTTLS" for ln in r.lines[1:]), r
        assert transaction(c).code == 250
    with Client(sl.edge_port, source=PROXY_SRC) as c:
        c.send(v2_header("127.0.0.95", "127.0.0.1", 40021, 587))
        c.greeting()
        c.ehlo()
        c.expect("MAIL FROM:<a@example.com>", 530, "5.7.0")
    assert len(xfake.wait_messages(1)) == 1
    assert sl.wait_log(r"event=proxy .*127\.0\.0\.94:40020 .*tls=TLSv1\.3 .*"
                       r"cipher=TLS_AES_256_GCM_SHA384")


def test_limits_and_xclient_use_the_real_client(xfake, sluice_factory):
    sl = proxy_sluice(sluice_factory, xfake.port, server={"max_connections_per_ip": 1})
    a = Client(sl.edge_port, source=PROXY_SRC)
    a.send(b"PROXY TCP4 127.0.0.90 127.0.0.1 40000 25\r\n")
    a.greeting()
    b = Client(sl.edge_port, source=PROXY_SRC)
    b.send(v2_header("127.0.0.91", "127.0.0.1", 40001, 25))
    b.greeting()
    with Client(sl.edge_port, source=PROXY_SRC) as c:
        c.send(b"PROXY TCP4 127.0.0.90 127.0.0.1 40002 25\r\n")
        r = c.reply()
        assert (r.code, r.enh) == (421, "4.7.0"), "second connection of 127.0.0.90 not limited"
    # The first client's mail: XCLIENT carries its address, not the proxy's.
    with a:
        a.ehlo()
        assert transaction(a).code == 250
    b.close()
    assert len(xfake.wait_messages(1)) == 1
    assert any(x.xclient.get("ADDR") == "127.0.0.90" for x in xfake.sessions)
    assert sl.wait_log(r"event=connect client=127\.0\.0\.90:40000 listener=edge "
                       r"proxy=127\.0\.0\.5:")
    assert sl.wait_log(r"client=127\.0\.0\.90 refused: too many connections from this address")


def test_untrusted_source_is_refused(xfake, sluice_factory):
    stats = harness.free_port()
    sl = proxy_sluice(sluice_factory, xfake.port, stats_port=stats)
    assert harness.wait_port(stats)
    # wait_port's own probe of the listener was one untrusted connection:
    # counted once its refusal is logged
    assert sl.wait_log(r"refused: listener edge takes a PROXY header only from proxy_trusted")
    before = metric(stats, "sluice_proxy_headers_total", result="untrusted")
    s = connect_from(sl.edge_port, "127.0.0.1")
    s.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 1234 25\r\n")
    assert closed_without_greeting(s)
    s.close()
    assert sl.wait_log(r"client=127\.0\.0\.1:\d+ refused: listener edge takes a PROXY header "
                       r"only from proxy_trusted")
    assert not sl.wait_log(r"203\.0\.113\.9", timeout=0.5)
    assert metric(stats, "sluice_proxy_headers_total", result="untrusted") == before + 1
    # The plain MX listener beside it is unaffected.
    assert harness.smtp_send(sl.port) == {}


def test_malformed_and_stalled_headers_close_the_connection(xfake, sluice_factory):
    stats = harness.free_port()
    sl = proxy_sluice(sluice_factory, xfake.port, stats_port=stats,
                      server={"command_timeout": "2s"})
    for junk in (b"EHLO client.test\r\n",                          # no header at all
                 b"PROXY TCP4 127.0.0.1 127.0.0.1 99999 25\r\n",  # port out of range
                 b"PROXY TCP4 " + b"1" * 200 + b"\r\n",           # too long for v1
                 v2_header("127.0.0.1", "127.0.0.1", 1, 25)[:12] + b"\x31\x11\x00\x0c" +
                 b"\x00" * 12):                                   # v2 with version 3
        s = connect_from(sl.edge_port, PROXY_SRC)
        s.sendall(junk)
        assert closed_without_greeting(s), junk
        s.close()
    assert sl.wait_log(r"client=127\.0\.0\.5:\d+ refused: malformed PROXY header: ")
    t0 = time.monotonic()
    s = connect_from(sl.edge_port, PROXY_SRC)
    s.sendall(b"PROXY TCP4 127.0.0.1")  # and nothing more
    assert closed_without_greeting(s, timeout=15)
    assert time.monotonic() - t0 < 10
    s.close()
    assert sl.wait_log(r"timeout in state proxy")
    assert metric(stats, "sluice_proxy_headers_total", result="malformed") == 4
    assert xfake.sessions == [] or all(not x.messages for x in xfake.sessions)


def test_local_header_keeps_the_socket_address(xfake, sluice_factory):
    """A v2 LOCAL header (a proxy's health check) names no client: the
    connection's own addresses stand."""
    sl = proxy_sluice(sluice_factory, xfake.port)
    s = connect_from(sl.edge_port, PROXY_SRC)
    s.sendall(v2_header("", "", 0, 0, command=0) + b"EHLO probe.test\r\nQUIT\r\n")
    assert read_line(s).startswith(b"220 ")
    data = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    s.close()
    assert b"221 " in data
    assert sl.wait_log(r"event=connect client=127\.0\.0\.5:\d+ listener=edge proxy=127\.0\.0\.5:")


def test_implicit_tls_behind_a_header_in_one_segment(xfake, sluice_factory, certs):
    """The header and the client's TLS ClientHello in one write: the bytes
    behind the header are the start of the handshake (RFC 8314 listener)."""
    sl = proxy_sluice(sluice_factory, xfake.port, server={"tls_cert_file": certs["cert"],
                                                          "tls_key_file": certs["key"]},
                      listener={"tls": "implicit"})
    ctx = ssl.create_default_context(cafile=certs["ca"])
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    s = connect_from(sl.edge_port, PROXY_SRC)
    s.sendall(b"PROXY TCP4 127.0.0.93 127.0.0.1 40010 465\r\n" + out.read())
    deadline = time.monotonic() + 10
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pending = out.read()
            if pending:
                s.sendall(pending)
            d = s.recv(65536)
            assert d, "closed during the handshake"
            inc.write(d)
        assert time.monotonic() < deadline
    pending = out.read()
    if pending:
        s.sendall(pending)
    got = b""
    while not got.endswith(b"\r\n"):
        try:
            got += tls.read(4096)
        except ssl.SSLWantReadError:
            pending = out.read()
            if pending:
                s.sendall(pending)
            d = s.recv(65536)
            assert d
            inc.write(d)
    assert got.startswith(b"220 "), got
    s.close()
    assert sl.wait_log(r"event=connect client=127\.0\.0\.93:40010 listener=edge proxy=")


def v2_header6(src, dst, sport, dport, tlvs=b""):
    """A PROXY v2 header for TCP over IPv6."""
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    body = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) +
            struct.pack("!HH", sport, dport) + tlvs)
    return sig + bytes([0x21, 0x21]) + struct.pack("!H", len(body)) + body


def test_ipv4_mapped_client_is_the_ipv4_client(xfake, sluice_factory):
    """HAProxy on a v4v6 socket names IPv4 clients as ::ffff:a.b.c.d: they
    are counted, logged and sent in XCLIENT as the IPv4 clients they are,
    not all under one IPv6 /64."""
    sl = proxy_sluice(sluice_factory, xfake.port, server={"max_connections_per_ip": 1})
    a = Client(sl.edge_port, source=PROXY_SRC)
    a.send(v2_header6("::ffff:10.0.0.1", "::ffff:127.0.0.1", 40100, 25))
    a.greeting()
    with Client(sl.edge_port, source=PROXY_SRC) as b:
        b.send(v2_header6("::ffff:10.9.9.9", "::ffff:127.0.0.1", 40101, 25))
        b.greeting()  # another client: not refused
        b.ehlo()
        assert transaction(b).code == 250
    with Client(sl.edge_port, source=PROXY_SRC) as c:
        c.send(b"PROXY TCP4 10.0.0.1 127.0.0.1 40102 25\r\n")  # the same client as a
        r = c.reply()
        assert (r.code, r.enh) == (421, "4.7.0"), r
    a.close()
    assert xfake.wait_messages(1)
    assert any(x.xclient.get("ADDR") == "10.9.9.9" for x in xfake.sessions), \
        [x.xclient for x in xfake.sessions]
    assert sl.wait_log(r"event=connect client=10\.9\.9\.9:40101 listener=edge")


def test_tlv_strings_are_quoted_in_the_log(xfake, sluice_factory):
    """A client's SNI or certificate CN, passed on by the proxy in TLVs, is
    the client's own text: it cannot add keys to the log line."""
    sl = proxy_sluice(sluice_factory, xfake.port)
    evil = b'a" verdict=accepted client=203.0.113.66:25 x="'
    authority = b"\x02" + struct.pack("!H", len(evil)) + evil
    with Client(sl.edge_port, source=PROXY_SRC) as c:
        c.send(v2_header("127.0.0.96", "127.0.0.1", 40030, 25,
                         tlvs=ssl_tlv(version=b'TLSv1.3" x="1') + authority))
        c.greeting()
        c.ehlo()
        assert transaction(c).code == 250
    ln = sl.wait_log(r"event=proxy ")
    # the whole rest of the line is one quoted value (escapes inside)
    assert ln and re.search(r'event=proxy proxy=\S+ header="(?:[^"\\]|\\.)*"$', ln), ln
    tx = sl.wait_log(r"event=tx client=127\.0\.0\.96")
    assert tx and "tls=TLSv1.3__x__1 " in tx, tx
