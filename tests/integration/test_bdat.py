# SPDX-License-Identifier: GPL-2.0-or-later
"""CHUNKING / BDAT (RFC 3030) inbound, end to end.

A raw-socket CHUNKING client (swaks does not speak BDAT) talks to sluice in
front of a recording fake upstream without CHUNKING (the message must
arrive as DATA, dot-stuffed, byte-exact), a fake upstream with CHUNKING
(it must arrive as BDAT, byte-exact) and a private real Postfix (which
offers CHUNKING). Also: chunks of mixed sizes down to 1 byte and
`BDAT 0 LAST`, a CR LF split across chunks, pipelining, BDAT without a
transaction (503, its bytes read so the stream stays in step), size limits
(552 5.3.4, the rest of the chunks answered with it), DATA after BDAT
(503), RSET between chunks, bare LF / bare CR under both bare_newline
policies (the same replies as DATA), smuggling attempts inside chunks
(never a second message upstream), BODY=BINARYMIME (555 unless the upstream
takes it, then passed through byte for byte), chunking = no,
data_timeout between chunks, and a message changed by the rewrite plugin.
Loopback only; every wait is bounded.
"""

import os
import re

import pytest

import harness
import plugkit
from harness import Client

REWRITE_SO = os.path.abspath(os.path.join(plugkit.BUILD, "plugins", "rewrite.so"))

BODY = (b"Subject: chunks\r\nFrom: a@example.com\r\n\r\n"
        b"line one\r\n.\r\n..\r\n.hidden\r\n..two dots\r\nlast line\r\n")

SMUGGLE = (b"Subject: innocent\r\n\r\nhello\r\n"
           b".\r\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"
           b"Subject: smuggled\r\n\r\nevil\r\n.\r\n"
           b"tail\r\n")


def chunks_of(data, sizes):
    """Split data into pieces of the given sizes; the rest is one more piece."""
    out, i = [], 0
    for n in sizes:
        out.append(data[i:i + n])
        i += n
    if i < len(data):
        out.append(data[i:])
    return out


def bdat_bytes(pieces, last_empty=False):
    """BDAT commands + data for pieces; the last piece gets LAST unless
    last_empty (then a BDAT 0 LAST follows)."""
    out = b""
    for i, p in enumerate(pieces):
        last = (i == len(pieces) - 1) and not last_empty
        out += b"BDAT %d%s\r\n" % (len(p), b" LAST" if last else b"") + p
    if last_empty:
        out += b"BDAT 0 LAST\r\n"
    return out


def open_tx(port, rcpts=("rcpt@example.net",), mail="MAIL FROM:<sender@example.com>"):
    c = Client(port)
    c.greeting()
    r = c.ehlo()
    assert "CHUNKING" in r.lines, r
    c.expect(mail, 250)
    for rc in rcpts:
        c.expect("RCPT TO:<%s>" % rc, 250)
    return c


def send_chunks(c, pieces, last_empty=False):
    """Send the chunks one by one, checking each non-LAST reply; returns
    the final reply."""
    n = len(pieces) + (1 if last_empty else 0)
    for i, p in enumerate(pieces):
        last = (i == len(pieces) - 1) and not last_empty
        c.send(b"BDAT %d%s\r\n" % (len(p), b" LAST" if last else b"") + p)
        r = c.reply()
        if not last:
            assert r.code == 250 and r.enh == "2.0.0" and ("%d octets" % len(p)) in r.text, r
        else:
            return r
    assert n == len(pieces) + 1
    c.send(b"BDAT 0 LAST\r\n")
    return c.reply()


def chunking_fake(fake_factory):
    return fake_factory(caps=["PIPELINING", "SIZE 52428800", "8BITMIME", "ENHANCEDSTATUSCODES",
                              "CHUNKING"])


def only_one_mail(fake):
    """The upstream saw exactly one MAIL and no smuggled sender."""
    cmds = [c for s in fake.sessions for c in s.command_strs()]
    mails = [c for c in cmds if c.upper().startswith("MAIL")]
    assert len(mails) == 1, cmds
    assert not any("evil@" in c or "victim@" in c for c in cmds), cmds


