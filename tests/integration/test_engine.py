"""The engine on a real H2O cloud with real flights in a real S3 API: prepare, train, export, score."""

from __future__ import annotations

import json
import os
import warnings
from datetime import UTC, date, datetime

import pytest

from h2o_tasks import artifacts, commit, frames, ingest, registry, s3, scoring, train
from h2o_tasks.errors import ConfigError, InputDataError
from tests.fixtures.pipelines import variant, whole

pytestmark = pytest.mark.integration
DAY = date(2013, 2, 4)


@pytest.fixture(scope="module")
def engine_cfg():
    return variant(registry_uri="s3://h2o-demo/models/engine-test",
                   scoring={"output_uri": "s3://h2o-demo/predictions/engine-test"})


@pytest.fixture(scope="module")
def trained(h2o_cloud, engine_cfg, s3_settings, seeded_s3):
    frame, imported = ingest.import_interval(h2o_cloud, engine_cfg, "train", DAY, DAY, s3=s3_settings)
    prepared = frames.prepare(frame, engine_cfg, source="test")
    result = train.train(prepared.frame, None, engine_cfg, run_id="engine-test")
    return imported, prepared, result


def test_fetched_import_equals_the_nodes_import(h2o_cloud, engine_cfg, s3_settings, seeded_s3):
    """The window's flights downloaded and uploaded (only the pipeline's columns) give the frame the nodes import."""
    from dataclasses import replace

    nodes_cfg = replace(engine_cfg, source=replace(engine_cfg.source, s3=replace(engine_cfg.source.s3,
                                                                                   client_fetch_max_bytes=0)))
    fetched, result = ingest.import_interval(h2o_cloud, engine_cfg, "train", DAY, DAY, s3=s3_settings)
    # the nodes' import below replaces the frame under the same name: take everything first
    fetched_cols, fetched_rows, fetched_types = fetched.columns, fetched.nrows, fetched.types
    fetched_df = fetched.as_data_frame()
    nodes, _ = ingest.import_interval(h2o_cloud, nodes_cfg, "train", DAY, DAY, s3=s3_settings)
    try:
        assert 0 < result.input_bytes <= engine_cfg.source.s3.client_fetch_max_bytes
        assert result.files == engine_cfg.source.training_window_days
        assert fetched_cols == nodes.columns == ingest.columns_needed(engine_cfg, "train")
        assert fetched_types == nodes.types and fetched_rows == nodes.nrows > 20_000
        assert fetched_df.equals(nodes.as_data_frame())
    finally:
        h2o_cloud.remove(nodes)


def test_import_prepare_and_train(trained):
    imported, prepared, result = trained
    assert imported.rows > 20000 and imported.files == 28
    assert prepared.rows_dropped_no_label > 0  # cancelled flights have no arr_delay
    assert set(prepared.class_counts) == {"0", "1"}
    assert {m.algo for m in result.models} == {"gbm", "glm"}
    assert result.best_metric_value > 0.75
    for m in result.models:
        assert 0.5 < m.metrics["auc"] <= 1 and "logloss" in m.metrics


def test_models_trained_at_once_equal_models_trained_one_by_one(h2o_cloud, engine_cfg, trained):
    """training.parallelism 0 (the default: all algorithms at once) and 1 build the same models."""
    _, prepared, together = trained
    alone = train.train(prepared.frame, None, variant(engine_cfg, training={"parallelism": 1}),
                        run_id="engine-test-serial")
    assert [(m.algo, m.metrics) for m in alone.models] == [(m.algo, m.metrics) for m in together.models]
    assert all(m.seconds > 0 for m in together.models)
    # a parameter H2O rejects names its algorithm, even when the other one was started beside it
    rejected = variant(engine_cfg, training={"parallelism": 0, "algorithms": [
        {"algo": "glm", "params": {"alpha": 0.5}}, {"algo": "gbm", "params": {"ntrees": 5, "max_depth": -3}}]})
    with pytest.raises(ConfigError) as err:
        train.train(prepared.frame, None, rejected, run_id="engine-test-bad")
    assert err.value.field == "training.algorithms[1].params" and "max_depth" in str(err.value)


def _committed(client, result):
    """The predictions a reader sees for the result's one partition (through its manifest)."""
    import io

    import pandas as pd

    (part,) = result.partitions
    files = commit.committed_files(client, part["output_uri"])
    assert files and all(f.startswith(part["output_uri"] + "/_attempts/" + part["attempt"]) for f in files)
    return pd.concat([pd.read_csv(io.BytesIO(s3.read_bytes(client, f))) for f in files]).reset_index(drop=True)


