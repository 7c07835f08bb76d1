"""The janitor's sweep of what killed tasks leave under the Hive staging root (on a real directory tree)."""

from __future__ import annotations

import os
import time

from h2o_tasks import staging

HOUR = 3600


def _aged(path, seconds_ago: float) -> None:
    t = time.time() - seconds_ago
    os.utime(path, (t, t))


def _tree(root, name: str, files_age: float, dir_age: float):
    d = root / name
    (d / "staged").mkdir(parents=True)
    f = d / "staged" / "part-00000.parquet"
    f.write_bytes(b"x")
    _aged(f, files_age)
    _aged(d / "staged", dir_age)
    _aged(d, dir_age)
    return d


def test_only_the_tasks_own_entries_unchanged_for_longer_than_any_run_go(tmp_path):
    old_score = _tree(tmp_path, "hive-score-scheduled__2013-02-04-1a2b3c4d", 13 * HOUR, 13 * HOUR)
    old_import = _tree(tmp_path, "h2o-flights-3f2a9c1d", 13 * HOUR, 13 * HOUR)
    busy = _tree(tmp_path, "h2o-flights-77aa00bb", 60, 13 * HOUR)  # an import still writing under an old directory
    fresh = _tree(tmp_path, "hive-score-manual__x-00000000", 60, 60)
    tables = _tree(tmp_path, "tables", 30 * HOUR, 30 * HOUR)  # the Hive sink's table locations
    theirs = _tree(tmp_path, "someone-else", 30 * HOUR, 30 * HOUR)

    removed = staging.sweep(tmp_path, 12 * HOUR)

    assert removed == sorted([old_import.name, old_score.name])
    assert not old_score.exists() and not old_import.exists()
    assert busy.exists() and fresh.exists() and tables.exists() and theirs.exists()
    assert staging.sweep(tmp_path, 12 * HOUR) == []


def test_a_missing_root_sweeps_nothing(tmp_path):
    assert staging.sweep(tmp_path / "absent", 1) == []


def test_the_janitor_dag_sweeps_after_the_longest_run_any_pipeline_file_allows(tmp_path):
    import yaml

    from devtools import dag_folder
    from h2o_airflow.dag_factory import janitor_dag

    raw = yaml.safe_load(dag_folder.EXAMPLE.read_text())
    raw["cluster"]["max_run_minutes"] = 2000
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "broken.yaml").write_text("cluster: [")
    task = janitor_dag(tmp_path).get_task("sweep_hive_staging")
    assert task.older_than_minutes == 2000
    assert janitor_dag(None).get_task("sweep_hive_staging").older_than_minutes == 720
