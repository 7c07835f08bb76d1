"""The Kubernetes backend against the real control plane, with pods that run real H2O JVMs."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from h2o_tasks.cluster.base import ClusterSpec
from h2o_tasks.cluster.login import request
from h2o_tasks.cluster.podwatch import WATCH_S
from h2o_tasks.config import IngressConfig
from h2o_tasks.errors import ClusterError
from tests.fixtures.k8s_bed import DOMAIN, NAMESPACE, airflow_connection, cluster_config, first_event

pytestmark = pytest.mark.e2e


@pytest.fixture
def backend(bed_backend):
    return bed_backend


def h2o_pids(name: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", "--", f"h2o.jar -name {name} "], capture_output=True, text=True).stdout
    return out.split()


def test_statefulset_forms_one_cloud_with_a_single_ready_leader(k8s_bed, backend):
    spec = ClusterSpec.for_run("bed", "dag", "run-ok", cluster_config(
        ingress=IngressConfig(host="{cluster}.flow.bed.test", class_name="nginx")))
    t0 = time.monotonic()
    info = backend.create(spec)
    assert backend.create(spec).name == info.name  # a retry re-attaches
    st = backend.wait_ready(info, timeout_s=180)
    formed = time.monotonic() - t0
    assert st.ready and st.cloud_size == 3, st
    pods = backend._pods(info.name, NAMESPACE)
    assert len(pods) == 3 and sum(p.ready for p in pods) == 1  # only the leader passes the probe
    assert len(h2o_pids(info.name)) == 3
    # H2O runs under the manifests' own restrictions (the node agent enforces the securityContext): the
    # non-root user with fsGroup, no new privileges, no capability, a read-only root file system
    for pid in h2o_pids(info.name):
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        assert status["Uid"].split() == ["10001"] * 4 and status["Gid"].split() == ["10001"] * 4, status["Uid"]
        assert status["Groups"].split() == ["10001"] and status["NoNewPrivs"].strip() == "1"
        assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == 0
        mounts = [line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
        assert "ro" in next(m for m in mounts if m[4] == "/")[5].split(","), "the root file system is writable"
        writable = {m[4] for m in mounts if "rw" in m[5].split(",") and "/volumes/" in m[4]}
        assert {w.rsplit("/", 1)[1] for w in writable} == {"h2o-data", "tmp"}, writable  # not the login
    # discovery went through the bed's own cluster domain (its DNS serves only that one)
    from kubernetes import client

    sts = client.AppsV1Api(k8s_bed.admin).read_namespaced_stateful_set(info.name, NAMESPACE)
    env = {e.name: e.value for e in sts.spec.template.spec.containers[0].env}
    assert env["H2O_KUBERNETES_SERVICE_DNS"].endswith(f".{NAMESPACE}.svc.{DOMAIN}") and DOMAIN != "cluster.local"
    print(f"cloud of 3 ready {formed:.1f}s after create")
    # the REST login: its Secret and the Ingress are the run's, owned by its anchor; only the login gets in
    core, net = client.CoreV1Api(k8s_bed.admin), client.NetworkingV1Api(k8s_bed.admin)
    secret = core.read_namespaced_secret(f"{info.name}-login", NAMESPACE)
    ingress = net.read_namespaced_ingress(info.name, NAMESPACE)
    anchor = client.BatchV1Api(k8s_bed.admin).read_namespaced_job(f"{info.name}-anchor", NAMESPACE)
    for obj in (secret, ingress):
        assert [o.uid for o in obj.metadata.owner_references] == [anchor.metadata.uid]
    assert ingress.spec.rules[0].host == f"{info.name}.flow.bed.test"
    assert info.ingress_url == f"http://{info.name}.flow.bed.test"
    leader = next(p for p in pods if p.ready)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{leader.ip}:54321/3/Cloud", timeout=10)
    assert refused.value.code == 401
    with urllib.request.urlopen(request(f"http://{leader.ip}:54321/3/Cloud", backend.login(info)), timeout=10) as r:
        assert json.load(r)["cloud_size"] == 3
    assert backend.delete(info) is True
    for listed in (core.list_namespaced_secret(NAMESPACE, label_selector=f"app.kubernetes.io/instance={info.name}"),
                   net.list_namespaced_ingress(NAMESPACE, label_selector=f"app.kubernetes.io/instance={info.name}")):
        assert listed.items == []
    assert backend._pods(info.name, NAMESPACE) == []
    assert h2o_pids(info.name) == []
    assert k8s_bed.network.leftovers() == []


def test_the_trigger_watches_the_pods_through_the_providers_async_hook(k8s_bed, backend, monkeypatch):
    """The deferrable wait as the triggerer runs it: AsyncKubernetesHook (kubernetes_asyncio), the run's
    pods listed once and watched, /3/Cloud asked once one pod leads. The API server's audit log shows
    what the wait cost it: one read, one list, one watch (and one read of the login Secret); not a poll."""
    from h2o_airflow.triggers.cluster import H2OClusterReadyTrigger

    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", airflow_connection(k8s_bed))
    info = backend.create(ClusterSpec.for_run("bed", "dag", "run-async", cluster_config(replicas=2)))
    since = datetime.now(UTC)
    event = first_event(H2OClusterReadyTrigger(info.to_dict(), timeout_s=180, formation_timeout_s=90))
    until = datetime.now(UTC)
    assert (event["status"], event["cloud_size"]) == ("ready", 2), event
    requests = sorted(k8s_bed.control_plane.audit_requests(since=since, until=until),
                      key=lambda r: r["requestReceivedTimestamp"])
    calls = [(r["verb"], r["objectRef"]["resource"]) for r in requests]
    print(f"wait of {(until - since).total_seconds():.1f}s: {len(calls)} API request(s) {calls}")
    assert set(calls) <= {("get", "statefulsets"), ("list", "pods"), ("watch", "pods"), ("get", "secrets")}, calls
    assert calls.count(("get", "secrets")) == 1, calls  # the cluster's login, read once for /3/Cloud
    # one read and one list, then the watch: a new watch request only once the previous one ended at its
    # timeout, from where it left off (not a poll; a slower machine only spaces them further)
    calls.remove(("get", "secrets"))
    assert calls[:3] == [("get", "statefulsets"), ("list", "pods"), ("watch", "pods")], calls
    assert calls.count(("list", "pods")) == 1, calls
    watches = [r for r in requests if r["verb"] == "watch"]
    assert all(f"timeoutSeconds={WATCH_S}" in w["requestURI"] and "resourceVersion=" in w["requestURI"]
               for w in watches), [w["requestURI"] for w in watches]
    starts = [datetime.fromisoformat(w["requestReceivedTimestamp"].replace("Z", "+00:00")) for w in watches]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert all(gap >= WATCH_S - 1 for gap in gaps), gaps
    assert calls.count(("get", "statefulsets")) <= len(watches), calls  # read again at each renewal at most

    backend.delete(info)
    missing = first_event(H2OClusterReadyTrigger(info.to_dict(), timeout_s=180))  # gone: failed at once
    assert (missing["status"], missing["reason"]) == ("failed", "NotFound"), missing

    bad = backend.create(ClusterSpec.for_run("bed", "dag", "run-async-bad", cluster_config(
        replicas=1, image="registry.invalid/nope:1")))
    try:
        failed = first_event(H2OClusterReadyTrigger(bad.to_dict(), timeout_s=600))
        # a pod event ended the wait, not its timeout (which would say "timeout")
        assert (failed["status"], failed["reason"]) in {("failed", "ErrImagePull"), ("failed", "ImagePullBackOff")}
    finally:
        backend.delete(bad)


def test_the_wait_watches_again_after_the_api_server_restarts(k8s_bed, backend, monkeypatch):
    """The API server stops for 15 s while the cloud forms: the watch breaks, the wait observes again
    (list + watch) within its grace, and reports the cloud ready."""
    import threading

    from h2o_airflow.triggers.cluster import H2OClusterReadyTrigger

    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", airflow_connection(k8s_bed))
    info = backend.create(ClusterSpec.for_run("bed", "dag", "run-outage", cluster_config(replicas=2)))
    since = datetime.now(UTC)
    result: dict = {}
    waiter = threading.Thread(target=lambda: result.update(first_event(
        H2OClusterReadyTrigger(info.to_dict(), timeout_s=240, formation_timeout_s=120, grace_s=60))))
    try:
        waiter.start()
        _until(lambda: len(k8s_bed.control_plane.audit_requests(since=since)) >= 3, 30)  # watching
        k8s_bed.control_plane.stop_apiserver()
        time.sleep(15)
        k8s_bed.control_plane.start_apiserver()
        waiter.join(240)
        assert (result.get("status"), result.get("cloud_size")) == ("ready", 2), result
        lists = [r for r in k8s_bed.control_plane.audit_requests(since=since) if r["verb"] == "list"]
        assert len(lists) >= 2, lists  # listed again after the outage
    finally:
        if not k8s_bed.control_plane.alive()["kube-apiserver"]:
            k8s_bed.control_plane.start_apiserver()
        waiter.join(240)
        k8s_bed.control_plane.restart_controllers()  # the next tests meet controllers that watch again
        backend.delete(info)


def _until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


# the waits of the fail-fast tests: a failure must come from the pods' state, well before this
FAIL_FAST_TIMEOUT_S = 600


@pytest.mark.parametrize("run, change, reasons, says", [
    ("run-badimage", {"image": "registry.invalid/nope:1"}, ("ErrImagePull", "ImagePullBackOff"), "cannot be pulled"),
    ("run-huge", {"cpu": "64"}, ("Unschedulable",), "Insufficient cpu"),
])
def test_a_pod_that_cannot_run_fails_the_wait_from_its_state(backend, run, change, reasons, says):
    """The reason is the pods' (never the wait's Timeout): the wait failed on what the pods showed."""
    info = backend.create(ClusterSpec.for_run("bed", "dag", run, cluster_config(**change)))
    with pytest.raises(ClusterError) as err:
        backend.wait_ready(info, timeout_s=FAIL_FAST_TIMEOUT_S)
    assert err.value.reason in reasons and says in str(err.value), err.value
    assert backend.delete(info) is True


def test_node_killed_is_reported(k8s_bed, backend):
    spec = ClusterSpec.for_run("bed", "dag", "run-kill", cluster_config(replicas=2))
    info = backend.create(spec)
    backend.wait_ready(info, timeout_s=180)
    pid = int(h2o_pids(info.name)[-1])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    st = backend.status(info)
    while time.monotonic() < deadline and not st.failed:
        time.sleep(0.5)
        st = backend.status(info)
    assert st.failed and st.reason in ("CrashLoopBackOff", "Terminated"), st
    assert backend.delete(info) is True
    assert h2o_pids(info.name) == []


def test_the_janitor_deletes_an_expired_cluster_and_keeps_one_in_time(k8s_bed, backend, monkeypatch):
    """The janitor's sweep of the bed's namespace, through the Airflow connection: a cluster whose expiry
    passed (its worker died before the teardown) goes, objects and JVMs; one whose expiry is ahead stays.
    Both runs count as running, so the expiry alone decides. (The backend fixture deletes what is left.)"""
    import dataclasses
    from types import SimpleNamespace

    from h2o_airflow.operators.janitor import H2OJanitorOperator

    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", airflow_connection(k8s_bed))
    small = cluster_config(replicas=1, memory="256m")
    expired = backend.create(dataclasses.replace(ClusterSpec.for_run("bed", "dag", "run-expired", small),
                                                 expires_at=datetime.now(UTC) - timedelta(minutes=5)))
    kept = backend.create(ClusterSpec.for_run("bed", "dag", "run-in-time", small))
    assert [c.name for c in backend.list_expired()] == [expired.name]
    _until(lambda: len(h2o_pids(expired.name)) == 1, 120)  # a JVM for the janitor to stop

    runs = SimpleNamespace(get_dagrun_state=lambda dag_id, run_id: "running")
    swept = H2OJanitorOperator(task_id="janitor", backend="kubernetes", namespace=NAMESPACE).sweep(
        "kubernetes", NAMESPACE, "kubernetes_default", {"ti": runs})
    assert swept["deleted"] == [expired.name] and swept["reasons"][expired.name].startswith("expired at"), swept
    assert [c.name for c in backend.list_clusters()] == [kept.name]
    assert backend._pods(expired.name, NAMESPACE) == [] and h2o_pids(expired.name) == []
    assert backend._pods(kept.name, NAMESPACE)


def test_airflow_identity_is_confined_to_its_namespace(k8s_bed):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    apps = client.AppsV1Api(k8s_bed.airflow)
    apps.list_namespaced_stateful_set(NAMESPACE)  # allowed
    with pytest.raises(ApiException) as err:
        apps.list_namespaced_stateful_set("default")
    assert err.value.status == 403
    # Secrets: the runs' logins in its namespace (the README's trade-off), none elsewhere
    client.CoreV1Api(k8s_bed.airflow).list_namespaced_secret(NAMESPACE)
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(k8s_bed.airflow).list_namespaced_secret("default")
    assert err.value.status == 403


def _bare_sts(backend, name: str, annotations: dict[str, str]) -> object:
    """A StatefulSet of no pods, labelled as a cluster of this project: enough for the janitor's listing."""
    from h2o_tasks.naming import MANAGED_BY

    labels = {"app.kubernetes.io/instance": name, "app.kubernetes.io/managed-by": MANAGED_BY}
    return backend.apps.create_namespaced_stateful_set(NAMESPACE, {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"replicas": 0, "serviceName": name, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "h2o", "image": "h2o:none"}]}}}})


