"""The H2O Flow extra link points at the cluster the task pushed (or nowhere once unknown)."""

from h2o_airflow import links
from h2o_airflow.links import XCOM_CLUSTER_KEY, H2OFlowLink


def test_link_from_the_cluster_xcom(monkeypatch):
    from airflow.providers.common.compat.sdk import XCom

    stored = {XCOM_CLUSTER_KEY: {"name": "h2o-x-1", "url": "http://10.0.0.5:54321/"}}
    calls = []

    def get_value(*, key, ti_key):
        calls.append((key, ti_key))
        return stored.get(key)

    monkeypatch.setattr(XCom, "get_value", staticmethod(get_value))
    link = H2OFlowLink()
    assert link.name == "H2O Flow"
    assert link.get_link(None, ti_key="ti-1") == "http://10.0.0.5:54321/flow/index.html"
    assert calls == [(XCOM_CLUSTER_KEY, "ti-1")]
    stored.clear()
    assert link.get_link(None, ti_key="ti-2") == ""
    assert links.XCOM_CLUSTER_KEY == "h2o_cluster"
