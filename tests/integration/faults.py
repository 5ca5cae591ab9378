# SPDX-License-Identifier: GPL-2.0-or-later
"""faults: fault injection between real clients, sluice and a real Postfix,
counted message by message.

    smtplib clients -> sluice -> FaultProxy -> private Postfix (Maildir)

FaultProxy is a TCP proxy that reads the command stream sluice sends
upstream and, once per arming, injects a fault when a given phase comes by:

Each phase x fault cell runs twice: the client retries on a new connection,
and (rows "(same session)") on the same session while sluice keeps it open.

  phases  greeting, ehlo (the first EHLO), xclient, mail, rcpt, data,
          eod (the "." line), replay (the MAIL after the RSET that a plugin
          changing the sender at DATA causes), starttls (the proxy offers
          STARTTLS in Postfix's EHLO reply; sluice runs with tls = may)
  faults  refuse   a 4xx reply made up by the proxy (command not forwarded)
          refuse5  the same with 5xx
          hang     nothing more in either direction (sluice's timeout)
          reset    TCP RST to sluice, Postfix's side closed
          garbage  a line that is no SMTP reply (command not forwarded)
          at eod also: lost-reply / hang-reply: the dot IS forwarded,
          Postfix queues the message, its 250 never reaches sluice (the
          duplicate window of RFC 5321 section 4.1.1.4 between sluice
          and Postfix: sluice cannot know, the client retries).

Besides the proxy: sluice SIGKILLed and restarted while clients send;
the spool on a full tmpfs (private mount namespace); a low RLIMIT_NOFILE
for sluice; clients that stall the TLS handshake after STARTTLS.

Every message has a unique Message-ID; every attempt (the client retries
on 4xx, on a dropped connection and on a missing final reply) carries its
own X-Fault-Id header, so each delivered copy in the Maildir is matched to
the attempt that produced it and compared byte for byte with what that
attempt sent. Per row it counts: told-250, delivered, lost (250 told, not
delivered), dup (delivered more than once and not explained by an unknown
outcome), partial (delivered text differs from what was sent), retried-ok,
unknown (the dot was sent and no reply came), window (an attempt told 4xx
whose message Postfix had queued: the proxy withheld Postfix's 250, the
documented duplicate window), false-fail (told 4xx/5xx, yet that very
attempt was delivered and Postfix's 250 did reach sluice: a lie),
perm (the client was told 5xx and stopped; a problem unless the fault was
a 5xx), gave-up (retries exhausted).

Standalone (prints the table, exit 1 on a defect):
    SLUICE_BIN=build/proxy/sluice SLUICE_BUILD_DIR=build python3 tests/integration/faults.py
Everything runs on 127.0.0.1; every socket and wait is bounded.
"""

import collections
import os
import random
import re
import select
import smtplib
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

PHASES = ("greeting", "ehlo", "xclient", "mail", "rcpt", "data", "eod", "replay", "starttls")
KINDS = ("refuse", "refuse5", "hang", "reset", "garbage")
EOD_WINDOW_KINDS = ("lost-reply", "hang-reply")
GARBAGE = b"HTTP/1.0 400 Bad Request\r\n\x00\xff\xfe not smtp\r\n"
UP_TIMEOUT = "2s"      # sluice's upstream timeouts while faults run
CONN_CAP_S = 40.0      # no proxied connection lives longer than this


# --------------------------------------------------------------------------
# The fault-injecting proxy
class FaultProxy:
    """Listens on 127.0.0.1:port, forwards to 127.0.0.1:upstream_port, one
    thread per connection (select over both sockets, no locks on sockets)."""

    def __init__(self, upstream_port, offer_starttls=False):
        self.upstream_port = upstream_port
        self.offer_starttls = offer_starttls
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.armed = {}           # phase -> [kind, shots left]
        self.fired = []           # (phase, kind)
        self.pf_eod = {}          # fault id -> Postfix's final reply code
        self.relayed_eod = {}     # fault id -> code relayed to sluice
        self.withheld = set()     # fault ids whose Postfix 250 sluice never got
        self.conns = 0
        self.on_kill = None       # called for the "kill" fault
        self.forwarded = []       # verbs forwarded to Postfix, in order
        self._stop = False
        self._t = threading.Thread(target=self._accept_loop, daemon=True)
        self._t.start()

    def arm(self, phase, kind, shots=1):
        with self.lock:
            self.armed = {phase: [kind, shots]}

    def disarm(self):
        with self.lock:
            self.armed = {}

    def fired_count(self, phase, kind):
        with self.lock:
            return sum(1 for f in self.fired if f == (phase, kind))

    def chaos(self, rate, seed, kinds=("refuse", "hang", "reset", "garbage"), exclude=()):
        """Random mode: every phase event is faulted with probability `rate`
        (a kind drawn from `kinds`; at eod also the window kinds); rate 0
        ends it."""
        with self.lock:
            self.chaos_rate = rate
            self.chaos_rng = random.Random(seed)
            self.chaos_kinds = tuple(kinds)
            self.chaos_exclude = set(exclude)

    def _take(self, phase):
        if phase is None:
            return None
        with self.lock:
            if getattr(self, "chaos_rate", 0) and phase != "starttls":
                if self.chaos_rng.random() < self.chaos_rate:
                    ks = self.chaos_kinds + (EOD_WINDOW_KINDS if phase == "eod" else ())
                    k = self.chaos_rng.choice(ks)
                    if (phase, k) in self.chaos_exclude:
                        return None
                    self.fired.append((phase, k))
                    return k
                return None
            a = self.armed.get(phase)
            if not a or a[1] <= 0:
                return None
            a[1] -= 1
            self.fired.append((phase, a[0]))
            return a[0]

    def stop(self):
        self._stop = True
        try:
            self.lsock.close()
        except OSError:
            pass

    def _accept_loop(self):
        while not self._stop:
            try:
                cs, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
            threading.Thread(target=_ProxyConn(self, cs).run, daemon=True).start()


