# SPDX-License-Identifier: GPL-2.0-or-later
"""virus plugin (libclamav backend) end to end: client -> sluice -> recording
upstream.

No signature file or EICAR sample is in the repository: every test builds
its database at run time (an .ndb line for the EICAR string, assembled from
pieces here, and the .hdb line matching clam.exe of Debian's
clamav-testfiles), and archives are made with zipfile at test time.

The helpers at the top (names without a test_ prefix) are also used by
test_virus_clamd.py.
"""

import base64
import binascii
import io
import os
import re
import shutil
import threading
import time
import zipfile

import pytest

import harness
import plugkit

TESTFILES = "/usr/share/clamav-testfiles"
CLAM_EXE_HDB = "aa15bcf478d165efd2065190eb473bcb:544:ClamAV-Test-File\n"


def eicar():
    """The EICAR test string, assembled so this file is no detection itself."""
    return ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-" + "ANTIVIRUS-TEST-"
            + "FILE!$H+H*").encode()


def ndb_line(name, data):
    return "%s:0:*:%s\n" % (name, data.hex())


def make_db(d, extra=None):
    """A signature directory: EICAR (.ndb) + clam.exe (.hdb) [+ extra]."""
    d = str(d)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "test.ndb"), "w") as f:
        f.write(ndb_line("Test.EICAR.NDB", eicar()))
    with open(os.path.join(d, "test.hdb"), "w") as f:
        f.write(CLAM_EXE_HDB)
    for name, text in (extra or {}).items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    return d


def b64_lines(data):
    enc = base64.b64encode(data)
    return b"\r\n".join(enc[i:i + 76] for i in range(0, len(enc), 76))


def mail(attachments=(), text=b"Hello, see the attachment.\r\n", subject=b"test"):
    """A multipart/mixed message (CRLF) with base64 attachments [(name, bytes)]."""
    out = [b"From: sender@example.com", b"To: rcpt@example.net",
           b"Subject: " + subject, b"Message-ID: <virus-test@example.com>",
           b"MIME-Version: 1.0",
           b'Content-Type: multipart/mixed; boundary="=_b"', b"",
           b"This is a multi-part message in MIME format.",
           b"--=_b", b"Content-Type: text/plain; charset=us-ascii", b"", text.rstrip(b"\r\n")]
    for name, data in attachments:
        n = name.encode()
        out += [b"--=_b",
                b'Content-Type: application/octet-stream; name="' + n + b'"',
                b"Content-Transfer-Encoding: base64",
                b'Content-Disposition: attachment; filename="' + n + b'"', b"",
                b64_lines(data)]
    out += [b"--=_b--", b""]
    return b"\r\n".join(out)


def uu_mail(first=b"", data=None, name=b"eicar.com"):
    """A mail without MIME fields, `data` (EICAR) uuencoded in its body, the
    header lines `first` (CRLF-ended) on top of its own."""
    data = eicar() if data is None else data
    uu = [b"begin 644 " + name]
    uu += [binascii.b2a_uu(data[i:i + 45]).rstrip(b"\n") for i in range(0, len(data), 45)]
    uu += [b"`", b"end", b""]
    return (first + b"From: sender@example.com\r\nTo: rcpt@example.net\r\nSubject: uu\r\n"
            b"Message-ID: <uu-test@example.com>\r\n\r\nSee below.\r\n\r\n" + b"\r\n".join(uu))


def zipped(name, data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


# Under SLUICE_SANITIZE: OpenSSL's per-thread state, allocated inside
# libclamav on pool threads, is freed only at thread exit (plugins/virus/lsan.supp).
LSAN_ENV = {
    "LSAN_OPTIONS": "suppressions=" + os.path.join(harness.SRC_DIR, "tests", "lsan.supp"),
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0",
}


def virus_sections(keys, name="virus"):
    sec = {"path": "virus"}
    sec.update(keys)
    return {"chain": {"plugins": name}, "plugin %s" % name: sec}


def start_virus(sluice_factory, fake, keys, server=None, stats=None, name="virus"):
    return sluice_factory(fake.port, extra_sections=virus_sections(keys, name),
                          server=server, stats=stats, env=LSAN_ENV)


def header_fields(data):
    """Header fields of a message as [(name, value)] (unfolded)."""
    head = plugkit.header_block(data).decode("latin-1")
    out = []
    for ln in head.split("\r\n"):
        if not ln:
            continue
        if ln[0] in " \t" and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + ln.strip())
        else:
            k, _, v = ln.partition(":")
            out.append((k, v.strip()))
    return out


