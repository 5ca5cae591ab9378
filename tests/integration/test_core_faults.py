# SPDX-License-Identifier: GPL-2.0-or-later
"""Fault injection, counted (faults.py): real smtplib clients through sluice
into a real private Postfix, with faults injected between sluice and Postfix
at every phase (refuse, 5xx refuse, hang, reset, garbage; the reply-lost
window after the dot), sluice SIGKILLed mid-transaction, its spool on a full
tmpfs, a low descriptor limit, and clients stalling the TLS handshake.
Every message is looked up in Postfix's Maildir by Message-ID and per
attempt: 0 lost, 0 duplicated, 0 partial, 0 false failures, every fault
fired, every message accepted in the end. The whole table is written to
BUILD/faults-table.txt (and printed by `python3 faults.py`)."""

import os
import sys

import pytest

import faults
import harness


@pytest.fixture(scope="module")
def run(postfix, tmp_path_factory):
    r = faults.Run(postfix, str(tmp_path_factory.mktemp("faults")))
    r.tables = []
    yield r
    bad = r.stop()
    text = faults.format_table(r.tables) + "\n" + "\n".join("note: " + n for n in r.notes) + "\n"
    out = os.path.join(os.environ.get("SLUICE_BUILD_DIR", "."), "faults-table.txt")
    try:
        with open(out, "w") as f:
            f.write(text)
    except OSError:
        pass
    sys.__stderr__.write("\n" + text)
    assert not bad, "\n".join(bad)


def settle(run, mark):
    table, problems = run.settle(list(run.rows)[mark:])
    run.tables += table
    problems = faults.check(table, problems)
    assert not problems, "\n".join(problems) + "\n" + faults.format_table(table)
    return table


@pytest.mark.parametrize("phase", faults.PHASES)
def test_phase_faults(run, phase):
    """Each try on a new connection."""
    mark = len(run.rows)
    run.phase_faults(phases=(phase,), control=False)
    table = settle(run, mark)
    # A one-shot 4xx-type fault is retried; the client ends up with a 250.
    for r in table:
        if "refuse5" not in r["row"]:
            assert r["told250"] == r["msgs"], r


@pytest.mark.parametrize("phase", faults.PHASES)
def test_phase_faults_same_session(run, phase):
    """A retry reuses the client's session while sluice keeps it open (RSET,
    then the transaction again), as an MTA sends its next message."""
    mark = len(run.rows)
    run.phase_faults(phases=(phase,), control=False, same_session=True)
    table = settle(run, mark)
    for r in table:
        if "refuse5" not in r["row"]:
            assert r["told250"] == r["msgs"], r


@pytest.fixture(scope="module")
def postfix_data_refusal():
    """A second private Postfix that refuses DATA (451) for one sender."""
    import postfix as pf
    why = pf.unavailable()
    if why:
        pytest.skip(why)
    inst = pf.PrivatePostfix(extra={
        "smtpd_data_restrictions": "check_sender_access inline:{ "
                                   "{ datafail@example.com = 451 4.7.1 data refused for test } }"})
    inst.start()
    yield inst
    inst.stop()


def test_real_postfix_refuses_data_next_message_same_session(postfix_data_refusal, tmp_path):
    """The same defect without the fault proxy: Postfix itself refuses DATA
    (smtpd_data_restrictions); the client RSETs and sends another message
    on the same session, which Postfix would accept."""
    import smtplib
    s = harness.Sluice(str(tmp_path / "s"), upstream_port=postfix_data_refusal.port)
    s.start()
    try:
        with smtplib.SMTP("127.0.0.1", s.port, local_hostname="client.test", timeout=15) as c:
            c.ehlo("client.test")
            assert c.mail("datafail@example.com")[0] == 250
            assert c.rcpt("a@example.net")[0] == 250
            assert c.docmd("DATA")[0] == 354
            c.send(b"Subject: first\r\n\r\nrefused at DATA upstream\r\n.\r\n")
            code, text = c.getreply()
            assert code == 451, (code, text)
            assert c.rset()[0] == 250
            code, text = c.mail("other@example.com")
            assert code == 250, "next MAIL in the same session: %s %s" % (code, text)
            assert c.rcpt("b@example.net")[0] == 250
            assert c.docmd("DATA")[0] == 354
            c.send(b"Subject: second\r\n\r\nshould be accepted\r\n.\r\n")
            assert c.getreply()[0] == 250
    finally:
        s.stop()


@pytest.mark.parametrize("kind", faults.KINDS)
def test_upstream_tls_encrypt_never_downgrades(run, kind):
    """[upstream] tls = encrypt: whatever happens to STARTTLS (refused,
    5xx, stalled handshake, reset, garbage), no envelope goes to the
    upstream in the clear and the client is not told 250."""
    p = run.proxy(offer_starttls=True)
    s = run.sluice(p.port, "encrypt-%s" % kind, upstream={"tls": "encrypt"})
    p.arm("starttls", kind)
    m = faults.Message("encrypt %s" % kind, 0, 1000)
    a = faults.attempt(s.port, m)
    assert p.fired_count("starttls", kind) == 1
    assert not (a["stage"] == "eod" and a["code"] and a["code"] < 300), a
    assert a["code"] is None or 400 <= a["code"] < 600, a
    with p.lock:
        sent = list(p.forwarded)
    assert not {"MAIL", "RCPT", "DATA", "XCLIENT"} & set(sent), sent


def test_no_fault_control(run):
    mark = len(run.rows)
    run.phase_faults(phases=(), control=True)
    for r in settle(run, mark):
        assert r["told250"] == r["deliv"] == r["msgs"] and r["retried"] == 0, r


def test_random_faults_concurrent_clients(run):
    """8 % of the upstream phase events faulted at random while 6 clients
    send 36 messages (3 KB .. 1.5 MB) through a sluice whose plugin changes
    every sender (so every message is replayed)."""
    mark = len(run.rows)
    run.random_faults()
    settle(run, mark)


def test_sigkill_mid_transaction(run):
    mark = len(run.rows)
    run.sigkill()
    settle(run, mark)
    assert not [n for n in run.notes if n.startswith("DEFECT")], run.notes


def test_spool_on_full_tmpfs(run):
    import shutil
    import subprocess
    if not shutil.which("unshare") or subprocess.run(
            ["unshare", "-m", "--propagation", "private", "true"],
            capture_output=True, timeout=10).returncode != 0:
        pytest.skip("no private mount namespace here (unshare -m)")
    mark = len(run.rows)
    run.spool_full()
    settle(run, mark)


def test_descriptor_exhaustion(run):
    import shutil
    if not shutil.which("prlimit"):
        pytest.skip("prlimit (util-linux) not installed")
    mark = len(run.rows)
    run.fd_exhaustion()
    settle(run, mark)
    assert not [n for n in run.notes if n.startswith("DEFECT")], run.notes


def test_stalled_tls_handshakes(run, certs):
    mark = len(run.rows)
    run.tls_client_stall(certs)
    settle(run, mark)
    assert not [n for n in run.notes if n.startswith("DEFECT")], run.notes