def _rst(sock):
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _close(sock):
    if sock is None:
        return
    try:
        sock.close()
    except OSError:
        pass


_REPLY_END = re.compile(rb"^\d{3}(?: .*)?\r?\n", re.S)


class _ProxyConn:
    def __init__(self, proxy, cs):
        self.p = proxy
        self.cs = cs            # sluice's side
        self.us = None          # Postfix's side
        self.cbuf = b""
        self.ubuf = b""
        self.queue = collections.deque()   # dict (await Postfix) | bytes (made up)
        self.greeted = False
        self.data_mode = False
        self.hung = False
        self.detached = False   # Postfix gone: the proxy answers for it
        self.n_ehlo = 0
        self.seen_rset = False
        self.fid = None
        self.fid_eod = None
        self.line = b""
        self.done = False

    # ---- helpers ------------------------------------------------------------
    def to_sluice(self, data):
        try:
            self.cs.sendall(data)
        except OSError:
            self.finish()

    def finish(self):
        self.done = True

    def reset(self):
        _rst(self.cs)
        self.cs = None
        _close(self.us)
        self.us = None
        self.done = True

    def hang(self):
        self.hung = True
        _close(self.us)   # Postfix drops its half-transaction
        self.us = None

    def detach(self):
        _close(self.us)
        self.us = None
        self.detached = True

    def flush(self):
        while self.queue and isinstance(self.queue[0], bytes):
            self.to_sluice(self.queue.popleft())

    def made_up(self, data):
        self.queue.append(data)
        self.flush()

    # ---- main loop -------------------------------------------------------
    def run(self):
        deadline = time.monotonic() + CONN_CAP_S
        try:
            kind = self.p._take("greeting")
            if kind:
                self.greeting_fault(kind)
            else:
                self.us = socket.create_connection(("127.0.0.1", self.p.upstream_port), timeout=5)
                self.us.settimeout(None)
            while not self.done and time.monotonic() < deadline:
                socks = [s for s in (self.cs, self.us) if s is not None]
                if not socks or self.cs is None:
                    break
                r, _, _ = select.select(socks, [], [], 0.5)
                for s in r:
                    if self.done or s not in (self.cs, self.us):
                        continue
                    try:
                        d = s.recv(65536)
                    except OSError:
                        d = b""
                    if s is self.cs:
                        if not d:
                            self.done = True
                            break
                        if not self.hung:
                            self.from_sluice(d)
                    else:
                        if not d:
                            if not self.hung:
                                self.done = True   # Postfix closed: so do we
                            _close(self.us)
                            self.us = None
                            continue
                        if not self.hung:
                            self.from_postfix(d)
        finally:
            _close(self.cs)
            _close(self.us)

    def greeting_fault(self, kind):
        if kind == "refuse":
            self.to_sluice(b"421 4.3.2 injected: service not available\r\n")
            self.done = True
        elif kind == "refuse5":
            self.to_sluice(b"554 5.3.2 injected: no SMTP service here\r\n")
            self.detached = True
            self.greeted = True
        elif kind == "hang":
            self.hung = True
        elif kind == "reset":
            self.reset()
        elif kind == "garbage":
            self.to_sluice(GARBAGE)
            self.detached = True
            self.greeted = True

    # ---- Postfix -> sluice -------------------------------------------------
    def from_postfix(self, d):
        self.ubuf += d
        while True:
            # a complete reply: lines up to one with "NNN " (or "NNN\r\n")
            end = None
            pos = 0
            while True:
                i = self.ubuf.find(b"\n", pos)
                if i < 0:
                    break
                line = self.ubuf[pos:i + 1]
                pos = i + 1
                if len(line) < 4 or line[3:4] != b"-":
                    end = pos
                    break
            if end is None:
                return
            reply, self.ubuf = self.ubuf[:end], self.ubuf[end:]
            self.postfix_reply(reply)
            if self.done or self.hung:
                return

    def postfix_reply(self, reply):
        code = int(reply[:3]) if reply[:3].isdigit() else 0
        if not self.greeted:
            self.greeted = True
            self.to_sluice(reply)
            return
        if not self.queue or isinstance(self.queue[0], bytes):
            self.to_sluice(reply)     # unsolicited (e.g. 421 on timeout)
            return
        m = self.queue.popleft()
        verb = m["verb"]
        if verb == "EHLO" and code == 250:
            # The proxy parses DATA and the dot, not BDAT: Postfix's
            # CHUNKING is hidden, so sluice sends DATA through it.
            lines = [ln for ln in reply.split(b"\r\n") if ln]
            lines = [ln for ln in lines if ln[4:].strip().upper() != b"CHUNKING"]
            reply = b"".join((b"250-" if i < len(lines) - 1 else b"250 ") + ln[4:] + b"\r\n"
                             for i, ln in enumerate(lines))
        if verb == "EHLO" and self.p.offer_starttls and code == 250:
            # STARTTLS goes in after the first line (the server's name)
            first, _, rest = reply.partition(b"\n")
            if rest:
                reply = first + b"\n250-STARTTLS\r\n" + rest
            else:
                reply = first.replace(b"250 ", b"250-", 1) + b"\n250 STARTTLS\r\n"
        if verb == "DATA" and code == 354:
            self.data_mode = True
        if verb == "EOD":
            with self.p.lock:
                self.p.pf_eod[m["fid"]] = code
            if m.get("fault") == "lost-reply":
                with self.p.lock:
                    self.p.withheld.add(m["fid"])
                self.reset()
                return
            if m.get("fault") == "hang-reply":
                with self.p.lock:
                    self.p.withheld.add(m["fid"])
                self.hang()
                return
            with self.p.lock:
                self.p.relayed_eod[m["fid"]] = code
        self.to_sluice(reply)
        self.flush()

    # ---- sluice -> Postfix -------------------------------------------------
    def forward(self, data):
        if self.us is None:
            return
        try:
            self.us.sendall(data)
        except OSError:
            _close(self.us)
            self.us = None

    def from_sluice(self, d):
        self.cbuf += d
        out = []
        while not self.done and not self.hung:
            i = self.cbuf.find(b"\n")
            if i < 0:
                break
            line, self.cbuf = self.cbuf[:i + 1], self.cbuf[i + 1:]
            if self.data_mode:
                if line in (b".\r\n", b".\n"):
                    if out:
                        self.forward(b"".join(out))
                        out = []
                    self.data_mode = False
                    self.end_of_data(line)
                    continue
                if self.fid is None and line.lower().startswith(b"x-fault-id:"):
                    self.fid = line.split(b":", 1)[1].strip().decode("ascii", "replace")
                out.append(line)
                continue
            if out:
                self.forward(b"".join(out))
                out = []
            self.command(line)
        if out and not self.done and not self.hung:
            self.forward(b"".join(out))

    def end_of_data(self, line):
        kind = self.p._take("eod")
        fid = self.fid
        self.fid = None
        self.fid_eod = fid
        if kind in EOD_WINDOW_KINDS or kind is None:
            self.queue.append({"verb": "EOD", "fid": fid, "fault": kind})
            self.forward(line)
            return
        self.inject(kind, "EOD", eod=True)

    def command(self, line):
        verb = line.split(None, 1)[0].upper().decode("ascii", "replace") if line.strip() else ""
        if self.detached:
            if verb == "QUIT":
                self.to_sluice(b"221 2.0.0 injected: bye\r\n")
                self.done = True
            elif verb == "RSET" or verb == "NOOP":
                self.to_sluice(b"250 2.0.0 Ok\r\n")
            else:
                self.to_sluice(b"421 4.3.0 injected: closing\r\n")
                self.done = True
            return
        phase = None
        if verb in ("EHLO", "HELO"):
            phase = "ehlo" if self.n_ehlo == 0 else None
            self.n_ehlo += 1
            verb = "EHLO"
        elif verb == "XCLIENT":
            phase = "xclient"
        elif verb == "STARTTLS":
            phase = "starttls"
        elif verb == "MAIL":
            phase = "replay" if self.seen_rset else "mail"
        elif verb == "RCPT":
            phase = None if self.seen_rset else "rcpt"
        elif verb == "DATA":
            phase = "data"
        elif verb == "RSET":
            self.seen_rset = True
        kind = self.p._take(phase)
        self.line = line
        if kind:
            self.inject(kind, verb)
            return
        if verb == "STARTTLS":
            # The proxy cannot speak TLS: an offered STARTTLS that is not
            # being faulted is declined (sluice's tls = may goes on plain).
            self.made_up(b"454 4.7.0 TLS not available (fault proxy)\r\n")
            return
        self.queue.append({"verb": verb})
        with self.p.lock:
            self.p.forwarded.append(verb)
        self.forward(line)

    def inject(self, kind, verb, eod=False):
        if kind == "refuse":
            self.made_up(b"454 4.7.0 injected: TLS not available\r\n" if verb == "STARTTLS"
                         else b"451 4.3.0 injected: temporary refusal\r\n")
            if eod:
                self.detach()
        elif kind == "refuse5":
            self.made_up(b"554 5.3.0 injected: permanent refusal\r\n")
            if eod:
                self.detach()
        elif kind == "hang":
            if verb == "STARTTLS":
                # a stalled handshake: the go-ahead, then silence
                self.made_up(b"220 2.0.0 Ready to start TLS\r\n")
            self.hang()
        elif kind == "reset":
            self.reset()
        elif kind == "garbage":
            self.made_up(GARBAGE)
            self.detach()
        elif kind == "kill":
            # sluice dies right here: this command (or the dot) is forwarded
            # first, so Postfix may well finish the transaction on its own
            self.queue.append({"verb": "EOD" if eod else verb, "fid": self.fid_eod, "fault": None})
            self.forward(b".\r\n" if eod else self.line)
            if self.p.on_kill:
                self.p.on_kill()
        else:
            raise ValueError(kind)


