# SPDX-License-Identifier: GPL-2.0-or-later
"""The dashboard page in headless Chromium (Debian's chromium).

tests/stats_driver generates a steady flow of accepted and rejected mail
(with plugin latencies, rule hits and decision records). Chromium loads the
page twice, a few seconds apart, each time with a virtual-time budget long
enough for several 2 s polls, and dumps the rendered DOM: the numbers shown
must be live and must have moved between the two loads. A PNG screenshot of
each load is left in the build directory for a human look.
"""

import html
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

BUILD = os.environ.get("SLUICE_BUILD_DIR", "build")
DRIVER = os.path.join(BUILD, "tests", "stats_driver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="chromium not installed (apt-get install chromium)")


class Driver:
    def __init__(self):
        self.proc = subprocess.Popen([DRIVER, "127.0.0.1:0"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        m = re.match(r"listening (\d+)$", self._line())
        assert m
        self.port = int(m.group(1))

    def _line(self, timeout=10):
        out = []
        t = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        assert out, "stats_driver did not answer"
        return out[0].strip()

    def do(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        assert self._line() == "ok", cmd

    def stop(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()
        return self.proc.returncode


def chromium(url, *mode, budget_ms=5000):
    """Run headless Chromium once; returns stdout. Bounded in time."""
    with tempfile.TemporaryDirectory(prefix="stats-chromium-") as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-extensions",
               "--user-data-dir=" + profile, "--window-size=1280,1400",
               "--virtual-time-budget=%d" % budget_ms] + list(mode) + [url]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
        assert p.returncode == 0, p.stderr[-2000:]
        return p.stdout


def by_id(dom, ident):
    m = re.search(r'id="%s"[^>]*>([^<]*)<' % re.escape(ident), dom)
    assert m, "no #%s in the rendered page" % ident
    return html.unescape(m.group(1))


def table_rows(dom, ident):
    m = re.search(r'<table id="%s">(.*?)</table>' % ident, dom, re.S)
    assert m, ident
    body = m.group(1).split("<tbody>", 1)[1]
    rows = []
    for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)
        rows.append([html.unescape(re.sub(r"<[^>]+>", "", c)) for c in cells])
    return rows


@pytest.fixture
def drv():
    d = Driver()
    yield d
    assert d.stop() == 0


def test_dashboard_numbers_move(drv):
    drv.do("auto 200")
    url = "http://127.0.0.1:%d/" % drv.port

    dom1 = chromium(url, "--dump-dom")
    time.sleep(3)
    dom2 = chromium(url, "--dump-dom")

    for dom in (dom1, dom2):
        assert by_id(dom, "status") == "live"
        assert int(by_id(dom, "polls")) >= 2     # it polls, not just loads once
        assert by_id(dom, "version").startswith("v")
        assert float(by_id(dom, "rate-all")) >= 0
    # The page shows live figures: they moved between the two loads.
    for ident in ("msg-total", "conn-total", "total-accepted", "total-rejected", "rcpt-total"):
        a, b = int(by_id(dom1, ident)), int(by_id(dom2, ident))
        assert b > a > 0, "%s did not move: %d then %d" % (ident, a, b)
    # Messages/s is computed from successive polls while ~200/s flow.
    assert max(float(by_id(d, "rate-all")) for d in (dom1, dom2)) > 0

    plugins = table_rows(dom2, "plugins")
    assert plugins[0][0] == "spam" and int(plugins[0][1]) > 0
    p50, p99 = float(plugins[0][3]), float(plugins[0][4])
    assert 0 < p50 <= p99 <= 25.0   # ms; the driver's latencies are 1..19 ms
    rules = {r[1]: int(r[2]) for r in table_rows(dom2, "rules")}
    assert {"BAYES_99", "URIBL_BLACK", "MISSING_DATE", "HTML_ONLY"} <= set(rules)
    decisions = table_rows(dom2, "decisions")
    assert len(decisions) == 25 and decisions[0][1].startswith("auto")
    assert {r[5] for r in decisions} == {"accepted", "rejected"}

    # A decision whose text is HTML is shown as text, never parsed.
    drv.do("auto 0")
    drv.do('decision {"sid":"xss","verdict":"rejected","plugin":"spam",'
           '"reason":"<img src=x id=pwned onerror=alert(1)>"}')
    dom3 = chromium(url, "--dump-dom", budget_ms=3000)
    assert 'id="pwned"' not in dom3
    rows = table_rows(dom3, "decisions")
    assert ["xss", "<img src=x id=pwned onerror=alert(1)>"] == [
        [r[1], r[7]] for r in rows if r[1] == "xss"][0]


def test_dashboard_screenshots(drv):
    drv.do("auto 200")
    url = "http://127.0.0.1:%d/" % drv.port
    shots = []
    for i in (1, 2):
        path = os.path.join(BUILD, "stats-dashboard-%d.png" % i)
        if os.path.exists(path):
            os.unlink(path)
        chromium(url, "--screenshot=" + path)
        with open(path, "rb") as f:
            data = f.read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000, path
        shots.append(data)
        time.sleep(2.5)
    # The numbers on screen changed, so the pictures differ.
    assert shots[0] != shots[1]
