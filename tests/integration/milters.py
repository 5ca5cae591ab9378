# SPDX-License-Identifier: GPL-2.0-or-later
"""milters: real milters started privately for the milter client's tests.

Every fixture is a context manager (or start()/stop()) that runs its
daemon(s) in a private directory under /tmp with private config, pid and
log files, listening on a loopback port or a unix socket in that directory;
nothing system-wide is read or changed. Waits are bounded; a daemon that
dies or never answers raises with its logs. `Fixture.unavailable()` says
why a fixture cannot run here (None when it can), so a test can skip with
that reason.

  TestMilter     tests/integration/milters/testmilter (libmilter), driven
                 by the message (milters/README.md); its JSON log tells what
                 the MTA sent
  RspamdMilter   rspamd's proxy worker in milter mode, self-scan, network
                 modules off, resolver pointed at a closed loopback port
  OpenDKIM       opendkim signing (mode "s", key made at start) or
                 verifying (mode "v", the public key from a file, no DNS)
  ClamavMilter   clamav-milter in front of a private clamd whose database
                 the fixture generates (EICAR, built from pieces at run time)

Addresses (every fixture):
  .socket          libmilter / Sendmail notation, what sluice's `socket` key
                   takes: "inet:PORT@127.0.0.1" or "unix:/path"
  .postfix_socket  Postfix's notation for smtpd_milters: "inet:127.0.0.1:PORT"
                   or "unix:/path" (Postfix does not take PORT@HOST)

milter_probe(socket) speaks the milter protocol's option negotiation to a
fixture and returns what it asked for (actions and protocol steps).
"""

import atexit
import glob
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

BUILD = os.environ.get("SLUICE_BUILD_DIR", "build")
TESTMILTER = os.path.join(BUILD, "tests", "integration", "milters", "testmilter")

# ---------------------------------------------------------------------------
# Milter protocol, just enough to probe a daemon: option negotiation, quit.

SMFIC_OPTNEG = b"O"
SMFIC_QUIT = b"Q"
ALL_ACTIONS = 0x1FF      # SMFIF_ADDHDRS .. SMFIF_SETSYMLIST
ALL_STEPS = 0x1FFFFF     # SMFIP_NOCONNECT .. SMFIP_HDR_LEADSPC


def _free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def parse_socket(spec):
    """"inet:PORT@HOST" / "inet:HOST:PORT" / "unix:/path" -> (family, address)."""
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local"):
        return socket.AF_UNIX, rest
    if kind == "inet":
        if "@" in rest:
            port, host = rest.split("@", 1)
        else:
            host, port = rest.rsplit(":", 1)
        return socket.AF_INET, (host, int(port))
    raise ValueError("unsupported milter socket %r" % spec)


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("milter closed the connection")
        buf += chunk
    return buf


def milter_probe(spec, timeout=2.0, version=6, actions=ALL_ACTIONS, steps=ALL_STEPS):
    """Negotiate options with the milter at `spec`, then quit. Returns
    {"version", "actions", "steps"} as the milter answered; raises OSError
    (or ConnectionError) when nothing usable answers within `timeout`."""
    fam, addr = parse_socket(spec)
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(addr)
        body = SMFIC_OPTNEG + struct.pack(">III", version, actions, steps)
        s.sendall(struct.pack(">I", len(body)) + body)
        (n,) = struct.unpack(">I", _recv_exact(s, 4))
        if n < 13 or n > 65536:
            raise ConnectionError("bad negotiation reply length %d" % n)
        pkt = _recv_exact(s, n)
        if pkt[:1] != SMFIC_OPTNEG:
            raise ConnectionError("negotiation answered with %r" % pkt[:1])
        v, a, p = struct.unpack(">III", pkt[1:13])
        try:
            s.sendall(struct.pack(">I", 1) + SMFIC_QUIT)
        except OSError:
            pass
        return {"version": v, "actions": a, "steps": p}


# ---------------------------------------------------------------------------
# Common daemon handling

