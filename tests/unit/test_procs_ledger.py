"""`make airflow` killed before its clean-up: the next start stops what it left, by the ledger of its
children (real processes; a recycled pid is left alone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from devtools.stack import procs

SLEEPER = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); " \
          "time.sleep(120)"


def _group(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry))
    return found


def test_the_next_start_stops_the_process_groups_a_killed_start_left(tmp_path, monkeypatch):
    ledger = tmp_path / "children.jsonl"
    monkeypatch.setattr(procs, "ledger", ledger)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    server = procs.start("sleeper", [sys.executable, "-c", SLEEPER], tmp_path / "sleeper.log", ready=lambda: True)
    try:
        deadline = time.monotonic() + 10
        while len(_group(server.pid)) < 2 and time.monotonic() < deadline:  # the server and its own child
            time.sleep(0.05)
        assert len(_group(server.pid)) == 2
        with open(ledger, "a") as f:  # a pid the ledger names, now another process's: never signalled
            f.write(json.dumps({"name": "recycled", "pid": stranger.pid, "start": "1"}) + "\n")
        # the parent that started them is gone without its clean-up: the next start reads the ledger
        assert procs.stop_recorded(ledger) == ["sleeper"]
        assert server.proc.poll() is not None and _group(server.pid) == []
        assert stranger.poll() is None
        assert ledger.read_text() == ""
        assert procs.stop_recorded(ledger) == []  # nothing twice
    finally:
        server.stop()
        stranger.kill()
        stranger.wait(10)