def _owned_service(backend, name: str, owner: object, suffix: str) -> None:
    backend.core.create_namespaced_service(NAMESPACE, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"{name}-{suffix}", "labels": dict(owner.metadata.labels),
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name,
                                          "uid": owner.metadata.uid}]},
        "spec": {"clusterIP": "None", "selector": dict(owner.metadata.labels), "ports": [{"port": 54321}]}})


def test_the_janitors_delete_and_a_tasks_extend_are_one_compare_and_swap(k8s_bed, backend, monkeypatch):
    """The janitor decides on a listing; a task may extend the cluster before the delete. Against the real
    API server (a StatefulSet of no pods is enough): an extend after the listing keeps the cluster, even
    one that leaves the expiry where it was (at the ceiling); a cluster marked for deletion is never
    extended, and a patch from a stale read is refused."""
    from h2o_tasks.cluster import manifests

    name = "h2o-cas-janitor"
    past = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    _bare_sts(backend, name, {manifests.EXPIRES_ANNOTATION: past, manifests.CEILING_ANNOTATION: past})
    listed = next(c for c in backend.list_clusters() if c.name == name)
    assert listed.expires_at == past and listed.uid
    assert backend.extend(listed, timedelta(minutes=10)) == past  # the run's next task: capped at the ceiling
    assert backend.delete(listed, if_unchanged=True) is False  # decided before that extend: kept
    stale = backend._read_sts(name, NAMESPACE)
    assert stale.metadata.annotations[manifests.EXTENDED_ANNOTATION] > past
    backend.apps.patch_namespaced_stateful_set(name, NAMESPACE, {"metadata": {"labels": {"touched": "1"}}})
    assert backend._patch_if_unchanged(stale, {manifests.EXPIRES_ANNOTATION: past}) is None
    relisted = next(c for c in backend.list_clusters() if c.name == name)
    assert backend._mark_reaping(relisted, NAMESPACE) is not None  # the janitor's mark, then its delete
    assert next(c for c in backend.list_clusters() if c.name == name).reaping_since  # later sweeps see it
    with pytest.raises(ClusterError) as refused:
        backend.extend(relisted, timedelta(minutes=10))
    assert refused.value.reason == "Reaped" and refused.value.retryable
    # a janitor killed between its mark and its delete: the run's tasks see a lost cluster (and rebuild it)
    st = backend.status(relisted)
    assert (st.exists, st.failed, st.reason) == (True, True, "Reaped"), st
    from h2o_airflow.triggers.cluster import H2OClusterReadyTrigger

    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", airflow_connection(k8s_bed))
    waited = first_event(H2OClusterReadyTrigger(relisted.to_dict(), timeout_s=60))  # the triggerer's wait too
    assert (waited["status"], waited["reason"]) == ("failed", "Reaped"), waited
    marked = backend._read_sts(name, NAMESPACE)
    assert backend.delete(relisted, if_unchanged=True) is True
    assert backend._read_sts(name, NAMESPACE) is None
    with pytest.raises(ClusterError) as gone:  # a conditional patch of a deleted cluster says so
        backend._patch_if_unchanged(marked, {manifests.EXPIRES_ANNOTATION: past})
    assert gone.value.reason == "NotFound"
    # a janitor that read the cluster just before its teardown deleted it marks nothing, and its sweep goes on
    monkeypatch.setattr(backend, "_read_sts", lambda *a: stale)
    assert backend._mark_reaping(relisted, NAMESPACE) is None


