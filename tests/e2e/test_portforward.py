"""endpoint_mode port-forward against the real API server: the forward goes client -> kube-apiserver
(pods/portforward, RBAC of k8s/rbac.yaml) -> the test bed's kubelet server -> the leader pod's H2O."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from h2o_airflow.triggers.cluster import H2OClusterReadyTrigger
from h2o_tasks.cluster.base import ClusterInfo, ClusterSpec
from h2o_tasks.cluster.kubernetes import KubernetesBackend
from h2o_tasks.cluster.portforward import PortForward, PortForwardError
from tests.fixtures.k8s_bed import DOMAIN, NAMESPACE, ROOT, airflow_connection, first_event
from tests.fixtures.k8s_bed import cluster_config as bed_config

pytestmark = pytest.mark.e2e


def cluster_config(**kw):
    return bed_config(**{"endpoint_mode": "port-forward", **kw})


@pytest.fixture
def backend(k8s_bed):
    b = KubernetesBackend(k8s_bed.airflow, namespace=NAMESPACE, endpoint_mode="port-forward")
    yield b
    b.close()
    for info in b.list_clusters():  # clean up even when a test failed
        b.delete(info)


def forward_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("port-forward", "Kubernetes port forward"))]


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except OSError:
        return True


def kubelet_sessions(k8s_bed) -> int:
    return k8s_bed.agent.kubelet.sessions


SUBPROCESS = """
import json, sys, urllib.request
from kubernetes import client, config
from h2o_tasks.cluster.base import ClusterInfo
from h2o_tasks.cluster.kubernetes import KubernetesBackend
from h2o_tasks.cluster.login import request
cfg = client.Configuration()
config.load_kube_config(config_file=sys.argv[1], client_configuration=cfg)
info = ClusterInfo.from_dict(json.loads(sys.argv[2]))
with KubernetesBackend(client.ApiClient(cfg), namespace=info.namespace, endpoint_mode="port-forward") as b:
    url = b.local_endpoint(info)
    with urllib.request.urlopen(request(url + "/3/Cloud?skip_ticks=true", b.login(info)), timeout=10) as r:
        print(json.dumps({"url": url, "cloud_size": json.load(r)["cloud_size"]}))
"""


def test_port_forward_cluster_end_to_end(k8s_bed, backend, monkeypatch):
    spec = ClusterSpec.for_run("pf", "dag", "run-pf", cluster_config())
    t0 = time.monotonic()
    info = backend.create(spec)
    # the deferred wait as the triggerer runs it: the provider's async hook watches the pods, and /3/Cloud
    # is asked (with the cluster's login) through a forward of the triggerer's own
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", airflow_connection(k8s_bed))
    event = first_event(H2OClusterReadyTrigger(info.to_dict(), timeout_s=240, formation_timeout_s=120))
    formed = time.monotonic() - t0
    assert (event["status"], event["cloud_size"]) == ("ready", 3), event
    assert backend.wait_ready(info, timeout_s=60).ready  # this process's forward too
    leader = next(p for p in backend._pods(info.name, NAMESPACE) if p.ready)

    # what may go to XCom is the client Service's URL, never this process's 127.0.0.1 forward
    assert backend.endpoint(info) == info.url == f"http://{info.name}.{NAMESPACE}.svc.{DOMAIN}:54321"  # the bed's domain
    assert info.endpoint_mode == "port-forward"
    sessions = kubelet_sessions(k8s_bed)
    assert sessions > 0  # the readiness polls went API server -> kubelet

    # the H2O hook, as a task would use it: its own forward, a real H2O client session
    from h2o_airflow.hooks.h2o import H2OHook

    t1 = time.monotonic()
    with H2OHook(cluster=info.to_dict(), aws_conn_id=None) as hook:
        h2o = hook.get_conn()
        url = hook.url()
        assert url.startswith("http://127.0.0.1:") and url != backend.local_endpoint(info)
        assert h2o.cluster().cloud_size == 3
        frame = h2o.H2OFrame({"delay": [1.5, -2.0, 7.25, 0.0], "carrier": ["UA", "AA", "UA", "DL"]})
        assert frame.shape == (4, 2)
        assert frame["delay"].sum() == pytest.approx(6.75)
        assert sorted(frame["carrier"].asfactor().levels()[0]) == ["AA", "DL", "UA"]
        h2o.remove(frame)
        hook_port = int(url.rsplit(":", 1)[1])
    assert not h2o.connection().connected  # the hook ended its H2O session (through its forward) before closing it
    print(f"cloud of 3 ready {formed:.1f}s after create through a port-forward; "
          f"H2O session through the hook's forward {time.monotonic() - t1:.1f}s; "
          f"kubelet sessions {kubelet_sessions(k8s_bed)} (readiness: {sessions})")
    assert refused(hook_port)  # the hook closed its forward
    assert kubelet_sessions(k8s_bed) > sessions

    # another process (a triggerer, another task) opens its own forward from the XCom dict
    out = subprocess.run([sys.executable, "-c", SUBPROCESS, str(k8s_bed.control_plane.airflow_kubeconfig),
                          json.dumps(info.to_dict())], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    child = json.loads(out.stdout.strip().splitlines()[-1])
    assert child["cloud_size"] == 3 and child["url"].startswith("http://127.0.0.1:")

    log = (Path(k8s_bed.agent.workdir) / "kubelet.log").read_text()
    assert f"port-forward {NAMESPACE}/{leader.name} [54321]" in log

    forwarded = backend.local_endpoint(info)
    assert backend.delete(info) is True  # closes this process's forward, then the pods go
    assert refused(int(forwarded.rsplit(":", 1)[1]))
    assert backend._pods(info.name, NAMESPACE) == []
    assert k8s_bed.network.leftovers() == []
    deadline = time.monotonic() + 10
    while forward_threads() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert forward_threads() == []


def test_a_forward_reaches_the_leader_pod_made_again_after_it_was_killed(k8s_bed, backend):
    """This process has a forward open to the leader when the pod is killed; the StatefulSet makes it
    again and a new cloud forms. The next ``local_endpoint`` reaches the new pod's H2O (a new node),
    through a new forward when the pod's address changed."""
    from kubernetes import client

    from h2o_tasks.cluster.login import request
    from tests.fixtures.waiting import wait_for

    def node_pid(url: str) -> int:
        with urllib.request.urlopen(request(f"{url}/3/Cloud", backend.login(info)), timeout=10) as resp:
            return json.load(resp)["nodes"][0]["pid"]

    info = backend.create(ClusterSpec.for_run("pf", "dag", "run-pf-switch", cluster_config(replicas=1)))
    core = client.CoreV1Api(k8s_bed.admin)
    assert backend.wait_ready(info, timeout_s=180).ready
    first = backend.local_endpoint(info)
    before = node_pid(first)
    [pod] = core.list_namespaced_pod(NAMESPACE, label_selector=backend._selector(info.name)).items
    core.delete_namespaced_pod(pod.metadata.name, NAMESPACE, grace_period_seconds=0)

    def made_again():
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=backend._selector(info.name)).items
        return [p for p in pods if p.metadata.uid != pod.metadata.uid and p.status.pod_ip]

    [again] = wait_for("the leader pod made again", made_again, 120)
    assert backend.wait_ready(info, timeout_s=180).ready  # observed through this process's forward
    second = backend.local_endpoint(info)
    assert node_pid(second) != before  # the new pod's H2O answers
    if again.status.pod_ip != pod.status.pod_ip:  # the forward follows the leader's (name, address)
        assert second != first and refused(int(first.rsplit(":", 1)[1]))
    print(f"leader made again at {again.status.pod_ip} (was {pod.status.pod_ip}); forward {first} -> {second}")
    assert backend.delete(info) is True


