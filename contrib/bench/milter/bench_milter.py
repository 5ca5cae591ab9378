#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""bench_milter: what a milter in sluice's chain costs, side by side in one run
(issue 14). Targets, all in front of Postfix's smtp-sink on loopback:

  empty      sluice, empty chain
  native     sluice, one no-op native plugin (testplug, every hook CONTINUE)
  milter     sluice, one no-op libmilter milter (testmilter without -l: every
             callback answers continue), unix socket
  rspamd     sluice, rspamd 3.4 as a milter (milters.RspamdMilter: network off)
  postfix    a private Postfix with the same rspamd as its smtpd_milters,
             mail discarded after the queue (what "Postfix hands the same mail
             to the same milter" costs; its queue work included)

Two loads per target, in interleaved rounds (target order rotates), medians:
  mx         Postfix's smtp-source, one connection per message (as an MX sees
             mail), 32 at a time, 4 KiB: messages/s and CPU ms per message
             (user+system of sluice or Postfix's processes, plus the milter's,
             over the run; the load generator and the sink not counted)
  sessions   sluice-bench, 32 sessions, pipelined, 4 KiB: messages/s, p50/p99
             latency per message
and sluice's RSS after the runs. Run as root (smtp-sink -u nobody; Postfix,
rspamd). Prints a table; exit 1 if a message was lost.

  contrib/bench/milter/bench_milter.py --build build-rel [--messages 3000] [--rounds 3]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "contrib", "bench", "plugins"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import bench_plugins as bp  # noqa: E402


def cpu_ticks(pids):
    """user+system clock ticks of these processes (children not counted)."""
    t = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                parts = f.read().rsplit(")", 1)[1].split()
            t += int(parts[11]) + int(parts[12])
        except (OSError, IndexError, ValueError):
            pass
    return t


def pids_named(*names):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % d) as f:
                if f.read().strip() in names:
                    out.append(int(d))
        except OSError:
            pass
    return out


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


