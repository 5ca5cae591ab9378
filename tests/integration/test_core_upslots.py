# SPDX-License-Identifier: GPL-2.0-or-later
"""The upstream session pool (proxy/upslot.c): clients that say MAIL and
then idle must not take every session of the MTA behind. [upstream]
max_sessions bounds what sluice holds, max_sessions_per_ip one address's
share; when someone waits, a session is taken back from a client outside
a transaction, or from one idle inside a transaction for reclaim_idle
(421 4.4.2); a client that waits queue_timeout in vain hears 451 4.4.5."""

import time

import harness
import plugkit
from harness import Client, ConnectionClosed, transaction


def _sluice(sluice_factory, up_port, **upstream):
    stats_port = harness.free_port()
    sl = sluice_factory(up_port, upstream=upstream, stats={"listen": "127.0.0.1:%d" % stats_port})
    return sl, stats_port


def _open_tx(port, source=None):
    """A client inside a transaction (MAIL and RCPT accepted), then idle."""
    c = Client(port, source=source, timeout=10)
    c.greeting()
    c.ehlo("idle.test")
    c.expect("MAIL FROM:<idle@example.com>", 250)
    c.expect("RCPT TO:<rcpt@example.net>", 250)
    return c


def _events(stats_port):
    m = plugkit.metrics(stats_port)
    return {e: plugkit.metric_value(m, "sluice_upstream_session_events_total", {"event": e})
            for e in ("wait", "expired", "reclaimed_idle", "reclaimed_in_transaction")}, m


def test_idle_transactions_give_way(fake, sluice_factory):
    """Two clients hold both sessions inside a transaction and idle; a third
    client's MAIL waits, gets a session once they have idled reclaim_idle,
    and its message is delivered; the one idle longest hears 421 4.4.2,
    the other keeps its transaction."""
    sl, stats_port = _sluice(sluice_factory, fake.port, max_sessions="2",
                             reclaim_idle="1s", queue_timeout="20s")
    idle = [_open_tx(sl.port) for _ in range(2)]
    with Client(sl.port, timeout=15) as c:
        c.greeting()
        c.ehlo()
        t0 = time.monotonic()
        assert transaction(c, mail_from="busy@example.com").code == 250
        took = time.monotonic() - t0
        assert 0.7 < took < 5, "MAIL waited %.1f s" % took
    # One session was needed, one was taken: from the client idle longest.
    r = idle[0].reply(timeout=5)
    assert r.code == 421 and r.lines[0].startswith("4.4.2"), r
    idle[0].close()
    # The other still holds its transaction and finishes it.
    idle[1].expect("DATA", 354)
    idle[1].send(b"Subject: t\r\n\r\nx\r\n.\r\n")
    assert idle[1].reply().code == 250
    idle[1].close()
    msgs = fake.wait_messages(2)
    assert sorted(m.mail_from for m in msgs) == ["busy@example.com", "idle@example.com"]
    ev, m = _events(stats_port)
    assert ev["wait"] == 1 and ev["reclaimed_in_transaction"] >= 1, m
    assert plugkit.metric_value(m, "sluice_upstream_sessions_waiting") == 0, m


def test_noop_does_not_keep_a_session(fake, sluice_factory):
    """NOOPs every 0.3 s are no progress: the client still loses its
    session to a waiting one after reclaim_idle."""
    sl, _ = _sluice(sluice_factory, fake.port, max_sessions="1", reclaim_idle="1s")
    a = _open_tx(sl.port)
    with Client(sl.port, timeout=15) as b:
        b.greeting()
        b.ehlo()
        b.send("MAIL FROM:<waiter@example.com>\r\n")
        got = None
        deadline = time.monotonic() + 6
        while got is None and time.monotonic() < deadline:
            try:
                r = a.cmd("NOOP", timeout=2)
            except ConnectionClosed:
                break
            if r.code == 421:
                got = r
                break
            assert r.code == 250, r
            time.sleep(0.3)
        assert got is not None and got.lines[0].startswith("4.4.2"), got
        assert b.reply(timeout=5).code == 250
        b.expect("RCPT TO:<rcpt@example.net>", 250)
        b.expect("DATA", 354)
        b.send(b"Subject: t\r\n\r\nx\r\n.\r\n")
        assert b.reply().code == 250
    a.close()
    assert [m.mail_from for m in fake.wait_messages(1)] == ["waiter@example.com"]