@contextlib.contextmanager
def role_without_portforward(k8s_bed):
    """The airflow identity with the Role of k8s/rbac.yaml minus pods/portforward, restored afterwards.

    (A ServiceAccount token would be a separate identity, but the bed's API server rejects
    TokenRequest tokens as "invalid bearer token"; impersonation headers do not reach the websocket.)
    """
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(k8s_bed.admin)
    authz = client.AuthorizationV1Api(k8s_bed.airflow)
    role = rbac.read_namespaced_role("h2o-airflow", NAMESPACE)
    rules = k8s_bed.admin.sanitize_for_serialization(role.rules)
    review = {"spec": {"resourceAttributes": {"namespace": NAMESPACE, "verb": "create", "resource": "pods",
                                              "subresource": "portforward"}}}

    def allowed() -> bool:
        return authz.create_self_subject_access_review(review).status.allowed

    def settle(want: bool) -> None:
        deadline = time.monotonic() + 10
        while allowed() != want:
            assert time.monotonic() < deadline, f"RBAC did not settle to allowed={want}"
            time.sleep(0.1)

    rbac.patch_namespaced_role("h2o-airflow", NAMESPACE,
                               {"rules": [r for r in rules if "pods/portforward" not in r["resources"]]})
    try:
        settle(False)
        yield
    finally:
        rbac.patch_namespaced_role("h2o-airflow", NAMESPACE, {"rules": rules})
        settle(True)


def test_without_pods_portforward_the_error_is_clear(k8s_bed, backend, monkeypatch):
    spec = ClusterSpec.for_run("pf", "dag", "run-pf-denied", cluster_config(replicas=1))
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", airflow_connection(k8s_bed))
    with role_without_portforward(k8s_bed):
        info = backend.create(spec)  # everything else is still allowed
        # the triggerer's wait: a failed event at once (the task then deletes the cluster), not a timeout
        event = first_event(H2OClusterReadyTrigger(info.to_dict(), timeout_s=600, formation_timeout_s=120))
        assert (event["status"], event["reason"]) == ("failed", "PortForwardForbidden"), event
        assert "pods/portforward" in event["message"], event
        t0 = time.monotonic()
        with pytest.raises(PortForwardError) as err:
            backend.wait_ready(info, timeout_s=180)
        took = time.monotonic() - t0
        assert err.value.reason == "PortForwardForbidden" and not err.value.retryable
        msg = str(err.value)
        assert "403" in msg and "pods/portforward" in msg and "k8s/rbac.yaml" in msg, msg
        print(f"forbidden reported {took:.1f}s after create (once the leader was ready): {msg}")
        leader = next(p for p in backend._pods(info.name, NAMESPACE) if p.ready)
        with pytest.raises(PortForwardError, match="forbidden"):
            PortForward(k8s_bed.airflow, NAMESPACE, leader.name).start()
    with PortForward(k8s_bed.airflow, NAMESPACE, leader.name) as pf:  # the Role of k8s/rbac.yaml may
        assert pf.url.startswith("http://127.0.0.1:")
    assert backend.delete(ClusterInfo(name=info.name, backend="kubernetes", namespace=NAMESPACE)) is True
