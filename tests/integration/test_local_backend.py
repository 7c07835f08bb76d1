"""The local backend with real H2O JVMs: a multi-node cloud, re-attach, failure, delete."""

import contextlib
import json
import os
import signal
import socket
import stat
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from h2o_tasks.cluster.base import ClusterSpec
from h2o_tasks.cluster.local import LocalBackend, _proc_state
from h2o_tasks.cluster.login import Login, request
from h2o_tasks.cluster.readiness import fetch_cloud
from h2o_tasks.config import ClusterConfig
from h2o_tasks.errors import ClusterError
from tests.fixtures.h2o import delete_clusters
from tests.fixtures.reports import jvms_of
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def backend(tmp_path):
    b = LocalBackend(state_dir=tmp_path)
    yield b
    delete_clusters(b)  # clean up even when a test failed


def spec(run_id, **kw):
    return ClusterSpec.for_run("t", "dag", run_id, ClusterConfig(**{"replicas": 2, "memory": "512m", "nthreads": 1, **kw}))


def test_two_jvms_form_one_cloud_reattach_and_delete(backend):
    info = backend.create(spec("r1", jvm_options=("-XX:TieredStopAtLevel=1", "-Dh2o.test.marker=r1")))
    st = backend.wait_ready(info, 120)  # the java launcher may re-exec itself at start (its cmdline reads empty)
    for node in backend._load(info.name).nodes:  # cluster.jvm_options reach every JVM
        argv = Path(f"/proc/{node.pid}/cmdline").read_bytes().split(b"\0")
        assert b"-XX:TieredStopAtLevel=1" in argv and b"-Dh2o.test.marker=r1" in argv
    assert st.ready and st.cloud_size == 2
    login = backend.login(info)
    cloud = fetch_cloud(info.url, login)
    assert cloud.cloud_size == 2 and cloud.consensus and cloud.cloud_name == info.name
    # the REST API takes only this cluster's login, kept where only this user reads it
    for node in backend._load(info.name).nodes:
        for who in (None, Login(login.user, "not-the-password")):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request(f"http://127.0.0.1:{node.port}/3/Cloud", who), timeout=10)
            assert refused.value.code == 401
    with pytest.raises(ClusterError, match="refused a request without a login"):
        fetch_cloud(info.url)
    keep = backend._dir(info.name) / "login"
    assert stat.S_IMODE(keep.stat().st_mode) == 0o700
    assert stat.S_IMODE(backend._dir(info.name).stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in keep.iterdir()} == {"password": 0o600,
                                                                                "realm.properties": 0o600}
    assert login.password not in (keep / "realm.properties").read_text()  # the nodes hold its hash only
    assert all(login.password not in p.read_text(errors="replace")
               for p in backend._dir(info.name).rglob("*") if p.is_file() and p.name != "password")
    again = backend.create(spec("r1"))  # a retry of the same run re-attaches
    assert again.url == info.url
    pids = [n["pid"] if isinstance(n, dict) else n.pid for n in backend._load(info.name).nodes]
    assert backend.delete(info) is True
    assert all(_proc_state(p) in ("", "Z") for p in pids)
    assert backend.delete(info) is False  # NotFound is success for a teardown
    assert backend.list_clusters() == []



def test_two_creators_of_one_run_at_once_make_one_cluster(tmp_path):
    """A task's retry beside a zombie of its previous try (or two schedulers): each with its own backend
    object, released together. One makes the JVMs, the other waits for its claim and re-attaches; no
    second set of JVMs runs unknown to the state."""
    import threading

    backends = [LocalBackend(state_dir=tmp_path) for _ in range(2)]
    barrier, infos, errors = threading.Barrier(2), [], []

    def create(b):
        barrier.wait()
        try:
            infos.append(b.create(spec("same-run")))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(b,)) for b in backends]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors and len(infos) == 2 and infos[0].url == infos[1].url
        name = infos[0].name
        assert sorted(jvms_of(name)) == sorted(str(n.pid) for n in backends[0]._load(name).nodes)
        assert len(jvms_of(name)) == 2
        assert backends[1].wait_ready(infos[1], 120).cloud_size == 2  # with the login both read
    finally:
        delete_clusters(backends[0])
    assert jvms_of(name) == []

