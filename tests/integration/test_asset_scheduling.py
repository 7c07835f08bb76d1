"""Data-aware scheduling by Airflow's own scheduler: a training run that promotes a new champion makes
the scheduler start the scoring DAG (``schedule.scoring: on_new_champion``), which scores the last day
of that training run's interval with the new champion; an event on the S3 source's Asset (data landed,
posted through the REST API as a producer outside Airflow would) starts the scoring DAG of a pipeline
scheduled ``on_new_data``, which scores the day the event names."""

from __future__ import annotations

import time
import uuid

import pytest

from h2o_tasks import registry, s3

pytestmark = pytest.mark.integration
DAY = "2013-02-11"
LANDED = "2013-02-14"  # the day an on_new_data event says landed: not the run's date, not DAY


def test_a_new_champion_and_new_data_start_the_scoring_dags_through_the_scheduler(airflow_deployment, s3_settings):
    d = airflow_deployment
    bucket = f"asset-{uuid.uuid4().hex[:8]}"
    client = s3_settings.client()
    client.create_bucket(Bucket=bucket)
    name = d.add_pipeline(
        "asset_scheduled.yaml", name="asset-scheduled", registry_uri=f"s3://{bucket}/models",
        schedule={"training": None, "scoring": "on_new_champion"},
        source={"kind": "s3", "training_window_days": 3, "s3": {"uri": "s3://h2o-demo/flights"}},
        cluster={"replicas": 1, "memory": "1g", "nthreads": 1},
        training={"algorithms": [{"algo": "glm", "params": {"lambda_search": False}}], "seed": 1},
        quality_gate={"metric": "auc", "threshold": 0.5, "max_regression": 1.0},
        scoring={"output_uri": f"s3://{bucket}/predictions", "hive_table": "", "after_training": False,
                 "engine": "offline"})
    train, score = f"h2o_train__{name}", f"h2o_score__{name}"
    d.unpause(score)  # a consumer takes asset events while unpaused; nothing runs it before the event
    assert d.api("GET", f"/api/v2/dags/{score}/dagRuns")["dag_runs"] == []
    assert d.wait_run(train, d.trigger(train, DAY), timeout=600) == "success"
    champion = registry.read_champion(client, f"s3://{bucket}/models")

    deadline, runs = time.monotonic() + 120, []
    while not runs and time.monotonic() < deadline:  # the scheduler's loop, not this test, makes the run
        runs = d.api("GET", f"/api/v2/dags/{score}/dagRuns")["dag_runs"]
        time.sleep(1)
    assert [r["run_type"] for r in runs] == ["asset_triggered"], runs
    assert d.wait_run(score, runs[0]["dag_run_id"], timeout=600) == "success", d.log_tail()
    events = d.api("GET", f"/api/v2/dags/{score}/dagRuns/{runs[0]['dag_run_id']}/upstreamAssetEvents")
    assert [e["extra"]["version"] for e in events["asset_events"]] == [champion.version]
    keys = s3.list_keys(client, f"s3://{bucket}/predictions")
    days = {k.split("dt=", 1)[1].split("/", 1)[0] for k in keys if "dt=" in k}
    assert days == {DAY}, keys  # the day the new champion's training interval ended on, scored once

    # a pipeline scoring on new data, with the same champion (its registry copied: no second training)
    for uri in s3.list_keys(client, f"s3://{bucket}/models/"):
        key = s3.split_uri(uri)[1]
        client.copy_object(Bucket=bucket, Key=key.replace("models/", "models-data/", 1),
                           CopySource={"Bucket": bucket, "Key": key})
    data = d.add_pipeline(
        "data_scheduled.yaml", name="data-scheduled", registry_uri=f"s3://{bucket}/models-data",
        schedule={"training": None, "scoring": "on_new_data"},
        source={"kind": "s3", "training_window_days": 3, "s3": {"uri": "s3://h2o-demo/flights"}},
        scoring={"output_uri": f"s3://{bucket}/predictions-data", "hive_table": "", "after_training": False,
                 "engine": "offline"})
    scored_on_data = f"h2o_score__{data}"
    d.unpause(scored_on_data)
    [asset] = [a for a in d.api("GET", "/api/v2/assets", query={"uri_pattern": "h2o-demo/flights"})["assets"]
               if a["uri"] == "s3://h2o-demo/flights"]
    assert d.api("GET", f"/api/v2/dags/{scored_on_data}/dagRuns")["dag_runs"] == []
    d.api("POST", "/api/v2/assets/events", {"asset_id": asset["id"], "extra": {"day": LANDED}})
    deadline, runs = time.monotonic() + 120, []
    while not runs and time.monotonic() < deadline:
        runs = d.api("GET", f"/api/v2/dags/{scored_on_data}/dagRuns")["dag_runs"]
        time.sleep(1)
    assert [r["run_type"] for r in runs] == ["asset_triggered"], runs
    assert d.wait_run(scored_on_data, runs[0]["dag_run_id"], timeout=600) == "success", d.log_tail()
    keys = s3.list_keys(client, f"s3://{bucket}/predictions-data")
    assert {k.split("dt=", 1)[1].split("/", 1)[0] for k in keys if "dt=" in k} == {LANDED}, keys
