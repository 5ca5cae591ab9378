# SPDX-License-Identifier: GPL-2.0-or-later
"""The greylist plugin against the real daemon, with the in-process store
and with a real redis-server (the same tests on both): an unknown triplet
gets 451 4.7.1, a retry before the delay too, a retry after it passes and
the triplet stays passed; another recipient is a new triplet; a network
whose triplets passed auto_allow times is let through at once;
clients in exempt_networks are never greylisted; a client network starts at
most max_pending new triplets per retry_window, so random senders cannot
flood the shared store. With Redis, a retry through another sluice
instance passes, and a Redis that is gone applies on_state_error."""
import os
import time

import pytest

import harness
import plugkit
from redisfix import REDIS, Redis, backend  # noqa: F401 (a fixture)

GL_SO = os.path.abspath(os.path.join(plugkit.BUILD, "plugins", "greylist.so"))



def _start(sluice_factory, fake, state, stats=None, **keys):
    conf = {"delay": "1s", "exempt_networks": "10.0.0.0/8", "auto_allow": "0"}
    conf.update(keys)
    sections = plugkit.chain_sections(("gl", GL_SO, conf))
    if state:
        sections["state"] = state
    sl = sluice_factory(fake.port, extra_sections=sections, stats=stats)
    if state and state.get("backend") == "redis":
        assert sl.wait_log(r"state: redis .* connected", 10), sl.output()
    return sl


def _rcpt(port, rcpt="bob@example.net", sender="ann@example.com"):
    d = plugkit.send(port, mail_from=sender, rcpts=(rcpt,))
    return d["rcpt:" + rcpt]


def test_first_attempt_greylisted_retry_passes(fake, sluice_factory, backend):
    sl = _start(sluice_factory, fake, backend)
    r = _rcpt(sl.port)
    assert r.code == 451 and r.enh == "4.7.1" and "Greylisted" in r.text, r
    assert "try again in 1 seconds" in r.text, r
    assert _rcpt(sl.port).code == 451  # before the delay
    time.sleep(1.1)
    assert _rcpt(sl.port).code == 250
    assert _rcpt(sl.port).code == 250  # stays passed
    # another recipient, another sender: new triplets
    assert _rcpt(sl.port, rcpt="carol@example.net").code == 451
    assert _rcpt(sl.port, sender="dave@example.com").code == 451
    # the case of the addresses does not make a new triplet
    assert _rcpt(sl.port, rcpt="BOB@Example.NET", sender="Ann@EXAMPLE.com").code == 250
    assert sl.wait_log(r"plugin=gl greylist passed after 1s: t:127\.0\.0\.0/24:ann@example\.com")


def test_auto_allow_after_passes(fake, sluice_factory, backend):
    sl = _start(sluice_factory, fake, backend, auto_allow="2")
    for rcpt in ("a@example.net", "b@example.net"):
        assert _rcpt(sl.port, rcpt=rcpt).code == 451
    time.sleep(1.1)
    for rcpt in ("a@example.net", "b@example.net"):
        assert _rcpt(sl.port, rcpt=rcpt).code == 250
    # two passes from 127.0.0.0/24: a new triplet is let through at once
    assert _rcpt(sl.port, rcpt="new@example.net").code == 250


def _rcpts_from(port, senders, rcpt="victim@example.net", source=None):
    """One session, one transaction per sender (RSET after each): the
    RCPT replies in order."""
    got = []
    with harness.Client(port, source=source, timeout=15) as c:
        c.greeting()
        c.ehlo()
        for s in senders:
            c.expect("MAIL FROM:<%s>" % s, 250)
            got.append(c.cmd("RCPT TO:<%s>" % rcpt))
            c.expect("RSET", 250)
    return got