# --------------------------------------------------------------------------
# Messages and clients
class Message:
    def __init__(self, row, n, size):
        self.row = row
        self.mid = "<fault-%s-%d-%d@faults.test>" % (re.sub(r"[^a-z0-9]+", "-", row.lower()),
                                                      n, os.getpid())
        self.attempts = []      # dicts: fid, stage, code, sent(bytes), text
        rng = random.Random(self.mid)
        lines = []
        total = 0
        while total < size:
            ln = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                         for _ in range(76))
            if rng.random() < 0.05:
                ln = "." + ln[1:]            # dot-stuffing must survive
            lines.append(ln)
            total += 78
        self.body = ("\r\n".join(lines) + "\r\n").encode()

    def text(self, fid):
        return (b"From: Fault Client <client@example.com>\r\n"
                b"To: <faults@example.net>\r\n"
                b"Subject: fault " + self.row.encode() + b"\r\n"
                b"Date: Fri, 04 Dec 2026 18:00:00 +0000\r\n"
                b"Message-ID: " + self.mid.encode() + b"\r\n"
                b"X-Fault-Id: " + fid.encode() + b"\r\n"
                b"\r\n" + self.body)


def _stuff(data):
    return re.sub(rb"(?m)^\.", b"..", data)


def attempt(port, m, timeout=20.0, ssl_ctx=None, rcpt="faults@example.net", keep=None):
    """One try with smtplib. Returns the attempt dict (also kept on m).
    With `keep` (a dict), the session is kept open in keep["s"] after the
    try when it is still usable, and a later try reuses it (RSET first),
    the way an MTA sends its next message on the same connection."""
    fid = "%s/%d" % (m.mid.strip("<>"), len(m.attempts) + 1)
    a = {"fid": fid, "stage": "connect", "code": None, "text": "", "sent": m.text(fid),
         "reused": False}
    m.attempts.append(a)
    s = keep.get("s") if keep is not None else None
    if keep is not None:
        keep["s"] = None
    dot_sent = False
    usable = False
    try:
        steps = []
        if s is None:
            s = smtplib.SMTP(timeout=timeout)
            code, msg = s.connect("127.0.0.1", port)
            s._host = "localhost"    # the name STARTTLS checks the certificate for
            a["stage"] = "greeting"
            if code != 220:
                a.update(code=code, text=msg)
                return a
            steps += [("ehlo", lambda: s.ehlo("client.test")),
                      ("starttls", (lambda: s.starttls(context=ssl_ctx)) if ssl_ctx else None),
                      ("ehlo2", (lambda: s.ehlo("client.test")) if ssl_ctx else None)]
        else:
            a["reused"] = True
            steps += [("rset", lambda: s.rset())]
        steps += [("mail", lambda: s.mail("client@example.com")),
                  ("rcpt", lambda: s.rcpt(rcpt)),
                  ("data", lambda: s.docmd("DATA"))]
        for stage, fn in steps:
            if fn is None:
                continue
            a["stage"] = stage
            code, msg = fn()
            if code not in (220, 250, 251, 354) or (stage == "data" and code != 354):
                a.update(code=code, text=msg)
                usable = code != 421
                return a
        a["stage"] = "eod"
        s.send(_stuff(a["sent"]) + b".\r\n")
        dot_sent = True
        code, msg = s.getreply()
        a.update(code=code, text=msg)
        usable = code != 421
        return a
    except Exception as e:   # smtplib, socket, ssl: all mean "no answer"
        a["code"] = None
        a["text"] = "%s: %s" % (type(e).__name__, e)
        if dot_sent:
            a["stage"] = "unknown"
        usable = False
        return a
    finally:
        if keep is not None and usable:
            keep["s"] = s
        else:
            try:
                if a["code"] is not None and a["code"] != 421:
                    s.quit()
            except (smtplib.SMTPException, OSError):
                pass
            if s is not None:
                s.close()


