# SPDX-License-Identifier: GPL-2.0-or-later
"""A private redis-server for the shared state tests (Debian package
redis-server): on a loopback port, no persistence, killed at the end."""
import os
import shutil
import subprocess

import pytest

import harness

REDIS = shutil.which("redis-server")


class Redis:
    """A private redis-server on a loopback port (no persistence)."""

    def __init__(self, workdir, port=None, extra=()):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.port = port or harness.free_port()
        self.extra = list(extra)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir, *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_port(self.port)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def cli(self, *args, auth=()):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *auth, *args],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()


@pytest.fixture(params=["memory", "redis"])
def backend(request, tmp_path):
    """The [state] section of each backend: a test taking it runs on both
    (import it into the test module: from redisfix import backend)."""
    if request.param == "memory":
        yield {}
        return
    if not REDIS:
        pytest.skip("redis-server not installed (Debian package redis-server)")
    r = Redis(tmp_path / "redis").start()
    yield {"backend": "redis", "redis": "127.0.0.1:%d" % r.port}
    r.stop()
