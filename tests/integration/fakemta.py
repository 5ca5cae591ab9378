# SPDX-License-Identifier: GPL-2.0-or-later
"""fakemta: a recording upstream SMTP server for sluice's integration tests.

It runs in-process (one thread per connection) so a test can configure it
(EHLO capabilities, scripted faults) and afterwards inspect exactly what
sluice sent: every command line as raw bytes, XCLIENT/XFORWARD attributes,
and each message both as it came on the wire (dot-stuffed, with the final
".") and unstuffed.

It is deliberately strict where sluice must be exact: a message ends only at
CRLF "." CRLF, so any smuggled boundary shows up as a second message.

Faults: `faults` maps a phase to an action. Phases: CONNECT, EHLO, HELO,
MAIL, RCPT, DATA (reply to the DATA command), EOD (reply after the final
dot, or to BDAT ... LAST), DATA_BODY (while the message is arriving), RSET, QUIT, XCLIENT,
XFORWARD, STARTTLS. An action is a reply string ("550 5.1.1 no such user";
multi-line with "\\r\\n" inside), raw bytes sent as they are (garbage, or
two replies at once), HANG (read on, never answer), CLOSE (drop the
connection), or a callable (session, argument) -> action or None (None =
default behaviour), for per-command decisions ("reject this recipient",
"only the first MAIL").

With "CHUNKING" in `caps` it takes BDAT (RFC 3030): chunks are read by
their byte count; the message (Message.chunked, .chunks = the sizes) is
the chunks' bytes as they came (raw == data, nothing unstuffed). A BDAT
without a transaction is read and answered 503, as the RFC asks.

CLI mode (`python3 fakemta.py --port P --dir D`) writes each accepted
message to D/NNNN.eml and prints one line per transaction; the demo uses it.
"""

import argparse
import itertools
import os
import re
import socket
import ssl
import sys
import threading
import time

HANG = object()
CLOSE = object()

DEFAULT_CAPS = ["PIPELINING", "SIZE 52428800", "8BITMIME", "ENHANCEDSTATUSCODES",
                "DSN", "SMTPUTF8"]
XCLIENT_CAP = "XCLIENT NAME ADDR PORT PROTO HELO REVERSE_NAME LOGIN DESTADDR DESTPORT"
XFORWARD_CAP = "XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE"


_ACCEPTED = itertools.count(1)  # acceptance order of messages, all fakes


class Message:
    """One transaction that got as far as the final dot."""

    def __init__(self, session, mail_from, mail_params, rcpts, raw):
        self.session = session
        self.mail_from = mail_from        # str, without brackets ("" for <>)
        self.mail_params = mail_params    # str: everything after the address
        self.rcpts = list(rcpts)          # accepted recipients (str)
        self.raw = raw                    # bytes as on the wire, incl. CRLF.CRLF
        self.data = unstuff(raw)          # bytes after unstuffing, without "."
        self.accepted = False             # EOD reply was 2xx
        self.seq = 0                      # order of acceptance among all sessions
        self.eod_reply = ""
        self.chunked = False              # came as BDAT chunks
        self.chunks = []                  # their sizes

    def text(self):
        return self.data.decode("utf-8", "replace")

    def __repr__(self):
        return "Message(from=%r rcpts=%r %d bytes accepted=%r)" % (
            self.mail_from, self.rcpts, len(self.data), self.accepted)


def unstuff(raw):
    """Undo dot-stuffing of a wire message that ends in CRLF.CRLF."""
    body = raw
    if body.endswith(b"\r\n.\r\n"):
        body = body[:-3]
    elif body == b".\r\n":
        body = b""
    lines = body.split(b"\r\n")
    out = [ln[1:] if ln.startswith(b".") else ln for ln in lines]
    return b"\r\n".join(out)


def parse_attrs(args):
    """XCLIENT/XFORWARD "NAME=value ..." into a dict (xtext left as sent)."""
    attrs = {}
    for tok in args.split():
        k, _, v = tok.partition("=")
        attrs[k.upper()] = v
    return attrs


