"""The training input's contract on a real H2O cloud (h2o_tasks.frames.prepare): a declared numeric
column whose values are not numbers, a target missing on every row, and a label with a number of
classes its problem cannot have, each refused with the field, the value and the fix. And what the
prepared frame reports of itself."""

from __future__ import annotations

import gc
import random
from typing import Any

import pytest

from h2o_tasks import frames
from h2o_tasks.config import PipelineConfig
from h2o_tasks.errors import InputDataError
from tests.fixtures.synthetic import FEATURES, linear_frame, linear_pipeline

pytestmark = pytest.mark.integration
ROWS = 200


def cfg(features: list[dict[str, str]], target: dict[str, Any]) -> PipelineConfig:
    return linear_pipeline(target, name="contract", features=features)


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


def _refused_labels(h2o, x: list, labels: list, problem: str) -> tuple[Any, InputDataError]:
    """A frame of x and a label c, refused as the training input of a ``problem`` on c: it and the error."""
    fr = frame(h2o, {"x": ("real", x), "c": ("enum", labels)})
    with pytest.raises(InputDataError) as err:
        frames.prepare(fr, cfg([{"name": "x", "type": "real"}], {"column": "c", "problem": problem}), "window")
    assert (err.value.field, err.value.value) == ("target.problem", problem)
    return fr, err.value


def test_three_classes_for_a_binary_target_suggest_multiclass(h2o_cloud, values):
    _, err = _refused_labels(h2o_cloud, values["x"], values["three"], "binary")
    assert "the label c has 3 classes in window (a, b, c...)" in str(err)
    assert "set problem: multiclass" in err.fix


def test_two_classes_for_a_multiclass_target_suggest_binary(h2o_cloud, values):
    fr, err = _refused_labels(h2o_cloud, values["x"], values["two"], "multiclass")
    assert "the label c has only 2 classes in window (p, q)" in str(err)
    assert "set problem: binary" in err.fix
    # the same frame is a valid binary input, and three classes a valid multiclass one
    assert frames.prepare(fr, cfg([{"name": "x", "type": "real"}], {"column": "c", "problem": "binary"})).class_counts
    three = frame(h2o_cloud, {"x": ("real", values["x"]), "c": ("enum", values["three"])})
    counts = frames.prepare(three, cfg([{"name": "x", "type": "real"}], {"column": "c", "problem": "multiclass"}))
    assert sorted(counts.class_counts) == ["a", "b", "c"] and sum(counts.class_counts.values()) == ROWS


@pytest.fixture(scope="module")
def synthetic(h2o_cloud):
    """2,000 rows: y = 3x + k/10 + (2 when c = 'b') + noise, some y missing."""
    return linear_frame(h2o_cloud, 2000, seed=7, label_missing_every=50, key="contract_synthetic")


def test_prepared_frame_to_dict_leaves_the_frame_in_the_cluster(h2o_cloud, synthetic):
    """``dataclasses.asdict`` deep-copied the H2OFrame: a TypeError for a frame still defined by an expression."""
    high = {"column": "y", "problem": "binary", "threshold": 1.5, "name": "high"}
    prepared = frames.prepare(synthetic, cfg(FEATURES, high), source="synthetic")
    frame_id = prepared.frame.frame_id
    assert prepared.to_dict() == {"rows_in": 2000, "rows_dropped_no_label": 40, "rows_out": 1960,
                                  "class_counts": prepared.class_counts}
    gc.collect()  # no copy of the frame's handle was made, so none can remove the cluster key when collected
    assert h2o_cloud.get_frame(frame_id).nrows == 1960
