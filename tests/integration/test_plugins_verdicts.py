# SPDX-License-Identifier: GPL-2.0-or-later
"""Plugin verdicts end to end: every verdict at every phase (connect, helo,
mail, rcpt, data) with the default and a custom reply, through sluice into the
recording upstream; what the client heard and what the upstream received.
Also DISCARD, QUARANTINE (accept / reject reply) and DISCONNECT, and the
first-non-CONTINUE rule with two instances."""

import glob
import os
import time

import pytest

import plugkit
from plugkit import MSG, send

PHASES = ["connect", "helo", "mail", "rcpt", "data"]

# Default replies of the host: (code, enh, text). The connect phase has its
# own codes: a refused greeting is 554 (reject) or 421 (tempfail,
# disconnect), and the connection is closed.
DEFAULT = {
    "reject": (554, "5.7.1", "Rejected by policy"),
    "tempfail": (451, "4.7.1", "Temporarily rejected by policy, try again later"),
    "disconnect": (421, "4.7.0", "Closing connection"),
}
CUSTOM = {
    "reject": "553 5.7.9 custom reject text",
    "tempfail": "452 4.7.8 custom tempfail text",
    "disconnect": "421 4.7.7 custom bye",
}
STEP = {"connect": "greeting", "helo": "ehlo", "mail": "mail", "rcpt": "rcpt:rcpt@example.net",
        "data": "eod"}


def want_reply(phase, verdict, custom):
    if custom:
        code, enh, text = CUSTOM[verdict].split(" ", 2)
        code = int(code)
    else:
        code, enh, text = DEFAULT[verdict]
        if phase == "rcpt" and verdict == "reject":
            code = 550
    if phase == "connect":
        code = 554 if verdict == "reject" else 421
    return code, enh, text


@pytest.mark.parametrize("custom", [False, True], ids=["default", "custom"])
@pytest.mark.parametrize("verdict", ["reject", "tempfail", "disconnect"])
@pytest.mark.parametrize("phase", PHASES)
def test_refusing_verdict(sluice_factory, fake, phase, verdict, custom):
    keys = {phase: verdict}
    if custom:
        keys["reply"] = CUSTOM[verdict]
    sl = plugkit.start(sluice_factory, fake, ("p", "testplug", keys))
    d = send(sl.port)
    r = d.get(STEP[phase])
    assert r is not None, d
    code, enh, text = want_reply(phase, verdict, custom)
    assert (r.code, r.enh, r.text) == (code, enh, "%s %s" % (enh, text)), d
    # What follows the refusal.
    if verdict == "disconnect" or phase == "connect":
        assert d.closed, d
    if phase == "rcpt" and verdict != "disconnect":
        # The only recipient was refused: DATA has nobody to deliver to.
        assert d["data"].code == 554, d
    # The upstream: the refused command never reached it; no message did.
    time.sleep(0.2)
    assert fake.messages == []
    sent = [v for s in fake.sessions for v in s.verbs()]
    assert "DATA" not in sent, sent
    if phase in ("connect", "helo", "mail"):
        assert "MAIL" not in sent, sent
    if phase == "rcpt":
        assert "RCPT" not in sent, sent


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("verdict", ["continue", "accept"])
def test_passing_verdict(sluice_factory, fake, phase, verdict):
    """CONTINUE and ACCEPT at any phase: the message goes through unchanged."""
    sl = plugkit.start(sluice_factory, fake, ("p", "testplug", {phase: verdict}))
    d = send(sl.port)
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.data == MSG
    assert m.rcpts == ["rcpt@example.net"]


@pytest.mark.parametrize("phase", ["mail", "rcpt", "data"])
def test_discard(sluice_factory, fake, phase):
    """DISCARD: the client hears 250, the upstream gets no DATA; logged."""
    sl = plugkit.start(sluice_factory, fake, ("p", "testplug", {phase: "discard"}))
    d = send(sl.port)
    assert d["eod"].code == 250, d
    assert d["eod"].enh == "2.0.0"
    time.sleep(0.3)
    assert fake.messages == []
    sent = [v for s in fake.sessions for v in s.verbs()]
    assert "DATA" not in sent, sent
    assert sl.wait_log(r"plugin=p DISCARD", 5), sl.output()
    tx = sl.wait_transactions(1)
    assert tx[-1]["verdict"] == "discarded", tx
    assert tx[-1]["decision"] == "p:discard", tx


