# SPDX-License-Identifier: GPL-2.0-or-later
"""virus plugin, clamd backend, end to end: a real clamd (clamav-daemon's
/usr/sbin/clamd) started by the test in the foreground with the generated
database, a unix socket and a loopback TCP port in the test directory;
sluice talks INSTREAM to it. Also: clamd down, clamd hanging, and clamd's
StreamMaxLength answer, each mapped to the configured policy.
"""

import os
import socket
import subprocess
import threading
import time

import pytest

import harness
import plugkit
from test_virus_libclamav import eicar, header, make_db, mail, start_virus, uu_mail, zipped

CLAMD = "/usr/sbin/clamd"


class Clamd:
    def __init__(self, d, stream_max="1M"):
        self.dir = str(d)
        os.makedirs(self.dir, exist_ok=True)
        self.db = make_db(os.path.join(self.dir, "db"))
        self.sock = os.path.join(self.dir, "clamd.sock")
        self.port = harness.free_port()
        tmp = os.path.join(self.dir, "tmp")
        os.makedirs(tmp, mode=0o700, exist_ok=True)
        self.conf = os.path.join(self.dir, "clamd.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join([
                "Foreground yes",
                "DatabaseDirectory " + self.db,
                "LocalSocket " + self.sock,
                "TCPSocket %d" % self.port,
                "TCPAddr 127.0.0.1",
                "LogFile " + os.path.join(self.dir, "clamd.log"),
                "PidFile " + os.path.join(self.dir, "clamd.pid"),
                "TemporaryDirectory " + tmp,
                "StreamMaxLength " + stream_max,
                "MaxThreads 4",
                "", ]))
        self.proc = None

    def start(self, timeout=30):
        self.proc = subprocess.Popen([CLAMD, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("clamd exited: %s" % self.log())
            if os.path.exists(self.sock) and harness.wait_port(self.port, timeout=0.1):
                return self
            time.sleep(0.05)
        raise RuntimeError("clamd not ready after %ss: %s" % (timeout, self.log()))

    def log(self):
        try:
            with open(os.path.join(self.dir, "clamd.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def clamd(tmp_path_factory):
    if not os.access(CLAMD, os.X_OK):
        pytest.skip("clamav-daemon not installed")
    c = Clamd(tmp_path_factory.mktemp("clamd"))
    try:
        c.start()
    except Exception:
        c.stop()
        raise
    yield c
    c.stop()


def test_eicar_over_unix_socket(clamd, fake, sluice_factory):
    s = start_virus(sluice_factory, fake, {"backend": "clamd", "clamd": "unix:" + clamd.sock})
    d = plugkit.send(s.port, body=mail([("eicar.com", eicar())]))
    assert d["eod"].code == 554 and d["eod"].enh == "5.7.1", d["eod"]
    assert "Test.EICAR.NDB" in d["eod"].text
    d = plugkit.send(s.port, body=mail([("docs.zip", zipped("readme.com", eicar()))]))
    assert d["eod"].code == 554 and "Test.EICAR.NDB" in d["eod"].text, d["eod"]
    with open("/usr/share/clamav-testfiles/clam.tar.gz", "rb") as f:
        d = plugkit.send(s.port, body=mail([("clam.tar.gz", f.read())]))
    assert d["eod"].code == 554 and "ClamAV-Test-File" in d["eod"].text, d["eod"]
    assert fake.messages == []


def test_uuencoded_virus_whatever_the_first_field(clamd, fake, sluice_factory):
    # clamd, like libclamav, takes a stream for mail by its first bytes.
    s = start_virus(sluice_factory, fake, {"backend": "clamd", "clamd": "unix:" + clamd.sock})
    d = plugkit.send(s.port, body=uu_mail(b"Foo: bar\r\n"))
    assert d["eod"].code == 554 and "Test.EICAR.NDB" in d["eod"].text, d["eod"]
    assert fake.messages == []


def test_tcp_clean_passes_and_tag(clamd, fake, sluice_factory):
    s = start_virus(sluice_factory, fake, {"backend": "clamd",
                                           "clamd": "127.0.0.1:%d" % clamd.port,
                                           "action": "tag", "scanned_header": "yes"})
    clean = mail([("a.txt", b"nothing\r\n" * 1000)])
    assert plugkit.send(s.port, body=clean)["eod"].code == 250
    assert plugkit.send(s.port, body=mail([("e.com", eicar())]))["eod"].code == 250
    got = fake.wait_messages(2)
    assert len(got) == 2
    assert header(got[0].data, "X-Virus") == []
    assert header(got[0].data, "X-Virus-Scanned") == ["sluice (ClamAV clamd)"]
    assert got[0].data.endswith(clean[clean.find(b"\r\n\r\n"):])
    assert header(got[1].data, "X-Virus") == ["Test.EICAR.NDB.UNOFFICIAL"]


def test_clean_byte_identical(clamd, fake, sluice_factory):
    s = start_virus(sluice_factory, fake, {"backend": "clamd", "clamd": "unix:" + clamd.sock})
    msg = mail([("data.bin", bytes(range(256)) * 300)])  # several INSTREAM chunks
    assert plugkit.send(s.port, body=msg)["eod"].code == 250
    got = fake.wait_messages(1)
    assert got[0].data == msg


@pytest.mark.parametrize("policy,code", [("tempfail", 452), ("reject", 552), ("tag", 250)])
def test_stream_limit_answer(clamd, fake, sluice_factory, policy, code):
    # clamd's StreamMaxLength is 1M here; the plugin's own limit is higher,
    # so the size-limit answer of clamd decides.
    s = start_virus(sluice_factory, fake, {"backend": "clamd", "clamd": "unix:" + clamd.sock,
                                           "max_scan_size": "10M", "limit_action": policy})
    big = mail([("big.bin", os.urandom(1200 * 1024))])
    d = plugkit.send(s.port, body=big, timeout=30)
    assert d["eod"].code == code, d["eod"]
    if code != 250:
        assert "StreamMaxLength" in d["eod"].text
    else:
        got = fake.wait_messages(1)
        assert header(got[0].data, "X-Virus-Limit") == ["limit exceeded (StreamMaxLength)"]


def test_clamd_down_failure_policy(tmp_path, fake, sluice_factory):
    dead = "unix:" + str(tmp_path / "nobody.sock")
    s = start_virus(sluice_factory, fake, {"backend": "clamd", "clamd": dead})
    d = plugkit.send(s.port, body=mail([("a.txt", b"x\r\n")]))
    assert d["eod"].code == 451 and d["eod"].enh == "4.7.1", d["eod"]
    assert s.wait_log(r"scan=error reason=connect", timeout=5), s.output()
    # failure = accept: delivered unscanned; failure = tag: with the host's header.
    port = harness.free_port()  # nobody listens on TCP either
    s2 = start_virus(sluice_factory, fake, {"backend": "clamd", "clamd": "127.0.0.1:%d" % port,
                                            "failure": "accept"})
    assert plugkit.send(s2.port, body=mail([("a.txt", b"x\r\n")]))["eod"].code == 250
    s3 = start_virus(sluice_factory, fake, {"backend": "clamd", "clamd": dead,
                                            "failure": "tag"}, name="av")
    assert plugkit.send(s3.port, body=mail([("a.txt", b"y\r\n")]))["eod"].code == 250
    got = fake.wait_messages(2)
    assert len(got) == 2
    assert header(got[1].data, "X-Sluice-Skipped") == ["av (virus scan failed: connect)"]


def test_clamd_hangs_timeout(tmp_path, fake, sluice_factory):
    # A "clamd" that accepts, reads, and never answers.
    path = str(tmp_path / "hang.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    conns = []
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                conns.append(c)
            except socket.timeout:
                continue
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        s = start_virus(sluice_factory, fake, {"backend": "clamd", "clamd": "unix:" + path,
                                               "clamd_timeout": "500ms"})
        t0 = time.monotonic()
        d = plugkit.send(s.port, body=mail([("a.txt", b"x\r\n")]))
        took = time.monotonic() - t0
        assert d["eod"].code == 451, d["eod"]
        assert took < 5, took
        assert s.wait_log(r"scan=error reason=timeout", timeout=5), s.output()
    finally:
        stop.set()
        t.join(5)
        for c in conns:
            c.close()
        srv.close()
