"""Fixes from the engine review that need no services."""

from __future__ import annotations

import json
import math

import pytest

from h2o_tasks.config import QualityGateConfig
from h2o_tasks.frames import PreparedFrame
from h2o_tasks.registry import ChampionPointer, gate


class _Uncopyable:
    """Stands for an H2O frame: a handle on a remote object that must never be copied."""

    def __deepcopy__(self, memo):
        raise AssertionError("the frame was deep-copied")


def test_prepared_frame_to_dict_does_not_copy_the_frame():
    counts = {"0": 7, "1": 3}
    prepared = PreparedFrame(_Uncopyable(), rows_in=12, rows_dropped_no_label=2, rows_out=10, class_counts=counts)
    out = prepared.to_dict()
    assert out == {"rows_in": 12, "rows_dropped_no_label": 2, "rows_out": 10, "class_counts": {"0": 7, "1": 3}}
    assert out["class_counts"] is not counts  # the caller may change it freely
    json.dumps(out)


def _champ(value, metric="auc"):
    return ChampionPointer("v1", metric, value, "2013-01-01T00:00:00+00:00")


@pytest.mark.parametrize("bad", [math.nan, None, math.inf, -math.inf, "0.9"])
@pytest.mark.parametrize(("metric", "threshold"), [("auc", 0.7), ("auc", 0.0), ("rmse", 0.0), ("rmse", 10.0)])
def test_gate_never_promotes_a_metric_that_is_not_a_number(bad, metric, threshold):
    cfg = QualityGateConfig(metric, threshold, 0.01)
    for champion in (None, _champ(0.8, metric)):
        decision = gate(cfg, {metric: bad}, champion)
        assert decision.promote is False, decision.reason
        assert metric in decision.reason and "not a number" in decision.reason


@pytest.mark.parametrize("bad", [math.nan, None])
@pytest.mark.parametrize(("metric", "value"), [("auc", 0.9), ("rmse", 1.0)])
def test_gate_never_promotes_against_a_champion_without_a_value(bad, metric, value):
    decision = gate(QualityGateConfig(metric, 0.0, 0.01), {metric: value}, _champ(bad, metric))
    assert decision.promote is False, decision.reason
    assert "champion v1" in decision.reason and "registry rollback" in decision.reason


def test_gate_still_promotes_a_valid_metric():
    assert gate(QualityGateConfig("rmse", 0.0, 0.0), {"rmse": 3.0}, None).promote
    assert gate(QualityGateConfig("auc", 0.7, 0.01), {"auc": 0.8}, _champ(0.8)).promote


@pytest.mark.parametrize("bad", [math.nan, None])
def test_promotion_refuses_a_value_that_is_not_a_number(bad):
    from h2o_tasks.registry import Candidate, decide

    decision = decide(QualityGateConfig("auc", 0.0, 0.0), Candidate("v2", {"auc": bad}, "2013-02-01", "2013-02-08", ""),
                      None)
    assert decision.promote is False and "not a number" in decision.reason


class _Model:
    model_id, algo = "m1", "gbm"

    def varimp(self):
        return []


def _regression_cfg():
    from pathlib import Path

    from h2o_tasks.config import load, parse, to_dict

    raw = to_dict(load(Path(__file__).resolve().parents[2] / "dags" / "pipelines" / "arrival_delay.yaml"))
    raw["target"] = {"column": "arr_delay", "problem": "regression"}
    raw["training"]["metric"] = raw["quality_gate"]["metric"] = "rmse"
    return parse(raw)


def test_residuals_png(tmp_path):
    from h2o_tasks.report import residuals_png

    points = [(float(i), i + (-1) ** i * 0.5) for i in range(200)]
    assert residuals_png(points, tmp_path / "residuals.png", "t")
    assert (tmp_path / "residuals.png").read_bytes()[:4] == b"\x89PNG"
    assert not residuals_png([], tmp_path / "none.png", "t")


def test_regression_report_without_rows_says_why(tmp_path):
    from h2o_tasks import report

    files = report.write(tmp_path, _Model(), None, _regression_cfg(), {"rmse": 1.0}, "v1", frame=None)
    assert files == ["index.html"]
    assert "No residuals plot" in (tmp_path / "index.html").read_text()
