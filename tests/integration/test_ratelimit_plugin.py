# SPDX-License-Identifier: GPL-2.0-or-later
"""The ratelimit plugin against the real daemon, with the in-process store
and with a real redis-server (the same tests on both): recipients, messages
per sender, connections (421 and closed) and bytes over their windows,
exempt networks, the refusals on /metrics; with Redis, a limit held across
two sluice instances and the failure policy when Redis is gone; a bad rule
file refused by --check with its file and line."""
import json
import os
import time
import urllib.request

import pytest

import harness
import plugkit
from redisfix import REDIS, Redis, backend  # noqa: F401 (a fixture)

RL_SO = os.path.abspath(os.path.join(plugkit.BUILD, "plugins", "ratelimit.so"))



def _rules(tmp_path, text):
    p = tmp_path / "ratelimit.rules"
    p.write_text(text)
    return str(p)


def _start(sluice_factory, fake, tmp_path, rules, state, stats=None, **keys):
    conf = {"rules": _rules(tmp_path, rules), "exempt_networks": "10.0.0.0/8"}
    conf.update(keys)
    sections = plugkit.chain_sections(("rl", RL_SO, conf))
    if state:
        sections["state"] = state
    sl = sluice_factory(fake.port, extra_sections=sections, stats=stats)
    if state and state.get("backend") == "redis":
        assert sl.wait_log(r"state: redis .* connected", 10), sl.output()
    return sl


def test_recipients_per_client(fake, sluice_factory, tmp_path, backend):
    stats = harness.free_port()
    sl = _start(sluice_factory, fake, tmp_path, "rc recipients client_ip 3 1m\n", backend,
                stats={"listen": "127.0.0.1:%d" % stats})
    rcpts = ["r%d@example.net" % i for i in range(5)]
    d = plugkit.send(sl.port, rcpts=rcpts)
    assert [d["rcpt:" + r].code for r in rcpts] == [250, 250, 250, 451, 451], d
    r = d["rcpt:r3@example.net"]
    assert r.enh == "4.7.0" and "Rate limit reached (rc: 4 recipients per client_ip" in r.text, r
    assert d["eod"].code == 250
    assert sorted(fake.wait_messages(1)[0].rcpts) == rcpts[:3]
    m = plugkit.metrics(stats)
    assert plugkit.metric_value(m, "sluice_plugin_rl_refused_total", {"rule": "rc"}) == 2, m
    assert sl.wait_log(r"plugin=rl rule rc: client_ip 127\.0\.0\.1 over 3")


def test_messages_per_sender(fake, sluice_factory, tmp_path, backend):
    sl = _start(sluice_factory, fake, tmp_path, "ms messages sender 2 1m\n", backend)
    for _ in range(2):
        assert plugkit.send(sl.port, mail_from="Ann@Example.com")["eod"].code == 250
    d = plugkit.send(sl.port, mail_from="ann@example.COM")  # one sender, any case
    assert d["mail"].code == 451 and d["mail"].enh == "4.7.0", d
    assert plugkit.send(sl.port, mail_from="bob@example.com")["eod"].code == 250
    # the null sender is not counted per sender
    for _ in range(3):
        assert plugkit.send(sl.port, mail_from="")["eod"].code == 250


def test_connections_421_and_closed(fake, sluice_factory, tmp_path, backend):
    sl = _start(sluice_factory, fake, tmp_path, "cc connections client_ip 2 1m\n", backend)
    for _ in range(2):
        assert plugkit.send(sl.port)["eod"].code == 250
    d = plugkit.send(sl.port)
    g = d.get("greeting")
    assert g is not None and g.code == 421 and g.enh == "4.7.0", d
    assert d.closed, d


def test_bytes_per_client(fake, sluice_factory, tmp_path, backend):
    sl = _start(sluice_factory, fake, tmp_path, "by bytes client_ip 10k 1m\n", backend)
    body = b"Subject: big\r\n\r\n" + b"x" * 70 + (b"\r\n" + b"y" * 70) * 80
    assert plugkit.send(sl.port, body=body)["eod"].code == 250
    d = plugkit.send(sl.port, body=body)
    assert d["eod"].code == 451 and "by:" in d["eod"].text, d
    assert len(fake.wait_messages(1)) == 1


def test_exempt_networks(fake, sluice_factory, tmp_path, backend):
    sl = _start(sluice_factory, fake, tmp_path, "rc recipients client_ip 1 1m\n", backend,
                exempt_networks="127.0.0.0/8")
    d = plugkit.send(sl.port, rcpts=["a@example.net", "b@example.net", "c@example.net"])
    assert d["eod"].code == 250, d


