# SPDX-License-Identifier: GPL-2.0-or-later
"""The plugins' shared state (api->state_call, [state]) with the in-process
store, driven through tests/plugins/stateplug.c: a recipient counter over a
window answers 451 4.7.0 past its limit and starts again when the window
ends; values and sets outlive the session that wrote them; two instances
of one plugin keep their own keys; callbacks never run inside state_call()
and a cancelled call never calls back (the plugin aborts the daemon
otherwise); a bad [state] section is refused with its file and line."""
import os
import re
import signal
import time

import pytest

import harness
import plugkit
from redisfix import REDIS, Redis, backend  # noqa: F401 (a fixture)

@pytest.fixture
def redis(tmp_path):
    if not REDIS:
        pytest.skip("redis-server not installed (Debian package redis-server)")
    r = Redis(tmp_path / "redis").start()
    yield r
    r.stop()



def _start(sluice_factory, fake, *instances, state=None, stats=None):
    sections = plugkit.chain_sections(*instances)
    if state:
        sections["state"] = state
    sl = sluice_factory(fake.port, extra_sections=sections, stats=stats)
    if state and state.get("backend") == "redis" and "password" not in str(state):
        assert sl.wait_log(r"state: redis .* connected", 10), sl.output()
    return sl


def test_counter_limit_and_window(fake, sluice_factory, backend):
    sl = _start(sluice_factory, fake, ("rl", "stateplug", {"limit": "3", "window_ms": "1500"}),
                state=backend)
    rcpts = ["r%d@example.net" % i for i in range(5)]
    d = plugkit.send(sl.port, rcpts=rcpts)
    codes = [d["rcpt:" + r].code for r in rcpts]
    assert codes == [250, 250, 250, 451, 451], d
    last = d["rcpt:" + rcpts[-1]]
    assert last.enh == "4.7.0" and "rate limit: 5 recipients" in last.text, last
    # the message still goes to the three accepted recipients
    assert d["eod"].code == 250, d
    msgs = fake.wait_messages(1)
    assert sorted(msgs[0].rcpts) == rcpts[:3], msgs[0].rcpts
    # the window started at the first recipient: still closed now ...
    d = plugkit.send(sl.port)
    assert d["rcpt:rcpt@example.net"].code == 451, d
    # ... and open again once it has passed
    time.sleep(1.6)
    d = plugkit.send(sl.port)
    assert d["rcpt:rcpt@example.net"].code == 250 and d["eod"].code == 250, d
    assert sl.alive()


def test_values_and_sets_outlive_the_session(fake, sluice_factory, backend):
    sl = _start(sluice_factory, fake, ("st", "stateplug", {"limit": "100"}), state=backend)
    assert plugkit.send(sl.port, mail_from="ann@example.com")["eod"].code == 250
    assert plugkit.send(sl.port, mail_from="bob@example.com")["eod"].code == 250
    assert plugkit.send(sl.port, mail_from="ann@example.com")["eod"].code == 250
    msgs = fake.wait_messages(3)
    heads = [m.data.split(b"\r\n\r\n", 1)[0] for m in msgs]
    assert b"X-State-Last: none" in heads[0] and b"X-State-Seen: no" in heads[0], heads[0]
    assert b"X-State-Last: ann@example.com" in heads[1] and b"X-State-Seen: no" in heads[1]
    assert b"X-State-Last: bob@example.com" in heads[2] and b"X-State-Seen: yes" in heads[2]
    assert sl.alive()


def test_value_ttl(fake, sluice_factory, backend):
    sl = _start(sluice_factory, fake, ("st", "stateplug", {"last_ttl_ms": "500"}), state=backend)
    assert plugkit.send(sl.port, mail_from="ann@example.com")["eod"].code == 250
    time.sleep(0.7)
    assert plugkit.send(sl.port, mail_from="bob@example.com")["eod"].code == 250
    msgs = fake.wait_messages(2)
    assert b"X-State-Last: none" in msgs[1].data, msgs[1].data[:400]


