"""Every DAG file imports, without a database, a connection or H2O at parse time."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PARSE = r"""
import json, sys
from airflow.sdk import BaseHook
def no_connections(*a, **k):
    raise RuntimeError("connection accessed at parse time")
BaseHook.get_connection = classmethod(no_connections)
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "tasks": sorted(t.task_id for t in dag.tasks),
        "teardowns": sorted(t.task_id for t in dag.tasks if t.is_teardown),
        "setups": sorted(t.task_id for t in dag.tasks if t.is_setup),
        "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        "params": sorted(dag.params.keys()),
        "max_active_runs": dag.max_active_runs,
        "catchup": dag.catchup,
        "timeouts": {t.task_id: t.execution_timeout.total_seconds() if t.execution_timeout else None
                     for t in dag.tasks},
        "trigger_rules": {t.task_id: str(t.trigger_rule) for t in dag.tasks},
    }
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags,
                  "h2o_imported": "h2o" in sys.modules, "pyspark_imported": "pyspark" in sys.modules}))
"""


def parse_dags(tmp_path):
    env = {**os.environ,
           "AIRFLOW_HOME": str(tmp_path),
           # a database that cannot exist: any access at parse time fails the parse
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/missing-dir/never.db",
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
    res = subprocess.run([sys.executable, "-c", PARSE, str(ROOT / "dags")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_dags_import_cleanly_without_db_connections_or_h2o(tmp_path):
    out = parse_dags(tmp_path)
    assert out["errors"] == {}
    assert not out["h2o_imported"] and not out["pyspark_imported"]
    dags = out["dags"]
    assert set(dags) == {"h2o_train__arrival-delay", "h2o_score__arrival-delay", "h2o_train__air-time",
                         "h2o_score__air-time", "h2o_janitor"}
    train = dags["h2o_train__arrival-delay"]
    assert train["tasks"] == ["create_cluster", "delete_cluster", "export_and_promote", "import_data",
                              "import_scoring_data", "score", "train"]  # scoring.after_training: true
    assert train["setups"] == ["create_cluster"] and train["teardowns"] == ["delete_cluster"]
    up = train["upstream"]
    # the scoring day is imported once training succeeded; the champion scores once the gate decided;
    # the cluster is deleted once nothing runs in it any more
    assert up["import_scoring_data"] == ["train"] and up["score"] == ["export_and_promote", "import_scoring_data"]
    assert up["delete_cluster"] == ["create_cluster", "import_scoring_data", "score"]
    assert {"replicas", "memory", "window_days", "algorithm"} <= set(train["params"])
    score = dags["h2o_score__arrival-delay"]
    assert score["setups"] == ["create_cluster"] and score["teardowns"] == ["delete_cluster"]
    assert score["upstream"]["delete_cluster"] == ["create_cluster", "score"]
    # the teardown runs whatever its upstream work did, once its cluster was created (a failed create
    # deletes its own cluster): Airflow's teardown rule, never all_success
    assert train["trigger_rules"]["delete_cluster"] == score["trigger_rules"]["delete_cluster"] \
        == "TriggerRule.ALL_DONE_SETUP_SUCCESS"
    assert train["catchup"] is False and train["max_active_runs"] == 3
    # every task is bounded by the cluster's time-to-live (ttl_minutes: 120 in arrival_delay.yaml)
    assert set(train["timeouts"].values()) == set(score["timeouts"].values()) == {7200.0}


def _parse_variants(tmp_path, variants: dict[str, dict[str, str]]):
    """The shipped DAG folder plus pipeline files made from the example by text replacements."""
    import shutil

    dags = tmp_path / "dags"
    shutil.copytree(ROOT / "dags", dags)
    text = (dags / "pipelines" / "arrival_delay.yaml").read_text()
    for stem, replacements in variants.items():
        body = text
        for old, new in replacements.items():
            assert old in body, old
            body = body.replace(old, new)
        (dags / "pipelines" / f"{stem}.yaml").write_text(body)
        shutil.copy(dags / "pipelines" / "arrival_delay.py", dags / "pipelines" / f"{stem}.py")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/missing-dir/never.db",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
    res = subprocess.run([sys.executable, "-c", PARSE, str(dags)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_a_bad_pipeline_file_is_its_own_import_error_and_the_others_still_load(tmp_path):
    out = _parse_variants(tmp_path, {"bad": {"replicas: 2": "replicas: 0", "name: arrival-delay": "name: bad",
                                             'training: "@weekly"': 'training: "every monday"'}})
    assert list(out["errors"]) == [str(tmp_path / "dags" / "pipelines" / "bad.py")]
    message = out["errors"][str(tmp_path / "dags" / "pipelines" / "bad.py")]
    # every problem of the file, each with its field, value and fix
    assert "2 problems in " in message and "bad.yaml" in message
    assert "cluster.replicas = 0: must be between 1 and 64. Fix:" in message
    assert "schedule.training = 'every monday': is not a cron expression. Fix:" in message
    assert {"h2o_train__arrival-delay", "h2o_score__arrival-delay", "h2o_janitor"} <= set(out["dags"])


def test_a_later_pipeline_file_sharing_an_output_is_refused_naming_both_files(tmp_path):
    # zz_copy sorts after arrival_delay: it is refused, and arrival_delay keeps working
    out = _parse_variants(tmp_path, {"zz_copy": {"name: arrival-delay": "name: copy",
                                                 "hive_table: arrival_delay_predictions": "hive_table: copy_predictions",
                                                 "predictions/arrival-delay": "predictions/copy"}})
    bad = str(tmp_path / "dags" / "pipelines" / "zz_copy.py")
    assert list(out["errors"]) == [bad]
    assert "zz_copy.yaml: registry_uri = 's3://h2o-demo/models/arrival-delay'" in out["errors"][bad]
    assert "arrival_delay.yaml" in out["errors"][bad]
    assert {"h2o_train__arrival-delay", "h2o_score__arrival-delay"} <= set(out["dags"])
    assert "h2o_train__copy" not in out["dags"]


def test_the_trigger_form_defaults_validate_so_the_ui_can_submit_them():
    """The UI's trigger and backfill forms treat an empty value of a non-nullable type as missing: every
    default must validate as it is, and an empty algorithm means the configured ones."""
    from h2o_airflow.dag_factory import pipeline_dags
    from tests.fixtures.pipelines import EXAMPLE

    dag = pipeline_dags(EXAMPLE.with_suffix(".py"))["train_arrival-delay"]
    resolved = dag.params.validate()
    assert resolved["algorithm"] is None
    schema = dag.params.get_param("algorithm").schema
    assert "null" in schema["type"] and None in schema["enum"] and "glm" in schema["enum"]
