# SPDX-License-Identifier: GPL-2.0-or-later
"""The stats HTTP endpoint, driven by tests/stats_driver (scripted events).

Checks the HTTP surface exactly (codes, headers, methods), that a scrape
passes `promtool check metrics` with no output at all, that the figures are
the events we fired, and that /stats (JSON) says the same as /metrics.
"""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

BUILD = os.environ.get("SLUICE_BUILD_DIR", "build")
DRIVER = os.path.join(BUILD, "tests", "stats_driver")


# ---- helpers (shared in spirit with the other test_stats_* files) ---------

class Driver:
    """stats_driver as a child: one command per line, one "ok" per command."""

    def __init__(self, listen="127.0.0.1:0"):
        if not os.path.exists(DRIVER):
            pytest.fail("stats_driver not built at %s" % DRIVER)
        self.proc = subprocess.Popen([DRIVER, listen], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        first = self._line(10)
        m = re.match(r"listening (\d+)$", first)
        assert m, "driver said %r, stderr: %s" % (first, self.proc.stderr.read())
        self.port = int(m.group(1))

    def _line(self, timeout):
        out = []
        t = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()))
        t.daemon = True
        t.start()
        t.join(timeout)
        assert out, "driver did not answer within %s s" % timeout
        return out[0].strip()

    def do(self, *cmds):
        for c in cmds:
            self.proc.stdin.write(c + "\n")
            self.proc.stdin.flush()
            got = self._line(10)
            assert got == "ok", "%s -> %s" % (c, got)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(5)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stdin.close()
        self.proc.stderr.close()
        return self.proc.returncode, err


@pytest.fixture
def drv():
    d = Driver()
    yield d
    rc, err = d.stop()
    assert rc == 0, err
    assert "ERROR: AddressSanitizer" not in err and "runtime error" not in err, err


def request(port, method, path, host="127.0.0.1", body=None, headers=None):
    c = http.client.HTTPConnection(host, port, timeout=5)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def get(port, path):
    st, hdr, body = request(port, "GET", path)
    assert st == 200, (path, st, body)
    return hdr, body.decode()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, frozenset(labels)): float} and {name: type} of an exposition."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, "bad sample line %r" % line
        labels = frozenset(_LABEL.findall(m.group(3) or ""))
        key = (m.group(1), labels)
        assert key not in samples, "duplicate series %r" % line
        samples[key] = float(m.group(4))
    return samples, types


def val(samples, metric, /, **labels):
    return samples[(metric, frozenset(labels.items()))]


def promtool_check(text):
    if not shutil.which("promtool"):
        pytest.skip("promtool (Debian package prometheus) not installed")
    p = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                       capture_output=True, timeout=30)
    return p.returncode, (p.stdout + p.stderr).strip()


# ---- the mixed load every figure is checked against ------------------------

LOAD = [
    "conn open", "conn open", "conn open", "conn close", "conn refused",
    "tls ok", "tls ok", "tls fail",
    "reply 220", "reply 250", "reply 250", "reply 354", "reply 451", "reply 550",
    "upreply 250", "upreply 250", "upreply 354", "upreply 554",
    "uperr connect", "uperr lost", "timeout command", "timeout plugin", "timeout plugin",
    "error",
    "tx accepted 2 1000 1100 0.2",
    "tx accepted 1 300000 300100 1.5",
    "tx rejected 1 5000 0 0.01",
    "tx tempfailed 3 0 0 0.003",
    "tx quarantined 1 70000 0 0.7",
    "tx aborted 0 0 0 400",
    "reload ok", "reload fail",
    "plugin spam verdict continue", "plugin spam verdict continue", "plugin spam verdict reject",
    "plugin spam latency data 0.004", "plugin spam latency data 0.3",
    "plugin spam latency rcpt 0.0002", "plugin spam timeout",
    "plugin virus verdict quarantine", "plugin virus error", "plugin virus breaker open",
    "plugin virus breaker half_open", "plugin virus breaker open",
    "counter spam_rule_hits rule 3 BAYES_99 4", "counter spam_rule_hits rule 3 URIBL 1",
    "counter spam_rule_hits rule 3 MISSING_DATE 2", "counter spam_rule_hits rule 3 FOURTH 5",
    "counter spam_rule_hits rule 3 FIFTH 1",
    "counter virus_names name 50 Eicar-Test-Signature 1",
    "counter dkim_results result 10 pass 7", "counter dkim_results result 10 fail 1",
    "counter dkim_results result 10 none 2",
    'decision {"sid":"s1","verdict":"accepted","plugin":null,"reason":"","rcpts":["a@x.example"]}',
    'decision {"sid":"s2","verdict":"rejected","plugin":"spam","reason":"score 12 > 6",'
    '"symbols":[{"name":"BAYES_99","score":5.5}],"time_ms":{"spam":4.0}}',
]


