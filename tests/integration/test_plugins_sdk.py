# SPDX-License-Identifier: GPL-2.0-or-later
"""The SDK as a third party uses it: install the SDK from the build tree
(`cmake --install BUILD --prefix TMP --component sdk`), build the example
plugin out of the tree with pkg-config (plain cc, the example's Makefile and
its standalone CMakeLists), load it in sluice and check what it does:
rcptblock rejects listed recipients with 550 5.7.1 and tags mail from
configured client networks. Also its configuration errors under --check.

The asynchronous example (asyncrcpt) answers RCPT from a worker thread of
its own through api->complete(): the client sees its answer, and an answer
that comes after the instance's timeout meets the failure policy without
harm. A plugin built against ABI 1's first header still loads and runs.
Typed keys: one grammar for every section, unknown keys reported."""

import os
import shutil
import subprocess

import pytest

import harness
import plugkit
from plugkit import send

SRC = harness.SRC_DIR
EXAMPLE = os.path.join(SRC, "sdk", "examples", "rcptblock.c")
ASYNC_EXAMPLE = os.path.join(SRC, "sdk", "examples", "asyncrcpt.c")


def run(cmd, env=None, cwd=None, timeout=120):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(cmd, capture_output=True, text=True, env=e, cwd=cwd, timeout=timeout,
                       stdin=subprocess.DEVNULL, shell=isinstance(cmd, str))
    assert r.returncode == 0, "%s\n%s\n%s" % (cmd, r.stdout, r.stderr)
    return r


@pytest.fixture(scope="module")
def sdk(tmp_path_factory):
    """The SDK installed into a private prefix."""
    if not shutil.which("pkg-config") or not shutil.which("cc"):
        pytest.skip("pkg-config and cc needed")
    prefix = tmp_path_factory.mktemp("sdk-prefix")
    run(["cmake", "--install", plugkit.BUILD, "--prefix", str(prefix), "--component", "sdk"])
    pc = prefix / "lib" / "pkgconfig"
    assert (pc / "sluice-plugin.pc").exists(), list(prefix.rglob("*"))
    assert (prefix / "include" / "sluice" / "plugin.h").exists()
    return {"prefix": prefix, "env": {"PKG_CONFIG_PATH": str(pc)}}


def test_pkg_config(sdk):
    env = sdk["env"]
    cflags = run("pkg-config --cflags sluice-plugin", env=env).stdout.split()
    inc = [f[2:] for f in cflags if f.startswith("-I")]
    assert len(inc) == 1
    assert os.path.realpath(inc[0]) == os.path.realpath(str(sdk["prefix"] / "include"))
    assert run("pkg-config --libs sluice-plugin", env=env).stdout.strip() == ""
    plugdir = run("pkg-config --variable=plugindir sluice-plugin", env=env).stdout.strip()
    assert plugdir.endswith("/sluice/plugins"), plugdir
    assert run("pkg-config --variable=abi_version sluice-plugin", env=env).stdout.strip() == "1"


@pytest.fixture(scope="module")
def outoftree(sdk, tmp_path_factory):
    """rcptblock.so compiled outside the tree with cc + pkg-config only."""
    d = tmp_path_factory.mktemp("oot")
    src = d / "rcptblock.c"
    shutil.copy(EXAMPLE, src)      # nothing of the source tree next to it
    so = d / "rcptblock.so"
    run("cc -shared -fPIC -fvisibility=hidden -std=c11 -Wall -Wextra -Werror "
        "$(pkg-config --cflags sluice-plugin) -Wl,-z,defs -o %s %s "
        "$(pkg-config --libs sluice-plugin)" % (so, src), env=sdk["env"], cwd=str(d))
    # It exports only its descriptor.
    nm = run(["nm", "-D", "--defined-only", str(so)]).stdout.split()
    assert [s for s in nm if s.startswith("sluice")] == ["sluice_plugin"], nm
    return str(so)


def test_example_makefile_and_cmake(sdk, tmp_path):
    """The examples' own Makefile and CMakeLists.txt build them too."""
    for f in ("rcptblock.c", "asyncrcpt.c", "Makefile", "CMakeLists.txt"):
        shutil.copy(os.path.join(SRC, "sdk", "examples", f), tmp_path / f)
    run(["make"], env=sdk["env"], cwd=str(tmp_path))
    assert (tmp_path / "rcptblock.so").exists()
    assert (tmp_path / "asyncrcpt.so").exists()
    run(["cmake", "-S", str(tmp_path), "-B", str(tmp_path / "b"),
         "-DCMAKE_PREFIX_PATH=%s" % sdk["prefix"]], cwd=str(tmp_path))
    run(["cmake", "--build", str(tmp_path / "b")], cwd=str(tmp_path))
    assert (tmp_path / "b" / "rcptblock.so").exists()
    assert (tmp_path / "b" / "asyncrcpt.so").exists()


def blocklist(tmp_path):
    p = tmp_path / "blocked.txt"
    p.write_text("# blocked recipients\n"
                 "Blocked@Example.NET\n"
                 "\n"
                 "@closed.example   # a whole domain\n")
    return str(p)


