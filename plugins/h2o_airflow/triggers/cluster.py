"""Deferrable wait for an H2O cluster to be ready, for any backend."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class H2OClusterReadyTrigger(BaseTrigger):
    """
    Wait, in the triggerer, until the H2O cloud reports all nodes with consensus.

    Yields one event: ``{"status": "ready" | "failed" | "timeout", "cluster": ..., "reason":
    ..., "message": ...}``. A failure (a node exited, a pod in CrashLoopBackOff, a cloud that
    stays incomplete) is reported at once, not after the timeout; so is any error of the
    trigger itself (an API error, a bug), so that the task's ``execute_complete`` deletes the
    cluster. Cancelled (``on_kill``), it deletes nothing: Airflow 3.3 also cancels a trigger
    that moves to another triggerer after a missed heartbeat, whose wait goes on there; an
    abandoned cluster is the teardown's and the janitor's.

    :param cluster: the ``ClusterInfo`` as a dict.
    :param timeout_s: give up after this many seconds.
    :param poll_s: seconds between two observations (Kubernetes: of the watched pods, and of the
        leader's ``/3/Cloud`` once one pod leads; the API server is not polled).
    :param formation_timeout_s: after this, an incomplete cloud is a failure.
    :param grace_s: how long the cluster may not be observable (API errors) before the wait fails.
    :param kubernetes_conn_id: connection for the Kubernetes backend.
    """

    def __init__(self, cluster: dict[str, Any], timeout_s: float = 300.0, poll_s: float = 0.5,
                 formation_timeout_s: float | None = None, started_at: float | None = None,
                 kubernetes_conn_id: str = "kubernetes_default", grace_s: float = 60.0) -> None:
        super().__init__()
        self.grace_s = grace_s
        self.cluster = cluster
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.formation_timeout_s = formation_timeout_s
        self.started_at = started_at if started_at is not None else time.time()
        self.kubernetes_conn_id = kubernetes_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__name__}",
            {"cluster": self.cluster, "timeout_s": self.timeout_s, "poll_s": self.poll_s,
             "formation_timeout_s": self.formation_timeout_s, "started_at": self.started_at,
             "kubernetes_conn_id": self.kubernetes_conn_id, "grace_s": self.grace_s},
        )

    def _backend(self) -> Any:
        from h2o_airflow.backends import backend_for_cluster
        from h2o_tasks.cluster import ClusterInfo

        return backend_for_cluster(ClusterInfo.from_dict(self.cluster), self.kubernetes_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            async for event in self._wait():
                yield event
        except Exception as exc:  # reported, so that the task deletes the cluster (a raise here would leak it)
            self.log.exception("Waiting for cluster %s failed", self.cluster.get("name"))
            yield TriggerEvent({"cluster": self.cluster, "status": "failed", "reason": "TriggerError",
                                "message": f"{type(exc).__name__}: {exc}", "cloud_size": 0,
                                "elapsed_s": round(time.time() - self.started_at, 2)})

    async def _wait(self) -> AsyncIterator[TriggerEvent]:
        from h2o_tasks.cluster import ClusterInfo

        backend = self._backend()
        info = ClusterInfo.from_dict(self.cluster)
        try:
            if info.backend == "kubernetes":  # the provider's async hook: the pods are watched, not polled
                from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

                conn_id = info.kubernetes_conn_id or self.kubernetes_conn_id  # the one the cluster was made with
                async with AsyncKubernetesHook(conn_id=conn_id).get_conn() as api:
                    async for event in self._follow(backend, api, info):
                        yield event
            else:
                async for event in self._follow(backend, None, info):
                    yield event
        finally:  # a port-forward opened here ends here
            await asyncio.to_thread(backend.close)

    async def _follow(self, backend: Any, api: Any, info: Any) -> AsyncIterator[TriggerEvent]:
        """The backend's observations until ready, failed or timed out; yield one event. An
        observation that breaks (API errors) starts again, for ``grace_s`` at most."""
        from h2o_tasks.errors import ClusterError

        unobservable_since: float | None = None
        while True:
            try:
                observations = backend.aobserve(api, info, self.started_at, self.formation_timeout_s, self.poll_s)
                async with contextlib.aclosing(observations):  # its watch ends with the wait
                    async for st in observations:
                        unobservable_since = None
                        elapsed = time.time() - self.started_at
                        event = {"cluster": self.cluster, "reason": st.reason, "message": st.message,
                                 "cloud_size": st.cloud_size, "elapsed_s": round(elapsed, 2)}
                        if st.ready or st.failed or elapsed > self.timeout_s:
                            status = "ready" if st.ready else "failed" if st.failed else "timeout"
                            yield TriggerEvent({**event, "status": status})
                            return
            except ClusterError as exc:  # e.g. a port-forward the API server forbids: waiting cannot help
                yield TriggerEvent({"cluster": self.cluster, "status": "failed", "reason": exc.reason,
                                    "message": str(exc), "cloud_size": 0,
                                    "elapsed_s": round(time.time() - self.started_at, 2)})
                return
            except Exception as exc:  # an API server restarting: observed again, for the grace at most
                unobservable_since = unobservable_since or time.time()
                if time.time() - unobservable_since < self.grace_s and time.time() - self.started_at <= self.timeout_s:
                    self.log.warning("Cannot observe cluster %s (%s): trying again", self.cluster.get("name"), exc)
                    await asyncio.sleep(max(self.poll_s, 1.0))
                    continue
                raise

    async def on_kill(self) -> None:
        """Cancelled: the cluster is left to the task's teardown and the janitor (see the class docstring)."""
        self.log.info("Wait for cluster %s cancelled; the cluster is left to the teardown and the janitor",
                      self.cluster.get("name"))
