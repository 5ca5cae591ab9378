# SPDX-License-Identifier: GPL-2.0-or-later
"""The milter plugin (plugins/milter) against testmilter, a libmilter milter
(tests/integration/milters/testmilter.c): every reply kind at every stage,
every modification, what the milter is told (macros, envelope, headers,
body), with what the upstream receives checked byte for byte; and the
failures: no milter, a milter that hangs, closes or talks nonsense.

sluice sits in front of the recording fake MTA; the milter is the only
member of the chain unless a test says otherwise.
"""

import socket
import threading
import time

import pytest

import harness
import milters
import plugkit
from harness import Client

pytestmark = pytest.mark.skipif(milters.TestMilter.unavailable() is not None,
                                reason=str(milters.TestMilter.unavailable()))

BODY = (b"From: a@example.com\r\n"
        b"To: b@example.net\r\n"
        b"Subject: hello\r\n"
        b"Message-ID: <m1@example.com>\r\n"
        b"\r\n"
        b"body line 1\r\n"
        b"body line 2\r\n")


@pytest.fixture(scope="module")
def tm():
    with milters.TestMilter(transport="unix") as m:
        yield m


@pytest.fixture(scope="module")
def tm_inet():
    with milters.TestMilter(transport="inet") as m:
        yield m


def milter_section(sock, **keys):
    sec = {"path": plugkit.os.path.abspath(plugkit.os.path.join(plugkit.BUILD, "plugins",
                                                                 "milter.so")),
           "socket": sock}
    sec.update({k: str(v) for k, v in keys.items()})
    return sec


def start(sluice_factory, fake, sock, chain=None, extra=None, server=None, stats=None, **keys):
    sections = {"chain": {"plugins": chain or "m"}, "plugin m": milter_section(sock, **keys)}
    sections.update(extra or {})
    return sluice_factory(fake.port, extra_sections=sections, server=server, stats=stats)


def msg(*do, subject="hello", body=b"body line 1\r\nbody line 2\r\n"):
    head = (b"From: a@example.com\r\nTo: b@example.net\r\nSubject: " + subject.encode() +
            b"\r\n")
    for d in do:
        head += b"X-Milter-Do: " + d.encode() + b"\r\n"
    return head + b"\r\n" + body


# ---- replies at each stage -------------------------------------------------------------

def test_clean_message_passes_and_milter_sees_everything(tm, fake, sluice_factory):
    sl = start(sluice_factory, fake, tm.socket)
    d = plugkit.send(sl.port, mail_from="alice@example.com", rcpts=("bob@example.net",),
                     body=BODY, helo="client.example")
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.mail_from == "alice@example.com" and m.rcpts == ["bob@example.net"]
    assert m.data == BODY  # untouched, byte for byte
    t = tm.wait_transaction(sender="<alice@example.com>")
    assert t.envfrom["args"][0] == "<alice@example.com>"
    assert [r["args"][0] for r in t.rcpts] == ["<bob@example.net>"]
    assert t.headers == [("From", "a@example.com"), ("To", "b@example.net"),
                         ("Subject", "hello"), ("Message-ID", "<m1@example.com>")]
    assert t.body == b"body line 1\r\nbody line 2\r\n"
    assert t.helo and t.helo["helo"] == "client.example"
    assert t.connect["addr"] == "127.0.0.1", t.connect
    mac = t.macros("connect")
    assert mac.get("{client_addr}") == "127.0.0.1", mac
    assert mac.get("{daemon_name}") == "sluice"
    assert mac.get("j")
    assert mac.get("_", "").endswith("[127.0.0.1]")
    env_mac = t.macros("envfrom")
    assert env_mac.get("{mail_addr}") == "alice@example.com", env_mac
    assert env_mac.get("i", "").count(".") == 1  # SESSIONID.N
    assert t.macros("envrcpt").get("{rcpt_addr}") == "bob@example.net"


