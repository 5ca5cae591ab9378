# SPDX-License-Identifier: GPL-2.0-or-later
"""Plugin failure paths end to end: a hook that sleeps past its timeout gets
its instance's failure policy (tempfail, accept, tag); an invalid verdict;
the circuit breaker (log line, calls stop, counters); asynchronous answers;
and a blocking hook on the thread pool does not stall other sessions."""

import signal
import threading
import time

import pytest

import harness
import plugkit
from plugkit import MSG, send

HDR_END = MSG.index(b"\r\n\r\n") + 2


def with_header(line):
    return MSG[:HDR_END] + line + MSG[HDR_END:]


# Timeouts are generous for ASan builds: the hook sleeps 2 s, the instance
# gives up after 300 ms.
SLOW = {"sleep_ms": "2000", "timeout": "300ms"}


@pytest.mark.parametrize("policy", ["tempfail", "accept", "tag", None])
def test_timeout_policy(sluice_factory, fake, policy):
    keys = dict(SLOW)
    if policy:
        keys["failure"] = policy
    sl = plugkit.start(sluice_factory, fake, ("slow", "testplug_blocking", keys))
    t0 = time.monotonic()
    d = send(sl.port)
    took = time.monotonic() - t0
    # The policy applied when the timeout expired, not when the hook ended.
    assert took < 1.8, took
    if policy in ("tempfail", None):      # tempfail is the default
        assert (d["eod"].code, d["eod"].text) == \
            (451, "4.3.0 Filter slow unavailable, try again later"), d
        time.sleep(0.2)
        assert fake.messages == []
    elif policy == "accept":
        assert d["eod"].code == 250, d
        assert fake.wait_messages(1)[0].data == MSG
    else:
        assert d["eod"].code == 250, d
        assert fake.wait_messages(1)[0].data == \
            with_header(b"X-Sluice-Skipped: slow (timeout after 300 ms)\r\n")
    assert sl.wait_log(r"plugin=slow timeout after 300 ms: failure policy %s"
                       % (policy or "tempfail"), 5), sl.output()
    # The abandoned hook finishes later without harm; the daemon still works.
    time.sleep(2.0)
    d = send(sl.port)
    assert d["eod"].code in (250, 451), d
    assert sl.alive()


def test_timeout_of_async_answer(sluice_factory, fake):
    """An async answer that comes after the timeout is ignored, with its edits."""
    sl = plugkit.start(sluice_factory, fake,
                       ("late", "testplug", {"async_ms": "1500", "timeout": "300ms",
                                             "failure": "accept",
                                             "add_header": "X-Late: 1", "data": "reject"}))
    d = send(sl.port)
    assert d["eod"].code == 250, d
    time.sleep(1.5)
    m = fake.wait_messages(1)[0]
    assert m.data == MSG
    assert sl.alive()


def test_async_answer(sluice_factory, fake):
    sl = plugkit.start(sluice_factory, fake,
                       ("a", "testplug", {"async_ms": "200", "add_header": "X-Async: yes"}),
                       ("b", "testplug", {"async_ms": "50", "data": "reject",
                                          "reply": "550 5.7.3 async no"}))
    t0 = time.monotonic()
    d = send(sl.port)
    assert time.monotonic() - t0 >= 0.25
    assert (d["eod"].code, d["eod"].text) == (550, "5.7.3 async no"), d
    sl2 = plugkit.start(sluice_factory, fake,
                        ("a", "testplug", {"async_ms": "100", "add_header": "X-Async: yes"}))
    d = send(sl2.port)
    assert d["eod"].code == 250, d
    assert fake.wait_messages(1)[0].data == with_header(b"X-Async: yes\r\n")


@pytest.mark.parametrize("policy,code", [("tempfail", 451), ("accept", 250), ("tag", 250)])
def test_invalid_verdict(sluice_factory, fake, policy, code):
    sl = plugkit.start(sluice_factory, fake,
                       ("bad", "testplug", {"data": "invalid", "failure": policy}))
    d = send(sl.port)
    assert d["eod"].code == code, d
    assert sl.wait_log(r"plugin=bad returned an invalid verdict 42", 5), sl.output()
    if policy == "tag":
        assert fake.wait_messages(1)[0].data == \
            with_header(b"X-Sluice-Skipped: bad (invalid verdict)\r\n")


