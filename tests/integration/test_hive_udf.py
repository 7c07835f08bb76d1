"""The Hive UDF ``h2o_predict`` in a real HiveServer2 (Spark's Thrift server) on the seeded flights, against
H2O's own PredictCsv on the same rows: binomial, multinomial and regression MOJOs trained on a real
cloud; one jar for every model (a retrained model is a new path, not a new jar)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from h2o_tasks import hive_udf, mojo_csv

pytestmark = pytest.mark.integration

DAY = "2013-02-04"
FEATURES = {"month": "int", "hour": "int", "dep_delay": "real", "carrier": "enum", "origin": "enum", "dest": "enum",
            "distance": "real", "flight": "enum"}  # flight: a categorical held in an INT column


@pytest.fixture(scope="module")
def mojos(h2o_cloud, flights_parquet_dir, tmp_path_factory):
    """MOJOs of a binomial GBM, a multinomial GLM and a regression DRF, trained on three days of flights."""
    from h2o.estimators import H2OGeneralizedLinearEstimator, H2OGradientBoostingEstimator, H2ORandomForestEstimator

    df = pd.concat([pd.read_parquet(flights_parquet_dir / "flights" / f"dt=2013-02-0{d}") for d in (1, 2, 3)])
    df["delayed"] = (df["arr_delay"] > 15).astype(int).astype(str)
    types = {f: ("enum" if t == "enum" else "real") for f, t in FEATURES.items()}
    frame = h2o_cloud.H2OFrame(df[[*FEATURES, "delayed", "air_time"]],
                               column_types={**types, "delayed": "enum", "air_time": "real"})
    x = [f for f in FEATURES if f != "origin"]
    models = {"binomial": (H2OGradientBoostingEstimator(ntrees=10, max_depth=4, seed=1), list(FEATURES), "delayed"),
              "multinomial": (H2OGeneralizedLinearEstimator(family="multinomial", lambda_search=False), x, "origin"),
              "regression": (H2ORandomForestEstimator(ntrees=8, max_depth=8, seed=1), list(FEATURES), "air_time")}
    work = tmp_path_factory.mktemp("udf-mojos")
    out = {}
    try:
        for kind, (est, features, y) in models.items():
            est.train(x=features, y=y, training_frame=frame[~frame[y].isna(), :])
            path = est.download_mojo(path=str(work / kind), get_genmodel_jar=True, genmodel_name="h2o-genmodel.jar")
            out[kind] = (work / kind / path.rsplit("/", 1)[-1], work / kind / "h2o-genmodel.jar", features)
        yield out, _levels(df)
    finally:
        for est, _, _ in models.values():
            h2o_cloud.remove(est)
        h2o_cloud.remove(frame)


def _levels(df: pd.DataFrame) -> dict[str, set[str]]:
    """The levels each categorical feature had in training, as text (what the model's domain holds)."""
    from h2o_tasks.scoring import categorical_text

    return {f: set(categorical_text(df[f]).dropna().astype(str)) for f, t in FEATURES.items() if t == "enum"}


@pytest.fixture(scope="module")
def session(hive_server, seeded_hive, mojos, tmp_path_factory):
    """A HiveServer2 session with ``h2o_predict`` registered (the jar built from source here)."""
    jar = hive_udf.build(tmp_path_factory.mktemp("udf"))
    conn = hive_server.connect()
    cur = conn.cursor()
    for sql in hive_udf.register_sql(jar, mojos[0]["binomial"][1]):
        cur.execute(sql)
    try:
        yield cur
    finally:
        conn.close()


def hive_udf_text(value) -> str:
    """A value as the UDF hands it to the model (whole numbers without .0)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _predictcsv(rows: pd.DataFrame, mojo, genmodel, tmp_path) -> pd.DataFrame:
    """H2O's PredictCsv on the rows, written as the offline scorer writes its input."""
    from h2o_tasks.scoring import categorical_text

    csv_in = rows.copy()
    for col in csv_in.columns:
        if FEATURES.get(col) == "enum":
            csv_in[col] = categorical_text(csv_in[col])
    csv_in.to_csv(tmp_path / "in.csv", index=False, na_rep="")
    mojo_csv.genmodel_predict(genmodel, mojo, tmp_path / "in.csv", tmp_path / "out.csv")
    return pd.read_csv(tmp_path / "out.csv", dtype={"predict": str}, keep_default_na=False)


@pytest.mark.parametrize("kind", ["binomial", "multinomial", "regression"])
def test_the_udf_predicts_what_predictcsv_predicts_bit_for_bit(session, mojos, kind, tmp_path):
    (mojo, genmodel, features), levels = mojos[0][kind], mojos[1]
    cols = ", ".join(features)
    session.execute(f"SELECT {cols}, p.predict, p.probabilities, p.unseen_levels FROM ("
                    f"SELECT {cols}, h2o_predict('{mojo}', struct({cols})) AS p FROM flights WHERE dt = '{DAY}') t")
    got = session.fetchall()
    rows = pd.DataFrame([r[:len(features)] for r in got], columns=features)
    assert len(got) > 800  # one day of flights, every row scored
    expected = _predictcsv(rows, mojo, genmodel, tmp_path)
    assert len(expected) == len(got)
    for (*values, predict, probabilities, unseen), (_, want) in zip(got, expected.iterrows(), strict=True):
        if kind == "regression":
            assert predict == float(want["predict"]) and json.loads(probabilities) == []
        else:
            assert predict == want["predict"]
            probs = json.loads(probabilities)
            assert probs == [float(v) for v in want.iloc[1:]], (probs, list(want))  # the same doubles
            assert math.isclose(sum(probs), 1.0, rel_tol=1e-9)
        row = dict(zip(features, values, strict=True))
        assert unseen == sum(1 for f in features if f in levels and row[f] is not None
                             and hive_udf_text(row[f]) not in levels[f]), row


def test_unseen_levels_are_counted_and_scored_as_missing(session, mojos, tmp_path):
    mojo, genmodel, features = mojos[0]["binomial"]
    cols = ", ".join(features)
    named = ", ".join(f"'{f}', {f}" for f in features if f != "carrier")
    session.execute(f"SELECT {cols}, p.predict, p.probabilities, p.unseen_levels FROM (SELECT {cols}, "
                    f"h2o_predict('{mojo}', named_struct({named}, 'carrier', 'ZZ')) AS p "
                    f"FROM flights WHERE dt = '{DAY}' LIMIT 50) t")
    got = session.fetchall()
    assert got and all(r[-1] >= 1 for r in got)  # carrier ZZ at least, on every row
    rows = pd.DataFrame([r[:len(features)] for r in got], columns=features).assign(carrier="ZZ")
    expected = _predictcsv(rows, mojo, genmodel, tmp_path)
    assert [json.loads(r[-2]) for r in got] == [[float(v) for v in w.iloc[1:]] for _, w in expected.iterrows()]


def test_a_missing_feature_is_a_clear_error_before_any_row(session, mojos):
    mojo, _, features = mojos[0]["binomial"]
    cols = ", ".join(f for f in features if f != "dep_delay")
    with pytest.raises(Exception, match=r"lacks the model's feature\(s\) \[dep_delay\]"):
        session.execute(f"SELECT h2o_predict('{mojo}', struct({cols})) FROM flights WHERE dt = '{DAY}' LIMIT 1")
        session.fetchall()


def test_one_jar_scores_every_model_each_by_its_path(session, mojos):
    """A retrained model is a new path in the same session, with the same jar: no new jar, no new function."""
    outs = {}
    for kind in ("binomial", "regression"):
        mojo, _, features = mojos[0][kind]
        cols = ", ".join(features)
        session.execute(f"SELECT h2o_predict('{mojo}', struct({cols})).predict FROM flights WHERE dt = '{DAY}' LIMIT 5")
        outs[kind] = [r[0] for r in session.fetchall()]
    assert all(isinstance(v, str) for v in outs["binomial"]) and all(isinstance(v, float) for v in outs["regression"])


PROBE = """package h2o_airflow.hive;
public class CacheProbe {
  public static void main(String[] a) throws Exception {
    Object first = H2OPredict.load(a[0]);
    H2OPredict.load(a[1]);
    System.out.println(H2OPredict.cachedModels() + " " + (H2OPredict.load(a[0]) == first));
  }
}
"""


@pytest.mark.parametrize(("bound", "expected"), [(None, "2 true"), ("1", "1 false")])
def test_the_udf_keeps_at_most_its_bound_of_models_least_recently_used_first(mojos, tmp_path, bound, expected):
    """A long-lived HiveServer2 sees a new champion every retrain: the UDF's model cache is an LRU."""
    import subprocess

    from h2o_tasks import hive_udf

    src = tmp_path / "h2o_airflow" / "hive" / "CacheProbe.java"
    src.parent.mkdir(parents=True)
    src.write_text(PROBE)
    cp = ":".join(str(p) for p in [hive_udf.build(), *hive_udf.dev_classpath()])
    subprocess.run(["javac", "-cp", cp, "-d", str(tmp_path), str(src)], check=True, capture_output=True)
    a, b = (str(mojos[0][kind][0]) for kind in ("binomial", "regression"))
    props = [f"-Dh2o.predict.models={bound}"] if bound else []
    out = subprocess.run(["java", *props, "-cp", f"{tmp_path}:{cp}", "h2o_airflow.hive.CacheProbe", a, b],
                         check=True, capture_output=True, text=True)
    assert out.stdout.split("\n")[-2].strip() == expected, out.stderr[-2000:]
