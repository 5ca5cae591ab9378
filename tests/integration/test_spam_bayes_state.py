# SPDX-License-Identifier: GPL-2.0-or-later
"""The spam plugin's Bayes store in the daemon's shared state (bayes_store
= state): sluice-spam-learn --redis trains the store two sluice instances
share, and a message sent to the second one is scored from it (BAYES_999
in the headers the MTA receives); with Redis killed, mail still flows, the
Bayes part skipped (BAYES_UNAVAILABLE, logged) and never a tempfail; with
the in-process store, autolearn fills it and later messages are scored."""
import subprocess
import time

import pytest

import plugkit
from redisfix import REDIS, Redis
from test_spam_plugin import LEARN, corpus_msg
from test_spam_plugin import spam_instance as _spam_instance


# The tests are about Bayes, not the rules: a small rule file. The full
# rules/spam.rules takes ~11 s to compile under ASan on a loaded machine,
# past the harness's start wait.
SMALL_RULES = (
    "header   __HAS_DATE        exists:Date\n"
    "meta     MISSING_DATE      !__HAS_DATE\n"
    "score    MISSING_DATE      1.5\n"
    "describe MISSING_DATE      No Date header\n"
    "body     CASINO_WORDS      /\\b(?:casino|jackpot|lottery)\\b/i\n"
    "score    CASINO_WORDS      0.5\n"
    "describe CASINO_WORDS      Gambling words\n")


_RULES = []


@pytest.fixture(scope="module", autouse=True)
def small_rules(tmp_path_factory):
    p = tmp_path_factory.mktemp("rules") / "small.rules"
    p.write_text(SMALL_RULES)
    _RULES[:] = [str(p)]


def spam_instance(**keys):
    return _spam_instance(rules=_RULES[0], **keys)


@pytest.fixture
def redis(tmp_path):
    if not REDIS:
        pytest.skip("redis-server not installed (Debian package redis-server)")
    r = Redis(tmp_path / "redis").start()
    yield r
    r.stop()


