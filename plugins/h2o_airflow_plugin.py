"""Registers the extra links and the pages they open with Airflow (the plugins folder is scanned for this)."""

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from h2o_airflow.links import H2OFlowLink, H2OModelReportLink


class _Views:
    """The views' FastAPI app, imported only when read: the API server reads it, while the other
    components load this plugin too, and its imports (Airflow's API security) take seconds."""

    def __get__(self, obj: Any, owner: Any) -> list[dict[str, Any]]:
        from h2o_airflow.links import VIEWS_PREFIX
        from h2o_airflow.views import app

        return [{"app": app, "url_prefix": VIEWS_PREFIX, "name": "H2O on Airflow"}]


class H2OAirflowPlugin(AirflowPlugin):
    name = "h2o_airflow"
    operator_extra_links = [H2OFlowLink(), H2OModelReportLink()]
    fastapi_apps = _Views()