def _predictcsv_lines(client, cfg, day, work):
    """PredictCsv's own output lines (header apart) for the day's rows, fed the offline task's scorer input."""
    from h2o_tasks import intervals, mojo_csv, offline_stream

    champ = scoring.champion(client, cfg)
    model = scoring.fetch_model(client, champ, work)
    local = offline_stream.download(client, scoring._period_files(client, cfg, intervals.periods("day", day, day)),
                                    work / "in")
    offline_stream.write_scorer_input(local, cfg.source.s3.format, champ.metadata["features"], champ.version,
                                      work / "input.csv")
    mojo_csv.genmodel_predict(mojo_csv.genmodel_jar(), model, work / "input.csv", work / "predictcsv.csv")
    return (work / "predictcsv.csv").read_text().splitlines()[1:]


def test_export_gate_promote_and_score_both_engines_agree(h2o_cloud, engine_cfg, trained, s3_settings, monkeypatch,
                                                          tmp_path):
    _, _, result = trained
    client = s3_settings.client()
    model = h2o_cloud.get_model(result.best_model_id)
    outcome = artifacts.export_and_promote(h2o_cloud, model, engine_cfg, client, run_id="engine-test",
                                           logical_date=datetime(2013, 2, 4, tzinfo=UTC),
                                           interval=(date(2013, 2, 4), date(2013, 2, 11)), try_number=1)
    exported = outcome.export
    keys = [k.rsplit("/", 1)[1] for k in s3.list_keys(client, exported.uri)]
    for name in ("model.zip", "h2o-genmodel.jar", "metadata.json", "index.html", "roc.png", "variable_importance.png"):
        assert name in keys
    assert any(k.endswith(".java") for k in keys)
    meta = registry.load_metadata(client, engine_cfg.registry_uri, exported.version)
    carrier = next(f for f in meta["features"] if f["name"] == "carrier")
    assert "UA" in carrier["domain"] and meta["target"]["domain"] == ["0", "1"]
    assert meta["h2o_version"] == "3.46.0.11"
    assert meta["model_sha256"] == exported.model_sha256 == meta["digests"]["model.zip"]
    assert meta["lineage"]["interval_end"] == "2013-02-11"
    assert outcome.promotion.decision.promote, outcome.promotion.decision.reason
    champion = registry.read_champion(client, engine_cfg.registry_uri)
    assert champion.version == exported.version and champion.interval_end == "2013-02-11"
    assert champion.model_sha256 == exported.model_sha256

    frame, _ = ingest.import_interval(h2o_cloud, engine_cfg, "score", DAY, DAY, s3=s3_settings)
    in_cluster = scoring.score_in_cluster(h2o_cloud, [(DAY, frame)], engine_cfg, client, run_id="r1")
    assert in_cluster.rows_in == in_cluster.rows_scored == frame.nrows > 800
    first = _committed(client, in_cluster)
    offline = scoring.score_offline(engine_cfg, s3_settings, DAY, DAY, run_id="r2")
    assert offline.rows_scored == in_cluster.rows_scored
    # the offline run replaced the partition: readers now see its attempt, whole
    offline_df = _committed(client, offline)
    assert offline.partitions[0]["attempt"] != in_cluster.partitions[0]["attempt"]
    # its prediction columns are PredictCsv's text, byte for byte (the ids before them, as Arrow writes them)
    (part_file,) = commit.committed_files(client, offline.partitions[0]["output_uri"])
    ids = len(engine_cfg.scoring.id_columns)
    rows = [line.split(",", ids)[ids] for line in s3.read_bytes(client, part_file).decode().splitlines()[1:]]
    assert rows == _predictcsv_lines(client, engine_cfg, DAY, tmp_path)
    assert len(offline_df) == len(first)
    again = scoring.score_in_cluster(h2o_cloud, [(DAY, frame)], engine_cfg, client, run_id="r3")
    cluster_df = _committed(client, again)
    assert len(cluster_df) == len(offline_df)
    diff = (cluster_df["p1"] - offline_df["p1"]).abs().max()
    assert diff < 1e-6, diff
    assert json.loads(json.dumps(again.to_dict()))["engine"] == "cluster"

    # the training DAG's champion is still in its cluster: scored as trained, not uploaded again, and kept
    with monkeypatch.context() as m:
        m.setattr(h2o_cloud, "upload_mojo", lambda *a, **k: pytest.fail("the loaded model was uploaded again"))
        reused = scoring.score_in_cluster(h2o_cloud, [(DAY, frame)], engine_cfg, client, run_id="r4",
                                          loaded={exported.version: (result.best_model_id, exported.model_sha256)})
    assert (_committed(client, reused)["p1"] - cluster_df["p1"]).abs().max() < 1e-6
    assert h2o_cloud.get_model(result.best_model_id).model_id == result.best_model_id
    gone = scoring.score_in_cluster(h2o_cloud, [(DAY, frame)], engine_cfg, client, run_id="r5",
                                    loaded={exported.version: ("no_such_model", exported.model_sha256)})
    assert gone.rows_scored == frame.nrows  # fell back to the champion's MOJO
    with monkeypatch.context() as m:  # a model in the cluster whose digest is not the champion's is not used
        m.setattr(h2o_cloud, "get_model", lambda *a, **k: pytest.fail("a model of another digest was used"))
        other = scoring.score_in_cluster(h2o_cloud, [(DAY, frame)], engine_cfg, client, run_id="r6",
                                         loaded={exported.version: (result.best_model_id, "0" * 64)})
    assert other.rows_scored == frame.nrows


