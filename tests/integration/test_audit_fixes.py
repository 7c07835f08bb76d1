"""Fixes from the engine review, against a real S3 API (moto server) and a real H2O cloud."""

from __future__ import annotations

import gc
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from h2o_tasks import artifacts, frames, ingest, naming, registry, s3, train
from h2o_tasks.config import PipelineConfig, load, parse, to_dict

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


# --- on a real H2O cloud ----------------------------------------------------------------------

PIPELINE = Path(__file__).resolve().parents[2] / "dags" / "pipelines" / "arrival_delay.yaml"


def _cfg(bucket: str, problem: str, algorithms: list[dict[str, Any]], nfolds: int = 0) -> PipelineConfig:
    raw = to_dict(load(PIPELINE))
    raw["name"] = f"audit-{problem}"
    raw["features"] = [{"name": "x", "type": "real"}, {"name": "k", "type": "int"}, {"name": "c", "type": "enum"}]
    metric = "auc" if problem == "binary" else "rmse"
    raw["target"] = ({"column": "y", "problem": "binary", "threshold": 1.5, "name": "high"} if problem == "binary"
                     else {"column": "y", "problem": "regression"})
    raw["training"] = {"seed": 7, "validation_split": 0.0 if nfolds else 0.25, "nfolds": nfolds, "metric": metric,
                       "algorithms": algorithms}
    raw["quality_gate"] = {"metric": metric, "threshold": 0.0, "max_regression": 0.0}
    raw["registry_uri"] = f"s3://{bucket}/models/audit-{problem}"
    return parse(raw)


@pytest.fixture(scope="module")
def synthetic(h2o_cloud):
    """2,000 rows: y = 3x + k/10 + (2 when c = 'b') + noise, some y missing."""
    rng = random.Random(7)
    rows = []
    for i in range(2000):
        x, k, c = rng.random(), rng.randint(0, 9), rng.choice("abc")
        y = 3 * x + k / 10 + (2 if c == "b" else 0) + rng.gauss(0, 0.3)
        rows.append([x, k, c, None if i % 50 == 0 else y])
    frame = h2o_cloud.H2OFrame(rows, column_names=["x", "k", "c", "y"], column_types=["real", "int", "enum", "real"])
    h2o_cloud.assign(frame, "audit_synthetic")
    return frame


def _keys(client: Any, uri: str) -> list[str]:
    return [k.rsplit("/", 1)[1] for k in s3.list_keys(client, uri)]


def test_prepared_frame_to_dict_leaves_the_frame_in_the_cluster(h2o_cloud, synthetic, s3_bucket):
    """``dataclasses.asdict`` deep-copied the H2OFrame: a TypeError for a frame still defined by an expression."""
    prepared = frames.prepare(synthetic, _cfg(s3_bucket, "binary", [{"algo": "glm"}]), source="synthetic")
    frame_id = prepared.frame.frame_id
    assert prepared.to_dict() == {"rows_in": 2000, "rows_dropped_no_label": 40, "rows_out": 1960,
                                  "class_counts": prepared.class_counts}
    gc.collect()  # no copy of the frame's handle was made, so none can remove the cluster key when collected
    assert h2o_cloud.get_frame(frame_id).nrows == 1960


def test_regression_report_draws_residuals(h2o_cloud, synthetic, s3_settings, s3_bucket):
    cfg = _cfg(s3_bucket, "regression", [{"algo": "gbm", "params": {"ntrees": 20, "max_depth": 4}}])
    prepared = frames.prepare(synthetic, cfg, source="synthetic")
    result = train.train(prepared.frame, None, cfg, run_id="audit-regression")
    model = h2o_cloud.get_model(result.best_model_id)
    client = s3_settings.client()
    exported = artifacts.export(h2o_cloud, model, cfg, client, run_id="audit-regression",
                                logical_date=datetime(2013, 2, 4, tzinfo=UTC))
    keys = _keys(client, exported.uri)
    assert "residuals.png" in keys and "roc.png" not in keys
    meta = registry.load_metadata(client, cfg.registry_uri, exported.version)
    assert "residuals.png" in meta["report"]
    assert meta["pojo"] in keys and meta["pojo"].endswith(".java") and meta["pojo_unavailable_reason"] is None
    page = s3.read_bytes(client, s3.join(exported.uri, "index.html")).decode()
    assert 'src="residuals.png"' in page
    # the validation split is a named frame: the export task (another client session) still finds it
    valid = f"audit_regression_valid_{naming.run_hash(cfg.name, 'audit-regression')}"
    assert model.actual_params["validation_frame"] == valid and h2o_cloud.get_frame(valid).nrows == result.valid_rows
    h2o_cloud.remove(valid)  # gone: the report falls back to the training rows, and says so
    frame, name = artifacts._frame_of(h2o_cloud, model)
    assert name == "training data" and frame.nrows == result.train_rows


