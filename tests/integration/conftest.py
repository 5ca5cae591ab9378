# SPDX-License-Identifier: GPL-2.0-or-later
"""pytest fixtures shared by the integration tests.

- every test is bounded by SIGALRM (TEST_TIMEOUT seconds, default 60);
- `fake` / `fake_factory`: in-process recording upstreams (fakemta.py);
- `sluice_factory`: start daemons; all are stopped at teardown and, when a
  test fails, their whole stderr is attached to the report;
- `certs`: a CA + server certificate made once per test file;
- `postfix`: a private real Postfix, started once per test file;
- a failed test's report also carries the logs of the milter fixtures
  (milters.py) and private Postfixes listed in request.node._milters and
  request.node._postfixes.
"""

import os
import shutil
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fakemta  # noqa: E402
import harness  # noqa: E402

TEST_TIMEOUT = int(os.environ.get("SLUICE_TEST_TIMEOUT", "60"))


def pytest_configure(config):
    if not os.path.exists(harness.SLUICE_BIN):
        # Configuring and skipping would hide the problem; be loud.
        sys.stderr.write("sluice binary not found at %s (set SLUICE_BIN)\n" % harness.SLUICE_BIN)


class _TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _bounded():
    def on_alarm(_sig, _frm):
        raise _TestTimeout("test exceeded %d s" % TEST_TIMEOUT)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for i, s in enumerate(getattr(item, "_sluices", [])):
            rep.sections.append(("sluice #%d output (%s)" % (i, " ".join(s.command())),
                                 s.output() or "<nothing>"))
        for m in getattr(item, "_milters", []):
            rep.sections.append(("milter %s in %s" % (m.label, m.dir), m.log_tail()))
        for p in getattr(item, "_postfixes", []):
            if p is not None:
                rep.sections.append(("postfix maillog (%s)" % p.base, p.log_tail()))
        for i, f in enumerate(getattr(item, "_fakes", [])):
            txt = []
            for j, sess in enumerate(f.sessions):
                txt.append("session %d tls=%s close=%s" % (j, sess.tls, sess.close_reason))
                txt += ["  C: %r" % c for c in sess.commands]
                txt += ["  S: %r" % r for r in sess.replies]
            rep.sections.append(("fakemta #%d on port %d" % (i, f.port), "\n".join(txt)))


@pytest.fixture
def fake_factory(request):
    made = []
    request.node._fakes = made

    def make(**kw):
        f = fakemta.FakeMTA(**kw).start()
        made.append(f)
        return f
    yield make
    for f in made:
        f.stop()


@pytest.fixture
def fake(fake_factory):
    """A default upstream: PIPELINING 8BITMIME SIZE DSN SMTPUTF8 ENHANCEDSTATUSCODES."""
    return fake_factory()


@pytest.fixture
def sluice_factory(request, tmp_path):
    made = []
    request.node._sluices = made
    counter = [0]

    def make(upstream_port=None, start=True, **kw):
        counter[0] += 1
        s = harness.Sluice(tmp_path / ("sluice%d" % counter[0]), upstream_port=upstream_port, **kw)
        made.append(s)
        if start:
            s.start()
        return s
    yield make
    # Every daemon must survive its test and exit cleanly: a crash (signal),
    # an abort or a sanitizer report is a failure of the test that caused it,
    # even if every reply the test checked was right.
    problems = []
    for s in made:
        rc = s.stop()
        out = s.output() if s.proc is not None else ""
        if getattr(s, "expect_unclean", False):
            continue
        if rc not in (None, 0):
            problems.append("sluice in %s exited with status %s" % (s.workdir, rc))
        for marker in ("Sanitizer", "runtime error:", "Assertion", "LeakSanitizer"):
            if marker in out:
                problems.append("sluice in %s logged %r:\n%s" % (s.workdir, marker, out[-4000:]))
                break
    assert not problems, "\n".join(problems)


@pytest.fixture
def sluice(sluice_factory, fake):
    """sluice in front of the default fake upstream."""
    return sluice_factory(fake.port)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    return harness.make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def postfix():
    import postfix as pf
    why = pf.unavailable()
    if why:
        pytest.skip(why)
    inst = pf.PrivatePostfix()
    try:
        inst.start()
    except Exception:
        sys.stderr.write(inst.log_tail())
        inst.stop()
        raise
    yield inst
    inst.stop()
