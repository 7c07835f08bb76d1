"""The quality gate: threshold, direction of the metric, margin against the champion."""

import pytest

from h2o_tasks.config import QualityGateConfig
from h2o_tasks.registry import ChampionPointer, gate


def champ(value, metric="auc"):
    return ChampionPointer("v1", metric, value, "2013-01-01T00:00:00+00:00")


@pytest.mark.parametrize(
    ("cfg", "metrics", "champion", "promote"),
    [
        (QualityGateConfig("auc", 0.7, 0.01), {"auc": 0.69}, None, False),  # under the threshold
        (QualityGateConfig("auc", 0.7, 0.01), {"auc": 0.75}, None, True),  # first model
        (QualityGateConfig("auc", 0.7, 0.01), {"auc": 0.795}, champ(0.80), True),  # within the margin
        (QualityGateConfig("auc", 0.7, 0.01), {"auc": 0.78}, champ(0.80), False),  # worse by more
        (QualityGateConfig("logloss", 0.5, 0.0), {"logloss": 0.40}, champ(0.45, "logloss"), True),  # lower is better
        (QualityGateConfig("logloss", 0.5, 0.0), {"logloss": 0.46}, champ(0.45, "logloss"), False),
        (QualityGateConfig("logloss", 0.5, 0.0), {"logloss": 0.60}, None, False),  # over the threshold
        (QualityGateConfig("rmse", 0.0, 0.0), {"auc": 0.9}, None, False),  # metric not computed
    ],
)
def test_gate(cfg, metrics, champion, promote):
    decision = gate(cfg, metrics, champion)
    assert decision.promote is promote, decision.reason
    assert cfg.metric in decision.reason
