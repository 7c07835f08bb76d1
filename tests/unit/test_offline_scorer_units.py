"""The offline scorer's pure parts: categorical text, the scoring input, CSV chunking, the launcher source."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from h2o_tasks import mojo_csv, scoring
from h2o_tasks.errors import InputDataError

FEATURES = [{"name": "flight", "type": "enum", "domain": ["1545", "77"]},
            {"name": "distance", "type": "real", "domain": None}]


def test_numeric_looking_categorical_with_nas_is_written_without_dot_zero():
    col = pd.Series([1545.0, math.nan, 77.0])
    text = scoring.categorical_text(col)
    assert list(text.astype(object).where(text.notna(), None)) == ["1545", None, "77"]
    csv = pd.DataFrame({"flight": text, "n": [1, 2, 3]}).to_csv(index=False, na_rep="")
    assert csv == "flight,n\n1545,1\n,2\n77,3\n"


def test_non_whole_floats_and_strings_are_left_alone():
    frac = pd.Series([1.5, math.nan])
    assert scoring.categorical_text(frac) is frac
    text = pd.Series(["AA", None])
    assert scoring.categorical_text(text) is text


def test_scoring_input_keeps_model_columns_and_counts_unseen_levels():
    df = pd.DataFrame({"flight": [1545.0, math.nan, 99.0], "distance": [1.0, 2.0, 3.0], "extra": [1, 2, 3]})
    feats, unseen = scoring.scoring_input(df, FEATURES, "v1")
    assert list(feats.columns) == ["flight", "distance"]
    assert unseen == {"flight": 1}  # 99 only: 1545.0 is the level 1545, NA is not a level
    assert df["flight"].dtype == "float64"  # the caller's frame (ids come from it) is unchanged


def test_scoring_input_missing_feature_names_it():
    with pytest.raises(InputDataError, match="distance"):
        scoring.scoring_input(pd.DataFrame({"flight": ["77"]}), FEATURES, "v1")


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_split_csv_chunks_join_back_to_the_input(tmp_path, parts):
    rows = [f"{i},{'x' * (i % 13)},{i * 0.5}\n" for i in range(1000)]
    src = tmp_path / "in.csv"
    src.write_text("a,b,c\n" + "".join(rows))
    chunks = mojo_csv.split_csv(src, parts, tmp_path)
    assert 1 <= len(chunks) <= parts
    texts = [c.read_text() for c in chunks]
    assert all(t.startswith("a,b,c\n") for t in texts)
    assert "".join(t.removeprefix("a,b,c\n") for t in texts) == "".join(rows)


def test_default_workers_is_positive():
    assert mojo_csv.default_workers() >= 1


def test_launcher_source_ships_with_the_package():
    assert "public class ParallelPredictCsv" in mojo_csv.launcher_source()
