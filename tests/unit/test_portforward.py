"""Port-forward mode without a cluster: the client's forward against a local server that speaks
the API server's pods/portforward websocket protocol (the test bed kubelet's session code), the
backend's URL flow, the hook and the trigger."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import re
import socket
import threading
import urllib.request
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from h2o_tasks.cluster.base import ClusterInfo, ClusterStatus
from h2o_tasks.cluster.pods import PodObservation
from h2o_tasks.cluster.portforward import PortForward, PortForwardError
from h2o_tasks.errors import ClusterError
from testbed import kubelet

TOKEN = "good-token"


class _FakeAPIHandler(kubelet._Handler):
    """``/api/v1/namespaces/NS/pods/POD/portforward?ports=N`` over plain HTTP with a bearer token."""

    def setup(self) -> None:
        http.server.BaseHTTPRequestHandler.setup(self)  # no TLS

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/portforward", url.path)
        if not m:
            return self._error(404, "not found")
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            body = {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
                    "message": f'pods "{m.group(2)}" is forbidden: User "x" cannot create resource "pods/portforward"'}
            return self._error(403, json.dumps(body))
        self.server.requests += 1
        ports = ",".join(parse_qs(url.query).get("ports", []))
        return self._port_forward(m.group(1), m.group(2), {"port": [ports]})


class FakeAPIServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, pods: dict[str, str]) -> None:
        super().__init__(("127.0.0.1", 0), _FakeAPIHandler)
        self.pods, self.requests, self.lines = pods, 0, []
        self.sessions = 0
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def resolve(self, namespace: str, pod: str) -> str:
        return self.pods.get(f"{namespace}/{pod}", "")

    def log(self, line: str) -> None:
        self.lines.append(line)

    def api_client(self, token: str = TOKEN) -> Any:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = f"http://127.0.0.1:{self.server_address[1]}"
        cfg.api_key = {"BearerToken": token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(cfg)


class _PodHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        size = int(parse_qs(urlsplit(self.path).query).get("size", ["2"])[0])
        body = json.dumps({"cloud_size": 3, "pad": "x" * size}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def pod_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PodHandler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def api(pod_server):
    srv = FakeAPIServer({"h2o/leader-0": "127.0.0.1"})
    yield srv
    srv.shutdown()
    srv.server_close()


def get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def test_forward_relays_each_connection_over_its_own_websocket(api, pod_server):
    port = pod_server.server_address[1]
    with PortForward(api.api_client(), "h2o", "leader-0", port) as pf:
        assert pf.url.startswith("http://127.0.0.1:") and pf.local_port != port
        assert get(f"{pf.url}/3/Cloud")["cloud_size"] == 3
        assert len(get(f"{pf.url}/big?size=3000000")["pad"]) == 3_000_000  # many frames, both buffers
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(get(f"{pf.url}/x")["cloud_size"])) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert results == [3] * 8
        assert pf.connections == 10 and api.requests == 11  # one probe at start + one per connection
    assert not pf.active
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", pf.local_port), timeout=2)


def test_forbidden_is_a_clear_error_at_start(api, pod_server):
    with pytest.raises(PortForwardError) as err:
        PortForward(api.api_client("wrong"), "h2o", "leader-0", pod_server.server_address[1]).start()
    assert err.value.reason == "PortForwardForbidden" and not err.value.retryable
    assert "pods/portforward" in str(err.value) and "403" in str(err.value) and "create and get" in str(err.value)


def test_missing_pod_and_refused_port(api):
    with pytest.raises(PortForwardError) as err:
        PortForward(api.api_client(), "h2o", "nope-0", 54321).start()
    assert err.value.reason == "PodNotFound"
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    closed_port = free.getsockname()[1]
    free.close()
    with PortForward(api.api_client(), "h2o", "leader-0", closed_port) as pf, pytest.raises(OSError):
        get(f"{pf.url}/3/Cloud")  # the kubelet reports the refused dial on the error channel; the connection ends
    assert any("error forwarding port" in line for line in api.lines)


# ----------------------------------------------------------------------------- the backend's URL flow


class FakeForward:
    opened: list[FakeForward] = []

    def __init__(self, api_client: Any, namespace: str, pod: str, port: int) -> None:
        self.namespace, self.pod, self.port, self.active = namespace, pod, port, False
        FakeForward.opened.append(self)

    def start(self) -> FakeForward:
        self.active = True
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{40000 + len(FakeForward.opened)}"

    def close(self) -> None:
        self.active = False


def pods(leader: str = "c-0", ip: str = "10.0.0.1") -> list[PodObservation]:
    return [PodObservation(name=n, phase="Running", ready=n == leader, ip=ip if n == leader else "10.0.0.9")
            for n in ("c-0", "c-1")]


@pytest.fixture
def pf_backend(monkeypatch):
    from h2o_tasks.cluster import kubernetes as k8s

    FakeForward.opened = []
    monkeypatch.setattr(k8s, "PortForward", FakeForward)
    fetched: list[str] = []
    b = k8s.KubernetesBackend(api_client=object(), endpoint_mode="port-forward", conn_id="k",
                              fetch_cloud=lambda url, login: fetched.append(url))
    b.fetched = fetched
    state = {"pods": pods()}
    monkeypatch.setattr(b, "_pods", lambda name, ns: state["pods"])
    monkeypatch.setattr(b, "_read_sts", lambda name, ns: SimpleNamespace(metadata=SimpleNamespace(annotations={})))
    monkeypatch.setattr(b, "login", lambda info: None)
    b.state = state
    return b


def test_port_forward_url_stays_in_the_process(pf_backend):
    info = pf_backend._info("c", "h2o", 2, {})
    assert info.url == "http://c.h2o.svc.cluster.local:54321"  # the client Service: what goes to XCom
    assert (info.kubernetes_conn_id, info.endpoint_mode) == ("k", "port-forward")
    assert pf_backend.endpoint(info) == info.url  # the create task's XCom: never 127.0.0.1
    st = pf_backend.status(info)
    assert st.url == info.url and pf_backend.fetched == ["http://127.0.0.1:40001"]  # asked through the forward
    assert pf_backend.local_endpoint(info) == "http://127.0.0.1:40001"  # reused
    assert [(f.namespace, f.pod, f.port) for f in FakeForward.opened] == [("h2o", "c-0", 54321)]
    # a leader made again elsewhere: tests/e2e/test_portforward.py (a pod killed on the bed)
    pf_backend.close()
    assert not FakeForward.opened[-1].active


def test_no_leader_no_forward(pf_backend, monkeypatch):
    from h2o_tasks.cluster import kubernetes as k8s

    monkeypatch.setattr(k8s, "NO_LEADER_GRACE_S", 0.0)
    info = pf_backend._info("c", "h2o", 2, {})
    pf_backend.state["pods"] = [PodObservation(name="c-0", phase="Running", ready=False)]
    assert not pf_backend.status(info).ready and FakeForward.opened == []
    with pytest.raises(ClusterError) as err:
        pf_backend.local_endpoint(info)
    assert err.value.reason == "NoLeader" and FakeForward.opened == []


def test_a_leader_that_flaps_not_ready_for_a_probe_is_waited_for(pf_backend, monkeypatch):
    """The readiness probe can fail the leader once (a pause past its timeout) right after a wait
    saw it ready; asking for the leader then waits for the next probe instead of failing."""
    from h2o_tasks.cluster import kubernetes as k8s

    slept: list[float] = []
    monkeypatch.setattr(k8s.time, "sleep", lambda s: (slept.append(s), pf_backend.state.update(
        pods=pods() if len(slept) >= 3 else pf_backend.state["pods"])))
    info = pf_backend._info("c", "h2o", 2, {})
    pf_backend.state["pods"] = [PodObservation(name="c-0", phase="Running", ready=False),
                                PodObservation(name="c-1", phase="Running", ready=False)]
    assert pf_backend.local_endpoint(info) == "http://127.0.0.1:40001" and len(slept) == 3
    assert [(f.pod, f.port) for f in FakeForward.opened] == [("c-0", 54321)]


def test_forbidden_fails_status_but_a_hiccup_does_not(pf_backend, monkeypatch):
    info = pf_backend._info("c", "h2o", 2, {})

    def failing(reason: str):
        def start(self):
            raise PortForwardError("boom", reason=reason)
        return start

    monkeypatch.setattr(FakeForward, "start", failing("PortForwardFailed"))
    assert pf_backend.status(info).reason == "NotAnswering"
    monkeypatch.setattr(FakeForward, "start", failing("PortForwardForbidden"))
    with pytest.raises(PortForwardError):
        pf_backend.status(info)


def test_unknown_endpoint_mode_is_refused():
    from h2o_tasks.cluster.kubernetes import KubernetesBackend

    with pytest.raises(ValueError, match="port-forward"):
        KubernetesBackend(api_client=object(), endpoint_mode="tunnel")


# ----------------------------------------------------------------------------- hook and trigger


class RecordingBackend:
    def __init__(self, status: Any = None) -> None:
        self.closed = 0
        self._status = status

    def local_endpoint(self, info: ClusterInfo) -> str:
        return "http://127.0.0.1:41234"

    def status(self, info: ClusterInfo, *args: Any) -> ClusterStatus:
        if isinstance(self._status, Exception):
            raise self._status
        return self._status

    async def astatus(self, api: Any, info: ClusterInfo, *args: Any) -> ClusterStatus:
        return self.status(info, *args)

    def aobserve(self, api: Any, info: ClusterInfo, started_at: float, *args: Any) -> Any:
        from h2o_tasks.cluster.base import polled

        return polled(lambda elapsed: self.astatus(api, info, elapsed), started_at, 0.01)

    def close(self) -> None:
        self.closed += 1


def test_hook_opens_its_own_forward_and_closes_it(monkeypatch):
    from h2o_airflow import backends
    from h2o_airflow.hooks.h2o import H2OHook

    made: list[tuple[dict, str]] = []
    backend = RecordingBackend()
    monkeypatch.setattr(backends, "backend_for_cluster", lambda info, conn_id: made.append((info, conn_id)) or backend)
    info = ClusterInfo("c", "kubernetes", url="http://c-client.h2o.svc.cluster.local:54321", namespace="h2o",
                       endpoint_mode="port-forward", kubernetes_conn_id="k8s_outside")
    with H2OHook(cluster=info.to_dict(), aws_conn_id=None) as hook:
        assert hook.url() == "http://127.0.0.1:41234"
        assert hook.url() == "http://127.0.0.1:41234" and len(made) == 1
        assert made[0][0].kubernetes_conn_id == "k8s_outside"  # the connection the cluster was created with
    assert backend.closed == 1
    shared = RecordingBackend()  # an operator's own backend, shared with its watch: the hook does not close it
    with H2OHook(cluster=info, aws_conn_id=None, backend=shared) as hook:
        assert hook.url() == "http://127.0.0.1:41234" and len(made) == 1
    assert shared.closed == 0
    plain = ClusterInfo("c", "kubernetes", url="http://10.0.0.1:54321", endpoint_mode="pod-ip")
    assert H2OHook(cluster=plain.to_dict(), aws_conn_id=None).url() == "http://10.0.0.1:54321" and len(made) == 1


def test_hook_ends_its_own_h2o_session_before_its_forward(monkeypatch):
    """The hook closes the connection it made (not whichever h2o's module holds last), while its
    forward still carries the session's DELETE, and only once."""
    from h2o_airflow import backends
    from h2o_airflow.hooks.h2o import H2OHook
    from h2o_tasks import session

    events: list[str] = []

    class Backend(RecordingBackend):
        def login(self, info: ClusterInfo) -> None:
            return None

        def close(self) -> None:
            events.append("forward closed")
            super().close()

    class Connection:
        def __init__(self, name: str) -> None:
            self.name, self.connected = name, True

        def close(self) -> None:
            events.append(f"{self.name} closed")
            self.connected = False

    made = iter([Connection("hook's"), Connection("another's")])
    monkeypatch.setattr(session, "connect", lambda *a, **kw: next(made))
    monkeypatch.setattr(backends, "backend_for_cluster", lambda info, conn_id: Backend())
    info = ClusterInfo("c", "kubernetes", namespace="h2o", endpoint_mode="port-forward")
    with H2OHook(cluster=info.to_dict(), aws_conn_id=None) as hook:
        hook.get_conn()
        session.connect("http://elsewhere:54321")  # a later connection of the same process, h2o's newest
    assert events == ["hook's closed", "forward closed"]
    hook.close()  # closed already: nothing more
    assert events == ["hook's closed", "forward closed"]


@pytest.mark.parametrize("outcome", ["ready", "forbidden"])
def test_trigger_closes_its_forward(monkeypatch, outcome):
    from h2o_airflow.triggers.cluster import H2OClusterReadyTrigger

    st = ClusterStatus("c", exists=True, ready=True, reason="Ready", message="ok", cloud_size=2)
    backend = RecordingBackend(st if outcome == "ready" else
                               PortForwardError("port-forward forbidden (403)", reason="PortForwardForbidden"))
    info = ClusterInfo("c", "kubernetes", namespace="h2o", replicas=2, endpoint_mode="port-forward")
    trigger = H2OClusterReadyTrigger(info.to_dict(), timeout_s=5, poll_s=0.01)
    monkeypatch.setattr(trigger, "_backend", lambda: backend)

    @contextlib.asynccontextmanager
    async def no_api(self):  # the provider's async client is not used by this backend
        yield None

    monkeypatch.setattr("airflow.providers.cncf.kubernetes.hooks.kubernetes.AsyncKubernetesHook.get_conn", no_api)

    async def first_event():
        gen = trigger.run()
        event = await gen.__anext__()
        await gen.aclose()
        return event

    event = asyncio.run(first_event())
    assert backend.closed == 1
    if outcome == "ready":
        assert event.payload["status"] == "ready"
    else:
        assert event.payload["status"] == "failed" and event.payload["reason"] == "PortForwardForbidden"
        assert "403" in event.payload["message"]