@pytest.mark.parametrize("which", ["outoftree", "intree"])
def test_rcptblock_loaded(sluice_factory, fake, tmp_path, request, which):
    so = request.getfixturevalue("outoftree") if which == "outoftree" \
        else plugkit.plugin_path("rcptblock")
    stats_port = harness.free_port()
    sl = plugkit.start(sluice_factory, fake,
                       ("rb", so, {"blocklist": blocklist(tmp_path),
                                   "tag_networks": "192.0.2.0/24, 127.0.0.0/8",
                                   "tag_header": "X-Internal: yes"}),
                       stats={"listen": "127.0.0.1:%d" % stats_port})
    assert sl.wait_log(r"plugin=rb 2 blocked address\(es\), 2 tagged network\(s\)", 5)
    d = send(sl.port, rcpts=("ok@example.net", "blocked@example.net", "x@closed.example",
                             "x@open.example"))
    assert d["rcpt:ok@example.net"].code == 250
    for r in ("blocked@example.net", "x@closed.example"):
        assert (d["rcpt:" + r].code, d["rcpt:" + r].text) == (550, "5.7.1 Recipient blocked"), d
    assert d["rcpt:x@open.example"].code == 250
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.rcpts == ["ok@example.net", "x@open.example"]
    assert m.data == plugkit.MSG[:plugkit.MSG.index(b"\r\n\r\n") + 2] + b"X-Internal: yes\r\n" \
        + plugkit.MSG[plugkit.MSG.index(b"\r\n\r\n") + 2:]
    metrics = plugkit.metrics(stats_port)
    assert plugkit.metric_value(metrics, "sluice_plugin_rb_blocked_total") == 2, metrics
    assert plugkit.metric_value(metrics, "sluice_plugin_rb_tagged_total") == 1, metrics


def test_rcptblock_untagged_network(sluice_factory, fake, tmp_path):
    sl = plugkit.start(sluice_factory, fake,
                       ("rb", "rcptblock", {"blocklist": blocklist(tmp_path),
                                            "tag_networks": "10.0.0.0/8 2001:db8::/32"}))
    assert send(sl.port)["eod"].code == 250
    assert fake.wait_messages(1)[0].data == plugkit.MSG


@pytest.mark.parametrize("keys,why", [
    ({}, r"blocklist: required key missing"),
    ({"blocklist": "/nonexistent/list"}, r"blocklist: cannot open /nonexistent/list"),
    ({"blocklist": "@LIST@", "tag_networks": "10.0.0.0/33"},
     r"tag_networks: '10\.0\.0\.0/33' is not an address or CIDR network"),
    ({"blocklist": "@LIST@", "tag_header": "no colon"},
     r"tag_header: expected 'Name: value', got 'no colon'"),
])
def test_rcptblock_check_errors(tmp_path, keys, why):
    import re
    keys = {k: v.replace("@LIST@", blocklist(tmp_path)) for k, v in keys.items()}
    sections = plugkit.chain_sections(("rb", "rcptblock", keys))
    spool = tmp_path / "spool"
    spool.mkdir()
    conf = tmp_path / "c.conf"
    conf.write_text(harness.render_config(dict(
        {"server": {"listen": "127.0.0.1:1", "spool_dir": str(spool)},
         "upstream": {"servers": "127.0.0.1:2"}, "stats": {"listen": "no"}}, **sections)))
    r = harness.run_sluice(["--check", "-c", str(conf)])
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"^%s:\d+: \[plugin rb\] %s" % (re.escape(str(conf)), why), r.stderr,
                     re.M), r.stderr


def check_conf(tmp_path, *instances):
    """`sluice --check` on a configuration with these plugin instances."""
    sections = plugkit.chain_sections(*instances)
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    conf = tmp_path / "c.conf"
    conf.write_text(harness.render_config(dict(
        {"server": {"listen": "127.0.0.1:1", "spool_dir": str(spool)},
         "upstream": {"servers": "127.0.0.1:2"}, "stats": {"listen": "no"}}, **sections)))
    r = harness.run_sluice(["--check", "-c", str(conf)])
    return r, str(conf)


def test_typed_keys_unknown_and_grammar(tmp_path):
    """A key table reports unknown keys (a typo) and reads values with the
    daemon's grammar: a plugin key refuses what [plugin] timeout refuses."""
    import re
    r, conf = check_conf(tmp_path, ("rb", "rcptblock", {"blocklist": blocklist(tmp_path),
                                                        "tag_netwroks": "10.0.0.0/8"}))
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"^%s:\d+: \[plugin rb\] tag_netwroks: unknown key for this plugin$"
                     % re.escape(conf), r.stderr, re.M), r.stderr
    # The same text in a plugin's own duration key and in the host's timeout.
    for text, ok in (("1.5s", False), ("1500ms", True), ("45s", True), ("10d", False)):
        r1, c1 = check_conf(tmp_path, ("ar", "asyncrcpt", {"reject_domain": "x.example",
                                                           "delay": text}))
        r2, c2 = check_conf(tmp_path, ("ar", "asyncrcpt", {"reject_domain": "x.example",
                                                           "timeout": text}))
        assert (r1.returncode == 0) == ok, (text, r1.stderr)
        assert (r2.returncode == 0) == ok, (text, r2.stderr)
        if not ok:
            assert re.search(r"^%s:\d+: \[plugin ar\] delay: not a duration '%s'"
                             % (re.escape(c1), re.escape(text)), r1.stderr, re.M), r1.stderr


