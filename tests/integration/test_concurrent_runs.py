"""Training runs at once, retried and cleared, by Airflow's own scheduler (LocalExecutor, PostgreSQL):
the registry keeps every object's first writer, the champion is the one the policy says, and the
history has one record per promotion.

The registry's bucket has S3 versioning on, so an overwrite of any object would leave a second
version of its key: every key must have exactly one.
"""

from __future__ import annotations

import uuid

import pytest

from h2o_tasks import registry, s3

pytestmark = pytest.mark.integration
DAYS = ["2013-02-04", "2013-02-11", "2013-02-18"]  # data intervals end 02-05, 02-12, 02-19


def _pipeline(d, s3_settings, tag: str) -> tuple[str, str]:
    """A small training pipeline with a versioned registry bucket of its own; (DAG id, registry URI)."""
    bucket = f"race-{tag}-{uuid.uuid4().hex[:8]}"
    client = s3_settings.client()
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    name = d.add_pipeline(
        f"race_{tag}.yaml", name=f"race-{tag}", registry_uri=f"s3://{bucket}/models",
        source={"kind": "s3", "training_window_days": 3, "s3": {"uri": "s3://h2o-demo/flights"}},
        cluster={"replicas": 1, "memory": "1g", "nthreads": 1},
        training={"algorithms": [{"algo": "glm", "params": {"lambda_search": False}}], "seed": 1},
        # any model that passes may replace the champion: the interval policy decides between runs
        quality_gate={"metric": "auc", "threshold": 0.5, "max_regression": 1.0},
        scoring={"output_uri": f"s3://{bucket}/predictions", "hive_table": "", "after_training": False})
    return f"h2o_train__{name}", f"s3://{bucket}/models"


def _run_all(d, dag_id: str) -> dict[str, dict]:
    """Trigger the three dates at once; wait; the export task's result of each."""
    runs = {day: d.trigger(dag_id, day) for day in DAYS}
    states = {day: d.wait_run(dag_id, run, timeout=900) for day, run in runs.items()}
    assert set(states.values()) == {"success"}, (states, d.services.log_dir)
    return {day: {r.task: r.result for r in d.run_report(dag_id, day)}["export_and_promote"] for day in DAYS}


def _check_registry(client, uri: str, exports: dict[str, dict]) -> list[registry.ChampionPointer]:
    bucket, _ = s3.split_uri(uri)
    versions = client.list_object_versions(Bucket=bucket)
    per_key: dict[str, int] = {}
    for v in versions.get("Versions", []):
        per_key[v["Key"]] = per_key.get(v["Key"], 0) + 1
    overwritten = {k: n for k, n in per_key.items() if n > 1 and not k.endswith("champion.json")}
    assert overwritten == {}, overwritten  # every object except the pointer was written once
    assert not versions.get("DeleteMarkers")
    champion = registry.read_champion(client, uri)
    assert champion.version == exports["2013-02-18"]["version"]  # the newest interval, as the policy says
    assert champion.interval_end == "2013-02-19"
    history = registry.history(client, uri)
    promoted = [e["version"] for e in exports.values() if e["promoted"]]
    assert [h.generation for h in history] == list(range(1, len(promoted) + 1))  # one record per promotion
    assert sorted(h.version for h in history) == sorted(promoted)
    assert per_key[f"{s3.split_uri(uri)[1]}/champion.json"] == len(promoted)  # the pointer moved once per promotion
    for day, e in exports.items():
        if not e["promoted"]:
            assert "older interval" in e["reason"] or "champion" in e["reason"], (day, e["reason"])
    return history


def test_three_runs_at_once_with_a_killed_export_retried(airflow_deployment, s3_settings, tmp_path):
    d = airflow_deployment
    dag_id, uri = _pipeline(d, s3_settings, "free")
    client = s3_settings.client()
    # the first export task to reach the last step before metadata.json dies there (SIGKILL); its retry goes through
    with d.hooks({"export:before-metadata": f"kill-once:{tmp_path / 'killed'}"}):
        exports = _run_all(d, dag_id)
    assert (tmp_path / "killed").exists()
    _check_registry(client, uri, exports)
    listed = registry.list_versions(client, uri)
    incomplete = [v for v in listed if not v.complete]
    assert len(incomplete) == 1 and len(listed) == 4  # the killed try's version stays incomplete, unchanged
    assert {v.version for v in listed if v.complete} == {e["version"] for e in exports.values()}
    retried = next(e for e in exports.values() if "-t2-" in e["version"])
    assert incomplete[0].version.split("-t1-")[0] == retried["version"].split("-t2-")[0]  # same run, new version

    # a run cleared and run again by the scheduler exports a new version; nothing is overwritten
    before = {v.version for v in registry.list_versions(client, uri)}
    assert d.cli(["tasks", "clear", dag_id, "--start-date", DAYS[0], "--end-date", DAYS[0], "--yes"]) == 0, d.log_tail()
    assert d.wait_run(dag_id, DAYS[0], timeout=900) == "success"
    again = {r.task: r.result for r in d.run_report(dag_id, DAYS[0])}["export_and_promote"]
    assert again["version"] not in before and again["version"] != exports[DAYS[0]]["version"]
    assert {v.version for v in registry.list_versions(client, uri)} == before | {again["version"]}
    assert again["promoted"] is False and "older interval" in again["reason"]
    _check_registry(client, uri, {**exports, "cleared": again})


def test_three_runs_forced_to_interleave_between_read_and_swap(airflow_deployment, s3_settings, tmp_path):
    """All three export tasks read the champion, then wait for each other before swapping."""
    d = airflow_deployment
    dag_id, uri = _pipeline(d, s3_settings, "forced")
    meet = tmp_path / "meet"
    with d.hooks({"registry:before-cas": f"barrier:{meet}:3:600"}):
        exports = _run_all(d, dag_id)
    assert len(list(meet.iterdir())) >= 3  # each of the three did wait there
    assert sum(e["attempts"] > 1 for e in exports.values()) >= 2  # two lost the first swap, read again, re-gated
    history = _check_registry(s3_settings.client(), uri, exports)
    assert history[0].previous is None
