"""When the janitor deletes a cluster: expired, or its DAG run over or gone; never while the run may use it."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from h2o_airflow.dag_factory import janitor_targets, loadable_pipelines
from h2o_airflow.operators.janitor import H2OJanitorOperator
from h2o_tasks.cluster import ClusterInfo

NOW = datetime(2013, 3, 1, tzinfo=UTC)


def _ti(state=None, error=None):
    def get_dagrun_state(dag_id, run_id):
        if error:
            raise error
        return state
    return {"ti": SimpleNamespace(get_dagrun_state=get_dagrun_state)}


@pytest.mark.parametrize(("expires", "state", "error", "expected"), [
    (NOW - timedelta(minutes=1), "running", None, "expired at"),  # expiry first, whatever the run says
    (NOW + timedelta(hours=1), "running", None, None),
    (NOW + timedelta(hours=1), "queued", None, None),
    (NOW + timedelta(hours=1), "success", None, "is success"),
    (NOW + timedelta(hours=1), "failed", None, "is failed"),
    (NOW + timedelta(hours=1), None, RuntimeError("404 Not Found: DagRun not found"), "no longer exists"),
    (NOW + timedelta(hours=1), None, ConnectionError("execution API unreachable"), None),  # unknown: kept
])
def test_reasons(expires, state, error, expected):
    op = H2OJanitorOperator(task_id="j")
    info = ClusterInfo("c", "local", expires_at=expires.isoformat(), dag_id="d", run_id="r")
    reason = op.reason(info, NOW, _ti(state, error))
    assert (reason is None) if expected is None else (expected in reason), reason


def test_a_cluster_without_a_recorded_run_goes_by_its_expiry_only():
    op = H2OJanitorOperator(task_id="j")
    info = ClusterInfo("c", "local", expires_at=(NOW + timedelta(hours=1)).isoformat())
    assert op.reason(info, NOW, _ti(error=AssertionError("never asked"))) is None


def test_the_janitor_covers_every_backend_and_namespace_the_pipeline_files_use(tmp_path):
    from devtools import dag_folder

    dags = dag_folder.make(tmp_path / "dags", janitor=False)
    dag_folder.write_pipeline(dags, "a", dag_folder.variant(cluster={"backend": "kubernetes", "namespace": "ml-a"}))
    dag_folder.write_pipeline(dags, "b", dag_folder.variant(name="b", registry_uri="s3://b/m", cluster={
        "backend": "kubernetes", "namespace": "ml-b"}, scoring={"output_uri": "s3://b/p", "hive_table": "b"}))
    dag_folder.write_pipeline(dags, "c", dag_folder.variant(name="c", registry_uri="s3://c/m", cluster={
        "backend": "kubernetes", "namespace": "ml-b", "kubernetes_conn_id": "k8s_prod"},
        scoring={"output_uri": "s3://c/p", "hive_table": "c"}))
    (dags / "pipelines" / "broken.yaml").write_text("name: [")
    assert janitor_targets(loadable_pipelines(dags / "pipelines")) == [("kubernetes", "ml-a", "kubernetes_default"),
                                                   ("kubernetes", "ml-b", "k8s_prod"),
                                                   ("kubernetes", "ml-b", "kubernetes_default"), ("local", "", "")]
    from h2o_airflow.dag_factory import janitor_dag

    dag = janitor_dag(dags / "pipelines")
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"delete_abandoned_kubernetes_ml-a", "delete_abandoned_kubernetes_ml-b",
                          "delete_abandoned_kubernetes_ml-b__k8s_prod", "delete_abandoned_local",
                          "delete_abandoned_remembered", "sweep_hive_staging"}
    assert tasks["delete_abandoned_kubernetes_ml-b__k8s_prod"].kubernetes_conn_id == "k8s_prod"
    # every task of the pipeline uses the file's connection
    from h2o_airflow.dag_factory import pipeline_dags

    for d in pipeline_dags(dags / "pipelines" / "c.py").values():
        assert {t.kubernetes_conn_id for t in d.tasks} == {"k8s_prod"}, d.dag_id


def test_a_targets_task_id_is_its_own_whatever_other_pipelines_come(tmp_path):
    """k8s-prod and k8s_prod are two connections, each with a task of its own; and a task's id does not
    change when a pipeline is added (Airflow would lose its history), even beyond 250 characters."""
    from devtools import dag_folder
    from h2o_airflow.dag_factory import janitor_dag

    def janitors():
        return {t.kubernetes_conn_id: t.task_id for t in janitor_dag(dags / "pipelines").tasks
                if t.task_id.startswith("delete_abandoned_kubernetes")}

    dags = dag_folder.make(tmp_path / "dags", janitor=False)
    long_conn = "c" * 240
    seen = {}
    for stem, conn in (("a", "k8s_prod"), ("b", "k8s-prod"), ("c", long_conn), ("d", long_conn + "x")):
        dag_folder.write_pipeline(dags, stem, dag_folder.variant(
            name=stem, registry_uri=f"s3://{stem}/m", scoring={"output_uri": f"s3://{stem}/p", "hive_table": stem},
            cluster={"backend": "kubernetes", "namespace": "ml", "kubernetes_conn_id": conn}))
        now = janitors()
        assert len(set(now.values())) == len(now)  # one task per connection
        assert {c: now[c] for c in seen} == seen  # the earlier ones kept their ids
        seen = now
    assert seen["k8s-prod"] == "delete_abandoned_kubernetes_ml__k8s-prod"
    assert all(len(t) <= 250 for t in seen.values())


def test_a_run_the_execution_api_does_not_know_is_gone():
    """What the task SDK raises for an unknown run: an HTTP error whose response is a 404."""
    op = H2OJanitorOperator(task_id="j")
    info = ClusterInfo("c", "local", expires_at=(NOW + timedelta(hours=1)).isoformat(), dag_id="d", run_id="r")
    error = RuntimeError("Server returned error")
    error.response = SimpleNamespace(status_code=404)
    assert "no longer exists" in op.reason(info, NOW, _ti(error=error))
    error.response = SimpleNamespace(status_code=500)
    assert op.reason(info, NOW, _ti(error=error)) is None


def test_the_run_state_as_the_task_sdk_answers_it():
    """get_dagrun_state returns a DagRunState enum, whose str() is "DagRunState.RUNNING": a live run."""
    from airflow.utils.state import DagRunState

    op = H2OJanitorOperator(task_id="j")
    info = ClusterInfo("c", "local", expires_at=(NOW + timedelta(hours=1)).isoformat(), dag_id="d", run_id="r")
    assert op.reason(info, NOW, _ti(DagRunState.RUNNING)) is None
    assert op.reason(info, NOW, _ti(DagRunState.QUEUED)) is None
    assert "is success" in op.reason(info, NOW, _ti(DagRunState.SUCCESS))


def test_the_janitor_remembers_targets_the_files_stop_naming(monkeypatch):
    """Targets named today are left to their own tasks; one named earlier is swept, one whose sweep fails is
    kept for the next run, one not named for longer than forget_after_days is forgotten, one that does
    not read is dropped; the memory is written back for the next run, which reads it again."""
    import json

    from airflow.sdk import Variable

    from h2o_airflow.operators.janitor import MEMORY_VARIABLE, H2ORememberedJanitorOperator

    now = datetime.now(UTC)
    seen = lambda days: (now - timedelta(days=days)).isoformat()  # noqa: E731
    store = {MEMORY_VARIABLE: json.dumps({
        "kubernetes/gone-ns": {"backend": "kubernetes", "namespace": "gone-ns", "kubernetes_conn_id": "k", "last_seen": seen(2)},
        "kubernetes/no-access": {"backend": "kubernetes", "namespace": "no-access", "kubernetes_conn_id": "k", "last_seen": seen(3)},
        "kubernetes/ancient": {"backend": "kubernetes", "namespace": "ancient", "kubernetes_conn_id": "k", "last_seen": seen(40)},
        "kubernetes/h2o": {"backend": "kubernetes", "namespace": "h2o", "kubernetes_conn_id": "k", "last_seen": seen(1)},
        "kubernetes/garbled": {"backend": "kubernetes"},
    })}
    monkeypatch.setattr(Variable, "get", lambda key, default=None, **kw: store.get(key, default))
    monkeypatch.setattr(Variable, "set", lambda key, value, **kw: store.__setitem__(key, value))
    swept = []

    def sweep(backend, namespace, conn_id, context):
        swept.append((backend, namespace, conn_id))
        if namespace == "no-access":
            raise PermissionError("403 forbidden")
        return {"deleted": ["c1"], "reasons": {"c1": "its DAG run d / r no longer exists"}}

    op = H2ORememberedJanitorOperator(task_id="remembered", current=[["local", ""], ["kubernetes", "h2o"]])
    monkeypatch.setattr(op, "sweep", sweep)
    out = op.execute({})
    assert swept == [("kubernetes", "gone-ns", "k"), ("kubernetes", "no-access", "k")]
    assert set(out["swept"]) == {"kubernetes/gone-ns"}
    remembered = {"local/", "kubernetes/h2o", "kubernetes/gone-ns", "kubernetes/no-access"}
    assert set(out["targets"]) == set(json.loads(store[MEMORY_VARIABLE])) == remembered
    assert out["targets"]["kubernetes/h2o"]["last_seen"] > seen(1)

    # the next runs read what the last one wrote (the files now name only the local backend)
    for _ in range(2):
        swept.clear()
        op = H2ORememberedJanitorOperator(task_id="remembered", current=[["local", ""]])
        monkeypatch.setattr(op, "sweep", sweep)
        assert set(op.execute({})["targets"]) == remembered
        assert sorted(swept) == [("kubernetes", "gone-ns", "k"), ("kubernetes", "h2o", "kubernetes_default"),
                                 ("kubernetes", "no-access", "k")]
    store[MEMORY_VARIABLE] = "not json"
    first = H2ORememberedJanitorOperator(task_id="remembered", current=[["local", ""]]).execute({})
    assert (set(first["targets"]), first["swept"]) == ({"local/"}, {})


def test_a_cluster_claimed_by_another_process_does_not_keep_the_janitor_from_the_others(tmp_path, monkeypatch):
    """Two expired local clusters (state only, no JVM); another holder keeps one claimed (a real flock).
    The sweep deletes the other, then fails retryably naming the one it could not."""
    import fcntl
    import os

    from h2o_airflow.operators import janitor
    from h2o_tasks.cluster import local
    from h2o_tasks.errors import ClusterError

    backend = local.LocalBackend(state_dir=tmp_path)
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for name in ("h2o-busy", "h2o-free"):
        backend._dir(name).mkdir(parents=True)
        dead = [local.NodeState(pid=2**22 + 1, port=1, log="")]  # above any pid_max: no process
        backend._save(local.LocalState(name=name, replicas=1, nodes=dead, created_at=past, expires_at=past, labels={}))
    (tmp_path / "locks").mkdir()
    fd = os.open(tmp_path / "locks" / "h2o-busy.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another open file: a second holder, as another process would be
    monkeypatch.setattr(local, "CLAIM_TIMEOUT_S", 0.3)
    monkeypatch.setattr(janitor, "backend_for", lambda *a, **k: backend)
    try:
        with pytest.raises(ClusterError) as err:
            H2OJanitorOperator(task_id="j").sweep("local", "", "", _ti())
    finally:
        os.close(fd)
    assert err.value.retryable and "h2o-busy" in str(err.value) and "deleted: h2o-free" in str(err.value)
    assert [c.name for c in backend.list_clusters()] == ["h2o-busy"]


def test_a_cluster_an_earlier_sweep_marked_goes_whatever_its_run_says():
    """No task can extend a marked cluster: a later sweep finishes the deletion a killed one began."""
    op = H2OJanitorOperator(task_id="j")
    info = ClusterInfo("c", "kubernetes", expires_at=(NOW + timedelta(hours=1)).isoformat(), dag_id="d", run_id="r",
                       reaping_since=(NOW - timedelta(minutes=3)).isoformat())
    assert "began deleting it" in op.reason(info, NOW, _ti("running"))


def test_an_api_error_on_one_cluster_does_not_keep_the_janitor_from_the_others(monkeypatch):
    """A refused request (an ApiException, not a ClusterError) deleting one cluster: the sweep goes on
    with the others and then fails retryably, naming the one left."""
    from h2o_airflow.operators import janitor
    from h2o_tasks.errors import ClusterError

    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    deleted = []

    class Refusing:
        def list_clusters(self):
            return [ClusterInfo(n, "kubernetes", expires_at=past) for n in ("h2o-a", "h2o-b", "h2o-c")]

        def delete(self, info, *, if_unchanged=False):
            assert if_unchanged
            if info.name == "h2o-b":
                raise OSError("(500) Internal Server Error: etcdserver: request timed out")
            deleted.append(info.name)
            return True

    monkeypatch.setattr(janitor, "backend_for", lambda *a, **k: Refusing())
    with pytest.raises(ClusterError) as err:
        H2OJanitorOperator(task_id="j").sweep("kubernetes", "h2o", "", _ti())
    assert deleted == ["h2o-a", "h2o-c"]
    assert err.value.retryable and "h2o-b" in str(err.value) and "etcdserver" in str(err.value)
