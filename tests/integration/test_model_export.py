"""What an exported model version holds (h2o_tasks.artifacts.export), for models trained on a real H2O
cloud and written to a real S3 API (moto server): a regression's report and its fallbacks, and a model
that has no POJO."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from h2o_tasks import artifacts, frames, naming, registry, s3, train
from h2o_tasks.config import PipelineConfig
from tests.fixtures.synthetic import linear_frame, linear_pipeline

pytestmark = pytest.mark.integration


def _cfg(bucket: str, problem: str, algorithms: list[dict[str, Any]], nfolds: int = 0) -> PipelineConfig:
    target = ({"column": "y", "problem": "binary", "threshold": 1.5, "name": "high"} if problem == "binary"
              else {"column": "y", "problem": "regression"})
    return linear_pipeline(target, name=f"export-{problem}", registry_uri=f"s3://{bucket}/models/export-{problem}",
                           training={"seed": 7, "validation_split": 0.0 if nfolds else 0.25, "nfolds": nfolds,
                                     "algorithms": algorithms})


@pytest.fixture(scope="module")
def synthetic(h2o_cloud):
    """2,000 rows: y = 3x + k/10 + (2 when c = 'b') + noise, some y missing."""
    return linear_frame(h2o_cloud, 2000, seed=7, label_missing_every=50, key="export_synthetic")


def _keys(client: Any, uri: str) -> list[str]:
    return [k.rsplit("/", 1)[1] for k in s3.list_keys(client, uri)]


def test_regression_report_draws_residuals(h2o_cloud, synthetic, s3_settings, s3_bucket):
    cfg = _cfg(s3_bucket, "regression", [{"algo": "gbm", "params": {"ntrees": 20, "max_depth": 4}}])
    prepared = frames.prepare(synthetic, cfg, source="synthetic")
    result = train.train(prepared.frame, None, cfg, run_id="export-regression")
    model = h2o_cloud.get_model(result.best_model_id)
    client = s3_settings.client()
    exported = artifacts.export(h2o_cloud, model, cfg, client, run_id="export-regression",
                                logical_date=datetime(2013, 2, 4, tzinfo=UTC))
    keys = _keys(client, exported.uri)
    assert "residuals.png" in keys and "roc.png" not in keys
    assert not [k for k in keys if k.startswith(".")], keys  # nothing of the task's own (its scratch lock)
    meta = registry.load_metadata(client, cfg.registry_uri, exported.version)
    assert "residuals.png" in meta["report"]
    assert meta["pojo"] in keys and meta["pojo"].endswith(".java") and meta["pojo_unavailable_reason"] is None
    page = s3.read_bytes(client, s3.join(exported.uri, "index.html")).decode()
    # one self-contained page: the plot is inside it, byte for byte the artifact's
    embedded = page.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    assert base64.b64decode(embedded) == s3.read_bytes(client, s3.join(exported.uri, "residuals.png"))
    # the validation split is a named frame: the export task (another client session) still finds it
    valid = f"export_regression_valid_{naming.run_hash(cfg.name, 'export-regression')}"
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
    exported = artifacts.export(h2o_cloud, ensemble, cfg, client, run_id="export-ensemble",
                                logical_date=datetime(2013, 2, 4, tzinfo=UTC))
    keys = _keys(client, exported.uri)
    assert "model.zip" in keys and "metadata.json" in keys and not any(k.endswith(".java") for k in keys)
    meta = registry.load_metadata(client, cfg.registry_uri, exported.version)
    assert meta["pojo"] is None and "stackedensemble" in meta["pojo_unavailable_reason"]
    assert meta["algo"] == "stackedensemble" and "index.html" in meta["report"]