def header(data, name):
    return [v for k, v in header_fields(data) if k.lower() == name.lower()]


# --------------------------------------------------------------------------
@pytest.fixture
def db(tmp_path):
    return make_db(tmp_path / "db")


def test_eicar_attachment_rejected_with_signature_name(db, fake, sluice_factory):
    s = start_virus(sluice_factory, fake, {"database": db})
    d = plugkit.send(s.port, body=mail([("eicar.com", eicar())]))
    r = d["eod"]
    assert r.code == 554 and r.enh == "5.7.1", r
    assert "Virus found: Test.EICAR.NDB" in r.text, r
    assert fake.messages == []
    # The clean one after it on another connection passes.
    d = plugkit.send(s.port, body=mail([("notes.txt", b"nothing to see\r\n")]))
    assert d["eod"].code == 250, d


@pytest.mark.parametrize("first", [b"", b"X-Mailer: anything\r\n", b"Foo: bar\r\n"])
def test_uuencoded_virus_whatever_the_first_field(db, fake, sluice_factory, first):
    # libclamav decodes uuencoded parts only in what it takes for mail, by
    # the first bytes; a client chose a first field it does not know, and
    # the virus went through as text.
    s = start_virus(sluice_factory, fake, {"database": db})
    d = plugkit.send(s.port, body=uu_mail(first))
    assert d["eod"].code == 554 and "Test.EICAR.NDB" in d["eod"].text, d["eod"]
    assert fake.messages == []


def test_uuencoded_virus_behind_dkim_verify(db, fake, sluice_factory):
    # The recommended chain: dkim_verify puts its Authentication-Results
    # field on top before virus scans the message.
    sections = {"chain": {"plugins": "dkim_verify, virus"},
                "plugin dkim_verify": {"path": "dkim", "mode": "verify",
                                       "authserv_id": "sluice.test"},
                "plugin virus": {"path": "virus", "database": db}}
    s = sluice_factory(fake.port, extra_sections=sections, env=LSAN_ENV)
    d = plugkit.send(s.port, body=uu_mail())
    assert d["eod"].code == 554 and "Test.EICAR.NDB" in d["eod"].text, d["eod"]
    clean = uu_mail(data=b"nothing to see here\r\n" * 20, name=b"notes.txt")
    assert plugkit.send(s.port, body=clean)["eod"].code == 250
    got = fake.wait_messages(1)
    assert header(got[0].data, "Authentication-Results") == ["sluice.test; dkim=none"]
    assert got[0].data.endswith(clean[clean.find(b"\r\n\r\n"):])


def test_eicar_in_zip_in_mail(db, fake, sluice_factory):
    s = start_virus(sluice_factory, fake, {"database": db,
                                           "reject_text": "Rejected: %s (100%% sure)"})
    d = plugkit.send(s.port, body=mail([("docs.zip", zipped("readme.com", eicar()))]))
    assert d["eod"].code == 554, d["eod"]
    assert re.search(r"Rejected: Test\.EICAR\.NDB\S* \(100% sure\)", d["eod"].text), d["eod"]
    assert fake.messages == []


@pytest.mark.parametrize("pad", [60 * 1024, 1024 * 1024 - 4096, 1536 * 1024])
def test_eicar_behind_large_parts(db, fake, sluice_factory, pad):
    # The daemon populates libclamav's maps of extracted files up to 1 MiB
    # at once (proxy/populate.h) and leaves larger ones as libclamav asks:
    # files on both sides of that bound are still read and scanned whole.
    s = start_virus(sluice_factory, fake, {"database": db})
    blob = os.urandom(pad)
    tail = zipped("pad.bin", os.urandom(pad) + eicar())
    d = plugkit.send(s.port, body=mail([("blob.bin", blob), ("x.zip", tail)]))
    assert d["eod"].code == 554 and "Test.EICAR.NDB" in d["eod"].text, d["eod"]
    clean = mail([("blob.bin", blob)])
    assert plugkit.send(s.port, body=clean)["eod"].code == 250
    got = fake.wait_messages(1)
    assert got[0].data.endswith(clean[clean.find(b"\r\n\r\n"):])