def test_export_of_a_model_without_pojo_records_why(h2o_cloud, synthetic, s3_settings, s3_bucket):
    from h2o.estimators import H2OGradientBoostingEstimator, H2OStackedEnsembleEstimator

    cfg = _cfg(s3_bucket, "binary", [{"algo": "gbm"}], nfolds=3)
    prepared = frames.prepare(synthetic, cfg, source="synthetic")
    base = []
    for depth in (2, 4):
        gbm = H2OGradientBoostingEstimator(ntrees=10, max_depth=depth, nfolds=3, fold_assignment="Modulo", seed=7,
                                           keep_cross_validation_predictions=True)
        gbm.train(x=cfg.feature_names, y=cfg.target.label, training_frame=prepared.frame)
        base.append(gbm)
    ensemble = H2OStackedEnsembleEstimator(base_models=base, seed=7)
    ensemble.train(x=cfg.feature_names, y=cfg.target.label, training_frame=prepared.frame)
    client = s3_settings.client()
    exported = artifacts.export(h2o_cloud, ensemble, cfg, client, run_id="audit-ensemble",
                                logical_date=datetime(2013, 2, 4, tzinfo=UTC))
    keys = _keys(client, exported.uri)
    assert "model.zip" in keys and "metadata.json" in keys and not any(k.endswith(".java") for k in keys)
    meta = registry.load_metadata(client, cfg.registry_uri, exported.version)
    assert meta["pojo"] is None and "stackedensemble" in meta["pojo_unavailable_reason"]
    assert meta["algo"] == "stackedensemble" and "index.html" in meta["report"]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("max_fetch", [1 << 20, 0], ids=["fetched", "nodes-read"])
def test_missing_strings_stay_missing_on_import(h2o_cloud, s3_settings, s3_bucket, fmt, max_fetch):
    """No pandas DataFrame is ever turned into an H2OFrame (pandas 3 writes missing strings as "nan"):
    the cluster parses the files (downloaded and uploaded, or read by the nodes), and a missing
    category stays NA, not a level."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    table = pa.table({"x": [0.5, 1.5, None, 2.5], "k": [1, 2, 3, None], "c": ["a", None, "b", None],
                      "y": [1.0, 2.0, 3.0, 4.0]})
    buf = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(table, buf)
    else:
        pcsv.write_csv(table, buf)
    client = s3_settings.client()
    s3.write_bytes(client, f"s3://{s3_bucket}/data/dt=2013-02-03/part-0.{fmt}", buf.getvalue())
    raw = to_dict(_cfg(s3_bucket, "regression", [{"algo": "glm"}]))
    raw["source"] = {"kind": "s3", "training_window_days": 2,
                     "s3": {"uri": f"s3://{s3_bucket}/data", "format": fmt, "client_fetch_max_bytes": max_fetch}}
    cfg = parse(raw)
    day = datetime(2013, 2, 4).date()
    frame, _ = ingest.import_interval(h2o_cloud, cfg, "train", day, day, s3=s3_settings)
    prepared = frames.prepare(frame, cfg, source=fmt)
    c = prepared.frame["c"]
    assert c.isfactor()[0] and sorted(c.levels()[0]) == ["a", "b"]
    assert int(c.isna().sum()) == 2
    assert int(prepared.frame["x"].isna().sum()) == 1 and int(prepared.frame["k"].isna().sum()) == 1