ALL_INVALID = {ph: "invalid" for ph in ("connect", "helo", "mail", "rcpt", "data")}


def test_circuit_breaker(sluice_factory, fake):
    """A plugin whose every hook fails: after breaker_failures failures it is
    no longer called; its policy (accept) applies without calling it."""
    stats_port = harness.free_port()
    keys = dict(ALL_INVALID, failure="accept", breaker_failures="3", breaker_window="60s",
                breaker_cooldown="1h", counter="yes")
    sl = plugkit.start(sluice_factory, fake, ("flaky", "testplug", keys),
                       ("after", "testplug", {"add_header": "X-After: yes"}),
                       stats={"listen": "127.0.0.1:%d" % stats_port})
    for i in range(5):
        d = send(sl.port)
        assert d["eod"].code == 250, (i, d)
    msgs = fake.wait_messages(5)
    assert len(msgs) == 5
    # The next plugin ran for every message.
    assert all(m.data == with_header(b"X-After: yes\r\n") for m in msgs)
    assert sl.wait_log(r"plugin=flaky circuit breaker OPEN after 3 failure\(s\)", 5), sl.output()
    assert plugkit.count_lines(sl, r"circuit breaker OPEN") == 1
    # Calls stopped after the third failure (connect, helo, mail of message 1).
    assert plugkit.count_lines(sl, r"plugin=flaky returned an invalid verdict") == 3
    assert plugkit.count_lines(sl, r"plugin=flaky circuit breaker open: failure policy "
                                   r"accept") >= 5 * 5 - 3
    m = plugkit.metrics(stats_port)
    assert not plugkit.metric_value(m, "sluice_plugin_flaky_data_calls_total"), m
    assert plugkit.metric_value(m, "sluice_plugin_circuit_state", {"plugin": "flaky"}) == 1
    assert plugkit.metric_value(m, "sluice_plugin_circuit_trips_total", {"plugin": "flaky"}) == 1
    assert plugkit.metric_value(m, "sluice_plugin_errors_total", {"plugin": "flaky"}) == 3


def test_circuit_breaker_data_only_failures(sluice_factory, fake):
    """The usual case: the data hook fails (scanner down), the cheap hooks of
    the earlier phases answer fine. Still N failures in the window."""
    stats_port = harness.free_port()
    sl = plugkit.start(sluice_factory, fake,
                       ("flaky", "testplug", {"data": "invalid", "failure": "accept",
                                              "counter": "yes", "breaker_failures": "2",
                                              "breaker_window": "60s",
                                              "breaker_cooldown": "1h"}),
                       stats={"listen": "127.0.0.1:%d" % stats_port})
    for i in range(5):
        assert send(sl.port)["eod"].code == 250
    assert len(fake.wait_messages(5)) == 5
    m = plugkit.metrics(stats_port)
    assert sl.wait_log(r"plugin=flaky circuit breaker OPEN after 2 failure\(s\)", 2)
    assert plugkit.metric_value(m, "sluice_plugin_flaky_data_calls_total") == 2, m


def test_circuit_breaker_cooldown(sluice_factory, fake):
    """After the cool-down one trial call is made (half-open); a failing trial
    opens it again at once."""
    keys = dict(ALL_INVALID, failure="accept", breaker_failures="1", breaker_cooldown="500ms")
    sl = plugkit.start(sluice_factory, fake, ("flaky", "testplug", keys))
    assert send(sl.port)["eod"].code == 250     # connect fails: open
    assert send(sl.port)["eod"].code == 250     # open: not called at all
    assert plugkit.count_lines(sl, r"plugin=flaky returned an invalid verdict") == 1
    time.sleep(0.7)
    assert send(sl.port)["eod"].code == 250     # half-open trial: called, fails
    assert sl.wait_log(r"plugin=flaky circuit breaker half-open", 5)
    assert plugkit.count_lines(sl, r"plugin=flaky returned an invalid verdict") == 2
    assert plugkit.count_lines(sl, r"circuit breaker OPEN") == 2


