"""``scoring.engine: hive``: the scoring DAG scores a Hive source inside HiveServer2 with the h2o_predict UDF
and the champion's MOJO (no H2O cluster), and commits the day like the other engines; its numbers are
PredictCsv's on the same rows."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from h2o_tasks import commit, mojo_csv, s3, scoring
from h2o_tasks.config import load

pytestmark = pytest.mark.integration

NAME = "hive-engine"
DAY = "2013-02-04"


def _predictcsv(client, champ, rows: pd.DataFrame, tmp_path) -> pd.DataFrame:
    tmp_path.mkdir(parents=True, exist_ok=True)
    feats, _ = scoring.scoring_input(rows, champ.metadata["features"], champ.version)
    feats.to_csv(tmp_path / "in.csv", index=False, na_rep="")
    model = scoring.fetch_model(client, champ, tmp_path)
    mojo_csv.genmodel_predict(mojo_csv.genmodel_jar(), model, tmp_path / "in.csv", tmp_path / "out.csv")
    return pd.read_csv(tmp_path / "out.csv", dtype={"predict": str})


def test_the_hive_engine_scores_inside_hiveserver2_by_period_and_a_new_champion_needs_no_new_jar(
        airflow_runner, s3_settings, hive_server, tmp_path):
    """One pipeline, trained once and then again: the scoring DAG's day, a span of days in one query,
    and the retrained champion through the same UDF jar (one training less than three tests would take)."""
    from datetime import date

    from h2o_tasks import hive_udf, intervals
    from h2o_tasks.errors import SourceNotFoundError

    airflow_runner.add_pipeline(
        "hive_engine.yaml", name=NAME, registry_uri=f"s3://h2o-demo/models/{NAME}",
        source={"kind": "hive", "training_window_days": 7, "hive": {"table": "flights"}},
        quality_gate={"max_regression": 1.0},  # the retrain below promotes
        scoring={"engine": "hive", "output_uri": f"s3://h2o-demo/predictions/{NAME}",
                 "hive_table": "hive_engine_predictions", "after_training": False,
                 "id_columns": ["flight", "carrier", "origin"]})
    rc, report = airflow_runner.test(f"h2o_train__{NAME}", DAY)
    assert rc == 0, airflow_runner.log_tail()
    assert {r.task: r.result for r in report}["export_and_promote"]["promoted"] is True

    rc, report = airflow_runner.test(f"h2o_score__{NAME}", DAY)
    assert rc == 0, airflow_runner.log_tail()
    assert [r.task for r in report] == ["score"]  # no cluster tasks
    scored = report[0].result
    assert scored["engine"] == "hive"
    conn = hive_server.connect()
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT count(*) FROM flights WHERE dt = '{DAY}'")
        (day_rows,) = cur.fetchone()
        cur.execute(f"SELECT count(*), sum(p1) FROM hive_engine_predictions WHERE dt = '{DAY}'")
        hive_rows, hive_sum = cur.fetchone()
        cfg = load(airflow_runner.dags / "pipelines" / "hive_engine.yaml")
        client = s3_settings.client()
        champ = scoring.champion(client, cfg)
        features = [f["name"] for f in champ.metadata["features"]]
        cur.execute(f"SELECT {', '.join(features)} FROM flights WHERE dt = '{DAY}'")
        rows = pd.DataFrame(cur.fetchall(), columns=features)
    finally:
        conn.close()
    assert scored["rows_in"] == scored["rows_scored"] == day_rows == hive_rows > 800
    (part,) = scored["partitions"]
    assert part["partition"] == f"dt={DAY}" and part["rows"] == part["hive_rows"] == day_rows
    assert [c for c, _ in scored["columns"]] == ["flight", "carrier", "origin", "predict", "p0", "p1"]
    committed = pd.concat([pd.read_csv(io.BytesIO(s3.read_bytes(client, f)))
                           for f in commit.committed_files(client, part["output_uri"])])
    assert len(committed) == day_rows and committed["p1"].sum() == pytest.approx(hive_sum)

    # PredictCsv on the same rows, as the offline scorer writes them: the same doubles (as multisets)
    _, offline_unseen = scoring.scoring_input(rows, champ.metadata["features"], champ.version)
    expected = _predictcsv(client, champ, rows, tmp_path)
    assert sorted(committed["p1"].tolist()) == sorted(expected["p1"].tolist())
    assert sorted(committed["predict"].astype(str).tolist()) == sorted(expected["predict"].tolist())
    assert scored["unseen_levels"] == offline_unseen  # counted per feature as the offline engine counts
    assert airflow_runner.clusters_left() == []

    first = champ
    jar = hive_udf.build()
    built = jar.stat().st_mtime_ns

    # three days in one counting query and one scoring query, committed a partition each
    span = intervals.periods("day", date(2013, 3, 4), date(2013, 3, 7))
    result = scoring.score_in_hive(cfg, s3_settings, span, run_id="span-1", hive_conn=hive_server.connect,
                                   stage_root=tmp_path / "stage", udf_jar=jar)
    conn = hive_server.connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT dt, count(*) FROM flights WHERE dt >= '2013-03-04' AND dt < '2013-03-07' GROUP BY dt")
        per_day = {dt: n for dt, n in cur.fetchall()}
    finally:
        conn.close()
    assert len(per_day) == 3 and min(per_day.values()) > 800
    assert {p["partition"]: p["rows"] for p in result.partitions} == {f"dt={d}": n for d, n in per_day.items()}
    assert result.rows_in == result.rows_scored == sum(per_day.values())
    assert list((tmp_path / "stage").iterdir()) == []  # the work directory is gone

    # a period with no source rows is refused before anything is written
    gap = intervals.periods("day", date(2013, 12, 30), date(2014, 1, 2))
    with pytest.raises(SourceNotFoundError, match="2014-01-01"):
        scoring.score_in_hive(cfg, s3_settings, gap, run_id="gap-1", hive_conn=hive_server.connect,
                              stage_root=tmp_path / "stage", udf_jar=jar)
    assert not s3.list_keys(client, f"{cfg.scoring.output_uri}/dt=2013-12-30/")

    # retrain: the next scoring run uses the new champion, through the same UDF jar
    rc, _ = airflow_runner.test(f"h2o_train__{NAME}", "2013-03-11")
    assert rc == 0, airflow_runner.log_tail()
    second = scoring.champion(client, cfg)
    assert second.version != first.version
    assert second.metadata["model_sha256"] != first.metadata["model_sha256"]
    rc, report = airflow_runner.test(f"h2o_score__{NAME}", "2013-03-12")
    assert rc == 0, airflow_runner.log_tail()
    scored = report[0].result
    assert scored["model_version"] == second.version
    assert hive_udf.build() == jar and jar.stat().st_mtime_ns == built
    (part,) = scored["partitions"]
    committed = pd.concat([pd.read_csv(io.BytesIO(s3.read_bytes(client, f)))
                           for f in commit.committed_files(client, part["output_uri"])])
    conn = hive_server.connect()
    try:
        cur = conn.cursor()
        features = [f["name"] for f in second.metadata["features"]]
        cur.execute(f"SELECT {', '.join(features)} FROM flights WHERE dt = '2013-03-12'")
        rows = pd.DataFrame(cur.fetchall(), columns=features)
    finally:
        conn.close()
    expected = _predictcsv(client, second, rows, tmp_path / "second")
    stale = _predictcsv(client, first, rows, tmp_path / "first")
    assert sorted(committed["p1"].tolist()) == sorted(expected["p1"].tolist())
    assert sorted(committed["p1"].tolist()) != sorted(stale["p1"].tolist())  # not the first champion's numbers


def test_the_hive_engine_is_refused_for_an_s3_source_at_parse_time():
    from devtools import dag_folder
    from h2o_tasks import config
    from h2o_tasks.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        config.parse(dag_folder.variant(scoring={"engine": "hive"}))
    assert err.value.field == "scoring.engine" and "source.kind is s3" in str(err.value)