@pytest.mark.parametrize("reply", ["accept", "reject"])
def test_quarantine(sluice_factory, fake, tmp_path, reply):
    qdir = tmp_path / "quarantine"
    qdir.mkdir()
    sl = plugkit.start(sluice_factory, fake,
                       ("q", "testplug", {"data": "quarantine", "quarantine_reply": reply,
                                          "add_header": "X-Before-Quarantine: yes"}),
                       server={"quarantine_dir": str(qdir)})
    d = send(sl.port, mail_from="qs@example.com", rcpts=("qr@example.net",))
    if reply == "accept":
        assert (d["eod"].code, d["eod"].enh) == (250, "2.0.0"), d
    else:
        assert (d["eod"].code, d["eod"].enh) == (554, "5.7.1"), d
        assert "quarantined" in d["eod"].text
    files = glob.glob(str(qdir / "*.eml"))
    assert len(files) == 1, files
    data = open(files[0], "rb").read()
    # The stored message is the edited one, with the envelope recorded.
    assert b"X-Sluice-Envelope-From: <qs@example.com>\r\n" in data
    assert b"X-Sluice-Envelope-To: <qr@example.net>\r\n" in data
    assert data.endswith(MSG[:MSG.index(b"\r\n\r\n") + 2] + b"X-Before-Quarantine: yes\r\n"
                         + MSG[MSG.index(b"\r\n\r\n") + 2:])
    time.sleep(0.2)
    assert fake.messages == []
    tx = sl.wait_transactions(1)
    assert tx[-1]["verdict"] == "quarantined", tx


def test_quarantine_without_dir_tempfails(sluice_factory, fake):
    """No [server] quarantine_dir: the message is not lost silently."""
    sl = plugkit.start(sluice_factory, fake, ("q", "testplug", {"data": "quarantine"}))
    d = send(sl.port)
    assert d["eod"].code == 451, d
    assert fake.messages == []


def test_first_non_continue_wins(sluice_factory, fake):
    sl = plugkit.start(sluice_factory, fake,
                       ("a", "testplug", {"data": "continue"}),
                       ("b", "testplug", {"data": "reject", "reply": "550 5.7.2 b says no"}),
                       ("c", "testplug", {"data": "tempfail", "counter": "yes"}),
                       stats={"listen": "127.0.0.1:%d" % plugkit.harness.free_port()})
    d = send(sl.port)
    assert (d["eod"].code, d["eod"].text) == (550, "5.7.2 b says no"), d
    tx = sl.wait_transactions(1)
    assert tx[-1]["decision"] == "b:reject", tx
    # c was never called.
    port = int(sl.sections["stats"]["listen"].rsplit(":", 1)[1])
    m = plugkit.metrics(port)
    assert not plugkit.metric_value(m, "sluice_plugin_c_data_calls_total"), m


def test_accept_skips_rest_of_phase_only(sluice_factory, fake):
    """ACCEPT at RCPT skips the later plugin's RCPT hook, not its DATA hook."""
    sl = plugkit.start(sluice_factory, fake,
                       ("a", "testplug", {"rcpt": "accept"}),
                       ("b", "testplug", {"rcpt": "reject", "add_header": "X-B: ran"}))
    d = send(sl.port)
    assert d["rcpt:rcpt@example.net"].code == 250, d
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert b"X-B: ran\r\n" in m.data


def test_rcpt_verdict_per_recipient(sluice_factory, fake):
    """A RCPT verdict refuses one recipient; the others are delivered."""
    sl = plugkit.start(sluice_factory, fake,
                       ("p", "testplug", {"rcpt": "reject", "match_rcpt": "bad@example.net",
                                          "reply": "550 5.1.1 no such user here"}))
    d = send(sl.port, rcpts=("good@example.net", "bad@example.net", "also@example.net"))
    assert d["rcpt:good@example.net"].code == 250
    assert (d["rcpt:bad@example.net"].code, d["rcpt:bad@example.net"].text) == \
        (550, "5.1.1 no such user here")
    assert d["rcpt:also@example.net"].code == 250
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.rcpts == ["good@example.net", "also@example.net"]


def test_helo_reject_then_retry_allowed(sluice_factory, fake):
    """After a refused EHLO the session is still usable (the state went back)."""
    sl = plugkit.start(sluice_factory, fake, ("p", "testplug", {"helo": "reject"}))
    with plugkit.Client(sl.port) as c:
        c.greeting()
        assert c.cmd("EHLO client.test").code == 554
        assert c.cmd("MAIL FROM:<a@example.com>").code == 503
        c.expect("QUIT", 221)