def _noop_latency(port, stop, out):
    """EHLO then NOOPs on one session until `stop`; records each latency."""
    with harness.Client(port) as c:
        c.greeting()
        t = time.monotonic()
        c.ehlo()
        out.append(time.monotonic() - t)
        while not stop.is_set():
            t = time.monotonic()
            r = c.cmd("NOOP")
            out.append(time.monotonic() - t)
            assert r.code == 250
            time.sleep(0.02)


@pytest.mark.parametrize("pool", [1, 4])
def test_blocking_hook_does_not_stall_loop(sluice_factory, fake, pool):
    """Messages whose DATA hook sleeps 1 s on the pool. Meanwhile another
    client's EHLO/NOOP answer at once; with a pool of 4, four such messages
    take about 1 s together (they sleep in parallel), with 1 thread about 4 s."""
    sl = plugkit.start(sluice_factory, fake,
                       ("slow", "testplug_blocking", {"sleep_ms": "1000", "timeout": "30s"}),
                       server={"thread_pool_size": str(pool),
                               # the prober's NOOPs are the point here
                               "junk_command_limit": "0"})
    results = [None] * 4
    def one(i):
        results[i] = send(sl.port, rcpts=("r%d@example.net" % i,), timeout=20)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    lat = []
    stop = threading.Event()
    prober = threading.Thread(target=_noop_latency, args=(sl.port, stop, lat))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.2)
    prober.start()
    for t in threads:
        t.join(30)
    took = time.monotonic() - t0
    stop.set()
    prober.join(10)
    assert all(r is not None and r["eod"].code == 250 for r in results), results
    assert len(fake.wait_messages(4)) == 4
    assert len(lat) >= 10, lat
    # Replies that need no plugin keep their latency while hooks sleep.
    assert max(lat) < 0.3, sorted(lat)[-5:]
    if pool == 4:
        assert took < 2.5, took
    else:
        assert took >= 3.9, took


def test_other_session_message_goes_through_while_one_waits(sluice_factory, fake):
    """While one session's async hook holds its message for 3 s, another
    session gets a whole message through (the second is not slowed: the
    async delay is per message, and the loop is free)."""
    sl = plugkit.start(sluice_factory, fake,
                       ("hold", "testplug", {"async_ms": "3000", "timeout": "30s"}))
    res = {}
    def slow():
        res["slow"] = send(sl.port, rcpts=("slow@example.net",), timeout=20)
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    # A second session completes EHLO..DATA and its message goes through
    # the same 3 s hold concurrently: done well before slow + 3 s.
    t0 = time.monotonic()
    res["fast"] = send(sl.port, rcpts=("fast@example.net",), timeout=20)
    took = time.monotonic() - t0
    t.join(20)
    assert res["slow"]["eod"].code == 250 and res["fast"]["eod"].code == 250, res
    assert took < 4.0, took
    msgs = fake.wait_messages(2)
    assert sorted(m.rcpts[0] for m in msgs) == ["fast@example.net", "slow@example.net"]


@pytest.mark.parametrize("failure,code,delivered", [("tempfail", 451, 0), ("accept", 250, 1),
                                                    ("tag", 250, 1)])
def test_plugin_reported_error_gets_failure_policy(sluice_factory, fake, failure, code, delivered):
    """SLUICE_ERROR: the plugin says it could not do its job; the instance's
    failure policy answers, and it counts for the breaker."""
    sl = plugkit.start(sluice_factory, fake,
                       ("scanner", "testplug", {"data": "error", "failure": failure}))
    d = send(sl.port)
    assert d["eod"].code == code, d
    msgs = fake.wait_messages(delivered) if delivered else []
    time.sleep(0.2)
    assert len(fake.messages) == delivered
    assert sl.wait_log(r"plugin=scanner reported an error: failure policy %s" % failure, 3)
    if failure == "tag":
        assert b"X-Sluice-Skipped: scanner (reported an error)" in msgs[0].data