def send_with_retries(port, m, tries=4, delay=0.2, same_session=False, max_delay=None, **kw):
    """Retry on 4xx, on a dropped connection and on an unknown outcome, as an
    MTA would; stop at 2xx or 5xx. With same_session, a retry reuses the
    session while the server keeps it open. The wait grows by `delay` a try,
    up to max_delay. Returns the final attempt."""
    a = None
    keep = {} if same_session else None
    try:
        for i in range(tries):
            a = attempt(port, m, keep=keep, **kw)
            if a["code"] is not None and a["stage"] == "eod" and 200 <= a["code"] < 300:
                return a
            if a["code"] is not None and 500 <= a["code"] < 600:
                return a
            wait = delay * (1 + i)
            time.sleep(min(wait, max_delay) if max_delay else wait)
        return a
    finally:
        if keep and keep.get("s") is not None:
            try:
                keep["s"].quit()
            except (smtplib.SMTPException, OSError):
                pass
            keep["s"].close()


# --------------------------------------------------------------------------
# Delivery and accounting
def queue_empty(pf):
    r = subprocess.run(["postqueue", "-c", pf.etc, "-p"], capture_output=True, text=True,
                       timeout=30)
    return "Mail queue is empty" in r.stdout, r.stdout


def wait_delivery(pf, timeout=30.0):
    """Wait until Postfix's queue is empty and the Maildir stops growing."""
    deadline = time.monotonic() + timeout
    last = -1
    stable = 0
    while time.monotonic() < deadline:
        empty, _ = queue_empty(pf)
        n = len(pf.mail_files())
        stable = stable + 1 if (empty and n == last) else 0
        if stable >= 2:
            return True
        last = n
        time.sleep(0.3)
    return False


_HDR = re.compile(rb"^(Message-ID|X-Fault-Id):\s*(\S+)\s*$", re.I | re.M)


def maildir_index(pf):
    """Message-ID -> [(fault id, bytes)] for every delivered file."""
    idx = collections.defaultdict(list)
    for p in pf.mail_files():
        with open(p, "rb") as f:
            raw = f.read()
        head = raw.split(b"\n\n", 1)[0]
        h = {k.lower().decode(): v.decode("ascii", "replace") for k, v in _HDR.findall(head)}
        mid = h.get("message-id")
        fid = h.get("x-fault-id")
        if mid:
            idx[mid].append((fid, raw))
    return idx


COLUMNS = ("msgs", "fired", "told250", "deliv", "copies", "lost", "dup", "partial", "retried",
           "unknown", "window", "falsefail", "perm", "gaveup")


