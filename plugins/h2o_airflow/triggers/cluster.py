"""Deferrable wait for an H2O cluster to be ready, for any backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class H2OClusterReadyTrigger(BaseTrigger):
    """
    Wait, in the triggerer, until the H2O cloud reports all nodes with consensus.

    Yields one event: ``{"status": "ready" | "failed" | "timeout", "cluster": ..., "reason":
    ..., "message": ...}``. A failure (a node exited, a pod in CrashLoopBackOff, a cloud that
    stays incomplete) is reported at once, not after the timeout.

    :param cluster: the ``ClusterInfo`` as a dict.
    :param timeout_s: give up after this many seconds.
    :param poll_s: seconds between two observations.
    :param formation_timeout_s: after this, an incomplete cloud is a failure.
    :param delete_on_kill: delete the cluster if the waiting task is killed.
    :param kubernetes_conn_id: connection for the Kubernetes backend.
    """

    def __init__(self, cluster: dict[str, Any], timeout_s: float = 300.0, poll_s: float = 0.1,
                 formation_timeout_s: float | None = None, delete_on_kill: bool = True,
                 started_at: float | None = None, kubernetes_conn_id: str = "kubernetes_default") -> None:
        super().__init__()
        self.cluster = cluster
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.formation_timeout_s = formation_timeout_s
        self.delete_on_kill = delete_on_kill
        self.started_at = started_at if started_at is not None else time.time()
        self.kubernetes_conn_id = kubernetes_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__name__}",
            {"cluster": self.cluster, "timeout_s": self.timeout_s, "poll_s": self.poll_s,
             "formation_timeout_s": self.formation_timeout_s, "delete_on_kill": self.delete_on_kill,
             "started_at": self.started_at, "kubernetes_conn_id": self.kubernetes_conn_id},
        )

    def _backend(self) -> Any:
        from h2o_airflow.backends import backend_for_cluster

        return backend_for_cluster(self.cluster, self.kubernetes_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from h2o_tasks.cluster import ClusterInfo

        backend = self._backend()
        info = ClusterInfo.from_dict(self.cluster)
        try:
            if hasattr(backend, "astatus"):  # Kubernetes: the provider's async hook, no thread per poll
                from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

                async with AsyncKubernetesHook(conn_id=self.kubernetes_conn_id).get_conn() as api:
                    async for event in self._poll(lambda elapsed: backend.astatus(api, info, elapsed,
                                                                                  self.formation_timeout_s)):
                        yield event
            else:
                async for event in self._poll(lambda elapsed: asyncio.to_thread(
                        backend.status, info, elapsed, self.formation_timeout_s)):
                    yield event
        finally:  # a port-forward opened here ends here
            close = getattr(backend, "close", None)
            if close is not None:
                await asyncio.to_thread(close)

    async def _poll(self, observe: Callable[[float], Awaitable[Any]]) -> AsyncIterator[TriggerEvent]:
        """Observe every ``poll_s`` until ready, failed or timed out; yield one event."""
        from h2o_tasks.errors import ClusterError

        while True:
            elapsed = time.time() - self.started_at
            try:
                st = await observe(elapsed)
            except ClusterError as exc:  # e.g. a port-forward the API server forbids: waiting cannot help
                yield TriggerEvent({"cluster": self.cluster, "status": "failed", "reason": exc.reason,
                                    "message": str(exc), "cloud_size": 0, "elapsed_s": round(elapsed, 2)})
                return
            event = {"cluster": self.cluster, "reason": st.reason, "message": st.message,
                     "cloud_size": st.cloud_size, "elapsed_s": round(elapsed, 2)}
            if st.ready:
                yield TriggerEvent({**event, "status": "ready"})
                return
            if st.failed:
                yield TriggerEvent({**event, "status": "failed"})
                return
            if elapsed > self.timeout_s:
                yield TriggerEvent({**event, "status": "timeout"})
                return
            await asyncio.sleep(self.poll_s)

    async def on_kill(self) -> None:
        """The waiting task was killed: delete its cluster so nothing is left running."""
        if self.delete_on_kill:
            from h2o_tasks.cluster import ClusterInfo

            await asyncio.to_thread(self._backend().delete, ClusterInfo.from_dict(self.cluster))