def test_instances_keep_their_own_keys(fake, sluice_factory, backend):
    """Two instances of the plugin, each limit 3: were the keys shared,
    every recipient would count twice and the second would be refused."""
    sl = _start(sluice_factory, fake, ("one", "stateplug", {"limit": "3"}),
                ("two", "stateplug", {"limit": "3"}), state=backend)
    rcpts = ["r%d@example.net" % i for i in range(4)]
    d = plugkit.send(sl.port, rcpts=rcpts)
    assert [d["rcpt:" + r].code for r in rcpts] == [250, 250, 250, 451], d
    msgs = fake.wait_messages(1)
    head = msgs[0].data.split(b"\r\n\r\n", 1)[0]
    assert head.count(b"X-State-Last: none") == 2, head


def test_max_keys_bounds_the_store(fake, sluice_factory):
    """[state] max_keys = 2: the counter, the "last" value and the set of
    senders push each other out, so the limit never bites; the daemon stays
    up and /metrics shows the store at its bound and what it evicted."""
    stats = harness.free_port()
    sl = _start(sluice_factory, fake, ("rl", "stateplug", {"limit": "1"}),
                state={"max_keys": "2"}, stats={"listen": "127.0.0.1:%d" % stats})
    for _ in range(3):
        d = plugkit.send(sl.port)
        assert d["rcpt:rcpt@example.net"].code == 250 and d["eod"].code == 250, d
    assert sl.alive()
    m = plugkit.metrics(stats)
    assert plugkit.metric_value(m, "sluice_state_keys") == 2, m
    assert plugkit.metric_value(m, "sluice_state_evictions_total") >= 3, m
    # per message: GET (cancelled), INCR, GET, SET, SISMEMBER, SADD
    assert plugkit.metric_value(m, "sluice_state_operations_total") == 18, m
    assert plugkit.metric_value(m, "sluice_state_bytes") > 0, m


def test_bad_state_section_names_file_and_line(tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:2525\n[upstream]\nservers = 127.0.0.1:25\n"
                    "[state]\nbackend = memcached\nmax_memory = lots\n")
    r = harness.run_sluice(["--check", "-c", str(conf)])
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "s.conf:6" in out and "backend" in out, out
    assert "s.conf:7" in out and "max_memory" in out, out


# ---- Redis: state shared by several instances ---------------------------------------------


def test_redis_counter_shared_by_two_instances(fake, sluice_factory, redis):
    """Two sluice instances on one Redis count one client's recipients
    together: with limit 3, the fourth recipient is refused whichever
    instance it reaches; the keys carry the prefix, the instance name and a
    TTL from the window."""
    state = {"backend": "redis", "redis": "127.0.0.1:%d" % redis.port}
    conf = ("rl", "stateplug", {"limit": "3", "window_ms": "60000"})
    a = _start(sluice_factory, fake, conf, state=state)
    b = _start(sluice_factory, fake, conf, state=state)
    d = plugkit.send(a.port, rcpts=["r1@example.net", "r2@example.net"])
    assert d["eod"].code == 250, d
    d = plugkit.send(b.port, rcpts=["r3@example.net", "r4@example.net"])
    assert d["rcpt:r3@example.net"].code == 250, d
    assert d["rcpt:r4@example.net"].code == 451, d
    assert "rate limit: 4 recipients" in d["rcpt:r4@example.net"].text
    d = plugkit.send(a.port)
    assert d["rcpt:rcpt@example.net"].code == 451, d
    assert redis.cli("GET", "sluice:rl:rcpt:127.0.0.1") == "5"
    ttl = int(redis.cli("PTTL", "sluice:rl:rcpt:127.0.0.1"))
    assert 0 < ttl <= 60000, ttl
    # the value and the set written through one instance are read by the other
    assert redis.cli("GET", "sluice:rl:last") == "sender@example.com"
    assert redis.cli("SISMEMBER", "sluice:rl:senders", "sender@example.com") == "1"