def test_stuck_plugin_cannot_take_every_pool_thread(sluice_factory, fake):
    """A blocking hook that hangs far past its timeout keeps its pool
    thread. With a pool of 4, four such messages used to hold every thread,
    and the next plugin's hooks timed out for unrelated mail (451 "Filter
    next unavailable"). Each instance may hold at most `max_threads`
    threads (default: the pool less one), abandoned hooks included: further
    calls of the stuck plugin wait for one of its own threads and time out
    (its failure policy applies), while other plugins keep running."""
    stats_port = harness.free_port()
    sl = plugkit.start(sluice_factory, fake,
                       ("stuck", "testplug_blocking", {"sleep_ms": "6000", "timeout": "300ms",
                                                       "failure": "accept",
                                                       "breaker_failures": "0"}),
                       ("next", "testplug_blocking", {"add_header": "X-Next: yes",
                                                      "timeout": "2s"}),
                       server={"thread_pool_size": "4"},
                       stats={"listen": "127.0.0.1:%d" % stats_port})
    t0 = time.monotonic()
    codes = [send(sl.port)["eod"].code for _ in range(6)]
    assert time.monotonic() - t0 < 5.5   # all while the stuck hooks still sleep
    assert codes == [250] * 6, codes
    msgs = fake.wait_messages(6)
    assert all(b"X-Next: yes\r\n" in m.data for m in msgs), [m.data for m in msgs]
    assert sl.wait_log(r"plugin=stuck timeout after 300 ms waiting for a thread "
                       r"\(3 of 3 busy\): failure policy accept", 5), sl.output()
    m = plugkit.metrics(stats_port)
    assert plugkit.metric_value(m, "sluice_plugin_threads_busy", {"plugin": "stuck"}) == 3, m
    assert plugkit.metric_value(m, "sluice_plugin_thread_waits_total",
                                {"plugin": "stuck"}) == 3, m


def test_reload_while_abandoned_hook_runs(sluice_factory, fake):
    """A hook abandoned after its timeout still runs plugin code. A reload
    followed by a new transaction on the same connection dropped the last
    reference to the old chain, which shut the instance down under the
    running hook (use-after-free of its data). The call now pins its
    instance until the hook returns."""
    sl = plugkit.start(sluice_factory, fake,
                       ("slow", "testplug_blocking", {"sleep_ms": "1500", "timeout": "300ms",
                                                      "failure": "accept"}))
    with harness.Client(sl.port) as c:
        c.greeting()
        c.ehlo()
        c.expect("MAIL FROM:<a@example.com>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(MSG + b".\r\n")
        assert c.reply().code == 250
        mark = len(sl.lines)
        sl.signal(signal.SIGHUP)
        assert sl.wait_log(r"configuration reloaded", 5, start=mark), sl.output()
        # A new transaction on the same connection: the new chain.
        c.expect("MAIL FROM:<a@example.com>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(MSG + b".\r\n")
        assert c.reply().code == 250
        c.expect("QUIT", 221)
    time.sleep(2.0)   # the first hook wakes up and returns
    assert sl.alive()
    assert len(fake.wait_messages(2)) == 2


def test_timeout_with_spooled_message_keeps_it_whole(sluice_factory, fake):
    """After a blocking hook times out the phase goes on with a clone of
    the transaction. With the message in the spool (above memory_buffer),
    the clone reads the original's bytes: the next plugin's edit and the
    upstream see the whole message (a failed copy of it once meant an
    empty message forwarded with 250)."""
    body = MSG + (b"0123456789" * 7 + b"\r\n") * 4000      # ~290 KB
    sl = plugkit.start(sluice_factory, fake,
                       ("slow", "testplug_blocking", {"sleep_ms": "1500", "timeout": "300ms",
                                                      "failure": "accept"}),
                       ("after", "testplug", {"add_header": "X-After: yes"}),
                       server={"memory_buffer": "4k"})
    d = send(sl.port, body=body)
    assert d["eod"].code == 250, d
    got = fake.wait_messages(1)[0].data
    assert got == body[:HDR_END] + b"X-After: yes\r\n" + body[HDR_END:], len(got)
    time.sleep(1.5)
    assert sl.alive()
