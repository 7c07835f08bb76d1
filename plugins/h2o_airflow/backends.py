"""Cluster backends built from Airflow connections (``kubernetes_default`` for Kubernetes)."""

from __future__ import annotations

from typing import Any

from h2o_tasks.cluster import ClusterBackend, get_backend


def backend_for(name: str, *, kubernetes_conn_id: str = "kubernetes_default", namespace: str = "",
                endpoint_mode: str = "service") -> ClusterBackend:
    """The backend called ``name``; for Kubernetes, its API client comes from the cncf provider's hook."""
    if name != "kubernetes":
        return get_backend(name)
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    hook = KubernetesHook(conn_id=kubernetes_conn_id)
    kwargs: dict[str, Any] = {"api_client": hook.api_client, "endpoint_mode": endpoint_mode,
                              "info_extra": {"kubernetes_conn_id": kubernetes_conn_id}}
    if namespace:
        kwargs["namespace"] = namespace
    return get_backend(name, **kwargs)


def backend_for_cluster(info: dict[str, Any], kubernetes_conn_id: str = "kubernetes_default") -> ClusterBackend:
    """The backend of a cluster described by its ``ClusterInfo`` dict (from XCom or a trigger)."""
    return backend_for(info["backend"], kubernetes_conn_id=kubernetes_conn_id, namespace=info.get("namespace", ""),
                       endpoint_mode=(info.get("extra") or {}).get("endpoint_mode", "service"))
