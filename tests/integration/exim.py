# SPDX-License-Identifier: GPL-2.0-or-later
"""exim: a private Exim 4 daemon from Debian's exim4-daemon-light on
loopback ports, with the configuration of contrib/exim/ included as it is.

exim4-daemon-light conflicts with postfix (both are a
mail-transport-agent), so it is not installed: install-deps.sh extracts the
package into EXIM_ROOT (default /opt/sluice-test/exim4) and creates the
Debian-exim user its binary is built for (EXIM_USER=ref:Debian-exim).

How Exim 4.96 treats `-C FILE` (Debian's build: TRUSTED_CONFIG_LIST
/etc/exim4/trusted_configs, no ALT_CONFIG_PREFIX): a configuration that is
not listed there makes Exim give up its setuid privilege at once and run as
its caller. The caller here is root, so the daemon still binds, becomes
Debian-exim, and every re-exec (reception, delivery) is Exim's own user
("exim user lost privilege for using -C option" in the log). Hence:
`exim_path` names the extracted binary (Exim re-executes itself for each
delivery and would look for /usr/sbin/exim4), the spool, log and mail
directories belong to Debian-exim, and deliveries run as Debian-exim.

Layout of one instance (BASE under /tmp, 0755 so Debian-exim can walk it):
  BASE/exim.conf            the generated configuration
  BASE/log/mainlog          Exim's log (rejectlog, paniclog beside it)
  BASE/mail/USER/new/       Maildir of each local user (example.net)
  BASE/users, BASE/aliases  local users, and forwards (redirect router)

Ports: `port` is sluice's (SLUICE_PORT: acl_sluice_rcpt), `relay_port` a
second sluice's (SLUICE_RELAY_PORT: acl_sluice_relay_rcpt) and `plain_port`
a port with Debian's stock acl_check_rcpt, to show what the snippet
changes. Every domain that is not example.net is delivered by Exim itself
(smtp transport) to 127.0.0.1:`outbound_port`, standing in for the
Internet's MX hosts.
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import harness

EXIM_ROOT = os.environ.get("SLUICE_EXIM_ROOT", "/opt/sluice-test/exim4")
EXIM_BIN = os.path.join(EXIM_ROOT, "usr", "sbin", "exim4")
EXIM_USER = "Debian-exim"
CONTRIB = os.path.join(harness.SRC_DIR, "contrib", "exim")

CONFIG = """\
# SPDX-License-Identifier: GPL-2.0-or-later
# Private test instance (tests/integration/exim.py). Debian's template sets
# acl_smtp_rcpt = MAIN_ACL_CHECK_RCPT and relay_from_hosts with 127.0.0.1
# and ::1 always in it; this file does the same around contrib/exim/.
keep_environment =
exim_path = {bin}
primary_hostname = upstream.test
qualify_domain = example.net
spool_directory = {base}/spool
log_file_path = {base}/log/%slog
pid_file_path = {base}/exim.pid
local_interfaces = <; 127.0.0.1.{port} ; 127.0.0.1.{relay_port} ; 127.0.0.1.{plain_port}
tls_advertise_hosts =
# No reverse lookups (Debian: host_lookup = *): loopback only, no DNS.
host_lookup =
rfc1413_hosts =
log_selector = +incoming_port +received_recipients

SLUICE_PORT = {port}
SLUICE_RELAY_PORT = {relay_port}
.include {contrib}/localmacros.snippet

domainlist local_domains = example.net
domainlist relay_to_domains =
hostlist relay_from_hosts = <; 127.0.0.1 ; ::1
acl_smtp_rcpt = MAIN_ACL_CHECK_RCPT

begin acl

# The essentials of Debian's acl_check_rcpt (conf.d/acl/30_...).
acl_check_rcpt:
  accept  hosts = +relay_from_hosts
  require message = relay not permitted
          domains = +local_domains : +relay_to_domains
  require verify = recipient
  accept

.include {contrib}/acl_sluice.snippet

begin routers

outbound:
  driver = manualroute
  domains = ! +local_domains
  route_list = * 127.0.0.1
  self = send
  transport = outbound_smtp
  no_more

forwards:
  driver = redirect
  domains = +local_domains
  data = ${{lookup{{$local_part}}lsearch{{{base}/aliases}}}}

local_user:
  driver = accept
  domains = +local_domains
  local_parts = lsearch;{base}/users
  transport = maildir

begin transports

outbound_smtp:
  driver = smtp
  port = {outbound_port}
  allow_localhost
  hosts_avoid_tls = *

maildir:
  driver = appendfile
  directory = {base}/mail/$local_part_data
  maildir_format
  delivery_date_add
  envelope_to_add
  return_path_add
  user = {user}

begin retry

