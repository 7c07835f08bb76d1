"""Which trained model is the best, on a real H2O cloud, when the metric is lower-is-better: the
weaker model is trained first, so neither "the first" nor "the highest" is the right answer."""

from __future__ import annotations

import pytest

from h2o_tasks import frames, train
from h2o_tasks.config import METRICS_HIGHER_IS_BETTER
from tests.fixtures.synthetic import linear_frame, linear_pipeline

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def synthetic(h2o_cloud):
    """1,500 rows: y = 3x + k/10 + (2 when c = 'b') + noise; linear, so a GLM fits it well."""
    return linear_frame(h2o_cloud, 1500, seed=11)


@pytest.mark.parametrize(("problem", "metric", "target", "weak", "strong"), [
    ("regression", "rmse", {"column": "y", "problem": "regression"},
     {"algo": "gbm", "params": {"ntrees": 2, "max_depth": 1, "learn_rate": 0.1}}, {"algo": "glm"}),
    ("binary", "logloss", {"column": "y", "problem": "binary", "threshold": 2.5, "name": "high"},
     {"algo": "glm", "params": {"lambda_": 1.0, "alpha": 0.0}}, {"algo": "gbm", "params": {"ntrees": 30, "max_depth": 3}}),
], ids=["regression-rmse", "binary-logloss"])
def test_the_best_model_has_the_lowest_value_of_a_lower_is_better_metric(h2o_cloud, synthetic, problem, metric,
                                                                        target, weak, strong):
    assert METRICS_HIGHER_IS_BETTER[metric] is False
    cfg = linear_pipeline(target, metric, name=f"best-{problem}",
                          training={"seed": 7, "validation_split": 0.25, "algorithms": [weak, strong]})
    prepared = frames.prepare(synthetic, cfg, "synthetic")
    result = train.train(prepared.frame, None, cfg, run_id=f"best-{problem}")
    values = {m.algo: m.metrics[metric] for m in result.models}
    assert [m.algo for m in result.models] == [weak["algo"], strong["algo"]]
    assert values[weak["algo"]] > values[strong["algo"]] * 1.2, values  # clearly apart: the choice matters
    assert (result.best_algo, result.metric) == (strong["algo"], metric)
    assert result.best_metric_value == min(values.values()) == values[strong["algo"]]
    assert result.best_model_id == result.models[1].model_id and result.leaderboard == values
