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
        raise ConfigError("cluster.backend", name, "is not available in this version yet",
                          "use backend: local (the Kubernetes backend is being built)")
    raise ConfigError("cluster.backend", name, "is not a known backend", "use local or kubernetes")
