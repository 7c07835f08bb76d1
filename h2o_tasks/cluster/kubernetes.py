"""The ``kubernetes`` backend: one StatefulSet + headless Service (+ client Service, PDB,
NetworkPolicy) per run, all owned by an anchor Job whose deadline is the cluster's ceiling,
created idempotently (a re-attach reconciles every object), watched until the leader's cloud
is whole, and deleted as one unit by label.

It takes a ``kubernetes.client.ApiClient``; the Airflow side builds it from the cncf
provider's ``KubernetesHook`` (connection ``kubernetes_default``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from h2o_tasks.cluster import manifests, podwatch
from h2o_tasks.cluster.base import ClusterInfo, ClusterSpec, ClusterStatus, extended_expiry
from h2o_tasks.cluster.login import PASSWORD_FILE, REALM_FILE, USER, Login
from h2o_tasks.cluster.pods import PodObservation, evaluate, leader
from h2o_tasks.cluster.portforward import PortForward, PortForwardError
from h2o_tasks.cluster.readiness import fetch_cloud, poll_until_ready
from h2o_tasks.config import ENDPOINT_MODES
from h2o_tasks.errors import ClusterError
from h2o_tasks.naming import MANAGED_BY

# The readiness probe fails a leader on one answer later than 5 s (a GC pause, a loaded node) and
# passes it again at the next probe, 2 s later: a task asking for the leader in between waits
# that out rather than failing (seen on the bed right after a successful wait, under CI load).
NO_LEADER_GRACE_S = 15.0

H2O_PORT = 54321
log = logging.getLogger(__name__)


class KubernetesBackend:
    """
    :param api_client: a configured ``kubernetes.client.ApiClient``.
    :param namespace: default namespace (a pipeline's ``cluster.namespace`` wins at create).
    :param endpoint_mode: how the caller reaches the leader: ``service`` (the client Service's
        DNS name: Airflow runs in the cluster), ``pod-ip`` (the leader pod's address: a flat
        network) or ``port-forward`` (Airflow outside the cluster: each process opens its own
        forward to the ready leader through the API server, see ``local_endpoint``).
    :param conn_id: the Airflow connection the API client came from, recorded in ``ClusterInfo``.

    In ``port-forward`` mode ``ClusterInfo.url`` and ``endpoint()`` stay the client Service's
    URL (what may go to XCom); only ``local_endpoint()`` returns the process-local forward,
    which ``close()`` ends.
    """

    name = "kubernetes"

    def __init__(self, api_client: Any, namespace: str = "h2o", endpoint_mode: str = "service",
                 cluster_domain: str = "cluster.local", fetch_cloud: Any = fetch_cloud, conn_id: str = ""):
        from kubernetes import client

        if endpoint_mode not in ENDPOINT_MODES:
            raise ValueError(f"endpoint_mode {endpoint_mode!r}: use one of {ENDPOINT_MODES}")
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.policy = client.PolicyV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.namespace = namespace
        self.endpoint_mode = endpoint_mode
        self.cluster_domain = cluster_domain
        self.fetch_cloud = fetch_cloud
        self.conn_id = conn_id
        self._forward: PortForward | None = None
        self._forward_key: tuple[str, str, str] = ("", "", "")
        self._forward_lock = threading.RLock()  # close() runs under it too, also from _local_url
        self._logins: dict[tuple[str, str], Login | None] = {}
        self.login_patience_s = 60.0

    # --------------------------------------------------------------- helpers
    def _api(self, kind: str) -> tuple[Any, Any, Any]:
        """(create, read, delete) of one kind of object."""
        return {
            "Job": (self.batch.create_namespaced_job, self.batch.read_namespaced_job, self.batch.delete_namespaced_job),
            "StatefulSet": (self.apps.create_namespaced_stateful_set, self.apps.read_namespaced_stateful_set,
                            self.apps.delete_namespaced_stateful_set),
            "Service": (self.core.create_namespaced_service, self.core.read_namespaced_service,
                        self.core.delete_namespaced_service),
            "PodDisruptionBudget": (self.policy.create_namespaced_pod_disruption_budget,
                                    self.policy.read_namespaced_pod_disruption_budget,
                                    self.policy.delete_namespaced_pod_disruption_budget),
            "NetworkPolicy": (self.networking.create_namespaced_network_policy,
                              self.networking.read_namespaced_network_policy,
                              self.networking.delete_namespaced_network_policy),
            "Ingress": (self.networking.create_namespaced_ingress, self.networking.read_namespaced_ingress,
                        self.networking.delete_namespaced_ingress),
        }[kind]

    def _selector(self, name: str) -> str:
        return f"app.kubernetes.io/instance={name},app.kubernetes.io/managed-by={MANAGED_BY}"

    def _info(self, name: str, namespace: str, replicas: int, annotations: dict[str, str],
              cluster_domain: str = "", uid: str = "", scheme: str = "http") -> ClusterInfo:
        _, client_svc = manifests.service_names(name)
        url = f"{scheme}://{client_svc}.{namespace}.svc.{cluster_domain or self.cluster_domain}:{H2O_PORT}"
        return ClusterInfo(name=name, backend=self.name, url=url, replicas=replicas, namespace=namespace,
                           expires_at=annotations.get(manifests.EXPIRES_ANNOTATION, ""),
                           ceiling_at=annotations.get(manifests.CEILING_ANNOTATION, ""),
                           endpoint_mode=self.endpoint_mode, kubernetes_conn_id=self.conn_id,
                           dag_id=annotations.get(manifests.DAG_ID_ANNOTATION, ""),
                           run_id=annotations.get(manifests.RUN_ID_ANNOTATION, ""), uid=uid,
                           extended_at=annotations.get(manifests.EXTENDED_ANNOTATION, ""),
                           reaping_since=annotations.get(manifests.REAPING_ANNOTATION, ""))

    def _pods(self, name: str, namespace: str) -> list[PodObservation]:
        pods = self.core.list_namespaced_pod(namespace, label_selector=self._selector(name))
        return _observations(self.api_client.sanitize_for_serialization(p) for p in pods.items)

    def _read_sts(self, name: str, namespace: str) -> Any | None:
        try:
            return self.apps.read_namespaced_stateful_set(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # ------------------------------------------------------------- interface
    def create(self, spec: ClusterSpec) -> ClusterInfo:
        """Apply the run's objects, each one reconciled when it exists; replace a failed cluster of this run.

        A failure part-way deletes everything of the cluster before the error is raised (a
        partial cluster is never left, nor re-attached to without its NetworkPolicy).
        """
        ns = spec.config.namespace
        existing = self._read_sts(spec.name, ns)
        if existing is not None:
            labels = existing.metadata.labels or {}
            if labels.get("h2o-airflow/run-id") != spec.labels["h2o-airflow/run-id"]:
                raise ClusterError(f"StatefulSet {ns}/{spec.name} exists but belongs to another run "
                                   f"({labels.get('h2o-airflow/run-id')})", reason="NameClash")
            reaped = manifests.REAPING_ANNOTATION in (existing.metadata.annotations or {})
            if reaped or [p for p in self._pods(spec.name, ns) if p.failure]:  # the janitor's, or broken: anew
                self.delete(ClusterInfo(name=spec.name, backend=self.name, namespace=ns))
        try:
            try:
                annotations = self._apply_all(spec)
            except _Drift as drift:  # e.g. replicas or memory changed in the pipeline file since the first try
                log.warning("cluster %s/%s differs from its pipeline (%s): creating it again", ns, spec.name, drift)
                self.delete(ClusterInfo(name=spec.name, backend=self.name, namespace=ns))
                annotations = self._apply_all(spec)
        except BaseException as exc:
            try:
                self.delete(ClusterInfo(name=spec.name, backend=self.name, namespace=ns))
            except Exception as cleanup:  # the original error is the one to report
                log.error("could not delete the partly created cluster %s/%s: %s", ns, spec.name, cleanup)
            if isinstance(exc, ApiException):
                raise ClusterError(f"creating cluster {ns}/{spec.name} failed: {exc.status} {exc.reason}: "
                                   f"{(exc.body or '')[:500]}", retryable=exc.status >= 500,
                                   reason="CreateFailed") from exc
            raise
        tls = spec.config.tls
        info = self._info(spec.name, ns, spec.config.replicas, annotations, spec.config.cluster_domain,
                          scheme="https" if tls else "http")
        ingress = spec.config.ingress
        return dataclasses.replace(info, s3_from_secret=bool(spec.config.s3_secret),
                                   tls_secret=tls.secret if tls else "", tls_ca_key=tls.ca_key if tls else "",
                                   ingress_url=(
            f"{'https' if ingress.tls_secret else 'http'}://{ingress.host_for(spec.name)}" if ingress else ""))

    def _apply_all(self, spec: ClusterSpec) -> dict[str, str]:
        """Create every object (the anchor first, the others owned by it); reconcile those that exist.
        Returns the StatefulSet's annotations as they are in the cluster."""
        ns = spec.config.namespace
        owner: dict[str, Any] | None = None
        annotations: dict[str, str] = {}
        for m in manifests.render(spec):
            body = m.body
            if owner is not None:
                body["metadata"]["ownerReferences"] = [owner]
            try:
                live = self._apply(ns, m.kind, body)
            except ApiException as exc:
                raise ClusterError(f"creating {m.kind} {ns}/{m.name} failed: {exc.status} {exc.reason}: "
                                   f"{(exc.body or '')[:500]}", retryable=exc.status >= 500,
                                   reason="CreateFailed") from exc
            if m.kind == "Job":
                owner = {"apiVersion": "batch/v1", "kind": "Job", "name": live["metadata"]["name"],
                         "uid": live["metadata"]["uid"], "controller": False, "blockOwnerDeletion": False}
                made = self._ensure_login(spec, owner)
                tls = spec.config.tls
                self._logins[(ns, spec.name)] = dataclasses.replace(
                    made, ca_file=self._ca_file(ns, tls.secret, tls.ca_key)) if tls else made
            if m.kind == "StatefulSet":
                annotations = live["metadata"].get("annotations") or {}
        return annotations

    def _ensure_login(self, spec: ClusterSpec, owner: dict[str, Any]) -> Login:
        """Create the run's login Secret (owned by the anchor, labelled as the run's), or read the one a
        first try or a concurrent creator of the same run made: its nodes may be using it already."""
        ns, name = spec.config.namespace, manifests.login_secret_name(spec.name)
        login = Login.generate()
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": ns, "labels": spec.labels, "ownerReferences": [owner]},
                "stringData": {PASSWORD_FILE: login.password, REALM_FILE: login.realm}}
        try:
            self.core.create_namespaced_secret(ns, body)
            return login
        except ApiException as exc:
            if exc.status != 409:
                raise ClusterError(f"creating Secret {ns}/{name} failed: {exc.status} {exc.reason}: "
                                   f"{(exc.body or '')[:500]}", retryable=exc.status >= 500,
                                   reason="CreateFailed") from exc
        found = _login_of(self.core.read_namespaced_secret(name, ns))
        if found is None:
            raise ClusterError(f"Secret {ns}/{name} holds no {PASSWORD_FILE!r}: delete it (and the run's cluster) "
                               "and retry the task", reason="CreateFailed")
        return found

    def login(self, info: ClusterInfo) -> Login | None:
        """The cluster's REST login, read once from its Secret (None when the cluster has none).

        An API server that does not answer, or refuses for a while, is asked again for
        ``login_patience_s``: a task starting during an outage goes on with its cluster, as it does
        with the address it has from XCom. A restarted API server can answer 403 until its RBAC
        caches fill (kubernetes/kubernetes#121635), so 403 and 429 count as transient here too; the
        create task, which makes the Secret, has already shown that the identity may read it.
        """
        ns = info.namespace or self.namespace
        key = (ns, info.name)
        if key not in self._logins:
            deadline = time.monotonic() + self.login_patience_s
            while True:
                try:
                    secret = self.core.read_namespaced_secret(manifests.login_secret_name(info.name), ns)
                    break
                except ApiException as exc:
                    if exc.status == 404:
                        return None  # not cached: a cluster being created makes its Secret first
                    if (exc.status < 500 and exc.status not in (403, 429)) or time.monotonic() > deadline:
                        raise
                    log.warning("Cannot read the login Secret of %s/%s (%s %s): trying again", ns, info.name,
                                exc.status, exc.reason)
                except Exception as exc:  # refused or reset: the API server restarting
                    if time.monotonic() > deadline:
                        raise
                    log.warning("Cannot read the login Secret of %s/%s (%s): trying again", ns, info.name, exc)
                time.sleep(2.0)
            found = _login_of(secret)
            if found is not None and info.tls_secret:
                found = dataclasses.replace(found, ca_file=self._ca_file(ns, info.tls_secret, info.tls_ca_key))
            self._logins[key] = found
        return self._logins[key]

    def _ca_file(self, ns: str, secret: str, key: str) -> str:
        """The CA an HTTPS cluster's clients verify it with, from ``cluster.tls``'s Secret, as a file."""
        import base64

        from h2o_tasks.cluster.login import ca_file

        try:
            data = self.core.read_namespaced_secret(secret, ns).data or {}
        except ApiException as exc:
            if exc.status != 404:
                raise
            data = None
        if not data or key not in data:
            raise ClusterError(f"Secret {ns}/{secret} {'has no key ' + repr(key) if data is not None else 'does not exist'}"
                               " (cluster.tls): the clients cannot verify H2O's certificate; put the PEM certificate "
                               "of the CA that signed it under that key (cert-manager writes ca.crt)",
                               reason="CertificateUntrusted")
        return ca_file(base64.b64decode(data[key]))

    def _cloud(self, info: ClusterInfo, url: str) -> Any:
        """The leader's ``/3/Cloud`` at ``url``, asked with the cluster's login (blocking: run it in a thread)."""
        return self.fetch_cloud(url, self.login(info))

    def _apply(self, ns: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the object, or check the existing one against it: a differing Service, PDB or
        NetworkPolicy is replaced, a differing StatefulSet or anchor raises :class:`_Drift`."""
        create, read, delete = self._api(kind)
        name = body["metadata"]["name"]
        try:
            return self.api_client.sanitize_for_serialization(create(ns, body))
        except ApiException as exc:
            if exc.status != 409:  # AlreadyExists: a retry after a partial create, or a re-attach
                raise
        live = self.api_client.sanitize_for_serialization(read(name, ns))
        wanted = dict(body.get("spec") or {})
        if kind == "Job":
            wanted.pop("activeDeadlineSeconds", None)  # counted from the first creation, not from now
        where = _differs(wanted, live.get("spec"), "spec")
        if where is None:
            return live
        if kind in ("StatefulSet", "Job"):
            raise _Drift(f"{kind} {name}: {where}")
        log.warning("%s %s/%s differs from the rendered object at %s: replacing it", kind, ns, name, where)
        delete(name, ns)
        return self.api_client.sanitize_for_serialization(create(ns, body))

    def _leader_url(self, info: ClusterInfo, pods: list[PodObservation]) -> str:
        """The leader's URL for other processes too (never a port-forward)."""
        if self.endpoint_mode == "pod-ip":
            lead = leader(pods)
            return f"{_scheme(info)}://{lead.ip}:{H2O_PORT}" if lead and lead.ip else ""
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
            return self._forward.url.replace("http://", f"{_scheme(info)}://", 1)

    def local_endpoint(self, info: ClusterInfo) -> str:
        """The leader's URL usable from this process; in port-forward mode it opens (or reuses)
        a forward that lives until ``close()``. Raises ``ClusterError`` when no pod leads for
        :data:`NO_LEADER_GRACE_S`."""
        deadline = time.monotonic() + NO_LEADER_GRACE_S
        while not (url := self._local_url(info, self._pods(info.name, info.namespace or self.namespace))):
            if time.monotonic() >= deadline:
                raise ClusterError(f"cluster {info.namespace or self.namespace}/{info.name} has had no ready leader "
                                   f"pod for {NO_LEADER_GRACE_S:.0f} s", retryable=True, reason="NoLeader")
            time.sleep(1.0)
        return url

    def evidence(self, info: ClusterInfo, directory: Path) -> list[Path]:
        """The pods' statuses, the run's events, and each pod's log (and its previous one after a restart)."""
        directory.mkdir(parents=True, exist_ok=True)
        ns = info.namespace or self.namespace
        pods = self.core.list_namespaced_pod(ns, label_selector=self._selector(info.name)).items
        (directory / "pods.json").write_text(json.dumps(self.api_client.sanitize_for_serialization(pods), indent=2))
        names = {info.name, manifests.anchor_name(info.name), *(p.metadata.name for p in pods)}
        events = [e for e in self.core.list_namespaced_event(ns).items if e.involved_object.name in names]
        (directory / "events.json").write_text(json.dumps(self.api_client.sanitize_for_serialization(
            sorted(events, key=lambda e: str(e.last_timestamp or e.event_time or ""))), indent=2))
        for pod in pods:
            restarted = any((c.restart_count or 0) > 0 for c in (pod.status.container_statuses or []))
            for previous in (False, True) if restarted else (False,):
                try:
                    text = self.core.read_namespaced_pod_log(pod.metadata.name, ns, container="h2o", tail_lines=20000,
                                                             previous=previous)
                except ApiException as exc:
                    text = f"(no log: {exc.status} {exc.reason})"
                suffix = ".previous.log" if previous else ".log"
                (directory / f"{pod.metadata.name}{suffix}").write_text(text or "")
        return sorted(p for p in directory.rglob("*") if p.is_file())

    def log_secrets(self, info: ClusterInfo) -> list[str]:
        """The keystore's password of an HTTPS cluster (H2O logs its arguments, ``-jks_pass`` among them),
        read from the Secret its StatefulSet names."""
        ns = info.namespace or self.namespace
        sts = self._read_sts(info.name, ns) if info.tls_secret else None
        if sts is None:
            return []
        import base64

        found = []
        for env in sts.spec.template.spec.containers[0].env or []:
            ref = env.value_from.secret_key_ref if env.name == manifests.TLS_PASSWORD_ENV and env.value_from else None
            if ref is not None:
                data = self.core.read_namespaced_secret(ref.name, ns).data or {}
                found += [base64.b64decode(data[ref.key]).decode()] if ref.key in data else []
        return found

    def close(self) -> None:
        """End this process's port-forward, if any."""
        with self._forward_lock:  # not while another thread opens or hands out a forward
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
        lost = _lost(info, ns, self._read_sts(info.name, ns))
        if lost is not None:
            return lost
        pods = self._pods(info.name, ns)
        url = self._leader_url(info, pods)
        try:
            local = self._local_url(info, pods) if leader(pods) else ""
        except PortForwardError as exc:
            if exc.reason == "PortForwardForbidden":
                raise
            local = ""  # the API server or kubelet hiccupped: the next poll opens a new forward
        cloud = self._cloud(info, local) if local else None
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
            sts = await aclient.AppsV1Api(api).read_namespaced_stateful_set(info.name, ns)
        except ApiException as exc:
            if exc.status != 404:
                raise
            sts = None
        lost = _lost(info, ns, sts)
        if lost is not None:
            return lost
        listed = await aclient.CoreV1Api(api).list_namespaced_pod(ns, label_selector=self._selector(info.name))
        pods = _observations(api.sanitize_for_serialization(p) for p in listed.items)
        url = self._leader_url(info, pods)
        cloud = await asyncio.to_thread(self._cloud, info, url) if url and leader(pods) else None
        return _status(info, pods, cloud, url, elapsed_s, formation_timeout_s)

    async def aobserve(self, api: Any, info: ClusterInfo, started_at: float, formation_timeout_s: float | None = None,
                       tick_s: float = 0.5) -> AsyncIterator[ClusterStatus]:
        """Observations for the triggerer's wait, every ``tick_s``, driven by a watch of the run's pods.

        The API server sees one read of the StatefulSet, one list of the pods and one watch
        (renewed each ``podwatch.WATCH_S``); the StatefulSet is read again at each renewal and
        after a pod went. Ticks read the watched pods, and ask the leader's ``/3/Cloud`` only while exactly
        one pod is Ready. A broken watch (the API server restarting) raises here; the caller
        observes again within its grace.
        """
        import asyncio

        from kubernetes_asyncio import client as aclient
        from kubernetes_asyncio.client.exceptions import ApiException

        ns = info.namespace or self.namespace
        apps = aclient.AppsV1Api(api)

        async def missing() -> ClusterStatus | None:
            try:
                return _lost(info, ns, await apps.read_namespaced_stateful_set(info.name, ns))
            except ApiException as exc:
                if exc.status != 404:
                    raise
                return _lost(info, ns, None)

        gone = await missing()
        if gone:
            yield gone
            return
        cache = podwatch.PodCache(ns, self._selector(info.name))
        watcher = asyncio.create_task(cache.follow(api), name=f"pod watch {ns}/{info.name}")
        try:
            seen = (0, 1)  # the StatefulSet was just read: again once a pod goes or the first watch is renewed
            while True:
                await podwatch.first_error(watcher)
                if cache.resource_version:  # listed
                    if (cache.deleted, cache.renewals) != seen:  # a pod went, or a minute passed
                        seen = (cache.deleted, cache.renewals)
                        gone = await missing()
                        if gone:
                            yield gone
                            return
                    pods = _observations(list(cache.pods.values()))
                    cloud = None
                    if leader(pods):
                        try:  # only a port-forward does I/O here: the other modes' address is known
                            local = (await asyncio.to_thread(self._local_url, info, pods)
                                     if self.endpoint_mode == "port-forward" else self._leader_url(info, pods))
                        except PortForwardError as exc:
                            if exc.reason == "PortForwardForbidden":
                                raise
                            local = ""  # the kubelet hiccupped: the next tick opens a new forward
                        cloud = await asyncio.to_thread(self._cloud, info, local) if local else None
                    yield _status(info, pods, cloud, self._leader_url(info, pods), time.time() - started_at,
                                  formation_timeout_s)
                await asyncio.sleep(tick_s)
        finally:
            await podwatch.stop(watcher)
            log.info("Wait for %s/%s: %d pod list/watch request(s)", ns, info.name, cache.requests)

    def wait_ready(self, info: ClusterInfo, timeout_s: float, poll_s: float = 0.5) -> ClusterStatus:
        return poll_until_ready(info.name, lambda elapsed: self.status(info, elapsed_s=elapsed), timeout_s, poll_s)

    def endpoint(self, info: ClusterInfo) -> str:
        """The leader's URL as other processes may use it (XCom): never a process-local forward."""
        return self._leader_url(info, self._pods(info.name, info.namespace or self.namespace))

    def extend(self, info: ClusterInfo, by: timedelta) -> str:
        """Push the expiry annotation (the janitor reads it) to ``now + by``, never past the ceiling,
        and stamp ``extended-at`` (a new version even when the expiry stays where it was).

        A patch conditional on the StatefulSet's ``resourceVersion``, as the janitor's mark is: a
        cluster the janitor has marked for deletion is never extended (the task fails and its retry
        makes a new cluster), and one extended after the janitor's listing is never deleted."""
        ns = info.namespace or self.namespace
        while True:
            sts = self._read_sts(info.name, ns)
            if sts is None:
                raise ClusterError(f"StatefulSet {ns}/{info.name} does not exist", reason="NotFound")
            annotations = sts.metadata.annotations or {}
            if manifests.REAPING_ANNOTATION in annotations:
                raise ClusterError(f"cluster {ns}/{info.name} is being deleted by the janitor (since "
                                   f"{annotations[manifests.REAPING_ANNOTATION]}: it expired at "
                                   f"{annotations.get(manifests.EXPIRES_ANNOTATION)} or its run was over); a retry of "
                                   "this run creates a new one", retryable=True, reason="Reaped")
            expires = extended_expiry(annotations.get(manifests.EXPIRES_ANNOTATION, ""),
                                      annotations.get(manifests.CEILING_ANNOTATION, "") or info.ceiling_at, by)
            stamp = datetime.now(UTC).isoformat()
            if self._patch_if_unchanged(sts, {manifests.EXPIRES_ANNOTATION: expires,
                                              manifests.EXTENDED_ANNOTATION: stamp}) is not None:
                return expires

    def _patch_if_unchanged(self, sts: Any, annotations: dict[str, str]) -> Any | None:
        """Set annotations on the StatefulSet as it was read: the patched object, or None (nothing
        written) if it changed since."""
        try:
            return self.apps.patch_namespaced_stateful_set(sts.metadata.name, sts.metadata.namespace, {"metadata": {
                "resourceVersion": sts.metadata.resource_version, "annotations": annotations}})
        except ApiException as exc:
            if exc.status == 409:
                return None
            if exc.status == 404:
                raise ClusterError(f"StatefulSet {sts.metadata.namespace}/{sts.metadata.name} does not exist",
                                   reason="NotFound") from None
            raise

    def _mark_reaping(self, info: ClusterInfo, ns: str) -> Any | None:
        """The janitor's half of the compare-and-swap with :meth:`extend`: mark the StatefulSet for
        deletion only while it is the incarnation the janitor decided on, not extended since. The
        marked StatefulSet, or None (nothing marked) if it is gone, was made again or was extended."""
        while True:
            sts = self._read_sts(info.name, ns)
            if sts is None or (info.uid and sts.metadata.uid != info.uid):
                return None  # deleted by its teardown, or a new cluster of the run: not the one decided on
            annotations = sts.metadata.annotations or {}
            if manifests.REAPING_ANNOTATION in annotations:
                return sts  # an earlier sweep's decision: no task can have extended it since
            if (annotations.get(manifests.EXPIRES_ANNOTATION, ""),
                    annotations.get(manifests.EXTENDED_ANNOTATION, "")) != (info.expires_at, info.extended_at):
                return None
            try:
                marked = self._patch_if_unchanged(sts, {manifests.REAPING_ANNOTATION: datetime.now(UTC).isoformat()})
            except ClusterError as exc:
                if exc.reason == "NotFound":  # its teardown deleted it between the read and the mark
                    return None
                raise
            if marked is not None:
                return marked

    def delete(self, info: ClusterInfo | str, timeout_s: float = 120.0, *, if_unchanged: bool = False) -> bool:
        """Delete every object of the cluster (foreground), then wait until every one, pods included, is gone
        (a foreground delete leaves an object listed until the garbage collector is done with it).
        ``if_unchanged``: see :meth:`ClusterBackend.delete`; only the marked incarnation's objects go."""
        name = info if isinstance(info, str) else info.name
        ns = (None if isinstance(info, str) else info.namespace) or self.namespace
        if if_unchanged and not isinstance(info, str):
            marked = self._mark_reaping(info, ns)
            if marked is None:
                return False
            self.close()
            self._logins.pop((ns, name), None)
            self._delete_objects(name, ns, timeout_s, _incarnation(marked))
            return True
        self.close()
        self._logins.pop((ns, name), None)
        return self._delete_objects(name, ns, timeout_s, None)

    def _listers(self) -> list[tuple[Any, Any]]:
        return [
            (self.batch.list_namespaced_job, self.batch.delete_namespaced_job),
            (self.apps.list_namespaced_stateful_set, self.apps.delete_namespaced_stateful_set),
            (self.core.list_namespaced_service, self.core.delete_namespaced_service),
            (self.policy.list_namespaced_pod_disruption_budget, self.policy.delete_namespaced_pod_disruption_budget),
            (self.networking.list_namespaced_network_policy, self.networking.delete_namespaced_network_policy),
            (self.core.list_namespaced_secret, self.core.delete_namespaced_secret),  # the login, never others
            (self.networking.list_namespaced_ingress, self.networking.delete_namespaced_ingress),
        ]

    def _delete_objects(self, name: str, ns: str, timeout_s: float, incarnation: set[str] | None) -> bool:
        """Delete the run's objects (only those of ``incarnation``'s uids and what they own, each with a
        uid precondition, when given: a cluster its run makes again meanwhile is not touched) and
        wait until they and their pods are gone. False if there was nothing to delete."""
        from kubernetes import client

        selector = self._selector(name)
        listers = self._listers()

        def ours(obj: Any) -> bool:
            if incarnation is None:
                return True
            owners = {r.uid for r in (obj.metadata.owner_references or [])}
            return obj.metadata.uid in incarnation or bool(owners & incarnation)

        found = False
        for lister, deleter in listers:
            for obj in lister(ns, label_selector=selector).items:
                if not ours(obj):
                    continue
                found = True
                body = client.V1DeleteOptions(propagation_policy="Foreground", preconditions=(
                    client.V1Preconditions(uid=obj.metadata.uid) if incarnation is not None else None))
                try:
                    deleter(obj.metadata.name, ns, body=body)
                except ApiException as exc:
                    if exc.status not in (404, 409):  # gone, or another object by that name (a new incarnation)
                        raise
        deadline = time.monotonic() + timeout_s
        while True:
            left = [f"{o.kind or lister.__name__.removeprefix('list_namespaced_')}/{o.metadata.name}"
                    for lister, _ in listers for o in lister(ns, label_selector=selector).items if ours(o)]
            pods = [p for p in self.core.list_namespaced_pod(ns, label_selector=selector).items if ours(p)]
            if not pods and not left and (incarnation is not None or self._read_sts(name, ns) is None):
                return found
            found = True
            if time.monotonic() > deadline:
                raise ClusterError(f"cluster {ns}/{name} still has {len(pods)} pod(s) and "
                                   f"{left or 'no other objects'} after {timeout_s:.0f}s",
                                   retryable=True, reason="DeleteTimeout")
            time.sleep(0.5)

    def list_clusters(self) -> list[ClusterInfo]:
        items = self.apps.list_namespaced_stateful_set(self.namespace,
                                                       label_selector=f"app.kubernetes.io/managed-by={MANAGED_BY}").items
        return [self._info(s.metadata.name, self.namespace, s.spec.replicas or 0, s.metadata.annotations or {},
                           uid=s.metadata.uid or "") for s in items]

    def list_expired(self, now: datetime | None = None) -> list[ClusterInfo]:
        now = now or datetime.now(UTC)
        return [c for c in self.list_clusters() if c.expires_at and datetime.fromisoformat(c.expires_at) <= now]


def _lost(info: ClusterInfo, ns: str, sts: Any | None) -> ClusterStatus | None:
    """The status of a cluster whose StatefulSet is gone or marked by a janitor (lost to its run even if
    the janitor that marked it was killed before its delete), else None."""
    if sts is None:
        return ClusterStatus(info.name, exists=False, failed=True, reason="NotFound",
                             message=f"StatefulSet {ns}/{info.name} does not exist")
    since = (sts.metadata.annotations or {}).get(manifests.REAPING_ANNOTATION)
    if since:
        return ClusterStatus(info.name, exists=True, failed=True, reason="Reaped", expected_size=info.replicas,
                             message=f"cluster {ns}/{info.name} is being deleted by the janitor (since {since})")
    return None


def _scheme(info: ClusterInfo) -> str:
    return "https" if info.tls_secret else "http"


def _incarnation(sts: Any) -> set[str]:
    """The uids of one incarnation of a cluster: its StatefulSet and the anchor Job that owns the rest."""
    return {sts.metadata.uid, *(r.uid for r in (sts.metadata.owner_references or []) if r.kind == "Job")}


class _Drift(Exception):
    """An existing object of the run differs from what its pipeline renders now."""


def _same_scalar(wanted: Any, live: Any) -> bool:
    if wanted == live:
        return True
    if isinstance(wanted, str) and isinstance(live, (str, int, float)):
        from kubernetes.utils import parse_quantity

        try:  # the API server writes quantities in canonical form: 1024Mi is 1Gi, 0.5 is 500m
            return parse_quantity(wanted) == parse_quantity(live)
        except ValueError:
            return False
    return False


def _differs(wanted: Any, live: Any, path: str) -> str | None:
    """Where ``live`` does not hold what ``wanted`` says (fields the server added are ignored), or None."""
    if isinstance(wanted, dict):
        if not isinstance(live, dict):
            return path
        for key, value in wanted.items():
            where = _differs(value, live.get(key), f"{path}.{key}")
            if where:
                return where
        return None
    if isinstance(wanted, list):
        if not isinstance(live, list) or len(live) != len(wanted):
            return path
        for i, (a, b) in enumerate(zip(wanted, live, strict=True)):
            where = _differs(a, b, f"{path}[{i}]")
            if where:
                return where
        return None
    return None if _same_scalar(wanted, live) else path


def _observations(raw_pods: Any) -> list[PodObservation]:
    """The pods as the readiness decision sees them: terminating pods are already gone."""
    return sorted((PodObservation.from_pod(p) for p in raw_pods if not p["metadata"].get("deletionTimestamp")),
                  key=lambda p: p.name)


def _status(info: ClusterInfo, pods: list[PodObservation], cloud: Any, url: str, elapsed_s: float,
            formation_timeout_s: float | None) -> ClusterStatus:
    d = evaluate(pods, info.replicas, cloud, elapsed_s=elapsed_s, formation_timeout_s=formation_timeout_s)
    return ClusterStatus(info.name, exists=True, ready=d.ready, failed=d.failed, reason=d.reason, message=d.message,
                         cloud_size=cloud.cloud_size if cloud else 0, expected_size=info.replicas, url=url)


def _login_of(secret: Any) -> Login | None:
    """The login kept in a run's login Secret (None when it holds no password)."""
    import base64

    data = secret.data or {}
    return Login(USER, base64.b64decode(data[PASSWORD_FILE]).decode()) if PASSWORD_FILE in data else None