def test_the_janitor_deletes_only_the_incarnation_it_marked(k8s_bed, backend, monkeypatch):
    """A run's create that finds its cluster marked deletes it and makes it again under the same name,
    possibly while the janitor that marked it is still deleting. The janitor's deletes carry the marked
    objects' uids: the new incarnation, and what it owns, are never touched, nor is it waited for."""
    from h2o_tasks.cluster import kubernetes, manifests

    name = "h2o-cas-incarnation"
    past = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    first = _bare_sts(backend, name, {manifests.EXPIRES_ANNOTATION: past})
    _owned_service(backend, name, first, "first")
    stale = backend.core.list_namespaced_service(NAMESPACE, label_selector=backend._selector(name))
    listed = next(c for c in backend.list_clusters() if c.name == name)
    marked = backend._mark_reaping(listed, NAMESPACE)
    assert marked is not None and marked.metadata.uid == first.metadata.uid
    backend.delete(name)  # the run's create replaces the marked cluster ...
    second = _bare_sts(backend, name, {manifests.EXPIRES_ANNOTATION: past})  # ... with a new one
    _owned_service(backend, name, second, "second")
    _owned_service(backend, name, second, "first")  # even an object of the same name as a marked one
    # the janitor goes on with what it marked; a listing it made before the new incarnation names a
    # Service that is now the new one's: the uid precondition refuses that delete
    lists = []

    def stale_first(ns, label_selector):
        lists.append(1)
        return stale if len(lists) == 1 else backend.core.list_namespaced_service(ns, label_selector=label_selector)

    monkeypatch.setattr(backend, "_listers", lambda: [(stale_first, backend.core.delete_namespaced_service)])
    assert backend._delete_objects(name, NAMESPACE, 10.0, kubernetes._incarnation(marked)) is True
    monkeypatch.undo()
    assert backend._delete_objects(name, NAMESPACE, 10.0, kubernetes._incarnation(marked)) is False
    assert backend._read_sts(name, NAMESPACE).metadata.uid == second.metadata.uid
    services = backend.core.list_namespaced_service(NAMESPACE, label_selector=backend._selector(name)).items
    assert sorted(s.metadata.name for s in services) == [f"{name}-first", f"{name}-second"]
    assert backend.delete(listed, if_unchanged=True) is False  # a later decision on the old listing: kept
    assert backend._read_sts(name, NAMESPACE) is not None
    relisted = next(c for c in backend.list_clusters() if c.name == name)
    assert relisted.uid == second.metadata.uid
    assert backend.delete(relisted, if_unchanged=True) is True  # the new incarnation and what it owns
    assert backend.core.list_namespaced_service(NAMESPACE, label_selector=backend._selector(name)).items == []
    assert backend._read_sts(name, NAMESPACE) is None


