"""Cluster backends built from Airflow connections (``kubernetes_default`` for Kubernetes)."""

from __future__ import annotations

from typing import Any

from h2o_tasks.cluster import ClusterBackend, ClusterInfo, get_backend

DEFAULT_KUBERNETES_CONN_ID = "kubernetes_default"


def backend_for(name: str, *, kubernetes_conn_id: str = DEFAULT_KUBERNETES_CONN_ID, namespace: str = "",
                endpoint_mode: str = "service", cluster_domain: str = "") -> ClusterBackend:
    """The backend called ``name``; for Kubernetes, its API client comes from the cncf provider's hook."""
    if name != "kubernetes":
        return get_backend(name)
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    hook = KubernetesHook(conn_id=kubernetes_conn_id)
    kwargs: dict[str, Any] = {"api_client": hook.api_client, "endpoint_mode": endpoint_mode,
                              "conn_id": kubernetes_conn_id}
    if namespace:
        kwargs["namespace"] = namespace
    if cluster_domain:
        kwargs["cluster_domain"] = cluster_domain
    return get_backend(name, **kwargs)


def backend_for_cluster(info: ClusterInfo, kubernetes_conn_id: str = "") -> ClusterBackend:
    """The backend of a created cluster, with the connection it was created with (or ``kubernetes_conn_id``)."""
    if info.backend == "local":
        return get_backend("local", state_dir=info.state_dir or None)
    return backend_for(info.backend, kubernetes_conn_id=info.kubernetes_conn_id or kubernetes_conn_id
                       or DEFAULT_KUBERNETES_CONN_ID, namespace=info.namespace, endpoint_mode=info.endpoint_mode)
