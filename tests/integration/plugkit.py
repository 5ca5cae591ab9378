# SPDX-License-Identifier: GPL-2.0-or-later
"""plugkit: helpers for the plugin-host integration tests (test_plugins_*.py).

- plugin_path(name): a test plugin built by the suite (BUILD/tests/plugins)
  or the in-tree SDK example (BUILD/sdk/examples);
- chain_sections(...): [chain] + [plugin NAME] sections for harness.Sluice;
- start(): sluice in front of a recording fake upstream with a chain;
- send(): one message on a fresh raw client, every reply returned;
- metrics(): the Prometheus text of the stats endpoint.

Everything is bounded in time (the harness' socket timeouts and the conftest
alarm) and uses loopback only.
"""

import os
import re
import urllib.request

import harness
from harness import Client

BUILD = os.environ.get("SLUICE_BUILD_DIR", "build")
MSG = (b"From: a@example.com\r\n"
       b"To: b@example.net\r\n"
       b"Subject: hello\r\n"
       b"\r\n"
       b"body line 1\r\n"
       b"body line 2\r\n")


def plugin_path(name):
    """Absolute path of a plugin .so built by the suite."""
    for sub in ("tests/plugins", "sdk/examples"):
        p = os.path.abspath(os.path.join(BUILD, sub, name + ".so"))
        if os.path.exists(p):
            return p
    raise AssertionError("plugin %s.so not built under %s" % (name, BUILD))


def chain_sections(*instances):
    """instances: (name, so, {keys}) -> {"chain": ..., "plugin NAME": ...}."""
    out = {"chain": {"plugins": " ".join(i[0] for i in instances)}}
    for name, so, keys in instances:
        sec = {"path": plugin_path(so) if "/" not in so else so}
        sec.update(keys or {})
        out["plugin %s" % name] = sec
    return out


def start(sluice_factory, fake, *instances, server=None, stats=None, args=None):
    """sluice with `instances` in front of `fake`; started and ready."""
    return sluice_factory(fake.port, extra_sections=chain_sections(*instances),
                          server=server, stats=stats, args=args)


class Dialogue:
    """What the client heard in one transaction."""

    def __init__(self):
        self.replies = {}     # step -> harness.Reply
        self.closed = False

    def __getitem__(self, k):
        return self.replies[k]

    def get(self, k):
        return self.replies.get(k)

    def __repr__(self):
        return "Dialogue(%r closed=%r)" % (self.replies, self.closed)


def send(port, mail_from="sender@example.com", rcpts=("rcpt@example.net",), body=MSG,
         helo="client.test", timeout=15.0):
    """Run one session step by step; stop at the first refusal. Returns the
    Dialogue with replies under "greeting", "ehlo", "mail", "rcpt:<addr>",
    "data", "eod", "quit"."""
    d = Dialogue()
    c = Client(port, timeout=timeout)
    try:
        steps = [("greeting", None), ("ehlo", "EHLO " + helo),
                 ("mail", "MAIL FROM:<%s>" % mail_from)]
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
                if r.code == 421 or key == "greeting":
                    d.closed = c.is_closed(2.0)
                return d
        if d.replies["data"].code != 354:
            return d
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        c.send(harness.dot_stuff(body) + b".\r\n")
        d.replies["eod"] = c.reply()
        if d.replies["eod"].code == 421:
            d.closed = c.is_closed(2.0)
            return d
        try:
            d.replies["quit"] = c.cmd("QUIT")
        except (harness.ConnectionClosed, OSError):
            pass
        return d
    finally:
        c.close()


def metrics(stats_port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % stats_port, timeout=5) as r:
        return r.read().decode()


def metric_value(text, name, labels=None):
    """Value of one series in Prometheus text, or None."""
    want = ""
    if labels:
        want = "{" + ",".join('%s="%s"' % kv for kv in labels.items()) + "}"
    for ln in text.splitlines():
        if ln.startswith(name + want + " "):
            return float(ln.split()[-1])
    return None


def header_block(data):
    """The header section of a message (bytes up to the empty line, with it)."""
    i = data.find(b"\r\n\r\n")
    return data[:i + 4] if i >= 0 else data


def count_lines(sl, pattern):
    rx = re.compile(pattern)
    with sl._cond:
        return sum(1 for ln in sl.lines if rx.search(ln))
