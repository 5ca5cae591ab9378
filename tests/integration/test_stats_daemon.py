# SPDX-License-Identifier: GPL-2.0-or-later
"""The stats endpoint of the real daemon under a mixed SMTP load.

Mail goes through sluice into a recording upstream: the in-process fake
(whose end-of-data answer we script per message: accept, reject, tempfail)
and Postfix's smtp-sink. The client side records every reply it heard. The
scrape must pass `promtool check metrics` silently and its figures must
equal what was sent, heard and relayed; /stats must say the same.
"""

import http.client
import json
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import tempfile
import time

import pytest

import harness

# ---- helpers ------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, "bad sample line %r" % line
        samples[(m.group(1), frozenset(_LABEL.findall(m.group(3) or "")))] = float(m.group(4))
    return samples


def val(samples, metric, /, **labels):
    return samples[(metric, frozenset(labels.items()))]


def http_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def scrape(port):
    st, text = http_get(port, "/metrics")
    assert st == 200
    return text, parse_metrics(text)


def promtool_clean(text):
    if not shutil.which("promtool"):
        pytest.skip("promtool (Debian package prometheus) not installed")
    p = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                       capture_output=True, timeout=30)
    return p.returncode == 0 and (p.stdout + p.stderr).strip() == "", p.stdout + p.stderr


