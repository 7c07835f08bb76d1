"""The ``kubernetes`` backend: one StatefulSet + headless Service (+ client Service, PDB,
NetworkPolicy) per run, created idempotently, watched until the leader's cloud is whole,
and deleted as one unit by label.

It takes a ``kubernetes.client.ApiClient``; the Airflow side builds it from the cncf
provider's ``KubernetesHook`` (connection ``kubernetes_default``).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from h2o_tasks.cluster import manifests
from h2o_tasks.cluster.base import ClusterInfo, ClusterSpec, ClusterStatus
from h2o_tasks.cluster.pods import PodObservation, evaluate, leader
from h2o_tasks.cluster.portforward import PortForward, PortForwardError
from h2o_tasks.cluster.readiness import fetch_cloud, poll_until_ready
from h2o_tasks.config import ENDPOINT_MODES
from h2o_tasks.errors import ClusterError
from h2o_tasks.naming import MANAGED_BY

H2O_PORT = 54321


class KubernetesBackend:
    """
    :param api_client: a configured ``kubernetes.client.ApiClient``.
    :param namespace: default namespace (a pipeline's ``cluster.namespace`` wins at create).
    :param endpoint_mode: how the caller reaches the leader: ``service`` (the client Service's
        DNS name: Airflow runs in the cluster), ``pod-ip`` (the leader pod's address: a flat
        network) or ``port-forward`` (Airflow outside the cluster: each process opens its own
        forward to the ready leader through the API server, see ``local_endpoint``).
    :param info_extra: merged into every ``ClusterInfo.extra`` (e.g. the Airflow connection id).

    In ``port-forward`` mode ``ClusterInfo.url`` and ``endpoint()`` stay the client Service's
    URL (what may go to XCom); only ``local_endpoint()`` returns the process-local forward,
    which ``close()`` ends.
    """

    name = "kubernetes"

    def __init__(self, api_client: Any, namespace: str = "h2o", endpoint_mode: str = "service",
                 cluster_domain: str = "cluster.local", fetch_cloud: Any = fetch_cloud,
                 info_extra: dict[str, Any] | None = None):
        from kubernetes import client

        if endpoint_mode not in ENDPOINT_MODES:
            raise ValueError(f"endpoint_mode {endpoint_mode!r}: use one of {ENDPOINT_MODES}")
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.policy = client.PolicyV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        self.namespace = namespace
        self.endpoint_mode = endpoint_mode
        self.cluster_domain = cluster_domain
        self.fetch_cloud = fetch_cloud
        self.info_extra = dict(info_extra or {})
        self._forward: PortForward | None = None
        self._forward_key: tuple[str, str, str] = ("", "", "")
        self._forward_lock = threading.Lock()

    # --------------------------------------------------------------- helpers
    def _create_fn(self, kind: str) -> Any:
        return {
            "StatefulSet": self.apps.create_namespaced_stateful_set,
            "Service": self.core.create_namespaced_service,
            "PodDisruptionBudget": self.policy.create_namespaced_pod_disruption_budget,
            "NetworkPolicy": self.networking.create_namespaced_network_policy,
        }[kind]

    def _selector(self, name: str) -> str:
        return f"app.kubernetes.io/instance={name},app.kubernetes.io/managed-by={MANAGED_BY}"

    def _info(self, name: str, namespace: str, replicas: int, expires_at: str) -> ClusterInfo:
        _, client_svc = manifests.service_names(name)
        url = f"http://{client_svc}.{namespace}.svc.{self.cluster_domain}:{H2O_PORT}"
        return ClusterInfo(name=name, backend=self.name, url=url, replicas=replicas, namespace=namespace,
                           expires_at=expires_at, extra={**self.info_extra, "endpoint_mode": self.endpoint_mode})

    def _pods(self, name: str, namespace: str) -> list[PodObservation]:
        pods = self.core.list_namespaced_pod(namespace, label_selector=self._selector(name))
        return _observations(self.api_client.sanitize_for_serialization(p) for p in pods.items)

    def _read_sts(self, name: str, namespace: str) -> Any | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.apps.read_namespaced_stateful_set(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # ------------------------------------------------------------- interface
    def create(self, spec: ClusterSpec) -> ClusterInfo:
        """Apply the run's objects; re-attach when they exist; replace a failed cluster of this run."""
        from kubernetes.client.exceptions import ApiException

        ns = spec.config.namespace
        existing = self._read_sts(spec.name, ns)
        if existing is not None:
            labels = existing.metadata.labels or {}
            if labels.get("h2o-airflow/run-id") != spec.labels["h2o-airflow/run-id"]:
                raise ClusterError(f"StatefulSet {ns}/{spec.name} exists but belongs to another run "
                                   f"({labels.get('h2o-airflow/run-id')})", reason="NameClash")
            broken = [p for p in self._pods(spec.name, ns) if p.failure]
            if not broken:
                expires = (existing.metadata.annotations or {}).get(manifests.EXPIRES_ANNOTATION, "")
                return self._info(spec.name, ns, existing.spec.replicas, expires)
            self.delete(ClusterInfo(name=spec.name, backend=self.name, namespace=ns))
        for m in manifests.render(spec):
            try:
                self._create_fn(m.kind)(ns, m.body)
            except ApiException as exc:
                if exc.status != 409:  # AlreadyExists: a retry after a partial create
                    raise ClusterError(f"creating {m.kind} {ns}/{m.name} failed: {exc.status} {exc.reason}: "
                                       f"{(exc.body or '')[:500]}", retryable=exc.status >= 500,
                                       reason="CreateFailed") from exc
        return self._info(spec.name, ns, spec.config.replicas, spec.expires_at.isoformat() if spec.expires_at else "")

    def _leader_url(self, info: ClusterInfo, pods: list[PodObservation]) -> str:
        """The leader's URL for other processes too (never a port-forward)."""
        if self.endpoint_mode == "pod-ip":
            lead = leader(pods)
            return f"http://{lead.ip}:{H2O_PORT}" if lead and lead.ip else ""
        return info.url

    def _local_url(self, info: ClusterInfo, pods: list[PodObservation]) -> str:
        """The leader's URL for this process: a forward to the ready leader in port-forward mode."""
        if self.endpoint_mode != "port-forward":
            return self._leader_url(info, pods)
        lead = leader(pods)
        if lead is None:
            return ""
        ns = info.namespace or self.namespace
        key = (ns, lead.name, lead.ip)
        with self._forward_lock:
            if self._forward is None or self._forward_key != key or not self._forward.active:
                self.close()  # a new leader (or a restarted pod): the old forward is useless
                self._forward = PortForward(self.api_client, ns, lead.name, H2O_PORT).start()
                self._forward_key = key
            return self._forward.url

    def local_endpoint(self, info: ClusterInfo) -> str:
        """The leader's URL usable from this process; in port-forward mode it opens (or reuses)
        a forward that lives until ``close()``. Raises ``ClusterError`` when no pod leads."""
        url = self._local_url(info, self._pods(info.name, info.namespace or self.namespace))
        if not url:
            raise ClusterError(f"cluster {info.namespace or self.namespace}/{info.name} has no ready leader pod",
                               retryable=True, reason="NoLeader")
        return url

    def close(self) -> None:
        """End this process's port-forward, if any."""
        if self._forward is not None:
            self._forward.close()
            self._forward = None
            self._forward_key = ("", "", "")

    def __enter__(self) -> KubernetesBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self, info: ClusterInfo, elapsed_s: float = 0.0, formation_timeout_s: float | None = None) -> ClusterStatus:
        ns = info.namespace or self.namespace
        if self._read_sts(info.name, ns) is None:
            return ClusterStatus(info.name, exists=False, failed=True, reason="NotFound",
                                 message=f"StatefulSet {ns}/{info.name} does not exist")
        pods = self._pods(info.name, ns)
        url = self._leader_url(info, pods)
        try:
            local = self._local_url(info, pods) if leader(pods) else ""
        except PortForwardError as exc:
            if exc.reason == "PortForwardForbidden":
                raise
            local = ""  # the API server or kubelet hiccupped: the next poll opens a new forward
        cloud = self.fetch_cloud(local) if local else None
        return _status(info, pods, cloud, url, elapsed_s, formation_timeout_s)

    async def astatus(self, api: Any, info: ClusterInfo, elapsed_s: float = 0.0,
                      formation_timeout_s: float | None = None) -> ClusterStatus:
        """``status`` for the triggerer: the API calls go through ``api``, a ``kubernetes_asyncio``
        ApiClient (the cncf provider's ``AsyncKubernetesHook.get_conn()``), without a thread.
        A port-forward is a blocking socket relay: that mode observes in a thread instead."""
        import asyncio

        if self.endpoint_mode == "port-forward":
            return await asyncio.to_thread(self.status, info, elapsed_s, formation_timeout_s)
        from kubernetes_asyncio import client as aclient
        from kubernetes_asyncio.client.exceptions import ApiException

        ns = info.namespace or self.namespace
        try:
            await aclient.AppsV1Api(api).read_namespaced_stateful_set(info.name, ns)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return ClusterStatus(info.name, exists=False, failed=True, reason="NotFound",
                                 message=f"StatefulSet {ns}/{info.name} does not exist")
        listed = await aclient.CoreV1Api(api).list_namespaced_pod(ns, label_selector=self._selector(info.name))
        pods = _observations(api.sanitize_for_serialization(p) for p in listed.items)
        url = self._leader_url(info, pods)
        cloud = await asyncio.to_thread(self.fetch_cloud, url) if url and leader(pods) else None
        return _status(info, pods, cloud, url, elapsed_s, formation_timeout_s)

    def wait_ready(self, info: ClusterInfo, timeout_s: float, poll_s: float = 0.5) -> ClusterStatus:
        return poll_until_ready(info.name, lambda elapsed: self.status(info, elapsed_s=elapsed), timeout_s, poll_s)

    def endpoint(self, info: ClusterInfo) -> str:
        """The leader's URL as other processes may use it (XCom): never a process-local forward."""
        return self._leader_url(info, self._pods(info.name, info.namespace or self.namespace))

    def delete(self, info: ClusterInfo | str, timeout_s: float = 120.0) -> bool:
        """Delete every object of the cluster (foreground), then wait until its pods are gone."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        self.close()
        name = info if isinstance(info, str) else info.name
        ns = (None if isinstance(info, str) else info.namespace) or self.namespace
        selector = self._selector(name)
        body = client.V1DeleteOptions(propagation_policy="Foreground")
        found = False
        listers = [
            (self.apps.list_namespaced_stateful_set, self.apps.delete_namespaced_stateful_set),
            (self.core.list_namespaced_service, self.core.delete_namespaced_service),
            (self.policy.list_namespaced_pod_disruption_budget, self.policy.delete_namespaced_pod_disruption_budget),
            (self.networking.list_namespaced_network_policy, self.networking.delete_namespaced_network_policy),
        ]
        for lister, deleter in listers:
            for obj in lister(ns, label_selector=selector).items:
                found = True
                try:
                    deleter(obj.metadata.name, ns, body=body)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
        deadline = time.monotonic() + timeout_s
        while True:
            pods = self.core.list_namespaced_pod(ns, label_selector=selector).items
            sts = self._read_sts(name, ns)
            if not pods and sts is None:
                return found or bool(pods)
            found = True
            if time.monotonic() > deadline:
                raise ClusterError(f"cluster {ns}/{name} still has {len(pods)} pod(s) after {timeout_s:.0f}s",
                                   retryable=True, reason="DeleteTimeout")
            time.sleep(0.5)

    def list_clusters(self) -> list[ClusterInfo]:
        items = self.apps.list_namespaced_stateful_set(self.namespace,
                                                       label_selector=f"app.kubernetes.io/managed-by={MANAGED_BY}").items
        return [self._info(s.metadata.name, self.namespace, s.spec.replicas or 0,
                           (s.metadata.annotations or {}).get(manifests.EXPIRES_ANNOTATION, "")) for s in items]

    def list_expired(self, now: datetime | None = None) -> list[ClusterInfo]:
        now = now or datetime.now(UTC)
        return [c for c in self.list_clusters() if c.expires_at and datetime.fromisoformat(c.expires_at) <= now]


def _observations(raw_pods: Any) -> list[PodObservation]:
    """The pods as the readiness decision sees them: terminating pods are already gone."""
    return sorted((PodObservation.from_pod(p) for p in raw_pods if not p["metadata"].get("deletionTimestamp")),
                  key=lambda p: p.name)


def _status(info: ClusterInfo, pods: list[PodObservation], cloud: Any, url: str, elapsed_s: float,
            formation_timeout_s: float | None) -> ClusterStatus:
    d = evaluate(pods, info.replicas, cloud, elapsed_s=elapsed_s, formation_timeout_s=formation_timeout_s)
    return ClusterStatus(info.name, exists=True, ready=d.ready, failed=d.failed, reason=d.reason, message=d.message,
                         cloud_size=cloud.cloud_size if cloud else 0, expected_size=info.replicas, url=url)
