"""Prediction column names for any class label, a classifier's per-class figures, and multiclass rules."""

from __future__ import annotations

import pytest

from h2o_tasks import config
from h2o_tasks.errors import ConfigError
from h2o_tasks.report import Confusion
from h2o_tasks.scoring import output_names, prediction_types
from tests.fixtures.pipelines import DROP, data, example, whole


@pytest.mark.parametrize(("header", "domain", "taken", "expected"), [
    # H2O's own names that already are identifiers stay (the binary example's p0/p1 too)
    (["predict", "p0", "p1"], ["0", "1"], [], ["predict", "p0", "p1"]),
    (["predict", "EWR", "JFK", "LGA"], ["EWR", "JFK", "LGA"], ["flight"], ["predict", "EWR", "JFK", "LGA"]),
    # labels that are not: from the class label, every other character as _
    (["predict", "9E", "on-time", "a b", "p-2", "1.5"], ["9E", "on-time", "a b", "-2", "1.5"], [],
     ["predict", "p_9E", "p_on_time", "p_a_b", "p__2", "p_1_5"]),
    # unique regardless of case (Hive), and apart from the id columns
    (["predict", "B", "b"], ["B", "b"], [], ["predict", "B", "b_2"]),
    (["predict", "origin", "x"], ["origin", "x"], ["Origin"], ["predict", "origin_2", "x"]),
    (["predict", "a.b", "a_b"], ["a.b", "a_b"], [], ["predict", "p_a_b", "a_b"]),
    (["predict", "a_b", "a.b"], ["a_b", "a.b"], [], ["predict", "a_b", "p_a_b"]),
    (["predict"], None, ["predict"], ["predict_2"]),
    # no domain recorded: from the header itself
    (["predict", "é", "x y"], None, [], ["predict", "p__", "p_x_y"]),
])
def test_output_names_are_unique_sql_identifiers(header, domain, taken, expected):
    import re

    names = output_names(header, domain, taken)
    assert names == expected
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in names)
    assert len({n.lower() for n in [*names, *map(str.lower, taken)]}) == len(names) + len(taken)


def test_the_predicted_class_is_text_and_probabilities_are_doubles():
    meta = {"target": {"problem": "multiclass"}}
    assert prediction_types(meta, ["predict", "p_9E", "UA"]) == [("predict", "STRING"), ("p_9E", "DOUBLE"),
                                                                ("UA", "DOUBLE")]
    assert prediction_types({"target": {"problem": "regression"}}, ["predict"]) == [("predict", "DOUBLE")]


def test_per_class_figures_from_the_confusion_matrix():
    c = Confusion(["a", "b", "c"], [[5, 1, 0], [2, 6, 2], [0, 0, 0]])
    rows = {r["class"]: r for r in c.per_class()}
    assert rows["a"]["support"] == 6 and rows["a"]["precision"] == 5 / 7 and rows["a"]["recall"] == 5 / 6
    assert rows["b"]["precision"] == 6 / 7 and rows["b"]["recall"] == 6 / 10
    assert rows["c"]["support"] == 0 and rows["c"]["recall"] is None and rows["c"]["precision"] == 0.0
    assert rows["c"]["f1"] is None
    assert abs(rows["a"]["f1"] - 2 * (5 / 7) * (5 / 6) / (5 / 7 + 5 / 6)) < 1e-12


def _multiclass(**training) -> dict:
    return data(target=whole({"column": "carrier", "problem": "multiclass"}),
                features=[f for f in example()["features"] if f["name"] != "carrier"],
                training={"metric": DROP, **training}, quality_gate=DROP)


def test_multiclass_defaults_to_logloss_and_refuses_binary_only_settings():
    cfg = config.parse(_multiclass())
    assert cfg.training.metric == cfg.quality_gate.metric == "logloss"
    assert config.parse(_multiclass(metric="mean_per_class_error")).quality_gate.metric == "mean_per_class_error"
    for changes, field in (({"metric": "aucpr"}, "training.metric"), ({"metric": "r2"}, "training.metric")):
        with pytest.raises(ConfigError) as err:
            config.parse(_multiclass(**changes))
        assert err.value.field == field and "problem: multiclass" in str(err.value)
    raw = _multiclass()
    raw["target"]["threshold"] = 3
    with pytest.raises(ConfigError, match=r"target\.threshold"):
        config.parse(raw)
    raw = _multiclass()
    raw["quality_gate"] = {"metric": "mean_per_class_error", "threshold": 1.2}
    with pytest.raises(ConfigError, match="never pass"):
        config.parse(raw)