# Daemons run in their own sessions (so a stop reaches their children):
# whatever a crashed test left running is stopped when Python exits.
_running = set()


@atexit.register
def _stop_leftovers():
    for f in list(_running):
        f.stop(grace=0.5)


class MilterDaemon:
    """Base: a private directory, child processes, a socket, logs."""

    label = "milter"

    def __init__(self, transport="inet", start_timeout=30.0, keep=None):
        if transport not in ("inet", "unix"):
            raise ValueError("transport must be inet or unix")
        # Postfix's smtpd (user postfix) must reach unix sockets in here,
        # so the directory is world-traversable (pytest's are 0700).
        self.dir = tempfile.mkdtemp(prefix="sluice-%s-" % self.label, dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.transport = transport
        self.start_timeout = start_timeout
        # Keep the directory (logs, configs) after stop: SLUICE_KEEP_MILTERS=1.
        self.keep = keep if keep is not None else bool(os.environ.get("SLUICE_KEEP_MILTERS"))
        if transport == "inet":
            self.port = _free_port()
            self.path = None
            self.socket = "inet:%d@127.0.0.1" % self.port
            self.postfix_socket = "inet:127.0.0.1:%d" % self.port
        else:
            self.port = None
            self.path = os.path.join(self.dir, "milter.sock")
            self.socket = "unix:" + self.path
            self.postfix_socket = "unix:" + self.path
        self.procs = []          # [(name, Popen)]
        self.started = False
        self.start_seconds = None
        self.negotiated = None   # milter_probe() answer once ready

    @classmethod
    def unavailable(cls):
        """Why this fixture cannot run here, or None."""
        return None

    # -- processes ---------------------------------------------------------
    def _path(self, *parts):
        return os.path.join(self.dir, *parts)

    def _write(self, name, text, mode=0o644):
        p = self._path(name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def _spawn(self, name, argv, env=None):
        out = open(self._path(name + ".out"), "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, cwd=self.dir, env=env,
                                 start_new_session=True)
        finally:
            out.close()
        self.procs.append((name, p))
        return p

    def _check_alive(self):
        for name, p in self.procs:
            if p.poll() is not None:
                raise RuntimeError("%s: %s exited with status %s\n%s"
                                   % (self.label, name, p.returncode, self.log_tail()))

    def _wait(self, ready, what, timeout=None):
        """Poll ready() until true; raise with logs if a child dies or time runs out."""
        deadline = time.monotonic() + (timeout or self.start_timeout)
        last = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if ready():
                    return
            except (OSError, ValueError) as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError("%s: %s not ready after %.0f s (%s)\n%s"
                           % (self.label, what, timeout or self.start_timeout, last,
                              self.log_tail()))

    def _wait_milter(self, timeout=None):
        def ready():
            self.negotiated = milter_probe(self.socket, timeout=1.0)
            return True
        self._wait(ready, "milter socket " + self.socket, timeout)

    def _launch(self):
        raise NotImplementedError

    def start(self):
        why = self.unavailable()
        if why:
            raise RuntimeError("%s unavailable: %s" % (self.label, why))
        t0 = time.monotonic()
        _running.add(self)
        try:
            self._launch()
        except BaseException:
            self.stop()
            raise
        self.started = True
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self, grace=5.0):
        """SIGTERM every child (its process group), SIGKILL after `grace` s."""
        for _, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.monotonic() + grace
        for _, p in reversed(self.procs):
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait(5)
        self.started = False
        _running.discard(self)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- logs --------------------------------------------------------------
    def log_files(self):
        """Every log and output file of the fixture."""
        return sorted(glob.glob(self._path("*.out")) + glob.glob(self._path("*.log"))
                      + glob.glob(self._path("log", "*")))

    def logs(self):
        out = {}
        for p in self.log_files():
            try:
                with open(p, errors="replace") as f:
                    out[os.path.relpath(p, self.dir)] = f.read()
            except OSError:
                pass
        return out

    def log_tail(self, n=40):
        parts = []
        for name, text in self.logs().items():
            lines = text.splitlines()[-n:]
            parts.append("--- %s (last %d lines)\n%s" % (name, len(lines), "\n".join(lines)))
        return "\n".join(parts) or "<no logs in %s>" % self.dir


# ---------------------------------------------------------------------------
# testmilter (libmilter)


def latin1(s):
    """A string from testmilter's log back to the bytes the milter saw."""
    return s.encode("latin-1")


class MilterTransaction:
    """What testmilter saw for one message (MAIL .. end of message or abort)."""

    def __init__(self, conn_events, msg):
        self.conn_events = conn_events
        self.events = [e for e in conn_events if e.get("msg") == msg and e["ev"] != "close"]
        first = conn_events.index(self.events[0]) if self.events else 0
        before = [e for e in conn_events[:first]]
        self.connect = next((e for e in before if e["ev"] == "connect"), None)
        self.negotiate = next((e for e in before if e["ev"] == "negotiate"), None)
        helos = [e for e in before if e["ev"] == "helo"]
        self.helo = helos[-1] if helos else None

    def one(self, ev):
        got = [e for e in self.events if e["ev"] == ev]
        return got[0] if got else None

    def all(self, ev):
        return [e for e in self.events if e["ev"] == ev]

    @property
    def envfrom(self):
        return self.one("envfrom")

    @property
    def rcpts(self):
        return self.all("envrcpt")

    @property
    def headers(self):
        """[(name, value)] as the MTA sent them (str, latin-1)."""
        return [(e["name"], e["value"]) for e in self.all("header")]

    def header(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def eom(self):
        return self.one("eom")

    @property
    def body(self):
        e = self.eom
        return latin1(e["body"]) if e else None

    @property
    def actions(self):
        return self.all("action")

    @property
    def reply(self):
        e = self.one("eom-reply")
        return e["verdict"] if e else None

    def macros(self, ev):
        """Macros logged at the first `ev` of this transaction ("connect" and
        "helo" come from the connection)."""
        e = {"connect": self.connect, "helo": self.helo}.get(ev) or self.one(ev)
        return (e or {}).get("macros", {})


class TestMilter(MilterDaemon):
    """The libmilter test milter. options: extra flags ("-N" no-reply steps,
    "-H" leading space in header values, "-R" rejected recipients too,
    "-t", "SECONDS" libmilter's timeout)."""

    __test__ = False  # not a pytest test class
    label = "testmilter"

    def __init__(self, transport="unix", options=(), binary=None, **kw):
        super().__init__(transport=transport, **kw)
        self.binary = os.path.abspath(binary or TESTMILTER)
        self.options = list(options)
        self.logfile = self._path("testmilter.log")

    @classmethod
    def unavailable(cls, binary=None):
        b = binary or TESTMILTER
        if not os.access(b, os.X_OK):
            return ("testmilter not built at %s (needs libmilter-dev; set SLUICE_BUILD_DIR)"
                    % b)
        return None

    def _launch(self):
        self._spawn("testmilter", [self.binary, "-p", self.socket, "-l", self.logfile]
                    + self.options)
        # Its "listening" line is written once the socket is open; probing
        # before would only race.
        self._wait(lambda: any(e["ev"] == "listening" for e in self.events()), "log")
        self._wait_milter()

    def stop(self, grace=0.5):
        # libmilter notices SIGTERM only at its next poll timeout (about
        # 5 s); nothing is lost by killing it sooner (one write per line).
        super().stop(grace=grace)

    # -- the JSON log --------------------------------------------------------
    def events(self):
        try:
            with open(self.logfile, encoding="ascii") as f:
                lines = f.read().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line being written right now
        return out

    def connections(self):
        """{conn id: [events]} in log order (conn 0: the process itself)."""
        out = {}
        for e in self.events():
            out.setdefault(e["conn"], []).append(e)
        return out

    def transactions(self):
        out = []
        for cid, evs in sorted(self.connections().items()):
            if cid == 0:
                continue
            for m in sorted({e["msg"] for e in evs if e["msg"] > 0}):
                out.append(MilterTransaction(evs, m))
        return out

    def find(self, header=None, value=None, sender=None):
        """Transactions with a header `header` containing `value`, or with the
        MAIL FROM address containing `sender`."""
        out = []
        for t in self.transactions():
            if header is not None and any(value in v for v in t.header(header)):
                out.append(t)
            elif sender is not None and t.envfrom and sender in t.envfrom["args"][0]:
                out.append(t)
        return out

    def wait_transaction(self, timeout=10.0, done=("eom-reply", "abort"), **match):
        """The one transaction matching `match` (see find()), once it ended."""
        deadline = time.monotonic() + timeout
        while True:
            got = [t for t in self.find(**match) if any(e["ev"] in done for e in t.events)]
            if got or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if len(got) != 1:
            raise AssertionError("%d testmilter transactions match %r\n%s"
                                 % (len(got), match, self.log_tail(20)))
        return got[0]

    def wait_event(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events():
                if pred(e):
                    return e
            time.sleep(0.05)
        raise AssertionError("no testmilter event matched within %.0f s\n%s"
                             % (timeout, self.log_tail(20)))


# ---------------------------------------------------------------------------
# rspamd


# Modules that would use the network (DNS lists, fuzzy, Redis, HTTP) or
# statistics storage: off, so no query leaves the machine and nothing waits.
RSPAMD_OFF = ("rbl surbl emails dkim dmarc spf arc asn fuzzy_check neural ratelimit greylist "
              "history_redis replies reputation url_redirector mx_check dcc external_services "
              "antivirus clickhouse elastic metadata_exporter metric_exporter rspamd_update p0f "
              "dkim_signing bimi aws_s3 spamtrap external_relay").split()

RSPAMD_CONF = """\
# SPDX-License-Identifier: GPL-2.0-or-later
# Private rspamd for sluice's milter tests: Debian's rules and modules
# ($CONFDIR, /etc/rspamd), this directory's local.d/override.d, one proxy
# worker in milter mode that scans by itself. No normal or controller worker.
.include "$CONFDIR/common.conf"

options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
    .include(try=true; priority=10) "$LOCAL_CONFDIR/override.d/options.inc"
}}

logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}}

worker "rspamd_proxy" {{
    bind_socket = "{bind}";
    milter = yes;
    timeout = 60s;
    upstream "local" {{
        default = yes;
        self_scan = yes;
    }}
    count = 1;
    max_retries = 1;
    discard_on_reject = false;
    quarantine_on_reject = false;
    spam_header = "X-Spam";
    reject_message = "{reject_message}";
}}
"""


class RspamdMilter(MilterDaemon):
    """rspamd (Debian 3.4) as a milter. reject_message: the text rspamd
    gives for its "reject" action (GTUBE gets its own: "Gtube pattern")."""

    label = "rspamd"

    def __init__(self, transport="inet", reject_message="Spam message rejected",
                 headers=("x-spamd-result", "x-rspamd-server", "x-rspamd-queue-id",
                          "x-spam-status", "x-spamd-bar"), **kw):
        super().__init__(transport=transport, **kw)
        self.reject_message = reject_message
        self.headers = list(headers)
        self.conf = self._path("conf")
        self.dns_port = _free_port()  # nobody listens: lookups fail at once

    @classmethod
    def unavailable(cls):
        if not shutil.which("rspamd"):
            return "rspamd is not installed"
        if os.geteuid() != 0:
            return "the private rspamd runs as root (-i)"
        return None

    def _config(self):
        if self.transport == "inet":
            bind = "127.0.0.1:%d" % self.port
        else:
            bind = "%s mode=0666" % self.path
        files = {
            "rspamd.conf": RSPAMD_CONF.format(bind=bind, reject_message=self.reject_message),
            # Hyperscan would compile for a minute on a fresh DBDIR; PCRE
            # is fast enough for a handful of messages. The public suffix
            # list (9600 TLDs, compiled at every start: 20 s here) is
            # replaced by a few suffixes.
            "conf/local.d/options.inc":
                'dns {\n  nameserver = ["127.0.0.1:%d"];\n  timeout = 0.1s;\n'
                '  retransmits = 0;\n}\ndisable_hyperscan = true;\nurl_tld = "%s";\n'
                % (self.dns_port, self._path("tld.dat")),
            "tld.dat": "com\nnet\norg\ntest\nexample\ninvalid\nexample.com\nexample.net\n",
            # Loopback clients are "local": without skip_local = false the
            # extended headers are not added for them.
            "conf/local.d/milter_headers.conf":
                "use = [%s];\nextended_spam_headers = true;\nskip_local = false;\n"
                "skip_authenticated = false;\n"
                % ", ".join('"%s"' % h for h in self.headers),
            # hfilter's HELO/hostname checks would resolve names.
            "conf/local.d/hfilter.conf":
                "helo_enabled = false;\nhostname_enabled = false;\nfrom_enabled = false;\n",
            "conf/local.d/redis.conf": "",
        }
        for m in RSPAMD_OFF:
            files["conf/local.d/%s.conf" % m] = "enabled = false;\n"
        for name, text in files.items():
            self._write(name, text)
        for d in ("db", "run", "log"):
            os.makedirs(self._path(d), exist_ok=True)

    def _launch(self):
        self._config()
        self._spawn("rspamd", [
            "rspamd", "-f", "-i", "-u", "root", "-g", "root", "-c", self._path("rspamd.conf"),
            "--var=LOCAL_CONFDIR=" + self.conf, "--var=DBDIR=" + self._path("db"),
            "--var=RUNDIR=" + self._path("run"), "--var=LOGDIR=" + self._path("log")])
        self._wait_milter()


# ---------------------------------------------------------------------------
# OpenDKIM


def dkim_txt_from_genkey(path):
    """The TXT record text of an opendkim-genkey .txt file (quoted chunks joined)."""
    with open(path) as f:
        text = f.read()
    inside = text[text.index("(") + 1:text.rindex(")")]
    chunks = []
    i = 0
    while True:
        a = inside.find('"', i)
        if a < 0:
            break
        b = inside.index('"', a + 1)
        chunks.append(inside[a + 1:b])
        i = b + 1
    return "".join(chunks)


def _safe_base():
    """A directory whose every ancestor only root can write to (opendkim,
    run as root, refuses a config file or key below a world-writable
    directory such as /tmp), or None. Tried: $SLUICE_MILTER_PRIVATE_DIR,
    the build directory, root's home."""
    for cand in (os.environ.get("SLUICE_MILTER_PRIVATE_DIR"), BUILD, os.path.expanduser("~")):
        if not cand or not os.path.isdir(cand):
            continue
        real = os.path.realpath(cand)
        parts = real.split(os.sep)
        ok = True
        for i in range(1, len(parts) + 1):
            st = os.stat(os.sep + os.path.join(*parts[1:i]) if i > 1 else os.sep)
            if st.st_mode & 0o022 or st.st_uid not in (0, os.geteuid()):
                ok = False
                break
        if ok:
            return real
    return None


class OpenDKIM(MilterDaemon):
    """opendkim as a milter. mode "s": signs mail whose From: domain is
    `domain`, from any 127.0.0.0/8 client, with a key made at start
    (opendkim-genkey, `bits`); mode "v": verifies, keys from
    `public_keys` ({"sel._domainkey.dom": "v=DKIM1; k=rsa; p=..."}, opendkim's
    TestPublicKeys file, no DNS) and adds Authentication-Results with
    `authserv_id`. After start (signing): .txt_record, .key_path, .dnsfunc."""

    label = "opendkim"

    def __init__(self, mode="s", domain="example.com", selector="sel", bits=2048,
                 public_keys=None, authserv_id="dkim.test", canonicalization="relaxed/relaxed",
                 transport="inet", **kw):
        super().__init__(transport=transport, **kw)
        if mode not in ("s", "v", "sv"):
            raise ValueError("mode must be s, v or sv")
        self.mode = mode
        self.domain = domain
        self.selector = selector
        self.bits = bits
        self.public_keys = dict(public_keys or {})
        self.authserv_id = authserv_id
        self.canonicalization = canonicalization
        self.key_path = None
        self.txt_record = None

    @classmethod
    def unavailable(cls):
        if not shutil.which("opendkim") and not os.path.exists("/usr/sbin/opendkim"):
            return "opendkim is not installed (apt-get install opendkim)"
        if not shutil.which("opendkim-genkey"):
            return "opendkim-genkey is not installed (apt-get install opendkim-tools)"
        if _safe_base() is None:
            return ("no directory without group/world-writable ancestors for opendkim's "
                    "config and key (set SLUICE_MILTER_PRIVATE_DIR)")
        return None

    def _launch(self):
        # Config and key live where opendkim's path check accepts them;
        # the socket, pid file and output stay in self.dir.
        base = os.path.join(_safe_base(), "milter-private")
        os.makedirs(base, mode=0o700, exist_ok=True)
        self.private = tempfile.mkdtemp(prefix="opendkim-", dir=base)
        try:
            self._launch_private()
        except BaseException:
            shutil.rmtree(self.private, ignore_errors=True)
            raise

    def stop(self, grace=0.5):
        # libmilter's listener notices SIGTERM only at its next poll (5 s).
        super().stop(grace=grace)
        if getattr(self, "private", None) and not self.keep:
            shutil.rmtree(self.private, ignore_errors=True)
            try:
                os.rmdir(os.path.dirname(self.private))  # the last one out
            except OSError:
                pass

    @property
    def record_name(self):
        return "%s._domainkey.%s" % (self.selector, self.domain)

    def dnsfunc(self, name, timeout=5):
        """For dkimpy's verify(dnsfunc=...): this fixture's key, nothing else."""
        n = name.decode() if isinstance(name, bytes) else name
        if n.rstrip(".").lower() == self.record_name.lower() and self.txt_record:
            return self.txt_record.encode()
        return None

    def _genkey(self):
        keys = os.path.join(self.private, "keys")
        os.makedirs(keys, exist_ok=True)
        r = subprocess.run(["opendkim-genkey", "-b", str(self.bits), "-d", self.domain,
                            "-s", self.selector, "-D", keys], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError("opendkim-genkey failed: %s %s" % (r.stdout, r.stderr))
        self.key_path = os.path.join(keys, self.selector + ".private")
        os.chmod(self.key_path, 0o600)  # RequireSafeKeys
        self.txt_record = dkim_txt_from_genkey(os.path.join(keys, self.selector + ".txt"))

    def _launch_private(self):
        conf = [
            "# SPDX-License-Identifier: GPL-2.0-or-later",
            "Mode %s" % self.mode,
            "Socket %s" % self.socket,
            "PidFile %s" % self._path("opendkim.pid"),
            "Background no",
            "Syslog no",
            "UMask 000",
            "Canonicalization %s" % self.canonicalization,
            "AuthservID %s" % self.authserv_id,
            "AlwaysAddARHeader yes",
            # Postfix talks to the milter from 127.0.0.1 but hands over the
            # SMTP client's address; tests use several 127.0.0.x clients.
            "InternalHosts 127.0.0.0/8",
            # Keys come from the key file: any other lookup stays on
            # loopback, where nothing answers.
            "Nameservers 127.0.0.1",
            "DNSTimeout 1",
        ]
        if "s" in self.mode:
            self._genkey()
            conf += ["Domain %s" % self.domain, "Selector %s" % self.selector,
                     "KeyFile %s" % self.key_path]
        if self.public_keys or "v" in self.mode:
            keys = os.path.join(self.private, "public-keys")
            with open(keys, "w") as f:
                f.write("".join("%s %s\n" % kv for kv in self.public_keys.items()))
            conf.append("TestPublicKeys %s" % keys)
        conf_path = os.path.join(self.private, "opendkim.conf")
        with open(conf_path, "w") as f:
            f.write("\n".join(conf) + "\n")
        os.chmod(conf_path, 0o600)
        self._spawn("opendkim", ["opendkim", "-f", "-x", conf_path])
        self._wait_milter()


# ---------------------------------------------------------------------------
# clamav-milter + clamd


def eicar():
    """The EICAR test string, assembled here so no file in the tree is one."""
    return ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-" + "ANTIVIRUS-TEST-"
            + "FILE!$H+H*").encode()


def clamav_database(d):
    """A signature directory with one .ndb signature: EICAR (Test.EICAR.NDB)."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "test.ndb"), "w") as f:
        f.write("Test.EICAR.NDB:0:*:%s\n" % eicar().hex())
    return d


class ClamavMilter(MilterDaemon):
    """clamav-milter (OnInfected `on_infected`, default Reject; AddHeader
    Replace) in front of a private clamd on a unix socket in the same
    directory, whose database holds only the EICAR signature. reject_msg:
    clamav-milter's RejectMsg (%v: the virus name); None leaves the reply
    text to the MTA ("5.7.1 Command rejected" from Postfix)."""

    label = "clamav"
    CLAMD = "/usr/sbin/clamd"
    MILTER = "/usr/sbin/clamav-milter"

    def __init__(self, on_infected="Reject", reject_msg="Virus found: %v", transport="inet",
                 **kw):
        super().__init__(transport=transport, **kw)
        self.on_infected = on_infected
        self.reject_msg = reject_msg
        self.clamd_socket = self._path("clamd.sock")

    @classmethod
    def unavailable(cls):
        if not os.access(cls.CLAMD, os.X_OK):
            return "clamd is not installed (apt-get install clamav-daemon)"
        if not os.access(cls.MILTER, os.X_OK):
            return "clamav-milter is not installed (apt-get install clamav-milter)"
        return None

    def _launch(self):
        db = clamav_database(self._path("db"))
        tmp = self._path("tmp")
        os.makedirs(tmp, mode=0o700, exist_ok=True)
        self._write("clamd.conf", "\n".join([
            "# SPDX-License-Identifier: GPL-2.0-or-later",
            "Foreground yes",
            "DatabaseDirectory " + db,
            "LocalSocket " + self.clamd_socket,
            "LogFile " + self._path("clamd.log"),
            "PidFile " + self._path("clamd.pid"),
            "TemporaryDirectory " + tmp,
            "MaxThreads 4",
            ""]))
        milter = [
            "# SPDX-License-Identifier: GPL-2.0-or-later",
            "MilterSocket " + self.socket,
            "MilterSocketMode 666",
            "FixStaleSocket yes",
            "Foreground yes",
            "PidFile " + self._path("clamav-milter.pid"),
            "ClamdSocket unix:" + self.clamd_socket,
            "OnClean Accept",
            "OnInfected " + self.on_infected,
            "OnFail Defer",
            "AddHeader Replace",
            "LogFile " + self._path("clamav-milter.log"),
            "LogInfected Full",
            "LogClean Full",
            "LogVerbose yes",
            "TemporaryDirectory " + tmp,
            "ReadTimeout 30",
        ]
        if self.reject_msg:
            milter.append("RejectMsg " + self.reject_msg)
        self._write("clamav-milter.conf", "\n".join(milter) + "\n")
        self._spawn("clamd", [self.CLAMD, "-c", self._path("clamd.conf")])
        self._wait(lambda: os.path.exists(self.clamd_socket) and self._clamd_ping(), "clamd")
        self._spawn("clamav-milter", [self.MILTER, "-c", self._path("clamav-milter.conf")])
        self._wait_milter()

    def stop(self, grace=0.5):
        # clamav-milter is a libmilter milter: SIGTERM waits for its 5 s poll.
        super().stop(grace=grace)

    def _clamd_ping(self):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(self.clamd_socket)
            s.sendall(b"zPING\0")
            return s.recv(16).startswith(b"PONG")


ALL = (TestMilter, RspamdMilter, OpenDKIM, ClamavMilter)
