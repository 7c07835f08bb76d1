"""The offline scorer against H2O's own PredictCsv, on a real MOJO trained in a real cloud."""

from __future__ import annotations

import filecmp

import numpy as np
import pandas as pd
import pytest

from h2o_tasks import scoring

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mojo(h2o_cloud, tmp_path_factory):
    """(genmodel jar, MOJO zip, a 3,000-row scoring frame) of a GBM with a numeric-looking categorical."""
    h2o = h2o_cloud
    rng = np.random.default_rng(7)
    n = 3000
    df = pd.DataFrame({"code": rng.choice(["1545", "77", "9"], n), "x": rng.normal(size=n),
                       "y": rng.integers(0, 2, n).astype(str)})
    df.loc[df["code"] == "1545", "y"] = "1"
    frame = h2o.H2OFrame(df, column_types={"code": "enum", "x": "real", "y": "enum"})
    from h2o.estimators import H2OGradientBoostingEstimator

    gbm = H2OGradientBoostingEstimator(ntrees=5, max_depth=3, seed=1)
    gbm.train(x=["code", "x"], y="y", training_frame=frame)
    work = tmp_path_factory.mktemp("mojo")
    path = gbm.download_mojo(path=str(work), get_genmodel_jar=True, genmodel_name="h2o-genmodel.jar")
    try:
        yield work / "h2o-genmodel.jar", work / path.rsplit("/", 1)[-1], df.drop(columns="y")
    finally:
        h2o.remove(gbm)
        h2o.remove(frame)


@pytest.mark.parametrize("launcher", [True, False], ids=["one-jvm-threads", "one-jvm-per-chunk"])
def test_chunked_scoring_is_byte_identical_to_predictcsv(mojo, tmp_path, monkeypatch, launcher):
    jar, model, df = mojo
    df.to_csv(tmp_path / "in.csv", index=False)
    scoring.genmodel_predict(jar, model, tmp_path / "in.csv", tmp_path / "single.csv")
    monkeypatch.setattr(scoring, "MIN_ROWS_PER_JVM", 500)
    if not launcher:
        monkeypatch.setattr(scoring, "launcher_classpath", lambda *a, **k: None)
    used = scoring.predict_csv(jar, model, tmp_path / "in.csv", tmp_path / "chunked.csv", workers=3)
    assert used == 3
    assert filecmp.cmp(tmp_path / "single.csv", tmp_path / "chunked.csv", shallow=False)
    assert len(pd.read_csv(tmp_path / "chunked.csv")) == len(df)


def test_numeric_categorical_with_nas_scores_like_its_text(mojo, tmp_path):
    jar, model, df = mojo
    floats = df.assign(code=df["code"].astype(float))
    floats.loc[:9, "code"] = np.nan  # NAs make pandas keep the column as float64: 1545.0
    features = [{"name": "code", "type": "enum", "domain": ["1545", "77", "9"]}, {"name": "x", "type": "real"}]
    feats, unseen = scoring.scoring_input(floats, features, "v")
    assert unseen == {}
    scoring.predict_chunks(jar, model, scoring.write_chunks(feats, ["code", "x"], tmp_path, 1), tmp_path / "fixed.csv")
    text = df.assign(code=df["code"].where(floats["code"].notna(), None))
    text.to_csv(tmp_path / "text.csv", index=False, na_rep="")
    scoring.genmodel_predict(jar, model, tmp_path / "text.csv", tmp_path / "expected.csv")
    assert filecmp.cmp(tmp_path / "fixed.csv", tmp_path / "expected.csv", shallow=False)
