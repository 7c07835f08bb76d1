# Runs after test_controlplane.py (file order): that module registers a node of the same name as the bed's agent.
"""No cluster outlives its run, on the real control plane: a failed create leaves nothing, a re-attach
reconciles every object, and the cluster's anchor Job deletes it at its ceiling with no Airflow at all."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from h2o_tasks import testhooks
from h2o_tasks.cluster import manifests
from h2o_tasks.cluster.base import ClusterSpec
from h2o_tasks.errors import ClusterError
from tests.fixtures.k8s_bed import NAMESPACE, cluster_config
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def backend(bed_backend):
    return bed_backend


def objects_of(bed, name: str) -> dict[str, list[str]]:
    """Every object of the cluster the API server still has, by kind (read as the admin)."""
    from kubernetes import client

    selector = f"app.kubernetes.io/instance={name}"
    found = {
        "Job": client.BatchV1Api(bed.admin).list_namespaced_job(NAMESPACE, label_selector=selector).items,
        "StatefulSet": client.AppsV1Api(bed.admin).list_namespaced_stateful_set(NAMESPACE, label_selector=selector).items,
        "Service": client.CoreV1Api(bed.admin).list_namespaced_service(NAMESPACE, label_selector=selector).items,
        "Pod": client.CoreV1Api(bed.admin).list_namespaced_pod(NAMESPACE, label_selector=selector).items,
        "PodDisruptionBudget": client.PolicyV1Api(bed.admin).list_namespaced_pod_disruption_budget(
            NAMESPACE, label_selector=selector).items,
        "NetworkPolicy": client.NetworkingV1Api(bed.admin).list_namespaced_network_policy(
            NAMESPACE, label_selector=selector).items,
    }
    return {kind: sorted(o.metadata.name for o in items) for kind, items in found.items() if items}


def test_a_create_that_fails_part_way_leaves_nothing(k8s_bed, backend):
    # the NetworkPolicy, applied last, is refused (a namespace label value with a space)
    spec = ClusterSpec.for_run("bed", "dag", "run-partial", cluster_config(replicas=1, client_namespace="Airflow NS"))
    with pytest.raises(ClusterError) as err:
        backend.create(spec)
    assert err.value.reason == "CreateFailed" and "NetworkPolicy" in str(err.value), err.value
    deadline = time.monotonic() + 60
    while objects_of(k8s_bed, spec.name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert objects_of(k8s_bed, spec.name) == {}


def test_a_reattach_reconciles_every_object(k8s_bed, backend):
    from kubernetes import client

    spec = ClusterSpec.for_run("bed", "dag", "run-reattach", cluster_config(replicas=1))
    info = backend.create(spec)
    made = objects_of(k8s_bed, spec.name)
    assert set(made) >= {"Job", "StatefulSet", "Service", "PodDisruptionBudget", "NetworkPolicy"}
    anchor = client.BatchV1Api(k8s_bed.admin).read_namespaced_job(manifests.anchor_name(spec.name), NAMESPACE)
    sts = client.AppsV1Api(k8s_bed.admin).read_namespaced_stateful_set(spec.name, NAMESPACE)
    assert [o.uid for o in sts.metadata.owner_references] == [anchor.metadata.uid]  # owned by the anchor
    # a partial earlier create (or someone) left the cluster without its NetworkPolicy: the retry puts it back
    net = client.NetworkingV1Api(k8s_bed.admin)
    net.delete_namespaced_network_policy(spec.name, NAMESPACE)
    assert backend.create(spec).name == info.name
    assert net.read_namespaced_network_policy(spec.name, NAMESPACE).metadata.name == spec.name
    assert client.AppsV1Api(k8s_bed.admin).read_namespaced_stateful_set(
        spec.name, NAMESPACE).metadata.uid == sts.metadata.uid  # the cluster itself was kept
    # the pipeline file changed between two tries (2 nodes now): the StatefulSet is made again
    bigger = ClusterSpec.for_run("bed", "dag", "run-reattach", cluster_config(replicas=2))
    backend.create(bigger)
    again = client.AppsV1Api(k8s_bed.admin).read_namespaced_stateful_set(spec.name, NAMESPACE)
    assert again.spec.replicas == 2 and again.metadata.uid != sts.metadata.uid
    assert backend.delete(info) is True
    assert objects_of(k8s_bed, spec.name) == {}


def test_the_expiry_moves_with_the_tasks_but_never_past_the_ceiling(backend):
    spec = ClusterSpec.for_run("bed", "dag", "run-extend", cluster_config(replicas=1, ttl_minutes=5,
                                                                          max_run_minutes=30))
    info = backend.create(spec)
    first = datetime.fromisoformat(backend.list_clusters()[0].expires_at)
    later = datetime.fromisoformat(backend.extend(info, timedelta(minutes=20)))
    assert later - first > timedelta(minutes=14)
    capped = datetime.fromisoformat(backend.extend(info, timedelta(hours=5)))
    assert capped == datetime.fromisoformat(info.ceiling_at)
    assert [c.expires_at for c in backend.list_clusters() if c.name == info.name] == [capped.isoformat()]
    assert info.name not in [c.name for c in backend.list_expired()]


def test_kubernetes_deletes_the_cluster_at_its_ceiling_with_no_airflow_at_all(k8s_bed, backend, monkeypatch):
    """Nothing of Airflow runs here: the anchor Job fails at its deadline, the TTL controller deletes
    it, and the garbage collector deletes everything it owns (the pods with their StatefulSet)."""
    monkeypatch.setenv(testhooks.CLUSTER_SECONDS_ENV, json.dumps({"ceiling": 20}))
    spec = ClusterSpec.for_run("bed", "dag", "run-ceiling", cluster_config(replicas=2))
    backend.create(spec)
    # the pods, not a formed cloud: how fast H2O forms is not what this shows, and a loaded machine can
    # take longer than the 20 s ceiling to form one
    wait_for("the cluster's two pods", lambda: len(objects_of(k8s_bed, spec.name).get("Pod", [])) == 2, 60, poll=0.5)
    monkeypatch.delenv(testhooks.CLUSTER_SECONDS_ENV)
    deadline = time.monotonic() + 180
    while objects_of(k8s_bed, spec.name) and time.monotonic() < deadline:
        time.sleep(1)
    left = objects_of(k8s_bed, spec.name)
    assert left == {}, left
    print(f"cluster gone {(datetime.now(UTC) - spec.ceiling_at).total_seconds():.0f}s after its ceiling")
