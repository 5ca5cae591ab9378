# SPDX-License-Identifier: GPL-2.0-or-later
"""Plugin chain reload and configuration checks: SIGHUP under load loses no
transaction (each message answered 250 once, delivered once, judged by one
whole chain); a transaction in flight finishes on the old chain; a chain that
fails to load on SIGHUP is refused and the old one stays; `sluice --check`
reports plugin problems as FILE:LINE and exits 1."""

import os
import re
import signal
import threading
import time

import pytest

import harness
import plugkit
from harness import Client


def chain_a():
    return plugkit.chain_sections(("tag", "testplug", {"add_header": "X-Chain: a"}))


def chain_b():
    # A different shape: two instances, one of them on the thread pool.
    return plugkit.chain_sections(
        ("slow", "testplug_blocking", {"sleep_ms": "15", "add_header": "X-Chain-Slow: b"}),
        ("tag", "testplug", {"add_header": "X-Chain: b"}))


def rewrite(sl, chain):
    sections = {k: v for k, v in sl.sections.items()
                if k != "chain" and not k.startswith("plugin ")}
    sections.update(chain)
    sl.write_config(sections)


def test_reload_under_load_loses_nothing(sluice_factory, fake):
    sl = sluice_factory(fake.port, extra_sections=chain_a())
    nthreads, per_thread = 4, 15
    replies = {}          # seq -> list of final reply codes
    lock = threading.Lock()
    errors = []

    def worker(t):
        try:
            c = None
            for i in range(per_thread):
                # Some sessions carry several transactions across reloads.
                if c is None or i % 5 == 0:
                    if c:
                        c.close()
                    c = Client(sl.port, timeout=20)
                    c.greeting()
                    c.ehlo()
                seq = "%d-%d" % (t, i)
                body = ("Subject: m %s\r\nX-Seq: %s\r\n\r\nbody %s\r\n" % (seq, seq, seq)).encode()
                r = harness.transaction(c, rcpts=("r%s@example.net" % seq,), body=body)
                with lock:
                    replies.setdefault(seq, []).append(r.code)
            c.close()
        except Exception as e:   # reported below with the dialogue
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(nthreads)]
    for t in threads:
        t.start()
    reloads = 0
    chains = [chain_b, chain_a]
    while any(t.is_alive() for t in threads) and reloads < 40:
        rewrite(sl, chains[reloads % 2]())
        sl.signal(signal.SIGHUP)
        reloads += 1
        time.sleep(0.05)
    for t in threads:
        t.join(60)
    assert not errors, errors
    n = nthreads * per_thread
    assert sorted(replies) == sorted("%d-%d" % (t, i) for t in range(nthreads)
                                     for i in range(per_thread))
    assert all(v == [250] for v in replies.values()), replies
    msgs = fake.wait_messages(n, timeout=20)
    seqs = [re.search(rb"X-Seq: (\S+)", m.data).group(1).decode() for m in msgs]
    assert sorted(seqs) == sorted(replies), "upstream got %d messages for %d sent" % (len(seqs), n)
    # Every message was judged by one whole chain, old or new, never a mix.
    seen = set()
    for m in msgs:
        tags = re.findall(rb"X-Chain: (\w)", m.data)
        slow = re.findall(rb"X-Chain-Slow: (\w)", m.data)
        assert len(tags) == 1, m.data
        assert slow == ([b"b"] if tags == [b"b"] else []), m.data
        seen.add(tags[0])
    assert sl.wait_log(r"configuration reloaded", 5)
    assert plugkit.count_lines(sl, r"configuration reloaded from") >= 2
    assert seen == {b"a", b"b"}, "both chains should have judged messages"
    assert sl.alive()


def test_transaction_in_flight_finishes_on_old_chain(sluice_factory, fake):
    held = plugkit.chain_sections(("tag", "testplug", {"async_ms": "1500",
                                                        "add_header": "X-Chain: old"}))
    sl = sluice_factory(fake.port, extra_sections=held)
    res = {}
    t = threading.Thread(target=lambda: res.update(d=plugkit.send(sl.port, timeout=20)))
    t.start()
    time.sleep(0.5)      # the message is inside the old chain's DATA hook now
    rewrite(sl, plugkit.chain_sections(("tag", "testplug", {"add_header": "X-Chain: new"})))
    mark = len(sl.lines)
    sl.signal(signal.SIGHUP)
    assert sl.wait_log(r"configuration reloaded", 5, start=mark)
    d2 = plugkit.send(sl.port)          # a new transaction: the new chain
    t.join(20)
    assert res["d"]["eod"].code == 250 and d2["eod"].code == 250
    msgs = fake.wait_messages(2)
    got = sorted(re.search(rb"X-Chain: (\w+)", m.data).group(1) for m in msgs)
    assert got == [b"new", b"old"], [m.data for m in msgs]


