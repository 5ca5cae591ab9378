# SPDX-License-Identifier: GPL-2.0-or-later
"""Plugin modifications end to end: what the upstream received, byte-exact.
Header add/insert/change/delete, body replacement, sender changed at MAIL and
at DATA (RSET + replay), recipients added, removed, rewritten at RCPT; later
plugins see earlier edits; symbols in the transaction log line."""

import time

import pytest

import harness
import plugkit
from plugkit import MSG, send

HDRS = [b"From: a@example.com\r\n", b"To: b@example.net\r\n", b"Subject: hello\r\n"]
BODY = b"body line 1\r\nbody line 2\r\n"


def msg(headers, body=BODY):
    return b"".join(headers) + b"\r\n" + body


@pytest.mark.parametrize("keys,want", [
    ({"add_header": "X-Added: yes"}, msg(HDRS + [b"X-Added: yes\r\n"])),
    ({"insert_header": "X-Top: first"}, msg([b"X-Top: first\r\n"] + HDRS)),
    ({"change_header": "Subject: changed subject"},
     msg(HDRS[:2] + [b"Subject: changed subject\r\n"])),
    ({"delete_header": "To"}, msg([HDRS[0], HDRS[2]])),
    ({"delete_header": "X-Not-There"}, MSG),
    ({"replace_body": "replaced\\nbody"}, msg(HDRS, b"replaced\r\nbody\r\n")),
    # a long value is folded at 78 columns by the host
    ({"add_header": "X-Long: " + " ".join(["word%02d" % i for i in range(20)])},
     msg(HDRS + [b"X-Long: word00 word01 word02 word03 word04 word05 word06 word07 word08 word09"
                 b"\r\n word10 word11 word12 word13 word14 word15 word16 word17 word18 word19"
                 b"\r\n"])),
], ids=["add", "insert", "change", "delete", "delete-missing", "body", "fold"])
def test_message_edit(sluice_factory, fake, keys, want):
    sl = plugkit.start(sluice_factory, fake, ("p", "testplug", keys))
    d = send(sl.port)
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.data == want, (m.data, want)


def test_edit_on_pool_thread(sluice_factory, fake):
    """The same edits made by a blocking hook (thread pool)."""
    sl = plugkit.start(sluice_factory, fake,
                       ("p", "testplug_blocking", {"add_header": "X-Pool: yes",
                                                   "change_header": "Subject: from pool",
                                                   "sleep_ms": "20"}))
    d = send(sl.port)
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.data == msg(HDRS[:2] + [b"Subject: from pool\r\n", b"X-Pool: yes\r\n"])


def test_dot_lines_survive_edits(sluice_factory, fake):
    """Edited message with lines starting with '.' is dot-stuffed on the wire."""
    body = b".leading dot\r\n..two dots\r\n.\r\nend\r\n"
    sl = plugkit.start(sluice_factory, fake, ("p", "testplug", {"add_header": "X-A: 1"}))
    d = send(sl.port, body=b"Subject: dots\r\n\r\n" + body)
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.data == b"Subject: dots\r\nX-A: 1\r\n\r\n" + body
    assert len(fake.messages) == 1


def test_later_plugins_see_earlier_edits(sluice_factory, fake):
    """b changes the header a added, c deletes the one a inserted; the order
    of application is the chain order."""
    sl = plugkit.start(sluice_factory, fake,
                       ("a", "testplug", {"add_header": "X-Stage: a",
                                          "insert_header": "X-Temp: a"}),
                       ("b", "testplug", {"change_header": "X-Stage: b"}),
                       ("c", "testplug", {"delete_header": "X-Temp",
                                          "add_header": "X-Stage: c"}))
    d = send(sl.port)
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.data == msg(HDRS + [b"X-Stage: b\r\n", b"X-Stage: c\r\n"])


def test_same_so_twice_different_settings(sluice_factory, fake):
    sl = plugkit.start(sluice_factory, fake,
                       ("one", "testplug", {"add_header": "X-One: 1"}),
                       ("two", "testplug", {"add_header": "X-Two: 2"}))
    d = send(sl.port)
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.data == msg(HDRS + [b"X-One: 1\r\n", b"X-Two: 2\r\n"])


