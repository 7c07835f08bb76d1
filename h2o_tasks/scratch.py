"""The tasks' scratch directories on the worker's disk, which a killed task does not leave behind.

A task's work directory (the interval's input to the scorer, a model's artifacts, a fetched
window) can hold gigabytes, and the tasks most likely to be killed (out of memory, a worker
lost) are the ones with the most on disk: a ``finally`` does not run under SIGKILL. So each
directory holds an exclusive ``flock`` on its ``.owner`` file while its task uses it; the kernel
releases the lock when the process dies, however it dies. Whoever makes the next scratch
directory removes those whose lock it can take: their task is gone. A directory is made under a
hidden name and renamed once locked, so a visible one is never unlocked while its task lives; a
hidden one is a task that died while making it, removed once older than :data:`GRACE_S`.

They live under ``$H2O_AIRFLOW_SCRATCH_DIR``, else ``<tmp>/h2o-airflow-<uid>`` (mode 0700,
owned by this user: another user's directory of that name is refused, not used).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from h2o_tasks.errors import ConfigError

ROOT_ENV = "H2O_AIRFLOW_SCRATCH_DIR"
PREFIX = "h2o-"  # every scratch directory's name: a sweep touches nothing else
OWNER = ".owner"
WORK = "work"
# a hidden directory this young may be between its creation and its owner's lock: never swept
GRACE_S = 60.0


def root() -> Path:
    """The directory the scratch directories are made in (created, 0700, this user's)."""
    path = Path(os.environ.get(ROOT_ENV) or Path(tempfile.gettempdir()) / f"h2o-airflow-{os.getuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if st.st_uid != os.getuid() or not path.is_dir() or path.is_symlink():
        raise ConfigError(ROOT_ENV, str(path), f"is not a directory of this user (uid {os.getuid()})",
                          f"set {ROOT_ENV} to a directory this worker's user owns")
    return path


@contextlib.contextmanager
def directory(prefix: str) -> Iterator[Path]:
    """A new, empty scratch directory, locked as this process's for the block, removed after it.

    It is the ``work`` directory inside the locked one (whose name begins with ``prefix``, which begins
    with ``h2o-``), so that what a task uploads from it never includes the lock file.
    """
    if not prefix.startswith(PREFIX):
        raise ValueError(f"a scratch directory's prefix begins with {PREFIX!r}: {prefix!r}")
    base = root()
    sweep(base)
    making = Path(tempfile.mkdtemp(prefix=f".{prefix}", dir=base))
    fd = os.open(making / OWNER, os.O_CREAT | os.O_RDWR, 0o600)
    path = making
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        (making / WORK).mkdir()
        visible = base / making.name[1:]
        os.rename(making, visible)  # fails on a taken name (a directory there is never empty): nothing lost
        path = visible
        yield path / WORK
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def sweep(base: Path, now: float | None = None) -> list[str]:
    """Remove the scratch directories under ``base`` whose task is gone; their names."""
    now = time.time() if now is None else now
    removed = []
    for path in sorted(base.iterdir()):
        hidden = path.name.startswith(".")
        if not path.name.removeprefix(".").startswith(PREFIX):  # not one of ours, whatever else the root holds
            continue
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            if path.is_symlink() or not path.is_dir():
                continue
            if hidden and now - path.lstat().st_mtime < GRACE_S:  # may be between its creation and its lock
                continue
            try:
                fd = os.open(path / OWNER, os.O_RDWR)
            except FileNotFoundError:
                if hidden:  # died between making the directory and its lock file
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path.name)
                continue  # not made by directory()
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # its task is alive
                    continue
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
            finally:
                os.close(fd)
    return removed