def smtp_source(port, n, sessions=32, size=4096, timeout=600):
    src = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    t = time.monotonic()
    r = subprocess.run([src, "-s", str(sessions), "-l", str(size), "-m", str(n), "-f",
                        "bench@example.com", "-t", "rcpt@example.net",
                        "127.0.0.1:%d" % port], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    return time.monotonic() - t, r.returncode, r.stderr


class Target:
    def __init__(self, name, port, pids_fn, main_pid=None):
        self.name, self.port, self.pids_fn, self.main_pid = name, port, pids_fn, main_pid
        self.mx_rate, self.mx_cpu, self.s_rate, self.p50, self.p99 = [], [], [], [], []
        self.own_cpu = []
        self.lost = 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="empty,native,milter,rspamd,postfix")
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    only = a.only.split(",")
    os.environ["SLUICE_BUILD_DIR"] = a.build  # read by milters.py at import

    import milters
    import postfix as pf

    sluice = os.path.join(a.build, "proxy", "sluice")
    bench_bin = os.path.join(a.build, "contrib", "bench", "sluice-bench")
    testplug = os.path.join(a.build, "tests", "plugins", "testplug.so")
    milter_so = os.path.join(a.build, "plugins", "milter.so")
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    work = tempfile.mkdtemp(prefix="sluice-bench-milter.")
    procs = bp.Procs()
    fixtures = []
    targets = []
    lost = False
    try:
        sink_port = bp.free_port()
        procs.start([sink, "-u", "nobody", "-m", "4096", "127.0.0.1:%d" % sink_port, "4096"],
                    stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "sink.err"), "w"))
        if not bp.wait_port(sink_port):
            raise SystemExit("smtp-sink did not start")

        def add_sluice(name, chain, extra_pids=()):
            conf, port = bp.sluice_config(work, name, sink_port, chain)
            p = bp.start_sluice(procs, sluice, conf, port, work, name)
            targets.append(Target(name, port, lambda: [p.pid] + list(extra_pids), p.pid))

        if "empty" in only:
            add_sluice("empty", [])
        if "native" in only:
            add_sluice("native", [("noop", testplug, {})])
        if "milter" in only:
            tm = milters.TestMilter(transport="unix")
            tm.logfile = None
            tm._launch = lambda: (tm._spawn("testmilter", [tm.binary, "-p", tm.socket]),
                                  tm._wait_milter())
            tm.start()
            fixtures.append(tm)
            add_sluice("milter", [("m", milter_so, {"socket": tm.socket})],
                       [p.pid for _, p in tm.procs])
        rs = None
        if "rspamd" in only or "postfix" in only:
            rs = milters.RspamdMilter(transport="inet")
            rs.start()
            fixtures.append(rs)
        if "rspamd" in only:
            add_sluice("rspamd", [("rspamd", milter_so, {"socket": rs.socket})])
            t = targets[-1]
            main_pids = t.pids_fn
            # rspamd's workers are children of its main process: count each.
            t.pids_fn = lambda f=main_pids: f() + pids_named("rspamd")
        if "postfix" in only:
            pport = bp.free_port()
            px = pf.PrivatePostfix(port=pport, extra={
                "smtpd_milters": rs.postfix_socket, "milter_protocol": "6",
                "milter_default_action": "tempfail", "smtpd_peername_lookup": "no",
                "virtual_mailbox_domains": "", "relay_domains": "example.net",
                "relay_transport": "discard", "default_transport": "discard",
                "default_process_limit": "100", "smtpd_client_connection_count_limit": "0",
                "smtpd_client_connection_rate_limit": "0", "smtpd_client_message_rate_limit": "0",
                "in_flow_delay": "0"})
            px.start()
            fixtures.append(px)
            targets.append(Target("postfix", pport,
                                  lambda: pids_named("smtpd", "cleanup", "qmgr", "discard",
                                                     "trivial-rewrite", "master", "anvil")
                                  + pids_named("rspamd")))
        n = a.messages
        hz = os.sysconf("SC_CLK_TCK")
        for t in targets:  # warm-up
            smtp_source(t.port, max(100, n // 10))
        for rnd in range(a.rounds):
            order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
            for t in order:
                pids = t.pids_fn()
                c0 = cpu_ticks(pids)
                o0 = cpu_ticks([t.main_pid]) if t.main_pid else 0
                el, rc, err = smtp_source(t.port, n)
                c1 = cpu_ticks(t.pids_fn())
                o1 = cpu_ticks([t.main_pid]) if t.main_pid else 0
                t.own_cpu.append((o1 - o0) * 1000.0 / hz / n)
                if rc != 0:
                    print("LOST? %s: smtp-source rc=%d %s" % (t.name, rc, err.strip()[:300]))
                    lost = True
                t.mx_rate.append(n / el)
                t.mx_cpu.append((c1 - c0) * 1000.0 / hz / n)
                r = bp.bench(bench_bin, t.port, 32, n)
                if r["rc"] != 0 or int(r["ok"]) != n:
                    print("LOST: %s sessions round: %s" % (t.name, r))
                    lost = True
                t.s_rate.append(float(r["msgs_per_s"]))
                t.p50.append(float(r["lat_p50_ms"]))
                t.p99.append(float(r["lat_p99_ms"]))
        med = statistics.median
        print("== milter cost: 4 KiB messages, %d per run, %d interleaved rounds, medians"
              % (n, a.rounds))
        print("%-8s | %10s %11s %11s | %11s %8s %8s | %8s" % (
            "target", "MX msgs/s", "CPU ms/msg", "of sluice", "sess msgs/s", "p50 ms",
            "p99 ms", "RSS KiB"))
        for t in targets:
            print("%-8s | %10.0f %11.3f %11s | %11.0f %8.2f %8.2f | %8s" % (
                t.name, med(t.mx_rate), med(t.mx_cpu),
                "%.3f" % med(t.own_cpu) if t.main_pid else "-", med(t.s_rate), med(t.p50),
                med(t.p99), rss_kb(t.main_pid) if t.main_pid else "-"))
        print("(MX: smtp-source, one connection per message, 32 at a time; CPU: the target's "
              "processes and its milter's; sess: sluice-bench, 32 pipelined sessions)")
    finally:
        procs.stop_all()
        for f in fixtures:
            try:
                f.stop()
            except Exception:
                pass
        shutil.rmtree(work, ignore_errors=True)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
