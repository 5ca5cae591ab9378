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
    mark = len(run.rows)
    run.phase_faults(phases=(phase,), control=False)
    table = settle(run, mark)
    # A one-shot 4xx-type fault is retried; the client ends up with a 250.
    for r in table:
        if "refuse5" not in r["row"]:
            assert r["told250"] == r["msgs"], r


def test_no_fault_control(run):
    mark = len(run.rows)
    run.phase_faults(phases=(), control=True)
    for r in settle(run, mark):
        assert r["told250"] == r["deliv"] == r["msgs"] and r["retried"] == 0, r


def test_sigkill_mid_transaction(run):
    mark = len(run.rows)
    run.sigkill()
    settle(run, mark)


def test_spool_on_full_tmpfs(run):
    mark = len(run.rows)
    run.spool_full()
    settle(run, mark)


def test_descriptor_exhaustion(run):
    mark = len(run.rows)
    run.fd_exhaustion()
    settle(run, mark)


def test_stalled_tls_handshakes(run, certs):
    mark = len(run.rows)
    run.tls_client_stall(certs)
    settle(run, mark)
    assert not [n for n in run.notes if n.startswith("DEFECT")], run.notes
