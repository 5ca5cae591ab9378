# SPDX-License-Identifier: GPL-2.0-or-later
"""The client's name on the loop's resolver (proxy/dns.c): a reverse zone
that never answers must not hold greetings up, and the outcome of lookups
is visible on /metrics. DNS goes to a responder on 127.0.0.1 only
(dnsstub.py, named by [server] dns_servers); clients connect from
127.0.0.2/3, which /etc/hosts does not name."""

import time

import harness
import plugkit
from dnsstub import DNSStub
from harness import Client, transaction


def _sluice(sluice_factory, up_port, dns, **server):
    stats_port = harness.free_port()
    srv = {"reverse_dns": "yes", "dns_servers": "127.0.0.1:%d" % dns.port}
    srv.update(server)
    sl = sluice_factory(up_port, server=srv, stats={"listen": "127.0.0.1:%d" % stats_port})
    return sl, stats_port


def test_silent_reverse_zone_does_not_starve_greetings(fake, sluice_factory):
    """Twelve connect-and-close from an address whose PTR never gets an
    answer, then one more client: its greeting comes within rdns_wait (2 s)
    plus slack, not after the queued lookups of clients long gone."""
    dns = DNSStub(silent={"PTR"})
    try:
        sl, stats_port = _sluice(sluice_factory, fake.port, dns)
        for _ in range(12):
            c = Client(sl.port, source="127.0.0.2", timeout=5)
            c.close()
        t0 = time.monotonic()
        with Client(sl.port, source="127.0.0.2", timeout=10) as c:
            assert c.greeting().code == 220
            took = time.monotonic() - t0
            assert took < 3.0, "greeting after %.1f s" % took
            c.ehlo("client.test")
            assert transaction(c).code == 250
        m = plugkit.metrics(stats_port)
        timeouts = plugkit.metric_value(m, "sluice_dns_requests_total", {"outcome": "timeout"})
        assert timeouts and timeouts >= 1, m
        # The lookups for one address share one query on the network (c-ares
        # may retransmit it once): the silent zone is not hammered either.
        assert plugkit.metric_value(m, "sluice_dns_requests_total", {"outcome": "query"}) == 1, m
        assert plugkit.metric_value(m, "sluice_dns_requests_total", {"outcome": "joined"}) == 12, m
        assert 1 <= dns.count("PTR") <= 2, dns.queries
    finally:
        dns.close()


def test_forward_confirmed_name_reaches_upstream(fake_factory, sluice_factory):
    """PTR then A from the responder: the confirmed name is XCLIENT NAME;
    the second connection from the address is answered from the cache."""
    dns = DNSStub({("PTR", "3.0.0.127.in-addr.arpa"): "client3.example.test",
                   ("A", "client3.example.test"): "127.0.0.3"})
    try:
        up = fake_factory(xclient=True)
        sl, stats_port = _sluice(sluice_factory, up.port, dns)
        for _ in range(2):
            with Client(sl.port, source="127.0.0.3") as c:
                c.greeting()
                c.ehlo("client.test")
                assert transaction(c).code == 250
        assert up.tx_sessions[0].xclient.get("NAME") == "client3.example.test", \
            up.tx_sessions[0].command_strs()
        assert dns.queries == [("PTR", "3.0.0.127.in-addr.arpa"), ("A", "client3.example.test")]
        m = plugkit.metrics(stats_port)
        assert plugkit.metric_value(m, "sluice_dns_requests_total", {"outcome": "cache_hit"}) == 2
    finally:
        dns.close()


def _long_name(tag, n=250):
    """A valid host name of n octets: labels of up to 63."""
    labels, left = [], n
    while left > 0:
        size = min(63, left)
        labels.append((tag + "x" * 63)[:size])
        left -= size + 1
    name = ".".join(labels)
    return name[:n].rstrip(".")


def test_xforward_long_names_take_two_lines(fake_factory, sluice_factory):
    """XFORWARD goes as one command while it fits a command line (510
    octets before the CRLF). A confirmed reverse name and a HELO of 250
    octets each do not fit together: the HELO goes in an XFORWARD of its
    own, both right ahead of the MAIL, and the MTA learns every attribute.
    The same name with a short HELO fits one line."""
    name = _long_name("n")
    long_helo = _long_name("h")
    assert len(name) > 240 and len(long_helo) > 240
    dns = DNSStub({("PTR", "3.0.0.127.in-addr.arpa"): name, ("A", name): "127.0.0.3"})
    try:
        up = fake_factory(xforward=True)
        sl, _ = _sluice(sluice_factory, up.port, dns)
        for helo in (long_helo, "short.example"):
            with Client(sl.port, source="127.0.0.3") as c:
                c.greeting()
                c.ehlo(helo)
                assert transaction(c).code == 250
        assert len(up.wait_messages(2)) == 2
        cmds = [ln for s in up.tx_sessions for ln in s.command_strs()]
        mails = [i for i, ln in enumerate(cmds) if ln.startswith("MAIL")]
        assert len(mails) == 2, cmds
        first, second = mails
        assert cmds[first - 2].startswith("XFORWARD ADDR=127.0.0.3 "), cmds
        assert cmds[first - 2].endswith(" NAME=" + name), cmds
        assert cmds[first - 1] == "XFORWARD HELO=" + long_helo, cmds
        assert len(cmds[first - 2]) <= 510 and len(cmds[first - 1]) <= 510
        assert cmds[second - 1].startswith("XFORWARD ADDR=127.0.0.3 "), cmds
        assert cmds[second - 1].endswith(" NAME=%s HELO=short.example" % name), cmds
        assert not cmds[second - 2].startswith("XFORWARD"), cmds
        for s in up.tx_sessions:
            assert s.xforward.get("NAME") == name, s.command_strs()
    finally:
        dns.close()