# ---- the EHLO offer and chunking = no ----------------------------------------

def test_ehlo_offers_chunking_not_binarymime(sluice, fake):
    with Client(sluice.port) as c:
        c.greeting()
        r = c.ehlo()
        assert "CHUNKING" in r.lines and "BINARYMIME" not in r.lines, r
        c.expect("MAIL FROM:<a@example.com> BODY=BINARYMIME", 555, "5.5.4")
        c.expect("MAIL FROM:<a@example.com>", 250)
        c.expect("QUIT", 221)


def binarymime_fake(fake_factory):
    return fake_factory(caps=["PIPELINING", "SIZE 52428800", "8BITMIME", "ENHANCEDSTATUSCODES",
                              "CHUNKING", "BINARYMIME"])


# A binary body: NUL, bare LF and CR, a lone "." line, CRLF.CRLF, 8-bit
# bytes, and no line end at the end. Only the header section is text.
BIN_HEAD = (b"From: a@example.com\r\nSubject: binary\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: binary\r\n\r\n")
BIN_BODY = bytes(range(256)) + b"\n.\n\r.\r\r\n.\r\nMAIL FROM:<evil@example.com>\r\n\x00tail"


def test_binarymime_passed_through_byte_exact(sluice_factory, fake_factory):
    """Offered when the upstream offers CHUNKING and BINARYMIME; the body
    goes on as BDAT byte for byte (nothing added, nothing normalised),
    BODY=BINARYMIME on MAIL; DATA is refused for such a message."""
    up = binarymime_fake(fake_factory)
    sl = sluice_factory(up.port)
    assert harness.smtp_send(sl.port) == {}  # sluice learns the upstream's offer
    with Client(sl.port) as c:
        c.greeting()
        r = c.ehlo()
        assert "CHUNKING" in r.lines and "BINARYMIME" in r.lines, r
        c.expect("MAIL FROM:<sender@example.com> BODY=BINARYMIME", 250)
        c.expect("RCPT TO:<rcpt@example.net>", 250)
        c.expect("DATA", 503, "5.5.1")
        msg = BIN_HEAD + BIN_BODY
        r = send_chunks(c, chunks_of(msg, (10, len(BIN_HEAD) - 9, 7, 100)))
        assert r.code == 250, r
    m = up.wait_messages(2)[1]
    assert m.chunked and m.data == msg, m.data
    assert "BODY=BINARYMIME" in m.mail_params.upper(), m.mail_params
    only_mails = [x for x in m.session.command_strs() if "evil@" in x]
    assert not only_mails


def test_binarymime_with_a_plugin_header_edit(sluice_factory, fake_factory):
    """A plugin adds a header: the header section changes, the binary body
    still goes on byte for byte."""
    import plugkit
    up = binarymime_fake(fake_factory)
    sl = plugkit.start(sluice_factory, up, ("p", "testplug", {"add_header": "X-Seen: yes"}))
    assert harness.smtp_send(sl.port) == {}
    with Client(sl.port) as c:
        c.greeting()
        c.ehlo()
        c.expect("MAIL FROM:<sender@example.com> BODY=BINARYMIME", 250)
        c.expect("RCPT TO:<rcpt@example.net>", 250)
        r = send_chunks(c, [BIN_HEAD + BIN_BODY])
        assert r.code == 250, r
    m = up.wait_messages(2)[1]
    assert m.chunked and m.data.endswith(b"\r\n\r\n" + BIN_BODY), m.data
    assert b"X-Seen: yes\r\n" in m.data.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def test_binarymime_kept_when_a_plugin_gives_its_own_mail_parameters(sluice_factory,
                                                                     fake_factory):
    """A plugin changes the sender with parameters of its own: the replayed
    MAIL still says BODY=BINARYMIME, since the body goes as binary."""
    import plugkit
    up = binarymime_fake(fake_factory)
    sl = plugkit.start(sluice_factory, up, ("p", "testplug", {
        "change_sender": "bounce@example.org", "sender_params": "SIZE=99999"}))
    assert harness.smtp_send(sl.port) == {}
    with Client(sl.port) as c:
        c.greeting()
        c.ehlo()
        c.expect("MAIL FROM:<sender@example.com> BODY=BINARYMIME", 250)
        c.expect("RCPT TO:<rcpt@example.net>", 250)
        r = send_chunks(c, [BIN_HEAD + BIN_BODY])
        assert r.code == 250, r
    m = up.wait_messages(2)[1]
    assert m.mail_from == "bounce@example.org", m.mail_from
    params = m.mail_params.upper().split()
    assert "BODY=BINARYMIME" in params and "SIZE=99999" in params, m.mail_params
    assert m.chunked and m.data == BIN_HEAD + BIN_BODY