def _statfs_is_tmpfs(path):
    # os.statvfs has no f_type; /proc/self/mountinfo tells the file system
    # type of the longest mount point above path.
    path = os.path.realpath(path)
    best, fstype = "", None
    with open("/proc/self/mountinfo") as f:
        for ln in f:
            left, _, right = ln.partition(" - ")
            mnt = left.split()[4].replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fstype = mnt, right.split()[0]
    return fstype in ("tmpfs", "ramfs")


@pytest.mark.skipif(not _statfs_is_tmpfs("/dev/shm"), reason="no tmpfs at /dev/shm")
@pytest.mark.parametrize("via", ["TMPDIR", "XDG_RUNTIME_DIR"])
def test_default_scratch_dir_is_private_tmpfs_and_removed(db, fake, sluice_factory, tmp_path,
                                                          via):
    """tmpdir unset: the plugin's scratch directory goes on tmpfs (a tmpfs
    $TMPDIR, else $XDG_RUNTIME_DIR ... /dev/shm, before a disk $TMPDIR), is
    made 0700 and ours, keeps no decoded part after a scan, and is removed
    at shutdown."""
    import tempfile
    # $TMPDIR on disk: pytest's tmp_path is on tmpfs where /tmp is (CI
    # images, the fresh-root check), and a tmpfs $TMPDIR rightly wins.
    parent = next((d for d in (str(tmp_path), "/var/tmp", harness.SRC_DIR)
                   if d and os.path.isdir(d) and not _statfs_is_tmpfs(d)), None)
    if parent is None:
        pytest.skip("no directory on disk for a disk $TMPDIR")
    shm = tempfile.mkdtemp(prefix="sluice-virus-test.", dir="/dev/shm")
    disk = tempfile.mkdtemp(prefix="sluice-virus-disk.", dir=parent)
    try:
        env = dict(LSAN_ENV)
        env.pop("RUNTIME_DIRECTORY", None)
        if via == "TMPDIR":
            env.update({"TMPDIR": shm, "XDG_RUNTIME_DIR": ""})
        else:
            env.update({"TMPDIR": disk, "XDG_RUNTIME_DIR": shm})
        s = sluice_factory(fake.port, extra_sections=virus_sections({"database": db}), env=env)
        made = [os.path.join(shm, n) for n in os.listdir(shm)]
        assert len(made) == 1 and os.path.basename(made[0]).startswith("sluice-virus."), made
        st = os.lstat(made[0])
        assert (st.st_mode & 0o7777) == 0o700 and st.st_uid == os.geteuid()
        assert os.listdir(disk) == []
        assert "memory-backed" in s.output()
        d = plugkit.send(s.port, body=mail([("eicar.com", eicar())]))
        assert d["eod"].code == 554, d["eod"]
        inner = mail([("x.zip", zipped("readme.com", eicar()))])
        nested = (b"From: a@example.com\r\nTo: b@example.net\r\nSubject: fwd\r\n"
                  b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=OUT\r\n\r\n"
                  b"--OUT\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
                  b"--OUT\r\nContent-Type: message/rfc822\r\n\r\n" + inner +
                  b"\r\n--OUT--\r\n")
        d = plugkit.send(s.port, body=nested)
        assert d["eod"].code == 554, d["eod"]
        d = plugkit.send(s.port, body=mail([("notes.txt", b"nothing to see\r\n")]))
        assert d["eod"].code == 250, d
        assert os.listdir(made[0]) == []
        assert s.stop() == 0
        assert not os.path.exists(made[0])
    finally:
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(disk, ignore_errors=True)


def test_clean_mail_passes_byte_identical(db, fake, sluice_factory):
    s = start_virus(sluice_factory, fake, {"database": db})
    msg = mail([("report.pdf", b"%PDF-1.4\r\nnot really a pdf\r\n" * 50)])
    d = plugkit.send(s.port, body=msg)
    assert d["eod"].code == 250, d
    got = fake.wait_messages(1)
    assert len(got) == 1 and got[0].data == msg