@pytest.mark.parametrize(("step", "recorded"), [("local:node-started", 0), ("local:node-saved", 1)])
def test_a_creator_killed_half_way_leaves_a_cluster_its_retry_replaces(backend, step, recorded):
    """SIGKILL between a JVM's start and its record, or after one node of two: the retry does not
    re-attach to the half-made cluster, and no JVM of the first try outlives it."""
    import subprocess
    import sys

    from h2o_tasks import testhooks

    run_id = f"half-{os.getpid()}-{time.monotonic_ns()}"  # its JVMs are told apart from any other's by name
    child = ("import sys; from h2o_tasks.cluster.local import LocalBackend; from tests.integration.test_local_backend "
             "import spec; LocalBackend(state_dir=sys.argv[1]).create(spec(sys.argv[2]))")
    env = {**os.environ, testhooks.ENV: json.dumps({step: "kill"})}
    proc = subprocess.run([sys.executable, "-c", child, str(backend.state_dir), run_id], env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    name = spec(run_id).name
    first = backend._load(name)
    assert [c.name for c in backend.list_clusters()] == [name]  # the janitor sees it from the first line
    assert len(first.nodes) == recorded and len(jvms_of(name)) == 1  # the first JVM runs, recorded or not
    orphans = [int(p) for p in jvms_of(name)] + [first.watchdog_pid]

    def listening():  # a JVM still starting dies with its removed directory: this one must be stopped
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", first.ports[0]), timeout=1):
            return True
        return False

    wait_for("the first try's JVM to serve", listening, 60, poll=0.2)
    info = backend.create(spec(run_id))
    assert backend.wait_ready(info, 120).cloud_size == 2
    assert all(_proc_state(p) in ("", "Z") for p in orphans)
    assert sorted(jvms_of(name)) == sorted(str(n.pid) for n in backend._load(name).nodes)


def test_node_death_fails_fast_with_reason(backend):
    info = backend.create(spec("r2"))
    os.kill(backend._load(info.name).nodes[1].pid, signal.SIGKILL)
    with pytest.raises(ClusterError) as err:
        backend.wait_ready(info, 600)
    assert err.value.reason == "NodeExited"  # the node's exit ended the wait, not its timeout
    assert "node 1" in str(err.value)


def test_list_expired(backend):
    info = backend.create(spec("r3"))
    assert backend.list_expired() == []
    later = datetime.now(UTC) + timedelta(minutes=200)
    assert [c.name for c in backend.list_expired(later)] == [info.name]


def test_the_expiry_moves_with_the_tasks_but_never_past_the_ceiling(backend):
    info = backend.create(spec("r4", ttl_minutes=5, max_run_minutes=30))
    assert info.dag_id == "dag" and info.run_id == "r4" and info.ceiling_at  # recorded for the janitor
    first = datetime.fromisoformat(backend.list_clusters()[0].expires_at)
    later = datetime.fromisoformat(backend.extend(info, timedelta(minutes=20)))
    assert later - first > timedelta(minutes=14)
    capped = backend.extend(info, timedelta(hours=5))
    assert capped == info.ceiling_at == backend.list_clusters()[0].expires_at
    assert backend.list_expired(datetime.now(UTC) + timedelta(minutes=10)) == []  # a task is using it


def test_the_nodes_stop_themselves_at_the_ceiling(backend, monkeypatch):
    """The cluster-side ceiling needs no Airflow: the cluster's watchdog stops its JVMs and its state."""
    from h2o_tasks import testhooks

    monkeypatch.setenv(testhooks.CLUSTER_SECONDS_ENV, json.dumps({"ceiling": 8}))
    info = backend.create(spec("r5", replicas=1))
    state = backend._load(info.name)
    pids = [n.pid for n in state.nodes] + [state.watchdog_pid]
    assert all(_proc_state(p) not in ("", "Z") for p in pids)
    wait_for("the watchdog to remove the cluster's state", lambda: backend._load(info.name) is None, 60, poll=0.5)
    assert backend.list_clusters() == []
    wait_for("the JVM and the watchdog to end", lambda: all(_proc_state(p) in ("", "Z") for p in pids), 20, poll=0.2)
    assert all(_proc_state(p) in ("", "Z") for p in pids)  # the JVM and the watchdog itself are gone


def test_deleting_a_cluster_stops_its_watchdog_and_a_reattach_replaces_a_killed_one(backend):
    info = backend.create(spec("r6", replicas=1))
    killed = backend._load(info.name).watchdog_pid
    os.kill(killed, signal.SIGKILL)
    wait_for("the watchdog to die", lambda: _proc_state(killed) in ("", "Z"), 10, poll=0.1)
    assert backend.create(spec("r6", replicas=1)).url == info.url  # the retry keeps the JVMs, and guards them again
    watchdog = backend._load(info.name).watchdog_pid
    assert watchdog != killed and _proc_state(watchdog) not in ("", "Z")
    assert backend.delete(info) is True
    wait_for("the watchdog to end", lambda: _proc_state(watchdog) in ("", "Z"), 10, poll=0.1)
    assert _proc_state(watchdog) in ("", "Z")


def test_a_task_on_a_cloud_that_lost_a_node_fails_while_its_connection_hangs(backend, tmp_path):
    """The watch's hang regression (CI, d75f6f1: a task's first request to a broken cloud, with no client
    timeout, hung for 9 minutes), with real parts: a 2-node cloud whose node 1 is killed and whose
    leader is stopped (SIGSTOP: its socket accepts and never answers). The import task's connection
    hangs; the watch sees the exited node and fails the task while the connection still hangs."""
    import threading
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    from devtools import dag_folder
    from h2o_airflow.operators.model import H2OImportOperator

    info = backend.create(spec("hang"))
    backend.wait_ready(info, 120)
    nodes = backend._load(info.name).nodes
    leader = next(n for n in nodes if info.url.endswith(f":{n.port}"))
    pipeline = dag_folder.write_pipeline(tmp_path / "dags", "hang", dag_folder.variant(
        name="hang", cluster={"rebuild_on_loss": False}))  # rebuilt, the task would go on on a new cloud
    ti = SimpleNamespace(xcom_pull=lambda task_ids, key="return_value": info.to_dict(),
                         xcom_push=lambda key, value: None)
    context = {"ti": ti, "dag": SimpleNamespace(dag_id="dag"), "run_id": "hang", "params": {}}
    op = H2OImportOperator(task_id="import_scoring_data", pipeline=str(pipeline), purpose="score",
                           last_day_only=True, aws_conn_id=None)
    os.kill(leader.pid, signal.SIGSTOP)
    try:
        os.kill(next(n for n in nodes if n is not leader).pid, signal.SIGKILL)
        with pytest.raises(AirflowFailException, match=r"lost a node during import \(NodeExited\)"):
            op.execute(context)
        # the task failed while its connection to the stopped leader still waited for an answer
        assert [t for t in threading.enumerate() if t.name == "h2o-import" and t.is_alive()]
    finally:
        os.kill(leader.pid, signal.SIGCONT)
