# SPDX-License-Identifier: GPL-2.0-or-later
"""The plugins' shared state (api->state_call, [state]) with the in-process
store, driven through tests/plugins/stateplug.c: a recipient counter over a
window answers 451 4.7.0 past its limit and starts again when the window
ends; values and sets outlive the session that wrote them; two instances
of one plugin keep their own keys; callbacks never run inside state_call()
and a cancelled call never calls back (the plugin aborts the daemon
otherwise); a bad [state] section is refused with its file and line."""
import time

import harness
import plugkit


def _start(sluice_factory, fake, *instances, state=None, stats=None):
    sections = plugkit.chain_sections(*instances)
    if state:
        sections["state"] = state
    return sluice_factory(fake.port, extra_sections=sections, stats=stats)


def test_counter_limit_and_window(fake, sluice_factory):
    sl = _start(sluice_factory, fake, ("rl", "stateplug", {"limit": "3", "window_ms": "1500"}))
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


def test_values_and_sets_outlive_the_session(fake, sluice_factory):
    sl = _start(sluice_factory, fake, ("st", "stateplug", {"limit": "100"}))
    assert plugkit.send(sl.port, mail_from="ann@example.com")["eod"].code == 250
    assert plugkit.send(sl.port, mail_from="bob@example.com")["eod"].code == 250
    assert plugkit.send(sl.port, mail_from="ann@example.com")["eod"].code == 250
    msgs = fake.wait_messages(3)
    heads = [m.data.split(b"\r\n\r\n", 1)[0] for m in msgs]
    assert b"X-State-Last: none" in heads[0] and b"X-State-Seen: no" in heads[0], heads[0]
    assert b"X-State-Last: ann@example.com" in heads[1] and b"X-State-Seen: no" in heads[1]
    assert b"X-State-Last: bob@example.com" in heads[2] and b"X-State-Seen: yes" in heads[2]
    assert sl.alive()


def test_value_ttl(fake, sluice_factory):
    sl = _start(sluice_factory, fake, ("st", "stateplug", {"last_ttl_ms": "500"}))
    assert plugkit.send(sl.port, mail_from="ann@example.com")["eod"].code == 250
    time.sleep(0.7)
    assert plugkit.send(sl.port, mail_from="bob@example.com")["eod"].code == 250
    msgs = fake.wait_messages(2)
    assert b"X-State-Last: none" in msgs[1].data, msgs[1].data[:400]


def test_instances_keep_their_own_keys(fake, sluice_factory):
    """Two instances of the plugin, each limit 3: were the keys shared,
    every recipient would count twice and the second would be refused."""
    sl = _start(sluice_factory, fake, ("one", "stateplug", {"limit": "3"}),
                ("two", "stateplug", {"limit": "3"}))
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