@pytest.fixture(scope="module")
def async_outoftree(sdk, tmp_path_factory):
    """asyncrcpt.so compiled outside the tree with cc + pkg-config only."""
    d = tmp_path_factory.mktemp("oot-async")
    src = d / "asyncrcpt.c"
    shutil.copy(ASYNC_EXAMPLE, src)
    so = d / "asyncrcpt.so"
    run("cc -shared -fPIC -fvisibility=hidden -pthread -std=c11 -Wall -Wextra -Werror "
        "$(pkg-config --cflags sluice-plugin) -Wl,-z,defs -o %s %s "
        "$(pkg-config --libs sluice-plugin)" % (so, src), env=sdk["env"], cwd=str(d))
    nm = run(["nm", "-D", "--defined-only", str(so)]).stdout.split()
    assert [s for s in nm if s.startswith("sluice")] == ["sluice_plugin"], nm
    return str(so)


@pytest.mark.parametrize("which", ["outoftree", "intree"])
def test_async_example_answers_from_its_thread(sluice_factory, fake, request, which):
    """RCPT answered from the plugin's worker thread: refused recipients get
    its 550 (reply set from that thread), the others go through; several
    sessions at once are all answered."""
    so = request.getfixturevalue("async_outoftree") if which == "outoftree" \
        else plugkit.plugin_path("asyncrcpt")
    sl = plugkit.start(sluice_factory, fake,
                       ("ar", so, {"reject_domain": "gone.example", "delay": "100ms",
                                   "reject_text": "Nobody of that name here"}))
    d = send(sl.port, rcpts=("a@here.example", "b@gone.example", "c@here.example"))
    assert d["rcpt:a@here.example"].code == 250, d
    assert (d["rcpt:b@gone.example"].code, d["rcpt:b@gone.example"].text) == \
        (550, "5.1.1 Nobody of that name here"), d
    assert d["rcpt:c@here.example"].code == 250, d
    assert d["eod"].code == 250, d
    m = fake.wait_messages(1)[0]
    assert m.rcpts == ["a@here.example", "c@here.example"]
    assert sl.wait_log(r"plugin=ar answered <b@gone\.example>: refused", 5)

    # Sessions in parallel: the loop is free while the worker answers.
    import threading
    results = []

    def one(i):
        results.append(send(sl.port, rcpts=("u%d@here.example" % i,))["eod"].code)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [250] * 4, results
    assert sl.alive()


@pytest.mark.parametrize("policy,code", [("tempfail", 451), ("accept", 250)])
def test_async_answer_after_timeout(sluice_factory, fake, policy, code):
    """The worker answers after the instance's timeout: the client gets the
    failure policy's answer at the timeout; the late answer (which sets a
    reply and refuses) is dropped when it comes, the daemon stays up, and
    the next sessions work."""
    import time
    sl = plugkit.start(sluice_factory, fake,
                       ("ar", "asyncrcpt", {"reject_domain": "late.example", "delay": "1500ms",
                                            "timeout": "300ms", "failure": policy}))
    t0 = time.monotonic()
    d = send(sl.port, rcpts=("x@late.example",))
    took = time.monotonic() - t0
    assert d["rcpt:x@late.example"].code == code, d
    assert took < 1.4, took     # answered at the timeout, not at the late answer
    mark = len(sl.lines)
    assert sl.wait_log(r"plugin=ar answered <x@late\.example>: refused", 5)
    time.sleep(0.3)             # the late completion is applied on the loop
    assert sl.alive()
    d = send(sl.port, rcpts=("y@late.example",))
    assert d["rcpt:y@late.example"].code == code, d
    assert sl.wait_log(r"plugin=ar answered <y@late\.example>", 5, start=mark)
    time.sleep(0.3)
    assert sl.alive()


def test_plugin_built_against_first_abi1_header(sluice_factory, fake):
    """oldabi.so was compiled against ABI 1's first header (a smaller host
    table, a descriptor without reload): it loads and runs."""
    import re
    sl = plugkit.start(sluice_factory, fake,
                       ("old", "oldabi", {"reject": "no@example.net", "header": "X-Old: yes"}))
    line = sl.wait_log(r"plugin=old built for a (\d+)-byte table, host has (\d+) bytes", 5)
    assert line, sl.output()
    m = re.search(r"built for a (\d+)-byte table, host has (\d+) bytes", line)
    assert int(m.group(1)) < int(m.group(2)), line   # the table grew since
    d = send(sl.port, rcpts=("ok@example.net", "no@example.net"))
    assert d["rcpt:no@example.net"].code == 550, d
    assert d["eod"].code == 250, d
    msg = fake.wait_messages(1)[0]
    assert msg.rcpts == ["ok@example.net"]
    assert b"X-Old: yes\r\n" in msg.data