def test_pending_triplets_capped_per_network(fake, sluice_factory, backend, tmp_path):
    """A client sending recipients with made-up senders starts at most
    max_pending waiting triplets per network; past that it hears 451 4.7.1
    (flood) and nothing is written. In memory, with a small [state]
    max_keys, the flood therefore pushes out no passed triplet; waiting
    triplets retried after the delay still pass; another network has its
    own share."""
    state = dict(backend)
    memory = not state
    if memory:
        state["max_keys"] = "30"  # an LRU the flood below would overrun
    stats = harness.free_port()
    sl = _start(sluice_factory, fake, state, stats={"listen": "127.0.0.1:%d" % stats},
                max_pending="5", ipv4_prefix="32")
    # A legitimate triplet passes (its first attempt is one of the 5).
    assert _rcpt(sl.port).code == 451
    time.sleep(1.1)
    assert _rcpt(sl.port).code == 250
    # The flood: 40 new triplets from 127.0.0.1.
    senders = ["s%d@spam.test" % i for i in range(40)]
    got = _rcpts_from(sl.port, senders)
    assert all(r.code == 451 and r.enh == "4.7.1" for r in got), got
    grey = [r for r in got if "Greylisted" in r.text]
    flood = [r for r in got if "Too many unconfirmed deliveries" in r.text]
    assert len(grey) == 4 and len(flood) == 36, got
    assert got[:4] == grey, got  # the first four, then refusals
    assert sl.wait_log(r"plugin=gl network 127\.0\.0\.1/32 started max_pending \(5\) new "
                       r"triplets within retry_window")
    # What the store holds: 5 triplets (1 passed, 4 waiting), the pass
    # count and the new-triplet counter; nothing evicted.
    m = plugkit.metrics(stats)
    if memory:
        assert plugkit.metric_value(m, "sluice_state_keys") == 7, m
        assert plugkit.metric_value(m, "sluice_state_evictions_total") == 0, m
    else:
        r = Redis(tmp_path / "cli", port=int(state["redis"].rsplit(":", 1)[1]))
        keys = r.cli("--scan", "--pattern", "sluice:gl:t:*").split()
        assert len(keys) == 5, keys
        assert r.cli("GET", "sluice:gl:c:127.0.0.1/32") == "41"
    assert plugkit.metric_value(m, "sluice_plugin_gl_checks_total", {"result": "flood"}) == 36, m
    # The legitimate triplet is still passed; a waiting one passes after
    # the delay; refused ones were not remembered (still refused, not
    # "retry too early").
    assert _rcpt(sl.port).code == 250
    time.sleep(1.1)
    again = _rcpts_from(sl.port, senders[:5])
    assert [r.code for r in again[:4]] == [250] * 4, again
    assert "Too many unconfirmed deliveries" in again[4].text, again
    # Another network (ipv4_prefix = 32) has its own share.
    other = _rcpts_from(sl.port, ["x@other.test"], source="127.0.0.2")
    assert other[0].code == 451 and "Greylisted" in other[0].text, other


def test_exempt_network_not_greylisted(fake, sluice_factory):
    sl = _start(sluice_factory, fake, {}, exempt_networks="127.0.0.0/8")
    assert _rcpt(sl.port).code == 250


def test_retry_through_another_instance(fake, sluice_factory, tmp_path):
    if not REDIS:
        pytest.skip("redis-server not installed")
    r = Redis(tmp_path / "redis").start()
    try:
        state = {"backend": "redis", "redis": "127.0.0.1:%d" % r.port}
        a = _start(sluice_factory, fake, state)
        b = _start(sluice_factory, fake, state)
        assert _rcpt(a.port).code == 451
        time.sleep(1.1)
        assert _rcpt(b.port).code == 250  # the first attempt went to a
        d = plugkit.send(b.port, mail_from="ann@example.com", rcpts=("bob@example.net",))
        assert d["eod"].code == 250
        assert r.cli("GET", "sluice:gl:t:127.0.0.0/24:ann@example.com:bob@example.net") == "p"
    finally:
        r.stop()


@pytest.mark.parametrize("policy,code", [("open", 250), ("closed", 451)])
def test_redis_gone(fake, sluice_factory, tmp_path, policy, code):
    if not REDIS:
        pytest.skip("redis-server not installed")
    r = Redis(tmp_path / "redis").start()
    state = {"backend": "redis", "redis": "127.0.0.1:%d" % r.port}
    sl = _start(sluice_factory, fake, state, on_state_error=policy)
    r.stop()
    rep = _rcpt(sl.port)
    assert rep.code == code, rep
    if code == 451:
        assert "Greylisting unavailable" in rep.text


@pytest.mark.parametrize("extra,want", [
    ("on_state_error = maybe\n", "s.conf:11: [plugin gl] on_state_error: expected open|closed"),
    ("", "s.conf:10: [plugin gl] retry_window: must be longer than delay"),
    ("max_pending = 0\n", "s.conf:11: [plugin gl] max_pending: 0 is out of range (1..100000)"),
    ("max_pending = 100001\n", "s.conf:11: [plugin gl] max_pending: 100001 is out of range"),
    ("max_pending = many\n", "s.conf:11: [plugin gl] max_pending:"),
])
def test_bad_keys_refused(tmp_path, extra, want):
    conf = tmp_path / "s.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:2525\n[upstream]\nservers = 127.0.0.1:25\n"
                    "[chain]\nplugins = gl\n[plugin gl]\npath = %s\ndelay = 2h\n"
                    "retry_window = 1h\n%s" % (GL_SO, extra))
    r = harness.run_sluice(["--check", "-c", str(conf)])
    out = r.stdout + r.stderr
    assert r.returncode != 0 and want in out, out