@pytest.mark.parametrize("bad,why", [
    ("badabi", r"badabi\.so refused: plugin ABI version 99, this sluice supports 1"),
    ("nosymbol", r"nosymbol\.so is not a sluice plugin \(no 'sluice_plugin' symbol\)"),
    ("missing", r"cannot load /nonexistent/missing\.so"),
    ("badkey", r"\[plugin tag\] data: unknown verdict 'bogus'"),
])
def test_failed_reload_keeps_old_chain(sluice_factory, fake, bad, why):
    sl = sluice_factory(fake.port, extra_sections=chain_a())
    assert plugkit.send(sl.port)["eod"].code == 250
    if bad == "badkey":
        broken = plugkit.chain_sections(("tag", "testplug", {"data": "bogus"}))
    elif bad == "missing":
        broken = plugkit.chain_sections(("tag", "/nonexistent/missing.so", {}))
    else:
        broken = plugkit.chain_sections(("tag", "testplug", {"add_header": "X-Chain: b"}),
                                        ("bad", bad, {}))
    rewrite(sl, broken)
    mark = len(sl.lines)
    sl.signal(signal.SIGHUP)
    assert sl.wait_log(r"reload of .* refused; keeping the running configuration", 5,
                       start=mark), sl.output()
    # The reason, with the file and line of the configuration.
    assert sl.wait_log(r"reload: %s:\d+: .*%s" % (re.escape(sl.config_path), why), 5,
                       start=mark), sl.output()
    assert plugkit.send(sl.port)["eod"].code == 250
    msgs = fake.wait_messages(2)
    assert all(b"X-Chain: a\r\n" in m.data for m in msgs), [m.data for m in msgs]
    assert sl.alive()


# ---- sluice --check ---------------------------------------------------------
CHECK_HEAD = """[server]
listen = 127.0.0.1:1
spool_dir = {spool}

[upstream]
servers = 127.0.0.1:2

[stats]
listen = no

[chain]
plugins = first second
"""
# Line numbers: "plugins" is line 12; [plugin first] is 14, its keys 15..;
# [plugin second] follows after one empty line.


def check(tmp_path, first, second):
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    text = CHECK_HEAD.format(spool=spool)
    text += "\n[plugin first]\n" + first + "\n[plugin second]\n" + second
    p = tmp_path / "check.conf"
    p.write_text(text)
    r = harness.run_sluice(["--check", "-c", str(p)])
    return r, str(p)


@pytest.mark.parametrize("second,line,why", [
    ("path = /nonexistent/x.so\n", 12, r"\[plugin second\] cannot load /nonexistent/x\.so: "),
    ("path = {badabi}\n", 12, r"\[plugin second\] .*badabi\.so refused: plugin ABI version 99, "
                              r"this sluice supports 1"),
    ("path = {nosymbol}\n", 12, r"\[plugin second\] .*nosymbol\.so is not a sluice plugin "
                                r"\(no 'sluice_plugin' symbol\)"),
    # a key the plugin refuses: the line of that key
    ("path = {testplug}\nhelo = accept\ndata = bogus\n", 21,
     r"\[plugin second\] data: unknown verdict 'bogus'"),
    ("path = {testplug}\nreply = nonsense\n", 20,
     r"\[plugin second\] reply: expected 'CODE ENH text'"),
    # a host key
    ("path = {testplug}\nquarantine_reply = maybe\n", 20,
     r"\[plugin second\] quarantine_reply: expected accept or reject, got 'maybe'"),
], ids=["missing", "badabi", "nosymbol", "badkey", "badreply", "hostkey"])
def test_check_reports_file_line(tmp_path, second, line, why):
    paths = {k: plugkit.plugin_path(k) for k in ("badabi", "nosymbol", "testplug")}
    first = "path = %s\nadd_header = X-A: 1\n" % paths["testplug"]
    r, conf = check(tmp_path, first, second.format(**paths))
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith(conf + ":")]
    assert len(lines) == 1, r.stderr
    assert re.match(r"%s:%d: %s" % (re.escape(conf), line, why), lines[0]), (lines[0], why)


def test_check_ok(tmp_path):
    tp = plugkit.plugin_path("testplug")
    r, conf = check(tmp_path, "path = %s\n" % tp, "path = %s\ndata = reject\n" % tp)
    assert r.returncode == 0, r.stderr
    assert "%s: configuration OK (2 plugin instances)" % conf in r.stdout


def test_check_reports_every_problem(tmp_path):
    """Two broken instances: both reported, each with its line."""
    r, conf = check(tmp_path, "path = %s\n" % plugkit.plugin_path("badabi"),
                    "path = %s\ndata = bogus\n" % plugkit.plugin_path("testplug"))
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith(conf + ":")]
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith(conf + ":12: [plugin first]")
    assert lines[1].startswith(conf + ":19: [plugin second] data:")


def test_reload_hook_hands_state_over(sluice_factory, fake):
    """On SIGHUP the new instance of the same name gets the running one's
    state through the plugin's reload hook (testplug hands over its count of
    data calls); a transaction after the reload runs on the new instance."""
    sl = plugkit.start(sluice_factory, fake, ("tag", "testplug", {"add_header": "X-Chain: a"}))
    for _ in range(3):
        assert plugkit.send(sl.port)["eod"].code == 250
    rewrite(sl, chain_a())
    sl.signal(signal.SIGHUP)
    assert sl.wait_log(r"plugin=tag reload: took over 3 data calls", 5), sl.output()
    assert plugkit.send(sl.port)["eod"].code == 250
    assert len(fake.wait_messages(4)) == 4
