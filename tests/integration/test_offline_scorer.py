"""The offline scorer against H2O's own PredictCsv, on real MOJOs trained in a real cloud."""

from __future__ import annotations

import filecmp

import numpy as np
import pandas as pd
import pytest

from h2o_tasks import mojo_csv, scoring

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def models(h2o_cloud, tmp_path_factory):
    """genmodel jar, MOJOs by kind and a 3,000-row scoring frame (a numeric-looking categorical, NAs)."""
    from h2o.estimators import H2OGeneralizedLinearEstimator, H2OGradientBoostingEstimator, H2OKMeansEstimator, H2ORandomForestEstimator

    h2o = h2o_cloud
    rng = np.random.default_rng(7)
    n = 3000
    df = pd.DataFrame({"code": rng.choice(["1545", "77", "9", "AA"], n), "x": rng.normal(size=n),
                       "y": rng.integers(0, 2, n).astype(str), "k": rng.choice(["a", "b", "c"], n)})
    df.loc[df["code"] == "1545", "y"] = "1"
    df.loc[rng.choice(n, 100), "x"] = np.nan
    frame = h2o.H2OFrame(df, column_types={"code": "enum", "x": "real", "y": "enum", "k": "enum"})
    trained = {"binomial": H2OGradientBoostingEstimator(ntrees=5, max_depth=3, seed=1),
               "multinomial": H2ORandomForestEstimator(ntrees=5, max_depth=4, seed=1),
               "regression": H2OGeneralizedLinearEstimator(family="gaussian"),
               "clustering": H2OKMeansEstimator(k=3, seed=1)}  # not on the direct path: PredictCsv per range
    targets = {"binomial": ("y", ["code", "x"]), "multinomial": ("k", ["code", "x"]), "regression": ("x", ["code", "k"]),
               "clustering": (None, ["code", "x"])}
    work = tmp_path_factory.mktemp("mojo")
    mojos = {}
    try:
        for kind, est in trained.items():
            y, x = targets[kind]
            est.train(x=x, y=y, training_frame=frame)
            path = est.download_mojo(path=str(work / kind), get_genmodel_jar=True, genmodel_name="h2o-genmodel.jar")
            mojos[kind] = work / kind / path.rsplit("/", 1)[-1]
        yield work / "binomial" / "h2o-genmodel.jar", mojos, df.drop(columns="y")
    finally:
        for est in trained.values():
            h2o.remove(est)
        h2o.remove(frame)


def _same_as_predictcsv(jar, mojo, src, tmp_path, workers=3) -> int:
    mojo_csv.genmodel_predict(jar, mojo, src, tmp_path / "single.csv")
    used = mojo_csv.predict_csv(jar, mojo, src, tmp_path / "parallel.csv", workers=workers)
    assert filecmp.cmp(tmp_path / "single.csv", tmp_path / "parallel.csv", shallow=False), \
        (tmp_path / "single.csv").read_text()[:300] + " != " + (tmp_path / "parallel.csv").read_text()[:300]
    return used


@pytest.mark.parametrize("kind", ["binomial", "multinomial", "regression", "clustering"])
@pytest.mark.parametrize("launcher", [True, False], ids=["threads", "jvm-per-chunk"])
def test_parallel_scoring_is_byte_identical_to_predictcsv(models, tmp_path, monkeypatch, launcher, kind):
    jar, mojos, df = models
    df.to_csv(tmp_path / "in.csv", index=False)
    monkeypatch.setattr(mojo_csv, "MIN_ROWS_PER_THREAD", 500)
    if not launcher:
        monkeypatch.setattr(mojo_csv, "launcher_classpath", lambda *a, **k: None)
    assert _same_as_predictcsv(jar, mojos[kind], tmp_path / "in.csv", tmp_path) == 3
    assert len(pd.read_csv(tmp_path / "parallel.csv")) == len(df)
    assert not [p for p in tmp_path.iterdir() if p.name not in {"in.csv", "single.csv", "parallel.csv"}]