@pytest.mark.parametrize("sender,code,enh", [
    ("m-reject@example.com", 550, None),
    ("m-tempfail@example.com", 451, None),
])
def test_mail_reply(tm, fake, sluice_factory, sender, code, enh):
    sl = start(sluice_factory, fake, tm.socket)
    d = plugkit.send(sl.port, mail_from=sender)
    assert d["mail"].code // 100 == code // 100, d
    assert not fake.messages


def test_mail_multiline_replycode(tm, fake, sluice_factory):
    sl = start(sluice_factory, fake, tm.socket)
    with Client(sl.port) as c:
        c.greeting()
        c.ehlo()
        r = c.cmd("MAIL FROM:<m-replycode@example.com>")
        assert r.raw == (b"550-5.7.1 testmilter: sender refused\r\n"
                         b"550-5.7.1 second line of the MAIL reply\r\n"
                         b"550 5.7.1 third line\r\n"), r.raw
        c.expect("MAIL FROM:<ok@example.com>", 250)  # the session goes on
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("QUIT", 221)


def test_rcpt_replies(tm, fake, sluice_factory):
    sl = start(sluice_factory, fake, tm.socket)
    d = plugkit.send(sl.port, rcpts=("r-reject@example.net", "r-tempfail@example.net",
                                     "r-replycode4@example.net", "good@example.net"))
    assert d["rcpt:r-reject@example.net"].code == 550
    assert d["rcpt:r-tempfail@example.net"].code == 451
    assert d["rcpt:r-replycode4@example.net"].raw == \
        b"452 4.2.2 testmilter: mailbox full\r\n"
    assert d["rcpt:good@example.net"].code == 250
    assert d["eod"].code == 250
    m = fake.wait_messages(1)[0]
    assert m.rcpts == ["good@example.net"]


def test_rcpt_discard_drops_the_message(tm, fake, sluice_factory):
    sl = start(sluice_factory, fake, tm.socket)
    d = plugkit.send(sl.port, rcpts=("r-discard@example.net", "good@example.net"))
    assert d["eod"].code == 250, d
    time.sleep(0.5)
    assert not [m for m in fake.messages if m.accepted]


def test_helo_reject(tm, fake, sluice_factory):
    sl = start(sluice_factory, fake, tm.socket)
    with Client(sl.port) as c:
        c.greeting()
        r = c.cmd("EHLO h-reject")
        assert r.code == 550 or r.code == 554, r


# ---- end of message: verdicts and every modification ----------------------------------

@pytest.mark.parametrize("do,code", [("reject", 554), ("tempfail", 451),
                                     ("replycode 554 5.7.0 go away", 554)])
def test_eom_refusal(tm, fake, sluice_factory, do, code):
    sl = start(sluice_factory, fake, tm.socket)
    d = plugkit.send(sl.port, body=msg(do))
    assert d["eod"].code == code, d
    if do.startswith("replycode"):
        assert d["eod"].raw == b"554 5.7.0 go away\r\n"
    time.sleep(0.3)
    assert not [m for m in fake.messages if m.accepted]


def test_eom_discard(tm, fake, sluice_factory):
    sl = start(sluice_factory, fake, tm.socket)
    d = plugkit.send(sl.port, body=msg("discard"))
    assert d["eod"].code == 250
    time.sleep(0.3)
    assert not [m for m in fake.messages if m.accepted]


def test_every_modification(tm, fake, sluice_factory):
    sl = start(sluice_factory, fake, tm.socket)
    body = msg("addheader X-Added added value",
               "insheader 0 X-First first",
               "chgheader Subject 1 changed subject",
               "chgfrom <new@example.org> BODY=8BITMIME",
               "addrcpt <c@example.net>",
               "addrcpt_par <d@example.net> NOTIFY=NEVER",
               "delrcpt <b@example.net>",
               "replbody new body\\nsecond line\\n")
    d = plugkit.send(sl.port, rcpts=("b@example.net", "keep@example.net"), body=body)
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.mail_from == "new@example.org"
    assert "BODY=8BITMIME" in m.mail_params
    assert sorted(m.rcpts) == ["c@example.net", "d@example.net", "keep@example.net"]
    head, _, newbody = m.data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"X-First: first", lines
    assert b"Subject: changed subject" in lines
    assert b"Subject: hello" not in lines
    assert lines[-1] == b"X-Added: added value", lines
    assert newbody == b"new body\r\nsecond line\r\n"


