"""Leftover staging directories: what a task killed mid-query leaves under the Hive staging root.

Tasks remove their own staging directories in a ``finally``; a SIGKILL skips it. Two kinds of
entry are the tasks' own and are swept once nothing in them has changed for longer than any
run may last: a cluster's import staging (named after the cluster, ``h2o-…``) and the hive
engine's work directories (``hive-score-…``). Everything else under the root (the Hive sink's
``tables/``, a user's files) is never touched.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

HIVE_SCORE_PREFIX = "hive-score-"
SWEPT_PREFIXES = ("h2o-", HIVE_SCORE_PREFIX)  # cluster names (naming.cluster_name), the hive engine's work


def newest_change(path: Path) -> float:
    """The latest modification time of ``path`` or anything under it (a long import keeps writing)."""
    newest = path.lstat().st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames):
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except FileNotFoundError:
                continue
    return newest


def sweep(root: str | Path, older_than_seconds: float, now: float | None = None) -> list[str]:
    """Remove the tasks' staging entries under ``root`` unchanged for ``older_than_seconds``; their names."""
    root = Path(root)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for entry in sorted(root.iterdir()):
        if not entry.name.startswith(SWEPT_PREFIXES) or entry.is_symlink():
            continue
        try:
            if now - newest_change(entry) < older_than_seconds:
                continue
        except FileNotFoundError:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed
