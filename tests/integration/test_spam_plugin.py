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
    plugkit.send(sl.port, body=CLEAN)       # the first DATA after a change reloads
    assert sl.wait_log(r"rules reloaded", timeout=5)
    assert plugkit.send(sl.port, body=zebra)["eod"].code == 250
    giraffe = CLEAN.replace(b"Alice\r\n", b"Alice and the giraffe\r\n")
    assert plugkit.send(sl.port, body=giraffe)["eod"].code == 554


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