*   *   F,1m,5s
"""


def unavailable():
    """Why a private Exim cannot run here, or None."""
    if not os.path.exists(EXIM_BIN):
        return ("%s is missing: contrib/scripts/install-deps.sh extracts "
                "exim4-daemon-light there" % EXIM_BIN)
    if os.geteuid() != 0:
        return "a private Exim needs root (it runs as %s)" % EXIM_USER
    try:
        pwd.getpwnam(EXIM_USER)
    except KeyError:
        return "no %s user (contrib/scripts/install-deps.sh creates it)" % EXIM_USER
    return None


class PrivateExim:
    def __init__(self, outbound_port, users=(), aliases=None):
        self.base = tempfile.mkdtemp(prefix="sluice-exim-", dir="/tmp")
        os.chmod(self.base, 0o755)
        self.outbound_port = outbound_port
        self.users = list(users)
        self.aliases = dict(aliases or {})
        self.port = self.relay_port = self.plain_port = None
        self.logfile = os.path.join(self.base, "log", "mainlog")
        self.proc = None

    def write_config(self):
        for d in ("spool", "log", "mail"):
            p = os.path.join(self.base, d)
            os.makedirs(p, exist_ok=True)
            shutil.chown(p, EXIM_USER, EXIM_USER)
        with open(os.path.join(self.base, "users"), "w") as f:
            # The value is $local_part_data, the Maildir's name (a lookup
            # result, so not tainted as the address itself would be).
            f.write("".join("%s: %s\n" % (u, u) for u in self.users))
        with open(os.path.join(self.base, "aliases"), "w") as f:
            f.write("".join("%s: %s\n" % kv for kv in self.aliases.items()))
        # Exim reads the config again in every delivery process, as
        # Debian-exim: the shipped snippets are copied next to it, since the
        # source tree may be where that user cannot read (/root/sluice on a
        # fresh machine: "failed to open included configuration file" in
        # the panic log, and mail left on the queue).
        snippets = os.path.join(self.base, "contrib")
        os.makedirs(snippets, exist_ok=True)
        os.chmod(snippets, 0o755)
        for name in ("localmacros.snippet", "acl_sluice.snippet"):
            shutil.copyfile(os.path.join(CONTRIB, name), os.path.join(snippets, name))
            os.chmod(os.path.join(snippets, name), 0o644)
        text = CONFIG.format(bin=EXIM_BIN, base=self.base, contrib=snippets, port=self.port,
                             relay_port=self.relay_port, plain_port=self.plain_port,
                             outbound_port=self.outbound_port, user=EXIM_USER)
        path = os.path.join(self.base, "exim.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def _ready(self):
        for p in (self.port, self.relay_port, self.plain_port):
            try:
                with socket.create_connection(("127.0.0.1", p), timeout=2) as s:
                    s.settimeout(5)
                    if not s.recv(512).startswith(b"220"):
                        return False
                    s.sendall(b"QUIT\r\n")
            except OSError:
                return False
        return True

    def start(self, timeout=20):
        # A port probed free can be taken before Exim binds it (two test
        # files run at a time): then Exim exits at once; try other ports.
        for attempt in range(3):
            self.port, self.relay_port, self.plain_port = (harness.free_port() for _ in range(3))
            conf = self.write_config()
            # -bdf: the daemon stays in the foreground, our child, so that
            # stop() ends exactly this process.
            self.proc = subprocess.Popen([EXIM_BIN, "-C", conf, "-bdf"], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._ready():
                    return self
                time.sleep(0.1)
            err = b""
            if self.proc.poll() is None:
                self.stop_daemon()
            else:
                err = self.proc.stderr.read()
            if attempt == 2:
                raise RuntimeError("private exim did not start: %s\n%s"
                                   % (err.decode(errors="replace"), self.log_tail()))
        return self

    def stop_daemon(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stderr.close()
        self.proc = None

    def stop(self):
        self.stop_daemon()
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=60):
        """The mainlog's last lines, and the panic log and the spool's
        queue when they say something (a delivery that never happened
        leaves its reason there, not in the mainlog)."""
        out = "".join(self.log().splitlines(True)[-n:]) or "<no mainlog>"
        try:
            with open(os.path.join(self.base, "log", "paniclog"), errors="replace") as f:
                out += "\n--- paniclog ---\n" + f.read()[-4000:]
        except OSError:
            pass
        q = subprocess.run([EXIM_BIN, "-C", os.path.join(self.base, "exim.conf"), "-bp"], capture_output=True, text=True,
                           timeout=10)
        if q.stdout.strip() or q.stderr.strip():
            out += "\n--- queue (exim -bp) ---\n" + q.stdout[-4000:] + q.stderr[-2000:]
        return out

    def wait_log(self, needle, timeout=15.0):
        """The first mainlog line containing `needle`, or None."""
        deadline = time.monotonic() + timeout
        while True:
            for ln in self.log().splitlines():
                if needle in ln:
                    return ln
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def mail_files(self, user):
        return sorted(glob.glob(os.path.join(self.base, "mail", user, "new", "*")))

    def wait_mail(self, user, n=1, timeout=15.0, before=()):
        """At least n new files (not in `before`) in USER's Maildir, or
        whatever is there at the deadline."""
        before = set(before)
        deadline = time.monotonic() + timeout
        while True:
            fresh = [p for p in self.mail_files(user) if p not in before]
            if len(fresh) >= n or time.monotonic() >= deadline:
                return fresh
            time.sleep(0.1)
