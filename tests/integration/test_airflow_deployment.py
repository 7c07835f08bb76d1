"""The CLI writes to the metadata database while the scheduler runs (the deployment on PostgreSQL).

On SQLite such a write races the scheduler's and can fail with "database is locked" (one writer
at a time); whether it does depends on timing, so this test shows the PostgreSQL deployment
works rather than SQLite failing. A tiny DAG of the test's own, not the H2O pipeline: the test
checks the deployment.
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.integration

DAG_ID = "deployment_probe"
DAYS = ["2013-02-05", "2013-02-06", "2013-02-07"]
DAG_FILE = f'''
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="{DAG_ID}", schedule="@daily", start_date=pendulum.datetime(2013, 1, 1, tz="UTC"), catchup=False,
     max_active_runs=3)
def probe():
    @task
    def logical_day(ds=None):
        return ds

    logical_day()


probe()
'''


def test_a_backfill_created_while_the_scheduler_runs_completes(airflow_deployment):
    d = airflow_deployment
    d.add_dag_file(f"{DAG_ID}.py", DAG_FILE)
    d.unpause(DAG_ID)  # waits until the DAG processor has parsed the new file
    t0 = time.monotonic()
    rc = d.cli(["backfill", "create", "--dag-id", DAG_ID, "--from-date", DAYS[0], "--to-date", DAYS[-1],
                "--max-active-runs", "3"])
    assert rc == 0, d.log_tail()
    states = {day: d.wait_run(DAG_ID, day, timeout=180) for day in DAYS}
    print(f"backfill of {len(DAYS)} days created and run in {time.monotonic() - t0:.1f}s beside the scheduler")
    assert states == dict.fromkeys(DAYS, "success"), (states, d.services.log_dir)
    runs = d.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"]
    assert sorted(r["logical_date"][:10] for r in runs if r["run_type"] == "backfill") == DAYS
    for day in DAYS:
        report = d.run_report(DAG_ID, day)
        assert [(r.task, r.state, r.result) for r in report] == [("logical_day", "success", day)]