def test_delete_header_and_quarantine(tm, fake, sluice_factory, tmp_path):
    qdir = tmp_path / "q"
    qdir.mkdir(mode=0o700)
    sl = start(sluice_factory, fake, tm.socket, server={"quarantine_dir": str(qdir)})
    d = plugkit.send(sl.port, body=msg("chgheader Subject 1", "quarantine held for review"))
    assert d["eod"].code == 250, d
    time.sleep(0.3)
    assert not [m for m in fake.messages if m.accepted]
    files = [p for p in qdir.rglob("*") if p.is_file()]
    assert files, "nothing quarantined"
    assert any(b"held for review" in p.read_bytes() for p in files) or \
        "held for review" in sl.output()


# ---- one connection per session, several transactions -------------------------------

def test_connection_reused_across_transactions(tm, fake, sluice_factory):
    sl = start(sluice_factory, fake, tm.socket)
    with Client(sl.port) as c:
        c.greeting()
        c.ehlo()
        for i in range(3):
            harness.transaction(c, mail_from="s%d@example.com" % i, rcpts=("b@example.net",),
                                body=msg("addheader X-N %d" % i))
        c.expect("QUIT", 221)
    msgs = fake.wait_messages(3)
    assert [m.data.count(b"X-N: ") for m in msgs] == [1, 1, 1]
    ts = [t for t in tm.transactions() if t.envfrom and t.envfrom["args"][0] in
          ("<s0@example.com>", "<s1@example.com>", "<s2@example.com>")]
    assert len(ts) == 3
    assert len({t.connect["conn"] for t in ts}) == 1  # one milter connection
    cid = ts[0].connect["conn"]
    tm.wait_event(lambda e: e["ev"] == "close" and e["conn"] == cid, timeout=5)
    evs = [e["ev"] for e in tm.connections()[cid]]
    assert evs.count("abort") >= 0 and evs.count("connect") == 1


# ---- failures: never a hang, the policy decides, the breaker opens -------------------

class FakeMilter:
    """A milter that speaks just enough of the protocol to misbehave: it
    negotiates (no NO*/NR* steps), answers `continue` to every command, and at
    the first command whose byte is in `at` does `what`: "hang" (reads on,
    answers nothing), "close" (closes the connection) or "garbage" (an
    unknown reply byte)."""

    def __init__(self, at, what):
        self.at, self.what = at, what
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.socket = "inet:%d@127.0.0.1" % self.port
        self.conns = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _read(c, n):
        b = b""
        while len(b) < n:
            d = c.recv(n - len(b))
            if not d:
                raise EOFError
            b += d
        return b

    def _serve(self, c):
        c.settimeout(30)
        try:
            while True:
                n = int.from_bytes(self._read(c, 4), "big")
                pkt = self._read(c, n)
                cmd = pkt[:1]
                if cmd == b"O":
                    c.sendall((13).to_bytes(4, "big") + b"O" + (6).to_bytes(4, "big") +
                              (0x1FF).to_bytes(4, "big") + (0).to_bytes(4, "big"))
                    continue
                if cmd in (b"D", b"A", b"Q"):
                    if cmd == b"Q":
                        break
                    continue
                if cmd in self.at.encode():
                    if self.what == "close":
                        break
                    if self.what == "garbage":
                        c.sendall(b"\x00\x00\x00\x05Zjunk")
                        continue
                    continue  # hang: read on, answer nothing
                c.sendall(b"\x00\x00\x00\x01c")
        except (EOFError, OSError):
            pass
        finally:
            c.close()

    def close(self):
        self.stop.set()
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def fake_milter():
    made = []

    def make(at, what):
        m = FakeMilter(at, what)
        made.append(m)
        return m
    yield make
    for m in made:
        m.close()