def learn_redis(redis, what, msgs, tmp, *extra):
    d = tmp / ("learn-%s-%d" % (what, len(list(tmp.iterdir()))))
    d.mkdir()
    for i, m in enumerate(msgs):
        (d / ("%d.eml" % i)).write_bytes(m)
    r = subprocess.run([LEARN, "--redis", "127.0.0.1:%d" % redis.port, *extra, "--" + what,
                        str(d)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def redis_stats(redis):
    r = subprocess.run([LEARN, "--redis", "127.0.0.1:%d" % redis.port, "--stats"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return dict((k, int(v)) for k, v in (ln.split() for ln in r.stdout.splitlines()))


def _start(sluice_factory, fake, state, *before, stats=None, **keys):
    sections = plugkit.chain_sections(*before, spam_instance(bayes_store="state", **keys))
    sections["state"] = state
    sl = sluice_factory(fake.port, extra_sections=sections,
                        stats={"listen": "127.0.0.1:%d" % stats} if stats else None)
    if state.get("backend") == "redis":
        assert sl.wait_log(r"state: redis .* connected", 10), sl.output()
    return sl


def test_learn_into_redis_and_score_on_another_instance(sluice_factory, fake, tmp_path, redis):
    out = learn_redis(redis, "spam", [corpus_msg(True, i) for i in range(30)], tmp_path)
    assert "30 learned" in out, out
    learn_redis(redis, "ham", [corpus_msg(False, i) for i in range(30)], tmp_path)
    # learned once: again is a no-op; as the other class it moves
    out = learn_redis(redis, "ham", [corpus_msg(False, i) for i in range(30)], tmp_path)
    assert "30 already learned" in out, out
    st = redis_stats(redis)
    assert st["spam"] == 30 and st["ham"] == 30 and st["tokens"] > 50, st
    # the daemon's key layout: prefix, instance, bayes:...
    assert redis.cli("GET", "sluice:spam:bayes:nspam") == "30"
    state = {"backend": "redis", "redis": "127.0.0.1:%d" % redis.port}
    a = _start(sluice_factory, fake, state, bayes_min_learned="20")
    b = _start(sluice_factory, fake, state, bayes_min_learned="20")
    d = plugkit.send(b.port, body=corpus_msg(True, 101))
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0].data
    assert b"BAYES_999" in plugkit.header_block(m), m
    d = plugkit.send(a.port, body=corpus_msg(False, 102))
    assert d["eod"].code == 250
    assert a.wait_log(r"action=ham tests=.*BAYES_00", 5), a.output()
    # forgetting takes the counts back
    learn_redis(redis, "forget", [corpus_msg(True, i) for i in range(10)], tmp_path)
    assert redis_stats(redis)["spam"] == 20


def test_redis_down_skips_bayes_never_tempfails(sluice_factory, fake, tmp_path, redis):
    learn_redis(redis, "spam", [corpus_msg(True, i) for i in range(5)], tmp_path)
    state = {"backend": "redis", "redis": "127.0.0.1:%d" % redis.port, "redis_timeout": "300ms"}
    sl = _start(sluice_factory, fake, state, bayes_min_learned="1")
    redis.stop()
    t0 = time.monotonic()
    d = plugkit.send(sl.port, body=corpus_msg(True, 7))
    assert d["eod"].code == 250, d
    assert time.monotonic() - t0 < 3.0
    fake.wait_messages(1)
    assert sl.wait_log(r"spam score=.* tests=.*BAYES_UNAVAILABLE", 5), sl.output()
    assert sl.alive()


def test_memory_store_autolearn(sluice_factory, fake):
    """[state] backend = memory: the store is the instance's own, filled
    only by autolearn. Clean messages are learned as ham, each once (the
    same message again is not counted), and every lookup is answered (too
    few learned to score: no spam learned), never unavailable."""
    stats = plugkit.harness.free_port()
    sections = plugkit.chain_sections(spam_instance(
        bayes_store="state", bayes_autolearn_ham="2", bayes_min_learned="1"))
    sl = sluice_factory(fake.port, extra_sections=sections,
                        stats={"listen": "127.0.0.1:%d" % stats})
    for i in (2, 3, 2):
        assert plugkit.send(sl.port, body=corpus_msg(False, i))["eod"].code == 250
    fake.wait_messages(3)
    deadline = time.monotonic() + 5
    while True:
        m = plugkit.metrics(stats)
        learned = plugkit.metric_value(m, "sluice_plugin_spam_autolearned_total", {"class": "ham"})
        if learned == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert learned == 2, m
    assert plugkit.metric_value(m, "sluice_plugin_spam_bayes_lookups_total",
                                {"result": "too_few_learned"}) == 3, m
    assert not any("BAYES_UNAVAILABLE" in ln for ln in sl.lines)


def _wait_metric(port, name, labels, want, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        m = plugkit.metrics(port)
        if plugkit.metric_value(m, name, labels) == want or time.monotonic() > deadline:
            return m
        time.sleep(0.1)


# spam half 2^21 - 1: one more spam learn would take the counter past 2^53
CAPPED = (2 ** 21 - 1) * 2 ** 32 + 5


def test_token_at_its_cap_saturates_and_learning_goes_on(sluice_factory, fake, tmp_path, redis):
    """A token's spam count reaches the most its half of the counter holds
    (the state keeps counters within +-2^53): learning a spam message with
    that token still learns the message, the token stays where it is
    (saturated) and its ham half is untouched. Autolearn failed the whole
    message with -ERANGE each time (WARN, never learned again), and
    sluice-spam-learn carried past 2^53 in a double (ham half wrong)."""
    learn_redis(redis, "spam", [corpus_msg(True, i) for i in range(5)], tmp_path)
    keys = redis.cli("--scan", "--pattern", "sluice:spam:bayes:t:*").split()
    assert len(keys) > 20, keys
    for k in keys:
        redis.cli("SET", k, str(CAPPED))
    out = learn_redis(redis, "spam", [corpus_msg(True, 60)], tmp_path)
    assert "1 learned" in out, out
    assert all(redis.cli("GET", k) == str(CAPPED) for k in keys)
    stats = plugkit.harness.free_port()
    state = {"backend": "redis", "redis": "127.0.0.1:%d" % redis.port}
    sl = _start(sluice_factory, fake, state, stats=stats, bayes_autolearn_spam="-1000",
                bayes_min_learned="1")
    assert plugkit.send(sl.port, body=corpus_msg(True, 61))["eod"].code == 250
    m = _wait_metric(stats, "sluice_plugin_spam_autolearned_total", {"class": "spam"}, 1)
    assert plugkit.metric_value(m, "sluice_plugin_spam_autolearned_total",
                                {"class": "spam"}) == 1, sl.output()
    assert not any("autolearn: Bayes store" in ln for ln in sl.lines), sl.output()
    assert redis.cli("GET", "sluice:spam:bayes:nspam") == "7"
    assert all(redis.cli("GET", k) == str(CAPPED) for k in keys)


def _seen_ttls(redis):
    keys = redis.cli("--scan", "--pattern", "sluice:spam:bayes:seen:*").split()
    return [int(redis.cli("PTTL", k)) for k in keys]


DAY_MS = 86400 * 1000


def test_seen_keys_expire(sluice_factory, fake, tmp_path, redis):
    """The once-per-message guard keys (bayes:seen:<id>) expire: one key
    per learned message kept forever made the store grow without bound (and
    in the memory store pushed token counters out). Default 30 days in the
    tool; bayes_seen_days in the plugin, --seen-days in the tool."""
    learn_redis(redis, "spam", [corpus_msg(True, i) for i in range(3)], tmp_path)
    ttls = _seen_ttls(redis)
    assert len(ttls) == 3 and all(29 * DAY_MS < t <= 30 * DAY_MS for t in ttls), ttls
    learn_redis(redis, "ham", [corpus_msg(False, i) for i in range(2)], tmp_path,
                "--seen-days", "2")
    ttls = sorted(_seen_ttls(redis))
    assert len(ttls) == 5 and all(DAY_MS < t <= 2 * DAY_MS for t in ttls[:2]), ttls
    stats = plugkit.harness.free_port()
    state = {"backend": "redis", "redis": "127.0.0.1:%d" % redis.port}
    sl = _start(sluice_factory, fake, state, stats=stats, bayes_autolearn_spam="-1000",
                bayes_min_learned="1", bayes_seen_days="3")
    assert plugkit.send(sl.port, body=corpus_msg(True, 70))["eod"].code == 250
    _wait_metric(stats, "sluice_plugin_spam_autolearned_total", {"class": "spam"}, 1)
    ttls = sorted(_seen_ttls(redis))
    assert len(ttls) == 6, ttls
    assert sum(1 for t in ttls if 2 * DAY_MS < t <= 3 * DAY_MS) == 1, ttls


def _learn_rc(redis, what, msgs, tmp, *extra):
    d = tmp / ("learnrc-%s-%d" % (what, len(list(tmp.iterdir()))))
    d.mkdir()
    for i, m in enumerate(msgs):
        (d / ("%d.eml" % i)).write_bytes(m)
    return subprocess.run([LEARN, "--redis", "127.0.0.1:%d" % redis.port, *extra, "--" + what,
                           str(d)], capture_output=True, text=True, timeout=60)


def _store(redis):
    keys = sorted(redis.cli("--scan", "--pattern", "sluice:spam:*").split())
    return {k: redis.cli("GET", k) for k in keys}


@pytest.mark.parametrize("bad", ["abc", "5.0", "0x10", " 7"])
def test_learn_script_checks_every_value_before_writing(tmp_path, redis, bad):
    """sluice-spam-learn's script: a token counter that is not an integer
    fails the message before anything is written (the totals were written
    first, then the script stopped midway on tonumber's nil)."""
    msg = corpus_msg(True, 1)
    learn_redis(redis, "spam", [msg], tmp_path)
    tok = sorted(redis.cli("--scan", "--pattern", "sluice:spam:bayes:t:*").split())[-1]
    redis.cli("SET", tok, bad)
    before = _store(redis)
    r = _learn_rc(redis, "ham", [msg], tmp_path)
    assert r.returncode == 1 and "1 errors" in r.stdout, (r.stdout, r.stderr)
    assert tok in r.stderr, r.stderr
    assert _store(redis) == before


def test_learn_script_refuses_a_strange_seen_value(tmp_path, redis):
    """A guard key holding neither s nor h is an error, not ham."""
    msg = corpus_msg(True, 2)
    learn_redis(redis, "spam", [msg], tmp_path)
    seen = redis.cli("--scan", "--pattern", "sluice:spam:bayes:seen:*").split()
    assert len(seen) == 1, seen
    redis.cli("SET", seen[0], "x")
    before = _store(redis)
    r = _learn_rc(redis, "spam", [msg], tmp_path)
    assert r.returncode == 1 and "1 errors" in r.stdout, (r.stdout, r.stderr)
    assert _store(redis) == before


def test_learn_stats_and_dump_take_names_literally(tmp_path, redis):
    """--instance and --key-prefix go into SCAN's MATCH pattern escaped: an
    instance called "sp?m" does not count the tokens of "spam"."""
    learn_redis(redis, "spam", [corpus_msg(True, i) for i in range(3)], tmp_path)
    assert redis_stats(redis)["tokens"] > 10
    for extra in (["--instance", "sp?m"], ["--instance", "*"], ["--key-prefix", "sl[a-z]ice:"],
                  ["--key-prefix", "*", "--instance", "*"]):
        r = subprocess.run([LEARN, "--redis", "127.0.0.1:%d" % redis.port, *extra, "--stats"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert "tokens 0" in r.stdout, (extra, r.stdout)
        r = subprocess.run([LEARN, "--redis", "127.0.0.1:%d" % redis.port, *extra, "--dump"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout == "", (extra, r.stdout[:300])


@pytest.mark.parametrize("verdicts,first_ok", [
    ({"mail": "accept"}, True),
    ({"connect": "accept", "helo": "accept", "mail": "accept", "rcpt": "accept"}, False),
])
def test_lookup_works_when_an_earlier_plugin_accepts(sluice_factory, fake, verdicts, first_ok):
    """spam's hand-over to the loop (a uv_async) was made in its MAIL hook
    only: with an earlier plugin answering ACCEPT at MAIL, that hook never
    ran and every lookup was BAYES_UNAVAILABLE. It is made by whichever of
    spam's loop hooks runs first (CONNECT, HELO, MAIL, RCPT, and the
    end-of-transaction and close notifications, which always run): with
    every phase before DATA accepted by another plugin, only the first
    message can go without Bayes."""
    stats = plugkit.harness.free_port()
    sections = plugkit.chain_sections(("acc", "testplug", verdicts), spam_instance(
        bayes_store="state", bayes_min_learned="1"))
    sl = sluice_factory(fake.port, extra_sections=sections,
                        stats={"listen": "127.0.0.1:%d" % stats})
    for i in range(3):
        assert plugkit.send(sl.port, body=corpus_msg(False, i))["eod"].code == 250
    fake.wait_messages(3)
    m = _wait_metric(stats, "sluice_plugin_spam_bayes_lookups_total",
                     {"result": "too_few_learned"}, 3 if first_ok else 2)
    unavailable = sum(1 for ln in sl.lines if "spam score=" in ln and "BAYES_UNAVAILABLE" in ln)
    assert unavailable == (0 if first_ok else 1), sl.output()
    assert plugkit.metric_value(m, "sluice_plugin_spam_bayes_lookups_total",
                                {"result": "too_few_learned"}) == (3 if first_ok else 2), m


def test_bayes_db_with_state_store_is_refused(tmp_path):
    """bayes_db with bayes_store = state: refused with its file and line
    (that error path destroyed a mutex it had never initialised)."""
    conf = tmp_path / "s.conf"
    conf.write_text("[server]\nlisten = 127.0.0.1:2525\n[upstream]\nservers = 127.0.0.1:25\n"
                    "[chain]\nplugins = spam\n[plugin spam]\npath = %s\nrules = %s\n"
                    "bayes_store = state\nbayes_db = %s\n"
                    % (spam_instance()[1], _RULES[0], tmp_path / "b.db"))
    r = plugkit.harness.run_sluice(["--check", "-c", str(conf)])
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "s.conf:11" in out and "bayes_db" in out, out
    assert "Sanitizer" not in out and "runtime error" not in out, out
