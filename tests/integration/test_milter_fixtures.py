# SPDX-License-Identifier: GPL-2.0-or-later
"""The milter fixtures (milters.py) checked against a real Postfix, so they
are known to be right independently of sluice's milter client.

One private Postfix (postfix.py) hands each SMTP client address its own
milter through smtpd_milter_maps (a cidr table), with milter_protocol = 6
and milter_default_action = tempfail:

  127.0.0.10, .66, .67  testmilter on a unix socket (.66/.67: its connect
                        triggers, reject and tempfail)
  127.0.0.11            testmilter -H (header values with leading space), inet
  127.0.0.12            testmilter -N (no reply before end of message), inet
  127.0.0.20            rspamd (milter mode, self-scan), inet
  127.0.0.30            OpenDKIM signing, inet
  127.0.0.31            OpenDKIM verifying (the signer's key from a file), inet
  127.0.0.40            clamav-milter + clamd (EICAR database), unix socket
  127.0.0.1             no milter (Postfix's own start-up probe)

Every daemon is started once for the module, all at once. A fixture that
cannot run here skips its tests with the reason; one that fails to start
fails them. smtpd_peername_lookup = no: the 127.0.0.x clients have no
names, and their reverse lookups would leave the machine.
"""

import hashlib
import os
import re
import smtplib
import tempfile
import threading
import time
import uuid

import pytest

import milters
import postfix as pf

TM, TM_LEADSPC, TM_NOREPLY = "127.0.0.10", "127.0.0.11", "127.0.0.12"
RSPAMD, DKIM_SIGN, DKIM_VERIFY, CLAMAV = "127.0.0.20", "127.0.0.30", "127.0.0.31", "127.0.0.40"


class Env:
    """The Postfix and every milter fixture of this module."""

    def __init__(self):
        self.fixtures = {}   # name -> fixture (constructed)
        self.skipped = {}    # name -> reason it cannot run here
        self.failed = {}     # name -> exception from start()
        self.postfix = None
        self.clients = {}    # client address -> fixture name

    def add(self, name, cls, clients, **kw):
        why = cls.unavailable()
        if why:
            self.skipped[name] = why
            return
        self.fixtures[name] = cls(**kw)
        for c in clients:
            self.clients[c] = name

    def need(self, name):
        if name in self.skipped:
            pytest.skip("%s: %s" % (name, self.skipped[name]))
        if name in self.failed:
            raise AssertionError("%s did not start: %s" % (name, self.failed[name]))
        return self.fixtures[name]


def _start_all(env, mapfile):
    lines = ["127.0.0.1/32 DISABLE"]
    for client, name in sorted(env.clients.items()):
        lines.append("%s/32 %s" % (client, env.fixtures[name].postfix_socket))
    with open(mapfile, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(mapfile, 0o644)
    env.postfix = pf.PrivatePostfix(extra={
        "smtpd_milter_maps": "cidr:" + mapfile,
        "milter_protocol": "6",
        "milter_default_action": "tempfail",
        "milter_content_timeout": "20s",
        "milter_command_timeout": "20s",
        "smtpd_peername_lookup": "no",
    })
    errors = {}

    def run(name, fn):
        try:
            fn()
        except Exception as e:  # reported by the tests that need it
            errors[name] = e

    threads = [threading.Thread(target=run, args=(n, f.start)) for n, f in env.fixtures.items()]
    threads.append(threading.Thread(target=run, args=("postfix", env.postfix.start)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if "postfix" in errors:
        raise errors["postfix"]
    env.failed.update(errors)


def _verifier_waits_for_signer(verifier, signer):
    """Everything starts at once, but the verifier needs the key the signer
    makes when it starts: its launch waits for it."""
    launch = verifier._launch_private

    def launch_with_signer_key():
        deadline = time.monotonic() + 30
        while signer.txt_record is None and time.monotonic() < deadline:
            time.sleep(0.05)
        verifier.public_keys = {signer.record_name: signer.txt_record or ""}
        launch()
    verifier._launch_private = launch_with_signer_key


@pytest.fixture(scope="module")
def env():
    why = pf.unavailable()
    if why:
        pytest.skip(why)
    e = Env()
    e.add("testmilter", milters.TestMilter, [TM, "127.0.0.66", "127.0.0.67"], transport="unix")
    e.add("testmilter-H", milters.TestMilter, [TM_LEADSPC], transport="inet", options=["-H"])
    e.add("testmilter-N", milters.TestMilter, [TM_NOREPLY], transport="inet", options=["-N"])
    e.add("rspamd", milters.RspamdMilter, [RSPAMD])
    e.add("opendkim-sign", milters.OpenDKIM, [DKIM_SIGN], mode="s")
    e.add("clamav", milters.ClamavMilter, [CLAMAV], transport="unix")
    if "opendkim-sign" in e.fixtures:
        e.add("opendkim-verify", milters.OpenDKIM, [DKIM_VERIFY], mode="v")
        _verifier_waits_for_signer(e.fixtures["opendkim-verify"], e.fixtures["opendkim-sign"])
    tmp = tempfile.mkdtemp(prefix="sluice-milter-map-", dir="/tmp")
    os.chmod(tmp, 0o755)
    t0 = time.monotonic()
    try:
        _start_all(e, os.path.join(tmp, "milter-map.cidr"))
        e.start_seconds = time.monotonic() - t0
        yield e
    finally:
        stops = [threading.Thread(target=f.stop) for f in e.fixtures.values()]
        if e.postfix is not None:
            stops.append(threading.Thread(target=e.postfix.stop))
        for t in stops:
            t.start()
        for t in stops:
            t.join(60)
        for p in os.listdir(tmp):
            os.unlink(os.path.join(tmp, p))
        os.rmdir(tmp)


@pytest.fixture(autouse=True)
def _attach_logs(request, env):
    # conftest.py appends these logs to the report of a failed test.
    request.node._milters = list(env.fixtures.values())
    request.node._postfixes = [env.postfix]


# ---------------------------------------------------------------------------
# SMTP and Maildir helpers


class Replies:
    def __init__(self):
        self.greeting = self.ehlo = self.mail = self.data = self.eod = None
        self.rcpt = []
        self.seconds = None

    def queue_id(self):
        m = re.search(r"queued as ([0-9A-F]+)", (self.eod or (0, ""))[1])
        return m.group(1) if m else None


def send(env, client, sender, rcpts, msg, helo="client.test", quit=True):
    """One transaction on a fresh connection from `client`; every reply is
    kept as (code, text) (multi-line texts joined with "\\n" by smtplib)."""
    r = Replies()
    t0 = time.monotonic()
    s = smtplib.SMTP(local_hostname=helo, timeout=30, source_address=(client, 0))
    try:
        code, text = s.connect("127.0.0.1", env.postfix.port)
        r.greeting = (code, text.decode())
        code, text = s.ehlo(helo)
        r.ehlo = (code, text.decode())
        code, text = s.docmd("MAIL FROM:<%s>" % sender)
        r.mail = (code, text.decode())
        for rc in rcpts:
            code, text = s.docmd("RCPT TO:<%s>" % rc)
            r.rcpt.append((code, text.decode()))
        code, text = s.docmd("DATA")
        r.data = (code, text.decode())
        if code == 354:
            stuffed = re.sub(rb"(?m)^\.", b"..", msg)
            if not stuffed.endswith(b"\r\n"):
                stuffed += b"\r\n"
            s.send(stuffed + b".\r\n")
            code, text = s.getreply()
            r.eod = (code, text.decode())
        r.seconds = time.monotonic() - t0
        if quit:
            try:
                s.quit()
            except smtplib.SMTPServerDisconnected:
                pass
    finally:
        s.close()
    return r


def message(test_id, extra=(), dos=(), body=b"Hello milter.\r\nSecond line.\r\n",
            sender=b"a@example.com"):
    """A CRLF message with Date and Message-ID (so Postfix adds neither),
    an X-Test-Id header, `extra` header lines and one X-Milter-Do per action."""
    head = [b"From: Sender <" + sender + b">",
            b"To: b@example.net",
            b"Subject: milter fixture " + test_id.encode(),
            b"Date: Mon, 01 Jan 2024 12:00:00 +0000",
            b"Message-ID: <" + test_id.encode() + b"@example.com>",
            b"X-Test-Id: " + test_id.encode()]
    head += [h if isinstance(h, bytes) else h.encode() for h in extra]
    head += [b"X-Milter-Do: " + d.encode() for d in dos]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def new_id(tag):
    return "%s-%s" % (tag, uuid.uuid4().hex[:12])


def delivered(env, test_id, n=1, timeout=15.0):
    """The Maildir files (bytes) carrying X-Test-Id `test_id`, once there
    are at least n of them (fewer after the timeout)."""
    needle = b"\nX-Test-Id: " + test_id.encode() + b"\n"
    deadline = time.monotonic() + timeout
    while True:
        got = []
        for p in env.postfix.mail_files():
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if needle in data:
                got.append(data)
        if len(got) >= n or time.monotonic() >= deadline:
            return got
        time.sleep(0.05)


def not_delivered(env, test_id, wait=0.3):
    """No Maildir file with this X-Test-Id, after waiting `wait` seconds."""
    time.sleep(wait)
    return delivered(env, test_id, n=1, timeout=0) == []


def split(data):
    """Delivered bytes -> ([(name, raw value)], body) (LF line ends)."""
    head, _, body = data.partition(b"\n\n")
    fields = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + b"\n" + line)
        else:
            name, _, value = line.partition(b":")
            fields.append((name.decode(), value))
    return fields, body


def values(fields, name):
    return [v.strip() for n, v in fields if n.lower() == name.lower()]


def names(fields):
    return [n for n, _ in fields]


# ---------------------------------------------------------------------------
# testmilter


def test_testmilter_sees_what_postfix_sends(env):
    tm = env.need("testmilter")
    tid = new_id("see")
    body = b"Hello milter.\r\n.leading dot\r\nthird line\r\n"
    msg = message(tid, extra=[b"X-Folded: one\r\n two\r\n\tthree", b"X-Space:    four spaces",
                              b"X-Empty:"], body=body)
    r = send(env, TM, "a@example.com", ["b@example.net", "c@example.net"], msg,
             helo="client.example")
    assert r.eod[0] == 250, r.eod
    qid = r.queue_id()
    t = tm.wait_transaction(header="X-Test-Id", value=tid)

    # Negotiation: Postfix offers every action and step; testmilter takes
    # every action and SKIP.
    assert t.negotiate["offered_actions"] == 0x1FF
    assert t.negotiate["actions"] == 0x1FF
    assert t.negotiate["steps"] == 0x400
    assert t.negotiate["setsymlist"] == 0

    # Connect: the macros testmilter asked for with smfi_setsymlist.
    c = t.connect
    assert (c["family"], c["addr"]) == ("inet", TM)
    assert c["hostname"] == "[%s]" % TM          # no reverse lookup
    m = t.macros("connect")
    assert m["j"] == "upstream.test" and m["{daemon_name}"] == "upstream.test"
    assert m["v"].startswith("Postfix 3.")
    assert m["{client_addr}"] == TM and m["{client_name}"] == "unknown"
    assert m["{client_port}"] == str(c["port"])
    assert m["{daemon_addr}"] == "127.0.0.1"
    assert "{if_addr}" not in m and "{if_name}" not in m   # Postfix has neither
    assert t.helo["helo"] == "client.example"
    assert t.macros("helo") == {}                           # no TLS

    # MAIL and RCPT: addresses in <>, ESMTP arguments as further args.
    assert t.envfrom["args"][0] == "<a@example.com>"
    assert any(a.startswith("SIZE=") for a in t.envfrom["args"][1:]) or len(t.envfrom["args"]) == 1
    m = t.macros("envfrom")
    assert m["{mail_addr}"] == "a@example.com"
    assert "i" not in m          # the queue file opens after the first RCPT
    assert [e["args"] for e in t.rcpts] == [["<b@example.net>"], ["<c@example.net>"]]
    assert t.rcpts[0]["macros"]["{rcpt_addr}"] == "b@example.net"
    assert "i" not in t.rcpts[0]["macros"]
    assert t.rcpts[1]["macros"]["i"] == qid       # ... so the second RCPT has it
    for ev in ("data", "eoh", "eom"):
        assert t.macros(ev)["i"] == qid, ev

    # Headers: in order, one leading space removed, folding kept as LF + WSP.
    hdrs = t.headers
    assert [n for n, _ in hdrs][:6] == ["From", "To", "Subject", "Date", "Message-ID",
                                        "X-Test-Id"]
    assert t.header("X-Folded") == ["one\n two\n\tthree"]
    assert t.header("X-Space") == ["   four spaces"]
    assert t.header("X-Empty") == [""]
    assert t.header("From") == ["Sender <a@example.com>"]

    # Body: CRLF, dot-unstuffed, byte for byte.
    assert t.body == body
    assert t.eom["body_len"] == len(body)
    assert t.eom["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert t.reply == 0   # SMFIS_CONTINUE
    assert len(delivered(env, tid, n=2)) == 2


def test_testmilter_modifications_land_in_maildir(env):
    tm = env.need("testmilter")
    tid = new_id("mods")
    dos = ["chgfrom <new-sender@example.org> BODY=8BITMIME",
           "addrcpt <d@example.net>",
           "addrcpt_par <e@example.net> NOTIFY=NEVER",
           "delrcpt <c@example.net>",
           "addheader X-Added added value",
           "insheader 0 X-Inserted-Top at the top",
           "chgheader Subject 1 changed subject",
           "chgheader X-Remove-Me 1",
           "chgheader X-Second 2 second changed",
           "replbody replaced body\\nline two\\n"]
    msg = message(tid, extra=[b"X-Remove-Me: bye", b"X-Second: one", b"X-Second: two"], dos=dos)
    r = send(env, TM, "a@example.com", ["b@example.net", "c@example.net"], msg)
    assert r.eod[0] == 250, r.eod
    t = tm.wait_transaction(header="X-Test-Id", value=tid)
    assert [a["rc"] for a in t.actions] == [0] * len(dos), t.actions

    files = delivered(env, tid, n=3)
    assert len(files) == 3
    got = {}
    for data in files:
        fields, body = split(data)
        got[values(fields, "Delivered-To")[0].decode()] = (fields, body)
    assert sorted(got) == ["b@example.net", "d@example.net", "e@example.net"]
    assert not_delivered(env, tid + "-none", wait=0)
    fields, body = got["b@example.net"]
    assert values(fields, "Return-Path") == [b"<new-sender@example.org>"]
    assert values(fields, "Subject") == [b"changed subject"]
    assert values(fields, "X-Remove-Me") == []
    assert values(fields, "X-Second") == [b"one", b"second changed"]
    assert values(fields, "X-Added") == [b"added value"]
    # addheader appends at the end; insheader 0 goes above Postfix's own
    # Received field (which the milter never saw).
    n = names(fields)
    assert n[-1] == "X-Added"
    assert n.index("X-Inserted-Top") < n.index("Received")
    assert n[:3] == ["Return-Path", "X-Original-To", "Delivered-To"]   # added at delivery
    assert n[3] == "X-Inserted-Top"
    assert body == b"replaced body\nline two\n"


@pytest.mark.parametrize("sender,rcpt,step,want", [
    ("m-reject@example.com", None, "mail", (550, "5.7.1 Command rejected")),
    ("m-tempfail@example.com", None, "mail", (451, "4.7.1 Service unavailable - try again later")),
    ("m-replycode@example.com", None, "mail",
     (550, "5.7.1 testmilter: sender refused\n5.7.1 second line of the MAIL reply\n"
           "5.7.1 third line")),
    ("m-replycode4@example.com", None, "mail", (451, "4.7.1 testmilter: sender deferred")),
    ("a@example.com", "r-reject@example.net", "rcpt", (550, "5.7.1 Command rejected")),
    ("a@example.com", "r-tempfail@example.net", "rcpt",
     (451, "4.7.1 Service unavailable - try again later")),
    ("a@example.com", "r-replycode@example.net", "rcpt",
     (550, "5.1.1 testmilter: recipient refused\n5.1.1 second line of the RCPT reply")),
    ("a@example.com", "r-replycode4@example.net", "rcpt", (452, "4.2.2 testmilter: mailbox full")),
])
def test_testmilter_envelope_replies(env, sender, rcpt, step, want):
    env.need("testmilter")
    tid = new_id("env")
    rcpts = [rcpt, "b@example.net"] if rcpt else ["b@example.net"]
    r = send(env, TM, sender, rcpts, message(tid))
    if step == "mail":
        assert r.mail == want
        assert r.rcpt[0][0] == 503          # no MAIL transaction
    else:
        assert r.mail[0] == 250
        assert r.rcpt[0] == want
        assert r.rcpt[1][0] == 250           # the next recipient is unaffected
        assert r.eod[0] == 250
        assert len(delivered(env, tid, n=1)) == 1


@pytest.mark.parametrize("sender,rcpt", [("m-discard@example.com", "b@example.net"),
                                         ("a@example.com", "r-discard@example.net")])
def test_testmilter_discard_at_mail_and_rcpt(env, sender, rcpt):
    env.need("testmilter")
    tid = new_id("disc")
    r = send(env, TM, sender, [rcpt, "b@example.net"], message(tid))
    # Postfix says yes to everything and drops the whole message.
    assert r.mail[0] == 250 and [c for c, _ in r.rcpt] == [250, 250]
    assert r.eod[0] == 250, r.eod
    assert not_delivered(env, tid)
    assert "milter triggers DISCARD action" in env.postfix.log_tail(200)


@pytest.mark.parametrize("helo,code,text", [
    ("h-reject", 550, "5.7.1 Command rejected"),
    ("h-tempfail", 451, "4.7.1 Service unavailable - try again later")])
def test_testmilter_helo_reply_comes_at_mail(env, helo, code, text):
    env.need("testmilter")
    r = send(env, TM, "a@example.com", ["b@example.net"], message(new_id("helo")), helo=helo)
    # Postfix answers EHLO 250 and gives the milter's HELO verdict to MAIL;
    # after a reject its EHLO lists ENHANCEDSTATUSCODES alone.
    assert r.ehlo[0] == 250
    if code == 550:
        assert r.ehlo == (250, "upstream.test\nENHANCEDSTATUSCODES")
    else:
        assert "PIPELINING" in r.ehlo[1]
    assert r.mail == (code, text)


@pytest.mark.parametrize("client,greeting,mail", [
    ("127.0.0.66", (554, "upstream.test ESMTP not accepting connections"),
     (550, "5.7.1 Command rejected")),
    ("127.0.0.67", (220, "upstream.test ESMTP private-postfix"),
     (451, "4.7.1 Service unavailable - try again later"))])
def test_testmilter_connect_reply(env, client, greeting, mail):
    tm = env.need("testmilter")
    r = send(env, client, "a@example.com", ["b@example.net"], message(new_id("conn")))
    assert r.greeting == greeting
    assert r.mail == mail
    e = tm.wait_event(lambda e: e["ev"] == "connect" and e.get("addr") == client)
    assert e["macros"]["{client_addr}"] == client


@pytest.mark.parametrize("do,want,kept", [
    ("reject", (550, "5.7.1 Command rejected"), False),
    ("tempfail", (451, "4.7.1 Service unavailable - try again later"), False),
    ("discard", (250, None), False),
    ("accept", (250, None), True),
    ("replycode 554 5.7.0 eom says no\\nsecond eom line",
     (554, "5.7.0 eom says no\n5.7.0 second eom line"), False),
    ("replycode 452 4.3.1 eom says later", (452, "4.3.1 eom says later"), False),
    ("replycode 421 4.3.2 closing now", (421, "4.3.2 closing now"), False),
])
def test_testmilter_end_of_message_replies(env, do, want, kept):
    env.need("testmilter")
    tid = new_id("eom")
    r = send(env, TM, "a@example.com", ["b@example.net"],
             message(tid, dos=[do, "addheader X-Not-Reached yes"]))
    assert r.eod[0] == want[0], r.eod
    if want[1] is not None:
        assert r.eod[1] == want[1]
    if kept:
        files = delivered(env, tid)
        assert len(files) == 1 and b"\nX-Not-Reached: yes\n" not in files[0]
    else:
        assert not_delivered(env, tid)


def test_testmilter_quarantine_holds_in_postfix(env):
    tm = env.need("testmilter")
    tid = new_id("quar")
    r = send(env, TM, "a@example.com", ["b@example.net"],
             message(tid, dos=["quarantine held by testmilter"]))
    assert r.eod[0] == 250
    qid = r.queue_id()
    assert tm.wait_transaction(header="X-Test-Id", value=tid).actions[0]["rc"] == 0
    held = [q for q in env.postfix.queue() if q["queue_id"] == qid]
    assert held and held[0]["queue_name"] == "hold"
    # Postfix logs the action, not the milter's reason.
    assert re.search(qid + r": milter-hold: END-OF-MESSAGE .*milter triggers HOLD action",
                     env.postfix.log_tail(200))
    assert not_delivered(env, tid, wait=0.5)


def test_testmilter_progress_sleep_and_skip(env):
    tm = env.need("testmilter")
    tid = new_id("slow")
    r = send(env, TM, "a@example.com", ["b@example.net"],
             message(tid, dos=["progress", "sleep 1.5", "progress"]))
    assert r.eod[0] == 250 and r.seconds >= 1.5
    t = tm.wait_transaction(header="X-Test-Id", value=tid)
    assert [a["rc"] for a in t.actions] == [0, 0, 0]
    assert t.actions[2]["t"] - t.actions[0]["t"] >= 1.5

    tid = new_id("skip")
    body = b"".join(b"%07d skip line of the body\r\n" % i for i in range(8000))  # 264 KB
    r = send(env, TM, "a@example.com", ["b@example.net"], message(tid, dos=["skip"], body=body))
    assert r.eod[0] == 250
    t = tm.wait_transaction(header="X-Test-Id", value=tid)
    # Postfix sends 65535-byte body chunks; after SKIP no more of them.
    assert [e["len"] for e in t.all("body")] == [65535]
    assert t.all("body")[0]["reply"] == "skip"
    files = delivered(env, tid)
    assert len(files) == 1 and split(files[0])[1] == body.replace(b"\r\n", b"\n")


def test_testmilter_leading_space_option(env):
    tm = env.need("testmilter-H")
    tid = new_id("lead")
    msg = message(tid, extra=[b"X-Folded: one\r\n two", b"X-Space:    four spaces",
                              b"X-Tight:none"])
    assert send(env, TM_LEADSPC, "a@example.com", ["b@example.net"], msg).eod[0] == 250
    t = tm.wait_transaction(header="X-Test-Id", value=tid)
    assert t.negotiate["steps"] == 0x400 | 0x100000       # SKIP | HDR_LEADSPC
    assert t.header("X-Folded") == [" one\n two"]
    assert t.header("X-Space") == ["    four spaces"]
    assert t.header("X-Tight") == ["none"]


def test_testmilter_no_reply_option(env):
    tm = env.need("testmilter-N")
    tid = new_id("nr")
    r = send(env, TM_NOREPLY, "m-reject@example.com", ["r-reject@example.net"],
             message(tid, dos=["addheader X-Still-Done yes"]))
    # Triggers cannot answer without replies; end of message still acts.
    assert r.mail[0] == 250 and r.rcpt[0][0] == 250 and r.eod[0] == 250
    t = tm.wait_transaction(header="X-Test-Id", value=tid)
    nr = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000 | 0x80000 | 0x80
    assert t.negotiate["steps"] == 0x400 | nr
    files = delivered(env, tid)
    assert len(files) == 1 and b"\nX-Still-Done: yes\n" in files[0]


# ---------------------------------------------------------------------------
# rspamd


GTUBE = (b"XJS*C4JDBQADN1.NSBN3*2IDNEN*" + b"GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X")


def test_rspamd_rejects_gtube_and_tags_clean_mail(env):
    env.need("rspamd")
    tid = new_id("gtube")
    r = send(env, RSPAMD, "a@example.com", ["b@example.net"],
             message(tid, body=b"Spam test:\r\n" + GTUBE + b"\r\n"))
    assert r.eod == (554, "5.7.1 Gtube pattern"), r.eod
    assert not_delivered(env, tid, wait=0.3)

    tid = new_id("clean")
    r = send(env, RSPAMD, "a@example.com", ["b@example.net"], message(tid))
    assert r.eod[0] == 250, r.eod
    files = delivered(env, tid)
    assert len(files) == 1
    fields, _ = split(files[0])
    result = values(fields, "X-Spamd-Result")
    assert len(result) == 1 and result[0].startswith(b"default: False [")
    assert values(fields, "X-Rspamd-Server")
    assert values(fields, "X-Rspamd-Queue-Id") == [r.queue_id().encode()]
    assert values(fields, "X-Spam-Status")[0].startswith(b"No, score=")


# ---------------------------------------------------------------------------
# OpenDKIM


def _dkim_verify(data, dnsfunc):
    import dkim
    crlf = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    try:
        return dkim.verify(crlf, dnsfunc=dnsfunc)
    except dkim.ValidationError:
        return False


def test_opendkim_signs_and_dkimpy_verifies(env):
    signer = env.need("opendkim-sign")
    pytest.importorskip("dkim")
    tid = new_id("sign")
    r = send(env, DKIM_SIGN, "a@example.com", ["b@example.net"], message(tid))
    assert r.eod[0] == 250, r.eod
    files = delivered(env, tid)
    assert len(files) == 1
    fields, _ = split(files[0])
    sig = values(fields, "DKIM-Signature")
    assert len(sig) == 1
    tags = dict(t.strip().split(b"=", 1) for t in re.sub(rb"\s+", b"", sig[0]).split(b";")
                if t.strip())
    assert (tags[b"d"], tags[b"s"], tags[b"a"]) == (b"example.com", b"sel", b"rsa-sha256")
    assert tags[b"c"] == b"relaxed/relaxed"
    assert _dkim_verify(files[0], signer.dnsfunc)
    # The same check fails once the body changed.
    assert not _dkim_verify(files[0].replace(b"Hello milter.", b"Hello mutter."), signer.dnsfunc)
    # Mail from another domain is not signed.
    tid = new_id("nosign")
    r = send(env, DKIM_SIGN, "a@other.example", ["b@example.net"],
             message(tid, sender=b"a@other.example"))
    assert r.eod[0] == 250
    assert values(split(delivered(env, tid)[0])[0], "DKIM-Signature") == []


def test_opendkim_verifies_without_dns(env):
    signer = env.need("opendkim-sign")
    env.need("opendkim-verify")
    dkim = pytest.importorskip("dkim")
    with open(signer.key_path, "rb") as f:
        key = f.read()
    results = {}
    for kind in ("good", "tampered", "unsigned"):
        tid = new_id("ver-" + kind)
        msg = message(tid)
        if kind != "unsigned":
            sig = dkim.sign(msg, b"sel", b"example.com", key,
                            canonicalize=(b"relaxed", b"relaxed"),
                            include_headers=[b"From", b"To", b"Subject", b"Date", b"Message-ID"])
            msg = sig + msg
        if kind == "tampered":
            msg = msg.replace(b"Second line.", b"Second line!")
        r = send(env, DKIM_VERIFY, "a@example.com", ["b@example.net"], msg)
        assert r.eod[0] == 250, r.eod
        fields, _ = split(delivered(env, tid)[0])
        ar = values(fields, "Authentication-Results")
        assert len(ar) == 1, fields
        results[kind] = re.sub(rb"\s+", b" ", ar[0]).decode()
    assert results["good"].startswith("dkim.test; dkim=pass (2048-bit key")
    assert "header.d=example.com" in results["good"]
    assert results["tampered"].startswith(
        'dkim.test; dkim=fail reason="signature verification failed" (2048-bit key')
    assert results["unsigned"].startswith("dkim.test; dkim=none")


# ---------------------------------------------------------------------------
# clamav-milter


def _mime(test_id, name, data):
    import base64
    b64 = base64.b64encode(data)
    return message(test_id, extra=[b"MIME-Version: 1.0",
                                   b'Content-Type: multipart/mixed; boundary="=_b"'],
                   body=b"\r\n".join([
                       b"--=_b", b"Content-Type: text/plain", b"", b"See the attachment.",
                       b"--=_b", b"Content-Type: application/octet-stream; name=\"" + name + b"\"",
                       b"Content-Transfer-Encoding: base64",
                       b"Content-Disposition: attachment; filename=\"" + name + b"\"", b"",
                       b64, b"--=_b--", b""]))


def test_clamav_rejects_eicar_and_passes_clean(env):
    env.need("clamav")
    tid = new_id("eicar")
    r = send(env, CLAMAV, "a@example.com", ["b@example.net"],
             _mime(tid, b"eicar.com", milters.eicar()))
    assert r.eod == (550, "5.7.1 Virus found: Test.EICAR.NDB.UNOFFICIAL"), r.eod
    assert not_delivered(env, tid, wait=0.3)

    tid = new_id("clamclean")
    r = send(env, CLAMAV, "a@example.com", ["b@example.net"],
             _mime(tid, b"notes.txt", b"nothing to see\r\n" * 50))
    assert r.eod[0] == 250, r.eod
    fields, _ = split(delivered(env, tid)[0])
    assert values(fields, "X-Virus-Status") == [b"Clean"]
    assert values(fields, "X-Virus-Scanned")[0].startswith(b"clamav-milter ")
