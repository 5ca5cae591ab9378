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
