"""What every cluster backend is: specs in, ``ClusterInfo`` out, one interface.

Operators and DAGs only see this module, so the same pipeline runs on the local backend
(JVMs on this machine) and on Kubernetes by changing configuration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from h2o_tasks import naming, testhooks
from h2o_tasks.cluster.login import Login
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
    ceiling_at: datetime | None = None

    @classmethod
    def for_run(cls, pipeline: str, dag_id: str, run_id: str, config: ClusterConfig,
                s3_endpoint: str = "", now: datetime | None = None) -> ClusterSpec:
        now = now or datetime.now(UTC)
        return cls(name=naming.cluster_name(pipeline, dag_id, run_id), pipeline=pipeline, dag_id=dag_id,
                   run_id=run_id, config=config, s3_endpoint=s3_endpoint,
                   expires_at=now + ttl(config), ceiling_at=now + ceiling(config))

    @property
    def labels(self) -> dict[str, str]:
        return naming.labels(self.name, self.pipeline, self.dag_id, self.run_id)


def ttl(config: ClusterConfig) -> timedelta:
    """How long a cluster lives after its creation and after each task start (``cluster.ttl_minutes``)."""
    seconds, _ = testhooks.cluster_seconds()
    return timedelta(seconds=seconds) if seconds else timedelta(minutes=config.ttl_minutes)


def ceiling(config: ClusterConfig) -> timedelta:
    """How long a cluster may live at most, from its creation (``cluster.max_run_minutes``)."""
    _, seconds = testhooks.cluster_seconds()
    return timedelta(seconds=seconds) if seconds else timedelta(minutes=config.max_run_minutes)


EXTEND_REFUSED = ("Reaped", "Busy")  # reasons an extend failed that a task must not go on after
GONE = ("Reaped", "NotFound")  # a cluster deleted, or being deleted, under its run: a retry makes it again


def extended_expiry(expires_at: str, ceiling_at: str, by: timedelta, now: datetime | None = None) -> str:
    """The expiry after a task starts: ``now + by`` if later than the current one, never past the ceiling."""
    now = now or datetime.now(UTC)
    current = datetime.fromisoformat(expires_at) if expires_at else now
    new = max(current, now + by)
    if ceiling_at:
        new = min(new, datetime.fromisoformat(ceiling_at))
    return new.isoformat()


@dataclass(frozen=True)
class ClusterInfo:
    """Where a created cluster is and how to reach it: the one value tasks pass on (one XCom).

    The teardown, the janitor, the watch and the hooks all work from it, never from the
    pipeline file as it is now (which may have changed since the cluster was created).

    :param endpoint_mode: how Airflow reaches the leader on Kubernetes (``service``,
        ``pod-ip``, ``port-forward``); ``local`` for the local backend.
    :param kubernetes_conn_id: the connection the cluster was created with.
    :param state_dir: the local backend's state directory of this cluster.
    :param s3_from_secret: the nodes read their S3 credentials from a Secret (``cluster.s3_secret``):
        none are sent over the REST API.
    :param ingress_url: Kubernetes: the run's Ingress (``cluster.ingress``), where a browser opens Flow.
    :param uid: which incarnation of the run's cluster this is (the StatefulSet's uid; the local
        state's creation time): a cluster made again under the same name has another.
    :param extended_at: when a task last extended it (changes at every extend, even one that leaves
        the expiry where it was): with ``expires_at`` and ``uid``, the version the janitor decides on.
    :param reaping_since: when a janitor marked it for deletion (no task extends it after that).
    :param tls_secret: Kubernetes, ``cluster.tls``: the Secret holding the CA its HTTPS clients trust
        (``tls_ca_key`` its key); empty for plain HTTP.
    """

    name: str
    backend: str
    url: str = ""
    replicas: int = 0
    namespace: str = ""
    expires_at: str = ""
    ceiling_at: str = ""
    endpoint_mode: str = "service"
    kubernetes_conn_id: str = ""
    state_dir: str = ""
    dag_id: str = ""
    run_id: str = ""
    s3_from_secret: bool = False
    ingress_url: str = ""
    uid: str = ""
    extended_at: str = ""
    reaping_since: str = ""
    tls_secret: str = ""
    tls_ca_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterInfo:
        """From XCom; an ``extra`` mapping (XComs of earlier releases) fills the typed fields it held."""
        known = {f.name for f in dataclasses.fields(cls)}
        legacy = {k: v for k, v in (data.get("extra") or {}).items() if k in known}
        return cls(**{**legacy, **{k: v for k, v in data.items() if k in known}})

    @property
    def flow_url(self) -> str:
        """H2O Flow for a browser: through the run's Ingress if it has one, else at the REST API's URL."""
        base = self.ingress_url or self.url
        return f"{base.rstrip('/')}/flow/index.html" if base else ""


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
    """The interface every backend implements (``local``, ``kubernetes``); callers use nothing else."""

    name: str
    #: how long :meth:`login` asks again a store that does not answer (the operators set it to
    #: ``cluster.unobservable_grace_s``, the time the watch waits for a cluster it cannot observe)
    login_patience_s: float

    def create(self, spec: ClusterSpec) -> ClusterInfo:
        """Create the cluster, or re-attach to this run's existing one (idempotent, every object reconciled).

        A failure part-way leaves nothing behind: what was made is deleted before the error is raised.
        """

    def status(self, info: ClusterInfo, elapsed_s: float = 0.0,
               formation_timeout_s: float | None = None) -> ClusterStatus:
        """Observe the cluster once, without waiting (``elapsed_s`` since creation)."""

    async def astatus(self, api: Any, info: ClusterInfo, elapsed_s: float = 0.0,
                      formation_timeout_s: float | None = None) -> ClusterStatus:
        """``status`` for the triggerer's event loop (``api``: the async Kubernetes client, or None)."""

    def aobserve(self, api: Any, info: ClusterInfo, started_at: float, formation_timeout_s: float | None = None,
                 tick_s: float = 0.5) -> AsyncIterator[ClusterStatus]:
        """Observations every ``tick_s`` for the triggerer's wait (``started_at``: the creation's epoch
        seconds), as cheaply as the backend can: Kubernetes watches the pods instead of polling."""

    def wait_ready(self, info: ClusterInfo, timeout_s: float, poll_s: float = 0.2) -> ClusterStatus:
        """Block until ready; raise ``ClusterError`` on a failure, ``ClusterNotReadyError`` on timeout."""

    def endpoint(self, info: ClusterInfo) -> str:
        """The URL of the leader's REST API that other processes may use (it goes to XCom)."""

    def local_endpoint(self, info: ClusterInfo) -> str:
        """The leader's URL for this process (a port-forward of its own where the cluster needs one)."""

    def login(self, info: ClusterInfo) -> Login | None:
        """The cluster's REST login (made at create, kept by the backend, never in ``info``), or None
        for a cluster made without one."""

    def extend(self, info: ClusterInfo, by: timedelta) -> str:
        """Push the cluster's expiry to ``now + by`` (never past its ceiling); the new expiry. Raises
        ``ClusterError`` with reason ``Reaped`` when a janitor is deleting it (the task must not go on)."""

    def delete(self, info: ClusterInfo | str, *, if_unchanged: bool = False) -> bool:
        """Delete the cluster as one unit and wait until it is gone. False if it did not exist.

        ``if_unchanged``: only if it is still the incarnation ``info`` lists, not extended since
        (``uid``, ``expires_at``, ``extended_at``): the janitor's decision, made on a listing, must
        not reap a cluster that a task has just extended nor one its run made again; atomic with
        ``extend``. False, and nothing deleted, when it changed."""

    def list_clusters(self) -> list[ClusterInfo]:
        """Every cluster this backend manages (in its namespace or state directory)."""

    def list_expired(self, now: datetime | None = None) -> list[ClusterInfo]:
        """Clusters of this backend whose time-to-live has passed."""

    def evidence(self, info: ClusterInfo, directory: Path) -> list[Path]:
        """Write what the backend knows of a failed cluster into ``directory`` (node logs, pod statuses
        and events, exit states) for a diagnostics bundle; the files written."""

    def log_secrets(self, info: ClusterInfo) -> list[str]:
        """Secrets the nodes' own logs may hold besides the login (H2O logs its arguments, a keystore's
        password among them): masked in the evidence of a diagnostics bundle."""

    def close(self) -> None:
        """Release what this process holds open for the cluster (a port-forward); the cluster stays."""


async def polled(astatus: Callable[[float], Awaitable[ClusterStatus]], started_at: float,
                 tick_s: float) -> AsyncIterator[ClusterStatus]:
    """``astatus(elapsed_s)`` every ``tick_s``: ``aobserve`` for a backend with nothing to watch."""
    import asyncio
    import time

    while True:
        yield await astatus(time.time() - started_at)
        await asyncio.sleep(tick_s)