def test_binarymime_header_section_keeps_the_line_rules(sluice_factory, fake_factory):
    up = binarymime_fake(fake_factory)
    sl = sluice_factory(up.port)
    assert harness.smtp_send(sl.port) == {}
    with Client(sl.port) as c:
        c.greeting()
        c.ehlo()
        c.expect("MAIL FROM:<sender@example.com> BODY=BINARYMIME", 250)
        c.expect("RCPT TO:<rcpt@example.net>", 250)
        r = send_chunks(c, [b"Subject: x\nX-Evil: 1\r\n\r\n" + BIN_BODY])
        assert (r.code, r.enh) == (550, "5.5.2"), r
    assert len(up.all_messages) == 1


def test_binarymime_upstream_without_it_is_temporary(sluice_factory, fake_factory):
    up = binarymime_fake(fake_factory)
    # A new upstream connection per session (a reused one keeps the
    # extensions it was opened with, rightly).
    sl = sluice_factory(up.port, upstream={"reuse_max_idle": "0"})
    assert harness.smtp_send(sl.port) == {}
    up.caps.remove("BINARYMIME")  # the next upstream connection lacks it
    with Client(sl.port) as c:
        c.greeting()
        r = c.ehlo()
        assert "BINARYMIME" in r.lines, r
        c.expect("MAIL FROM:<sender@example.com> BODY=BINARYMIME", 455, "4.5.4")
        c.expect("MAIL FROM:<sender@example.com>", 250)


