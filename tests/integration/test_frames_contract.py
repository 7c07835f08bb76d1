"""The training input's contract on a real H2O cloud (h2o_tasks.frames.prepare): a declared numeric
column whose values are not numbers, a target missing on every row, and a label with a number of
classes its problem cannot have, each refused with the field, the value and the fix."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from h2o_tasks import frames
from h2o_tasks.config import PipelineConfig, load, parse, to_dict
from h2o_tasks.errors import InputDataError

pytestmark = pytest.mark.integration
PIPELINE = Path(__file__).resolve().parents[2] / "dags" / "pipelines" / "arrival_delay.yaml"
ROWS = 200


def cfg(features: list[dict[str, str]], target: dict[str, Any]) -> PipelineConfig:
    raw = to_dict(load(PIPELINE))
    raw["name"] = "contract"
    raw["features"] = features
    raw["target"] = target
    metric = {"binary": "auc", "multiclass": "logloss", "regression": "rmse"}[target["problem"]]
    raw["training"]["metric"] = metric
    raw["quality_gate"] = {"metric": metric, "threshold": 0.0, "max_regression": 0.0}
    return parse(raw)


def frame(h2o, columns: dict[str, tuple[str, list]]):
    names = list(columns)
    rows = [list(r) for r in zip(*(values for _, values in columns.values()), strict=True)]
    return h2o.H2OFrame(rows, column_names=names, column_types=[t for t, _ in columns.values()])


@pytest.fixture(scope="module")
def values():
    rng = random.Random(3)
    return {"x": [rng.random() for _ in range(ROWS)], "y": [rng.gauss(0, 1) for _ in range(ROWS)],
            "three": [rng.choice("abc") for _ in range(ROWS)], "two": [rng.choice("pq") for _ in range(ROWS)]}


REGRESSION = {"column": "y", "problem": "regression"}


@pytest.mark.parametrize("parsed_as", ["enum", "string"])
def test_a_declared_number_that_is_not_one_is_refused_naming_the_field(h2o_cloud, values, parsed_as):
    text = [str(i) for i in range(ROWS)]
    text[7], text[100] = "seven", "n/a"
    fr = frame(h2o_cloud, {"x": ("real", values["x"]), "k": (parsed_as, text), "y": ("real", values["y"])})
    with pytest.raises(InputDataError) as err:
        frames.prepare(fr, cfg([{"name": "x", "type": "real"}, {"name": "k", "type": "int"}], REGRESSION), "window")
    assert (err.value.field, err.value.value) == ("features[1].type", "k")
    assert f"is declared int but 2 value(s) are not numbers (H2O parsed the column as {parsed_as})" in str(err.value)
    assert "declare it as enum" in err.value.fix
    # the same text with numbers only is converted, not refused
    clean = frame(h2o_cloud, {"x": ("real", values["x"]), "k": (parsed_as, [str(i) for i in range(ROWS)]),
                              "y": ("real", values["y"])})
    prepared = frames.prepare(clean, cfg([{"name": "x", "type": "real"}, {"name": "k", "type": "int"}], REGRESSION))
    assert prepared.frame.types["k"] == "int" and prepared.frame["k"].sum() == sum(range(ROWS))


@pytest.mark.parametrize("target", [REGRESSION, {"column": "y", "problem": "binary", "threshold": 0.5, "name": "high"}],
                         ids=["regression", "binary-threshold"])
def test_a_target_missing_on_every_row_is_refused(h2o_cloud, values, target):
    fr = frame(h2o_cloud, {"x": ("real", values["x"]), "y": ("real", [None] * ROWS)})
    with pytest.raises(InputDataError) as err:
        frames.prepare(fr, cfg([{"name": "x", "type": "real"}], target), "the window 2013-01-28..2013-02-04")
    assert (err.value.field, err.value.value) == ("target.column", "y")
    assert f"is missing on all {ROWS} rows of the window 2013-01-28..2013-02-04" in str(err.value)


def test_three_classes_for_a_binary_target_suggest_multiclass(h2o_cloud, values):
    fr = frame(h2o_cloud, {"x": ("real", values["x"]), "c": ("enum", values["three"])})
    with pytest.raises(InputDataError) as err:
        frames.prepare(fr, cfg([{"name": "x", "type": "real"}], {"column": "c", "problem": "binary"}), "window")
    assert (err.value.field, err.value.value) == ("target.problem", "binary")
    assert "the label c has 3 classes in window (a, b, c...)" in str(err.value)
    assert "set problem: multiclass" in err.value.fix


def test_two_classes_for_a_multiclass_target_suggest_binary(h2o_cloud, values):
    fr = frame(h2o_cloud, {"x": ("real", values["x"]), "c": ("enum", values["two"])})
    with pytest.raises(InputDataError) as err:
        frames.prepare(fr, cfg([{"name": "x", "type": "real"}], {"column": "c", "problem": "multiclass"}), "window")
    assert (err.value.field, err.value.value) == ("target.problem", "multiclass")
    assert "the label c has only 2 classes in window (p, q)" in str(err.value)
    assert "set problem: binary" in err.value.fix
    # the same frame is a valid binary input, and three classes a valid multiclass one
    assert frames.prepare(fr, cfg([{"name": "x", "type": "real"}], {"column": "c", "problem": "binary"})).class_counts
    three = frame(h2o_cloud, {"x": ("real", values["x"]), "c": ("enum", values["three"])})
    counts = frames.prepare(three, cfg([{"name": "x", "type": "real"}], {"column": "c", "problem": "multiclass"}))
    assert sorted(counts.class_counts) == ["a", "b", "c"] and sum(counts.class_counts.values()) == ROWS
