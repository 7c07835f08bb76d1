"""Operator extra links: H2O Flow on the run's cluster, the diagnostics a failed run left, the model report."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

XCOM_CLUSTER_KEY = "h2o_cluster"
XCOM_DIAGNOSTICS_KEY = "h2o_diagnostics"
XCOM_ERROR_KEY = "h2o_error"
XCOM_REPORT_KEY = "h2o_report"
VIEWS_PREFIX = "/h2o"  # where the plugin mounts its pages (h2o_airflow.views) on Airflow's API server


class H2OFlowLink(BaseOperatorLink):
    """Opens H2O Flow on the cluster that the task created (while it exists): through the run's Ingress
    if it has one; on Kubernetes without one, the plugin's page that gives the exact ``kubectl
    port-forward`` (a browser outside the cluster cannot reach its address); else at the REST API's URL.
    Flow asks for the cluster's REST login; the create task's log says where to read the password (never
    the password itself)."""

    name = "H2O Flow"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.providers.common.compat.sdk import XCom

        from h2o_tasks.cluster import ClusterInfo

        pushed = XCom.get_value(key=XCOM_CLUSTER_KEY, ti_key=ti_key)
        info = ClusterInfo.from_dict(pushed) if pushed else None
        if info is None or not info.flow_url:
            return ""
        if info.backend == "kubernetes" and not info.ingress_url:
            return view_url("flow", ti_key)
        return info.flow_url


def s3_browser_url(uri: str, endpoint_url: str = "", *, prefix: bool = True) -> str:
    """Where a browser shows an S3 prefix (or, ``prefix=False``, one object): the AWS console, or the
    S3-compatible endpoint's path."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    slash = "/" if prefix else ""
    if endpoint_url:
        return f"{endpoint_url.rstrip('/')}/{bucket}/{key}{slash}"
    page = "buckets" if prefix else "object"
    return f"https://s3.console.aws.amazon.com/s3/{page}/{bucket}?prefix={key}{slash}"


class H2ODiagnosticsLink(BaseOperatorLink):
    """Opens the diagnostics bundle a failed run left (logs, events, statuses, errors)."""

    name = "Diagnostics"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.providers.common.compat.sdk import XCom

        uri = XCom.get_value(key=XCOM_DIAGNOSTICS_KEY, ti_key=ti_key)
        return s3_browser_url(uri, getattr(operator, "s3_browser_endpoint", "")) if uri else ""


class H2OModelReportLink(BaseOperatorLink):
    """Opens the exported version's report (one self-contained HTML page) through this plugin's view on
    Airflow's API server (:mod:`h2o_airflow.views`): behind Airflow's login and the DAG's XCom
    permission, for users with no access to the bucket. The link holds no credential: Airflow 3's task
    runner stores a task's links in its XCom when the task ends, so a pre-signed URL (a bearer grant,
    with the connection's session token in it) would sit in the metadata database."""

    name = "Model report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.providers.common.compat.sdk import XCom

        return view_url("reports", ti_key) if XCom.get_value(key=XCOM_REPORT_KEY, ti_key=ti_key) else ""


def view_url(view: str, ti_key: Any) -> str:
    """The URL of one of the plugin's pages (:mod:`h2o_airflow.views`) for a task instance, on the API
    server's ``[api] base_url`` (a path on the UI's own origin when that is unset)."""
    from urllib.parse import quote

    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="").rstrip("/")
    path = "/".join(quote(p, safe="") for p in (view, ti_key.dag_id, ti_key.run_id, ti_key.task_id))
    return f"{base}{VIEWS_PREFIX}/{path}" + (f"?map_index={ti_key.map_index}" if ti_key.map_index >= 0 else "")