def test_idle_between_transactions_loses_nothing(fake, sluice_factory):
    """A client that delivered a message and stays connected keeps no
    session from others: it is taken back without a word to it, and its
    next message opens a new one."""
    sl, stats_port = _sluice(sluice_factory, fake.port, max_sessions="1", reclaim_idle="1h")
    with Client(sl.port, timeout=10) as a:
        a.greeting()
        a.ehlo()
        assert transaction(a, mail_from="first@example.com").code == 250
        with Client(sl.port, timeout=10) as b:
            b.greeting()
            b.ehlo()
            t0 = time.monotonic()
            assert transaction(b, mail_from="second@example.com").code == 250
            assert time.monotonic() - t0 < 3
            b.expect("QUIT", 221)
        # nothing was said to a; it goes on
        assert a.cmd("NOOP").code == 250
        assert transaction(a, mail_from="third@example.com").code == 250
    froms = sorted(m.mail_from for m in fake.wait_messages(3))
    assert froms == ["first@example.com", "second@example.com", "third@example.com"]
    ev, m = _events(stats_port)
    assert ev["reclaimed_idle"] >= 1 and ev["reclaimed_in_transaction"] == 0, m


def test_wait_in_vain_is_451(fake, sluice_factory):
    """The only session is held by a transaction that has not idled long
    enough to be taken: the waiting MAIL hears 451 4.4.5 after
    queue_timeout, and the holder's message still goes through."""
    sl, stats_port = _sluice(sluice_factory, fake.port, max_sessions="1",
                             reclaim_idle="1h", queue_timeout="1s")
    a = _open_tx(sl.port)
    with Client(sl.port, timeout=10) as b:
        b.greeting()
        b.ehlo()
        t0 = time.monotonic()
        r = b.cmd("MAIL FROM:<late@example.com>")
        assert r.code == 451 and r.lines[0].startswith("4.4.5"), r
        assert 0.8 < time.monotonic() - t0 < 4
        # the transaction was given up: a new MAIL is not "nested"
        b.send("RSET\r\n")
        assert b.reply().code == 250
    a.expect("DATA", 354)
    a.send(b"Subject: t\r\n\r\nx\r\n.\r\n")
    assert a.reply().code == 250
    a.close()
    assert [m.mail_from for m in fake.wait_messages(1)] == ["idle@example.com"]
    ev, m = _events(stats_port)
    assert ev["expired"] == 1, m


def test_one_address_has_its_share(fake, sluice_factory):
    """max_sessions_per_ip = 1: a second transaction from 127.0.0.2 waits
    (and hears 451 4.4.5), while 127.0.0.3 goes through at once."""
    sl, _ = _sluice(sluice_factory, fake.port, max_sessions="10", max_sessions_per_ip="1",
                    reclaim_idle="1h", queue_timeout="1s")
    a = _open_tx(sl.port, source="127.0.0.2")
    with Client(sl.port, source="127.0.0.3", timeout=10) as c:
        c.greeting()
        c.ehlo()
        t0 = time.monotonic()
        assert transaction(c, mail_from="other@example.com").code == 250
        assert time.monotonic() - t0 < 2
    with Client(sl.port, source="127.0.0.2", timeout=10) as b:
        b.greeting()
        b.ehlo()
        r = b.cmd("MAIL FROM:<same@example.com>")
        assert r.code == 451 and r.lines[0].startswith("4.4.5"), r
    a.close()
    assert [m.mail_from for m in fake.wait_messages(1)] == ["other@example.com"]


def test_disconnected_waiter_leaves_the_queue(fake, sluice_factory):
    """A client that gives up while waiting is forgotten: the slot freed
    later goes to the next one, and the daemon stays clean (ASan)."""
    sl, stats_port = _sluice(sluice_factory, fake.port, max_sessions="1",
                             reclaim_idle="1h", queue_timeout="20s")
    a = _open_tx(sl.port)
    gone = Client(sl.port, timeout=10)
    gone.greeting()
    gone.ehlo()
    gone.send("MAIL FROM:<gone@example.com>\r\n")
    time.sleep(0.3)
    gone.close()
    with Client(sl.port, timeout=15) as b:
        b.greeting()
        b.ehlo()
        b.send("MAIL FROM:<next@example.com>\r\n")
        time.sleep(0.3)
        a.expect("DATA", 354)
        a.send(b"Subject: t\r\n\r\nx\r\n.\r\n")
        assert a.reply().code == 250
        a.expect("QUIT", 221)
        a.close()
        assert b.reply(timeout=10).code == 250
        b.expect("RCPT TO:<rcpt@example.net>", 250)
        b.expect("DATA", 354)
        b.send(b"Subject: t\r\n\r\nx\r\n.\r\n")
        assert b.reply().code == 250
    froms = [m.mail_from for m in fake.wait_messages(2)]
    assert froms == ["idle@example.com", "next@example.com"]
    deadline = time.monotonic() + 5
    while True:
        ev, m = _events(stats_port)
        if plugkit.metric_value(m, "sluice_upstream_sessions") == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert plugkit.metric_value(m, "sluice_upstream_sessions") == 0, m
    assert ev["wait"] == 2 and ev["expired"] == 0, m