def _tx_commands(fake):
    """The upstream session's commands up to its message: a RSET after the
    last DATA hands the connection back to the reuse pool, and whether it
    has arrived yet when the test looks is a race."""
    s = fake.tx_sessions
    assert len(s) == 1, [x.command_strs() for x in fake.sessions]
    cmds = s[0].command_strs()
    last = max((i for i, c in enumerate(cmds) if c.upper() == "DATA"), default=None)
    if last is not None:
        cmds = cmds[:last + 1] + [c for c in cmds[last + 1:] if c.upper() != "RSET"]
    return cmds


def test_sender_changed_at_mail(sluice_factory, fake):
    """At MAIL the upstream only ever sees the new sender."""
    sl = plugkit.start(sluice_factory, fake,
                       ("p", "testplug", {"change_sender": "new@example.org",
                                          "sender_phase": "mail"}))
    d = send(sl.port, mail_from="old@example.com")
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.mail_from == "new@example.org"
    cmds = _tx_commands(fake)
    assert not any("old@example.com" in c for c in cmds), cmds
    assert "RSET" not in [c.upper() for c in cmds]
    assert m.data == MSG


def test_sender_changed_at_data(sluice_factory, fake):
    """At DATA the envelope is replayed: RSET, MAIL with the new sender, the
    recipients again, then the message."""
    sl = plugkit.start(sluice_factory, fake,
                       ("p", "testplug", {"change_sender": "new@example.org"}))
    d = send(sl.port, mail_from="old@example.com", rcpts=("r1@example.net", "r2@example.net"))
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.mail_from == "new@example.org"
    assert m.rcpts == ["r1@example.net", "r2@example.net"]
    cmds = [c.split(" SIZE")[0] for c in _tx_commands(fake)]
    i = cmds.index("RSET")
    assert cmds[i - 3:i] == ["MAIL FROM:<old@example.com>", "RCPT TO:<r1@example.net>",
                             "RCPT TO:<r2@example.net>"], cmds
    assert cmds[i + 1:i + 5] == ["MAIL FROM:<new@example.org>", "RCPT TO:<r1@example.net>",
                                 "RCPT TO:<r2@example.net>", "DATA"], cmds
    assert len(fake.messages) == 1


def test_replay_tells_xforward_again(sluice_factory, fake_factory):
    """The RSET of a replay clears the MTA's XFORWARD attributes (Postfix
    resets them with the transaction): they go again, right before the
    replayed MAIL."""
    up = fake_factory(xforward=True)
    sl = plugkit.start(sluice_factory, up,
                       ("p", "testplug", {"change_sender": "new@example.org"}))
    d = send(sl.port, mail_from="old@example.com", rcpts=("r1@example.net",))
    assert d["eod"].code == 250, d
    assert up.wait_messages(1)[0].mail_from == "new@example.org"
    cmds = _tx_commands(up)
    i = cmds.index("RSET")
    assert [c.split(" ")[0] for c in cmds[i + 1:i + 3]] == ["XFORWARD", "MAIL"], cmds
    assert "ADDR=127.0.0.1" in cmds[i + 1] and "HELO=client.test" in cmds[i + 1], cmds
    assert cmds[i + 2].startswith("MAIL FROM:<new@example.org>"), cmds


def test_rcpt_added(sluice_factory, fake):
    """An added recipient is sent with RCPT before DATA (no replay)."""
    sl = plugkit.start(sluice_factory, fake, ("p", "testplug", {"add_rcpt": "extra@example.net"}))
    d = send(sl.port)
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.rcpts == ["rcpt@example.net", "extra@example.net"]
    cmds = _tx_commands(fake)
    assert "RSET" not in cmds, cmds


def test_rcpt_removed(sluice_factory, fake):
    """A removed recipient needs RSET and a replay without it."""
    sl = plugkit.start(sluice_factory, fake, ("p", "testplug", {"remove_rcpt": "gone@example.net"}))
    d = send(sl.port, rcpts=("keep@example.net", "gone@example.net"))
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.rcpts == ["keep@example.net"]
    cmds = _tx_commands(fake)
    assert "RSET" in cmds, cmds
    assert len(fake.messages) == 1


