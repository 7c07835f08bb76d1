"""Registers the extra links with Airflow (the plugins folder is scanned for this)."""

from airflow.plugins_manager import AirflowPlugin

from h2o_airflow.links import H2OFlowLink, H2OModelReportLink


class H2OAirflowPlugin(AirflowPlugin):
    name = "h2o_airflow"
    operator_extra_links = [H2OFlowLink(), H2OModelReportLink()]
