# SPDX-License-Identifier: GPL-2.0-or-later
"""The access plugin against the real daemon: each map (client, HELO,
sender, recipient) allows, denies and tempfails with the exact reply the
client sees; allowed mail reaches the upstream once, refused mail never;
`allow` skips the plugin's later maps but not the other plugins; a map
edited while sluice runs is used by the next transaction, a broken edit is
logged with FILE:LINE and the old map stays; `sluice --check` names every
bad line; an IPv6 client on ::1; the checks on /metrics."""
import os
import socket
import time

import harness
import plugkit

AC_SO = os.path.abspath(os.path.join(plugkit.BUILD, "plugins", "access.so"))


def _map(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _start(sluice_factory, fake, tmp_path, maps, stats=None, server=None, extra=None, port=None,
           **keys):
    """maps: {"client": text, ...} -> one access instance "ac" with those maps."""
    conf = {"reload_interval": "100ms"}
    for kind, text in maps.items():
        conf["%s_map" % kind] = _map(tmp_path, "%s.map" % kind, text)
    conf.update(keys)
    instances = [("ac", AC_SO, conf)] + list(extra or [])
    return sluice_factory(fake.port, extra_sections=plugkit.chain_sections(*instances),
                          stats=stats, server=server, port=port)


def _client(port, host="127.0.0.1", source=None):
    if ":" not in host:
        return harness.Client(port, host=host, source=source, timeout=10)
    c = harness.Client.__new__(harness.Client)   # the harness' client on an IPv6 socket
    c.timeout = 10
    c.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    c.sock.settimeout(10)
    c.sock.connect((host, port))
    c.buf = b""
    c.transcript = []
    return c


def _send(port, source=None, host="127.0.0.1", helo="client.test", mail_from="sender@example.com",
          rcpts=("rcpt@example.net",)):
    """One session step by step, stopping at the first refusal (a refused
    recipient goes on with the next). Returns plugkit.Dialogue."""
    d = plugkit.Dialogue()
    c = _client(port, host, source)
    try:
        steps = [("greeting", None), ("ehlo", "EHLO " + helo), ("mail", "MAIL FROM:<%s>" % mail_from)]
        steps += [("rcpt:" + r, "RCPT TO:<%s>" % r) for r in rcpts]
        steps += [("data", "DATA")]
        for key, line in steps:
            try:
                r = c.reply() if line is None else c.cmd(line)
            except harness.ConnectionClosed:
                d.closed = True
                return d
            d.replies[key] = r
            if r.code >= 400 and not key.startswith("rcpt:"):
                if key == "greeting":
                    d.closed = c.is_closed(2.0)
                return d
        c.send(harness.dot_stuff(plugkit.MSG) + b".\r\n")
        d.replies["eod"] = c.reply()
        c.cmd("QUIT")
        return d
    finally:
        c.close()


def _is(reply, code, enh, text=None):
    assert reply is not None and reply.code == code and reply.enh == enh, reply
    if text is not None:
        assert reply.text == "%s %s" % (enh, text), reply


def test_client_map(fake, sluice_factory, tmp_path):
    stats = harness.free_port()
    sl = _start(sluice_factory, fake, tmp_path, {"client": (
        "# networks and addresses\n"
        "127.0.0.2        deny Your network is not welcome\n"
        "127.0.0.0/29     tempfail\n"
        "127.0.0.1        allow\n"
        "127.0.1.0/24     deny\n")}, stats={"listen": "127.0.0.1:%d" % stats})
    d = _send(sl.port, source="127.0.0.2")
    _is(d["greeting"], 554, "5.7.1", "Your network is not welcome")
    assert d.closed, d
    d = _send(sl.port, source="127.0.0.3")              # in 127.0.0.0/29
    _is(d["greeting"], 421, "4.7.1", "Access temporarily refused, try again later")
    assert d.closed, d
    d = _send(sl.port, source="127.0.1.9")
    _is(d["greeting"], 554, "5.7.1", "Access denied")
    d = _send(sl.port, source="127.0.0.1")
    assert d["eod"].code == 250, d
    d = _send(sl.port, source="127.0.2.1")              # no key: no opinion
    assert d["eod"].code == 250, d
    time.sleep(0.3)
    assert len(fake.messages) == 2
    assert sl.wait_log(r"access: client 127\.0\.0\.2 denied \(%s:2\)" % str(tmp_path / "client.map"))
    m = plugkit.metrics(stats)
    for result, n in (("deny", 2), ("tempfail", 1), ("allow", 1), ("none", 1)):
        assert plugkit.metric_value(m, "sluice_plugin_ac_checks_total", {"result": result}) == n, m


def test_helo_map(fake, sluice_factory, tmp_path):
    sl = _start(sluice_factory, fake, tmp_path, {"helo": (
        "LOCALHOST        deny You are not localhost\n"
        ".slow.example    tempfail Come back later\n"
        "/^[0-9.]+$/      deny Use a name\n")})
    _is(_send(sl.port, helo="localhost")["ehlo"], 550, "5.7.1", "You are not localhost")
    _is(_send(sl.port, helo="mx.slow.example")["ehlo"], 451, "4.7.1", "Come back later")
    _is(_send(sl.port, helo="192.0.2.1")["ehlo"], 550, "5.7.1", "Use a name")
    assert _send(sl.port, helo="slow.example")["eod"].code == 250   # .domain: below only
    time.sleep(0.3)
    assert len(fake.messages) == 1


def test_sender_map(fake, sluice_factory, tmp_path):
    sl = _start(sluice_factory, fake, tmp_path, {
        "sender": ("spammer.example    deny Mail from your domain is refused\n"
                   "boss@spammer.example allow\n"
                   ".later.example     tempfail\n"
                   "<>                 deny No bounces here\n"),
        "recipient": "blocked@example.net deny\n"})
    _is(_send(sl.port, mail_from="Joe@Spammer.Example")["mail"], 550, "5.7.1",
        "Mail from your domain is refused")
    _is(_send(sl.port, mail_from="joe@a.later.example")["mail"], 451, "4.7.1",
        "Access temporarily refused, try again later")
    _is(_send(sl.port, mail_from="")["mail"], 550, "5.7.1", "No bounces here")
    # the exception beats its domain; a sender allow skips the recipient map
    d = _send(sl.port, mail_from="boss@spammer.example", rcpts=["blocked@example.net"])
    assert d["eod"].code == 250, d
    d = _send(sl.port, mail_from="joe@elsewhere.example", rcpts=["blocked@example.net"])
    _is(d["rcpt:blocked@example.net"], 550, "5.7.1", "Access denied")
    msgs = fake.wait_messages(1)
    time.sleep(0.3)
    assert len(fake.messages) == 1 and msgs[0].mail_from == "boss@spammer.example"


def test_recipient_map(fake, sluice_factory, tmp_path):
    sl = _start(sluice_factory, fake, tmp_path, {"recipient": (
        "no@example.net         deny This address does not take mail\n"
        "busy@                  tempfail Mailbox busy\n"
        "/^noreply[-+.]/        deny\n")})
    rcpts = ["no@example.net", "Busy@Example.NET", "noreply-x@example.net", "yes@example.net"]
    d = _send(sl.port, rcpts=rcpts)
    _is(d["rcpt:no@example.net"], 550, "5.7.1", "This address does not take mail")
    _is(d["rcpt:Busy@Example.NET"], 450, "4.7.1", "Mailbox busy")
    _is(d["rcpt:noreply-x@example.net"], 550, "5.7.1", "Access denied")
    assert d["rcpt:yes@example.net"].code == 250 and d["eod"].code == 250, d
    msgs = fake.wait_messages(1)
    time.sleep(0.3)
    assert len(fake.messages) == 1 and msgs[0].rcpts == ["yes@example.net"], msgs
    assert sl.wait_log(r"access: recipient <no@example\.net> denied \(%s:1\)" %
                       str(tmp_path / "recipient.map"))


def test_allow_skips_own_maps_not_other_plugins(fake, sluice_factory, tmp_path):
    """A client allow skips this instance's sender map; a second instance
    in the chain still refuses."""
    other = {"sender_map": _map(tmp_path, "other.map", "bad@example.com deny Refused by the second\n")}
    sl = _start(sluice_factory, fake, tmp_path,
                {"client": "127.0.0.1 allow\n", "sender": "bad@example.com deny\nworse@example.com deny\n"},
                extra=[("ac2", AC_SO, other)])
    assert _send(sl.port, mail_from="worse@example.com")["eod"].code == 250
    _is(_send(sl.port, mail_from="bad@example.com")["mail"], 550, "5.7.1", "Refused by the second")
    assert _send(sl.port, mail_from="worse@example.com", source="127.0.0.5")["mail"].code == 550
    time.sleep(0.3)
    assert len(fake.messages) == 1


def test_reload_on_change(fake, sluice_factory, tmp_path):
    sl = _start(sluice_factory, fake, tmp_path, {"sender": "a@example.com deny\n"})
    path = str(tmp_path / "sender.map")
    assert _send(sl.port, mail_from="a@example.com")["mail"].code == 550
    assert _send(sl.port, mail_from="b@example.com")["eod"].code == 250
    with open(path, "w") as f:
        f.write("# a moved to tempfail, b denied\na@example.com tempfail\nb@example.com deny Now refused\n")
    time.sleep(0.3)   # past reload_interval: the next transaction checks
    _is(_send(sl.port, mail_from="b@example.com")["mail"], 550, "5.7.1", "Now refused")
    assert _send(sl.port, mail_from="a@example.com")["mail"].code == 451
    assert sl.wait_log(r"plugin=ac maps reloaded: 2 rules")
    time.sleep(0.3)
    assert len(fake.messages) == 1


def test_broken_edit_keeps_old_map(fake, sluice_factory, tmp_path):
    stats = harness.free_port()
    sl = _start(sluice_factory, fake, tmp_path, {"sender": "a@example.com deny\n"},
                stats={"listen": "127.0.0.1:%d" % stats})
    path = str(tmp_path / "sender.map")
    with open(path, "w") as f:
        f.write("b@example.com deny\nc@example.com reject\n10.0.0.0/8 deny\n")
    time.sleep(0.3)
    assert _send(sl.port, mail_from="a@example.com")["mail"].code == 550   # the old map
    assert _send(sl.port, mail_from="b@example.com")["eod"].code == 250
    assert sl.wait_log(r"%s:2: unknown action 'reject'" % path)
    assert sl.wait_log(r"%s:3: '10\.0\.0\.0/8' is not a domain" % path)
    assert sl.wait_log(r"map files have 2 errors; keeping the previous maps")
    m = plugkit.metrics(stats)
    assert plugkit.metric_value(m, "sluice_plugin_ac_reloads_total", {"result": "failed"}) == 1, m
    with open(path, "w") as f:            # fixed: used again
        f.write("b@example.com deny\n")
    time.sleep(0.3)
    assert _send(sl.port, mail_from="b@example.com")["mail"].code == 550
    assert _send(sl.port, mail_from="a@example.com")["eod"].code == 250


def test_check_names_every_bad_line(tmp_path):
    client = _map(tmp_path, "client.map", "10.0.0.1/8 deny\n192.0.2.1 allow\n192.168 deny\n")
    rcpt = _map(tmp_path, "recipient.map", "ok@example.com allow\n/a(/ deny\nx@example.com deny caf\u00e9\n")
    conf = tmp_path / "s.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:2525\n[upstream]\nservers = 127.0.0.1:25\n"
                    "[chain]\nplugins = ac\n[plugin ac]\npath = %s\nclient_map = %s\n"
                    "recipient_map = %s\n" % (AC_SO, client, rcpt))
    r = harness.run_sluice(["--check", "-c", str(conf)])
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    for want in ("%s:1: " % client, "%s:3: '192.168' is not an address" % client,
                 "%s:2: bad pattern /a(/: missing closing parenthesis at offset 2" % rcpt,
                 "%s:3: reply text: character 4 is not printable ASCII" % rcpt):
        assert want in out, out
    assert "%s:2:" % client not in out, out
    # the shipped sample maps pass
    sample = os.path.join(harness.SRC_DIR, "rules", "access")
    conf.write_text("[server]\nlisten = 127.0.0.1:2525\n[upstream]\nservers = 127.0.0.1:25\n"
                    "[chain]\nplugins = ac\n[plugin ac]\npath = %s\n" % AC_SO +
                    "".join("%s_map = %s/%s.map\n" % (k, sample, k)
                            for k in ("client", "helo", "sender", "recipient")))
    r = harness.run_sluice(["--check", "-c", str(conf)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_missing_map_and_no_map(tmp_path):
    conf = tmp_path / "s.conf"
    base = ("[server]\nlisten = 127.0.0.1:2525\n[upstream]\nservers = 127.0.0.1:25\n"
            "[chain]\nplugins = ac\n[plugin ac]\npath = %s\n" % AC_SO)
    conf.write_text(base + "sender_map = %s/nope.map\n" % tmp_path)
    r = harness.run_sluice(["--check", "-c", str(conf)])
    assert r.returncode != 0 and "%s/nope.map: cannot read" % tmp_path in r.stdout + r.stderr
    conf.write_text(base)
    r = harness.run_sluice(["--check", "-c", str(conf)])
    assert r.returncode != 0 and "no map" in r.stdout + r.stderr, r.stdout + r.stderr


def test_ipv6_client(fake, sluice_factory, tmp_path):
    port = harness.free_port()
    sl = _start(sluice_factory, fake, tmp_path,
                {"client": "::1 deny IPv6 loopback refused\n127.0.0.0/8 allow\n"},
                server={"listen": "127.0.0.1:%d, [::1]:%d" % (port, port)}, port=port)
    d = _send(port, host="::1")
    _is(d["greeting"], 554, "5.7.1", "IPv6 loopback refused")
    assert _send(port)["eod"].code == 250
    with open(str(tmp_path / "client.map"), "w") as f:
        f.write("::/0 tempfail Not over IPv6 today\n")     # a network, reloaded
    time.sleep(0.3)
    _is(_send(port, host="::1")["greeting"], 421, "4.7.1", "Not over IPv6 today")
    time.sleep(0.3)
    assert len(fake.messages) == 1


def test_client_name(fake, sluice_factory, tmp_path):
    """The verified reverse name (127.0.0.1 is localhost in /etc/hosts)."""
    sl = _start(sluice_factory, fake, tmp_path, {"client": "localhost deny By name\n"},
                server={"reverse_dns": "yes"})
    _is(_send(sl.port)["greeting"], 554, "5.7.1", "By name")
