"""Run this repository's DAGs with ``airflow dags test`` on a local Airflow (SQLite).

Used by ``make demo`` and by the integration tests: the environment that points Airflow at
the DAGs, the plugins and the local services, a runner, and a report of what a run did
(task states, durations and return values) read from Airflow's database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class TaskReport:
    task: str
    state: str
    seconds: float
    result: Any


def airflow_env(home: Path, *, s3_endpoint: str, s3_access_key: str, s3_secret_key: str,
                hive_host: str = "", hive_port: int = 0, h2o_state_dir: Path | None = None,
                hive_staging_dir: Path | None = None) -> dict[str, str]:
    """Environment for an Airflow on SQLite in ``home`` with connections given as variables."""
    aws = {"conn_type": "aws", "login": s3_access_key, "password": s3_secret_key,
           "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws),
        "H2O_AIRFLOW_STATE_DIR": str(h2o_state_dir or home / "h2o"),
        "H2O_AIRFLOW_HIVE_STAGING_DIR": str(hive_staging_dir or home / "hive-staging"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
        "NO_PROXY": "*",
    }
    if hive_host:
        env["AIRFLOW_CONN_HIVESERVER2_DEFAULT"] = json.dumps(
            {"conn_type": "hiveserver2", "host": hive_host, "port": hive_port, "schema": "default",
             "extra": {"auth_mechanism": "NOSASL"}})
    return env


def airflow(args: list[str], env: dict[str, str], log: Path, timeout: float | None = None) -> int:
    """Run the ``airflow`` CLI of this virtual environment, appending its output to ``log``."""
    airflow_bin = Path(sys.executable).parent / "airflow"
    with open(log, "ab") as out:
        return subprocess.call([str(airflow_bin), *args], env={**os.environ, **env}, stdout=out,
                               stderr=subprocess.STDOUT, timeout=timeout)


def dags_test(dag_id: str, logical_date: str, env: dict[str, str], log: Path, conf: dict | None = None,
              timeout: float | None = None) -> int:
    args = ["dags", "test", dag_id, logical_date]
    if conf:
        args += ["--conf", json.dumps(conf)]
    return airflow(args, env, log, timeout)


_REPORT = r"""
import json, sys
from sqlalchemy import select
from airflow.models import DagRun, TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
dag_id, logical = sys.argv[1], sys.argv[2]
out = []
with create_session() as s:
    runs = s.scalars(select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc())).all()
    run = next(r for r in runs if r.logical_date and r.logical_date.isoformat().startswith(logical))
    tis = s.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)).all()
    for ti in sorted(tis, key=lambda t: (t.start_date is None, t.start_date or run.start_date)):
        x = s.scalars(select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run.run_id,
                      XComModel.task_id == ti.task_id, XComModel.key == "return_value")).first()
        value = XComModel.deserialize_value(x) if x is not None else None
        out.append({"task": ti.task_id, "state": str(ti.state), "seconds": round(ti.duration or 0, 1),
                    "result": value, "try_number": ti.try_number})
print(json.dumps(out, default=str))
"""


def run_report(dag_id: str, logical_date: str, env: dict[str, str]) -> list[TaskReport]:
    """Task states, durations and return values of the newest run of ``dag_id`` at ``logical_date``."""
    res = subprocess.run([sys.executable, "-c", _REPORT, dag_id, logical_date], env={**os.environ, **env},
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"could not read the run report of {dag_id}: {res.stderr[-2000:]}")
    rows = json.loads(res.stdout.strip().splitlines()[-1])
    return [TaskReport(r["task"], r["state"], r["seconds"], r["result"]) for r in rows]