def test_redis_down_fails_then_recovers(fake, sluice_factory, tmp_path):
    """Redis killed: operations fail at once (-EAGAIN), the plugin's
    failure policy answers (tempfail, 451), nothing hangs; Redis back on the
    same port: sluice reconnects by itself and counting resumes."""
    if not REDIS:
        pytest.skip("redis-server not installed")
    r = Redis(tmp_path / "redis").start()
    try:
        state = {"backend": "redis", "redis": "127.0.0.1:%d" % r.port, "redis_timeout": "300ms"}
        sl = _start(sluice_factory, fake, ("rl", "stateplug", {"limit": "100"}), state=state)
        assert plugkit.send(sl.port)["eod"].code == 250
        r.stop()
        t0 = time.monotonic()
        d = plugkit.send(sl.port)
        assert d["rcpt:rcpt@example.net"].code == 451, d
        assert time.monotonic() - t0 < 3.0
        assert sl.wait_log(r"state: redis .*(connection lost|cannot connect)", 5), sl.output()
        n = len(sl.lines)
        r.start()
        assert sl.wait_log(r"state: redis .* connected", 15, start=n), sl.output()
        deadline = time.monotonic() + 15
        while True:
            d = plugkit.send(sl.port)
            if d.get("eod") and d["eod"].code == 250:
                break
            assert time.monotonic() < deadline, d
            time.sleep(0.3)
        assert sl.alive()
    finally:
        r.stop()


def test_redis_acl_user_and_password_file(fake, sluice_factory, tmp_path):
    """AUTH with an ACL user and a password read from a file; a wrong
    password is refused by Redis, logged, and operations fail (451)."""
    if not REDIS:
        pytest.skip("redis-server not installed")
    r = Redis(tmp_path / "redis", extra=[
        "--user", "default", "off",
        "--user", "sluice", "on", ">s3cret-pass", "~sluice:*", "+@all"]).start()
    try:
        pw = tmp_path / "pw"
        pw.write_text("s3cret-pass\n")
        os.chmod(pw, 0o600)
        state = {"backend": "redis", "redis": "127.0.0.1:%d" % r.port, "redis_user": "sluice",
                 "redis_password_file": str(pw)}
        sl = _start(sluice_factory, fake, ("rl", "stateplug", {"limit": "100"}), state=state)
        assert sl.wait_log(r"state: redis .* connected", 10), sl.output()
        assert plugkit.send(sl.port)["eod"].code == 250
        auth = ("--user", "sluice", "--pass", "s3cret-pass", "--no-auth-warning")
        assert r.cli("GET", "sluice:rl:last", auth=auth) == "sender@example.com"
        bad = tmp_path / "bad"
        bad.write_text("wrong\n")
        state["redis_password_file"] = str(bad)
        sl2 = _start(sluice_factory, fake, ("rl", "stateplug", {"limit": "100"}), state=state)
        assert sl2.wait_log(r"state: redis .*AUTH refused", 10), sl2.output()
        d = plugkit.send(sl2.port)
        assert d["rcpt:rcpt@example.net"].code == 451, d
    finally:
        r.stop()


def test_redis_backend_needs_an_address(tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:2525\n[upstream]\nservers = 127.0.0.1:25\n"
                    "[state]\nbackend = redis\n")
    r = harness.run_sluice(["--check", "-c", str(conf)])
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "s.conf:6" in out and "needs 'redis'" in out, out


def test_redis_auth_refused_is_never_up(fake, sluice_factory, redis, tmp_path):
    """A password for a Redis that has none: AUTH is refused, and the PING
    after it (which Redis answers) must not make the connection usable."""
    pw = tmp_path / "pw"
    pw.write_text("not-needed\n")
    state = {"backend": "redis", "redis": "127.0.0.1:%d" % redis.port,
             "redis_password_file": str(pw)}
    sl = _start(sluice_factory, fake, ("st", "stateplug", {"limit": "100"}), state=state)
    assert sl.wait_log(r"state: redis .*AUTH refused", 10), sl.output()
    time.sleep(1.0)
    d = plugkit.send(sl.port)
    assert d["rcpt:rcpt@example.net"].code == 451, d
    assert not sl.wait_log(r"state: redis .* connected", 0.5), sl.output()
    assert redis.cli("KEYS", "*") == ""


