"""The per-cluster REST login: what the nodes, the clients and the logs get of it."""

import hashlib
import stat
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from h2o_tasks.cluster.base import ClusterInfo
from h2o_tasks.cluster.login import Login, hint, read_private, write_private
from h2o_tasks.cluster.readiness import fetch_cloud
from h2o_tasks.errors import ClusterError


def test_a_login_is_random_and_never_shown():
    a, b = Login.generate(), Login.generate()
    assert a.password != b.password and len(a.password) >= 32
    assert a.password not in repr(a) and a.password not in str(a)
    # the nodes get the MD5 of the password (Jetty's HashLoginService format), not the password
    assert a.realm == f"h2o: MD5:{hashlib.md5(a.password.encode()).hexdigest()}\n"
    assert a.password not in a.realm


def test_kept_where_only_this_user_reads_it(tmp_path):
    login = Login.generate()
    conf = write_private(tmp_path / "c" / "login", login)
    assert stat.S_IMODE(conf.parent.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in conf.parent.iterdir()} == {
        "password": 0o600, "realm.properties": 0o600}
    assert read_private(conf.parent) == login
    assert read_private(tmp_path / "nowhere") is None


def test_the_hint_says_where_the_password_is_never_what_it_is():
    local = ClusterInfo("c1", "local", state_dir="/var/h2o")
    assert hint(local) == "user h2o, password: cat /var/h2o/clusters/c1/login/password"
    k8s = ClusterInfo("c2", "kubernetes", namespace="ml")
    assert "kubectl -n ml get secret c2-login" in hint(k8s)


class _Refusing(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="h2o"')
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_refused_login_fails_at_once_instead_of_waiting():
    server = HTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        with pytest.raises(ClusterError, match="refused the cluster's login") as err:
            fetch_cloud(url, Login("h2o", "wrong"))
        assert err.value.reason == "Unauthorized" and "wrong" not in str(err.value)
        assert fetch_cloud("http://127.0.0.1:9") is None  # nothing listening: not answering yet, not an error
    finally:
        server.shutdown()


def test_the_kubernetes_login_is_read_again_while_the_api_server_restarts(monkeypatch):
    """A task that starts during an API server outage waits for its cluster's login (as patiently as the
    cluster is watched) instead of failing; a Secret that is not there is no login at once."""
    import base64
    from types import SimpleNamespace

    from kubernetes.client.exceptions import ApiException

    from h2o_tasks.cluster import kubernetes as k8s

    calls = []

    def read(name, ns):
        calls.append(name)
        if len(calls) <= 2:
            raise ConnectionRefusedError(111, "Connection refused")
        if name == "gone-login":
            raise ApiException(status=404)
        return SimpleNamespace(data={"password": base64.b64encode(b"s3cr3t-password").decode()})

    backend = k8s.KubernetesBackend(api_client=object(), namespace="h2o")
    backend.core = SimpleNamespace(read_namespaced_secret=read)
    monkeypatch.setattr(k8s.time, "sleep", lambda s: None)
    info = ClusterInfo("c", "kubernetes", namespace="h2o")
    assert backend.login(info) == Login("h2o", "s3cr3t-password") and calls == ["c-login"] * 3
    assert backend.login(info) == Login("h2o", "s3cr3t-password") and len(calls) == 3  # read once
    assert backend.login(ClusterInfo("gone", "kubernetes", namespace="h2o")) is None
    calls.clear()
    backend.login_patience_s = 0.0  # an outage longer than the patience: the error
    with pytest.raises(ConnectionRefusedError):
        backend.login(ClusterInfo("other", "kubernetes", namespace="h2o"))


def test_a_restarted_api_server_refusing_until_its_rbac_caches_fill_is_asked_again(monkeypatch):
    """kubernetes/kubernetes#121635 (seen in CI, stop 24): 403 for a few seconds after a restart. The
    login read waits it out within its patience; a 401 (a bad token) is raised at once."""
    import base64
    from types import SimpleNamespace

    from kubernetes.client.exceptions import ApiException

    from h2o_tasks.cluster import kubernetes as k8s

    answers = [ApiException(status=403, reason="Forbidden"), ApiException(status=429, reason="TooManyRequests"),
               SimpleNamespace(data={"password": base64.b64encode(b"pw").decode()}), ApiException(status=401)]

    def read(name, ns):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    backend = k8s.KubernetesBackend(api_client=object(), namespace="h2o")
    backend.core = SimpleNamespace(read_namespaced_secret=read)
    monkeypatch.setattr(k8s.time, "sleep", lambda s: None)
    assert backend.login(ClusterInfo("c", "kubernetes", namespace="h2o")) == Login("h2o", "pw")
    with pytest.raises(ApiException) as err:
        backend.login(ClusterInfo("d", "kubernetes", namespace="h2o"))
    assert err.value.status == 401 and not answers