def test_clamav_testfiles_formats(db, fake, sluice_factory):
    if not os.path.isdir(TESTFILES):
        pytest.skip("clamav-testfiles not installed")
    s = start_virus(sluice_factory, fake, {"database": db})
    names = ["clam.zip", "clam.tar.gz", "clam.pdf", "clam.ole.doc", "clam.7z", "clam.cab",
             "clam.exe.rtf", "clam.exe.bz2", "clam.impl.zip", "clam.ppt"]
    missed = []
    for n in names:
        with open(os.path.join(TESTFILES, n), "rb") as f:
            data = f.read()
        d = plugkit.send(s.port, body=mail([(n, data)]))
        if d["eod"].code != 554 or "ClamAV-Test-File" not in d["eod"].text:
            missed.append((n, str(d["eod"])))
    assert not missed, missed
    assert fake.messages == []
    # clam.mail is itself a mail: sent as the message, not an attachment.
    with open(os.path.join(TESTFILES, "clam.mail"), "rb") as f:
        raw = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    d = plugkit.send(s.port, body=raw)
    assert d["eod"].code == 554 and "ClamAV-Test-File" in d["eod"].text, d["eod"]


def test_action_tag_and_scanned_header(db, fake, sluice_factory):
    s = start_virus(sluice_factory, fake, {"database": db, "action": "tag",
                                           "scanned_header": "yes"})
    d = plugkit.send(s.port, body=mail([("eicar.com", eicar())]))
    assert d["eod"].code == 250, d
    clean = mail([("a.txt", b"fine\r\n")])
    d = plugkit.send(s.port, body=clean)
    assert d["eod"].code == 250, d
    got = fake.wait_messages(2)
    assert len(got) == 2
    assert header(got[0].data, "X-Virus") == ["Test.EICAR.NDB.UNOFFICIAL"]
    assert re.match(r"sluice \(ClamAV \d+\.\d+", header(got[0].data, "X-Virus-Scanned")[0])
    assert header(got[1].data, "X-Virus") == []
    assert len(header(got[1].data, "X-Virus-Scanned")) == 1
    # Only the header was added: the rest is byte-identical.
    assert got[1].data.endswith(clean[clean.find(b"\r\n\r\n"):])


def test_action_quarantine(db, fake, sluice_factory, tmp_path):
    qdir = tmp_path / "quarantine"
    qdir.mkdir()
    s = start_virus(sluice_factory, fake, {"database": db, "action": "quarantine"},
                    server={"quarantine_dir": str(qdir)})
    d = plugkit.send(s.port, body=mail([("eicar.com", eicar())]))
    assert d["eod"].code == 250, d
    assert fake.messages == []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not os.listdir(qdir):
        time.sleep(0.05)
    files = os.listdir(qdir)
    assert files, "nothing quarantined"
    assert any(eicar()[:20] in open(os.path.join(qdir, f), "rb").read()
               or b"eicar.com" in open(os.path.join(qdir, f), "rb").read() for f in files)


@pytest.mark.parametrize("policy,code,enh", [("tempfail", 452, "4.3.4"),
                                             ("reject", 552, "5.3.4"),
                                             ("tag", 250, None)])
def test_message_over_scan_limit(db, fake, sluice_factory, policy, code, enh):
    s = start_virus(sluice_factory, fake, {"database": db, "max_scan_size": "20k",
                                           "limit_action": policy})
    big = mail([("big.bin", os.urandom(30000))])
    d = plugkit.send(s.port, body=big)
    r = d["eod"]
    assert r.code == code, r
    if enh:
        assert r.enh == enh and "MaxScanSize" in r.text, r
        assert fake.messages == []
    else:
        got = fake.wait_messages(1)
        assert header(got[0].data, "X-Virus-Limit") == ["limit exceeded (MaxScanSize)"]
    # Under the limit: scanned normally.
    d = plugkit.send(s.port, body=mail([("eicar.com", eicar())]))
    assert d["eod"].code == 554, d


def test_recursion_limit_is_not_a_silent_pass(db, fake, sluice_factory):
    s = start_virus(sluice_factory, fake, {"database": db, "max_recursion": "1"})
    d = plugkit.send(s.port, body=mail([("docs.zip", zipped("readme.com", eicar()))]))
    assert d["eod"].code == 452 and "MaxRecursion" in d["eod"].text, d["eod"]


def test_empty_database_fails_with_failure_policy(tmp_path, fake, sluice_factory):
    empty = tmp_path / "emptydb"
    empty.mkdir()
    s = start_virus(sluice_factory, fake, {"database": str(empty)})
    assert s.wait_log(r"NOT READY", timeout=5), s.output()
    d = plugkit.send(s.port, body=mail([("a.txt", b"x\r\n")]))
    assert d["eod"].code == 451 and d["eod"].enh == "4.7.1", d["eod"]
    assert "not ready" in d["eod"].text
    s2 = start_virus(sluice_factory, fake, {"database": str(tmp_path / "missing"),
                                            "failure": "accept"})
    d = plugkit.send(s2.port, body=mail([("a.txt", b"x\r\n")]))
    assert d["eod"].code == 250, d["eod"]