@pytest.mark.parametrize("lines,want", [
    ("backend = redis\nredis = redis.example:6379\n", "s.conf:7: redis address"),
    ("backend = redis\nredis = 127.0.0.1:6379\nredis_user = sluice\n",
     "s.conf:8: 'redis_user' needs 'redis_password_file'"),
])
def test_redis_settings_checked(tmp_path, lines, want):
    conf = tmp_path / "s.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:2525\n[upstream]\nservers = 127.0.0.1:25\n"
                    "[state]\n" + lines)
    r = harness.run_sluice(["--check", "-c", str(conf)])
    out = r.stdout + r.stderr
    assert r.returncode != 0 and want in out, out


def _stats_json(port):
    import json
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/stats" % port, timeout=5) as r:
        return json.loads(r.read().decode())


def _wait_metric(port, name, want, timeout):
    deadline = time.monotonic() + timeout
    while True:
        m = plugkit.metrics(port)
        if plugkit.metric_value(m, name) == want:
            return m
        assert time.monotonic() < deadline, (name, want, m)
        time.sleep(0.1)


def test_redis_up_gauge_and_reconnects(fake, sluice_factory, tmp_path):
    """sluice_state_redis_up follows the connection: 1 once connected, 0
    within moments of Redis being killed, 1 again when it is back, and
    sluice_state_redis_reconnects_total counts the return; /stats says the
    same under "state". The memory backend exports neither."""
    if not REDIS:
        pytest.skip("redis-server not installed")
    r = Redis(tmp_path / "redis").start()
    try:
        stats = harness.free_port()
        state = {"backend": "redis", "redis": "127.0.0.1:%d" % r.port, "redis_timeout": "300ms"}
        sl = _start(sluice_factory, fake, ("rl", "stateplug", {"limit": "100"}), state=state,
                    stats={"listen": "127.0.0.1:%d" % stats})
        m = _wait_metric(stats, "sluice_state_redis_up", 1, 5)
        assert plugkit.metric_value(m, "sluice_state_redis_reconnects_total") == 0, m
        assert "# TYPE sluice_state_redis_up gauge" in m, m
        js = _stats_json(stats)["state"]
        assert js["redis_up"] == 1 and js["redis_reconnects"] == 0, js
        r.stop()
        _wait_metric(stats, "sluice_state_redis_up", 0, 5)
        assert _stats_json(stats)["state"]["redis_up"] == 0
        r.start()
        m = _wait_metric(stats, "sluice_state_redis_up", 1, 15)
        assert plugkit.metric_value(m, "sluice_state_redis_reconnects_total") == 1, m
        js = _stats_json(stats)["state"]
        assert js["redis_up"] == 1 and js["redis_reconnects"] == 1, js
        assert plugkit.send(sl.port)["eod"].code == 250
    finally:
        r.stop()
    mem_stats = harness.free_port()
    sl = _start(sluice_factory, fake, ("rl", "stateplug", {"limit": "100"}),
                stats={"listen": "127.0.0.1:%d" % mem_stats})
    m = plugkit.metrics(mem_stats)
    assert "sluice_state_redis_up" not in m, m
    assert "redis_up" not in _stats_json(mem_stats)["state"]


def test_mget_and_mincr(fake, sluice_factory, backend):
    """MINCR adds to several counters in one step, once per guard key (here
    one per sender); MGET reads several keys in one call, absent keys and a
    set as absent; an MGET of no keys is refused (the plugin aborts
    otherwise). Same answers from both backends."""
    sl = _start(sluice_factory, fake, ("st", "stateplug", {"limit": "100", "multi": "yes"}),
                state=backend)
    for sender in ("ann@example.com", "ann@example.com", "bob@example.com"):
        assert plugkit.send(sl.port, mail_from=sender)["eod"].code == 250
    msgs = fake.wait_messages(3)
    got = [plugkit.header_block(m.data) for m in msgs]
    assert b"X-State-Multi: applied=1 1 2 - -" in got[0], got[0]
    assert b"X-State-Multi: applied=0 1 2 - -" in got[1], got[1]
    assert b"X-State-Multi: applied=1 2 4 - -" in got[2], got[2]
    assert sl.alive()


