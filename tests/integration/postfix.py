# SPDX-License-Identifier: GPL-2.0-or-later
"""postfix: a private, non-system Postfix instance on a loopback port.

It needs root (Postfix's master runs as root and its daemons switch to the
`postfix` user) and the Debian postfix package; no /etc/postfix/main.cf and
no system instance are needed. Every recipient in example.net is delivered
to BASE/mail/Maildir/new/. XCLIENT is authorised from 127.0.0.0/8 so sluice
can hand over the real client address.

Extra or overriding main.cf settings go in `extra` (a dict), e.g. the
milter ones: smtpd_milters, smtpd_milter_maps, milter_default_action,
milter_protocol, milter_*_macros (test_milter_fixtures.py).

Starting a fresh instance takes about 4 s, so tests start one per file.
Also usable from a shell (the demo): `python3 postfix.py start BASE PORT`
and `python3 postfix.py stop BASE`.
"""

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

MASTER_CF = """\
# SPDX-License-Identifier: GPL-2.0-or-later
# Private test instance: one smtpd on a loopback port, no chroot anywhere.
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def unavailable():
    """Why a private Postfix cannot run here, or None."""
    if os.geteuid() != 0:
        return "a private Postfix needs root"
    if not shutil.which("postfix") and not os.path.exists("/usr/sbin/postfix"):
        return "postfix is not installed"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "no postfix user"
    return None


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class PrivatePostfix:
    def __init__(self, port=None, hostname="upstream.test", extra=None):
        # Postfix's daemons run as `postfix`/`nobody` and must traverse every
        # parent directory, so the base lives directly under /tmp with 0755
        # (pytest's own temp dirs are 0700).
        self.base = tempfile.mkdtemp(prefix="sluice-postfix-", dir="/tmp")
        os.chmod(self.base, 0o755)
        self.port = port or _free_port()
        self.port_chosen = port is None
        self.hostname = hostname
        self.extra = dict(extra or {})
        self.etc = os.path.join(self.base, "etc")
        self.maildir = os.path.join(self.base, "mail", "Maildir")
        self.logfile = os.path.join(self.base, "maillog")
        self.started = False

    def main_cf(self):
        b = self.base
        kv = {
            "compatibility_level": "3.6",
            "queue_directory": b + "/spool",
            "data_directory": b + "/data",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": self.hostname,
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
            # Postfix judges the client's HELO itself: sluice must hand it
            # over (XCLIENT HELO= and the EHLO after it).
            "smtpd_helo_restrictions": "reject_invalid_helo_hostname",
            # One recipient Postfix itself refuses, to show its validation
            # relayed through sluice.
            "smtpd_recipient_restrictions":
                "check_recipient_access inline:{ { unknown@example.net = "
                "550 5.1.1 User unknown } }",
            "alias_maps": "",
            "alias_database": "",
            "default_transport": "error:outbound delivery disabled in tests",
            "virtual_mailbox_domains": "example.net",
            "virtual_mailbox_base": b + "/mail",
            "virtual_mailbox_maps": "static:Maildir/",
            "virtual_uid_maps": "static:65534",
            "virtual_gid_maps": "static:65534",
            "virtual_minimum_uid": "100",
            "maillog_file": self.logfile,
            "maillog_file_prefixes": b,
            "smtputf8_enable": "yes",
            "message_size_limit": "52428800",
            "virtual_mailbox_limit": "0",
            "smtpd_banner": "$myhostname ESMTP private-postfix",
        }
        kv.update(self.extra)
        return "".join("%s = %s\n" % (k, v) for k, v in kv.items())

    def write_config(self):
        os.makedirs(self.etc, exist_ok=True)
        for d in ("spool", "data", "mail"):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        shutil.chown(os.path.join(self.base, "data"), "postfix")
        shutil.chown(os.path.join(self.base, "mail"), 65534, 65534)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(self.main_cf())
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(listen="127.0.0.1:%d" % self.port))

    def _postfix(self, *args, timeout=60):
        return subprocess.run(["postfix", "-c", self.etc] + list(args), capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, timeout=30):
        # A port chosen here can be taken by another test between the probe
        # and master's bind (the suite runs two test files at a time): then
        # `postfix start` fails with the reason only in the maillog; try
        # another port.
        for attempt in range(3):
            self.write_config()
            r = self._postfix("start")
            if r.returncode == 0:
                break
            if not self.port_chosen or attempt == 2:
                raise RuntimeError("postfix start failed: %s %s\n%s"
                                   % (r.stdout, r.stderr, self.log_tail(20)))
            self._postfix("stop")
            self.port = _free_port()
        self.started = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.settimeout(5)
                    if s.recv(512).startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("private postfix did not open port %d:\n%s"
                           % (self.port, self.log_tail()))

    def stop(self):
        if self.started:
            self._postfix("stop")
            pidfile = os.path.join(self.base, "spool", "pid", "master.pid")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    pid = int(open(pidfile).read().strip())
                    os.kill(pid, 0)
                except (OSError, ValueError):
                    break
                time.sleep(0.1)
            self.started = False
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, n=60):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "<no maillog>"

    def wait_log(self, text, timeout=5.0, n=200):
        """The log's last n lines once they hold `text` (Postfix's postlogd
        writes the file a moment after the SMTP reply), else what is there."""
        deadline = time.monotonic() + timeout
        while True:
            tail = self.log_tail(n)
            if text in tail or time.monotonic() > deadline:
                return tail
            time.sleep(0.05)

    def mail_files(self):
        return sorted(glob.glob(os.path.join(self.maildir, "new", "*")))

    def wait_mail(self, n, timeout=15.0, before=()):
        """Wait until at least n new files (not in `before`) are in the Maildir."""
        before = set(before)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fresh = [p for p in self.mail_files() if p not in before]
            if len(fresh) >= n:
                return fresh
            time.sleep(0.1)
        return [p for p in self.mail_files() if p not in before]

    def flush(self):
        subprocess.run(["postqueue", "-c", self.etc, "-f"], capture_output=True, timeout=30)

    def queue(self):
        """Messages still queued (held ones included), as `postqueue -j` lists
        them: [{"queue_name": "hold", "queue_id": ..., "sender": ...,
        "recipients": [{"address": ...}, ...]}, ...]."""
        r = subprocess.run(["postqueue", "-c", self.etc, "-j"], capture_output=True,
                           text=True, timeout=30)
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def _cli():
    if len(sys.argv) >= 2 and sys.argv[1] == "start":
        pf = PrivatePostfix(port=int(sys.argv[2]) if len(sys.argv) > 2 else None)
        pf.start()
        print(pf.base, pf.port)
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "stop":
        pf = PrivatePostfix.__new__(PrivatePostfix)
        pf.base = sys.argv[2]
        pf.etc = os.path.join(pf.base, "etc")
        pf.started = True
        pf.stop()
        return 0
    sys.stderr.write("usage: postfix.py start [PORT] | stop BASE\n")
    return 2


if __name__ == "__main__":
    sys.exit(_cli())