class Session:
    """What one upstream connection saw."""

    def __init__(self, peer):
        self.peer = peer
        self.commands = []       # raw command lines (bytes, with line ending)
        self.replies = []        # what we answered (str), for debugging
        self.xclient = {}        # merged XCLIENT attributes
        self.xclient_told = 0    # XCLIENTs answered 220
        self.xclient_at_mail = []  # the XCLIENT attributes in force at each MAIL
        self.xforward = {}       # merged XFORWARD attributes
        self.helo = []           # every EHLO/HELO argument, in order
        self.tls = False
        self.tls_leftover = b""  # plaintext that followed STARTTLS (discarded)
        self.messages = []       # Message, in order (accepted or not)
        self.data_started = 0    # how many DATA commands got 354
        self.closed = threading.Event()
        self.close_reason = ""

    def verbs(self):
        """Upper-cased verbs of the commands, in order."""
        out = []
        for c in self.commands:
            s = c.decode("latin-1").strip()
            out.append(s.split(" ", 1)[0].split(":", 1)[0].upper())
        return out

    def command_strs(self):
        return [c.decode("latin-1").rstrip("\r\n") for c in self.commands]


class FakeMTA:
    def __init__(self, caps=None, faults=None, cert=None, key=None,
                 hostname="fake.test", host="127.0.0.1", port=0,
                 xclient=False, xforward=False, starttls=None, idle_timeout=60,
                 xclient_again=False, xclient_again_cap=None):
        self.caps = list(DEFAULT_CAPS if caps is None else caps)
        # Like Postfix, XCLIENT is not offered again after an XCLIENT
        # (a further one is judged by the address told), unless
        # xclient_again: an MTA that lets its proxy re-identify.
        self.xclient_again = xclient_again
        # xclient_again_cap: the XCLIENT line offered after an XCLIENT
        # (default: the same as before).
        self.xclient_again_cap = xclient_again_cap
        if xclient:
            self.caps.append(XCLIENT_CAP)
        if xforward:
            self.caps.append(XFORWARD_CAP)
        self.faults = dict(faults or {})
        self.cert = cert
        self.key = key
        # STARTTLS offered when a certificate is given, unless told otherwise.
        self.starttls = (cert is not None) if starttls is None else starttls
        self.hostname = hostname
        self.idle_timeout = idle_timeout
        self.sessions = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.on_message = None   # callable(Message) for the CLI mode
        self._stop = threading.Event()
        self._threads = []
        self._conns = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.host = host
        self._accept_thread = None

    # ---- lifecycle -------------------------------------------------------
    def start(self):
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()
        return self

    def stop(self):
        self._stop.set()
        try:
            # shutdown() wakes a thread blocked in accept(); close() does not.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        for c in list(self._conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        if self._accept_thread:
            self._accept_thread.join(timeout=2)
        for t in list(self._threads):
            t.join(timeout=2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- inspection ------------------------------------------------------
    @property
    def messages(self):
        """Messages the fake accepted (EOD answered 2xx), in arrival order
        (across sessions: with upstream connection reuse, consecutive
        messages may come on different connections)."""
        with self.lock:
            return sorted((m for s in self.sessions for m in s.messages if m.accepted),
                          key=lambda m: m.seq)

    @property
    def tx_sessions(self):
        """Sessions that saw a MAIL command (sluice also opens capability
        probes that only EHLO and QUIT)."""
        with self.lock:
            return [s for s in self.sessions if "MAIL" in s.verbs()]

    @property
    def all_messages(self):
        with self.lock:
            return [m for s in self.sessions for m in s.messages]

    def wait_for(self, pred, timeout=10.0):
        """Wait until pred(self) is true; returns its last value."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                self.cond.release()
                try:
                    v = pred(self)
                finally:
                    self.cond.acquire()
                if v or time.monotonic() >= deadline:
                    return v
                self.cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))

    def wait_messages(self, n, timeout=10.0):
        self.wait_for(lambda f: len(f.messages) >= n, timeout)
        return self.messages

    def _notify(self):
        with self.cond:
            self.cond.notify_all()

    # ---- server ----------------------------------------------------------
    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            if self._stop.is_set():
                conn.close()
                return
            t = threading.Thread(target=self._serve, args=(conn, peer), daemon=True)
            self._conns.append(conn)
            t.start()
            self._threads.append(t)

    def _fault(self, phase, sess, arg):
        f = self.faults.get(phase)
        if callable(f) and f is not HANG and f is not CLOSE:
            return f(sess, arg)
        return f

    def _serve(self, conn, peer):
        sess = Session(peer)
        with self.cond:
            self.sessions.append(sess)
            self.cond.notify_all()
        io = None
        try:
            io = _Conn(conn, self.idle_timeout, self._stop)
            self._dialogue(io, sess)
        except (OSError, ssl.SSLError, _Closed) as e:
            sess.close_reason = sess.close_reason or repr(e)
        finally:
            if io:
                io.close()
            else:
                conn.close()
            sess.closed.set()
            self._notify()

    def _send(self, io, sess, action, default):
        """Answer with `action` (fault) or `default`. False = stop session."""
        if action is None:
            action = default
        if action is HANG:
            sess.replies.append("<hang>")
            # Keep reading (and recording) but never answer.
            while True:
                line = io.readline()
                if line is None:
                    raise _Closed("eof while hanging")
                sess.commands.append(line)
                self._notify()
        if action is CLOSE:
            sess.replies.append("<close>")
            sess.close_reason = "fault close"
            raise _Closed("fault close")
        if isinstance(action, bytes):
            sess.replies.append(action.decode("latin-1"))
            io.send(action)
            return
        text = action if action.endswith("\r\n") else action + "\r\n"
        sess.replies.append(text)
        io.send(text.encode("utf-8"))

    def _ehlo_reply(self, sess, arg):
        lines = ["%s hello %s" % (self.hostname, arg)]
        for c in self.caps:
            if c.upper().startswith("XCLIENT") and sess.xclient_told:
                if not self.xclient_again:
                    continue
                c = self.xclient_again_cap or c
            lines.append(c)
        if self.starttls and not sess.tls:
            lines.append("STARTTLS")
        return "\r\n".join(("250-" if i < len(lines) - 1 else "250 ") + ln
                           for i, ln in enumerate(lines))

    def _dialogue(self, io, sess):
        self._send(io, sess, self._fault("CONNECT", sess, None),
                   "220 %s ESMTP fakemta" % self.hostname)
        mail_from = None
        mail_params = ""
        rcpts = []
        bdat_buf = None
        while True:
            line = io.readline()
            if line is None:
                sess.close_reason = sess.close_reason or "eof"
                return
            sess.commands.append(line)
            self._notify()
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            if verb.startswith("MAIL") or verb.startswith("RCPT"):
                verb = verb[:4]
                arg = text[4:].strip()
            if verb in ("EHLO", "HELO"):
                sess.helo.append(arg)
                mail_from, rcpts = None, []
                default = self._ehlo_reply(sess, arg) if verb == "EHLO" else \
                    "250 %s" % self.hostname
                self._send(io, sess, self._fault(verb, sess, arg), default)
            elif verb == "STARTTLS":
                if not self.starttls or sess.tls:
                    self._send(io, sess, None, "502 5.5.1 no STARTTLS here")
                    continue
                f = self._fault("STARTTLS", sess, arg)
                self._send(io, sess, f, "220 2.0.0 ready to start TLS")
                if f is not None and not str(f).startswith("220"):
                    continue
                sess.tls_leftover = io.take_buffer()
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(self.cert, self.key)
                io.start_tls(ctx)
                sess.tls = True
                mail_from, rcpts = None, []
            elif verb == "XCLIENT":
                if sess.xclient_told and not self.xclient_again:
                    # Like Postfix: judged by the address just told.
                    self._send(io, sess, None, "550 5.7.0 Error: insufficient authorization")
                    continue
                told = parse_attrs(arg)
                if any(len(v) > 255 for v in told.values()):
                    # Like Postfix: the whole command, for one value over 255
                    # octets as sent.
                    self._send(io, sess, None, "501 5.5.4 Error: attribute value too long")
                    continue
                # Like Postfix: a real NAME is also the reverse name; on
                # NAME=[UNAVAILABLE] the last reverse name stays.
                name = told.get("NAME", "")
                if name and not name.startswith("[") and "REVERSE_NAME" not in told:
                    told["REVERSE_NAME"] = name
                sess.xclient.update(told)
                f = self._fault("XCLIENT", sess, arg)
                # Like Postfix: a new greeting; the client must EHLO again.
                self._send(io, sess, f, "220 %s ESMTP fakemta (xclient)" % self.hostname)
                if f is None:
                    sess.xclient_told += 1
                mail_from, rcpts = None, []
            elif verb == "XFORWARD":
                told = parse_attrs(arg)
                if any(len(v) > 255 for v in told.values()):
                    # Like Postfix: nothing of a command with one value over
                    # 255 octets as sent is taken.
                    self._send(io, sess, None, "501 5.5.4 Error: attribute value too long")
                    continue
                sess.xforward.update(told)
                self._send(io, sess, self._fault("XFORWARD", sess, arg), "250 2.0.0 Ok")
            elif verb == "MAIL":
                sess.xclient_at_mail.append(dict(sess.xclient))
                m = re.match(r"(?i)FROM:\s*<([^>]*)>\s*(.*)$", arg)
                f = self._fault("MAIL", sess, arg)
                if not m:
                    self._send(io, sess, f, "501 5.1.7 bad sender")
                    continue
                if mail_from is not None:
                    self._send(io, sess, f, "503 5.5.1 nested MAIL")
                    continue
                reply = f if f is not None else "250 2.1.0 sender ok"
                if isinstance(reply, str) and reply.startswith("2"):
                    mail_from, mail_params, rcpts = m.group(1), m.group(2), []
                elif isinstance(reply, bytes) and reply.startswith(b"2"):
                    mail_from, mail_params, rcpts = m.group(1), m.group(2), []
                self._send(io, sess, reply, None)
            elif verb == "RCPT":
                m = re.match(r"(?i)TO:\s*<([^>]*)>\s*(.*)$", arg)
                f = self._fault("RCPT", sess, arg)
                if mail_from is None:
                    self._send(io, sess, f, "503 5.5.1 need MAIL")
                    continue
                if not m:
                    self._send(io, sess, f, "501 5.1.3 bad recipient")
                    continue
                reply = f if f is not None else "250 2.1.5 recipient ok"
                ok = (reply.startswith("2") if isinstance(reply, str) else
                      isinstance(reply, bytes) and reply.startswith(b"2"))
                if ok:
                    rcpts.append(m.group(1))
                self._send(io, sess, reply, None)
            elif verb == "DATA":
                f = self._fault("DATA", sess, arg)
                if mail_from is None or not rcpts:
                    self._send(io, sess, f, "554 5.5.1 no valid recipients")
                    continue
                self._send(io, sess, f, "354 go ahead")
                if f is not None and not (isinstance(f, str) and f.startswith("354")):
                    continue
                sess.data_started += 1
                body_fault = self._fault("DATA_BODY", sess, None)
                raw = io.read_message(body_fault)
                msg = Message(sess, mail_from, mail_params, rcpts, raw)
                with self.cond:
                    sess.messages.append(msg)
                f = self._fault("EOD", sess, msg)
                reply = f if f is not None else "250 2.0.0 Ok: queued as F%04d" % len(sess.messages)
                ok = (reply.startswith("2") if isinstance(reply, str) else
                      isinstance(reply, bytes) and reply.startswith(b"2"))
                msg.eod_reply = reply if isinstance(reply, str) else repr(reply)
                if ok:
                    msg.accepted = True
                    msg.seq = next(_ACCEPTED)
                    if self.on_message:
                        self.on_message(msg)
                self._notify()
                mail_from, rcpts = None, []
                self._send(io, sess, reply, None)
            elif verb == "BDAT" and "CHUNKING" in self.caps:
                m = re.match(r"(?i)(\d+)(?: +(LAST))?$", arg.strip())
                if not m:
                    self._send(io, sess, None, "501 5.5.4 BDAT syntax")
                    continue
                n, last = int(m.group(1)), bool(m.group(2))
                chunk = io.read_exact(n)
                if mail_from is None or not rcpts:
                    bdat_buf = None
                    self._send(io, sess, None, "503 5.5.1 no transaction")
                    continue
                if bdat_buf is None:
                    bdat_buf, bdat_sizes = b"", []
                    sess.data_started += 1
                bdat_buf += chunk
                bdat_sizes.append(n)
                if not last:
                    self._send(io, sess, None, "250 2.0.0 %d octets" % n)
                    continue
                msg = Message(sess, mail_from, mail_params, rcpts, bdat_buf)
                msg.data = bdat_buf
                msg.chunked = True
                msg.chunks = bdat_sizes
                bdat_buf = None
                with self.cond:
                    sess.messages.append(msg)
                f = self._fault("EOD", sess, msg)
                reply = f if f is not None else "250 2.0.0 Ok: queued as F%04d" % len(sess.messages)
                ok = (reply.startswith("2") if isinstance(reply, str) else
                      isinstance(reply, bytes) and reply.startswith(b"2"))
                msg.eod_reply = reply if isinstance(reply, str) else repr(reply)
                if ok:
                    msg.accepted = True
                    msg.seq = next(_ACCEPTED)
                    if self.on_message:
                        self.on_message(msg)
                self._notify()
                mail_from, rcpts = None, []
                self._send(io, sess, reply, None)
            elif verb == "RSET":
                bdat_buf = None
                mail_from, rcpts = None, []
                self._send(io, sess, self._fault("RSET", sess, arg), "250 2.0.0 Ok")
            elif verb == "NOOP":
                self._send(io, sess, self._fault("NOOP", sess, arg), "250 2.0.0 Ok")
            elif verb == "QUIT":
                self._send(io, sess, self._fault("QUIT", sess, arg), "221 2.0.0 Bye")
                sess.close_reason = "quit"
                return
            else:
                self._send(io, sess, None, "500 5.5.2 unknown command")


class _Closed(Exception):
    pass


class _Conn:
    """Line/record reader over a (possibly TLS-wrapped) socket."""

    def __init__(self, sock, timeout, stop):
        self.sock = sock
        self.buf = b""
        self.stop = stop
        sock.settimeout(0.5)
        self.idle = timeout

    def _fill(self):
        deadline = time.monotonic() + self.idle
        while not self.stop.is_set():
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                if time.monotonic() > deadline:
                    raise _Closed("idle timeout")
                continue
            except ssl.SSLWantReadError:
                continue
            if not d:
                return False
            self.buf += d
            return True
        raise _Closed("server stopping")

    def readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line
            if not self._fill():
                return None

    def read_message(self, body_fault=None):
        """Bytes up to and including the first CRLF.CRLF (or ".CRLF" first).

        body_fault CLOSE drops the connection as soon as any message bytes
        arrived; HANG reads on without ever ending the message."""
        while True:
            if body_fault is CLOSE and self.buf:
                raise _Closed("fault close mid-DATA")
            if body_fault is HANG and self.buf:
                while self._fill():
                    pass
                raise _Closed("eof while hanging in DATA")
            if self.buf.startswith(b".\r\n"):
                raw, self.buf = self.buf[:3], self.buf[3:]
                return raw
            i = self.buf.find(b"\r\n.\r\n")
            if i >= 0:
                raw, self.buf = self.buf[:i + 5], self.buf[i + 5:]
                return raw
            if not self._fill():
                raise _Closed("eof in DATA")

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise _Closed("eof in BDAT")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def take_buffer(self):
        b, self.buf = self.buf, b""
        return b

    def start_tls(self, ctx):
        self.sock.settimeout(10)
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        self.sock.settimeout(0.5)

    def send(self, data):
        self.sock.settimeout(10)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.settimeout(0.5)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser(description="recording SMTP sink for tests and the demo")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True, help="write each accepted message here")
    ap.add_argument("--reject-rcpt", default="",
                    help="regex: matching recipients get 550 5.1.1")
    ap.add_argument("--no-8bitmime", action="store_true")
    ap.add_argument("--xclient", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    caps = [c for c in DEFAULT_CAPS if not (args.no_8bitmime and c == "8BITMIME")]
    faults = {}
    if args.reject_rcpt:
        pat = re.compile(args.reject_rcpt)

        def rcpt(_sess, arg):
            if pat.search(arg):
                return "550 5.1.1 <%s>: recipient unknown (fakemta)" % arg[3:].strip(" <>")
            return None
        faults["RCPT"] = rcpt
    fake = FakeMTA(caps=caps, faults=faults, host=args.host, port=args.port,
                   xclient=args.xclient, xforward=True)
    count = [0]

    def store(msg):
        count[0] += 1
        path = os.path.join(args.dir, "%04d.eml" % count[0])
        with open(path, "wb") as f:
            f.write(msg.data)
        print("fakemta: stored %s from=<%s> rcpts=%s %d bytes" % (
            path, msg.mail_from, ",".join(msg.rcpts), len(msg.data)), flush=True)
    fake.on_message = store
    fake.start()
    print("fakemta: listening on %s:%d" % (args.host, fake.port), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    sys.exit(main())
