"""What every cluster backend is: specs in, ``ClusterInfo`` out, one interface.

Operators and DAGs only see this module, so the same pipeline runs on the local backend
(JVMs on this machine) and on Kubernetes by changing configuration.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from h2o_tasks import naming
from h2o_tasks.config import ClusterConfig


@dataclass(frozen=True)
class ClusterSpec:
    """Everything needed to create one run's cluster."""

    name: str
    pipeline: str
    dag_id: str
    run_id: str
    config: ClusterConfig
    s3_endpoint: str = ""
    expires_at: datetime | None = None

    @classmethod
    def for_run(cls, pipeline: str, dag_id: str, run_id: str, config: ClusterConfig,
                s3_endpoint: str = "", now: datetime | None = None) -> ClusterSpec:
        now = now or datetime.now(UTC)
        return cls(name=naming.cluster_name(pipeline, dag_id, run_id), pipeline=pipeline, dag_id=dag_id,
                   run_id=run_id, config=config, s3_endpoint=s3_endpoint,
                   expires_at=now + timedelta(minutes=config.ttl_minutes))

    @property
    def labels(self) -> dict[str, str]:
        return naming.labels(self.name, self.pipeline, self.dag_id, self.run_id)


@dataclass(frozen=True)
class ClusterInfo:
    """Where a created cluster is: small, JSON-serialisable, pushed to XCom."""

    name: str
    backend: str
    url: str = ""
    replicas: int = 0
    namespace: str = ""
    expires_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def flow_url(self) -> str:
        return f"{self.url.rstrip('/')}/flow/index.html" if self.url else ""


@dataclass(frozen=True)
class ClusterStatus:
    """One observation of a cluster. ``failed`` with a ``reason`` means waiting is pointless."""

    name: str
    exists: bool
    ready: bool = False
    failed: bool = False
    reason: str = ""
    message: str = ""
    cloud_size: int = 0
    expected_size: int = 0
    url: str = ""


class ClusterBackend(Protocol):
    """The interface every backend implements (``local``, ``kubernetes``)."""

    name: str

    def create(self, spec: ClusterSpec) -> ClusterInfo:
        """Create the cluster, or re-attach to this run's existing one (idempotent)."""

    def status(self, info: ClusterInfo, elapsed_s: float = 0.0,
               formation_timeout_s: float | None = None) -> ClusterStatus:
        """Observe the cluster once, without waiting (``elapsed_s`` since creation)."""

    def wait_ready(self, info: ClusterInfo, timeout_s: float, poll_s: float = 0.2) -> ClusterStatus:
        """Block until ready; raise ``ClusterError`` on a failure, ``ClusterNotReadyError`` on timeout."""

    def endpoint(self, info: ClusterInfo) -> str:
        """The URL of the leader's REST API as seen from the caller."""

    def delete(self, info: ClusterInfo | str) -> bool:
        """Delete the cluster as one unit and wait until it is gone. False if it did not exist."""

    def list_expired(self, now: datetime | None = None) -> list[ClusterInfo]:
        """Clusters of this backend whose time-to-live has passed."""
