"""Cluster backends behind one interface (see :mod:`h2o_tasks.cluster.base`)."""

from __future__ import annotations

from typing import Any

from h2o_tasks.cluster.base import ClusterBackend, ClusterInfo, ClusterSpec, ClusterStatus
from h2o_tasks.errors import ConfigError

__all__ = ["ClusterBackend", "ClusterInfo", "ClusterSpec", "ClusterStatus", "get_backend"]


def get_backend(name: str, **kwargs: Any) -> ClusterBackend:
    """The backend called ``name`` (``cluster.backend`` in a pipeline file)."""
    if name == "local":
        from h2o_tasks.cluster.local import LocalBackend

        return LocalBackend(**kwargs)
    if name == "kubernetes":
        from h2o_tasks.cluster.kubernetes import KubernetesBackend

        if kwargs.get("api_client") is None:
            kwargs["api_client"] = default_api_client()
        return KubernetesBackend(**kwargs)
    raise ConfigError("cluster.backend", name, "is not a known backend", "use local or kubernetes")


def default_api_client() -> Any:
    """A Kubernetes API client from ``$KUBECONFIG``/``~/.kube/config``, or in-cluster config."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()
