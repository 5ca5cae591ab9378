# SPDX-License-Identifier: GPL-2.0-or-later
"""The scale-out shape: three sluice instances on loopback ports behind
HAProxy (PROXY protocol v2, round robin), sharing one redis-server. A rate
limit of N messages per client holds for the three together; a greylisted
triplet retried through another instance passes; with Redis killed mid-run
the failure policy applies (open: mail flows, logged), counting resumes
when Redis is back, and every message that heard 250 reached the MTA
exactly once."""
import os
import re
import shutil
import subprocess
import time

import pytest

import harness
import plugkit
from redisfix import REDIS, Redis

RL_SO = os.path.abspath(os.path.join(plugkit.BUILD, "plugins", "ratelimit.so"))
GL_SO = os.path.abspath(os.path.join(plugkit.BUILD, "plugins", "greylist.so"))
PROXY_SRC = "127.0.0.5"

pytestmark = [
    pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy not installed"),
    pytest.mark.skipif(not REDIS, reason="redis-server not installed"),
]


class Balancer:
    """haproxy in the foreground: one frontend, round robin over `ports`,
    PROXY v2 from PROXY_SRC."""

    def __init__(self, workdir, ports):
        os.makedirs(str(workdir), exist_ok=True)
        self.port = harness.free_port()
        self.cfg = os.path.join(str(workdir), "haproxy.cfg")
        lines = ["global", "  maxconn 200", "", "defaults", "  mode tcp",
                 "  timeout connect 5s", "  timeout client 30s", "  timeout server 30s", "",
                 "frontend fe", "  bind 127.0.0.1:%d" % self.port, "  default_backend be", "",
                 "backend be", "  balance roundrobin"]
        for i, p in enumerate(ports):
            lines.append("  server s%d 127.0.0.1:%d source %s send-proxy-v2" % (i, p, PROXY_SRC))
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = os.path.join(str(workdir), "haproxy.log")
        self.proc = None

    def start(self):
        self._logf = open(self.log, "w")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg], stdout=self._logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        assert harness.wait_port(self.port), open(self.log).read()
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._logf.close()


@pytest.fixture
def shape(tmp_path, fake, sluice_factory):
    """make(instances) -> (balancer, [sluice x3], redis)."""
    made = []

    def make(*instances):
        r = Redis(tmp_path / "redis").start()
        nodes = []
        for _ in range(3):
            edge = harness.free_port()
            sections = plugkit.chain_sections(*instances)
            sections["listener edge"] = {"listen": "127.0.0.1:%d" % edge, "proxy_protocol": True,
                                         "proxy_trusted": PROXY_SRC + "/32"}
            sections["state"] = {"backend": "redis", "redis": "127.0.0.1:%d" % r.port,
                                 "redis_timeout": "300ms"}
            s = sluice_factory(fake.port, extra_sections=sections)
            assert harness.wait_port(edge)
            assert s.wait_log(r"state: redis .* connected", 10), s.output()
            s.edge = edge
            nodes.append(s)
        lb = Balancer(tmp_path / "haproxy", [n.edge for n in nodes]).start()
        made.append((lb, r))
        return lb, nodes, r

    yield make
    for lb, r in made:
        lb.stop()
        r.stop()


def _served(node):
    """Sessions the balancer brought to node."""
    return sum(1 for ln in node.lines if "event=connect" in ln and "proxy=" in ln)


def test_rate_limit_holds_across_three_instances(shape, fake, tmp_path):
    rules = tmp_path / "rl.rules"
    rules.write_text("msgs messages client_ip 6 1m\n")
    lb, nodes, r = shape(("rl", RL_SO, {"rules": str(rules), "exempt_networks": ""}))
    codes = []
    for i in range(9):
        d = plugkit.send(lb.port, body=b"Subject: n%d\r\n\r\nx\r\n" % i)
        codes.append(d["eod"].code if d.get("eod") else d["mail"].code)
    assert codes.count(250) == 6 and codes.count(451) == 3, codes
    # every instance served some of them (round robin), so the limit was
    # held together, not by one instance alone
    assert all(_served(n) >= 3 for n in nodes), [_served(n) for n in nodes]
    assert len(fake.wait_messages(6)) == 6
    time.sleep(0.3)
    assert len(fake.messages) == 6


def test_greylist_retry_through_another_instance(shape, fake):
    lb, nodes, r = shape(("gl", GL_SO, {"delay": "1s", "exempt_networks": "",
                                        "auto_allow": "0"}))
    d = plugkit.send(lb.port, rcpts=("bob@example.net",))
    assert d["rcpt:bob@example.net"].code == 451, d
    first = [i for i, n in enumerate(nodes) if any("greylisted (new)" in ln for ln in n.lines)]
    assert len(first) == 1, first
    time.sleep(1.1)
    d = plugkit.send(lb.port, rcpts=("bob@example.net",))
    assert d["rcpt:bob@example.net"].code == 250 and d["eod"].code == 250, d
    passed = [i for i, n in enumerate(nodes) if any("greylist passed" in ln for ln in n.lines)]
    assert len(passed) == 1 and passed != first, (first, passed)
    assert len(fake.wait_messages(1)) == 1


def test_redis_killed_mid_run_nothing_lost(shape, fake, tmp_path):
    rules = tmp_path / "rl.rules"
    rules.write_text("msgs messages client_ip 1000 1m\n")
    lb, nodes, r = shape(("rl", RL_SO, {"rules": str(rules), "exempt_networks": "",
                                        "on_state_error": "open"}))
    accepted = 0
    for phase in range(3):
        if phase == 1:
            r.stop()
        if phase == 2:
            marks = [len(n.lines) for n in nodes]
            r.start()
            for n, m in zip(nodes, marks):
                assert n.wait_log(r"state: redis .* connected", 15, start=m), n.output()
        for i in range(6):
            d = plugkit.send(lb.port, body=b"Subject: p%d-%d\r\n\r\nx\r\n" % (phase, i))
            assert d.get("eod") is not None and d["eod"].code == 250, d
            accepted += 1
    assert any(n.wait_log(r"shared state unavailable: not limited", 1) for n in nodes)
    # counting resumed on the new Redis (it started empty)
    key = r.cli("KEYS", "sluice:rl:msgs:127.0.0.1:*").split()
    assert key and int(r.cli("GET", key[0])) == 6, key
    msgs = fake.wait_messages(accepted)
    time.sleep(0.3)
    subjects = sorted(re.search(rb"Subject: (\S+)", m.data).group(1) for m in fake.messages)
    assert len(subjects) == accepted == 18 and len(set(subjects)) == 18, subjects
    assert msgs