def test_top_offenders_on_metrics_and_stats(fake, sluice_factory, tmp_path, backend):
    """The heaviest senders of a rule, with their counts, on /metrics and in
    /stats; a lighter one is left out once the list is full. The count
    shown includes a refused attempt: it is the pressure on the limit."""
    stats = harness.free_port()
    # a week's window: the counts cannot straddle a bucket's edge in the test
    sl = _start(sluice_factory, fake, tmp_path, "ms messages sender 3 7d\n", backend,
                stats={"listen": "127.0.0.1:%d" % stats}, top_offenders="2")
    for sender, n in (("ann@example.com", 4), ("bob@example.com", 2), ("carl@example.com", 1)):
        for _ in range(n):
            plugkit.send(sl.port, mail_from=sender)
    m = plugkit.metrics(stats)
    top = "sluice_plugin_rl_top"
    assert "# TYPE %s gauge" % top in m, m
    assert plugkit.metric_value(m, top, {"rule": "ms", "subject": "ann@example.com"}) == 4, m
    assert plugkit.metric_value(m, top, {"rule": "ms", "subject": "bob@example.com"}) == 2, m
    assert 'subject="carl@example.com"' not in m, m
    with urllib.request.urlopen("http://127.0.0.1:%d/stats" % stats, timeout=5) as resp:
        doc = json.loads(resp.read())
    g = [x for x in doc["gauges"] if x["name"] == top]
    assert len(g) == 1 and g[0]["labels"] == ["rule", "subject"], doc["gauges"]
    assert [(s["labels"], s["value"]) for s in g[0]["series"]] == [
        (["ms", "ann@example.com"], 4), (["ms", "bob@example.com"], 2)], g


def test_top_offenders_long_senders_kept_apart(fake, sluice_factory, tmp_path):
    """Two senders that share their first 95 bytes (where the stats
    endpoint cuts label values) are two series: the light one neither
    overwrites nor, leaving the list, removes the heavy one's."""
    stats = harness.free_port()
    sl = _start(sluice_factory, fake, tmp_path, "ms messages sender 10 7d\n", {},
                stats={"listen": "127.0.0.1:%d" % stats}, top_offenders="3")
    heavy, light = ("user@" + "x" * 60 + "." + "y" * 40 + t + ".example.com" for t in "ab")
    for sender, n in ((heavy, 4), (light, 1)):
        for _ in range(n):
            assert plugkit.send(sl.port, mail_from=sender)["eod"].code == 250
    m = plugkit.metrics(stats)
    series = [ln for ln in m.splitlines() if ln.startswith("sluice_plugin_rl_top{")]
    assert len(series) == 2, m
    assert sorted(float(ln.split()[-1]) for ln in series) == [1.0, 4.0], series
    for ln in series:  # shown as its head and a hash of the whole
        assert 'subject="user@' + "x" * 60 + "." + "y" * 6 + "~" in ln, ln


def test_window_slides(fake, sluice_factory, tmp_path):
    """A 2 s window: refused at once, let through again once the window
    has slid past the burst (at most two windows later)."""
    sl = _start(sluice_factory, fake, tmp_path, "ms messages sender 1 2s\n", {})
    assert plugkit.send(sl.port)["eod"].code == 250
    assert plugkit.send(sl.port)["mail"].code == 451
    deadline = time.monotonic() + 6.5
    while plugkit.send(sl.port).get("eod") is None:
        assert time.monotonic() < deadline, "still refused after 6 s"
        time.sleep(0.5)


def test_redis_limit_across_instances(fake, sluice_factory, tmp_path):
    if not REDIS:
        pytest.skip("redis-server not installed")
    r = Redis(tmp_path / "redis").start()
    try:
        state = {"backend": "redis", "redis": "127.0.0.1:%d" % r.port}
        rules = "rc recipients client_ip 3 1m\n"
        a = _start(sluice_factory, fake, tmp_path, rules, state)
        b = _start(sluice_factory, fake, tmp_path, rules, state)
        d = plugkit.send(a.port, rcpts=["r1@example.net", "r2@example.net"])
        assert d["eod"].code == 250
        d = plugkit.send(b.port, rcpts=["r3@example.net", "r4@example.net"])
        assert d["rcpt:r3@example.net"].code == 250 and d["rcpt:r4@example.net"].code == 451, d
        keys = r.cli("KEYS", "sluice:rl:rc:127.0.0.1:*").split()
        # the refused fourth was taken back
        assert len(keys) == 1 and r.cli("GET", keys[0]) == "3", keys
    finally:
        r.stop()


@pytest.mark.parametrize("policy,code", [("open", 250), ("closed", 451)])
def test_redis_gone_failure_policy(fake, sluice_factory, tmp_path, policy, code):
    if not REDIS:
        pytest.skip("redis-server not installed")
    r = Redis(tmp_path / "redis").start()
    try:
        state = {"backend": "redis", "redis": "127.0.0.1:%d" % r.port}
        sl = _start(sluice_factory, fake, tmp_path, "rc recipients client_ip 100 1m\n", state,
                    on_state_error=policy)
        assert plugkit.send(sl.port)["eod"].code == 250
        r.stop()
        d = plugkit.send(sl.port)
        assert d["rcpt:rcpt@example.net"].code == code, d
        if code == 451:
            assert "Rate limit check unavailable" in d["rcpt:rcpt@example.net"].text
        assert sl.wait_log(r"shared state unavailable: %s" %
                           ("not limited" if policy == "open" else "tempfail"))
    finally:
        r.stop()


def test_bad_rules_file_named_with_line(tmp_path):
    rules = _rules(tmp_path, "ok messages sender 10 1m\nbad messages nobody 10 1m\n")
    conf = tmp_path / "s.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:2525\n[upstream]\nservers = 127.0.0.1:25\n"
                    "[chain]\nplugins = rl\n[plugin rl]\npath = %s\nrules = %s\n" % (RL_SO, rules))
    r = harness.run_sluice(["--check", "-c", str(conf)])
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "%s:2: 'nobody'" % rules in out, out