@pytest.mark.parametrize("kind", ["binomial", "multinomial", "regression"])
def test_the_installed_h2o_jar_scores_as_the_models_own_genmodel_jar(models, tmp_path, monkeypatch, kind):
    """The offline engine scores with the pinned package's h2o.jar, never the registry's jar: same bytes out."""
    jar, mojos, df = models
    assert mojo_csv.genmodel_jar().name == "h2o.jar" and mojo_csv.genmodel_jar() != jar
    df.to_csv(tmp_path / "in.csv", index=False)
    monkeypatch.setattr(mojo_csv, "MIN_ROWS_PER_THREAD", 500)
    mojo_csv.genmodel_predict(jar, mojos[kind], tmp_path / "in.csv", tmp_path / "own.csv")
    mojo_csv.predict_csv(mojo_csv.genmodel_jar(), mojos[kind], tmp_path / "in.csv", tmp_path / "installed.csv",
                         workers=2)
    assert filecmp.cmp(tmp_path / "own.csv", tmp_path / "installed.csv", shallow=False)


def test_awkward_csv_text_scores_as_predictcsv_reads_it(models, tmp_path, monkeypatch):
    """Quotes, NA spellings, unseen levels, CRLF, short and long rows, spaces, an empty line, no final newline."""
    jar, mojos, _ = models
    rows = ['"code","x","k"', '"AA",0.5,"a"', '77,"1.5",b', '"a,b",2,c', '9,NA,a', "1545,N/A,b", "9,-,c",
            ",,", "ZZ,0.1,zz", ' 77, 0.25 ,a', "9", "1545,1,a,extra,cells", "", '"9",""', '""9"",3,a',
            "77,1e3,b", "9,-0.0,c"]
    text = "\r\n".join(rows[:1] + rows[1:] * 60)  # CRLF and no newline at the end
    (tmp_path / "in.csv").write_bytes(text.encode())
    monkeypatch.setattr(mojo_csv, "MIN_ROWS_PER_THREAD", 100)
    for kind in ("binomial", "regression"):
        assert _same_as_predictcsv(jar, mojos[kind], tmp_path / "in.csv", tmp_path) == 3


@pytest.mark.parametrize("rows", [
    ["code,x,k", "9,0.5,a", "", '""AA,0.5,a'],  # opencsv's flag from the line before the empty one: "AA, unseen
    ["code,x,k", '\\",,a', ',\\,b', '9,1,"c"'],  # escapes: every line through opencsv, state carried
    ["code,x,k", '77,0.5,"a"', '""9,1,b', "9,2,", '""9,3,c'],  # the flag after a quoted and an empty last cell
], ids=["after-empty-line", "escapes", "quoted-and-empty-ends"])
def test_lines_read_in_opencsv_state_score_as_predictcsv(models, tmp_path, monkeypatch, rows):
    jar, mojos, _ = models
    (tmp_path / "in.csv").write_text("\n".join(rows[:1] + rows[1:] * 400) + "\n")
    monkeypatch.setattr(mojo_csv, "MIN_ROWS_PER_THREAD", 100)
    assert _same_as_predictcsv(jar, mojos["binomial"], tmp_path / "in.csv", tmp_path) == 3


@pytest.mark.parametrize("kind", ["binomial", "clustering"])
def test_records_across_lines_fall_back_to_predictcsv(models, tmp_path, monkeypatch, caplog, kind):
    """A quoted cell holding a line end: no range can be cut safely, so the launcher hands the whole
    file to PredictCsv (which it reports) instead of its 3 ranges; the bytes are PredictCsv's."""
    import logging

    jar, mojos, _ = models
    assert mojo_csv.launcher_classpath(jar) is not None  # the fallback is the launcher's (javac is here)
    body = "".join(f'{c},{i / 7},"a\nb"\n' if i % 50 == 0 else f"{c},{i / 7},a\n"
                   for i, c in zip(range(1200), ["77", "9", "AA"] * 400, strict=False))
    (tmp_path / "in.csv").write_text("code,x,k\n" + body)
    monkeypatch.setattr(mojo_csv, "MIN_ROWS_PER_THREAD", 100)
    caplog.set_level(logging.INFO, logger="h2o_tasks.mojo_csv")
    _same_as_predictcsv(jar, mojos[kind], tmp_path / "in.csv", tmp_path)
    ways = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Offline scorer: ")]
    assert ways == ["Offline scorer: PredictCsv over the whole file"], ways