def dialogue_refused_at(d):
    """The first step that got a 4xx/5xx reply (or None)."""
    for k in ("greeting", "ehlo", "mail", "rcpt:rcpt@example.net", "data", "eod"):
        r = d.get(k)
        if r is not None and r.code >= 400:
            return k, r
    return None, None


STAGES = [("C", "greeting"), ("H", "ehlo"), ("M", "mail"), ("R", "rcpt:rcpt@example.net"),
          ("T", "eod"), ("L", "eod"), ("N", "eod"), ("B", "eod"), ("E", "eod")]


@pytest.mark.parametrize("what", ["hang", "close", "garbage"])
@pytest.mark.parametrize("at,step", STAGES)
def test_broken_milter_tempfails_under_policy(fake, sluice_factory, fake_milter, at, step,
                                              what):
    """failure = tempfail: a milter that hangs (command_timeout 1s), closes
    or answers garbage at any stage gives a 4xx at that stage, within the
    timeout, and no message reaches the upstream."""
    m = fake_milter(at, what)
    sl = start(sluice_factory, fake, m.socket, failure="tempfail", command_timeout="1s",
               eom_timeout="1s")
    t0 = time.monotonic()
    d = plugkit.send(sl.port, body=msg())
    took = time.monotonic() - t0
    k, r = dialogue_refused_at(d)
    assert k == step, (k, r, d)
    assert 400 <= r.code < 500, d
    assert took < 4.0, took
    time.sleep(0.2)
    assert not [x for x in fake.messages if x.accepted]
    assert sl.wait_log(r"milter inet:%d@127.0.0.1: " % m.port, 3), sl.output()


@pytest.mark.parametrize("at", ["C", "M", "E"])
def test_broken_milter_accept_policy_delivers_unfiltered(fake, sluice_factory, fake_milter, at):
    """failure = accept: the message goes on without the milter, once."""
    m = fake_milter(at, "hang")
    sl = start(sluice_factory, fake, m.socket, failure="accept", command_timeout="500ms",
               eom_timeout="500ms")
    d = plugkit.send(sl.port, body=msg())
    assert d["eod"].code == 250, d
    msgs = fake.wait_messages(1)
    assert len(msgs) == 1 and msgs[0].data == msg()


def test_milter_not_listening_breaker_opens(fake, sluice_factory):
    """Nothing listens on the socket: each message goes through under
    failure = accept; after breaker_failures failures the milter is not tried
    any more (no connect attempts)."""
    port = harness.free_port()
    stats_port = harness.free_port()
    sl = start(sluice_factory, fake, "inet:%d@127.0.0.1" % port, failure="accept",
               breaker_failures="2", breaker_window="60s", breaker_cooldown="1h",
               stats={"listen": "127.0.0.1:%d" % stats_port})
    for i in range(4):
        assert plugkit.send(sl.port, body=msg())["eod"].code == 250, i
    assert len(fake.wait_messages(4)) == 4
    assert sl.wait_log(r"plugin=m circuit breaker OPEN after 2 failure\(s\)", 5), sl.output()
    assert plugkit.count_lines(sl, r"cannot connect to the milter") == 2
    mt = plugkit.metrics(stats_port)
    assert plugkit.metric_value(mt, "sluice_plugin_m_failures_total") == 2, mt


def test_milter_unix_socket_missing_tempfails(fake, sluice_factory, tmp_path):
    sl = start(sluice_factory, fake, "unix:%s" % (tmp_path / "nothing.sock"))
    d = plugkit.send(sl.port, body=msg())
    k, r = dialogue_refused_at(d)
    assert k == "greeting" and r.code == 421, d


