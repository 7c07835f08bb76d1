"""The test bed's control plane is a real Kubernetes: API, controllers, scheduler, GC, RBAC.

No kubelet runs, so Pods are scheduled (spec.nodeName) but never started, and a bound Pod's
graceful deletion is never confirmed: the Pods here use terminationGracePeriodSeconds=0 so that a
deletion (by the garbage collector) removes them at once.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from testbed.controlplane import node_manifest

pytestmark = pytest.mark.e2e

NODE = "node-1"


def wait_for(what: str, fn, timeout: float = 60, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def admin(control_plane) -> client.ApiClient:
    api = config.new_client_from_config(config_file=str(control_plane.admin_kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="module")
def airflow_api(control_plane) -> client.ApiClient:
    api = config.new_client_from_config(config_file=str(control_plane.airflow_kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="module")
def namespace(admin) -> str:
    core = client.CoreV1Api(admin)
    name = f"tb-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # Pods are admitted only once the serviceaccount controller made "default" here.
    wait_for("default ServiceAccount", lambda: _exists(lambda: core.read_namespaced_service_account("default", name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def node(admin) -> str:
    core = client.CoreV1Api(admin)
    core.create_node(node_manifest(NODE, cpu="2", memory="8Gi", pods="110"))
    return NODE


def _exists(read) -> bool:
    try:
        read()
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


def test_readyz(admin):
    resp = admin.call_api("/readyz", "GET", auth_settings=["BearerToken"], _preload_content=False)
    assert resp.status == 200
    assert resp.data.decode().strip() == "ok"
    version = client.VersionApi(admin).get_code()
    assert version.major == "1" and version.git_version.startswith("v1.")


def test_node_registered_ready(admin, node):
    n = client.CoreV1Api(admin).read_node(node)
    assert n.status.allocatable == {"cpu": "2", "memory": "8Gi", "pods": "110"}
    assert [(c.type, c.status) for c in n.status.conditions] == [("Ready", "True")]
    assert not n.spec.taints


def _container(requests: dict[str, str]):
    """A container that is never started (its image is never pulled): only its requests matter here."""
    return client.V1Container(name="main", image="registry.invalid/never-pulled:1",
                              resources=client.V1ResourceRequirements(requests=requests))


def _statefulset(name: str, replicas: int = 3) -> client.V1StatefulSet:
    labels = {"app": name}
    return client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1StatefulSetSpec(
            replicas=replicas,
            service_name=name,
            pod_management_policy="Parallel",
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    termination_grace_period_seconds=0,
                    containers=[_container({"cpu": "100m", "memory": "64Mi"})],
                ),
            ),
        ),
    )


def test_statefulset_scheduled_then_garbage_collected(admin, namespace, node):
    core, apps = client.CoreV1Api(admin), client.AppsV1Api(admin)
    apps.create_namespaced_stateful_set(namespace, _statefulset("web"))

    def bound_pods():
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        return pods if len(pods) == 3 and all(p.spec.node_name == node for p in pods) else None

    pods = wait_for("3 Pods bound to node-1", bound_pods, timeout=60)
    assert sorted(p.metadata.name for p in pods) == ["web-0", "web-1", "web-2"]
    for p in pods:
        assert p.metadata.owner_references[0].kind == "StatefulSet"
        scheduled = [c for c in p.status.conditions or [] if c.type == "PodScheduled"]
        assert scheduled and scheduled[0].status == "True"

    apps.delete_namespaced_stateful_set("web", namespace, body=client.V1DeleteOptions(propagation_policy="Foreground"))
    wait_for(
        "Pods deleted by the garbage collector",
        lambda: not core.list_namespaced_pod(namespace, label_selector="app=web").items,
        timeout=60,
    )
    wait_for("StatefulSet gone", lambda: not _exists(lambda: apps.read_namespaced_stateful_set("web", namespace)))


def test_too_big_pod_is_unschedulable(admin, namespace, node):
    core = client.CoreV1Api(admin)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="too-big"),
        spec=client.V1PodSpec(
            termination_grace_period_seconds=0,
            containers=[_container({"cpu": "64"})],
        ),
    )
    core.create_namespaced_pod(namespace, pod)

    def unschedulable():
        p = core.read_namespaced_pod("too-big", namespace)
        cond = [c for c in p.status.conditions or [] if c.type == "PodScheduled"]
        return (p, cond[0]) if cond and cond[0].status == "False" else None

    p, cond = wait_for("PodScheduled=False", unschedulable, timeout=60)
    assert cond.reason == "Unschedulable"
    assert "Insufficient cpu" in cond.message
    assert p.status.phase == "Pending" and not p.spec.node_name

    def failed_scheduling():
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=too-big").items
        return [e for e in events if e.reason == "FailedScheduling"]

    events = wait_for("FailedScheduling event", failed_scheduling, timeout=30)
    assert "Insufficient cpu" in events[0].message
    core.delete_namespaced_pod("too-big", namespace)


def test_rbac_for_the_airflow_identity(admin, airflow_api, namespace):
    core, rbac = client.CoreV1Api(airflow_api), client.RbacAuthorizationV1Api(admin)

    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod(namespace)
    assert exc.value.status == 403
    assert json.loads(exc.value.body)["message"].startswith('pods is forbidden: User "airflow" cannot list')

    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="airflow-pods"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="airflow-pods"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="airflow-pods"),
            subjects=[client.RbacV1Subject(kind="User", name="airflow", api_group="rbac.authorization.k8s.io")],
        ),
    )

    def can_list():
        try:
            return core.list_namespaced_pod(namespace) is not None
        except ApiException as e:
            if e.status == 403:
                return False
            raise

    wait_for("RBAC grant to take effect", can_list, timeout=30)

    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default")
    assert exc.value.status == 403