def test_promtool_and_figures(drv):
    drv.do(*LOAD)
    _, text = get(drv.port, "/metrics")
    rc, out = promtool_check(text)
    assert (rc, out) == (0, ""), text

    s, types = parse_metrics(text)
    want = [
        (("sluice_connections_current",), 2),
        (("sluice_connections_total",), 3),
        (("sluice_connections_refused_total",), 1),
        (("sluice_tls_handshakes_total", "result", "success"), 2),
        (("sluice_tls_handshakes_total", "result", "failure"), 1),
        (("sluice_smtp_replies_total", "class", "2xx"), 3),
        (("sluice_smtp_replies_total", "class", "3xx"), 1),
        (("sluice_smtp_replies_total", "class", "4xx"), 1),
        (("sluice_smtp_replies_total", "class", "5xx"), 1),
        (("sluice_upstream_replies_total", "class", "2xx"), 2),
        (("sluice_upstream_replies_total", "class", "3xx"), 1),
        (("sluice_upstream_replies_total", "class", "5xx"), 1),
        (("sluice_upstream_errors_total", "kind", "connect"), 1),
        (("sluice_upstream_errors_total", "kind", "lost"), 1),
        (("sluice_upstream_errors_total", "kind", "tls"), 0),
        (("sluice_timeouts_total", "kind", "plugin"), 2),
        (("sluice_errors_total",), 1),
        (("sluice_transactions_total", "verdict", "accepted"), 2),
        (("sluice_transactions_total", "verdict", "tempfailed"), 1),
        (("sluice_transactions_total", "verdict", "aborted"), 1),
        (("sluice_messages_total", "verdict", "tempfailed"), 0),
        (("sluice_messages_total", "verdict", "quarantined"), 1),
        (("sluice_recipients_total",), 8),
        (("sluice_received_bytes_total",), 376000),
        (("sluice_forwarded_bytes_total",), 301200),
        (("sluice_config_reloads_total", "result", "success"), 1),
        (("sluice_config_reloads_total", "result", "failure"), 1),
        (("sluice_config_last_reload_success",), 0),
        (("sluice_ready",), 0),
        (("sluice_plugin_verdicts_total", "plugin", "spam", "verdict", "continue"), 2),
        (("sluice_plugin_verdicts_total", "plugin", "spam", "verdict", "reject"), 1),
        (("sluice_plugin_verdicts_total", "plugin", "virus", "verdict", "quarantine"), 1),
        (("sluice_plugin_timeouts_total", "plugin", "spam"), 1),
        (("sluice_plugin_errors_total", "plugin", "virus"), 1),
        (("sluice_plugin_circuit_state", "plugin", "virus"), 1),
        (("sluice_plugin_circuit_trips_total", "plugin", "virus"), 2),
        (("sluice_spam_rule_hits_total", "rule", "BAYES_99"), 4),
        (("sluice_spam_rule_hits_total", "rule", "other"), 6),  # bound 3: FOURTH + FIFTH
        (("sluice_virus_names_total", "name", "Eicar-Test-Signature"), 1),
        (("sluice_dkim_results_total", "result", "pass"), 7),
    ]
    for spec, want_v in want:
        name, kv = spec[0], dict(zip(spec[1::2], spec[2::2]))
        got = val(s, name, **kv)
        assert got == want_v, "%s%s: got %s, want %s" % (name, kv, got, want_v)
    assert ("sluice_spam_rule_hits_total", frozenset({("rule", "FOURTH")})) not in s

    # Histograms: cumulative, +Inf == _count, sums exact.
    def hist(name, **kv):
        buckets = sorted(((float(dict(lab)["le"]), v) for (n, lab), v in s.items()
                          if n == name + "_bucket" and
                          all(dict(lab).get(k) == x for k, x in kv.items())))
        return buckets, val(s, name + "_sum", **kv), val(s, name + "_count", **kv)

    b, total, count = hist("sluice_message_size_bytes")
    assert count == 4 and total == 376000 and b[-1] == (float("inf"), 4)
    assert [c for _, c in b] == sorted(c for _, c in b)
    assert dict(b)[1024] == 1 and dict(b)[16384] == 2 and dict(b)[262144] == 3
    b, total, count = hist("sluice_transaction_duration_seconds")
    assert count == 6 and total == pytest.approx(402.413) and dict(b)[300] == 5
    b, total, count = hist("sluice_plugin_duration_seconds", plugin="spam", phase="data")
    assert count == 2 and total == pytest.approx(0.304) and dict(b)[0.005] == 1
    assert types["sluice_plugin_duration_seconds"] == "histogram"
    assert types["sluice_connections_current"] == "gauge"
    # Every counter ends in _total.
    assert all(n.endswith("_total") for n, t in types.items() if t == "counter")

    # Uptime moves, the start time does not.
    s2, _ = parse_metrics(get(drv.port, "/metrics")[1])
    assert val(s2, "sluice_start_time_seconds") == val(s, "sluice_start_time_seconds")
    assert abs(val(s, "sluice_start_time_seconds") - time.time()) < 60