def test_timeout_at_eom_then_next_message_reconnects(tm, fake, sluice_factory):
    """A milter slower than eom_timeout: that message tempfails; the
    session's next message gets a new milter connection and passes."""
    sl = start(sluice_factory, fake, tm.socket, failure="tempfail", eom_timeout="500ms")
    with Client(sl.port) as c:
        c.greeting()
        c.ehlo()
        r = harness.transaction(c, body=msg("sleep 2"))
        assert r.code == 451, r
        r = harness.transaction(c, mail_from="again@example.com", body=msg("addheader X-Ok yes"))
        assert r.code == 250, r
        c.expect("QUIT", 221)
    m = fake.wait_messages(1)[0]
    assert b"X-Ok: yes" in m.data
    t = tm.wait_transaction(sender="<again@example.com>")
    assert t.connect is not None and t.helo is not None  # replayed on the new connection


def test_host_timeout_shorter_than_the_milter(tm, fake, sluice_factory):
    """The host's timeout (1s) ends the wait before eom_timeout (10s): the
    client hears the policy's 451 at once; the session's next message does
    not wait for the abandoned one and passes on a new milter connection."""
    sl = start(sluice_factory, fake, tm.socket, failure="tempfail", timeout="1s",
               eom_timeout="10s")
    with Client(sl.port) as c:
        c.greeting()
        c.ehlo()
        t0 = time.monotonic()
        r = harness.transaction(c, body=msg("sleep 3"))
        assert r.code == 451 and time.monotonic() - t0 < 2.5, r
        r = harness.transaction(c, mail_from="next@example.com", body=msg("addheader X-Next 1"))
        assert r.code == 250, r
        c.expect("QUIT", 221)
    m = fake.wait_messages(1)[0]
    assert b"X-Next: 1" in m.data
    assert sl.wait_log(r"abandoned at end of message", 5), sl.output()


def test_accept_at_mail_ends_the_milter_for_that_message(tm, fake, sluice_factory):
    """accept at envfrom: the message goes on without more milter calls (no
    end of message, so its X-Milter-Do is not done); the next message of
    the session is filtered again."""
    sl = start(sluice_factory, fake, tm.socket)
    with Client(sl.port) as c:
        c.greeting()
        c.ehlo()
        r = harness.transaction(c, mail_from="m-accept@example.com",
                                body=msg("addheader X-Should-Not 1"))
        assert r.code == 250, r
        r = harness.transaction(c, mail_from="after@example.com", body=msg("addheader X-After 1"))
        assert r.code == 250, r
        c.expect("QUIT", 221)
    first, second = fake.wait_messages(2)
    assert first.data == msg("addheader X-Should-Not 1")
    assert b"X-After: 1" in second.data
    t = tm.wait_transaction(sender="<m-accept@example.com>", done=("envfrom", "abort"))
    assert not t.all("header") and not t.eom


def test_progress_and_skip(tm, fake, sluice_factory):
    """progress at end of message restarts the timer (the milter sleeps
    past eom_timeout in two halves with progress between); skip stops the
    body: the milter saw less than the whole body, and the message passes
    whole."""
    sl = start(sluice_factory, fake, tm.socket, failure="tempfail", eom_timeout="1500ms")
    d = plugkit.send(sl.port, body=msg("sleep 1", "progress", "sleep 1", "addheader X-P 1"))
    assert d["eod"].code == 250, d
    assert b"X-P: 1" in fake.wait_messages(1)[0].data
    big = b"".join(b"line %06d of a long body\r\n" % i for i in range(8000))  # > 3 chunks
    d = plugkit.send(sl.port, body=msg("skip", "addheader X-S 1", body=big))
    assert d["eod"].code == 250, d
    m = fake.wait_messages(2)[1]
    assert b"X-S: 1" in m.data and m.data.endswith(big)
    t = tm.find(header="X-Milter-Do", value="skip")[-1]
    assert t.eom and t.eom["body_len"] < len(big), t.eom