def test_only_rcpt_removed(sluice_factory, fake):
    """Removing the only recipient leaves nobody: the message is not
    delivered; like DISCARD the client hears 250 (a 4xx would be retried
    forever) and the drop is logged loudly."""
    sl = plugkit.start(sluice_factory, fake, ("p", "testplug", {"remove_rcpt": "rcpt@example.net"}))
    d = send(sl.port)
    assert d["eod"].code == 250, d
    time.sleep(0.2)
    assert fake.messages == []
    assert sl.wait_log(r"plugins removed every recipient: message accepted and dropped", 2)
    assert sl.wait_log(r"verdict=discarded", 2)


def test_rcpt_rewritten_at_rcpt(sluice_factory, fake):
    """remove + add in the RCPT phase: the new address goes to the upstream
    in place of the old one, which it never sees."""
    sl = plugkit.start(sluice_factory, fake,
                       ("p", "testplug", {"rewrite_rcpt": "old@example.net new@example.net"}))
    d = send(sl.port, rcpts=("old@example.net", "other@example.net"))
    assert d["rcpt:old@example.net"].code == 250, d
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.rcpts == ["new@example.net", "other@example.net"]
    cmds = _tx_commands(fake)
    assert not any("old@example.net" in c for c in cmds), cmds


def test_envelope_and_message_edits_together(sluice_factory, fake):
    sl = plugkit.start(sluice_factory, fake,
                       ("a", "testplug", {"change_sender": "bounce@example.org",
                                          "add_rcpt": "archive@example.net"}),
                       ("b", "testplug", {"remove_rcpt": "drop@example.net",
                                          "replace_body": "new body"}))
    d = send(sl.port, rcpts=("keep@example.net", "drop@example.net"))
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.mail_from == "bounce@example.org"
    assert sorted(m.rcpts) == ["archive@example.net", "keep@example.net"]
    assert m.data == msg(HDRS, b"new body\r\n")
    assert len(fake.messages) == 1


def test_symbols_in_log_line(sluice_factory, fake):
    sl = plugkit.start(sluice_factory, fake,
                       ("a", "testplug", {"symbol": "SYM_A 1.25"}),
                       ("b", "testplug", {"symbol": "SYM_B 2"}))
    d = send(sl.port)
    assert d["eod"].code == 250, d
    tx = sl.wait_transactions(1)[-1]
    assert tx["score"] == "3.25", tx
    assert tx["symbols"] == "SYM_A,SYM_B", tx
    assert tx["plugins"].startswith("a:") and ",b:" in tx["plugins"], tx


def test_several_transactions_one_session(sluice_factory, fake):
    """Edits of one transaction do not leak into the next."""
    sl = plugkit.start(sluice_factory, fake,
                       ("p", "testplug", {"add_header": "X-Once: 1",
                                          "add_rcpt": "extra@example.net"}))
    with plugkit.Client(sl.port) as c:
        c.greeting()
        c.ehlo()
        for i in range(3):
            r = plugkit.harness.transaction(c, rcpts=("r%d@example.net" % i,))
            assert r.code == 250, r
    msgs = fake.wait_messages(3)
    assert len(msgs) == 3
    for i, m in enumerate(msgs):
        assert m.rcpts == ["r%d@example.net" % i, "extra@example.net"]
        assert m.data.count(b"X-Once: 1\r\n") == 1


def test_rcpt_rewrite_keeps_dsn_parameters(sluice_factory, fake):
    """A recipient rewritten in the RCPT phase keeps the client's DSN
    parameters (the fake upstream offers DSN)."""
    sl = plugkit.start(sluice_factory, fake,
                       ("p", "testplug", {"rewrite_rcpt": "old@example.net new@example.net"}))
    with harness.Client(sl.port) as c:
        c.greeting()
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<s@example.com> RET=HDRS", 250)
        c.expect("RCPT TO:<old@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;old@example.net", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: dsn\r\n\r\nbody\r\n.\r\n")
        assert c.reply().code == 250
    cmds = _tx_commands(fake)
    rcpt = [x for x in cmds if x.startswith("RCPT")]
    assert rcpt == ["RCPT TO:<new@example.net> NOTIFY=SUCCESS,FAILURE "
                    "ORCPT=rfc822;old@example.net"], cmds
