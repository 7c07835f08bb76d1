"""The quality gate: threshold, direction of the metric, margin against the champion, and metrics that
are not numbers."""

import math

import pytest

from h2o_tasks.config import QualityGateConfig
from h2o_tasks.registry import ChampionPointer, gate


def champ(value, metric="auc"):
    return ChampionPointer("v1", metric, value, "2013-01-01T00:00:00+00:00")


@pytest.mark.parametrize(
    ("cfg", "metrics", "champion", "promote"),
    [
        (QualityGateConfig("auc", 0.7, 0.01), {"auc": 0.69}, None, False),  # under the threshold
        (QualityGateConfig("auc", 0.7, 0.01), {"auc": 0.75}, None, True),  # first model
        (QualityGateConfig("auc", 0.7, 0.01), {"auc": 0.795}, champ(0.80), True),  # within the margin
        (QualityGateConfig("auc", 0.7, 0.01), {"auc": 0.78}, champ(0.80), False),  # worse by more
        (QualityGateConfig("logloss", 0.5, 0.0), {"logloss": 0.40}, champ(0.45, "logloss"), True),  # lower is better
        (QualityGateConfig("logloss", 0.5, 0.0), {"logloss": 0.46}, champ(0.45, "logloss"), False),
        (QualityGateConfig("logloss", 0.5, 0.0), {"logloss": 0.60}, None, False),  # over the threshold
        (QualityGateConfig("rmse", 0.0, 0.0), {"auc": 0.9}, None, False),  # metric not computed
    ],
)
def test_gate(cfg, metrics, champion, promote):
    decision = gate(cfg, metrics, champion)
    assert decision.promote is promote, decision.reason
    assert cfg.metric in decision.reason


@pytest.mark.parametrize("bad", [math.nan, None, math.inf, -math.inf, "0.9"])
@pytest.mark.parametrize(("metric", "threshold"), [("auc", 0.7), ("auc", 0.0), ("rmse", 0.0), ("rmse", 10.0)])
def test_gate_never_promotes_a_metric_that_is_not_a_number(bad, metric, threshold):
    cfg = QualityGateConfig(metric, threshold, 0.01)
    for champion in (None, champ(0.8, metric)):
        decision = gate(cfg, {metric: bad}, champion)
        assert decision.promote is False, decision.reason
        assert metric in decision.reason and "not a number" in decision.reason


@pytest.mark.parametrize("bad", [math.nan, None])
@pytest.mark.parametrize(("metric", "value"), [("auc", 0.9), ("rmse", 1.0)])
def test_gate_never_promotes_against_a_champion_without_a_value(bad, metric, value):
    decision = gate(QualityGateConfig(metric, 0.0, 0.01), {metric: value}, champ(bad, metric))
    assert decision.promote is False, decision.reason
    assert "champion v1" in decision.reason and "registry rollback" in decision.reason


def test_gate_still_promotes_a_valid_metric():
    assert gate(QualityGateConfig("rmse", 0.0, 0.0), {"rmse": 3.0}, None).promote
    assert gate(QualityGateConfig("auc", 0.7, 0.01), {"auc": 0.8}, champ(0.8)).promote


def _candidate(end, auc=0.8, version="v2"):
    from h2o_tasks.registry import Candidate

    return Candidate(version, {"auc": auc}, "2013-01-01", end, "sha")


def _pointer(end, value=0.8, version="v1"):
    return ChampionPointer(version, "auc", value, "2013-01-01T00:00:00+00:00", interval_end=end, generation=3)


@pytest.mark.parametrize(
    ("candidate_end", "champion_end", "allow_older", "promote", "needle"),
    [
        ("2013-02-04", "2013-02-11", False, False, "older interval never replaces"),  # a backfill of an old week
        ("2013-02-04", "2013-02-11", True, True, "vs champion"),  # the documented setting allows it
        ("2013-02-11", "2013-02-11", False, True, "vs champion"),  # the same interval again (clear and re-run)
        ("2013-02-18", "2013-02-11", False, True, "vs champion"),  # a newer interval
        ("2013-02-04", None, False, True, "vs champion"),  # a pointer written before intervals counts as older
    ],
)
def test_promotion_policy_on_intervals(candidate_end, champion_end, allow_older, promote, needle):
    from h2o_tasks.registry import decide

    cfg = QualityGateConfig("auc", 0.7, 0.01, allow_older_interval=allow_older)
    decision = decide(cfg, _candidate(candidate_end), _pointer(champion_end))
    assert decision.promote is promote and needle in decision.reason, decision.reason
    if not promote:
        assert "2013-02-11" in decision.reason and "allow_older_interval" in decision.reason


def test_the_interval_policy_comes_before_the_metric_and_the_metric_still_gates():
    from h2o_tasks.registry import decide

    cfg = QualityGateConfig("auc", 0.7, 0.01)
    assert not decide(cfg, _candidate("2013-02-18", auc=0.70), _pointer("2013-02-11", 0.8)).promote  # worse by 0.1
    assert not decide(cfg, _candidate("2013-02-18", version="v1"), _pointer("2013-02-11")).promote  # already champion


@pytest.mark.parametrize("bad", [math.nan, None])
def test_promotion_refuses_a_value_that_is_not_a_number(bad):
    from h2o_tasks.registry import Candidate, decide

    decision = decide(QualityGateConfig("auc", 0.0, 0.0), Candidate("v2", {"auc": bad}, "2013-02-01", "2013-02-08", ""),
                      None)
    assert decision.promote is False and "not a number" in decision.reason


def test_champion_pointer_reads_old_and_future_fields():
    old = ChampionPointer.from_dict({"version": "v0", "metric": "auc", "value": 0.8, "promoted_at": "t", "run_id": "r"})
    assert old.interval_end is None and old.generation == 0
    newer = ChampionPointer.from_dict({**old.to_dict(), "generation": 4, "a_field_from_a_later_release": 1})
    assert newer.generation == 4


def test_version_ids_differ_per_attempt_and_sort_by_logical_date():
    from datetime import UTC, datetime

    from h2o_tasks.registry import version_id

    day = datetime(2013, 2, 4, tzinfo=UTC)
    a, b = version_id(day, "scheduled__2013-02-04", 1), version_id(day, "scheduled__2013-02-04", 1)
    assert a != b and a[:24] == b[:24]  # same run and try: still two versions
    assert "-t2-" in version_id(day, "r", 2)
    assert version_id(datetime(2013, 2, 3, tzinfo=UTC), "r") < a
