# SPDX-License-Identifier: GPL-2.0-or-later
"""spam plugin end to end: sluice with the spam plugin in front of a
recording fake upstream.

GTUBE is refused (554 5.7.1) and never reaches the upstream; a spammy
message reaches it with X-Spam-* headers and a tagged subject; a clean
message passes untouched; a broken rule file (watched change or SIGHUP)
keeps the old rules; a catastrophic regex against a 1 MB adversarial
message is cut off by the time budget and the message is still delivered;
`sluice --check` reports rule-file errors as FILE:LINE; counters reach
/metrics. Loopback only; every wait is bounded.
"""

import os
import signal
import time

import harness
import plugkit

SPAM_SO = os.path.abspath(os.path.join(plugkit.BUILD, "plugins", "spam.so"))
RULES = os.path.join(harness.SRC_DIR, "rules", "spam.rules")


def gtube():
    # Assembled at run time so this file is not itself a GTUBE message.
    return "XJS*C4JDBQADN1.NSBN3*2IDNEN*" + "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


CLEAN = (b"From: Alice Example <alice@example.org>\r\n"
         b"To: Bob <bob@example.net>\r\n"
         b"Subject: Lunch on Thursday\r\n"
         b"Date: Mon, 6 May 2024 10:00:00 +0200\r\n"
         b"Message-ID: <20240506100000.1234@example.org>\r\n"
         b"MIME-Version: 1.0\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\n"
         b"\r\n"
         b"Hi Bob,\r\n\r\nsee you at noon at the usual place.\r\n\r\nAlice\r\n")

SPAMMY = (b"From: \"PayPal Security Team\" <paypal.security.7731@gmail.com>\r\n"
          b"To: undisclosed-recipients:;\r\n"
          b"Subject: URGENT: YOUR ACCOUNT HAS BEEN SUSPENDED!!!\r\n"
          b"Date: Mon, 6 May 2024 10:00:00 +0200\r\n"
          b"MIME-Version: 1.0\r\n"
          b"Content-Type: text/html; charset=utf-8\r\n"
          b"\r\n"
          b"<p>Dear Customer,</p><p>Your account has been suspended. Click here to log in"
          b" and verify your account: <a href=\"http://203.0.113.9/webscr-login.php\">"
          b"www.paypal.com</a></p>\r\n")


def spam_instance(rules=RULES, **keys):
    k = {"rules": rules}
    k.update(keys)
    return ("spam", SPAM_SO, k)


def start(sluice_factory, fake, stats_port=None, **keys):
    stats = {"listen": "127.0.0.1:%d" % stats_port} if stats_port else None
    return plugkit.start(sluice_factory, fake, spam_instance(**keys), stats=stats)


def headers_of(data):
    return plugkit.header_block(data).decode("utf-8", "replace")


def test_gtube_rejected_never_upstream(sluice_factory, fake):
    sl = start(sluice_factory, fake)
    body = CLEAN + gtube().encode() + b"\r\n"
    d = plugkit.send(sl.port, body=body)
    assert d["eod"].code == 554, d
    assert d["eod"].enh == "5.7.1", d
    assert "rejected as spam" in d["eod"].text
    time.sleep(0.3)
    assert [m for m in fake.messages if m.accepted] == []


def test_spammy_message_gets_headers_upstream(sluice_factory, fake):
    sl = start(sluice_factory, fake, reject_threshold="100")
    d = plugkit.send(sl.port, body=SPAMMY)
    assert d["eod"].code == 250, d
    msgs = fake.wait_messages(1)
    h = headers_of(msgs[-1].data)
    assert "X-Spam-Flag: YES" in h, h
    assert "X-Spam-Status: Yes, score=" in h, h
    assert "X-Spam-Score: " in h, h
    # The tests list names what hit, and the subject is tagged.
    for rule in ("PHISH_SUSPENDED", "HTML_LINK_MISMATCH", "URI_IP_ADDRESS", "FROM_BRAND_FREEMAIL"):
        assert rule in h.replace("\r\n ", " ").replace("\r\n\t", " "), (rule, h)
    assert "Subject: [SPAM] URGENT" in h, h


def test_clean_message_passes_untouched(sluice_factory, fake):
    sl = start(sluice_factory, fake)
    d = plugkit.send(sl.port, body=CLEAN)
    assert d["eod"].code == 250, d
    msgs = fake.wait_messages(1)
    data = msgs[-1].data
    assert b"X-Spam" not in data
    # Whatever the proxy prepends (a Received line), the message is ours, byte for byte.
    assert data.endswith(CLEAN), data


