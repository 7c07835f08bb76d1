"""The run report read from SQLite directly: values as Airflow's serde gives them, else Airflow's own path."""

from __future__ import annotations

import json
import sqlite3

from devtools import airflow_local


def _db(path, value) -> None:
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE dag_run (id INTEGER PRIMARY KEY, dag_id TEXT, run_id TEXT, logical_date TEXT, start_date TEXT);
            CREATE TABLE task_instance (dag_id TEXT, run_id TEXT, task_id TEXT, state TEXT, duration REAL,
                                        try_number INTEGER, start_date TEXT);
            CREATE TABLE xcom (dag_id TEXT, run_id TEXT, task_id TEXT, map_index INTEGER, key TEXT, value TEXT);
        """)
        db.execute("INSERT INTO dag_run VALUES (1, 'd', 'old', '2013-02-04 00:00:00.000000', '2026-01-01 00:00:00')")
        db.execute("INSERT INTO dag_run VALUES (2, 'd', 'new', '2013-02-04 00:00:00.000000', '2026-01-02 00:00:00')")
        db.executemany("INSERT INTO task_instance VALUES ('d', ?, ?, ?, ?, ?, ?)", [
            ("new", "delete", "success", 1.04, 1, "2026-01-02 00:00:09"),
            ("new", "create", "success", 12.345, 2, "2026-01-02 00:00:01"),
            ("new", "score", None, None, 0, None),
            ("old", "create", "failed", 3.0, 1, "2026-01-01 00:00:01")])
        db.execute("INSERT INTO xcom VALUES ('d', 'new', 'create', -1, 'return_value', ?)", (json.dumps(json.dumps(value)),))
        db.execute("INSERT INTO xcom VALUES ('d', 'new', 'create', -1, 'other', '1')")


def test_the_newest_run_in_start_order_with_serde_tuples_as_lists(tmp_path):
    _db(tmp_path / "airflow.db", {"name": "c", "urls": {"__classname__": "builtins.tuple", "__version__": 1,
                                                        "__data__": ["a", "b"]}})
    report = airflow_local._sqlite_report("d", "2013-02-04", {"AIRFLOW_HOME": str(tmp_path)})
    assert report == [airflow_local.TaskReport("create", "success", 12.3, {"name": "c", "urls": ["a", "b"]}, 2),
                      airflow_local.TaskReport("delete", "success", 1.0, None, 1),
                      airflow_local.TaskReport("score", "None", 0, None, 1)]


def test_a_value_only_airflows_serde_reads_or_another_database_goes_through_airflow(tmp_path):
    _db(tmp_path / "airflow.db", {"at": {"__classname__": "pendulum.datetime.DateTime", "__version__": 2,
                                         "__data__": {"timestamp": 0.0, "tz": "UTC"}}})
    assert airflow_local._sqlite_report("d", "2013-02-04", {"AIRFLOW_HOME": str(tmp_path)}) is None
    postgres = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://x/y"}
    assert airflow_local._sqlite_report("d", "2013-02-04", postgres) is None
    assert airflow_local._sqlite_report("d", "2014-01-01", {"AIRFLOW_HOME": str(tmp_path)}) is None  # no such run
