"""A task of a run whose create task pushed no cluster (it never ran in this run: a task cleared or
run alone) fails at once, without retries, saying what is missing and what to do."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from airflow.sdk.exceptions import AirflowFailException

from h2o_airflow.operators.model import H2OBatchScoreOperator, H2OExportModelOperator, H2OImportOperator, H2OTrainOperator
from tests.fixtures.pipelines import EXAMPLE

DAY = datetime(2013, 2, 4, tzinfo=UTC)
PIPELINE = str(EXAMPLE)


class NoXComTI:
    def __init__(self):
        self.pulled: list[tuple] = []

    def xcom_pull(self, task_ids=None, key="return_value"):
        self.pulled.append((task_ids, key))
        return None

    def xcom_push(self, key, value):
        raise AssertionError(f"nothing may be pushed before the cluster is known ({key})")


@pytest.mark.parametrize("make", [
    lambda: H2OImportOperator(task_id="import_data", pipeline=PIPELINE),
    lambda: H2OTrainOperator(task_id="train", pipeline=PIPELINE),
    lambda: H2OExportModelOperator(task_id="export_and_promote", pipeline=PIPELINE),
    lambda: H2OBatchScoreOperator(task_id="score", pipeline=PIPELINE, engine="cluster"),
], ids=["import", "train", "export", "score"])
def test_a_task_without_the_cluster_xcom_fails_clearly_without_retry(make):
    op = make()
    ti = NoXComTI()
    with pytest.raises(AirflowFailException) as err:
        op.execute({"ti": ti, "params": {}, "run_id": "manual__x", "logical_date": DAY,
                    "data_interval_start": DAY, "data_interval_end": DAY})
    assert str(err.value) == ("no cluster information in the XCom of task 'create_cluster': the create task did not "
                              "run in this DAG run; clear the run from its start")
    assert ("create_cluster", "return_value") in ti.pulled
