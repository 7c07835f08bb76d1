"""Operator extra links: H2O Flow on the run's cluster, the diagnostics a failed run left, the model report."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

XCOM_CLUSTER_KEY = "h2o_cluster"
XCOM_DIAGNOSTICS_KEY = "h2o_diagnostics"
XCOM_ERROR_KEY = "h2o_error"
XCOM_REPORT_KEY = "h2o_report"
REPORT_LINK_SECONDS = 3600  # how long a report link stays valid after the page that shows it was drawn


class H2OFlowLink(BaseOperatorLink):
    """Opens H2O Flow on the cluster that the task created (while it exists)."""

    name = "H2O Flow"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.providers.common.compat.sdk import XCom

        info = XCom.get_value(key=XCOM_CLUSTER_KEY, ti_key=ti_key)
        if not info or not info.get("url"):
            return ""
        return f"{info['url'].rstrip('/')}/flow/index.html"


def s3_browser_url(uri: str, endpoint_url: str = "") -> str:
    """Where a browser shows an S3 prefix: the AWS console, or the S3-compatible endpoint's path."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if endpoint_url:
        return f"{endpoint_url.rstrip('/')}/{bucket}/{key}/"
    return f"https://s3.console.aws.amazon.com/s3/buckets/{bucket}?prefix={key}/"


class H2ODiagnosticsLink(BaseOperatorLink):
    """Opens the diagnostics bundle a failed run left (logs, events, statuses, errors)."""

    name = "Diagnostics"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.providers.common.compat.sdk import XCom

        uri = XCom.get_value(key=XCOM_DIAGNOSTICS_KEY, ti_key=ti_key)
        return s3_browser_url(uri, getattr(operator, "s3_browser_endpoint", "")) if uri else ""


class H2OModelReportLink(BaseOperatorLink):
    """Opens the exported version's report (one self-contained HTML page) through a pre-signed S3 URL,
    signed with the export task's AWS connection when the link is drawn: a browser needs no S3
    credentials, and the link expires after :data:`REPORT_LINK_SECONDS`."""

    name = "Model report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.providers.common.compat.sdk import XCom

        pushed = XCom.get_value(key=XCOM_REPORT_KEY, ti_key=ti_key)
        if not pushed or not pushed.get("uri"):
            return ""
        bucket, _, key = pushed["uri"].removeprefix("s3://").partition("/")
        # SigV4: botocore presigns S3 with SigV2 by default, which regions opened since 2014 refuse
        hook = S3Hook(aws_conn_id=pushed.get("aws_conn_id") or "aws_default", config={"signature_version": "s3v4"})
        return hook.generate_presigned_url("get_object", params={"Bucket": bucket, "Key": key},
                                           expires_in=REPORT_LINK_SECONDS) or ""