def test_a_bad_number_names_row_column_and_value_and_leaves_no_output(models, tmp_path, monkeypatch):
    jar, mojos, df = models
    bad = df.assign(x=df["x"].astype(object))
    bad.loc[2500, "x"] = "12,5"
    bad.to_csv(tmp_path / "in.csv", index=False)
    monkeypatch.setattr(mojo_csv, "MIN_ROWS_PER_THREAD", 500)
    with pytest.raises(RuntimeError, match=r"data row 2501 of .*in\.csv: Unable to parse value: 12,5, from column: x"):
        mojo_csv.predict_csv(jar, mojos["binomial"], tmp_path / "in.csv", tmp_path / "out.csv", workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_numeric_categorical_with_nas_scores_like_its_text(models, tmp_path):
    jar, mojos, df = models
    df = df[df["code"] != "AA"].reset_index(drop=True)
    floats = df.assign(code=df["code"].astype(float))
    floats.loc[:9, "code"] = np.nan  # NAs make pandas keep the column as float64: 1545.0
    features = [{"name": "code", "type": "enum", "domain": ["1545", "77", "9", "AA"]}, {"name": "x", "type": "real"}]
    feats, unseen = scoring.scoring_input(floats, features, "v")
    assert unseen == {}
    feats.to_csv(tmp_path / "fixed.csv", index=False, na_rep="")
    mojo_csv.predict_csv(jar, mojos["binomial"], tmp_path / "fixed.csv", tmp_path / "fixed.out.csv")
    text = df.assign(code=df["code"].where(floats["code"].notna(), None))
    text.to_csv(tmp_path / "text.csv", index=False, na_rep="")
    mojo_csv.genmodel_predict(jar, mojos["binomial"], tmp_path / "text.csv", tmp_path / "expected.csv")
    assert filecmp.cmp(tmp_path / "fixed.out.csv", tmp_path / "expected.csv", shallow=False)


TREE_MODELS = {  # kind: (algo, parameters, target)
    "gbm-binomial-deep": ("gbm", {"ntrees": 20, "max_depth": 8, "min_rows": 2}, "y"),
    "gbm-multinomial": ("gbm", {"ntrees": 8, "max_depth": 5}, "k"),
    "gbm-poisson": ("gbm", {"ntrees": 8, "max_depth": 5, "distribution": "poisson"}, "cnt"),
    "drf-binomial": ("drf", {"ntrees": 8, "max_depth": 12}, "y"),
    "drf-binomial-double-trees": ("drf", {"ntrees": 5, "max_depth": 6, "binomial_double_trees": True}, "y"),
    "drf-regression": ("drf", {"ntrees": 8, "max_depth": 10}, "z"),
}


@pytest.fixture(scope="module")
def tree_models(h2o_cloud, tmp_path_factory):
    """GBM and DRF MOJOs over a 120-level categorical (bitsets with offsets), an integer column (rows equal
    to split values), NAs on both sides of splits, and a scoring CSV with levels the models never saw."""
    from h2o.estimators import H2OGradientBoostingEstimator, H2ORandomForestEstimator

    h2o = h2o_cloud
    rng = np.random.default_rng(11)
    n = 4000
    levels = [f"L{i}" for i in range(120)]
    df = pd.DataFrame({"h": rng.choice(levels, n), "code": rng.choice(["1545", "77", "9", "AA"], n),
                       "x": rng.normal(size=n), "z": rng.normal(size=n), "i": rng.integers(0, 12, n)})
    score = (df["h"].str[1:].astype(int) % 7) / 3 + df["x"] + (df["code"] == "77") + (df["i"] > 6)
    df["y"] = (score + rng.normal(scale=0.5, size=n) > 1).astype(int).astype(str)
    df["k"] = pd.cut(score, [-np.inf, 0.5, 1.5, np.inf], labels=["lo", "mid", "hi"]).astype(str)
    df["cnt"] = rng.poisson(np.exp(score.clip(-2, 2) / 2))
    df.loc[rng.choice(n, 300), "x"] = np.nan
    df.loc[rng.choice(n, 200), "h"] = None
    types = {"h": "enum", "code": "enum", "x": "real", "z": "real", "i": "int", "y": "enum", "k": "enum", "cnt": "int"}
    work = tmp_path_factory.mktemp("tree-mojos")
    df.to_csv(work / "train.csv", index=False)  # missing levels as empty cells: NA in H2O (not the text "nan")
    frame = h2o.upload_file(str(work / "train.csv"), col_types=types)
    assert int(frame["h"].isna().sum()) == int(df["h"].isna().sum()) > 150 and int(frame["x"].isna().sum()) > 250  # NAs reach the trees
    estimators, mojos = [], {}
    try:
        for kind, (algo, params, target) in TREE_MODELS.items():
            cls = H2OGradientBoostingEstimator if algo == "gbm" else H2ORandomForestEstimator
            est = cls(seed=1, **params)
            estimators.append(est)
            features = [c for c in ("h", "code", "x", "z", "i") if c != target]
            est.train(x=features, y=target, training_frame=frame)
            path = est.download_mojo(path=str(work / kind), get_genmodel_jar=True, genmodel_name="h2o-genmodel.jar")
            mojos[kind] = work / kind / path.rsplit("/", 1)[-1]
        scoring_df = df.drop(columns=["y", "k", "cnt"])
        scoring_df.loc[rng.choice(n, 100), "h"] = "never-seen"
        yield work / "gbm-multinomial" / "h2o-genmodel.jar", mojos, scoring_df
    finally:
        for est in estimators:
            h2o.remove(est)
        h2o.remove(frame)


@pytest.mark.parametrize("kind", list(TREE_MODELS))
def test_decoded_trees_score_as_h2o_walks_them(tree_models, tmp_path, monkeypatch, caplog, kind):
    """GBM and DRF go through the trees decoded once: the same bytes as PredictCsv."""
    import logging

    jar, mojos, df = tree_models
    df.to_csv(tmp_path / "in.csv", index=False)
    monkeypatch.setattr(mojo_csv, "MIN_ROWS_PER_THREAD", 500)
    caplog.set_level(logging.INFO, logger="h2o_tasks.mojo_csv")
    assert _same_as_predictcsv(jar, mojos[kind], tmp_path / "in.csv", tmp_path, workers=2) == 2
    import re

    found = re.search(r"2 range\(s\), \d+ decoded trees \(nodes: (\d+) numeric, (\d+) bitset, (\d+) offset bitset",
                      caplog.text)
    assert found, caplog.text
    numeric, _bitset, offset = map(int, found.groups())
    assert numeric > 0 and offset > 0  # splits on numbers and on the 120-level column (fill3 bitsets)


def test_trees_the_launcher_cannot_decode_are_scored_by_the_models_own_score0(h2o_cloud, tmp_path, monkeypatch,
                                                                                 caplog):
    """A GBM whose tree roots split a 60-level categorical with offset bitsets; in one tree the root's
    operator flag is rewritten to the retired 4-byte form, which H2O's own scorer still reads as the
    same bitset and the launcher's decoder refuses. The launcher then scores every row with the
    model's ``score0``, says so, and its bytes are PredictCsv's."""
    import logging
    import zipfile

    from h2o.estimators import H2OGradientBoostingEstimator

    h2o = h2o_cloud
    rng = np.random.default_rng(3)
    n = 2000
    levels = [f"L{i:02d}" for i in range(60)]
    df = pd.DataFrame({"c": rng.choice(levels, n), "x": rng.normal(size=n)})
    df["y"] = np.where(df["c"].isin(levels[::3]) ^ (rng.random(n) < 0.1), "1", "0")
    frame = h2o.H2OFrame(df, column_types={"c": "enum", "x": "real", "y": "enum"})
    est = H2OGradientBoostingEstimator(ntrees=3, max_depth=2, seed=1)
    try:
        est.train(x=["c"], y="y", training_frame=frame)
        path = est.download_mojo(path=str(tmp_path / "m"), get_genmodel_jar=True, genmodel_name="h2o-genmodel.jar")
    finally:
        h2o.remove(est)
        h2o.remove(frame)
    jar, mojo = tmp_path / "m" / "h2o-genmodel.jar", tmp_path / "m" / path.rsplit("/", 1)[-1]
    df.drop(columns="y").to_csv(tmp_path / "in.csv", index=False)
    monkeypatch.setattr(mojo_csv, "MIN_ROWS_PER_THREAD", 500)
    caplog.set_level(logging.INFO, logger="h2o_tasks.mojo_csv")

    def ways():
        found = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Offline scorer: ")]
        caplog.clear()
        return found

    _same_as_predictcsv(jar, mojo, tmp_path / "in.csv", tmp_path)
    decoded = ways()
    assert len(decoded) == 1 and "3 decoded trees" in decoded[0] and " 0 offset bitset" not in decoded[0], decoded

    crafted = tmp_path / "crafted.zip"
    with zipfile.ZipFile(mojo) as src, zipfile.ZipFile(crafted, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "trees/t00_001.bin":
                assert data[0] & 12 == 12, "the root is not an offset-bitset split"  # ScoreTree2: 0 <, 8 small, 12 offset
                data = bytes([data[0] & ~12 | 4]) + data[1:]
            dst.writestr(item, data)
    assert _same_as_predictcsv(jar, crafted, tmp_path / "in.csv", tmp_path) == 3
    assert ways() == ["Offline scorer: 3 range(s), the model's score0"]