def test_chunking_no(sluice_factory, fake):
    sl = sluice_factory(fake.port, server={"chunking": "no"})
    with Client(sl.port) as c:
        c.greeting()
        r = c.ehlo()
        assert "CHUNKING" not in r.lines, r
        c.expect("MAIL FROM:<a@example.com>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("BDAT 3 LAST", 502, "5.5.1")
        c.expect("RSET", 250)
    r = harness.run_sluice(["--check", "-c", sl.config_path])
    assert r.returncode == 0, r


def test_check_rejects_bad_chunking_value(sluice_factory, fake):
    sl = sluice_factory(fake.port, server={"chunking": "maybe"}, start=False)
    sl.write_config()
    r = harness.run_sluice(["--check", "-c", sl.config_path])
    assert r.returncode != 0 and "chunking" in (r.stdout + r.stderr), r


# ---- to an upstream without CHUNKING: DATA, dots stuffed, byte-exact -------------

@pytest.mark.parametrize("sizes,last_empty", [
    ((), False),                         # one chunk, LAST
    ((1, 1, 1, 7, 1, 30), True),         # mixed, 1-byte chunks, then BDAT 0 LAST
    ((len(BODY) - 1,), False),           # "\r" | "\n": CR LF split across chunks
    ((len(BODY) - 2, 1), False),         # the final CR LF split, LAST is "\n"
])
def test_chunks_to_data_upstream_byte_exact(sluice, fake, sizes, last_empty):
    with open_tx(sluice.port) as c:
        r = send_chunks(c, chunks_of(BODY, sizes), last_empty)
        assert r.code == 250, r
        c.expect("QUIT", 221)
    m = fake.wait_messages(1)[0]
    assert not m.chunked
    assert m.data == BODY, m.data
    assert m.raw == harness.dot_stuff(BODY) + b".\r\n", m.raw


def test_pipelined_bdats_in_one_send(sluice, fake):
    pieces = chunks_of(BODY, (5, 1, 20))
    with Client(sluice.port) as c:
        c.greeting()
        c.ehlo()
        c.send(b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<rcpt@example.net>\r\n")
        assert [r.code for r in c.replies(2)] == [250, 250]
        c.send(bdat_bytes(pieces, last_empty=True) + b"NOOP\r\n")
        rs = c.replies(len(pieces) + 2)
        assert [r.code for r in rs] == [250] * (len(pieces) + 2), rs
        for p, r in zip(pieces, rs):
            assert r.text == "2.0.0 %d octets received" % len(p), r
        assert "queued" in rs[-2].text, rs        # the upstream's own final reply
        # A second message pipelined whole, envelope included.
        c.send(b"MAIL FROM:<s2@example.com>\r\nRCPT TO:<r2@example.net>\r\n"
               + bdat_bytes([BODY]))
        assert [r.code for r in c.replies(3)] == [250, 250, 250]
    msgs = fake.wait_messages(2)
    assert [m.data for m in msgs] == [BODY, BODY]
    assert msgs[1].mail_from == "s2@example.com"


def test_empty_message_bdat_0_last(sluice, fake):
    with open_tx(sluice.port) as c:
        c.send(b"BDAT 0 LAST\r\n")
        r = c.reply()
        assert r.code == 250, r
        c.expect("NOOP", 250)
    m = fake.wait_messages(1)[0]
    assert m.data == b"" and m.raw == b".\r\n", m.raw


def test_unterminated_last_line_gets_crlf(sluice, fake):
    with open_tx(sluice.port) as c:
        assert send_chunks(c, [b"Subject: x\r\n\r\nno newline", b" at end"]).code == 250
    m = fake.wait_messages(1)[0]
    assert m.data == b"Subject: x\r\n\r\nno newline at end\r\n", m.data


# ---- to an upstream with CHUNKING: BDAT, byte-exact ------------------------------

def test_chunks_to_chunking_upstream_byte_exact(sluice_factory, fake_factory):
    up = chunking_fake(fake_factory)
    sl = sluice_factory(up.port, server={"log_level": "debug"})
    with open_tx(sl.port) as c:
        r = send_chunks(c, chunks_of(BODY, (1, 2, 3, 1)), last_empty=True)
        assert r.code == 250, r
    m = up.wait_messages(1)[0]
    assert m.chunked and m.chunks == [len(BODY)], (m.chunked, m.chunks)
    assert m.data == BODY, m.data
    # And a DATA client's message goes on as BDAT too, unstuffed.
    with Client(sl.port) as c:
        c.greeting()
        c.ehlo()
        assert harness.transaction(c, body=BODY).code == 250
    m = up.wait_messages(2)[1]
    assert m.chunked and m.data == BODY, m.data
    assert sl.wait_log(r"upstream> BDAT %d LAST" % len(BODY), timeout=5)


def test_refused_bdat_upstream_is_relayed_and_reset(sluice_factory, fake_factory):
    up = chunking_fake(fake_factory)
    up.faults["EOD"] = "554 5.7.1 content refused"
    sl = sluice_factory(up.port)
    with open_tx(sl.port) as c:
        r = send_chunks(c, [BODY])
        assert r.code == 554 and r.enh == "5.7.1", r
        up.faults.pop("EOD")
        c.expect("MAIL FROM:<again@example.com>", 250)
        c.expect("RCPT TO:<rcpt@example.net>", 250)
        assert send_chunks(c, [BODY]).code == 250
    msgs = up.wait_messages(1)
    assert msgs[0].mail_from == "again@example.com"
    # The refused BDAT LAST was followed by RSET upstream.
    cmds = [x for s in up.tx_sessions for x in s.command_strs()]
    i = next(i for i, x in enumerate(cmds) if x.startswith("BDAT"))
    assert cmds[i + 1] == "RSET", cmds


# ---- a real Postfix (offers CHUNKING) ----------------------------------------------

def test_into_real_postfix_byte_exact(postfix, sluice_factory):
    sl = sluice_factory(postfix.port, server={"log_level": "debug"})
    before = postfix.mail_files()
    body = BODY + SMUGGLE.split(b"\r\n\r\n", 1)[1]
    with open_tx(sl.port, rcpts=("bdat@example.net",)) as c:
        r = send_chunks(c, chunks_of(body, (3, 1, 1, 40)), last_empty=True)
        assert r.code == 250, r
    f = postfix.wait_mail(1, before=before)
    assert len(f) == 1, postfix.log_tail()
    with open(f[0], "rb") as fh:
        raw = fh.read()
    # Maildir: LF line ends, Postfix's headers on top of ours.
    want = body.replace(b"\r\n", b"\n")
    assert raw.endswith(want.split(b"\n", 2)[2]), raw
    assert b"Subject: chunks\n" in raw and b"Subject: smuggled" in raw
    assert sl.wait_log(r"upstream> BDAT %d LAST" % len(body), timeout=5)
    # Nothing else was delivered: the smuggled text stayed inside.
    assert len(postfix.wait_mail(2, timeout=1.0, before=before)) == 1


# ---- out of sequence: the bytes are still read ------------------------------------

def test_bdat_without_mail_keeps_stream_in_sync(sluice, fake):
    with Client(sluice.port) as c:
        c.greeting()
        c.ehlo()
        # The chunk holds command text: read as commands it would QUIT.
        c.send(b"BDAT 6\r\nQUIT\r\n")
        r = c.reply()
        assert r.code == 503 and r.enh == "5.5.1", r
        c.send(b"BDAT 12 LAST\r\nRSET\r\nQUIT\r\n")
        assert c.reply().code == 503
        c.expect("NOOP", 250)
        c.expect("MAIL FROM:<sender@example.com>", 250)
        # No valid recipient yet: 554, bytes read all the same.
        c.send(b"BDAT 6 LAST\r\nQUIT\r\n")
        r = c.reply()
        assert r.code == 554 and r.enh == "5.5.1", r
        c.expect("RCPT TO:<rcpt@example.net>", 250)
        assert send_chunks(c, [BODY]).code == 250
    assert [m.data for m in fake.wait_messages(1)] == [BODY]


def test_bdat_syntax(sluice, fake):
    with open_tx(sluice.port) as c:
        for bad in ("BDAT", "BDAT x", "BDAT -1", "BDAT 5 FIRST", "BDAT 12345678901234567890",
                    "BDAT 5LAST"):
            c.expect(bad, 501, "5.5.4")
        assert send_chunks(c, [BODY]).code == 250


def test_data_after_bdat_refused_and_rset_discards(sluice, fake):
    with open_tx(sluice.port) as c:
        c.send(b"BDAT 10\r\nSubject: x")
        assert c.reply().code == 250
        c.expect("DATA", 503, "5.5.1")
        c.expect("MAIL FROM:<other@example.com>", 503, "5.5.1")
        c.expect("RCPT TO:<other@example.net>", 503, "5.5.1")
        c.expect("RSET", 250)
        # The chunk and the transaction are gone; DATA needs MAIL again.
        c.expect("DATA", 503)
        c.send(b"BDAT 3 LAST\r\nabc")
        assert c.reply().code == 503
        c.expect("MAIL FROM:<sender@example.com>", 250)
        c.expect("RCPT TO:<rcpt@example.net>", 250)
        assert send_chunks(c, [BODY]).code == 250
    msgs = fake.wait_messages(1)
    assert [m.data for m in msgs] == [BODY] and len(fake.all_messages) == 1
    assert any("RSET" in x for s in fake.sessions for x in s.command_strs())


# ---- limits -------------------------------------------------------------------------

def test_size_limit(sluice_factory, fake):
    sl = sluice_factory(fake.port, server={"max_message_size": "1k"})
    with open_tx(sl.port) as c:
        # One chunk over the limit: refused as soon as it is read; the
        # pipelined rest of the message gets the same answer.
        c.send(b"BDAT 2000\r\n" + b"x" * 2000 + b"BDAT 5 LAST\r\nhello")
        r1, r2 = c.replies(2)
        assert (r1.code, r1.enh) == (552, "5.3.4") and (r2.code, r2.enh) == (552, "5.3.4"), (r1, r2)
        c.expect("NOOP", 250)
        # Over the limit in total, by declared sizes.
        c.expect("MAIL FROM:<sender@example.com>", 250)
        c.expect("RCPT TO:<rcpt@example.net>", 250)
        c.send(b"BDAT 600\r\n" + b"y" * 600)
        assert c.reply().code == 250
        c.send(b"BDAT 600 LAST\r\n" + b"z" * 600)
        r = c.reply()
        assert (r.code, r.enh) == (552, "5.3.4"), r
        c.expect("NOOP", 250)
    assert fake.messages == []


def test_size_limit_on_canonical_bytes_like_data(sluice_factory, fake):
    # Small chunks that add up past the limit: the reader's count, the
    # reply DATA gives.
    sl = sluice_factory(fake.port, server={"max_message_size": "1k"})
    line = b"a" * 98 + b"\r\n"
    with open_tx(sl.port) as c:
        c.send(b"BDAT 0\r\n")
        assert c.reply().code == 250
        r = None
        for i in range(12):
            c.send(b"BDAT %d\r\n" % len(line) + line)
            r = c.reply()
            if r.code != 250:
                break
        assert (r.code, r.enh) == (552, "5.3.4"), r
        c.send(b"BDAT 3 LAST\r\nabc")
        assert c.reply().code == 552
        c.expect("MAIL FROM:<sender@example.com>", 250)
    assert fake.messages == []


def test_long_line_and_header_limits_like_data(sluice_factory, fake):
    sl = sluice_factory(fake.port, server={"max_line_length": "512", "max_header_size": "1k"})
    long_line = b"Subject: x\r\n\r\n" + b"b" * 600 + b"\r\n"
    big_header = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 60) for i in range(30)) + b"\r\nbody\r\n"
    want = {}
    for name, body in (("line", long_line), ("header", big_header)):
        with Client(sl.port) as c:
            c.greeting()
            c.ehlo()
            r = harness.transaction(c, body=body)
            want[name] = (r.code, r.enh, r.text)
        with open_tx(sl.port) as c:
            r = send_chunks(c, chunks_of(body, (7,)))
            assert (r.code, r.enh, r.text) == want[name], (name, r, want[name])
    assert want["line"][0] == 550 and want["header"][0] == 552, want
    assert fake.messages == []