def test_sigterm_exits_while_redis_is_up(fake, sluice_factory, redis):
    """SIGTERM ends the daemon while it is connected to a Redis that stays
    up (the connection held the event loop: "sluice stopped" was logged and
    the process stayed until killed); a state operation in the last session
    does not change that."""
    state = {"backend": "redis", "redis": "127.0.0.1:%d" % redis.port}
    sl = _start(sluice_factory, fake, ("rl", "stateplug", {"limit": "3", "window_ms": "60000"}),
                state=state)
    assert plugkit.send(sl.port)["eod"].code == 250
    sl.signal(signal.SIGTERM)
    rc = sl.wait_exit(10)
    assert rc == 0, "sluice did not exit within 10 s of SIGTERM:\n" + sl.output()
    assert redis.cli("PING") == "PONG"


@pytest.mark.parametrize("bad", [" 5", "012", "0x10", "1e3", "+5", "5.0", "-0"])
def test_redis_mincr_refuses_what_incrby_refuses_before_any_write(fake, sluice_factory, redis,
                                                                  bad):
    """MINCR is all or none in Redis too: a counter holding a string that
    Lua's tonumber takes but INCRBY refuses must fail the check before the
    first write (it failed midway: m:a stayed incremented and the guard was
    never set, so every retry counted again)."""
    state = {"backend": "redis", "redis": "127.0.0.1:%d" % redis.port}
    sl = _start(sluice_factory, fake, ("st", "stateplug", {"limit": "100", "multi": "yes"}),
                state=state)
    redis.cli("SET", "sluice:st:m:a", "10")
    redis.cli("SET", "sluice:st:m:b", bad)
    for _ in range(2):
        plugkit.send(sl.port, mail_from="ann@example.com")
    assert redis.cli("GET", "sluice:st:m:a") == "10"
    assert redis.cli("GET", "sluice:st:m:b") == bad.strip()  # redis-cli's output, stripped
    assert redis.cli("EXISTS", "sluice:st:g:ann@example.com") == "0"
    assert sl.alive()


@pytest.mark.parametrize("start,ok", [("9007199254740990", True), ("9007199254740991", False),
                                      ("9007199254740992", False), ("-9007199254740993", False),
                                      ("90071992547409921", False)])
def test_redis_mincr_limit_is_exact(fake, sluice_factory, redis, start, ok):
    """The +-2^53 limit of MINCR is checked exactly: 2^53-1 + 2 rounds to
    2^53 in a double and slipped through (Redis then held 2^53+1)."""
    state = {"backend": "redis", "redis": "127.0.0.1:%d" % redis.port}
    sl = _start(sluice_factory, fake, ("st", "stateplug", {"limit": "100", "multi": "yes"}),
                state=state)
    redis.cli("SET", "sluice:st:m:b", start)
    plugkit.send(sl.port, mail_from="ann@example.com")
    want = str(int(start) + 2) if ok else start
    assert redis.cli("GET", "sluice:st:m:b") == want
    assert redis.cli("GET", "sluice:st:m:a") == ("1" if ok else "")
    assert sl.alive()


@pytest.mark.parametrize("size,ok", [(65536, True), (65537, False)])
def test_redis_mget_value_over_the_limit_is_an_error(fake, sluice_factory, redis, size, ok):
    """A value over STATE_VALUE_MAX (64 KiB) in an MGET answer (another
    writer, or a hostile Redis) is an error, not copied whole on the loop
    thread and handed to the plugin; one at the limit is a value."""
    state = {"backend": "redis", "redis": "127.0.0.1:%d" % redis.port}
    sl = _start(sluice_factory, fake, ("st", "stateplug", {"limit": "100", "multi": "yes"}),
                state=state)
    redis.cli("SET", "sluice:st:m:none", "x" * size)
    d = plugkit.send(sl.port, mail_from="ann@example.com")
    if ok:
        assert d["eod"].code == 250, d
        head = plugkit.header_block(fake.wait_messages(1)[0].data)
        head = re.sub(rb"\r\n(?=[ \t])", b"", head)  # unfolded
        assert b"X-State-Multi: applied=1 1 2 xxxx" in head, head
    else:
        # the plugin's MGET failed: its failure policy (tempfail) answers
        assert d["eod"].code == 451, d
    assert sl.alive()
