"""Operator extra link to the H2O Flow UI of the run's cluster."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

XCOM_CLUSTER_KEY = "h2o_cluster"


class H2OFlowLink(BaseOperatorLink):
    """Opens H2O Flow on the cluster that the task created (while it exists)."""

    name = "H2O Flow"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.providers.common.compat.sdk import XCom

        info = XCom.get_value(key=XCOM_CLUSTER_KEY, ti_key=ti_key)
        if not info or not info.get("url"):
            return ""
        return f"{info['url'].rstrip('/')}/flow/index.html"