# ---- bare LF / bare CR, smuggling -------------------------------------------------

def data_reply(port, raw_body):
    """What DATA answers for a raw (already stuffed) body ending in CRLF.CRLF."""
    with Client(port) as c:
        c.greeting()
        c.ehlo()
        c.expect("MAIL FROM:<sender@example.com>", 250)
        c.expect("RCPT TO:<rcpt@example.net>", 250)
        c.expect("DATA", 354)
        c.send(raw_body)
        r = c.reply()
        return (r.code, r.enh, r.text)


@pytest.mark.parametrize("body", [
    b"Subject: x\r\n\r\nbare\nLF\r\n",
    b"Subject: x\r\n\r\nbare\rCR\r\n",
    b"Subject: x\r\n\r\nhello\n.\nMAIL FROM:<evil@attacker.test>\r\n",
    b"Subject: x\r\n\r\nends in a bare CR\r",
])
def test_bare_newline_reject_same_as_data(sluice, fake, body):
    d = data_reply(sluice.port, body + (b"\r\n.\r\n" if not body.endswith(b"\r\n") else b".\r\n"))
    assert d[:2] == (550, "5.5.2"), d
    with open_tx(sluice.port) as c:
        # Pipelined: a chunk that already holds the error is answered with
        # it at once, and so is the rest of the message.
        pieces = chunks_of(body, (len(body) // 2,))
        c.send(bdat_bytes(pieces))
        rs = c.replies(len(pieces))
        assert all(r.code == 250 or (r.code, r.enh, r.text) == d for r in rs), (rs, d)
        assert (rs[-1].code, rs[-1].enh, rs[-1].text) == d, (rs, d)
        c.expect("NOOP", 250)
    assert fake.messages == [] and fake.all_messages == []


def test_bare_lf_mid_chunks_fails_the_rest(sluice, fake):
    with open_tx(sluice.port) as c:
        c.send(b"BDAT 9\r\nSubject:\n" + b"BDAT 4\r\nabc\n" + b"BDAT 2 LAST\r\n\r\n"
               + b"MAIL FROM:<sender@example.com>\r\n")
        rs = c.replies(4)
        assert [(r.code, r.enh) for r in rs[:3]] == [(550, "5.5.2")] * 3, rs
        assert rs[3].code == 250, rs    # a new transaction starts cleanly
        c.expect("RCPT TO:<rcpt@example.net>", 250)
        assert send_chunks(c, [BODY]).code == 250
    assert [m.data for m in fake.wait_messages(1)] == [BODY]


def test_bare_newline_normalize(sluice_factory, fake):
    sl = sluice_factory(fake.port, server={"bare_newline": "normalize"})
    body = b"Subject: x\r\n\r\nhello\n.\nMAIL FROM:<evil@attacker.test>\rRCPT TO:<victim@example.net>\n"
    with open_tx(sl.port) as c:
        assert send_chunks(c, chunks_of(body, (21, 1, 1))).code == 250
    m = fake.wait_messages(1)[0]
    want = (b"Subject: x\r\n\r\nhello\r\n.\r\nMAIL FROM:<evil@attacker.test>\r\n"
            b"RCPT TO:<victim@example.net>\r\n")
    assert m.data == want, m.data
    assert b"\r\n..\r\n" in m.raw, m.raw        # the lone "." went out stuffed
    only_one_mail(fake)
    assert len(fake.all_messages) == 1


@pytest.mark.parametrize("sizes", [(), (26,), (1,) * 40])
def test_smuggling_to_data_upstream(sluice, fake, sizes):
    with open_tx(sluice.port) as c:
        r = send_chunks(c, chunks_of(SMUGGLE, sizes))
        assert r.code == 250, r
        c.expect("QUIT", 221)
    m = fake.wait_messages(1)[0]
    assert m.data == SMUGGLE, m.data
    assert b"\r\n..\r\nMAIL FROM:<evil@" in m.raw and b"evil\r\n..\r\ntail" in m.raw, m.raw
    assert len(fake.all_messages) == 1
    only_one_mail(fake)


def test_smuggling_to_chunking_upstream(sluice_factory, fake_factory):
    up = chunking_fake(fake_factory)
    sl = sluice_factory(up.port)
    with open_tx(sl.port) as c:
        assert send_chunks(c, chunks_of(SMUGGLE, (20, 1))).code == 250
    m = up.wait_messages(1)[0]
    assert m.chunked and m.data == SMUGGLE, m.data
    assert len(up.all_messages) == 1
    only_one_mail(up)


# ---- timeouts -----------------------------------------------------------------------

def test_data_timeout_between_and_inside_chunks(sluice_factory, fake):
    sl = sluice_factory(fake.port, server={"data_timeout": "1s", "command_timeout": "30s"})
    for partial in (b"BDAT 10\r\n0123456789", b"BDAT 10\r\n01234"):
        with open_tx(sl.port) as c:
            c.send(partial)
            if partial.endswith(b"6789"):
                assert c.reply().code == 250
            r = c.reply(timeout=8)
            assert (r.code, r.enh) == (421, "4.4.2"), r
            assert c.is_closed(5)
    assert fake.messages == []


# ---- a plugin-modified message --------------------------------------------------------

@pytest.mark.parametrize("chunking_up", [False, True])
def test_rewrite_plugin_edits_forwarded(sluice_factory, fake_factory, tmp_path, chunking_up):
    if not os.path.exists(REWRITE_SO):
        pytest.skip("rewrite plugin not built")
    up = chunking_fake(fake_factory) if chunking_up else fake_factory()
    rules = tmp_path / "rewrite.rules"
    rules.write_text("header add X-Scanned-By \"sluice rewrite\"\n")
    sl = plugkit.start(sluice_factory, up, ("rewrite", REWRITE_SO, {"rules": str(rules)}))
    with open_tx(sl.port) as c:
        assert send_chunks(c, chunks_of(BODY, (4, 1))).code == 250
    m = up.wait_messages(1)[0]
    head, body = BODY.split(b"\r\n\r\n", 1)
    assert m.data == head + b"\r\nX-Scanned-By: sluice rewrite\r\n\r\n" + body, m.data
    assert m.chunked == chunking_up
    if not chunking_up:
        assert m.raw == harness.dot_stuff(m.data) + b".\r\n"
    assert re.search(rb"X-Scanned-By", m.data)


# ---- large: spooled, streamed with backpressure --------------------------------------

@pytest.mark.parametrize("chunking_up", [False, True])
def test_large_message_spooled_byte_exact(sluice_factory, fake_factory, chunking_up):
    up = chunking_fake(fake_factory) if chunking_up else fake_factory()
    sl = sluice_factory(up.port, server={"memory_buffer": "64k"})
    line = b".dot line and some text to make it long enough, 0123456789\r\n"
    body = b"Subject: big\r\n\r\n" + line * 25000          # about 1.5 MB
    with open_tx(sl.port) as c:
        c.send(bdat_bytes(chunks_of(body, (700000, 1, 300000))))
        rs = c.replies(4, timeout=30)
        assert [r.code for r in rs] == [250] * 4, rs
    m = up.wait_messages(1, timeout=30)[0]
    assert m.chunked == chunking_up
    assert m.data == body


def test_empty_chunks_count_as_junk(sluice_factory, fake):
    sl = sluice_factory(fake.port, server={"junk_command_limit": "5"})
    with open_tx(sl.port) as c:
        c.send(b"BDAT 0\r\n" * 6)
        rs = c.replies(5)     # the EHLO counted too, as it does for NOOP
        assert [r.code for r in rs] == [250] * 4 + [421], rs
        assert rs[-1].enh == "4.7.0"
        assert c.is_closed(5)
    assert fake.messages == []


@pytest.mark.parametrize("chunking_up", [False, True])
def test_envelope_replay_then_bdat(sluice_factory, fake_factory, chunking_up):
    """A plugin changes the sender at the end of the message: RSET, MAIL,
    RCPT are replayed upstream, then the message goes (as BDAT when the
    upstream offers CHUNKING)."""
    up = chunking_fake(fake_factory) if chunking_up else fake_factory()
    sl = plugkit.start(sluice_factory, up, ("p", "testplug", {"change_sender": "n@example.org"}))
    with open_tx(sl.port) as c:
        assert send_chunks(c, chunks_of(SMUGGLE, (9, 1))).code == 250
    m = up.wait_messages(1)[0]
    assert m.mail_from == "n@example.org" and m.rcpts == ["rcpt@example.net"]
    assert m.chunked == chunking_up
    assert SMUGGLE.split(b"\r\n\r\n", 1)[1] in m.data
    assert len(up.all_messages) == 1
    cmds = [x for s in up.tx_sessions for x in s.command_strs()]
    assert not any("evil@" in x or "victim@" in x for x in cmds), cmds
    assert "RSET" in cmds, cmds
