# SPDX-License-Identifier: GPL-2.0-or-later
"""dnsbl plugin end to end: sluice with dnsbl (and spam after it) in front of
a recording fake upstream, lists answered by the loopback DNS responder
(dnsstub.py), never the internet.

The client's address listed in a block list and in an allow list, links
(in a base64 HTML part too) and the From domain in a URI list, each becomes
a symbol in the transaction's record and counts in the spam plugin's score;
answers that are not listings (a resolver's rewrite, a list's "refused"
codes) are ignored and logged; a list that never answers costs at most the
deadline; a transaction that ends while lookups are out frees them;
`sluice --check` names the list file's bad lines.
"""

import base64
import os
import re
import time

import harness
import plugkit
from dnsstub import DNSStub

SPAM_SO = os.path.abspath(os.path.join(plugkit.BUILD, "plugins", "spam.so"))
DNSBL_SO = os.path.abspath(os.path.join(plugkit.BUILD, "plugins", "dnsbl.so"))
RULES = os.path.join(harness.SRC_DIR, "rules", "spam.rules")

LISTS = """\
# test lists
ip   bl.test    T_RCVD_BL      3.0  127.0.0.2
ip   bl.test    T_RCVD_BL_XBL  4.0  127.0.0.4-127.0.0.7
ip   wl.test    T_RCVD_WL     -1.0  127.0.[0-20].1
uri  dbl.test   T_URI_DBL      3.5  127.0.1.2
uri  multi.test T_URI_MULTI    2.0  mask=0x40
"""

CLEAN = (b"From: Alice Example <alice@clean.example>\r\n"
         b"To: Bob <bob@example.net>\r\n"
         b"Subject: Lunch on Thursday\r\n"
         b"Date: Mon, 6 May 2024 10:00:00 +0200\r\n"
         b"Message-ID: <20240506100000.1234@clean.example>\r\n"
         b"MIME-Version: 1.0\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\n"
         b"\r\n"
         b"Hi Bob,\r\n\r\nsee you at noon at the usual place.\r\n\r\nAlice\r\n")