def test_spoofed_spam_headers_are_removed(sluice_factory, fake):
    sl = start(sluice_factory, fake, reject_threshold="100")
    body = b"X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-100\r\n" + SPAMMY
    d = plugkit.send(sl.port, body=body)
    assert d["eod"].code == 250, d
    h = headers_of(fake.wait_messages(1)[-1].data)
    assert "X-Spam-Flag: NO" not in h
    assert "score=-100" not in h
    assert h.count("X-Spam-Flag:") == 1


def write_rules(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def test_reload_broken_file_keeps_old_rules(sluice_factory, fake, tmp_path):
    rules = str(tmp_path / "site.rules")
    write_rules(rules, "body ZEBRA /zebra/i\nscore ZEBRA 20\n")
    sl = start(sluice_factory, fake, rules=rules)
    zebra = CLEAN.replace(b"Alice\r\n", b"Alice and the zebra\r\n")
    assert plugkit.send(sl.port, body=zebra)["eod"].code == 554
    # Hyperscan's databases come from a compile child (not in the daemon).
    assert sl.wait_log(r"prefilter=(hyperscan .*compiled by a child process|none \(built without)",
                       timeout=5), sl.output()
    hyperscan = sl.wait_log(r"prefilter=hyperscan", timeout=0.1)

    # A broken file: logged with FILE:LINE, refused; the old rules stay.
    time.sleep(1.1)
    write_rules(rules, "body ZEBRA /zebra/i\nscore ZEBRA 20\nbody BROKEN /(unclosed/\n")
    time.sleep(1.1)
    mark = len(sl.lines)
    assert plugkit.send(sl.port, body=zebra)["eod"].code == 554
    assert sl.wait_log(r"%s:3: bad regex" % rules.replace(".", r"\."), timeout=5, start=mark), sl.output()
    assert sl.wait_log(r"keeping the previous rules", timeout=5, start=mark)

    # SIGHUP with the broken file: the new instance fails, the old one stays.
    mark = len(sl.lines)
    sl.signal(signal.SIGHUP)
    sl.wait_log(r"%s:3: bad regex" % rules.replace(".", r"\."), timeout=5, start=mark)
    time.sleep(0.5)
    assert sl.alive()
    assert plugkit.send(sl.port, body=zebra)["eod"].code == 554

    # A fixed file is picked up by the watch.
    time.sleep(1.1)
    write_rules(rules, "body GIRAFFE /giraffe/i\nscore GIRAFFE 20\n")
    time.sleep(1.1)
    mark = len(sl.lines)
    plugkit.send(sl.port, body=CLEAN)       # the first DATA after a change reloads
    assert sl.wait_log(r"rules reloaded", timeout=5, start=mark)
    if hyperscan:   # compiled by a child forked from a pool thread
        assert not sl.wait_log(r"no prefilter", timeout=0.1, start=mark), sl.output()
    assert plugkit.send(sl.port, body=zebra)["eod"].code == 250
    giraffe = CLEAN.replace(b"Alice\r\n", b"Alice and the giraffe\r\n")
    assert plugkit.send(sl.port, body=giraffe)["eod"].code == 554

    # SIGHUP with the fixed file: a child forked from the loop thread.
    mark = len(sl.lines)
    sl.signal(signal.SIGHUP)
    if hyperscan:
        assert sl.wait_log(r"prefilter=hyperscan .*compiled by a child process", timeout=10,
                           start=mark), sl.output()
    time.sleep(0.5)
    assert plugkit.send(sl.port, body=giraffe)["eod"].code == 554
    assert plugkit.send(sl.port, body=zebra)["eod"].code == 250


def test_catastrophic_regex_on_1mb_is_bounded(sluice_factory, fake, tmp_path):
    rules = str(tmp_path / "evil.rules")
    write_rules(rules, "body EVIL /(\\w+\\s?)+$/\nfull EVIL_FULL /(a|aa)+$/\nbody HELLO /hello/\n")
    port = harness.free_port()
    sl = start(sluice_factory, fake, stats_port=port, rules=rules, max_scan_size="2M")
    line = b"aaaaaaaaaaa!" * 80 + b"\r\n"
    body = CLEAN.replace(b"Hi Bob", b"hello Bob") + line * (1024 * 1024 // len(line) + 1) + b"aaaa\r\n"
    t0 = time.monotonic()
    d = plugkit.send(sl.port, body=body, timeout=30)
    took = time.monotonic() - t0
    assert d["eod"].code == 250, d
    assert took < 10, took
    msgs = fake.wait_messages(1)
    assert len(msgs[-1].data) > 1024 * 1024
    m = plugkit.metrics(port)
    assert plugkit.metric_value(m, "sluice_plugin_spam_rule_limits_total", {"rule": "EVIL"}) is not None or \
        "EVIL" in m, m


def test_metrics_count_rule_hits_and_actions(sluice_factory, fake):
    port = harness.free_port()
    sl = start(sluice_factory, fake, stats_port=port, reject_threshold="100")
    assert plugkit.send(sl.port, body=SPAMMY)["eod"].code == 250
    assert plugkit.send(sl.port, body=CLEAN)["eod"].code == 250
    m = plugkit.metrics(port)
    assert "PHISH_SUSPENDED" in m, m
    assert "tagged" in m and "ham" in m, m


def test_check_reports_rule_file_errors(tmp_path):
    rules = str(tmp_path / "bad.rules")
    write_rules(rules, "body OK /ok/\nbody BAD /[/\nmeta M OK && NOPE\nscore OK lots\n")
    conf = str(tmp_path / "sluice.conf")
    sections = {"server": {"listen": "127.0.0.1:%d" % harness.free_port()},
                "upstream": {"servers": "127.0.0.1:%d" % harness.free_port()},
                "stats": {"listen": "no"}}
    sections.update(plugkit.chain_sections(spam_instance(rules=rules, tag_threshold="lots")))
    with open(conf, "w") as f:
        f.write(harness.render_config(sections))
    r = harness.run_sluice(["--check", "-c", conf])
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "%s:2: bad regex /[/" % rules in out, out
    assert "%s:3: unknown rule NOPE in meta M" % rules in out, out
    assert "%s:4: bad score 'lots'" % rules in out, out
    assert "rule file %s has 3 errors" % rules in out, out
    assert "tag_threshold" in out, out


def test_check_accepts_shipped_rules(tmp_path):
    conf = str(tmp_path / "sluice.conf")
    sections = {"server": {"listen": "127.0.0.1:%d" % harness.free_port()},
                "upstream": {"servers": "127.0.0.1:%d" % harness.free_port()},
                "stats": {"listen": "no"}}
    sections.update(plugkit.chain_sections(spam_instance()))
    with open(conf, "w") as f:
        f.write(harness.render_config(sections))
    r = harness.run_sluice(["--check", "-c", conf])
    assert r.returncode == 0, r.stdout + r.stderr


# ---- Bayes -------------------------------------------------------------------------

LEARN = os.path.abspath(os.path.join(plugkit.BUILD, "bin", "sluice-spam-learn"))
SPAM_WORDS = ["casino", "jackpot", "lottery", "winner", "bitcoin", "pharmacy", "discount",
              "million", "inheritance", "beneficiary"]
HAM_WORDS = ["meeting", "agenda", "patch", "review", "kernel", "minutes", "lunch", "report",
             "budget", "schedule"]


def corpus_msg(spam, i):
    w = SPAM_WORDS if spam else HAM_WORDS
    return ("From: %s%d@%s\r\nTo: bob@example.net\r\nSubject: %s %s\r\n"
            "Message-ID: <%s%d@corpus.test>\r\n\r\n%s %s %s and some common words %d\r\n" % (
                "promo" if spam else "colleague", i, "offers.biz" if spam else "example.org",
                w[i % 10], w[(i + 3) % 10], "s" if spam else "h", i, w[(i + 1) % 10],
                w[(i + 2) % 10], w[(i + 5) % 10], i)).encode()


def learn(db, what, msgs, tmp):
    d = tmp / ("learn-%s-%d" % (what, len(list(tmp.iterdir()))))
    d.mkdir()
    for i, m in enumerate(msgs):
        (d / ("%d.eml" % i)).write_bytes(m)
    r = harness.subprocess.run([LEARN, "--db", db, "--" + what, str(d)], capture_output=True,
                               text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def stats(db):
    r = harness.subprocess.run([LEARN, "--db", db, "--stats"], capture_output=True, text=True,
                               timeout=30)
    assert r.returncode == 0, r.stderr
    return dict((k, int(v)) for k, v in (ln.split() for ln in r.stdout.splitlines()))


def test_bayes_learns_and_scores(sluice_factory, fake, tmp_path):
    """Trained with sluice-spam-learn on 30 + 30 messages, the plugin gives
    unseen spam BAYES_999 (with X-Spam headers) and unseen ham BAYES_00;
    learning more while it runs is picked up without a reload."""
    db = str(tmp_path / "bayes.db")
    out = learn(db, "spam", [corpus_msg(True, i) for i in range(30)], tmp_path)
    assert "30 learned" in out, out
    learn(db, "ham", [corpus_msg(False, i) for i in range(30)], tmp_path)
    assert stats(db)["spam"] == 30 and stats(db)["ham"] == 30
    # Learning the same messages again changes nothing.
    assert "30 already learned" in learn(db, "ham", [corpus_msg(False, i) for i in range(30)],
                                         tmp_path)
    sl = start(sluice_factory, fake, bayes_db=db, bayes_min_learned="20")
    d = plugkit.send(sl.port, body=corpus_msg(True, 101))
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0].data
    assert b"BAYES_999" in m, m
    d = plugkit.send(sl.port, body=corpus_msg(False, 102))
    assert d["eod"].code == 250
    m = fake.wait_messages(2)[1].data
    assert b"X-Spam" not in m
    assert sl.wait_log(r"action=ham tests=.*BAYES_00", 5), sl.output()
    # The store grows while sluice runs: the next message sees the new counts.
    learn(db, "spam", [corpus_msg(True, i) for i in range(200, 210)], tmp_path)
    time.sleep(1.2)
    plugkit.send(sl.port, body=corpus_msg(True, 103))
    assert sl.wait_log(r"Bayes store .* reloaded: 40 spam, 30 ham", 5), sl.output()


def test_bayes_band_score_from_rule_file(sluice_factory, fake, tmp_path):
    """`score BAYES_999 0.5` in a rule file sets that band's score: unseen
    spam still gets BAYES_999, but scores 0.5 and passes untagged; --check
    names an unknown band at its FILE:LINE."""
    db = str(tmp_path / "bayes.db")
    learn(db, "spam", [corpus_msg(True, i) for i in range(30)], tmp_path)
    learn(db, "ham", [corpus_msg(False, i) for i in range(30)], tmp_path)
    rules = str(tmp_path / "site.rules")
    write_rules(rules, "body NEVER /qqqzzzqqq/\nscore BAYES_999 0.5\n")
    sl = start(sluice_factory, fake, rules=rules, bayes_db=db, bayes_min_learned="20")
    assert plugkit.send(sl.port, body=corpus_msg(True, 101))["eod"].code == 250
    m = fake.wait_messages(1)[0].data
    assert b"X-Spam" not in m, m
    assert sl.wait_log(r"spam score=0\.50 action=ham tests=BAYES_999", 5), sl.output()

    write_rules(rules, "body NEVER /qqqzzzqqq/\n\nscore BAYES_96 3.0\n")
    r = harness.run_sluice(["--check", "-c", str(write_check_config(tmp_path, db, rules))])
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "%s:3: score or describe for unknown rule or Bayes band BAYES_96" % rules in out, out


def test_bayes_below_min_learned_says_nothing(sluice_factory, fake, tmp_path):
    db = str(tmp_path / "bayes.db")
    learn(db, "spam", [corpus_msg(True, i) for i in range(5)], tmp_path)
    sl = start(sluice_factory, fake, bayes_db=db)      # default minimum: 200 of each
    assert plugkit.send(sl.port, body=corpus_msg(True, 50))["eod"].code == 250
    assert b"BAYES" not in fake.wait_messages(1)[0].data
    time.sleep(0.2)
    assert not any("BAYES" in ln for ln in sl.lines)


def test_bayes_autolearn(sluice_factory, fake, tmp_path):
    """Off by default; with bayes_autolearn_spam = 10, a message another
    plugin scored 20 is learned as spam, one scored 0 is not learned."""
    db = str(tmp_path / "bayes.db")
    sl = plugkit.start(sluice_factory, fake,
                       ("pre", "testplug", {"symbol": "PRE_SCORE 20"}),
                       spam_instance(bayes_db=db, bayes_autolearn_spam="10",
                                     reject_threshold="off"))
    assert plugkit.send(sl.port, body=corpus_msg(True, 1))["eod"].code == 250
    assert stats(db)["spam"] == 1
    sl2 = start(sluice_factory, fake, bayes_db=db, bayes_autolearn_spam="10",
                reject_threshold="off")
    assert plugkit.send(sl2.port, body=corpus_msg(True, 2))["eod"].code == 250
    assert stats(db)["spam"] == 1


def test_bayes_bad_store_is_a_config_error(sluice_factory, fake, tmp_path):
    bad = tmp_path / "bayes.db"
    bad.write_text("this is not a database\n" * 100)
    r = harness.run_sluice(["--check", "-c", str(write_check_config(tmp_path, bad))])
    assert r.returncode == 1
    assert "bayes_db" in r.stderr and str(bad) in r.stderr, r.stderr


def write_check_config(tmp_path, db, rules=RULES):
    p = tmp_path / "check.conf"
    p.write_text("[server]\nlisten = 127.0.0.1:1\nspool_dir = %s\n[upstream]\nservers = "
                 "127.0.0.1:2\n[stats]\nlisten = no\n[chain]\nplugins = spam\n[plugin spam]\n"
                 "path = %s\nrules = %s\nbayes_db = %s\n" % (tmp_path, SPAM_SO, rules, db))
    return p
