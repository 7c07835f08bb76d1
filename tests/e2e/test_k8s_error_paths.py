"""The Kubernetes backend's refusals on the real control plane, as Airflow's identity: a StatefulSet of
another run under this run's cluster name (NameClash), and a cluster whose pods do not go (a pod held
by a finalizer while it terminates, as a pod on a lost node is) within the delete's timeout (DeleteTimeout). No H2O runs:
the objects these tests make have no pod to run or cannot be scheduled."""

from __future__ import annotations

import pytest

from h2o_tasks.cluster import manifests
from h2o_tasks.cluster.base import ClusterSpec
from h2o_tasks.errors import ClusterError
from tests.fixtures.k8s_bed import NAMESPACE, cluster_config

pytestmark = pytest.mark.e2e
HOLD = "h2o-airflow.test/hold"


def test_a_statefulset_of_another_run_under_the_name_is_refused_and_left_alone(k8s_bed, bed_backend):
    from kubernetes import client

    apps = client.AppsV1Api(k8s_bed.admin)
    mine = ClusterSpec.for_run("bed", "dag", "run-mine", cluster_config(replicas=1))
    other = ClusterSpec.for_run("bed", "dag", "run-other", cluster_config(replicas=1))
    body = next(m.body for m in manifests.render(other) if m.kind == "StatefulSet")
    body["metadata"]["name"] = mine.name  # the other run's object, under this run's name
    body["spec"]["replicas"] = 0
    foreign = apps.create_namespaced_stateful_set(NAMESPACE, body)
    try:
        with pytest.raises(ClusterError) as err:
            bed_backend.create(mine)
        assert err.value.reason == "NameClash" and not err.value.retryable
        assert f"StatefulSet {NAMESPACE}/{mine.name} exists but belongs to another run (run-other)" in str(err.value)
        kept = apps.read_namespaced_stateful_set(mine.name, NAMESPACE)  # its spec and labels as they were
        assert (kept.metadata.uid, kept.metadata.generation, kept.metadata.labels) == (
            foreign.metadata.uid, foreign.metadata.generation, foreign.metadata.labels)
        # nothing of this run was made beside it
        selector = f"app.kubernetes.io/instance={mine.name}"
        assert client.BatchV1Api(k8s_bed.admin).list_namespaced_job(NAMESPACE, label_selector=selector).items == []
        assert client.CoreV1Api(k8s_bed.admin).list_namespaced_service(NAMESPACE, label_selector=selector).items == []
    finally:
        apps.delete_namespaced_stateful_set(mine.name, NAMESPACE)


def test_pods_that_do_not_go_fail_the_delete_after_its_timeout_retryably(k8s_bed, bed_backend):
    from kubernetes import client

    core = client.CoreV1Api(k8s_bed.admin)
    spec = ClusterSpec.for_run("bed", "dag", "run-stuck", cluster_config(replicas=1))
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{spec.name}-0", "labels": spec.labels, "finalizers": [HOLD]},
           "spec": {"schedulerName": "no-such-scheduler",  # never runs: nothing to start on the bed
                    "containers": [{"name": "h2o", "image": "h2o-airflow/h2o:3.46.0.11"}]}}
    core.create_namespaced_pod(NAMESPACE, pod)
    core.delete_namespaced_pod(f"{spec.name}-0", NAMESPACE)  # terminating, and held there
    assert core.read_namespaced_pod(f"{spec.name}-0", NAMESPACE).metadata.deletion_timestamp is not None
    try:
        with pytest.raises(ClusterError) as err:
            bed_backend.delete(spec.name, timeout_s=2)
        assert err.value.reason == "DeleteTimeout" and err.value.retryable  # the teardown's retry waits again
        assert f"cluster {NAMESPACE}/{spec.name} still has 1 pod(s)" in str(err.value) and "after 2s" in str(err.value)
    finally:
        core.patch_namespaced_pod(f"{spec.name}-0", NAMESPACE, {"metadata": {"finalizers": None}})
    bed_backend.delete(spec.name, timeout_s=60)  # the retry, once the pod is let go
    assert core.list_namespaced_pod(NAMESPACE, label_selector=f"app.kubernetes.io/instance={spec.name}").items == []
