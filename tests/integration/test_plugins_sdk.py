# SPDX-License-Identifier: GPL-2.0-or-later
"""The SDK as a third party uses it: install the SDK from the build tree
(`cmake --install BUILD --prefix TMP --component sdk`), build the example
plugin out of the tree with pkg-config (plain cc, the example's Makefile and
its standalone CMakeLists), load it in sluice and check what it does:
rcptblock rejects listed recipients with 550 5.7.1 and tags mail from
configured client networks. Also its configuration errors under --check."""

import os
import shutil
import subprocess

import pytest

import harness
import plugkit
from plugkit import send

SRC = harness.SRC_DIR
EXAMPLE = os.path.join(SRC, "sdk", "examples", "rcptblock.c")


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
    """The example's own Makefile and CMakeLists.txt build it too."""
    for f in ("rcptblock.c", "Makefile", "CMakeLists.txt"):
        shutil.copy(os.path.join(SRC, "sdk", "examples", f), tmp_path / f)
    run(["make"], env=sdk["env"], cwd=str(tmp_path))
    assert (tmp_path / "rcptblock.so").exists()
    run(["cmake", "-S", str(tmp_path), "-B", str(tmp_path / "b"),
         "-DCMAKE_PREFIX_PATH=%s" % sdk["prefix"]], cwd=str(tmp_path))
    run(["cmake", "--build", str(tmp_path / "b")], cwd=str(tmp_path))
    assert (tmp_path / "b" / "rcptblock.so").exists()


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
