"""Fixes from the engine review, against a real S3 API (moto server) and a real H2O cloud."""

from __future__ import annotations

import gc
import random
from pathlib import Path
from typing import Any

import pytest

from h2o_tasks import frames, s3
from h2o_tasks.config import PipelineConfig, load, parse, to_dict

pytestmark = pytest.mark.integration


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
