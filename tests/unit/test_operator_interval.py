"""Which days a pipeline operator works on: the run's data interval, or its last day."""

from datetime import UTC, date, datetime

import pytest

from h2o_airflow.operators.model import H2OBatchScoreOperator, H2OImportOperator


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