def account(rows, proxies, pf):
    """rows: {row name: {"msgs": [Message], "fired": n or None}}. Returns
    (table rows as dicts, list of problem strings)."""
    idx = maildir_index(pf)
    withheld = set()
    relayed = {}
    for p in proxies:
        withheld |= p.withheld
        relayed.update(p.relayed_eod)
    table = []
    problems = []
    for name, r in rows.items():
        c = dict.fromkeys(COLUMNS, 0)
        c["row"] = name
        c["msgs"] = len(r["msgs"])
        c["fired"] = r.get("fired")
        for m in r["msgs"]:
            copies = idx.get(m.mid, [])
            by_fid = collections.Counter(f for f, _ in copies)
            sent = {a["fid"]: a["sent"].replace(b"\r\n", b"\n") for a in m.attempts}
            told = [a for a in m.attempts if a["stage"] == "eod" and a["code"] and
                    200 <= a["code"] < 300]
            if told:
                c["told250"] += 1
                if m.attempts[0] is not told[0]:
                    c["retried"] += 1
            if copies:
                c["deliv"] += 1
            c["copies"] += len(copies)
            for a in told:
                if by_fid.get(a["fid"], 0) == 0:
                    c["lost"] += 1
                    problems.append("%s: LOST %s (told %s %s)" % (name, a["fid"], a["code"], a["text"]))
            for fid, raw in copies:
                if fid not in sent or not raw.endswith(sent[fid]):
                    c["partial"] += 1
                    problems.append("%s: PARTIAL copy of %s (fid %s, %d bytes)" % (name, m.mid, fid, len(raw)))
            explained = 0
            unknown = False
            for a in m.attempts:
                n = by_fid.get(a["fid"], 0)
                if n > 1:
                    problems.append("%s: attempt %s delivered %d times" % (name, a["fid"], n))
                if a["stage"] == "unknown":
                    unknown = True
                    explained += min(n, 1)
                elif n and a not in told:
                    if a["fid"] in withheld or a["fid"] not in relayed:
                        # Postfix queued it; its 250 never reached sluice
                        # (withheld, or sluice had timed out / died first)
                        c["window"] += 1
                        explained += 1
                    else:
                        c["falsefail"] += 1
                        problems.append("%s: FALSE FAIL %s told %s %r at %s, delivered (Postfix said %s to sluice)"
                                        % (name, a["fid"], a["code"], a["text"], a["stage"], relayed.get(a["fid"])))
            if unknown:
                c["unknown"] += 1
            extra = len(copies) - explained
            if extra > 1 or any(v > 1 for v in by_fid.values()):
                c["dup"] += 1
                problems.append("%s: DUPLICATE %s delivered %d times (%s)" % (name, m.mid, len(copies), dict(by_fid)))
            last = m.attempts[-1] if m.attempts else None
            if not told:
                if last and last["code"] and 500 <= last["code"] < 600:
                    c["perm"] += 1
                else:
                    c["gaveup"] += 1
                    # what each try heard, to tell bad luck from a session
                    # that can no longer deliver
                    problems.append("%s: %s gave up after %d tries: %s" % (
                        name, m.mid, len(m.attempts),
                        "; ".join("%s/%s %s" % (a["stage"], a["code"], (a["text"] or "")[:60])
                                  for a in m.attempts)))
        table.append(c)
    return table, problems


def format_table(table):
    w = max([len("phase x fault")] + [len(r["row"]) for r in table])
    head = "%-*s " % (w, "phase x fault") + " ".join("%8s" % k for k in COLUMNS)
    out = [head, "-" * len(head)]
    for r in table:
        out.append("%-*s " % (w, r["row"]) + " ".join(
            "%8s" % ("-" if r[k] is None else r[k]) for k in COLUMNS))
    return "\n".join(out)


# --------------------------------------------------------------------------
# sluice variants
class WrappedSluice(harness.Sluice):
    """A harness.Sluice whose command line is wrapped (prlimit, unshare)."""

    def __init__(self, *a, wrap=None, **kw):
        super().__init__(*a, **kw)
        self.wrap = wrap

    def command(self):
        cmd = super().command()
        return self.wrap(cmd) if self.wrap else cmd


def _testplug():
    b = os.environ.get("SLUICE_BUILD_DIR", "build")
    p = os.path.abspath(os.path.join(b, "tests", "plugins", "testplug.so"))
    return p if os.path.exists(p) else None


