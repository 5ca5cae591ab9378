# SPDX-License-Identifier: GPL-2.0-or-later
"""The side-by-side evaluation behind eval.sh (see its header): sluice's
spam plugin, SpamAssassin and rspamd, k-fold, same folds, one run."""
import argparse
import bisect
import collections
import concurrent.futures
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
pids_file = None


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ---- processes ---------------------------------------------------------------


def start(cmd, logpath, **kw):
    """Start a daemon in the foreground; its pid goes to the pid list that
    eval.sh kills on exit."""
    p = subprocess.Popen(cmd, stdout=open(logpath, "ab"), stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, **kw)
    with open(pids_file, "a") as f:
        f.write("%d\n" % p.pid)
    return p


def stop(p, timeout=30):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open("/proc/%s/stat" % d).read()
            except OSError:
                continue
            if int(st[st.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(d))
    return out


def cpu(pids):
    """User + system CPU seconds of these processes, with their reaped
    children's."""
    t = 0
    for pid in pids:
        try:
            st = open("/proc/%d/stat" % pid).read()
        except OSError:
            continue
        f = st[st.rindex(")") + 2:].split()
        t += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return t / TICK


def wait_port(port, proc, what, limit=300):
    end = time.time() + limit
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit("eval: %s exited (status %s); see its log" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    sys.exit("eval: %s did not listen on %d within %d s" % (what, port, limit))


# ---- corpus ------------------------------------------------------------------


def corpus(ham_d, spam_d, work, k, n):
    """Copies of N messages per class in work/F/{ham,spam}, a leading mbox
    "From " line removed; the same seed as eval-bayes.sh. EVAL_OFFSET and
    EVAL_NHAM as there: a development set disjoint from the evaluation's."""
    off = int(os.environ.get("EVAL_OFFSET", "0"))
    def files(d):
        out = []
        for root, _, names in os.walk(d, followlinks=True):
            out += [os.path.join(root, x) for x in names if not x.endswith(".json")]
        return sorted(out)
    for cls, d in (("ham", ham_d), ("spam", spam_d)):
        lst = files(d)
        random.Random(42).shuffle(lst)
        want = int(os.environ.get("EVAL_NHAM", n)) if cls == "ham" else n
        if len(lst) < off + want:
            sys.exit("eval: only %d %s messages in %s" % (len(lst), cls, d))
        for i, p in enumerate(lst[off:off + want]):
            dst = os.path.join(work, str(i % k), cls)
            os.makedirs(dst, exist_ok=True)
            data = open(p, "rb").read()
            if data.startswith(b"From "):
                data = data[data.find(b"\n") + 1:] if b"\n" in data else b""
            with open(os.path.join(dst, "%05d" % i), "wb") as f:
                f.write(data)


def fold_files(work, f, cls):
    d = os.path.join(work, str(f), cls)
    return [os.path.join(d, x) for x in sorted(os.listdir(d))]


# ---- sluice --------------------------------------------------------------------


def sluice_fold(a, f, res):
    db = os.path.join(a.work, "sluice-%d.db" % f)
    learn = os.path.join(a.build, "bin", "sluice-spam-learn")
    for cls in ("spam", "ham"):
        dirs = [os.path.join(a.work, str(g), cls) for g in range(a.k) if g != f]
        subprocess.run([learn, "--db", db, "--" + cls] + dirs, check=True,
                       stdout=subprocess.DEVNULL, timeout=3600)
    score = os.path.join(a.build, "plugins", "spam", "spam_score")
    rules = os.path.join(a.src, "rules", "spam.rules")
    for cls in ("spam", "ham"):
        for bayes in (True, False):
            cmd = [score, "--rules", rules] + (["--bayes-db", db] if bayes else [])
            r = subprocess.run(cmd + [os.path.join(a.work, str(f), cls)], check=True,
                               capture_output=True, text=True, timeout=3600)
            t = float(r.stderr.strip().split()[-2])
            key = "sluice" if bayes else "sluice-rules"
            res[key]["cpu"] += t
            for line in r.stdout.splitlines():
                total, _rules, _p, syms, _path = line.split("\t")
                res[key]["rows"].append((cls, float(total), syms.split(",")))


# ---- SpamAssassin ----------------------------------------------------------------


def sa_site(a, name, bayes_dir):
    site = os.path.join(a.work, "sa-" + name)
    os.makedirs(site)
    for x in os.listdir("/etc/spamassassin"):
        if x.endswith(".pre") or x.endswith(".cf"):
            shutil.copy(os.path.join("/etc/spamassassin", x), site)
    with open(os.path.join(site, "zz_eval.cf"), "w") as fp:
        fp.write("skip_rbl_checks 1\nuse_razor2 0\nuse_pyzor 0\nuse_dcc 0\n"
                 "dns_available no\nbayes_auto_learn 0\nbayes_auto_expire 0\n")
        if bayes_dir:
            fp.write("use_bayes 1\nbayes_path %s/bayes\nbayes_file_mode 0777\n" % bayes_dir)
        else:
            fp.write("use_bayes 0\n")
    os.chmod(site, 0o755)
    return site


def spamd_check(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=300)
    s.sendall(b"SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\nUser: nobody\r\n\r\n" % len(data)
              + data)
    s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    score = None
    for line in head.split(b"\r\n"):
        if line.startswith(b"Spam:"):
            score = float(line.split(b";")[1].split(b"/")[0])
    if score is None:
        raise RuntimeError("spamd: %r" % out[:200])
    syms = [x for x in body.decode("ascii", "replace").strip().split(",") if x]
    return score, syms


def sa_score(a, site, files_by_cls, key, res, tag):
    port = a.port + 1
    p = start(["spamd", "-L", "-x", "--siteconfigpath", site, "-i", "127.0.0.1:%d" % port,
               "-A", "127.0.0.1", "-m", "1", "--min-children=1", "--min-spare=1",
               "--max-spare=1", "--max-conn-per-child=1000000", "-u", "nobody",
               "-s", "stderr", "--timeout-child=300"],
              os.path.join(a.work, "spamd-%s.log" % tag))
    try:
        wait_port(port, p, "spamd")
        time.sleep(2)  # the child is forked after the listen
        # One message first, so that the child has loaded what it loads
        # lazily (Bayes store, compiled rules) outside the measurement.
        spamd_check(port, open(files_by_cls[0][1][0], "rb").read())
        pids = [p.pid] + children(p.pid)
        c0 = cpu(pids)
        for cls, files in files_by_cls:
            for path in files:
                score, syms = spamd_check(port, open(path, "rb").read())
                res[key]["rows"].append((cls, score, syms))
        pids = [p.pid] + children(p.pid)
        res[key]["cpu"] += cpu(pids) - c0
    finally:
        stop(p)


def sa_fold(a, f, res):
    bayes = os.path.join(a.work, "sa-bayes-%d" % f)
    os.makedirs(bayes)
    os.chmod(bayes, 0o777)
    site = sa_site(a, "fold%d" % f, bayes)
    for cls in ("spam", "ham"):
        dirs = [os.path.join(a.work, str(g), cls) for g in range(a.k) if g != f]
        subprocess.run(["sa-learn", "--siteconfigpath", site, "--" + cls] + dirs, check=True,
                       stdout=subprocess.DEVNULL, timeout=7200)
    for x in os.listdir(bayes):
        os.chmod(os.path.join(bayes, x), 0o666)
    sa_score(a, site, [(c, fold_files(a.work, f, c)) for c in ("spam", "ham")], "spamassassin",
             res, "fold%d" % f)
    shutil.rmtree(bayes)


def sa_rules_only(a, res):
    site = sa_site(a, "rules", None)
    files = [(c, [p for f in range(a.k) for p in fold_files(a.work, f, c)])
             for c in ("spam", "ham")]
    sa_score(a, site, files, "spamassassin-rules", res, "rules")


# ---- rspamd --------------------------------------------------------------------------

RSPAMD_OFF = ("rbl surbl emails dkim dmarc spf arc asn fuzzy_check neural ratelimit greylist "
              "history_redis replies reputation url_redirector mx_check dcc external_services "
              "antivirus clickhouse elastic metadata_exporter metric_exporter rspamd_update p0f "
              "dkim_signing bimi aws_s3 spamtrap external_relay").split()


def rspamd_conf(a):
    conf = os.path.join(a.work, "rspamd")
    for d in ("local.d", "override.d", "db", "run", "log"):
        os.makedirs(os.path.join(conf, d), exist_ok=True)
    files = {
        "local.d/options.inc":
            # The resolver asks a closed loopback port: no query leaves.
            'dns {\n  nameserver = ["127.0.0.1:%d"];\n  timeout = 0.1s;\n  retransmits = 0;\n}\n'
            % (a.port + 5),
        "override.d/worker-normal.inc":
            'bind_socket = "127.0.0.1:%d";\ncount = 1;\ntask_timeout = 60s;\n' % (a.port + 2),
        "override.d/worker-controller.inc":
            'bind_socket = "127.0.0.1:%d";\ncount = 1;\nsecure_ip = "127.0.0.1";\n'
            % (a.port + 3),
        "override.d/worker-proxy.inc": 'bind_socket = "127.0.0.1:%d";\ncount = -1;\n' % a.port,
        "local.d/redis.conf": 'servers = "127.0.0.1:%d";\n' % (a.port + 4),
        "local.d/classifier-bayes.conf":
            'backend = "redis";\nservers = "127.0.0.1:%d";\nautolearn = false;\n' % (a.port + 4),
        "local.d/logging.inc": 'level = "notice";\n',
        # hfilter's HELO, hostname and MAIL FROM checks resolve names or need
        # the SMTP envelope, which this evaluation does not have.
        "local.d/hfilter.conf":
            "helo_enabled = false;\nhostname_enabled = false;\nfrom_enabled = false;\n",
    }
    for m in RSPAMD_OFF:
        files["local.d/%s.conf" % m] = "enabled = false;\n"
    for name, text in files.items():
        with open(os.path.join(conf, name), "w") as fp:
            fp.write(text)
    return conf


def http_post(port, path, data, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", path, body=data, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def rspamd_fold(a, f, res, conf):
    tag = "fold%d" % f
    rdir = os.path.join(a.work, "redis-%d" % f)
    os.makedirs(rdir)
    redis = start(["redis-server", "--port", str(a.port + 4), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", rdir],
                  os.path.join(a.work, "redis-%s.log" % tag))
    rsp = None
    try:
        wait_port(a.port + 4, redis, "redis-server")
        rsp = start(["rspamd", "-f", "-i", "-u", "root", "-g", "root",
                     "-c", "/etc/rspamd/rspamd.conf", "--var=LOCAL_CONFDIR=" + conf,
                     "--var=DBDIR=" + conf + "/db", "--var=RUNDIR=" + conf + "/run",
                     "--var=LOGDIR=" + conf + "/log"],
                    os.path.join(a.work, "rspamd-%s.log" % tag))
        wait_port(a.port + 2, rsp, "rspamd")
        wait_port(a.port + 3, rsp, "rspamd controller")
        # Wait for the Hyperscan helper to finish compiling (cached in db/
        # after the first fold): its CPU time stops growing.
        last, end = -1.0, time.time() + 600
        while time.time() < end:
            helpers = [p for p in children(rsp.pid)
                       if "hs_helper" in open("/proc/%d/cmdline" % p, "rb").read().decode(
                           "ascii", "replace")]
            now = cpu(helpers)
            if now == last:
                break
            last = now
            time.sleep(3)
        def learn(job):
            cls, path = job
            st, body = http_post(a.port + 3, "/learn" + cls, open(path, "rb").read(),
                                 {"Learn-Type": "bulk"})
            return st
        jobs = [(cls, p) for cls in ("spam", "ham") for g in range(a.k) if g != f
                for p in fold_files(a.work, g, cls)]
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            codes = collections.Counter(ex.map(learn, jobs))
        # 204: not learned (too few tokens), 208: learned already (the same
        # message twice in the corpus); anything else but 200 is an error.
        if set(codes) - {200, 204, 208}:
            sys.exit("eval: rspamd learning answered %s" % dict(codes))
        res["rspamd"]["not_learned"] += codes[204] + codes[208]
        time.sleep(2)
        normal = [p for p in children(rsp.pid)
                  if "normal" in open("/proc/%d/cmdline" % p, "rb").read().decode(
                      "ascii", "replace")]
        files = [(c, fold_files(a.work, f, c)) for c in ("spam", "ham")]
        http_post(a.port + 2, "/checkv2", open(files[0][1][0], "rb").read())  # warm up
        c0 = cpu(normal + [redis.pid])
        for cls, lst in files:
            for path in lst:
                st, body = http_post(a.port + 2, "/checkv2", open(path, "rb").read())
                if st != 200:
                    raise RuntimeError("rspamd /checkv2 %s: %d %s" % (path, st, body[:200]))
                j = json.loads(body)
                syms = j.get("symbols", {})
                bayes = sum(s.get("score", 0.0) for n, s in syms.items()
                            if n in ("BAYES_SPAM", "BAYES_HAM"))
                # DATE_IN_PAST compares the Date with the current time: on an
                # old corpus it hits every message, so its score is taken out.
                total = j["score"] - syms.get("DATE_IN_PAST", {}).get("score", 0.0)
                names = sorted(x for x in syms if x != "DATE_IN_PAST")
                res["rspamd"]["rows"].append((cls, total, names))
                res["rspamd-rules"]["rows"].append(
                    (cls, total - bayes,
                     [x for x in names if x not in ("BAYES_SPAM", "BAYES_HAM")]))
                if any(n in syms for n in ("BAYES_SPAM", "BAYES_HAM")):
                    res["rspamd"]["bayes_said"] += 1
        res["rspamd"]["cpu"] += cpu(normal + [redis.pid]) - c0
    finally:
        if rsp:
            stop(rsp)
        stop(redis)
        shutil.rmtree(rdir, ignore_errors=True)


# ---- figures --------------------------------------------------------------------------


def auc(rows):
    s = [x for c, x, _ in rows if c == "spam"]
    h = sorted(x for c, x, _ in rows if c == "ham")
    tot = 0.0
    for x in s:
        lo, hi = bisect.bisect_left(h, x), bisect.bisect_right(h, x)
        tot += lo + 0.5 * (hi - lo)
    return tot / (len(s) * len(h))


def report(res, a, wall):
    tools = [
        ("sluice", "rules + Bayes", "sluice", [("header", 4.0), ("tag", 6.0), ("reject", 15.0)]),
        ("sluice", "rules only", "sluice-rules",
         [("header", 4.0), ("tag", 6.0), ("reject", 15.0)]),
        ("SpamAssassin", "rules + Bayes", "spamassassin", [("required", 5.0)]),
        ("SpamAssassin", "rules only", "spamassassin-rules", [("required", 5.0)]),
        ("rspamd", "rules + Bayes", "rspamd", [("add_header", 6.0), ("reject", 15.0)]),
        ("rspamd", "rules only", "rspamd-rules", [("add_header", 6.0), ("reject", 15.0)]),
    ]
    first = next(r["rows"] for r in res.values() if r["rows"])
    nspam = sum(1 for c, _, _ in first if c == "spam")
    nham = sum(1 for c, _, _ in first if c == "ham")
    print("%d spam, %d ham, %d folds (Bayes trained on %d, scored on the held-out fold), "
          "summed over the folds; %.0f s in all" % (nspam, nham, a.k, a.k - 1, wall))
    print()
    print("| tool | setup | threshold | spam recall | ham false positives | AUC | msgs/s per core |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for tool, setup, key, ths in tools:
        rows = res[key]["rows"]
        if not rows:
            continue
        s = [x for c, x, _ in rows if c == "spam"]
        h = [x for c, x, _ in rows if c == "ham"]
        cpu_s = res[key]["cpu"]
        rate = "%.0f" % (len(rows) / cpu_s) if cpu_s > 0 else "n/a"
        for name, t in ths:
            tp = sum(x >= t for x in s)
            fp = sum(x >= t for x in h)
            summary[(key, t)] = (tp / len(s), fp / len(h), len(rows) / cpu_s if cpu_s else None)
            print("| %s | %s | %s %g | %.1f %% (%d/%d) | %.2f %% (%d/%d) | %.4f | %s |" % (
                tool, setup, name, t, 100.0 * tp / len(s), tp, len(s), 100.0 * fp / len(h), fp,
                len(h), auc(rows), rate))
    print()
    if res["rspamd"]["rows"]:
        print("rspamd: its Bayes had a say (BAYES_SPAM or BAYES_HAM) on %d of %d messages; "
              "%d training messages were not learned (too few tokens, or learned already); DATE_IN_PAST taken "
              "out; rules only = the same pass less the Bayes symbols (its rate not measured)."
              % (res["rspamd"]["bayes_said"], len(res["rspamd"]["rows"]),
                 res["rspamd"]["not_learned"]))
        print()
    sl, sa = summary.get(("sluice", 6.0)), summary.get(("spamassassin", 5.0))
    if sl and sa:
        print("Target (sluice at tag 6 against SpamAssassin at 5): false positives %.2f %% vs "
              "%.2f %% (%s), recall %.1f %% vs %.1f %% (%s), throughput %.0fx (%s)" % (
                  100 * sl[1], 100 * sa[1], "met" if sl[1] <= sa[1] else "NOT met",
                  100 * sl[0], 100 * sa[0], "met" if sl[0] >= sa[0] else "NOT met",
                  sl[2] / sa[2], "met" if sl[2] >= 10 * sa[2] else "NOT met"))
        print()
    for tool, _setup, key, ths in tools:
        if key not in ("sluice", "spamassassin", "rspamd", "sluice-rules") or not res[key]["rows"]:
            continue
        t = ths[1][1] if key.startswith("sluice") else ths[0][1]
        rows = res[key]["rows"]
        fps = [syms for c, x, syms in rows if c == "ham" and x >= t]
        fns = [syms for c, x, syms in rows if c == "spam" and x < t]
        for what, lst in (("false positives", fps), ("missed spam", fns)):
            cnt = collections.Counter(s for syms in lst for s in syms if s and s != "none")
            top = ", ".join("%s %d" % kv for kv in cnt.most_common(12))
            print("%s (%s) at %g, %d %s: %s" % (tool, key, t, len(lst), what, top or "-"))
    sys.stdout.flush()


def main():
    global pids_file
    ap = argparse.ArgumentParser()
    for o in ("build", "src", "work", "ham", "spam"):
        ap.add_argument("--" + o, required=True)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--port", type=int, default=17830)
    ap.add_argument("--only", default="sluice,spamassassin,rspamd")
    a = ap.parse_args()
    pids_file = os.path.join(a.work, "pids")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    only = a.only.split(",")
    t0 = time.time()
    corpus(a.ham, a.spam, a.work, a.k, a.n)
    keys = ("sluice", "sluice-rules", "spamassassin", "spamassassin-rules", "rspamd",
            "rspamd-rules")
    res = {x: {"rows": [], "cpu": 0.0, "bayes_said": 0, "not_learned": 0} for x in keys}
    conf = rspamd_conf(a) if "rspamd" in only else None
    for f in range(a.k):
        if "sluice" in only:
            log("fold %d/%d: sluice" % (f + 1, a.k))
            sluice_fold(a, f, res)
        if "spamassassin" in only:
            log("fold %d/%d: SpamAssassin" % (f + 1, a.k))
            sa_fold(a, f, res)
        if "rspamd" in only:
            log("fold %d/%d: rspamd" % (f + 1, a.k))
            rspamd_fold(a, f, res, conf)
    if "spamassassin" in only:
        log("SpamAssassin, rules only (all folds)")
        sa_rules_only(a, res)
    report(res, a, time.time() - t0)
    json.dump(res, open(os.path.join(a.work, "results.json"), "w"))
    if os.environ.get("EVAL_KEEP"):
        shutil.copy(os.path.join(a.work, "results.json"), os.environ["EVAL_KEEP"])


if __name__ == "__main__":
    main()
