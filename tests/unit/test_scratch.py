"""Scratch directories: a task killed with SIGKILL leaves its directory to the next task's sweep,
a live task's directory is never taken (real processes, real ``flock``)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from h2o_tasks import scratch
from h2o_tasks.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from h2o_tasks import scratch
with scratch.directory("h2o-score-") as work:
    (work / "input.csv").write_bytes(b"x" * 4096)
    print(work.parent, flush=True)
    time.sleep(120)
"""


@pytest.fixture
def base(tmp_path, monkeypatch):
    path = tmp_path / "scratch"
    monkeypatch.setenv(scratch.ROOT_ENV, str(path))
    return path


def holder(base: Path) -> tuple[subprocess.Popen, Path]:
    """A task holding a scratch directory (a process of its own); its directory."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, scratch.ROOT_ENV: str(base)})
    return proc, Path(proc.stdout.readline().strip())


def test_a_killed_tasks_directory_goes_with_the_next_task_and_a_live_ones_stays(base):
    killed, gone = holder(base)
    alive, kept = holder(base)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert gone.exists()  # no finally ran
        with scratch.directory("h2o-export-") as mine:
            assert list(mine.iterdir()) == []  # what a task uploads from it: never the lock file
            assert not gone.exists() and kept.exists() and (kept / scratch.WORK / "input.csv").exists()
            assert sorted(p.name for p in base.iterdir()) == sorted([kept.name, mine.parent.name])
        assert not mine.parent.exists()
    finally:
        alive.kill()
        alive.wait(timeout=30)
    assert scratch.sweep(base) == [kept.name]
    assert list(base.iterdir()) == []


def test_a_directory_left_while_being_made_goes_after_the_grace_and_others_are_left_alone(base):
    base.mkdir(parents=True)
    half_made = base / ".h2o-score-abc123"  # died between mkdtemp and its lock file
    half_made.mkdir()
    foreign = base / "h2o-someone-elses"  # no lock file: not made by scratch.directory
    others = [base / ".cache", base / "data"]  # the root is a directory users may point anywhere
    for path in (foreign, *others):
        path.mkdir()
    assert scratch.sweep(base) == []  # a hidden one may be being made
    assert scratch.sweep(base, now=time.time() + scratch.GRACE_S + 1) == [half_made.name]
    assert sorted(p.name for p in base.iterdir()) == sorted(p.name for p in (foreign, *others))
    with pytest.raises(ValueError, match="h2o-"), scratch.directory("work-"):
        pass


def test_a_directory_is_hidden_until_its_owner_holds_its_lock(base, monkeypatch):
    """What a sweep sees while a directory is made: the hidden name before the lock, then the locked one."""
    seen = []
    real_flock = scratch.fcntl.flock

    def flock(fd, op):
        seen.append(sorted(p.name for p in base.iterdir()))
        return real_flock(fd, op)

    monkeypatch.setattr(scratch.fcntl, "flock", flock)
    with scratch.directory("h2o-score-") as work:
        assert not work.parent.name.startswith(".")
        assert scratch.sweep(base) == []  # locked: kept, however old
    (making,) = seen[0]  # at the owner's lock (the first flock; the sweep's come after)
    assert making == f".{work.parent.name}"


def test_a_root_of_another_user_is_refused(base):
    base.mkdir(parents=True)
    os.chown(base, 65534, 65534)
    if os.getuid() == 65534:
        pytest.skip("runs as the user the directory was given to")
    with pytest.raises(ConfigError, match=scratch.ROOT_ENV):
        scratch.root()


def test_a_visible_name_already_taken_fails_the_new_directory_and_keeps_the_other(base, monkeypatch):
    base.mkdir(parents=True)
    taken = base / "h2o-score-same"
    taken.mkdir()
    (taken / "input.csv").write_text("another task's")
    fd = os.open(taken / scratch.OWNER, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # its task is alive (this process stands in for it)

    def same_name(prefix, dir):
        path = Path(dir) / f"{prefix}same"
        path.mkdir()
        return str(path)

    monkeypatch.setattr(scratch.tempfile, "mkdtemp", same_name)
    try:
        with pytest.raises(OSError), scratch.directory("h2o-score-"):
            pass
    finally:
        os.close(fd)
    assert (taken / "input.csv").read_text() == "another task's"
    assert [p.name for p in base.iterdir()] == [taken.name]  # the half-made one is gone too
