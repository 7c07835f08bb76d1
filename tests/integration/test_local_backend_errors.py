"""The local backend's error paths, each produced for real: no h2o.jar, no java, every port taken,
a dead leftover of the run's cluster, and JVMs the deleting user may not stop. The nodes are processes
that stand in for JVMs (this backend's ``java`` only sleeps): what is tested is the backend's own
bookkeeping, not H2O."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from h2o_tasks.cluster import local
from h2o_tasks.cluster.base import ClusterSpec
from h2o_tasks.cluster.local import LocalBackend, _is_ours
from h2o_tasks.config import ClusterConfig
from h2o_tasks.errors import ClusterError
from tests.fixtures.h2o import sleeping_java
from tests.fixtures.processes import pgrep

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SMALL = ClusterConfig(replicas=2, memory="256m", nthreads=1)


def spec(run: str = "manual__1") -> ClusterSpec:
    return ClusterSpec.for_run("errors", "h2o_train__errors", run, SMALL)


def pids_of(backend: LocalBackend, name: str) -> list[int]:
    return [n.pid for n in backend._load(name).nodes]


def nothing_left(backend: LocalBackend) -> bool:
    root = backend.state_dir / "clusters"
    return backend.list_clusters() == [] and (not root.exists() or not any(root.iterdir()))


def test_a_missing_jar_is_refused_before_anything_starts(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "h2o.jar"
    monkeypatch.setenv("H2O_JAR", str(missing))
    backend = LocalBackend(state_dir=tmp_path / "state", java=str(sleeping_java(tmp_path / "bin")))
    with pytest.raises(ClusterError) as err:
        backend.create(spec())
    assert err.value.reason == "NoJar" and not err.value.retryable
    assert str(missing) in str(err.value) and "H2O_JAR" in str(err.value)
    assert nothing_left(backend)


def test_no_java_on_the_path_is_refused_before_anything_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    backend = LocalBackend(state_dir=tmp_path / "state")  # java="java", looked up on PATH
    with pytest.raises(ClusterError) as err:
        backend.create(spec())
    assert err.value.reason == "NoJava" and not err.value.retryable
    assert "'java' not found" in str(err.value) and "Java 17" in str(err.value)
    assert nothing_left(backend)


@pytest.fixture
def every_port_taken(monkeypatch):
    """The backend picks port pairs from 10000 up to the kernel's ephemeral range; that range made to
    start at 10006 leaves the pairs at 10000 and 10002, which sockets of this test then hold."""
    monkeypatch.setattr(local, "ephemeral_low", lambda: 10006)
    held = []
    for port in (10000, 10001, 10002, 10003):
        s = socket.socket()
        try:
            s.bind((local.HOST, port))
            held.append(s)
        except OSError:  # taken by someone else: taken all the same
            s.close()
    assert not local._port_pair_free(10000) and not local._port_pair_free(10002)
    yield
    for s in held:
        s.close()


def test_no_free_ports_is_a_retryable_error_and_starts_nothing(tmp_path, every_port_taken):
    backend = LocalBackend(state_dir=tmp_path / "state", java=str(sleeping_java(tmp_path / "bin")))
    with pytest.raises(ClusterError) as err:
        backend.create(spec())
    assert err.value.reason == "NoPorts" and err.value.retryable
    assert "no 2 free port pairs on 127.0.0.1" in str(err.value)
    assert backend.list_clusters() == []
    assert pgrep(str(tmp_path / "bin" / "java")) == []


def test_no_free_ports_leaves_no_state_directory(tmp_path, every_port_taken):
    backend = LocalBackend(state_dir=tmp_path / "state", java=str(sleeping_java(tmp_path / "bin")))
    with pytest.raises(ClusterError):
        backend.create(spec())
    assert nothing_left(backend), list((backend.state_dir / "clusters").iterdir())


def test_a_dead_leftover_of_the_run_is_reported_then_replaced(tmp_path):
    backend = LocalBackend(state_dir=tmp_path / "state", java=str(sleeping_java(tmp_path / "bin")))
    first = backend.create(spec())
    old = pids_of(backend, first.name)
    try:
        for pid in old:  # the machine rebooted, or the JVMs were OOM-killed
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        st = backend.status(first)
        assert (st.failed, st.reason) == (True, "NodeExited") and f"pid {old[0]}" in st.message
        # the same run creates its cluster again: the leftover is not re-attached to, it is replaced
        again = backend.create(spec())
        new = pids_of(backend, again.name)
        assert again.name == first.name and set(new).isdisjoint(old)
        assert all(_is_ours(p, again.name) for p in new)
        assert [c.name for c in backend.list_clusters()] == [first.name]
        # a live cluster of the run is re-attached to, not replaced
        assert pids_of(backend, backend.create(spec()).name) == new
    finally:
        assert backend.delete(first.name) is True
    assert nothing_left(backend)
    assert backend.delete(first.name) is False  # gone: nothing to delete


@pytest.fixture
def cluster_of_another_user(tmp_path):
    """A cluster whose JVMs belong to root, in a state directory every user may read and write."""
    state = Path(tempfile.mkdtemp(prefix="h2o-state-", dir="/tmp"))
    backend = LocalBackend(state_dir=state, java=str(sleeping_java(tmp_path / "bin")))
    info = backend.create(spec())
    for path in [state, *state.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    yield backend, info
    backend.delete(info)
    os.rmdir(state / "clusters")
    for lock in (state / "locks").iterdir():  # the claims' lock files stay (removing one would break its claim)
        lock.unlink()
    os.rmdir(state / "locks")
    os.rmdir(state)


def _delete_as_nobody(backend: LocalBackend, name: str) -> subprocess.CompletedProcess:
    code = ("import sys; from h2o_tasks.cluster.local import LocalBackend\n"
            "try:\n    LocalBackend(state_dir=sys.argv[1]).delete(sys.argv[2], timeout_s=1)\n"
            "except Exception as exc:\n    print(type(exc).__name__, getattr(exc, 'reason', ''), exc)\n"
            "    sys.exit(3)\n")
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code,
                           str(backend.state_dir), name], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd="/tmp")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run the delete as another user")
def test_a_delete_that_cannot_stop_the_jvms_fails_and_keeps_the_cluster(cluster_of_another_user):
    """A teardown or janitor running as a user that may not signal the JVMs (the cluster was made by
    another user): the delete fails, and stops nothing and forgets nothing, so that it can be retried."""
    backend, info = cluster_of_another_user
    pids = pids_of(backend, info.name)
    done = _delete_as_nobody(backend, info.name)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert all(_is_ours(p, info.name) for p in pids)
    assert [c.name for c in backend.list_clusters()] == [info.name]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run the delete as another user")
def test_a_delete_that_cannot_stop_the_jvms_says_which_with_stop_failed(cluster_of_another_user):
    backend, info = cluster_of_another_user
    pids = pids_of(backend, info.name)
    done = _delete_as_nobody(backend, info.name)
    assert done.stdout.startswith("ClusterError StopFailed "), done.stdout
    assert str(pids[0]) in done.stdout and info.name in done.stdout