def test_https_from_a_keystore_secret_verified_against_its_ca_only(k8s_bed, backend):
    """cluster.tls: H2O serves its REST API over HTTPS with the keystore of a Secret in cert-manager's
    layout; the backend's clients (readiness, the H2O client) verify it against the Secret's ca.crt. Plain
    HTTP gets no answer, a client trusting the system's CAs refuses it, and a cluster whose Secret names
    another CA fails its wait at once (CertificateUntrusted), not at its timeout."""
    import http.client
    import ssl
    import urllib.error
    import urllib.request

    from kubernetes import client

    from h2o_tasks.config import TlsConfig
    from h2o_tasks.session import connect
    from tests.fixtures import tls

    core = client.CoreV1Api(k8s_bed.admin)
    material = tls.material(k8s_bed.network.subnet, [f"*.{NAMESPACE}.svc.{DOMAIN}"])
    tls.create_secrets(core, NAMESPACE, "h2o-tls-ok", material)
    tls.create_secrets(core, NAMESPACE, "h2o-tls-other-ca", material, ca_pem=tls.other_ca_pem())
    try:
        spec = ClusterSpec.for_run("bed", "dag", "run-tls", cluster_config(
            replicas=1, tls=TlsConfig(secret="h2o-tls-ok", password_secret="h2o-tls-ok-password")))
        info = backend.create(spec)
        assert info.url.startswith("https://") and (info.tls_secret, info.tls_ca_key) == ("h2o-tls-ok", "ca.crt")
        assert backend.wait_ready(info, timeout_s=180).ready
        url = backend.local_endpoint(info)
        assert url.startswith("https://10.244.")
        login = backend.login(info)
        with pytest.raises(urllib.error.URLError) as untrusted:  # the system's CAs do not vouch for it
            urllib.request.urlopen(f"{url}/3/Cloud", timeout=10, context=ssl.create_default_context())
        assert isinstance(untrusted.value.reason, ssl.SSLCertVerificationError)
        with pytest.raises((urllib.error.URLError, OSError, http.client.HTTPException)):  # no plain HTTP there
            urllib.request.urlopen(url.replace("https://", "http://") + "/3/Cloud", timeout=10)
        import h2o

        connect(url, login=login)  # the H2O client, verifying against the Secret's CA
        try:
            assert h2o.cluster().cloud_size == 1
        finally:
            h2o.connection().close()
        assert backend.log_secrets(info) == [material.password]  # masked in a diagnostics bundle
        assert backend.delete(info) is True

        other = backend.create(ClusterSpec.for_run("bed", "dag", "run-tls-other", cluster_config(
            replicas=1, tls=TlsConfig(secret="h2o-tls-other-ca", password_secret="h2o-tls-ok-password"))))
        with pytest.raises(ClusterError) as err:
            backend.wait_ready(other, timeout_s=FAIL_FAST_TIMEOUT_S)
        assert err.value.reason == "CertificateUntrusted" and "does not trust" in str(err.value), err.value
        assert backend.delete(other) is True
    finally:
        for name in ("h2o-tls-ok", "h2o-tls-ok-password", "h2o-tls-other-ca", "h2o-tls-other-ca-password"):
            core.delete_namespaced_secret(name, NAMESPACE)