def test_breaker_closes_when_the_milter_is_back(fake, sluice_factory):
    """Not listening: the breaker opens after one failure; once the milter
    listens, the trial call after the cool-down succeeds and closes it."""
    m = milters.TestMilter(transport="inet")
    sl = start(sluice_factory, fake, "inet:%d@127.0.0.1" % m.port, failure="accept",
               breaker_failures="1", breaker_window="60s", breaker_cooldown="500ms")
    assert plugkit.send(sl.port, body=msg())["eod"].code == 250
    assert sl.wait_log(r"plugin=m circuit breaker OPEN", 5), sl.output()
    with m:
        time.sleep(0.7)
        d = plugkit.send(sl.port, body=msg("addheader X-Back 1"))
        assert d["eod"].code == 250, d
        assert sl.wait_log(r"plugin=m circuit breaker closed", 5), sl.output()
        d = plugkit.send(sl.port, body=msg("addheader X-Back 2"))
        assert d["eod"].code == 250
    got = fake.wait_messages(3)
    assert b"X-Back: 2" in got[2].data


def test_malformed_replycode_tempfails_even_under_accept(tm, fake, sluice_factory):
    """A reply code with an enhanced code of the wrong class: the milter
    meant to refuse, so the message is tempfailed (as Postfix does), not
    let through by failure = accept."""
    sl = start(sluice_factory, fake, tm.socket, failure="accept")
    d = plugkit.send(sl.port, body=msg("replycode 554 4.7.0 wrong class"))
    assert d["eod"].code == 451, d
    time.sleep(0.3)
    assert not [m for m in fake.messages if m.accepted]
    assert sl.wait_log(r"bad reply code from the milter", 5), sl.output()


def test_long_header_cannot_switch_the_milter_off(tm, fake, sluice_factory):
    """A header field longer than a milter packet (72 KB, folded) is cut to
    fit, not a milter failure: under failure = accept it must not let the
    message past the milter, nor count against the breaker."""
    sl = start(sluice_factory, fake, tm.socket, failure="accept", breaker_failures="1",
               breaker_cooldown="1h")
    long_hdr = "X-Long: " + "\r\n ".join(["x" * 70] * 1000)
    for _ in range(2):
        d = plugkit.send(sl.port, body=msg("reject", subject="long") .replace(
            b"\r\n\r\n", ("\r\n" + long_hdr + "\r\n\r\n").encode(), 1))
        assert d["eod"].code == 554, d
    assert plugkit.count_lines(sl, r"circuit breaker OPEN") == 0


def test_chgheader_past_the_last_adds(tm, fake, sluice_factory):
    sl = start(sluice_factory, fake, tm.socket)
    d = plugkit.send(sl.port, body=msg("chgheader X-New 1 set by milter"))
    assert d["eod"].code == 250, d
    assert b"X-New: set by milter\r\n" in fake.wait_messages(1)[0].data


def test_reset_after_abandoned_hook_forgets_its_recipients(tm, fake, sluice_factory):
    """The host gives up on a slow end of message; the next transaction of
    the session reaches the milter with its own recipients only."""
    sl = start(sluice_factory, fake, tm.socket, failure="tempfail", timeout="1s",
               eom_timeout="10s")
    with Client(sl.port) as c:
        c.greeting()
        c.ehlo()
        r = harness.transaction(c, rcpts=("first@example.net",), body=msg("sleep 3"))
        assert r.code == 451, r
        r = harness.transaction(c, mail_from="second@example.com", rcpts=("second@example.net",),
                                body=msg())
        assert r.code == 250, r
        c.expect("QUIT", 221)
    t = tm.wait_transaction(sender="<second@example.com>")
    assert [x["args"][0] for x in t.rcpts] == ["<second@example.net>"], t.rcpts
