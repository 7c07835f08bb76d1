"""The export task's "Model report" extra link: a pre-signed URL drawn with the task's AWS connection,
read through Airflow's own XCom API, that opens the page from the real S3 API (moto server) with no
credentials in the browser.

moto checks no query-string signature: it serves anonymous requests, and with IAM enforced it fails
on any request without an ``Authorization`` header (``KeyError: 'HTTP_AUTHORIZATION'`` in
``moto/iam/access_control.py``). So the refusal of an altered or expired link is AWS's to enforce;
what is checked here is that the link is a SigV4 query signature of the connection's key, for that
object, for an hour, and that it opens the page.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.providers.common.compat.sdk import XCom

from h2o_airflow.links import REPORT_LINK_SECONDS, XCOM_REPORT_KEY, H2OModelReportLink
from h2o_airflow.operators.model import H2OExportModelOperator

pytestmark = pytest.mark.integration


def test_the_report_link_is_a_presigned_url_of_the_tasks_connection(supervisor, s3_settings, s3_bucket, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_REPORTS_S3", json.dumps(
        {"conn_type": "aws", "login": s3_settings.access_key, "password": s3_settings.secret_key,
         "extra": {"endpoint_url": s3_settings.endpoint_url, "region_name": "us-east-1"}}))
    page = b"<!doctype html><html><body><h1>arrival-delay</h1></body></html>"
    key = "models/x/versions/v1/index.html"
    s3_settings.client().put_object(Bucket=s3_bucket, Key=key, Body=page, ContentType="text/html")

    op = H2OExportModelOperator(task_id="export_and_promote", pipeline="p.yaml", aws_conn_id="reports_s3")
    (link,) = [x for x in op.operator_extra_links if isinstance(x, H2OModelReportLink)]
    assert link.name == "Model report"
    ti = TaskInstanceKey("h2o_train__x", "export_and_promote", "manual__1", try_number=1, map_index=-1)
    assert link.get_link(op, ti_key=ti) == ""  # nothing exported yet
    XCom.set(XCOM_REPORT_KEY, {"uri": f"s3://{s3_bucket}/{key}", "aws_conn_id": "reports_s3"},
             dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index)

    url = link.get_link(op, ti_key=ti)
    base, _, query = url.partition("?")
    assert base == f"{s3_settings.endpoint_url}/{s3_bucket}/{key}"
    signed = dict(urllib.parse.parse_qsl(query))
    assert signed["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and len(signed["X-Amz-Signature"]) == 64
    assert signed["X-Amz-Credential"].startswith(f"{s3_settings.access_key}/")
    assert int(signed["X-Amz-Expires"]) == REPORT_LINK_SECONDS
    with urllib.request.urlopen(url, timeout=30) as resp:  # the browser sends no credentials
        assert resp.read() == page
    other = TaskInstanceKey("h2o_train__x", "export_and_promote", "manual__2", try_number=1, map_index=-1)
    assert link.get_link(op, ti_key=other) == ""  # another run's export: not this one's report