def test_reverse_name_does_not_pass_to_the_next_client(fake_factory, sluice_factory):
    """An upstream that offers XCLIENT again keeps a connection for the next
    client; like Postfix it takes a real NAME as the reverse name too and
    keeps that on NAME=[UNAVAILABLE]. A named client, then one without a
    name on the same connection: the second's reverse name is not the
    first's (checks that rely on it would judge one client as the other)."""
    dns = DNSStub({("PTR", "3.0.0.127.in-addr.arpa"): "client3.example.test",
                   ("A", "client3.example.test"): "127.0.0.3"})
    try:
        up = fake_factory(xclient=True, xclient_again=True)
        sl, stats_port = _sluice(sluice_factory, up.port, dns)
        for src in ("127.0.0.3", "127.0.0.2"):
            with Client(sl.port, source=src) as c:
                c.greeting()
                c.ehlo("client.test")
                assert transaction(c).code == 250
            time.sleep(0.3)
        txs = up.tx_sessions
        assert len(txs) == 1, [t.command_strs() for t in txs]
        first, second = txs[0].xclient_at_mail
        assert first["NAME"] == "client3.example.test"
        assert first["REVERSE_NAME"] == "client3.example.test"
        assert second["ADDR"] == "127.0.0.2" and second["NAME"] == "[UNAVAILABLE]"
        assert second.get("REVERSE_NAME") == "[UNAVAILABLE]", txs[0].command_strs()
    finally:
        dns.close()


def test_unconfirmed_name_is_not_used(fake_factory, sluice_factory):
    """A PTR whose name points elsewhere gives no name: [UNAVAILABLE]."""
    dns = DNSStub({("PTR", "3.0.0.127.in-addr.arpa"): "liar.example.test",
                   ("A", "liar.example.test"): "192.0.2.1"})
    try:
        up = fake_factory(xclient=True)
        sl, _ = _sluice(sluice_factory, up.port, dns)
        with Client(sl.port, source="127.0.0.3") as c:
            c.greeting()
            c.ehlo("client.test")
            assert transaction(c).code == 250
        assert up.tx_sessions[0].xclient.get("NAME") == "[UNAVAILABLE]"
    finally:
        dns.close()


def _dnsplug(sluice_factory, fake, dns, **keys):
    conf = {"name": "policy.test", "servers": "127.0.0.1:%d" % dns.port}
    conf.update(keys)
    return plugkit.start(sluice_factory, fake, ("d", "dnsplug", conf))


def test_sdk_dns_query_answers_on_the_loop(fake, sluice_factory):
    """api->dns_query from a MAIL hook: the TXT answer decides the verdict;
    the callback never runs inside dns_query(), a cancelled lookup never
    calls back (tests/plugins/dnsplug.c aborts the daemon otherwise), and
    from a blocking hook on the pool dns_query refuses (NULL)."""
    dns = DNSStub({("TXT", "policy.test"): "block this sender"})
    try:
        sl = _dnsplug(sluice_factory, fake, dns)
        d = plugkit.send(sl.port)
        assert d["mail"].code == 550 and "blocked by TXT" in d["mail"].text, d
        dns.records = {}
        # Cached for its TTL: still blocked without a new query.
        n = dns.count("TXT")
        assert plugkit.send(sl.port)["mail"].code == 550
        assert dns.count("TXT") == n
        assert sl.alive()
    finally:
        dns.close()
    dns = DNSStub({("TXT", "policy.test"): "all fine"})
    try:
        sl = _dnsplug(sluice_factory, fake, dns)
        d = plugkit.send(sl.port)
        assert d["eod"].code == 250, d
        got = fake.wait_messages(1)
        assert b"X-Dns-Pool: refused" in got[-1].data, got[-1].data[:300]
    finally:
        dns.close()


def test_sdk_dns_query_deadline(fake, sluice_factory):
    """A server that never answers: the plugin's own deadline (300 ms)
    gives SLUICE_DNS_TIMEOUT, and its 451 reaches the client in time."""
    dns = DNSStub(silent={"TXT"})
    try:
        sl = _dnsplug(sluice_factory, fake, dns, timeout_ms="300")
        t0 = time.monotonic()
        d = plugkit.send(sl.port)
        took = time.monotonic() - t0
        assert d["mail"].code == 451 and "lookup failed: timeout" in d["mail"].text, d
        assert took < 2.0, "answer after %.1f s" % took
    finally:
        dns.close()
