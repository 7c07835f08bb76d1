"""The pipeline's Assets: the tasks' inlets and outlets, and the scoring DAG run by a new champion."""

from types import SimpleNamespace

import pytest
from airflow.sdk import Asset, AssetAlias

from h2o_airflow import assets
from h2o_airflow.dag_factory import scoring_dag, training_dag
from h2o_tasks.errors import ConfigError
from tests.fixtures.pipelines import EXAMPLE, variant


def test_the_dags_say_what_their_tasks_read_and_write():
    cfg = variant()
    train, score = training_dag(EXAMPLE, cfg), scoring_dag(EXAMPLE, cfg)
    source = Asset(uri=cfg.source.s3.uri.rstrip("/"), group="h2o")
    champion = Asset(uri=f"{cfg.registry_uri}/champion.json", group="h2o")
    predictions = Asset(uri=cfg.scoring.output_uri.rstrip("/"), group="h2o")
    assert train.get_task("import_data").inlets == [source]
    # the champion's event comes through an alias: added only when the export promoted
    assert train.get_task("export_and_promote").outlets == [AssetAlias(name=f"h2o/{cfg.name}/champion-moves",
                                                                       group="h2o")]
    assert train.get_task("score").outlets == [predictions]  # scoring.after_training
    task = score.get_task("score")
    assert (task.inlets, task.outlets) == ([source, champion], [predictions])
    assert type(score.timetable).__name__ == "CronTriggerTimetable"  # a time schedule by default
    # a Hive source has no asset: its URI would need the server's host, which only the connection knows
    hive = variant(source={"kind": "hive", "hive": {"table": "flights"}})
    assert training_dag(EXAMPLE, hive).get_task("import_data").inlets == []


def test_on_new_champion_runs_the_scoring_dag_on_the_champions_asset():
    cfg = variant(schedule={"scoring": "on_new_champion"})
    dag = scoring_dag(EXAMPLE, cfg)
    assert list(dag.timetable.asset_condition.objects) == [assets.champion(cfg)]
    assert assets.champion(cfg).uri == f"{cfg.registry_uri}/champion.json"
    with pytest.raises(ConfigError, match=r"schedule\.scoring.*has no data interval"):
        variant(schedule={"scoring": "on_new_champion", "data_intervals": True})
    with pytest.raises(ConfigError, match=r"schedule\.scoring"):
        variant(schedule={"scoring": "on_new_champions"})


def _events(asset, *days):
    return {"triggering_asset_events": {asset: [SimpleNamespace(extra={"day": d} if d else {}) for d in days]}}


def test_a_champion_event_names_the_day_its_scoring_run_covers():
    cfg = variant(schedule={"scoring": "on_new_champion"})
    champion = assets.champion(cfg)
    assert assets.triggered_span({}, cfg) is None  # a scheduled or manual run
    # several promotions between two runs of the scoring DAG: the latest day
    assert assets.triggered_span(_events(champion, "2013-02-04", "2013-02-11", None), cfg) == ("2013-02-11",) * 2


def test_on_new_data_runs_the_scoring_dag_on_the_sources_asset_over_the_days_its_events_name():
    cfg = variant(schedule={"scoring": "on_new_data"})
    dag = scoring_dag(EXAMPLE, cfg)
    assert list(dag.timetable.asset_condition.objects) == assets.source(cfg)
    [source] = assets.source(cfg)
    assert source.uri == cfg.source.s3.uri.rstrip("/")
    # two days landed before the scoring DAG ran: both, and the days between (a time names its day)
    span = _events(source, "2013-02-06", "2013-02-04T23:00:00+00:00", None)
    assert assets.triggered_span(span, cfg) == ("2013-02-04", "2013-02-06")
    assert assets.triggered_span(_events(source, None), cfg) is None  # no day named: the day of the run
    with pytest.raises(ConfigError) as bad:
        assets.triggered_span(_events(source, "yesterday"), cfg)
    assert bad.value.field == f"extra.day of an event of asset {source.uri}" and "YYYY-MM-DD" in str(bad.value)
    with pytest.raises(ConfigError, match=r"schedule\.scoring.*source\.kind is hive"):
        variant(schedule={"scoring": "on_new_data"}, source={"kind": "hive", "hive": {"table": "flights"}})
    with pytest.raises(ConfigError, match=r"schedule\.scoring.*has no data interval"):
        variant(schedule={"scoring": "on_new_data", "data_intervals": True})
