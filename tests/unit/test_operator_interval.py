"""Which days a pipeline operator works on: the run's data interval, or its last day."""

from datetime import UTC, date, datetime

import pytest

from h2o_airflow.operators.model import H2OBatchScoreOperator, H2OImportOperator
from tests.fixtures.pipelines import variant, whole


def ctx(start, end, logical=None):
    return {"data_interval_start": start, "data_interval_end": end, "logical_date": logical or start}


@pytest.mark.parametrize("last_day_only, expected", [(False, (date(2013, 1, 28), date(2013, 2, 4))),
                                                     (True, (date(2013, 2, 3), date(2013, 2, 4)))])
def test_a_weekly_interval_or_its_last_day(last_day_only, expected):
    op = H2OImportOperator(task_id="t", pipeline="p.yaml", purpose="score", last_day_only=last_day_only)
    weekly = ctx(datetime(2013, 1, 28, tzinfo=UTC), datetime(2013, 2, 4, tzinfo=UTC))
    assert op.interval(weekly) == expected


def test_a_manual_run_is_its_logical_day_either_way():
    day = datetime(2013, 2, 4, tzinfo=UTC)
    for last in (False, True):
        op = H2OBatchScoreOperator(task_id="s", pipeline="p.yaml", last_day_only=last)
        assert op.interval(ctx(day, day)) == (date(2013, 2, 4), date(2013, 2, 5))


def test_schedule_data_intervals_gives_runs_that_cover_the_cron_interval(tmp_path):
    """schedule.data_intervals: the DAG's timetable is Airflow's CronDataIntervalTimetable, so a weekly
    scoring run's data interval is its week, whose seven days are scored as seven partitions."""
    from airflow.sdk import CronDataIntervalTimetable, CronTriggerTimetable

    from devtools import dag_folder
    from h2o_airflow.dag_factory import pipeline_dags
    from h2o_tasks import intervals

    dags = dag_folder.make(tmp_path / "dags", janitor=False)
    on = dag_folder.write_pipeline(dags, "weekly", dag_folder.variant(
        schedule={"scoring": "@weekly", "data_intervals": True}))
    dag = pipeline_dags(on.with_suffix(".py"))["score_arrival-delay"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    off = dag_folder.write_pipeline(dags, "daily", dag_folder.variant(name="other", registry_uri="s3://b/other",
                                                                      scoring={"output_uri": "s3://b/o2",
                                                                               "hive_table": "other"}))
    assert isinstance(pipeline_dags(off.with_suffix(".py"))["score_other"].timetable, CronTriggerTimetable)
    op = dag.get_task("score")
    week = ctx(datetime(2013, 3, 3, tzinfo=UTC), datetime(2013, 3, 10, tzinfo=UTC))
    days = intervals.days(*op.interval(week))
    assert [intervals.partition_path(d) for d in days] == [f"dt=2013-03-{d:02d}" for d in range(3, 10)]


def _hourly_cfg():
    return variant(source={"kind": "s3", "granularity": "hour", "s3": {
        "uri": "s3://h2o-demo/hourly", "partitions": "dt={date}/hr={hour}"}})


def test_an_hourly_pipeline_scores_each_hour_of_its_interval():
    """source.granularity: hour: a six-hour interval is six partitions dt=/hr=; a manual run (no interval)
    its logical hour; the training DAG's scoring (last_day_only) the 24 hours of its last day."""
    cfg = _hourly_cfg()
    op = H2OBatchScoreOperator(task_id="s", pipeline="p.yaml")
    six = ctx(datetime(2013, 2, 4, 6, tzinfo=UTC), datetime(2013, 2, 4, 12, tzinfo=UTC))
    assert [p.path() for p in op.periods(six, cfg)] == [f"dt=2013-02-04/hr={h:02d}" for h in range(6, 12)]
    assert op.periods(six, cfg)[0].spec() == {"dt": "2013-02-04", "hr": "06"}
    at = datetime(2013, 2, 4, 17, 30, tzinfo=UTC)
    assert [p.key for p in op.periods(ctx(at, at), cfg)] == ["2013-02-04T17"]
    across = ctx(datetime(2013, 2, 4, 22, tzinfo=UTC), datetime(2013, 2, 5, 2, tzinfo=UTC))
    assert [p.key for p in op.periods(across, cfg)] == ["2013-02-04T22", "2013-02-04T23", "2013-02-05T00",
                                                         "2013-02-05T01"]
    last = H2OBatchScoreOperator(task_id="s", pipeline="p.yaml", last_day_only=True)
    week = ctx(datetime(2013, 1, 28, tzinfo=UTC), datetime(2013, 2, 4, tzinfo=UTC))
    assert [p.key for p in last.periods(week, cfg)] == [f"2013-02-03T{h:02d}" for h in range(24)]
    daily = H2OBatchScoreOperator(task_id="s", pipeline="p.yaml")
    assert [p.path() for p in daily.periods(week, variant())] == [
        f"dt=2013-{m:02d}-{d:02d}" for m, d in [(1, 28), (1, 29), (1, 30), (1, 31), (2, 1), (2, 2), (2, 3)]]


@pytest.mark.parametrize("source", [
    {"kind": "s3", "granularity": "hour", "s3": {"uri": "s3://h2o-demo/flights"}},  # no {hour} level to read
    {"kind": "hive", "granularity": "hour", "hive": {"table": "flights"}},
])
def test_hourly_runs_need_hour_partitions_to_read(source):
    from h2o_tasks.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        variant(source=whole(source))
    assert err.value.field == "source.granularity" and "{hour}" in str(err.value)


def test_a_run_of_new_data_scores_the_days_its_events_name(monkeypatch):
    """schedule.scoring: on_new_data: an asset-triggered run has no data interval; it scores the days the
    source events name (each hour of them for an hourly pipeline), else its own day."""
    from types import SimpleNamespace

    from h2o_airflow import assets

    cfg = variant(schedule={"scoring": "on_new_data"})
    op = H2OBatchScoreOperator(task_id="s", pipeline="p.yaml")
    monkeypatch.setattr(op, "config", lambda context: cfg)
    [source] = assets.source(cfg)
    run_after = datetime(2026, 12, 3, 9, tzinfo=UTC)
    context = {"data_interval_start": None, "data_interval_end": None, "logical_date": None,
               "dag_run": SimpleNamespace(run_after=run_after),
               "triggering_asset_events": {source: [SimpleNamespace(extra={"day": "2013-02-06"}),
                                                    SimpleNamespace(extra={"day": "2013-02-04"})]}}
    assert op.interval(context) == (date(2013, 2, 4), date(2013, 2, 7))
    assert [p.path() for p in op.periods(context, cfg)] == ["dt=2013-02-04", "dt=2013-02-05", "dt=2013-02-06"]
    hourly = _hourly_cfg()
    assert len(op.periods({**context, "triggering_asset_events": {source: [SimpleNamespace(extra={"day": "2013-02-04"})]}},
                          hourly)) == 24
    no_day = {**context, "triggering_asset_events": {source: [SimpleNamespace(extra={})]}}
    assert op.interval(no_day) == (date(2026, 12, 3), date(2026, 12, 4))