def test_bad_inputs_name_the_problem(h2o_cloud, engine_cfg, s3_settings, seeded_s3):
    frame, _ = ingest.import_interval(h2o_cloud, engine_cfg, "train", DAY, DAY, s3=s3_settings)
    never = variant(engine_cfg, target=whole({"column": "arr_delay", "threshold": 100000, "name": "never",
                                              "problem": "binary"}))
    with pytest.raises(InputDataError) as err:
        frames.prepare(frame, never, source="window")
    assert "single class" in str(err.value)
    # levels the model never saw are counted, not an error
    known = [lvl for lvl in frame["carrier"].asfactor().levels()[0] if lvl != "UA"]
    checked, report = frames.check_scoring_input(frame, [{"name": "carrier", "type": "enum", "domain": known}], "v1")
    ua = int((frame["carrier"] == "UA").sum())
    assert checked.nrows == frame.nrows and report.unseen_levels == {"carrier": ua} and ua > 0
    no_dest = frame.drop("dest")
    with pytest.raises(InputDataError) as err:
        frames.check_scoring_input(no_dest, [{"name": "dest", "type": "enum", "domain": ["IAH"]}], "v1")
    assert "dest" in str(err.value) and "missing" in str(err.value)
    misspelt = variant(engine_cfg, training={"algorithms": [{"algo": "gbm", "params": {"n_trees": 5}}]})
    prepared = frames.prepare(frame, engine_cfg, source="w")
    with pytest.raises(ConfigError) as err:
        train.train(prepared.frame, None, misspelt, run_id="x")
    assert err.value.field == "training.algorithms[0].params.n_trees"


def test_xgboost_and_automl_options(h2o_cloud, engine_cfg, s3_settings, seeded_s3):
    """XGBoost listed as an algorithm, and AutoML beside it. An H2O without XGBoost (it needs a supported
    OS and CPU) refuses the listed xgboost naming the field, and AutoML is still trained and checked,
    without it; under CI=true such an H2O fails the test, as the option would go untested."""
    from h2o.estimators import H2OXGBoostEstimator

    frame, _ = ingest.import_interval(h2o_cloud, engine_cfg, "train", DAY, DAY, s3=s3_settings)
    prepared = frames.prepare(frame, engine_cfg, source="w")
    automl = {"max_models": 2, "max_runtime_secs": 60}
    cfg = variant(engine_cfg, training={"algorithms": [{"algo": "xgboost", "params": {"ntrees": 10, "max_depth": 4}}],
                                        "automl": automl})
    xgboost = H2OXGBoostEstimator.available()
    if not xgboost:
        if os.environ.get("CI") == "true":
            pytest.fail("XGBoost is not available in the tests' H2O cluster (H2OXGBoostEstimator.available() is "
                        "False): under CI=true the xgboost option must be trained; run CI on an OS/CPU H2O's "
                        "XGBoost supports", pytrace=False)
        with pytest.raises(ConfigError) as err:
            train.train(prepared.frame, None, cfg, run_id="xgb")
        assert err.value.field == "training.algorithms[0].algo" and "not available" in str(err.value)
        warnings.warn("XGBoost is not available in this H2O cluster: its refusal was checked, and AutoML was "
                      "trained without it", stacklevel=1)
        cfg = variant(engine_cfg, training={"algorithms": [], "automl": automl})
    result = train.train(prepared.frame, None, cfg, run_id="xgb")
    assert [m.algo for m in result.models] == (["xgboost", "automl"] if xgboost else ["automl"])
    assert all(m.metrics["auc"] > 0.7 for m in result.models)
    if not xgboost:  # AutoML's best model is one it could train here
        assert h2o_cloud.get_model(result.models[-1].model_id).algo != "xgboost"