def test_json_matches_metrics(drv):
    drv.do(*LOAD)
    # Quiet state: both documents describe the same numbers.
    s, _ = parse_metrics(get(drv.port, "/metrics")[1])
    hdr, body = get(drv.port, "/stats")
    assert hdr["content-type"] == "application/json"
    j = json.loads(body)

    pairs = [
        (j["connections"]["current"], val(s, "sluice_connections_current")),
        (j["connections"]["total"], val(s, "sluice_connections_total")),
        (j["connections"]["refused"], val(s, "sluice_connections_refused_total")),
        (j["recipients"], val(s, "sluice_recipients_total")),
        (j["received_bytes"], val(s, "sluice_received_bytes_total")),
        (j["forwarded_bytes"], val(s, "sluice_forwarded_bytes_total")),
        (j["errors"], val(s, "sluice_errors_total")),
        (j["config_last_reload_success"], val(s, "sluice_config_last_reload_success")),
        (j["message_size_bytes"]["sum"], val(s, "sluice_message_size_bytes_sum")),
        (j["transaction_duration_seconds"]["count"],
         val(s, "sluice_transaction_duration_seconds_count")),
    ]
    for group, metric, label in [("transactions", "sluice_transactions_total", "verdict"),
                                 ("messages", "sluice_messages_total", "verdict"),
                                 ("smtp_replies", "sluice_smtp_replies_total", "class"),
                                 ("upstream_replies", "sluice_upstream_replies_total", "class"),
                                 ("upstream_errors", "sluice_upstream_errors_total", "kind"),
                                 ("timeouts", "sluice_timeouts_total", "kind"),
                                 ("tls_handshakes", "sluice_tls_handshakes_total", "result"),
                                 ("config_reloads", "sluice_config_reloads_total", "result")]:
        assert j[group], group
        for k, v in j[group].items():
            pairs.append((v, val(s, metric, **{label: k})))
    for b in j["message_size_bytes"]["buckets"]:
        pairs.append((b["count"], val(s, "sluice_message_size_bytes_bucket", le=b["le"])))
    for p in j["plugins"]:
        for verdict, n in p["verdicts"].items():
            pairs.append((n, val(s, "sluice_plugin_verdicts_total", plugin=p["name"],
                                 verdict=verdict)))
        pairs.append((p["timeouts"], val(s, "sluice_plugin_timeouts_total", plugin=p["name"])))
        pairs.append((p["circuit_state"], val(s, "sluice_plugin_circuit_state", plugin=p["name"])))
        for phase, h in p["phases"].items():
            pairs.append((h["count"], val(s, "sluice_plugin_duration_seconds_count",
                                          plugin=p["name"], phase=phase)))
    for c in j["counters"]:
        if c["label"] is None:
            pairs.append((c["value"], val(s, c["name"])))
        else:
            for k, v in c["values"].items():
                pairs.append((v, val(s, c["name"], **{c["label"]: k})))
    bad = [(a, b) for a, b in pairs if a != pytest.approx(b)]
    assert not bad
    assert len(pairs) > 60

    # Decisions: newest first, passed through verbatim.
    assert [d["sid"] for d in j["decisions"]] == ["s2", "s1"]
    assert j["decisions"][0]["symbols"] == [{"name": "BAYES_99", "score": 5.5}]
    assert j["ready"] is False and j["ready_reason"] == "not listening"


