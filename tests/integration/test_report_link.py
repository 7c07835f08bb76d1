"""The export task's "Model report" extra link, read through Airflow's own XCom API: this plugin's report
view on Airflow's API server, for the exact task instance; never a signed URL, because Airflow 3 keeps a
task's links in its XCom (the metadata database). The view itself is tested on real deployments
(`test_make_airflow`, `test_ui_browser`)."""

from __future__ import annotations

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.providers.common.compat.sdk import XCom

from h2o_airflow.links import XCOM_REPORT_KEY, H2OModelReportLink
from h2o_airflow.operators.model import H2OExportModelOperator

pytestmark = pytest.mark.integration


def test_the_report_link_opens_the_plugin_view_of_its_task_instance_and_carries_no_credentials(supervisor,
                                                                                               monkeypatch):
    op = H2OExportModelOperator(task_id="export_and_promote", pipeline="p.yaml")
    (link,) = [x for x in op.operator_extra_links if isinstance(x, H2OModelReportLink)]
    assert link.name == "Model report"
    ti = TaskInstanceKey("h2o_train__x", "export_and_promote", "manual__2013-02-04T00:00:00+00:00", try_number=1,
                         map_index=-1)
    assert link.get_link(op, ti_key=ti) == ""  # nothing exported yet
    XCom.set(XCOM_REPORT_KEY, {"uri": "s3://b/models/x/versions/v1/index.html", "aws_conn_id": "aws_default"},
             dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index)

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    url = link.get_link(op, ti_key=ti)
    # the run id quoted whole (its ':' and '+'), the task instance named, no query string and no key
    assert url == ("https://airflow.example.com/h2o/reports/h2o_train__x/manual__2013-02-04T00%3A00%3A00%2B00%3A00"
                   "/export_and_promote"), url
    assert link.get_link(op, ti_key=ti._replace(run_id="manual__2")) == ""  # another run's export: not this one
    mapped = ti._replace(map_index=3)
    XCom.set(XCOM_REPORT_KEY, {"uri": "s3://b/k/index.html"}, dag_id=ti.dag_id, task_id=ti.task_id,
             run_id=ti.run_id, map_index=3)
    assert link.get_link(op, ti_key=mapped).endswith("/export_and_promote?map_index=3")