def wait_until(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


class RecordingSMTP(smtplib.SMTP):
    """smtplib client that keeps every reply code it read (greeting included)."""

    def __init__(self, codes, *a, **kw):
        self.codes = codes
        super().__init__(*a, **kw)

    def getreply(self):
        code, msg = super().getreply()
        self.codes.append(code)
        return code, msg


def classes(codes):
    out = {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
    for c in codes:
        if 200 <= c <= 599:
            out["%dxx" % (c // 100)] += 1
    return out


def send(port, subject, rcpts, body_len, heard, ca=None):
    """One session, one message. Returns the final reply code of the message."""
    head = ("From: a@example.com\r\nSubject: %s\r\n\r\n" % subject).encode()
    body = b"".join(b"x" * 68 + b"\r\n" for _ in range(body_len // 70 + 1))
    msg = head + body[:max(body_len - len(head) - 2, 0)] + b"\r\n"
    with RecordingSMTP(heard, "127.0.0.1", port, local_hostname="client.test",
                       timeout=15) as s:
        s.ehlo()
        if ca:
            s.starttls(context=ssl.create_default_context(cafile=ca))
            s.ehlo()
        try:
            s.sendmail("a@example.com", rcpts, msg)
            code = 250
        except smtplib.SMTPDataError as e:
            code = e.smtp_code
    return code, len(msg)


# ---- mixed load through the fake upstream -------------------------------------

def eod_by_subject(_sess, msg):
    if b"Subject: reject" in msg.data:
        return "554 5.7.1 rejected by the upstream"
    if b"Subject: tempfail" in msg.data:
        return "451 4.3.0 try again later"
    return None


@pytest.fixture
def stats_port():
    return harness.free_port()


def test_counters_equal_what_was_sent(fake_factory, sluice_factory, certs, stats_port):
    fake = fake_factory(faults={"EOD": eod_by_subject})
    sl = sluice_factory(fake.port, stats={"listen": "127.0.0.1:%d" % stats_port},
                        server={"tls_cert_file": certs["cert"], "tls_key_file": certs["key"]})
    assert harness.wait_port(stats_port)
    _, before = scrape(stats_port)
    assert val(before, "sluice_transactions_total", verdict="accepted") == 0

    # (subject, recipients, body length, TLS, want final code, want verdict)
    load = [("ok1", 2, 100, False, 250, "accepted"),
            ("ok2", 1, 3000, False, 250, "accepted"),
            ("ok3", 3, 20000, False, 250, "accepted"),
            ("reject1", 1, 500, False, 554, "rejected"),
            ("reject2", 2, 500, False, 554, "rejected"),
            ("tempfail1", 1, 800, False, 451, "tempfailed"),
            ("tls1", 1, 1500, True, 250, "accepted"),
            ("tls2", 2, 70000, True, 250, "accepted")]
    heard = []
    sizes = []
    for subject, nrcpt, blen, tls, want_code, _ in load:
        rcpts = ["r%d@example.net" % i for i in range(nrcpt)]
        code, size = send(sl.port, subject, rcpts, blen, heard, certs["ca"] if tls else None)
        assert code == want_code, subject
        sizes.append(size)

    # A client that asks for TLS and then sends garbage: one failed handshake.
    with harness.Client(sl.port) as c:
        heard.append(c.greeting().code)
        heard.append(c.ehlo().code)
        r = c.cmd("STARTTLS")
        heard.append(r.code)
        c.send(b"\x16\x03\x01\x00\x05garbage-not-tls\r\n" * 4)
        assert c.is_closed(5)

    n_sessions = len(load) + 1
    assert wait_until(lambda: val(scrape(stats_port)[1], "sluice_connections_current") == 0)
    sl.wait_transactions(len(load))
    text, s = scrape(stats_port)
    ok, out = promtool_clean(text)
    assert ok, out

    verdicts = {}
    for *_, v in load:
        verdicts[v] = verdicts.get(v, 0) + 1
    for v in ("accepted", "rejected", "tempfailed", "discarded", "quarantined", "aborted"):
        assert val(s, "sluice_transactions_total", verdict=v) == verdicts.get(v, 0), v
        assert val(s, "sluice_messages_total", verdict=v) == verdicts.get(v, 0), v
    assert val(s, "sluice_recipients_total") == sum(x[1] for x in load)
    assert val(s, "sluice_connections_total") == n_sessions
    assert val(s, "sluice_tls_handshakes_total", result="success") == 2
    assert val(s, "sluice_tls_handshakes_total", result="failure") == 1

    # Every reply the clients heard, by class.
    want_replies = classes(heard)
    for cls, n in want_replies.items():
        got = val(s, "sluice_smtp_replies_total", **{"class": cls})
        assert got == n, (cls, got, n, heard)

    # What the upstream answered to MAIL/RCPT/DATA/end-of-data.
    up = {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
    for _, nrcpt, _, _, code, _ in load:
        up["2xx"] += 1 + nrcpt
        up["3xx"] += 1
        up["%dxx" % (code // 100)] += 1
    for cls, n in up.items():
        assert val(s, "sluice_upstream_replies_total", **{"class": cls}) == n, cls
    assert sum(val(s, "sluice_upstream_errors_total", kind=k)
               for k in ("connect", "protocol", "timeout", "lost", "tls")) == 0

    # Sizes: the histogram counts every message once and sums their bytes.
    assert val(s, "sluice_message_size_bytes_count") == len(load)
    assert val(s, "sluice_message_size_bytes_bucket", le="+Inf") == len(load)
    assert val(s, "sluice_message_size_bytes_sum") == val(s, "sluice_received_bytes_total")
    assert abs(val(s, "sluice_received_bytes_total") - sum(sizes)) <= 5 * len(load)
    assert val(s, "sluice_message_size_bytes_bucket", le="1024") == 4
    assert val(s, "sluice_message_size_bytes_bucket", le="65536") == 7
    accepted_bytes = sum(len(m.data) for m in fake.messages)
    assert val(s, "sluice_forwarded_bytes_total") >= accepted_bytes
    assert val(s, "sluice_transaction_duration_seconds_count") == len(load)
    assert 0 < val(s, "sluice_transaction_duration_seconds_sum") < 60

    # /stats: the same figures.
    st, body = http_get(stats_port, "/stats")
    j = json.loads(body)
    assert j["transactions"] == {v: val(s, "sluice_transactions_total", verdict=v)
                                 for v in j["transactions"]}
    assert j["smtp_replies"] == {c: val(s, "sluice_smtp_replies_total", **{"class": c})
                                 for c in j["smtp_replies"]}
    assert j["recipients"] == val(s, "sluice_recipients_total")
    assert j["connections"]["total"] == val(s, "sluice_connections_total")
    assert j["message_size_bytes"]["count"] == len(load)

    # The process facts.
    assert val(s, "sluice_build_info", version=j["version"]) == 1
    assert abs(val(s, "sluice_start_time_seconds") - time.time()) < 120
    st, body = http_get(stats_port, "/healthz")
    assert (st, body) == (200, "ok\n")
    assert wait_until(lambda: http_get(stats_port, "/readyz")[0] == 200, 15), \
        http_get(stats_port, "/readyz")


def test_reload_and_readiness(fake, sluice_factory, stats_port):
    import signal
    sl = sluice_factory(fake.port, stats={"listen": "127.0.0.1:%d" % stats_port})
    assert harness.wait_port(stats_port)
    assert wait_until(lambda: http_get(stats_port, "/readyz")[0] == 200, 15)
    sl.signal(signal.SIGHUP)
    assert wait_until(lambda: val(scrape(stats_port)[1], "sluice_config_reloads_total",
                                  result="success") == 1)
    _, s = scrape(stats_port)
    assert val(s, "sluice_config_last_reload_success") == 1
    # A broken config is refused on reload: counted, and the gauge drops.
    with open(sl.config_path, "a") as f:
        f.write("\n[server]\nno_such_key = 1\n")
    sl.signal(signal.SIGHUP)
    assert wait_until(lambda: val(scrape(stats_port)[1], "sluice_config_reloads_total",
                                  result="failure") == 1)
    _, s = scrape(stats_port)
    assert val(s, "sluice_config_last_reload_success") == 0
    assert sl.alive()


def test_upstream_down_not_ready(sluice_factory, stats_port):
    dead = harness.free_port()   # nobody listens there
    sl = sluice_factory(dead, stats={"listen": "127.0.0.1:%d" % stats_port})
    assert harness.wait_port(stats_port)
    # The client hears a 4xx when it tries; the error is counted.
    with harness.Client(sl.port) as c:
        c.greeting()
        c.ehlo()
        r = c.cmd("MAIL FROM:<a@example.com>")
        assert r.code // 100 == 4, r
    assert wait_until(lambda: val(scrape(stats_port)[1], "sluice_upstream_errors_total",
                                  kind="connect") >= 1)
    st, body = http_get(stats_port, "/readyz")
    assert (st, body) == (503, "not ready: upstream unreachable\n")


# ---- a real recording upstream: Postfix's smtp-sink ---------------------------

def test_smtp_sink_counts(sluice_factory, stats_port):
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not os.path.exists(sink):
        pytest.skip("smtp-sink (Debian package postfix) not installed")
    if os.geteuid() != 0:
        pytest.skip("smtp-sink -u needs root")
    # smtp-sink writes as nobody: pytest's tmp_path (under a 0700 directory)
    # is out of its reach, so the dump goes to a directory of its own.
    dump = tempfile.mkdtemp(prefix="sluice-stats-sink-")
    os.chmod(dump, 0o777)
    port = harness.free_port()
    proc = subprocess.Popen([sink, "-u", "nobody", "-d", dump + "/%M.", "127.0.0.1:%d" % port,
                             "64"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert harness.wait_port(port), "smtp-sink did not start"
        sl = sluice_factory(port, stats={"listen": "127.0.0.1:%d" % stats_port})
        assert harness.wait_port(stats_port)
        n, rcpts = 12, 0
        for i in range(n):
            heard = []
            rc = ["u%d@example.net" % k for k in range(1 + i % 3)]
            rcpts += len(rc)
            assert send(sl.port, "m%d" % i, rc, 200 + 100 * i, heard)[0] == 250
        assert wait_until(lambda: len(os.listdir(dump)) == n), os.listdir(dump)
        sl.wait_transactions(n)
        text, s = scrape(stats_port)
        ok, out = promtool_clean(text)
        assert ok, out
        assert val(s, "sluice_transactions_total", verdict="accepted") == len(os.listdir(dump))
        assert val(s, "sluice_recipients_total") == rcpts
        got_rcpts = 0
        for name in os.listdir(dump):
            with open(os.path.join(dump, name), "rb") as f:
                got_rcpts += sum(1 for ln in f if ln.startswith(b"X-Rcpt-Args:"))
        assert got_rcpts == rcpts
        assert val(s, "sluice_upstream_replies_total", **{"class": "2xx"}) == n * 2 + rcpts
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stderr.close()
        shutil.rmtree(dump, ignore_errors=True)


# ---- plugin timeouts and the circuit breaker on /metrics -------------------------

def test_plugin_timeouts_and_breaker(fake, sluice_factory, stats_port):
    """A plugin that sleeps past its timeout: each message is tempfailed by
    the failure policy, and /metrics counts the timeouts, the trip of the
    breaker and its state; the scrape stays promtool-clean."""
    build = os.environ.get("SLUICE_BUILD_DIR", "")
    so = os.path.join(build, "tests", "plugins", "testplug_blocking.so")
    if not os.path.exists(so):
        pytest.skip("test plugins not built")
    conf = {"chain": {"plugins": "slow"},
            "plugin slow": {"path": so, "sleep_ms": "400", "timeout": "100ms",
                            "failure": "tempfail", "breaker_failures": "2",
                            "breaker_window": "60s", "breaker_cooldown": "1h"}}
    sl = sluice_factory(fake.port, stats={"listen": "127.0.0.1:%d" % stats_port},
                        extra_sections=conf)
    assert harness.wait_port(stats_port)
    heard = []
    for i in range(2):
        code, _ = send(sl.port, "slow%d" % i, ["r@example.net"], 200, heard)
        assert code == 451, i
    sl.wait_transactions(2)
    # The breaker is open now: the policy (tempfail) applies in every phase
    # the plugin hooks without calling it; testplug hooks CONNECT too, so
    # the next clients hear 421 4.3.0 right away.
    for i in range(2):
        with pytest.raises(smtplib.SMTPConnectError) as e:
            send(sl.port, "open%d" % i, ["r@example.net"], 200, heard)
        assert e.value.smtp_code == 421
    text, s = scrape(stats_port)
    ok, out = promtool_clean(text)
    assert ok, out
    # Two calls timed out; then the breaker opened and the policy applied
    # without calling the plugin.
    assert val(s, "sluice_plugin_timeouts_total", plugin="slow") == 2
    assert val(s, "sluice_plugin_circuit_trips_total", plugin="slow") == 1
    assert val(s, "sluice_plugin_circuit_state", plugin="slow") == 1
    assert val(s, "sluice_transactions_total", verdict="tempfailed") == 2
    assert val(s, "sluice_connections_total") == 4
    assert fake.messages == []
    st, body = http_get(stats_port, "/stats")
    assert st == 200
    decisions = json.loads(body)["decisions"]
    assert [d["verdict"] for d in decisions[:2]] == ["tempfailed", "tempfailed"]