def test_health_ready_methods(drv):
    cases = [
        # (method, path, want status)
        ("GET", "/healthz", 200),
        ("HEAD", "/healthz", 200),
        ("GET", "/readyz", 503),
        ("GET", "/", 200),
        ("GET", "/index.html", 200),
        ("GET", "/dashboard.js", 200),
        ("GET", "/dashboard.css", 200),
        ("GET", "/nope", 404),
        ("GET", "/metrics/x", 404),
        ("POST", "/metrics", 405),
        ("PUT", "/stats", 405),
        ("DELETE", "/", 405),
        ("OPTIONS", "/healthz", 405),
    ]
    for method, path, want in cases:
        st, hdr, body = request(drv.port, method, path,
                                body=b"a=1" if method in ("POST", "PUT") else None)
        assert st == want, (method, path, st, body)
        if want == 405:
            assert hdr["allow"] == "GET, HEAD"
        if method == "HEAD":
            assert body == b""
    st, _, body = request(drv.port, "GET", "/healthz")
    assert body == b"ok\n"

    # /readyz names the first missing piece until all three are there.
    steps = [("ready 0 1 1", 503, b"not ready: not listening\n"),
             ("ready 1 0 1", 503, b"not ready: upstream unreachable\n"),
             ("ready 1 1 0", 503, b"not ready: plugin chain not loaded\n"),
             ("ready 1 1 1", 200, b"ready\n")]
    for cmd, want_st, want_body in steps:
        drv.do(cmd)
        st, _, body = request(drv.port, "GET", "/readyz")
        assert (st, body) == (want_st, want_body), cmd

    hdr, _ = get(drv.port, "/metrics")
    assert hdr["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    hdr, html = get(drv.port, "/")
    assert hdr["content-type"].startswith("text/html")
    assert "/dashboard.js" in html and "http://" not in html and "https://" not in html


def test_unix_socket_and_ipv6(tmp_path):
    path = str(tmp_path / "stats.sock")
    d = Driver("unix:" + path)
    try:
        d.do("conn open")
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        assert data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200")
        assert b"\nsluice_connections_current 1\n" in data
    finally:
        rc, err = d.stop()
    assert rc == 0, err
    assert not os.path.exists(path), "socket file left behind"

    try:
        socket.socket(socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6")
    d = Driver("[::1]:0")
    try:
        st, _, body = request(d.port, "GET", "/healthz", host="::1")
        assert (st, body) == (200, b"ok\n")
    finally:
        rc, err = d.stop()
    assert rc == 0, err


def test_bad_listen_address():
    for addr in ["localhost:9025", "127.0.0.1", "unix:relative"]:
        p = subprocess.run([DRIVER, addr], input="", capture_output=True, text=True, timeout=10)
        assert p.returncode == 1 and "stats_driver:" in p.stderr, (addr, p.stderr)


def test_concurrent_scrapes_under_load(drv):
    """Scrapes while writers run: every scrape parses, counters never go back."""
    drv.do("auto 500")
    errors = []

    def scraper():
        last = {}
        try:
            for _ in range(15):
                s, _ = parse_metrics(get(drv.port, "/metrics")[1])
                j = json.loads(get(drv.port, "/stats")[1])
                for k, v in s.items():
                    if k[0].endswith("_total"):
                        assert v >= last.get(k, 0), k
                        last[k] = v
                assert isinstance(j["decisions"], list)
                time.sleep(0.05)
        except Exception as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=scraper) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    drv.do("auto 0")
    assert not errors, errors
    s, _ = parse_metrics(get(drv.port, "/metrics")[1])
    acc = val(s, "sluice_transactions_total", verdict="accepted")
    rej = val(s, "sluice_transactions_total", verdict="rejected")
    assert acc + rej > 50
    assert val(s, "sluice_transaction_duration_seconds_count") == acc + rej
    rc, out = promtool_check(get(drv.port, "/metrics")[1])
    assert (rc, out) == (0, "")