def html_b64_message(links):
    html = "<html><body><p>Offer:</p>%s</body></html>" % "".join(
        '<a href="%s">here</a> ' % u for u in links)
    b64 = base64.encodebytes(html.encode()).replace(b"\n", b"\r\n")
    return (b"From: Shop <news@clean.example>\r\n"
            b"To: bob@example.net\r\n"
            b"Subject: offers\r\n"
            b"Date: Mon, 6 May 2024 10:00:00 +0200\r\n"
            b"Message-ID: <offer.1@clean.example>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/html; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"\r\n" + b64)


def write_lists(tmp_path, text=LISTS, name="t.lists"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def dnsbl_instance(lists, dns, **keys):
    k = {"lists": lists, "dns_servers": "127.0.0.1:%d" % dns.port, "skip_networks": "",
         "lookup_timeout": "1s", "deadline": "2s", "failure": "accept"}
    k.update(keys)
    return ("dnsbl", DNSBL_SO, k)


def spam_instance(**keys):
    k = {"rules": RULES, "header_threshold": "-100", "reject_threshold": "100"}
    k.update(keys)
    return ("spam", SPAM_SO, k)


def tx_line(sl, n):
    """The n-th (1-based) transaction log line (the one with plugins=)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [ln for ln in list(sl.lines) if " plugins=" in ln]
        if len(lines) >= n:
            return lines[n - 1]
        time.sleep(0.05)
    raise AssertionError("no transaction line %d:\n%s" % (n, sl.output()[-3000:]))


def symbols(line):
    m = re.search(r" symbols=(\S+)", line)
    return set(m.group(1).split(",")) if m else set()


def spam_tests(data):
    h = plugkit.header_block(data).decode("utf-8", "replace")
    h = re.sub(r"\r\n[ \t]+", " ", h)
    m = re.search(r"X-Spam-Status: \w+, score=(-?[\d.]+) required=\S+ tests=(\S*)", h)
    assert m, h
    return float(m.group(1)), set(t for t in m.group(2).split(",") if t)


def test_listed_client_links_and_sender(sluice_factory, fake, tmp_path):
    dns = DNSStub({
        ("A", "1.0.0.127.bl.test"): ["127.0.0.2", "127.0.0.4"],
        ("A", "1.0.0.127.wl.test"): "127.0.5.1",
        ("A", "spammy-shop.example.dbl.test"): "127.0.1.2",
        ("A", "tracker.co.uk.multi.test"): "127.0.0.66",
        ("A", "clean.example.dbl.test"): "127.0.1.3",     # listed, but no line means it
    })
    port = harness.free_port()
    try:
        sl = plugkit.start(sluice_factory, fake, dnsbl_instance(write_lists(tmp_path), dns),
                           spam_instance(), stats={"listen": "127.0.0.1:%d" % port})
        msg = html_b64_message(["http://www.spammy-shop.example/buy?x=1",
                                "https://a.spammy-shop.example/y",
                                "http://click.tracker.co.uk/t/123",
                                "http://203.0.113.9/ip-link"])
        d = plugkit.send(sl.port, body=msg)
        assert d["eod"].code == 250, d
        got = fake.wait_messages(1)[-1].data
        score, tests = spam_tests(got)
        want = {"T_RCVD_BL", "T_RCVD_BL_XBL", "T_RCVD_WL", "T_URI_DBL", "T_URI_MULTI"}
        line = tx_line(sl, 1)
        assert want <= symbols(line), line
        # X-Spam-Status names the lists' symbols before the spam rules.
        assert want <= tests, tests
        # The list scores are in the total the spam plugin compared.
        own = float(re.search(r"plugin=spam spam score=(-?[\d.]+)", sl.output()).group(1))
        total = float(re.search(r" score=(-?[\d.]+) symbols=", line).group(1))
        assert abs(score - total) < 0.01 and abs(own - total) < 0.01, (score, total, own)
        lists = 3.0 + 4.0 - 1.0 + 3.5 + 2.0
        assert total >= lists, (total, tests)
        # One query per registrable domain and list, the base64 HTML decoded,
        # the sender's domain asked too, an address link not sent as a domain.
        qs = [n for t, n in dns.queries if t == "A"]
        assert qs.count("spammy-shop.example.dbl.test") == 1, qs
        assert "tracker.co.uk.dbl.test" in qs and "co.uk.dbl.test" not in qs, qs
        assert "clean.example.dbl.test" in qs, qs
        assert not any(n.startswith("203.") or ".113." in n for n in qs if "dbl" in n), qs
        m = plugkit.metrics(port)
        assert plugkit.metric_value(m, "sluice_plugin_dnsbl_listed_total",
                                    {"symbol": "T_URI_DBL"}) == 1, m
        assert plugkit.metric_value(m, "sluice_plugin_dnsbl_lookups_total",
                                    {"result": "listed"}) >= 4, m

        # A clean message from the same client: the ip symbols again (per
        # transaction), no uri symbols.
        d = plugkit.send(sl.port, body=CLEAN)
        assert d["eod"].code == 250, d
        syms = symbols(tx_line(sl, 2))
        assert {"T_RCVD_BL", "T_RCVD_WL"} <= syms and "T_URI_DBL" not in syms, syms
    finally:
        dns.close()


def test_not_listings_are_ignored_and_logged(sluice_factory, fake, tmp_path):
    """A resolver that rewrites NXDOMAIN to its own address, and a list that
    answers 127.255.255.254 ("queries through public resolvers refused"):
    never a listing."""
    dns = DNSStub({
        ("A", "1.0.0.127.bl.test"): "127.255.255.254",
        ("A", "1.0.0.127.wl.test"): "198.51.100.7",
        ("A", "clean.example.dbl.test"): "127.0.1.2",
    })
    port = harness.free_port()
    try:
        sl = plugkit.start(sluice_factory, fake, dnsbl_instance(write_lists(tmp_path), dns),
                           stats={"listen": "127.0.0.1:%d" % port})
        d = plugkit.send(sl.port, body=CLEAN)
        assert d["eod"].code == 250, d
        syms = symbols(tx_line(sl, 1))
        assert syms == {"T_URI_DBL"}, syms
        assert fake.wait_messages(1)
        # log lines reach the test through a reader thread: wait for them
        assert sl.wait_log(r"list bl\.test answers 127\.255\.255\.254", timeout=5), sl.output()
        assert sl.wait_log(r"list wl\.test answers 198\.51\.100\.7", timeout=5), sl.output()
        m = plugkit.metrics(port)
        assert plugkit.metric_value(m, "sluice_plugin_dnsbl_lookups_total",
                                    {"result": "error"}) == 2, m
    finally:
        dns.close()


def test_silent_list_costs_the_deadline_only(sluice_factory, fake, tmp_path):
    """A list that never answers: the message goes on after `deadline`
    (1 s here, lookups 5 s), with the answers that did come."""
    dns = DNSStub({("A", "1.0.0.127.wl.test"): "127.0.0.1"},
                  silent_name=lambda n: n.endswith("bl.test") or n.endswith("multi.test"))
    try:
        sl = plugkit.start(sluice_factory, fake, dnsbl_instance(
            write_lists(tmp_path), dns, lookup_timeout="5s", deadline="1s"))
        t0 = time.monotonic()
        d = plugkit.send(sl.port, body=CLEAN)
        took = time.monotonic() - t0
        assert d["eod"].code == 250, d
        assert 0.9 <= took < 4.0, took
        assert symbols(tx_line(sl, 1)) == {"T_RCVD_WL"}
        assert sl.wait_log("not answered by the deadline", timeout=5), sl.output()[-2000:]
        assert len(fake.wait_messages(1)) == 1
    finally:
        dns.close()


def test_transaction_ends_with_lookups_out(sluice_factory, fake, tmp_path):
    """MAIL starts the client lookups; RSET, a second MAIL and QUIT while
    they are out: they are cancelled with the transaction (ASan/LSan
    builds check the memory), and the daemon stops cleanly."""
    dns = DNSStub({}, silent={"A"})
    try:
        sl = plugkit.start(sluice_factory, fake, dnsbl_instance(write_lists(tmp_path), dns,
                                                                lookup_timeout="5s"))
        for _ in range(3):
            with harness.Client(sl.port) as c:
                c.reply()
                assert c.cmd("EHLO client.test").code == 250
                assert c.cmd("MAIL FROM:<a@clean.example>").code == 250
                assert c.cmd("RSET").code == 250
                assert c.cmd("MAIL FROM:<b@clean.example>").code == 250
                assert c.cmd("QUIT").code == 221
        # Asked at MAIL, before any DATA (the resolver joins equal
        # questions in flight, so fewer than one per MAIL reach the wire).
        assert {n for t, n in dns.queries} == {"1.0.0.127.bl.test", "1.0.0.127.wl.test"}, \
            dns.queries
    finally:
        dns.close()


def test_private_clients_are_not_looked_up(sluice_factory, fake, tmp_path):
    """skip_networks' default holds 127.0.0.0/8: no query about the client
    leaves, the uri lists still work."""
    dns = DNSStub({("A", "clean.example.dbl.test"): "127.0.1.2"})
    try:
        inst = dnsbl_instance(write_lists(tmp_path), dns)
        del inst[2]["skip_networks"]
        sl = plugkit.start(sluice_factory, fake, inst)
        assert plugkit.send(sl.port, body=CLEAN)["eod"].code == 250
        assert symbols(tx_line(sl, 1)) == {"T_URI_DBL"}
        assert not [n for t, n in dns.queries if "127" in n], dns.queries
    finally:
        dns.close()


def test_check_names_bad_lines(tmp_path):
    lists = write_lists(tmp_path, "ip bl.test OK 1\nip bl..test BAD 1\nuri x.test lower 2\n"
                                  "ip bl.test T2 1 10.0.0.2\n", "bad.lists")
    conf = str(tmp_path / "sluice.conf")
    sections = {"server": {"listen": "127.0.0.1:%d" % harness.free_port()},
                "upstream": {"servers": "127.0.0.1:%d" % harness.free_port()},
                "stats": {"listen": "no"}}
    sections.update(plugkit.chain_sections(
        ("dnsbl", DNSBL_SO, {"lists": lists, "dns_servers": "resolver.example"})))
    with open(conf, "w") as f:
        f.write(harness.render_config(sections))
    r = harness.run_sluice(["--check", "-c", conf])
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "dns_servers" in out and "resolver.example" in out, out
    # fix the servers: the list file's own problems, each with its line
    sections["plugin dnsbl"]["dns_servers"] = "127.0.0.1:53"
    with open(conf, "w") as f:
        f.write(harness.render_config(sections))
    r = harness.run_sluice(["--check", "-c", conf])
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "%s:2: \"bl..test\" is not a zone name" % lists in out, out
    assert "%s:3: symbol \"lower\"" % lists in out, out
    assert "%s:4: answer \"10.0.0.2\" is outside 127.0.0.0/8" % lists in out, out


def test_check_accepts_shipped_lists(tmp_path):
    conf = str(tmp_path / "sluice.conf")
    sections = {"server": {"listen": "127.0.0.1:%d" % harness.free_port()},
                "upstream": {"servers": "127.0.0.1:%d" % harness.free_port()},
                "stats": {"listen": "no"}}
    sections.update(plugkit.chain_sections(
        ("dnsbl", DNSBL_SO, {"lists": os.path.join(harness.SRC_DIR, "rules", "dnsbl.lists")})))
    with open(conf, "w") as f:
        f.write(harness.render_config(sections))
    r = harness.run_sluice(["--check", "-c", conf])
    assert r.returncode == 0, r.stdout + r.stderr
