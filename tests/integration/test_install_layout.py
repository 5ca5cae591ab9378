# SPDX-License-Identifier: GPL-2.0-or-later
"""cmake --install: the layout an admin and a packager get.

`cmake --install BUILD --prefix /usr` into a DESTDIR must give the daemon in
sbin, the plugins, tools, SDK, man pages and systemd unit in their places,
and the configuration under /etc (not /usr/etc) with paths that name the
installed rule files. The installed daemon then checks the installed
configuration with the installed plugins, and relays a message through
installed plugins and rules. A second install with another prefix shows the
prefix is honoured at install time.
"""

import glob
import os
import re
import subprocess

import harness

BUILD = os.environ.get("SLUICE_BUILD_DIR", "build")

TOOLS = ("sluice-rules-lint", "sluice-spam-learn", "sluice-rewrite-lint")
PLUGINS = ("access", "dkim", "dnsbl", "greylist", "mailauth", "milter", "ratelimit",
           "rewrite", "spam", "virus")
RULES = ("spam.rules", "spam-scores.rules", "rewrite.rules", "ratelimit.rules",
         "dnsbl.lists", "access/client.map", "access/helo.map", "access/sender.map",
         "access/recipient.map")
MAN = ("man8/sluice.8", "man8/sluice-quarantine.8", "man5/sluice.conf.5", "man5/sluice-rules.5", "man3/sluice-plugin.3",
       "man1/sluice-rules-lint.1", "man1/sluice-spam-learn.1", "man1/sluice-rewrite-lint.1")


# As the harness runs a sanitizer build of the daemon: leaks fail the run,
# with the suite's suppressions.
SLUICE_ENV = dict(os.environ)
SLUICE_ENV.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
SLUICE_ENV.setdefault("LSAN_OPTIONS",
                      "suppressions=" + os.path.join(harness.SRC_DIR, "tests", "lsan.supp"))


def install(destdir, prefix):
    env = dict(os.environ, DESTDIR=str(destdir))
    r = subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def tree(destdir):
    root = str(destdir)
    out = set()
    for d, _dirs, files in os.walk(root):
        for f in files:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out


def plugin_dir(destdir, prefix):
    found = glob.glob(os.path.join(str(destdir), prefix.lstrip("/"), "lib*", "**",
                                   "sluice", "plugins"), recursive=True)
    assert len(found) == 1, found
    return found[0]


def installed_config(destdir, etc):
    """The installed sluice.conf with its /etc paths moved into DESTDIR (the
    daemon runs from the DESTDIR tree, not from /)."""
    path = os.path.join(str(destdir), etc.lstrip("/"), "sluice", "sluice.conf")
    with open(path) as f:
        text = f.read()
    return path, text, text.replace("= %s/sluice/" % etc,
                                    "= %s%s/sluice/" % (destdir, etc))


def test_install_prefix_usr(tmp_path, fake):
    dest = tmp_path / "dest"
    install(dest, "/usr")
    files = tree(dest)

    assert "usr/sbin/sluice" in files
    assert "usr/sbin/sluice-quarantine" in files
    for t in TOOLS:
        assert "usr/bin/" + t in files, t
    pdir = plugin_dir(dest, "/usr")
    assert sorted(os.listdir(pdir)) == sorted(p + ".so" for p in PLUGINS)
    assert "usr/include/sluice/plugin.h" in files
    assert any(re.match(r"usr/lib/.*pkgconfig/sluice-plugin\.pc$", f) for f in files)
    assert "usr/share/doc/sluice/examples/rcptblock.c" in files
    for r in RULES:
        assert "etc/sluice/rules/" + r in files, r
    assert "etc/sluice/sluice.conf" in files
    assert "etc/sluice/dkim/signing.table" in files
    assert "lib/systemd/system/sluice.service" in files
    for m in MAN:
        assert "usr/share/man/" + m in files, m
    # With the prefix /usr the configuration is in /etc, never /usr/etc.
    assert not [f for f in files if f.startswith("usr/etc/")]

    # Every path the installed configuration names is an installed file.
    conf, text, moved = installed_config(dest, "/etc")
    assert not re.search(r"^\w+ = (rules|contrib)/", text, re.M), "relative path left"
    named = re.findall(r"^\w+ = (/etc/sluice/\S+)", text, re.M)
    assert "/etc/sluice/rules/spam.rules" in named
    for p in named:
        assert p.lstrip("/") in files, p

    sluice = str(dest / "usr/sbin/sluice")
    r = subprocess.run([sluice, "--version"], capture_output=True, text=True, timeout=30,
                       env=SLUICE_ENV)
    assert r.returncode == 0 and r.stdout.startswith("sluice "), r.stdout + r.stderr

    moved_path = tmp_path / "sluice.conf"
    moved_path.write_text(moved)
    r = subprocess.run([sluice, "--check", "-c", str(moved_path), "--plugin-dir", pdir],
                       capture_output=True, text=True, timeout=60, env=SLUICE_ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"configuration OK \(\d+ plugin instances?\)", r.stdout), r.stdout

    # A short run: the installed daemon with the installed spam and rewrite
    # plugins and rules relays a message (virus and DKIM need a signature
    # database and keys this machine may lack).
    smoke = re.sub(r"^plugins = .*$", "plugins = spam, rewrite", moved, count=1, flags=re.M)
    smoke_path = tmp_path / "smoke.conf"
    smoke_path.write_text(smoke)
    port = harness.free_port()
    log_path = tmp_path / "sluice.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sluice, "-c", str(smoke_path), "--plugin-dir", pdir,
                                 "--listen", "127.0.0.1:%d" % port,
                                 "--upstream", "127.0.0.1:%d" % fake.port,
                                 "--stats-listen", "no"],
                                stdout=subprocess.DEVNULL, stderr=log, cwd=str(tmp_path),
                                env=SLUICE_ENV)
    try:
        assert harness.wait_port(port, timeout=20), "installed sluice did not listen"
        refused = harness.smtp_send(port, msg=b"Subject: installed\r\n\r\nhello\r\n")
        assert refused == {}
        msgs = fake.wait_messages(1)
        assert b"Subject: installed" in msgs[0].data
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log_path.read_text()
    assert "sluice stopped" in log_path.read_text()


def test_install_other_prefix(tmp_path):
    """Another prefix, chosen at install time: everything under it, the
    configuration in PREFIX/etc (GNUInstallDirs: /etc/opt/X for /opt/X)."""
    dest = tmp_path / "dest"
    install(dest, "/opt/sluice")
    files = tree(dest)
    assert "opt/sluice/sbin/sluice" in files
    assert "etc/opt/sluice/sluice/sluice.conf" in files
    assert "etc/opt/sluice/sluice/rules/spam.rules" in files
    assert "opt/sluice/lib/systemd/system/sluice.service" in files
    assert "opt/sluice/share/man/man8/sluice.8" in files
    outside = [f for f in files if not f.startswith(("opt/sluice/", "etc/opt/sluice/"))]
    assert not outside
    _conf, text, _moved = installed_config(dest, "/etc/opt/sluice")
    assert "rules = /etc/opt/sluice/sluice/rules/spam.rules" in text

    dest2 = tmp_path / "dest2"
    install(dest2, "/usr/local")
    files = tree(dest2)
    assert "usr/local/etc/sluice/sluice.conf" in files
    assert "usr/local/sbin/sluice" in files
    assert "usr/local/lib/systemd/system/sluice.service" in files