def test_database_reload_while_mail_flows(db, fake, sluice_factory):
    s = start_virus(sluice_factory, fake, {"database": db, "reload_check": "200ms"})
    marker = b"sluice-virus-reload-marker-" + str(os.getpid()).encode()
    d = plugkit.send(s.port, body=mail([("m.txt", marker)]))
    assert d["eod"].code == 250, d

    results = []
    stop = threading.Event()

    def flow():
        i = 0
        while not stop.is_set():
            infected = i % 2 == 0
            att = eicar() if infected else b"clean %d\r\n" % i
            d = plugkit.send(s.port, body=mail([("f%d.com" % i, att)]))
            results.append((infected, d["eod"].code))
            i += 1

    threads = [threading.Thread(target=flow) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    # Rewrite the database directory: a new file with a new signature and
    # the old ones rewritten in place.
    tmp = os.path.join(db, "fresh.ndb.tmp")
    with open(tmp, "w") as f:
        f.write(ndb_line("Test.Fresh.NDB", marker))
    os.rename(tmp, os.path.join(db, "fresh.ndb"))
    make_db(db)
    ok = s.wait_log(r"loaded 3 signature", timeout=15)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(20)
    assert ok, s.output()
    assert len(results) > 10
    wrong = [(inf, c) for inf, c in results if c != (554 if inf else 250)]
    assert not wrong, wrong
    d = plugkit.send(s.port, body=mail([("m.txt", marker)]))
    assert d["eod"].code == 554 and "Test.Fresh.NDB" in d["eod"].text, d["eod"]


def test_counters_on_metrics(db, fake, sluice_factory):
    sport = harness.free_port()
    s = start_virus(sluice_factory, fake, {"database": db},
                    stats={"listen": "127.0.0.1:%d" % sport})
    plugkit.send(s.port, body=mail([("eicar.com", eicar())]))
    plugkit.send(s.port, body=mail([("eicar.com", eicar())]))
    plugkit.send(s.port, body=mail([("a.txt", b"clean\r\n")]))
    text = plugkit.metrics(sport)

    def value(metric_part, label):
        for ln in text.splitlines():
            if metric_part in ln and label in ln and not ln.startswith("#"):
                return float(ln.split()[-1])
        return None
    assert value("virus_scans_total", 'result="virus"') == 2, text
    assert value("virus_scans_total", 'result="clean"') == 1, text
    assert value("virus_detections_total", 'signature="Test.EICAR.NDB.UNOFFICIAL"') == 2, text
    assert value("virus_scans_within_total", 'seconds="+Inf"') == 3, text


def test_check_reports_bad_keys(tmp_path):
    conf = tmp_path / "sluice.conf"
    conf.write_text(harness.render_config({
        "server": {"listen": "127.0.0.1:%d" % harness.free_port()},
        "upstream": {"servers": "127.0.0.1:25"},
        "chain": {"plugins": "virus"},
        "plugin virus": {"path": "virus", "action": "drop", "max_scan_size": "lots",
                         "reject_text": "%s %s", "backend": "clamd"},
    }))
    r = harness.run_sluice(["--check", "-c", str(conf)])
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    lines = conf.read_text().splitlines()
    for key in ("action", "max_scan_size", "reject_text", "backend"):
        ln = next(i + 1 for i, t in enumerate(lines) if t.startswith(key + " "))
        assert re.search(r"%s:%d: .*%s" % (re.escape(str(conf)), ln, key), out), (key, out)


def test_check_accepts_good_config(db, tmp_path):
    conf = tmp_path / "sluice.conf"
    conf.write_text(harness.render_config({
        "server": {"listen": "127.0.0.1:%d" % harness.free_port()},
        "upstream": {"servers": "127.0.0.1:25"},
        "chain": {"plugins": "virus"},
        "plugin virus": {"path": "virus", "database": db, "action": "tag",
                         "limit_action": "reject", "max_scan_size": "10M",
                         "max_scan_time": "5s", "scanned_header": "yes"},
    }))
    r = harness.run_sluice(["--check", "-c", str(conf)])
    assert r.returncode == 0, r.stdout + r.stderr
