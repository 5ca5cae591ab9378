# SPDX-License-Identifier: GPL-2.0-or-later
"""Upstream connections reused across client sessions (issue 16), against a
real private Postfix in the production shape: only sluice (127.0.0.1) may
send XCLIENT and XFORWARD, one internal host (127.0.0.2) may relay, nobody
else.

- With XCLIENT, Postfix takes a connection as the named client's for good
  (it refuses a second XCLIENT for an address outside its authorized hosts
  and stops offering it): such a connection must never serve the next
  client, or an outsider's mail would go out as the internal host's (an
  open relay). Each session gets its own connection.
- With XFORWARD only (xclient = no), the client is named per transaction:
  connections are reused, and Postfix still logs each message's own client.
"""

import time

import pytest

import harness
import plugkit
import postfix as pfmod
from harness import Client


def production_shape(xclient_hosts):
    """A private Postfix where xclient_hosts may send XCLIENT (and
    127.0.0.1 XFORWARD), 127.0.0.2 may relay, nobody else."""
    return pfmod.PrivatePostfix(extra={
        "smtpd_authorized_xclient_hosts": xclient_hosts,
        "smtpd_authorized_xforward_hosts": "127.0.0.1",
        "mynetworks": "127.0.0.2/32",
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
        "smtpd_recipient_restrictions": "permit",
        "default_transport": "discard",
    })


@pytest.fixture(scope="module")
def pf():
    why = pfmod.unavailable()
    if why:
        pytest.skip(why)
    inst = production_shape("127.0.0.1")
    inst.start()
    yield inst
    inst.stop()


def one(port, src, helo, rcpt, subject):
    """One client connection, one message: (RCPT code, final code or None)."""
    with Client(port, source=src) as c:
        c.greeting()
        c.ehlo(helo)
        c.expect("MAIL FROM:<a@example.com>", 250)
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        final = None
        if r.code == 250:
            c.expect("DATA", 354)
            c.send(b"Subject: %s\r\n\r\nbody\r\n.\r\n" % subject.encode())
            final = c.reply().code
        c.cmd("QUIT")
        return r.code, final


def events(stats, until=None, timeout=5.0):
    """The upstream connection counters; with `until` (a predicate on
    them), read again until it holds or `timeout` runs out: a session ends
    its upstream connection after the client has its 221."""
    deadline = time.monotonic() + timeout
    while True:
        m = plugkit.metrics(stats)
        ev = {e: plugkit.metric_value(m, "sluice_upstream_connections_total", {"event": e})
              for e in ("opened", "reused", "not_kept")}
        if until is None or until(ev) or time.monotonic() > deadline:
            return ev
        time.sleep(0.05)


@pytest.mark.parametrize("reuse", ["0", "16"])
def test_xclient_identity_never_passes_to_the_next_client(pf, sluice_factory, reuse):
    """The reviewer's reproducer: an internal host relays, then an outsider
    tries to; the outsider is refused whatever reuse_max_idle says."""
    stats = harness.free_port()
    front = sluice_factory(pf.port, upstream={"reuse_max_idle": reuse},
                           stats={"listen": "127.0.0.1:%d" % stats})
    assert one(front.port, "127.0.0.2", "internal.test", "out@outside.example", "a") == (250, 250)
    time.sleep(0.3)  # a pooled connection would be idle now
    rc = one(front.port, "127.0.0.3", "outsider.test", "victim@outside.example", "b")
    assert rc[0] == 554, (rc, pf.log_tail(30))
    assert "Relay access denied" in pf.wait_log("Relay access denied")
    ev = events(stats, until=(lambda e: e["not_kept"] == 2) if reuse != "0" else None)
    assert ev["reused"] == 0 and ev["opened"] == 2, ev
    if reuse != "0":
        assert ev["not_kept"] == 2, ev  # XCLIENT was sent on both


def test_xforward_connections_are_reused(pf, sluice_factory):
    """xclient = no: Postfix is told each client per transaction with
    XFORWARD; one connection serves all three sessions, Postfix's log names
    each message's own client, and relay rights stay Postfix's own (sluice
    connects from 127.0.0.1, which is not in mynetworks)."""
    stats = harness.free_port()
    front = sluice_factory(pf.port, upstream={"xclient": "no"},
                           stats={"listen": "127.0.0.1:%d" % stats})
    for src in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        assert one(front.port, src, "h%s.test" % src[-1], "local@example.net", src) == (250, 250)
        time.sleep(0.2)
    # An outsider's relay attempt is refused on the reused connection too.
    assert one(front.port, "127.0.0.3", "x.test", "victim@outside.example", "x")[0] == 554
    ev = events(stats)
    assert ev["opened"] == 1 and ev["reused"] == 3, ev
    deadline = time.time() + 5
    while time.time() < deadline:
        log = pf.log_tail(200)
        if all("client=unknown[%s]" % a in log for a in ("127.0.0.2", "127.0.0.3", "127.0.0.4")):
            break
        time.sleep(0.2)
    for a in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        assert "client=unknown[%s]" % a in log, log


def test_xclient_reused_only_as_postfix_allows(sluice_factory):
    """A Postfix that lets the loopback network send XCLIENT (127.0.0.0/8
    authorized, as a site that lists its client networks) offers XCLIENT
    again after one: sluice keeps the connection and tells the next client
    with a new XCLIENT. The relay right of the internal host (127.0.0.2)
    does not pass to the outsider (127.0.0.3) on that reused connection,
    and Postfix logs each message under its own client."""
    why = pfmod.unavailable()
    if why:
        pytest.skip(why)
    inst = production_shape("127.0.0.0/8")
    inst.start()
    try:
        stats = harness.free_port()
        front = sluice_factory(inst.port, stats={"listen": "127.0.0.1:%d" % stats})
        assert one(front.port, "127.0.0.2", "internal.test", "out@outside.example", "a") == (250, 250)
        time.sleep(0.3)
        rc = one(front.port, "127.0.0.3", "outsider.test", "victim@outside.example", "b")
        assert rc[0] == 554, (rc, inst.log_tail(30))
        assert "Relay access denied" in inst.wait_log("Relay access denied")
        assert one(front.port, "127.0.0.4", "other.test", "local@example.net", "c") == (250, 250)
        ev = events(stats)
        assert ev["reused"] >= 1, ev
        deadline = time.time() + 5
        while time.time() < deadline:
            log = inst.log_tail(200)
            if "client=unknown[127.0.0.4]" in log:
                break
            time.sleep(0.2)
        assert "client=unknown[127.0.0.2]" in log and "client=unknown[127.0.0.4]" in log, log
    finally:
        inst.stop()