class Run:
    """One run of every scenario against one Postfix. `work` is a temp dir."""

    def __init__(self, pf, work, log=None):
        self.pf = pf
        self.work = work
        self.rows = collections.OrderedDict()
        self.proxies = []
        self.sluices = []
        self.notes = []
        self.log = log or (lambda s: None)
        self.n = 0

    def sluice(self, upstream_port, name, wrap=None, server=None, upstream=None, extra=None):
        up = {"connect_timeout": UP_TIMEOUT, "command_timeout": UP_TIMEOUT,
              "data_timeout": UP_TIMEOUT}
        up.update(upstream or {})
        srv = {"command_timeout": "5s", "data_timeout": "5s"}
        srv.update(server or {})
        s = WrappedSluice(os.path.join(self.work, name), upstream_port=upstream_port,
                          server=srv, upstream=up, extra_sections=extra, wrap=wrap)
        self.sluices.append(s)
        s.start()
        return s

    def proxy(self, **kw):
        p = FaultProxy(self.pf.port, **kw)
        self.proxies.append(p)
        return p

    def msg(self, row, size=3000):
        self.n += 1
        m = Message(row, self.n, size)
        self.rows.setdefault(row, {"msgs": [], "fired": None})["msgs"].append(m)
        return m

    def stop(self):
        """Stop everything; returns the sluices that did not exit cleanly
        (status, sanitizer reports), the SIGKILLed one excepted."""
        bad = []
        for s in self.sluices:
            try:
                rc = s.stop()
            except Exception as e:
                rc = repr(e)
            if getattr(s, "expect_unclean", False):
                continue
            out = s.output()
            if rc not in (None, 0):
                bad.append("sluice %s exited with %s: %s" % (s.workdir, rc, out[-1500:]))
            for marker in ("Sanitizer", "runtime error:", "Assertion"):
                if marker in out:
                    bad.append("sluice %s logged %r: %s" % (s.workdir, marker, out[-3000:]))
                    break
        for p in self.proxies:
            p.stop()
        return bad

    # ---- scenarios ----------------------------------------------------------
    def _fronts(self):
        """The three sluices of the phase cells, made once: plain, with a
        plugin that changes the sender at DATA (replay), upstream tls=may
        behind a proxy that offers STARTTLS."""
        if getattr(self, "fronts", None):
            return self.fronts
        f = {}
        # Each cell arms a fault for a phase of the upstream session
        # (greeting, EHLO, ...), which a connection reused from the idle
        # pool would skip: these fronts open a connection per session. The
        # random and chaos scenarios run with reuse on (the default).
        fresh = {"reuse_max_idle": "0"}
        p = self.proxy()
        f["plain"] = (p, self.sluice(p.port, "plain", upstream=fresh))
        plug = _testplug()
        if plug:
            p = self.proxy()
            f["replay"] = (p, self.sluice(p.port, "replay", upstream=fresh,
                                          extra={"chain": {"plugins": "p"},
                                                 "plugin p": {"path": plug,
                                                              "change_sender": "changed@example.com"}}))
        else:
            self.notes.append("testplug.so not built: no replay rows")
        p = self.proxy(offer_starttls=True)
        f["uptls"] = (p, self.sluice(p.port, "uptls", upstream=dict(fresh, tls="may")))
        self.fronts = f
        return f

    def phase_faults(self, phases=PHASES, control=True, same_session=False):
        """One message per phase x fault (one-shot fault, the client retries,
        on a new connection or, with same_session, on the same one while it
        stays open); returns the row names."""
        f = self._fronts()
        names = []
        cells = [(ph, k) for ph in phases for k in KINDS]
        cells += [("eod", k) for k in EOD_WINDOW_KINDS if "eod" in phases]
        for ph, k in cells:
            front = {"starttls": "uptls", "replay": "replay"}.get(ph, "plain")
            if front not in f:
                continue
            p, s = f[front]
            row = "%s x %s%s" % (ph, k, " (same session)" if same_session else "")
            self.log("  %s" % row)
            m = self.msg(row)
            before = p.fired_count(ph, k)
            p.arm(ph, k)
            send_with_retries(s.port, m, same_session=same_session)
            self.rows[row]["fired"] = p.fired_count(ph, k) - before
            p.disarm()
            names.append(row)
        if control:
            # control rows: no fault at all, through each of the fronts
            for nm, (p, s) in f.items():
                row = "none (%s)" % nm
                for _ in range(2):
                    send_with_retries(s.port, self.msg(row))
                names.append(row)
        for nm, (p, s) in f.items():
            if not s.alive():
                self.notes.append("sluice %s died: %s" % (nm, s.output()[-2000:]))
        return names

    def random_faults(self, clients=6, per_client=6, rate=0.08, seed=20261204, exclude=()):
        """Faults at random (every phase event, probability `rate`) while
        several clients send at once, sizes mixed from 3 KB to 1.5 MB (over
        memory_buffer: spooled); new connection or same session at random."""
        p = self.proxy()
        plug = _testplug()
        extra = None
        if plug:
            # the sender change at DATA makes every message go through the replay
            extra = {"chain": {"plugins": "p"},
                     "plugin p": {"path": plug, "change_sender": "changed@example.com"}}
        s = self.sluice(p.port, "random", extra=extra)
        row = "random x %d%% of phase events%s" % (round(rate * 100), " (replay)" if plug else "")
        rng = random.Random(seed)
        sizes = (3000, 3000, 60000, 300000, 1500000)
        msgs = [[(self.msg(row, rng.choice(sizes)), rng.random() < 0.5) for _ in range(per_client)]
                for _ in range(clients)]
        p.chaos(rate, seed, exclude=exclude)

        # An attempt crosses a dozen upstream phase events (more for the
        # 1.5 MB messages), so at 8 % each more than half the attempts meet
        # a fault: with 8 tries one of the 36 messages ran out of them in
        # some runs (every try answered 451 4.4.x for an injected fault).
        # An MTA retries for days; 30 tries make that a one-in-a-million.
        def client(ms):
            for m, same in ms:
                send_with_retries(s.port, m, tries=30, delay=0.1, max_delay=0.5,
                                  same_session=same)

        ts = [threading.Thread(target=client, args=(ms,), daemon=True) for ms in msgs]
        for t in ts:
            t.start()
        for t in ts:
            t.join(150)
        p.chaos(0, 0)
        with p.lock:
            fired = collections.Counter(k for _, k in p.fired)
        self.rows[row]["fired"] = sum(fired.values())
        self.notes.append("%s: faults fired by kind %s" % (row, dict(fired)))
        if not s.alive():
            self.notes.append("random sluice died: %s" % s.output()[-2000:])
        return [row]

    def settle(self, names=None):
        """Wait for Postfix to deliver, then count `names` (default all)."""
        if not wait_delivery(self.pf):
            self.notes.append("Postfix queue not empty after 30 s: %s" % queue_empty(self.pf)[1][-2000:])
        rows = self.rows if names is None else collections.OrderedDict(
            (n, self.rows[n]) for n in names)
        return account(rows, self.proxies, self.pf)

    def sigkill(self, clients=4, per_client=10, nkills=5, size=300000):
        """sluice SIGKILLed and restarted: at three points chosen by the
        proxy (MAIL forwarded, DATA forwarded, the dot forwarded) and at
        random moments while clients send large messages."""
        p = self.proxy()
        # messages over 64 KiB spill to the spool: what does a kill leave there?
        s = self.sluice(p.port, "sigkill", server={"memory_buffer": "64k"})
        s.expect_unclean = True
        kills = [0]

        def restart():
            s.proc.kill()
            s.proc.wait(10)
            kills[0] += 1
            mark = len(s.lines)
            s.start(wait=False)
            s.wait_log(r"listening on", timeout=10, start=mark)
        p.on_kill = restart
        for ph in ("mail", "data", "eod"):
            row = "sigkill x at %s" % ph
            self.log("  " + row)
            m = self.msg(row)
            before = p.fired_count(ph, "kill")
            p.arm(ph, "kill")
            send_with_retries(s.port, m, tries=6, delay=0.3)
            self.rows[row]["fired"] = p.fired_count(ph, "kill") - before
            p.disarm()
        row = "sigkill x random"
        self.log("  " + row)
        rng = random.Random(4242)
        msgs = [[self.msg(row, size) for _ in range(per_client)] for _ in range(clients)]

        def client(ms):
            for m in ms:
                send_with_retries(s.port, m, tries=10, delay=0.3)

        ts = [threading.Thread(target=client, args=(ms,), daemon=True) for ms in msgs]
        for t in ts:
            t.start()
        before = kills[0]
        for _ in range(nkills):
            # Short gaps: a release build sends the whole batch in well
            # under a second, and a kill after the last message tests
            # nothing (the row then fails as "never fired").
            time.sleep(rng.uniform(0.02, 0.12))
            if all(not t.is_alive() for t in ts):
                break
            restart()
        for t in ts:
            t.join(120)
        self.rows[row]["fired"] = kills[0] - before
        stages = collections.Counter(a["stage"] for ms in msgs for m in ms for a in m.attempts
                                     if a["code"] is None)
        left = os.listdir(s.spool)
        self.notes.append("sigkill: %d file(s) left in the spool after %d kills (memory_buffer 64k)"
                          % (len(left), kills[0]))
        if left:
            self.notes.append("DEFECT? spool files survive SIGKILL: %s" % left[:5])
        self.notes.append("sigkill x random: attempts cut short, by the client's stage: %s"
                          % dict(stages))

    def spool_full(self, clients=4, per_client=3, size=150000, tmpfs_kib=400):
        p = self.proxy()
        row = "spool x full tmpfs"
        spool = os.path.join(self.work, "spool-tmpfs")
        os.makedirs(spool, exist_ok=True)

        def wrap(cmd):
            return (["unshare", "-m", "--propagation", "private", "sh", "-c",
                     'mount -t tmpfs -o size=%dk,mode=0700 tmpfs "$0" && exec "$@"' % tmpfs_kib,
                     spool] + cmd)
        s = self.sluice(p.port, "spool", wrap=wrap,
                        server={"spool_dir": spool, "memory_buffer": "0"})
        # A filler holds most of the tmpfs: it streams 300 KB of message
        # and waits before its dot until the others were refused (452).
        filler = self.msg(row, 300000)
        full = threading.Event()
        ft = threading.Thread(target=_slow_eod, args=(s.port, filler, full, 15.0), daemon=True)
        ft.start()
        time.sleep(0.5)
        msgs = [[self.msg(row, size) for _ in range(per_client)] for _ in range(clients)]

        def client(ms):
            for m in ms:
                send_with_retries(s.port, m, tries=8, delay=0.3)
                if any(a["code"] == 452 for a in m.attempts):
                    full.set()

        ts = [threading.Thread(target=client, args=(ms,), daemon=True) for ms in msgs]
        for t in ts:
            t.start()
        for t in ts + [ft]:
            t.join(120)
        n452 = sum(1 for ms in msgs + [[filler]] for m in ms for a in m.attempts if a["code"] == 452)
        self.rows[row]["fired"] = n452
        if not s.alive():
            self.notes.append("spool sluice died: %s" % s.output()[-2000:])

    def fd_exhaustion(self, nofile=40, idle=40, clients=6, per_client=2):
        p = self.proxy()
        row = "fds x ulimit -n %d" % nofile
        s = self.sluice(p.port, "fds", wrap=lambda cmd: ["prlimit", "--nofile=%d:%d" % (nofile, nofile),
                                                          "--"] + cmd,
                        server={"command_timeout": "4s"})
        hogs = []
        for _ in range(idle):
            try:
                c = socket.create_connection(("127.0.0.1", s.port), timeout=2)
                hogs.append(c)
            except OSError:
                break
        time.sleep(0.3)
        msgs = [[self.msg(row) for _ in range(per_client)] for _ in range(clients)]
        ts = [threading.Thread(target=lambda ms=ms: [send_with_retries(s.port, m, tries=8, delay=0.4,
                                                                       timeout=10)
                                                      for m in ms], daemon=True) for ms in msgs]
        cpu0 = _cpu_ticks(s.proc.pid)
        t0 = time.monotonic()
        for t in ts:
            t.start()
        time.sleep(1.5)
        cpu1 = _cpu_ticks(s.proc.pid)
        t1 = time.monotonic()
        for c in hogs:
            c.close()
        for t in ts:
            t.join(120)
        refused = sum(1 for ms in msgs for m in ms for a in m.attempts if a["code"] != 250)
        self.rows[row]["fired"] = refused
        how = collections.Counter("%s %s" % (a["stage"], a["code"]) for ms in msgs for m in ms
                                  for a in m.attempts if a["code"] != 250)
        if cpu0 is not None and cpu1 is not None:
            pct = 100.0 * (cpu1 - cpu0) / os.sysconf("SC_CLK_TCK") / (t1 - t0)
            self.notes.append("%s: sluice used %.0f %% CPU while out of descriptors; refused "
                              "attempts by stage: %s" % (row, pct, dict(how)))
            if pct > 80:
                self.notes.append("DEFECT? sluice spins while out of descriptors")
        if not s.alive():
            self.notes.append("fd sluice died: %s" % s.output()[-2000:])

    def tls_client_stall(self, certs, stallers=8, clients=4):
        p = self.proxy()
        row = "tls-client x stalled handshake"
        s = self.sluice(p.port, "tlsc", server={"tls_cert_file": certs["cert"],
                                                "tls_key_file": certs["key"],
                                                "command_timeout": "3s"})
        ctx = ssl.create_default_context(cafile=certs["ca"])
        ctx.check_hostname = False
        hello = _client_hello()
        stalls = []
        for i in range(stallers):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            f = c.makefile("rb")
            f.readline()
            c.sendall(b"EHLO staller.test\r\n")
            while not f.readline()[3:4] == b" ":
                pass
            c.sendall(b"STARTTLS\r\n")
            f.readline()
            if i % 2 and hello:
                c.sendall(hello[:len(hello) // 2])   # half a ClientHello, then nothing
            stalls.append((c, time.monotonic()))
        msgs = [self.msg(row) for _ in range(clients * 2)]
        ts = [threading.Thread(target=send_with_retries, args=(s.port, m),
                               kwargs={"ssl_ctx": ctx if i % 2 else None}, daemon=True)
              for i, m in enumerate(msgs)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        dropped = 0
        for c, t0 in stalls:
            c.settimeout(max(0.1, 8 - (time.monotonic() - t0)))
            try:
                while c.recv(4096):
                    pass
                dropped += 1
            except OSError:
                pass
            c.close()
        self.rows[row]["fired"] = stallers
        self.notes.append("tls-client: %d of %d stalled handshakes closed by sluice within 8 s"
                          % (dropped, stallers))
        if dropped != stallers:
            self.notes.append("DEFECT? stalled TLS handshakes not timed out")

    def all(self, certs=None):
        t0 = time.monotonic()
        self.log("phase x fault cells")
        self.phase_faults()
        self.log("phase x fault cells, retries in the same session")
        self.phase_faults(control=False, same_session=True)
        self.log("random faults, concurrent clients")
        self.random_faults()
        self.log("sigkill")
        self.sigkill()
        self.log("spool on a full tmpfs")
        self.spool_full()
        self.log("fd exhaustion")
        self.fd_exhaustion()
        if certs:
            self.log("stalled TLS handshakes from clients")
            self.tls_client_stall(certs)
        self.log("waiting for Postfix to deliver")
        res = self.settle()
        self.elapsed = time.monotonic() - t0
        return res


def check(table, problems):
    """The assertions of the harness as strings (empty: all good): nothing
    lost, duplicated, partial or falsely failed; every fault fired; no
    message left undelivered after its retries."""
    out = list(problems)
    for r in table:
        if r["fired"] is not None and r["fired"] < 1:
            out.append("%s: the fault never fired" % r["row"])
        if r["gaveup"]:
            out.append("%s: %d message(s) never accepted after all retries" % (r["row"], r["gaveup"]))
        if r["perm"] and "refuse5" not in r["row"]:
            out.append("%s: %d message(s) failed permanently (5xx) after a temporary fault"
                       % (r["row"], r["perm"]))
    return out


def _slow_eod(port, m, go, wait_s):
    """One attempt that sends the message but holds the dot back until `go`
    is set (or wait_s passed): its spool file stays while others try."""
    fid = "%s/%d" % (m.mid.strip("<>"), len(m.attempts) + 1)
    a = {"fid": fid, "stage": "connect", "code": None, "text": "", "sent": m.text(fid),
         "reused": False}
    m.attempts.append(a)
    try:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=30) as s:
            s.ehlo("client.test")
            for stage, fn in (("mail", lambda: s.mail("client@example.com")),
                              ("rcpt", lambda: s.rcpt("faults@example.net")),
                              ("data", lambda: s.docmd("DATA"))):
                a["stage"] = stage
                code, msg = fn()
                if code not in (250, 354):
                    a.update(code=code, text=msg)
                    return
            a["stage"] = "eod"
            s.send(_stuff(a["sent"]))
            go.wait(wait_s)
            s.send(b".\r\n")
            a["stage"] = "unknown"
            code, msg = s.getreply()
            a.update(stage="eod", code=code, text=msg)
    except Exception as e:
        a["text"] = "%s: %s" % (type(e).__name__, e)
    if a["code"] is None or a["code"] >= 400:
        send_with_retries(port, m, tries=6, delay=0.3)


def _cpu_ticks(pid):
    """utime + stime of a process (clock ticks), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            f_ = f.read().rsplit(")", 1)[1].split()
        return int(f_[11]) + int(f_[12])
    except (OSError, IndexError, ValueError):
        return None


def _client_hello():
    """The first bytes a TLS client sends (a real ClientHello), or b""."""
    try:
        a, b = socket.socketpair()
        ctx = ssl.create_default_context()
        o = ssl.MemoryBIO()
        i = ssl.MemoryBIO()
        t = ctx.wrap_bio(i, o, server_hostname="localhost")
        try:
            t.do_handshake()
        except ssl.SSLWantReadError:
            pass
        a.close()
        b.close()
        return o.read()
    except Exception:
        return b""


def main():
    import postfix as pfmod
    why = pfmod.unavailable()
    if why:
        print("cannot run: %s" % why)
        return 77
    pf = pfmod.PrivatePostfix()
    work = tempfile.mkdtemp(prefix="sluice-faults-")
    run = None
    try:
        pf.start()
        certs = harness.make_certs(os.path.join(work, "certs"))
        run = Run(pf, work, log=lambda s: print(s, flush=True))
        table, problems = run.all(certs)
        problems = check(table, problems)
        print()
        print(format_table(table))
        print()
        for n in run.notes:
            print("note: " + n)
        print("%.0f s; %s" % (run.elapsed, "%d problems" % len(problems) if problems else
                                 "0 lost, 0 duplicated, 0 partial, 0 false failures"))
        for p in problems:
            print("PROBLEM " + p)
        return 1 if problems else 0
    finally:
        if run:
            for b in run.stop():
                print("PROBLEM " + b)
        pf.stop()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    sys.exit(main())
