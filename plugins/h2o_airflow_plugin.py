"""Registers the extra links and the model report view with Airflow (the plugins folder is scanned for this)."""

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from h2o_airflow.links import H2OFlowLink, H2OModelReportLink


class _ReportApp:
    """The report view's FastAPI app, imported only when read: the API server reads it, while the other
    components load this plugin too, and its imports (Airflow's API security) take seconds."""

    def __get__(self, obj: Any, owner: Any) -> list[dict[str, Any]]:
        from h2o_airflow.links import REPORT_VIEW_PREFIX
        from h2o_airflow.report_view import app

        return [{"app": app, "url_prefix": REPORT_VIEW_PREFIX, "name": "H2O model reports"}]


class H2OAirflowPlugin(AirflowPlugin):
    name = "h2o_airflow"
    operator_extra_links = [H2OFlowLink(), H2OModelReportLink()]
    fastapi_apps = _ReportApp()
