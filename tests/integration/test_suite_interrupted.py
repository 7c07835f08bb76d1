"""A suite stopped by SIGTERM (a CI timeout, ``kill``) stops the servers its fixtures started.

A real pytest run in a child process holds a real moto server from the session fixture; it gets a
SIGTERM in the middle of a test. With the suite's plugin the fixture's teardown stops the server;
without it the server outlives the suite (the control: the test can fail).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.fixtures.processes import alive
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration

_INNER = '''
import os, time
from pathlib import Path

def test_holds_a_server(s3_server):
    Path(os.environ["SERVER_PID_FILE"]).write_text(str(s3_server.process.pid))
    time.sleep(300)
'''


@pytest.mark.parametrize("plugin", [True, False], ids=["with-the-suite-plugin", "without-it"])
def test_sigterm_to_the_suite_runs_the_fixtures_teardown(tmp_path: Path, plugin: bool) -> None:
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(_INNER)
    pid_file = tmp_path / "server.pid"
    plugins = ["-p", "tests.fixtures.interrupts"] if plugin else []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SERVER_PID_FILE": str(pid_file)}
    suite = subprocess.Popen(
        [sys.executable, "-m", "pytest", *plugins, "-p", "tests.fixtures.s3", "-p", "no:cacheprovider", "-q",
         "--basetemp", str(tmp_path / "inner"), str(test_file)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server_pid = 0
    try:
        server_pid = int(wait_for("the inner test's server", lambda: pid_file.exists() and pid_file.read_text(), 90,
                                  give_up=lambda: suite.poll() is not None and f"the inner suite ended: {suite.stdout.read()}"))
        assert alive(server_pid)
        suite.send_signal(signal.SIGTERM)
        out, _ = suite.communicate(timeout=60)
        if plugin:
            assert suite.returncode == pytest.ExitCode.INTERRUPTED, out
            assert "SIGTERM: stopping after the fixtures' teardown" in out, out
            deadline = time.monotonic() + 10
            while alive(server_pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not alive(server_pid), f"moto server {server_pid} outlived the suite:\n{out}"
        else:
            assert suite.returncode == -signal.SIGTERM, out
            assert alive(server_pid), "without the plugin the server should outlive the suite (the control)"
    finally:
        if suite.poll() is None:
            suite.kill()
            suite.wait()
        if server_pid and alive(server_pid):
            os.killpg(server_pid, signal.SIGKILL)  # the server leads its own process group
