"""The create task's wait, when the cluster does not become ready: the readiness trigger run against a
real local-backend cluster whose nodes never answer (processes that stand in for JVMs, so the trigger
sees live nodes and a silent REST port), its events fed to the operator's ``execute_complete``, with
the diagnostics written to a real S3 API (moto server). Also the trigger's and the operator's
``on_kill``, and the teardown when the create task recorded nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from devtools import dag_folder
from h2o_airflow.links import XCOM_DIAGNOSTICS_KEY
from h2o_airflow.operators.cluster import H2OCreateClusterOperator, H2ODeleteClusterOperator
from h2o_airflow.triggers.cluster import H2OClusterReadyTrigger
from h2o_tasks import naming, s3
from h2o_tasks.cluster import ClusterInfo
from h2o_tasks.cluster.base import ClusterSpec
from h2o_tasks.cluster.local import LocalBackend, _is_ours
from h2o_tasks.config import ClusterConfig
from h2o_tasks.errors import ClusterError
from tests.fixtures.h2o import sleeping_java
from tests.fixtures.s3 import write_day

pytestmark = pytest.mark.integration
PIPELINE = "outcomes"
DAG_ID = f"h2o_train__{PIPELINE}"
RUN_ID = "manual__2013-02-04T00:00:00+00:00"


class FakeTI:
    """What the operators use of a task instance: XCom in and out."""

    def __init__(self, xcoms: dict | None = None):
        self.pushed: dict[str, object] = {}
        self.xcoms = xcoms or {}

    def xcom_push(self, key, value):
        self.pushed[key] = value

    def xcom_pull(self, task_ids=None, key="return_value"):
        return self.xcoms.get((task_ids, key))


@pytest.fixture
def aws_connection(monkeypatch, s3_settings):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": s3_settings.access_key, "password": s3_settings.secret_key,
        "extra": {"endpoint_url": s3_settings.endpoint_url, "region_name": "us-east-1"}}))


@pytest.fixture
def pipeline_file(tmp_path, s3_bucket):
    raw = dag_folder.variant(name=PIPELINE, registry_uri=f"s3://{s3_bucket}/models/{PIPELINE}",
                             scoring={"output_uri": f"s3://{s3_bucket}/predictions/{PIPELINE}", "hive_table": ""})
    return dag_folder.write_pipeline(tmp_path / "dags", PIPELINE, raw)


@pytest.fixture
def silent_cluster(tmp_path):
    """A local-backend cluster of 2 nodes that never answer on their REST port: the backend starts
    ``java`` as it always does, and this ``java`` only sleeps."""
    backend = LocalBackend(state_dir=tmp_path / "state", java=str(sleeping_java(tmp_path / "bin")))
    info = backend.create(ClusterSpec.for_run(PIPELINE, DAG_ID, RUN_ID, ClusterConfig(replicas=2, memory="256m",
                                                                                      nthreads=1)))
    pids = [n.pid for n in backend._load(info.name).nodes]
    assert all(_is_ours(p, info.name) for p in pids)
    yield backend, info, pids
    backend.delete(info)


def context(ti: FakeTI) -> dict:
    return {"ti": ti, "dag": SimpleNamespace(dag_id=DAG_ID), "run_id": RUN_ID, "params": {}}


async def first_event(trigger: H2OClusterReadyTrigger, limit_s: float = 60.0) -> dict:
    async def first() -> dict:
        async with contextlib.aclosing(trigger.run()) as events:
            async for event in events:
                return event.payload
        raise AssertionError("the trigger ended without an event")

    return await asyncio.wait_for(first(), limit_s)


def bundle(client, uri: str) -> dict[str, bytes]:
    return {k[len(uri) + 1:]: s3.read_bytes(client, k) for k in s3.list_keys(client, uri)}


@pytest.mark.parametrize("file_readable", [True, False], ids=["pipeline-file", "pipeline-file-gone"])
def test_a_cluster_that_never_answers_times_out_and_the_task_deletes_it_keeping_the_evidence(
        silent_cluster, pipeline_file, aws_connection, s3_settings, s3_bucket, file_readable):
    backend, info, pids = silent_cluster
    trigger = H2OClusterReadyTrigger(info.to_dict(), timeout_s=1.5, poll_s=0.2, formation_timeout_s=None)
    event = asyncio.run(first_event(trigger))
    assert (event["status"], event["reason"], event["cloud_size"]) == ("timeout", "NotAnswering", 0)
    assert event["elapsed_s"] > 1.5 and event["cluster"] == info.to_dict()
    assert all(_is_ours(p, info.name) for p in pids)  # the trigger only reports: the task decides

    if not file_readable:  # the pipeline file broke during the wait: no diagnostics, the cluster still goes
        pipeline_file.unlink()
    op = H2OCreateClusterOperator(task_id="create_cluster", pipeline=str(pipeline_file))
    ti = FakeTI()
    with pytest.raises(ClusterError) as err:
        op.execute_complete(context(ti), event)
    assert err.value.retryable  # a retry creates the cluster again
    assert f"H2O cluster {info.name} timeout: NotAnswering" in str(err.value)
    assert backend.list_clusters() == [] and not (backend.state_dir / "clusters" / info.name).exists()
    assert not any(_is_ours(p, info.name) for p in pids)

    if not file_readable:
        assert XCOM_DIAGNOSTICS_KEY not in ti.pushed
        return
    uri = ti.pushed[XCOM_DIAGNOSTICS_KEY]  # behind the task's Diagnostics link
    assert uri.startswith(f"s3://{s3_bucket}/models/_diagnostics/{PIPELINE}/{naming.label_value(DAG_ID)}/"), uri
    files = bundle(s3_settings.client(), uri)
    assert {"status.json", "backend/nodes.json", "backend/node-0.out", "backend/node-1.out"} <= set(files), files
    status = json.loads(files["status.json"])
    assert status["errors"] == {"create_cluster": str(err.value)}
    # saved before the delete: both nodes were still alive when the evidence was taken
    assert [n["alive"] for n in json.loads(files["backend/nodes.json"])] == [True, True]


def test_a_node_that_exits_fails_the_wait_at_once_and_the_task_fails_without_retry(
        silent_cluster, pipeline_file, aws_connection, s3_settings):
    backend, info, pids = silent_cluster
    os.kill(pids[1], signal.SIGKILL)
    os.waitpid(pids[1], 0)
    trigger = H2OClusterReadyTrigger(info.to_dict(), timeout_s=600, poll_s=0.2, formation_timeout_s=None)
    event = asyncio.run(first_event(trigger))
    assert (event["status"], event["reason"]) == ("failed", "NodeExited")  # the node's exit, not a timeout
    assert f"pid {pids[1]}" in event["message"]

    op = H2OCreateClusterOperator(task_id="create_cluster", pipeline=str(pipeline_file))
    ti = FakeTI()
    with pytest.raises(AirflowFailException) as err:  # a node that died stays dead: no retry
        op.execute_complete(context(ti), event)
    assert f"H2O cluster {info.name} failed: NodeExited" in str(err.value)
    assert backend.list_clusters() == [] and not _is_ours(pids[0], info.name)
    files = bundle(s3_settings.client(), ti.pushed[XCOM_DIAGNOSTICS_KEY])
    assert [n["alive"] for n in json.loads(files["backend/nodes.json"])] == [True, False]
    assert json.loads(files["status.json"])["status"]["reason"] == "NodeExited"


def test_a_cluster_gone_during_the_wait_fails_it_at_once_and_the_task_retries(tmp_path, pipeline_file,
                                                                              aws_connection):
    nowhere = ClusterInfo(name="h2o-nowhere-00000000", backend="local", replicas=1, endpoint_mode="local",
                          state_dir=str(tmp_path / "no-state"))
    trigger = H2OClusterReadyTrigger(nowhere.to_dict(), timeout_s=600, poll_s=0.2)
    event = asyncio.run(first_event(trigger, limit_s=30))
    assert (event["status"], event["reason"]) == ("failed", "NotFound")
    assert "does not exist" in event["message"]
    op = H2OCreateClusterOperator(task_id="create_cluster", pipeline=str(pipeline_file))
    with pytest.raises(ClusterError) as err:  # deleted under the run (a janitor): its retry makes it again
        op.execute_complete(context(FakeTI()), event)
    assert (err.value.reason, err.value.retryable) == ("NotFound", True)


def test_a_cancelled_trigger_leaves_the_cluster_and_a_killed_task_deletes_it(silent_cluster, pipeline_file):
    backend, info, pids = silent_cluster
    trigger = H2OClusterReadyTrigger(info.to_dict(), timeout_s=600, poll_s=0.2)

    async def cancel_then_kill() -> bool:
        waiting = asyncio.ensure_future(first_event(trigger))
        await asyncio.sleep(1.0)
        assert not waiting.done()  # still waiting: nothing answers
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await trigger.on_kill()
        return waiting.cancelled()

    assert asyncio.run(cancel_then_kill())
    # the trigger may move to another triggerer: its cancellation deletes nothing
    assert [c.name for c in backend.list_clusters()] == [info.name]
    assert all(_is_ours(p, info.name) for p in pids)
    # the task killed while waiting in a worker does delete the cluster it created
    op = H2OCreateClusterOperator(task_id="create_cluster", pipeline=str(pipeline_file))
    op._cluster = info
    op.on_kill()
    assert backend.list_clusters() == [] and not any(_is_ours(p, info.name) for p in pids)


def test_the_teardown_without_a_recorded_cluster_deletes_the_one_the_run_ids_name(tmp_path, pipeline_file,
                                                                                   monkeypatch):
    """The create task died before it pushed anything: the teardown derives the name from the run's
    ids and the pipeline file, and deletes that cluster (or reports there was none)."""
    state = tmp_path / "state"
    monkeypatch.setenv("H2O_AIRFLOW_STATE_DIR", str(state))
    info = LocalBackend(state_dir=state, java=str(sleeping_java(tmp_path))).create(
        ClusterSpec.for_run(PIPELINE, DAG_ID, RUN_ID, ClusterConfig(replicas=1, memory="256m")))
    assert info.name == naming.cluster_name(PIPELINE, DAG_ID, RUN_ID)
    pid = LocalBackend(state_dir=state)._load(info.name).nodes[0].pid
    op = H2ODeleteClusterOperator(task_id="delete_cluster", pipeline=str(pipeline_file))
    ti = FakeTI()  # nothing under ("create_cluster", XCOM_CLUSTER_KEY)
    done = op.execute(context(ti))
    assert (done["cluster"], done["deleted"], done["backend"]) == (info.name, True, "local")
    assert not _is_ours(pid, info.name) and LocalBackend(state_dir=state).list_clusters() == []
    again = op.execute(context(ti))  # a retry of the teardown: nothing left, which counts as deleted
    assert again["deleted"] is False


def test_without_deferring_a_failed_wait_deletes_the_cluster_and_keeps_the_evidence(
        tmp_path, aws_connection, s3_settings, s3_bucket, monkeypatch):
    """``deferrable=False``: the create task waits in the worker itself. A node that exits fails the wait;
    the task saves the evidence, deletes what it created (every node's process, the state directory) and
    fails without retry, exactly as the deferred path does."""
    state = tmp_path / "state"
    monkeypatch.setenv("H2O_AIRFLOW_STATE_DIR", str(state))
    java = tmp_path / "bin" / "java"  # a JVM that dies at start (a bad option, a missing library)
    java.parent.mkdir()
    java.write_text("#!/bin/sh\necho 'Error: Could not create the Java Virtual Machine.'\nexit 1\n")
    java.chmod(0o755)
    monkeypatch.setenv("PATH", f"{java.parent}{os.pathsep}{os.environ['PATH']}")
    source = f"s3://{s3_bucket}/flights"
    write_day(s3_settings.client(), source, date(2013, 2, 3), b"dep_delay,carrier\n1,UA\n", "csv")
    raw = dag_folder.variant(name=PIPELINE, registry_uri=f"s3://{s3_bucket}/models/{PIPELINE}",
                             source={"s3": {"uri": source, "format": "csv"}},
                             scoring={"output_uri": f"s3://{s3_bucket}/predictions/{PIPELINE}", "hive_table": ""})
    pipeline_file = dag_folder.write_pipeline(tmp_path / "dags", PIPELINE, raw)
    op = H2OCreateClusterOperator(task_id="create_cluster", pipeline=str(pipeline_file), deferrable=False)
    ti = FakeTI()
    with pytest.raises(AirflowFailException) as err:
        op.execute({**context(ti), "logical_date": datetime(2013, 2, 4, tzinfo=UTC)})
    name = naming.cluster_name(PIPELINE, DAG_ID, RUN_ID)
    assert f"cluster {name} failed (NodeExited)" in str(err.value) and "Could not create the Java" in str(err.value)
    assert LocalBackend(state_dir=state).list_clusters() == [] and not (state / "clusters" / name).exists()
    assert ti.pushed["h2o_cluster"]["name"] == name  # recorded before the create: the teardown would find it
    files = bundle(s3_settings.client(), ti.pushed[XCOM_DIAGNOSTICS_KEY])
    assert json.loads(files["status.json"])["status"]["reason"] == "NodeExited"
    assert "Could not create the Java" in files["backend/node-0.out"].decode()
