# SPDX-License-Identifier: GPL-2.0-or-later
"""contrib/prometheus and contrib/grafana stay true to the metrics.

promtool validates the scrape config, the rules and the rule unit tests;
every PromQL expression of the Grafana dashboard must parse, and every
sluice_* metric named by the rules or the dashboard must exist in a live
scrape (of tests/stats_driver, with the plugin counters the bundled plugins
register). The README must document every metric family of that scrape.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request

import pytest

SRC = os.environ.get("SLUICE_SRC_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("SLUICE_BUILD_DIR", "build")
DRIVER = os.path.join(BUILD, "tests", "stats_driver")
PROM = os.path.join(SRC, "contrib", "prometheus")
GRAFANA = os.path.join(SRC, "contrib", "grafana", "sluice-dashboard.json")

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None,
                                reason="promtool (Debian package prometheus) not installed")


def promtool(*args):
    p = subprocess.run(["promtool"] + list(args), capture_output=True, text=True, timeout=60,
                       cwd=PROM)
    return p.returncode, p.stdout + p.stderr


def test_prometheus_files():
    for args in (["check", "config", "prometheus.yml"],
                 ["check", "rules", "sluice-rules.yml"],
                 ["test", "rules", "sluice-rules.test.yml"]):
        rc, out = promtool(*args)
        assert rc == 0, (args, out)
        assert "WARNING" not in out.upper(), out


def grafana_exprs():
    with open(GRAFANA) as f:
        dash = json.load(f)
    exprs = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            exprs.append((p["title"], t["expr"]))
    assert len(exprs) > 20
    return dash, exprs


def test_grafana_expressions_parse():
    dash, exprs = grafana_exprs()
    assert dash["title"] == "sluice" and dash["uid"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    # Grafana variables become plain values; then promtool parses each
    # expression as a recording rule.
    rules = {"groups": [{"name": "grafana", "rules": []}]}
    for i, (_, e) in enumerate(exprs):
        e = e.replace("$__rate_interval", "1m").replace("$instance", ".*")
        rules["groups"][0]["rules"].append({"record": "grafana:expr_%d" % i, "expr": e})
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(rules, f)      # JSON is YAML
        path = f.name
    try:
        rc, out = promtool("check", "rules", path)
    finally:
        os.unlink(path)
    assert rc == 0, out


def live_families():
    p = subprocess.Popen([DRIVER, "127.0.0.1:0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, bufsize=1)
    try:
        port = int(re.match(r"listening (\d+)", p.stdout.readline()).group(1))
        for cmd in ["plugin spam verdict reject", "plugin spam latency data 0.01",
                    "plugin spam timeout", "plugin spam error", "plugin spam breaker open"] + \
                ["counter %s" % c for c in PLUGIN_COUNTERS] + \
                ["pcounter spam2 rule_hits rule 10 BAYES_99 1"]:
            p.stdin.write(cmd + "\n")
            assert p.stdout.readline().strip() == "ok", cmd
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            text = r.read().decode()
    finally:
        p.stdin.write("quit\n")
        p.stdin.flush()
        p.wait(10)
        for f in (p.stdin, p.stdout, p.stderr):
            f.close()
    return set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


# Plugin-defined counters as the SDK names them (sluice_plugin_<instance>_<name>):
# documented generically in the README, matched by regex in Grafana.
PLUGIN_COUNTERS = ["plugin_spam_rule_hits rule 100 BAYES_99 1",
                   "plugin_virus_names name 100 Eicar 1",
                   "plugin_dkim_results result 10 pass 1"]
PLUGIN_FAMILIES = {"sluice_%s_total" % c.split()[0] for c in PLUGIN_COUNTERS} | \
    {"sluice_rule_hits_total"}


def metric_names(expr):
    """Metric names used as names (not inside a quoted regex matcher)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"\b(sluice_[a-z0-9_]+)", bare))


def test_every_referenced_metric_exists():
    fams = live_families()
    names = {n for n, _ in fams}
    hists = {n for n, t in fams if t == "histogram"}
    series = set(names) | {h + s for h in hists for s in ("_bucket", "_sum", "_count")}

    _, exprs = grafana_exprs()
    with open(os.path.join(PROM, "sluice-rules.yml")) as f:
        rules = f.read()
    exprs += [("rules", e) for e in re.findall(r"expr: (.*)", rules)]
    exprs += [("rules", rules)]   # multi-line expressions
    missing = {(where, n) for where, e in exprs for n in metric_names(e) if n not in series}
    assert not missing


def test_readme_documents_every_metric():
    with open(os.path.join(SRC, "README.md")) as f:
        readme = f.read()
    m = re.search(r"<!-- section: stats \(owner: stats\) -->(.*?)<!-- /section -->", readme, re.S)
    assert m, "stats section missing in README.md"
    section = m.group(1)
    for name, typ in live_families():
        if name in PLUGIN_FAMILIES:
            continue
        row = re.search(r"^\|\s*`%s(\{[^`]*\})?`\s*\|\s*(\w+)\s*\|" % re.escape(name), section, re.M)
        assert row, "README does not document %s" % name
        assert row.group(2) == typ, "%s is a %s, README says %s" % (name, typ, row.group(2))
