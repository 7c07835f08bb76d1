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
