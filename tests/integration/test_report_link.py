"""The export task's "Model report" extra link, read through Airflow's own XCom API: the report object's
page, on the S3-compatible endpoint (the real moto server here) or in the AWS console; never a signed
URL, because Airflow 3 keeps a task's links in its XCom (the metadata database)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.providers.common.compat.sdk import XCom

from h2o_airflow.links import XCOM_REPORT_KEY, H2OModelReportLink, s3_browser_url
from h2o_airflow.operators.model import H2OExportModelOperator

pytestmark = pytest.mark.integration


def test_the_report_link_opens_the_exported_page_and_carries_no_credentials(supervisor, s3_settings, s3_bucket):
    page = b"<!doctype html><html><body><h1>arrival-delay</h1></body></html>"
    key = "models/x/versions/v1/index.html"
    s3_settings.client().put_object(Bucket=s3_bucket, Key=key, Body=page, ContentType="text/html")
    uri = f"s3://{s3_bucket}/{key}"

    op = H2OExportModelOperator(task_id="export_and_promote", pipeline="p.yaml")
    (link,) = [x for x in op.operator_extra_links if isinstance(x, H2OModelReportLink)]
    assert link.name == "Model report"
    ti = TaskInstanceKey("h2o_train__x", "export_and_promote", "manual__1", try_number=1, map_index=-1)
    assert link.get_link(op, ti_key=ti) == ""  # nothing exported yet
    XCom.set(XCOM_REPORT_KEY, {"uri": uri, "url": s3_browser_url(uri, s3_settings.endpoint_url, prefix=False)},
             dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index)

    url = link.get_link(op, ti_key=ti)
    assert url == f"{s3_settings.endpoint_url}/{s3_bucket}/{key}" and "?" not in url
    # the path names the object a reader with S3 access gets (moto refuses anonymous readers: 403)
    bucket, _, obj = url.removeprefix(f"{s3_settings.endpoint_url}/").partition("/")
    got = s3_settings.client().get_object(Bucket=bucket, Key=obj)
    assert got["Body"].read() == page and got["ContentType"].startswith("text/html")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=30)
    assert refused.value.code == 403  # nothing in the link grants access by itself
    other = ti._replace(run_id="manual__2")
    assert link.get_link(op, ti_key=other) == ""  # another run's export: not this one's report
    assert s3_browser_url(uri, prefix=False) == f"https://s3.console.aws.amazon.com/s3/object/{s3_bucket}?prefix={key}"
