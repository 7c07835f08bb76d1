"""The Kubernetes backend against the real control plane, with pods that run real H2O JVMs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import pytest

from h2o_tasks.cluster.base import ClusterSpec
from h2o_tasks.errors import ClusterError
from tests.fixtures.k8s_bed import NAMESPACE, cluster_config

pytestmark = pytest.mark.e2e


@pytest.fixture
def backend(bed_backend):
    return bed_backend


def h2o_pids(name: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", "--", f"h2o.jar -name {name} "], capture_output=True, text=True).stdout
    return out.split()


def test_statefulset_forms_one_cloud_with_a_single_ready_leader(k8s_bed, backend):
    spec = ClusterSpec.for_run("bed", "dag", "run-ok", cluster_config())
    t0 = time.monotonic()
    info = backend.create(spec)
    assert backend.create(spec).name == info.name  # a retry re-attaches
    st = backend.wait_ready(info, timeout_s=180)
    formed = time.monotonic() - t0
    assert st.ready and st.cloud_size == 3, st
    pods = backend._pods(info.name, NAMESPACE)
    assert len(pods) == 3 and sum(p.ready for p in pods) == 1  # only the leader passes the probe
    assert len(h2o_pids(info.name)) == 3
    print(f"cloud of 3 ready {formed:.1f}s after create")
    assert backend.delete(info) is True
    assert backend._pods(info.name, NAMESPACE) == []
    assert h2o_pids(info.name) == []
    assert k8s_bed.network.leftovers() == []


def test_the_trigger_waits_through_the_providers_async_hook(k8s_bed, backend, monkeypatch):
    """The deferrable wait as the triggerer runs it: AsyncKubernetesHook (kubernetes_asyncio) + /3/Cloud."""
    from h2o_airflow.backends import backend_for
    from h2o_airflow.triggers.cluster import H2OClusterReadyTrigger

    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(k8s_bed.control_plane.airflow_kubeconfig),
                                              "namespace": NAMESPACE}}))
    assert hasattr(backend_for("kubernetes", endpoint_mode="pod-ip"), "astatus")
    info = backend.create(ClusterSpec.for_run("bed", "dag", "run-async", cluster_config(replicas=2)))
    trigger = H2OClusterReadyTrigger(info.to_dict(), timeout_s=180, poll_s=0.2, formation_timeout_s=90)

    async def first_event():
        events = trigger.run()
        try:
            return await anext(events)
        finally:
            await events.aclose()

    event = asyncio.run(first_event()).payload
    assert (event["status"], event["cloud_size"]) == ("ready", 2), event
    backend.delete(info)
    missing = asyncio.run(first_event()).payload  # the cluster is gone: failed at once, not a timeout
    assert (missing["status"], missing["reason"]) == ("failed", "NotFound"), missing


def test_image_that_cannot_be_pulled_fails_fast(backend):
    spec = ClusterSpec.for_run("bed", "dag", "run-badimage", cluster_config(image="registry.invalid/nope:1"))
    info = backend.create(spec)
    t0 = time.monotonic()
    with pytest.raises(ClusterError) as err:
        backend.wait_ready(info, timeout_s=120)
    assert err.value.reason in ("ErrImagePull", "ImagePullBackOff") and time.monotonic() - t0 < 30
    assert backend.delete(info) is True


def test_unschedulable_pod_fails_fast(backend):
    spec = ClusterSpec.for_run("bed", "dag", "run-huge", cluster_config(cpu="64"))
    info = backend.create(spec)
    t0 = time.monotonic()
    with pytest.raises(ClusterError) as err:
        backend.wait_ready(info, timeout_s=120)
    assert err.value.reason == "Unschedulable" and time.monotonic() - t0 < 30
    assert "Insufficient cpu" in str(err.value)
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


def test_janitor_lists_expired_clusters(backend):
    from datetime import UTC, datetime, timedelta

    spec = ClusterSpec.for_run("bed", "dag", "run-ttl", cluster_config(replicas=1))
    info = backend.create(spec)
    assert info.name not in [c.name for c in backend.list_expired()]
    later = datetime.now(UTC) + timedelta(days=1)
    assert info.name in [c.name for c in backend.list_expired(later)]


def test_airflow_identity_is_confined_to_its_namespace(k8s_bed):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    apps = client.AppsV1Api(k8s_bed.airflow)
    apps.list_namespaced_stateful_set(NAMESPACE)  # allowed
    with pytest.raises(ApiException) as err:
        apps.list_namespaced_stateful_set("default")
    assert err.value.status == 403
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(k8s_bed.airflow).list_namespaced_secret(NAMESPACE)
    assert err.value.status == 403
