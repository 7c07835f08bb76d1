"""A cluster's life as Airflow's real components drive it (scheduler with the LocalExecutor, triggerer,
PostgreSQL): it outlives its time-to-live while its run makes progress, and survives its wait moving
to another triggerer."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from h2o_tasks import naming
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration
DAY = "2013-02-04"


def _pipeline(d, name: str, **changes) -> str:
    d.add_pipeline(f"{name.replace('-', '_')}.yaml", name=name, registry_uri=f"s3://h2o-demo/models/{name}",
                   source={"kind": "s3", "training_window_days": 7, "s3": {"uri": "s3://h2o-demo/flights"}},
                   scoring={"output_uri": f"s3://h2o-demo/predictions/{name}", "hive_table": "", "after_training": False},
                   **changes)
    return f"h2o_train__{name}"


def _state(d, name: str) -> dict | None:
    path = Path(d.env["H2O_AIRFLOW_STATE_DIR"]) / "clusters" / name / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def _task_state(d, dag_id: str, run_id: str, task_id: str) -> str | None:
    try:
        return d.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")["state"]
    except RuntimeError:
        return None


def _trigger_owner(d) -> int | None:
    """The triggerer job that holds the (one) trigger of the deployment, read from the metadata database."""
    import psycopg2

    with contextlib.closing(psycopg2.connect(host=d.database.host, port=d.database.port, user=d.database.user,
                                             dbname=d.database.dbname)) as db, db.cursor() as cur:
        cur.execute("SELECT triggerer_id FROM trigger WHERE classpath LIKE '%H2OClusterReadyTrigger'")
        rows = cur.fetchall()
    return rows[0][0] if len(rows) == 1 else None


def _cancelled(d, name: str) -> bool:
    """The trigger's on_kill said so in a log of the deployment (the task's trigger log)."""
    needle = f"Wait for cluster {name} cancelled"
    return any(needle in p.read_text(errors="replace") for p in Path(d.home).rglob("*.log") if p.is_file())


def test_a_run_longer_than_its_ttl_keeps_its_cluster_while_it_makes_progress(airflow_deployment, tmp_path):
    """ttl 6 s (test seconds): the janitor, run again and again while a task of the run works, never
    deletes the cluster that task pushed the expiry of; the run succeeds. The export is held at a
    barrier until two sweeps came after the time-to-live, so the run outlives it on any machine. The
    sweeps start once the export holds the cluster: between two tasks nothing pushes the expiry, and a
    loaded machine can take longer than 6 s from one task to the next (a time-to-live is minutes)."""
    d = airflow_deployment
    dag_id = _pipeline(d, "ttl-progress", cluster={"replicas": 1, "memory": "1g", "nthreads": 1},
                       training={"algorithms": [{"algo": "glm", "params": {"lambda_search": False}}], "seed": 1})
    d.unpause("h2o_janitor")
    meet = tmp_path / "meet"
    with d.cluster_seconds(ttl=6, ceiling=900), d.hooks({"export:before-metadata": f"barrier:{meet}:2:600"}):
        run_id = d.trigger(dag_id, DAY)
        name = naming.cluster_name("ttl-progress", dag_id, run_id)
        created = datetime.fromisoformat(wait_for("the cluster", lambda: _state(d, name), 300, poll=0.5)["created_at"])
        wait_for("the export at its barrier", lambda: meet.exists() and any(meet.iterdir()), 600, poll=0.5,
                 give_up=lambda: f"the run is {st}" if (st := d.run_state(dag_id, run_id)) in ("success", "failed")
                 else None)
        sweeps: list[float] = []
        while d.run_state(dag_id, run_id) not in ("success", "failed"):
            janitor = d.trigger("h2o_janitor", datetime.now(UTC).isoformat())
            assert d.wait_run("h2o_janitor", janitor, timeout=300) == "success"
            state = _state(d, name)
            if state is None:
                break
            swept = d.api("GET", f"/api/v2/dags/h2o_janitor/dagRuns/{janitor}/taskInstances/delete_abandoned_local/"
                                 "xcomEntries/return_value", query={"deserialize": "true"})["value"]
            sweeps.append((datetime.now(UTC) - created).total_seconds())
            assert name not in swept["deleted"], swept
            assert datetime.fromisoformat(state["expires_at"]) > created + (datetime.now(UTC) - created) / 2
            if len([s for s in sweeps if s > 6]) >= 2:  # the run has outlived its time-to-live: let it finish
                meet.mkdir(exist_ok=True)
                (meet / "export_before-metadata-test").touch()
    assert d.wait_run(dag_id, run_id, timeout=600) == "success"
    assert len([s for s in sweeps if s > 6]) >= 2, sweeps  # sweeps came after the time-to-live had passed
    assert _state(d, name) is None  # the teardown deleted it


def test_a_wait_moved_to_another_triggerer_keeps_the_cluster(airflow_deployment):
    """The first triggerer stops heartbeating (SIGSTOP) while the create task waits; a second one takes
    the trigger over; the first, resumed, cancels its copy (Airflow 3.3 calls on_kill then): the cluster
    must survive it, and the run goes on from the second triggerer."""
    d = airflow_deployment
    dag_id = _pipeline(d, "moved-wait", cluster={"replicas": 1, "memory": "1g", "nthreads": 1},
                       training={"algorithms": [{"algo": "glm", "params": {"lambda_search": False}}], "seed": 1})
    run_id = d.trigger(dag_id, DAY)
    name = naming.cluster_name("moved-wait", dag_id, run_id)
    state = wait_for("the cluster", lambda: _state(d, name), 300, poll=0.5)
    jvms = [n["pid"] for n in state["nodes"]]
    for pid in jvms:  # the cloud stops answering: the wait goes on in the trigger
        os.kill(pid, signal.SIGSTOP)
    first = d.services.procs["triggerer"]
    second = None
    try:
        wait_for("the create task to defer", lambda: _task_state(d, dag_id, run_id, "create_cluster") == "deferred", 120, poll=0.5)
        owner = wait_for("a triggerer to take the wait", lambda: _trigger_owner(d), 120, poll=0.5)
        os.kill(first.pid, signal.SIGSTOP)
        with open(d.services.log_dir / "triggerer-2.log", "ab") as out:
            second = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "triggerer"],
                                      env={**os.environ, **d.services.env}, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        # once the first one's heartbeat is older than [triggerer] triggerer_health_check_threshold
        wait_for("the second triggerer to take the wait over", lambda: (_trigger_owner(d) or owner) != owner, 180, poll=0.5)
        os.kill(first.pid, signal.SIGCONT)  # the first finds its trigger gone and cancels its copy
        wait_for("the first triggerer to cancel its copy (on_kill)", lambda: _cancelled(d, name), 120, poll=0.5)
        assert _state(d, name) is not None  # the cancelled wait deleted nothing
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(first.pid, signal.SIGCONT)
        for pid in jvms:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    try:
        assert d.wait_run(dag_id, run_id, timeout=600) == "success"
        report = {r.task: r for r in d.run_report(dag_id, DAY)}
        assert report["delete_cluster"].result["deleted"] is True  # it was still there for the teardown
    finally:
        if second is not None:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(60)


def test_a_pipeline_file_changed_mid_run_still_tears_down_the_cluster_it_created(airflow_deployment, tmp_path):
    """Once the cluster is ready, the file is edited to another backend and namespace: the run's tasks
    and its teardown keep to the cluster the create task recorded, and nothing is left."""
    import yaml

    d = airflow_deployment
    dag_id = _pipeline(d, "mid-run", cluster={"replicas": 1, "memory": "1g", "nthreads": 1},
                       training={"algorithms": [{"algo": "glm", "params": {"lambda_search": False}}], "seed": 1})
    meet = tmp_path / "meet"
    path = d.dags / "pipelines" / "mid_run.yaml"
    good = path.read_text()
    try:
        with d.hooks({"cluster:ready": f"barrier:{meet}:2:300"}):
            run_id = d.trigger(dag_id, DAY)
            wait_for("the create task at its barrier", lambda: meet.exists() and any(meet.iterdir()), 300, poll=0.5)
            raw = yaml.safe_load(good)
            raw["cluster"] = {**raw["cluster"], "backend": "kubernetes", "namespace": "elsewhere"}
            path.write_text(yaml.safe_dump(raw, sort_keys=False))
            (meet / "cluster_ready-test").touch()
            assert d.wait_run(dag_id, run_id, timeout=600) == "success"
    finally:  # the deployment's other tests (its janitor) must not see a namespace it cannot reach
        path.write_text(good)
    report = {r.task: r for r in d.run_report(dag_id, DAY)}
    deleted = report["delete_cluster"].result
    assert (deleted["backend"], deleted["deleted"]) == ("local", True), deleted
    assert _state(d, naming.cluster_name("mid-run", dag_id, run_id)) is None


def test_a_pipeline_file_broken_mid_run_pauses_the_run_and_the_janitor_reaps_its_expired_cluster(
        airflow_deployment, tmp_path):
    """Once the cluster is ready the file is broken (invalid YAML). Airflow 3.3 reschedules the next task
    ("Dag not found during start up"): the run waits instead of failing, no task pushes the cluster's
    expiry, and the janitor reaps it once expired (ttl 15 s here). The file fixed, the run goes on: its
    next task finds the cluster gone, makes it again (cluster.rebuild_on_loss), the run succeeds, and
    nothing is left."""
    d = airflow_deployment
    dag_id = _pipeline(d, "broken-mid-run", cluster={"replicas": 1, "memory": "1g", "nthreads": 1},
                       training={"algorithms": [{"algo": "glm", "params": {"lambda_search": False}}], "seed": 1})
    path = d.dags / "pipelines" / "broken_mid_run.yaml"
    good = path.read_text()
    meet = tmp_path / "meet"
    try:
        with d.cluster_seconds(ttl=15, ceiling=900), d.hooks({"cluster:ready": f"barrier:{meet}:2:300"}):
            run_id = d.trigger(dag_id, DAY)
            name = naming.cluster_name("broken-mid-run", dag_id, run_id)
            wait_for("the create task at its barrier", lambda: meet.exists() and any(meet.iterdir()), 300, poll=0.5)
            path.write_text(good.replace("cluster:", "cluster: [", 1))
            (meet / "cluster_ready-test").touch()
            wait_for("the import task rescheduled",
                  lambda: _task_state(d, dag_id, run_id, "import_data") == "up_for_reschedule", 180, poll=0.5)
            state = _state(d, name)
            assert state is not None and d.run_state(dag_id, run_id) == "running"
            time.sleep(max(0.0, (datetime.fromisoformat(state["expires_at"]) - datetime.now(UTC)).total_seconds() + 1))
            d.unpause("h2o_janitor")
            janitor = d.trigger("h2o_janitor", datetime.now(UTC).isoformat())
            d.wait_run("h2o_janitor", janitor, timeout=300)  # a target of another test may be unreachable
            assert _task_state(d, "h2o_janitor", janitor, "delete_abandoned_local") == "success"
        swept = d.api("GET", f"/api/v2/dags/h2o_janitor/dagRuns/{janitor}/taskInstances/delete_abandoned_local/"
                             "xcomEntries/return_value", query={"deserialize": "true"})["value"]
        assert name in swept["deleted"] and "expired at" in swept["reasons"][name], swept
        assert _state(d, name) is None
        path.write_text(good)
        assert d.wait_run(dag_id, run_id, timeout=600) == "success"
        assert _state(d, name) is None  # the rebuilt cluster went with the run's teardown
    finally:
        path.write_text(good)
