"""Review-time validation: the parse-time checks, every problem at once, H2O's own parameter checks
(``python -m h2o_tasks validate``), and the JSON Schema and README table generated from the same
declarations as the parser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from h2o_tasks import config
from h2o_tasks.errors import ConfigError, ConfigErrors
from tests.fixtures.pipelines import DROP, EXAMPLE, example, variant, whole

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = EXAMPLE.parent


def _set(data: dict, dotted: str, value) -> dict:
    *parents, key = dotted.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    if value is DROP:
        node.pop(key, None)
    else:
        node[key] = value
    return data


@pytest.mark.parametrize(("changes", "field", "needle"), [
    # schedules Airflow would refuse only when the DAG is built, or never
    ({"schedule.training": "every day"}, "schedule.training", "cron expression"),
    ({"schedule.scoring": "@fortnightly"}, "schedule.scoring", "preset"),
    ({"schedule.scoring": "61 * * * *"}, "schedule.scoring", "cron expression"),
    ({"schedule.training": "@once", "schedule.data_intervals": True}, "schedule.training", "data interval"),
    # parameters that are not names H2O could have, or that the pipeline sets itself
    ({"training.algorithms": [{"algo": "gbm", "params": {"n-trees": 10}}]}, "training.algorithms[0].params.n-trees",
     "parameter name"),
    ({"training.algorithms": [{"algo": "gbm", "params": {"training_frame": "x"}}]},
     "training.algorithms[0].params.training_frame", "set by the pipeline"),
    # a metric the problem does not have, explicitly or by the gate's default
    ({"target": {"column": "arr_delay", "problem": "regression"}, "training.metric": "auc"}, "training.metric",
     "problem: regression"),
    ({"target": {"column": "arr_delay", "problem": "regression"}, "training.metric": "rmse",
      "quality_gate.metric": "auc", "quality_gate.threshold": 0.0}, "quality_gate.metric", "problem: regression"),
    # a gate that can never pass
    ({"quality_gate.threshold": 1.5}, "quality_gate.threshold", "never pass"),
    ({"training.metric": "logloss", "quality_gate.metric": "logloss", "quality_gate.threshold": -0.1},
     "quality_gate.threshold", "never pass"),
    # the raw column beside the label derived from it
    ({"features": [{"name": "arr_delay", "type": "real"}, {"name": "month", "type": "int"}]}, "target.column", "leak"),
    # regression (or any problem) with a name and no threshold
    ({"target": {"column": "arr_delay", "problem": "regression", "name": "delay"}}, "target.name", "no threshold"),
    # Kubernetes values that are not what Kubernetes takes
    ({"cluster.cpu": "lots"}, "cluster.cpu", "quantity"),
    ({"cluster.cpu": 0}, "cluster.cpu", "above zero"),
    ({"cluster.scratch_size": "big"}, "cluster.scratch_size", "quantity"),
    ({"cluster.image": "my registry/h2o:latest"}, "cluster.image", "image reference"),
    ({"cluster.image": "H2O:3.46"}, "cluster.image", "image reference"),
    ({"cluster.client_pod_labels": {"tier": "air flow"}}, "cluster.client_pod_labels.tier", "label value"),
    ({"cluster.client_pod_labels": {"-bad": "x"}}, "cluster.client_pod_labels.-bad", "label key"),
    ({"cluster.cluster_domain": "Cluster_Local"}, "cluster.cluster_domain", "DNS subdomain"),
    ({"cluster.s3_secret": "My Secret"}, "cluster.s3_secret", "Secret name"),
    # identifiers with a trailing newline ('$' alone would let it through)
    ({"name": "arrival-delay\n"}, "name", "DNS-1123"),
    ({"cluster.namespace": "h2o\n"}, "cluster.namespace", "DNS-1123"),
    ({"scoring.hive_table": "predictions\n"}, "scoring.hive_table", "SQL identifier"),
    ({"target.column": "arr_delay\n"}, "target.column", "column name"),
    ({"registry_uri": "s3://bucket/models with space"}, "registry_uri", "s3://"),
    # the section of the source's kind is missing
    ({"source.kind": "hive"}, "source.hive", "kind: hive"),
])
def test_refused_at_parse_time_naming_the_field(changes, field, needle):
    data = example()
    for dotted, value in changes.items():
        _set(data, dotted, value)
    with pytest.raises(ConfigError) as err:
        config.parse(data)
    assert err.value.field == field, str(err.value)
    assert needle in str(err.value) and "Fix:" in str(err.value), str(err.value)


def test_accepted_values_of_the_same_fields():
    data = example()
    for dotted, value in {"schedule.training": "0 6 * * 1", "schedule.scoring": "@hourly", "cluster.cpu": "500m",
                          "cluster.scratch_size": "512Mi", "cluster.image": "registry.local:5000/ml/h2o:3.46.0.11",
                          "cluster.client_pod_labels": {"app.kubernetes.io/part-of": "airflow", "tier": ""},
                          "cluster.s3_secret": "h2o-s3.creds"}.items():
        _set(data, dotted, value)
    cfg = config.parse(data)
    assert (cfg.cluster.cpu, cfg.schedule.training) == ("500m", "0 6 * * 1")
    assert config.parse({**example(), "cluster": {**example()["cluster"], "cpu": 2}}).cluster.cpu == "2"


def test_regression_gets_a_regression_metric_by_default():
    cfg = variant(target=whole({"column": "arr_delay", "problem": "regression"}), training={"metric": DROP},
                  quality_gate=whole({"threshold": 30.0}))
    assert cfg.training.metric == "rmse" and cfg.quality_gate.metric == "rmse"


def test_every_problem_of_a_file_at_once(tmp_path):
    data = example()
    data["cluster"]["replicas"] = 0
    data["schedule"]["training"] = "every day"
    data["features"][0]["type"] = "text"
    data["quality_gate"]["threshold"] = 1.5
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigErrors) as err:
        config.load(path)
    fields = [e.field for e in err.value.errors]
    assert fields == ["features[0].type", "cluster.replicas", "schedule.training", "quality_gate.threshold"]
    message = str(err.value)
    assert message.startswith(f"4 problems in {path}:") and all(f in message for f in fields)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "h2o_tasks", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=ROOT)


def test_validate_lists_every_bad_file_and_exits_non_zero(tmp_path):
    good = example()
    files = {
        # a parse-time problem and one only H2O finds, in one file: both listed
        "a_cron.yaml": {**good, "name": "a", "schedule": {**good["schedule"], "training": "every day"},
                        "training": {**good["training"], "algorithms": [{"algo": "glm", "params": {"alpah": 0.5}}]}},
        # passes the parse-time checks; H2O's own estimator refuses both parameters
        "b_params.yaml": {**good, "name": "b", "training": {**good["training"], "algorithms": [
            {"algo": "gbm", "params": {"n_trees": 10, "max_depth": "deep"}}]}},
        "c_quantity.yaml": {**good, "name": "c", "cluster": {**good["cluster"], "cpu": "lots"}},
    }
    for name, data in files.items():
        data["registry_uri"] = f"s3://h2o-demo/models/{name}"
        data["scoring"] = {**data["scoring"], "output_uri": f"s3://h2o-demo/predictions/{name}", "hive_table": name[0]}
        (tmp_path / name).write_text(yaml.safe_dump(data))
    res = _cli("validate", str(tmp_path))
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert any("a_cron.yaml: schedule.training = 'every day': is not a cron expression" in ln for ln in lines), lines
    assert any("a_cron.yaml: training.algorithms[0].params.alpah = 0.5: is not a parameter of H2O's glm. "
               "Fix: did you mean alpha?" in ln for ln in lines), lines
    assert any("b_params.yaml: training.algorithms[0].params.n_trees = 10: is not a parameter of H2O's gbm. "
               "Fix: did you mean ntrees?" in ln for ln in lines), lines
    assert any("b_params.yaml: training.algorithms[0].params.max_depth = 'deep': is refused by H2O's gbm" in ln
               for ln in lines), lines
    assert any("c_quantity.yaml: cluster.cpu = 'lots'" in ln for ln in lines), lines
    assert "3 of 3 pipeline file(s) have problems" in res.stderr
    # the parse-time checks alone miss what only H2O knows
    cheap = _cli("validate", "--cheap", str(tmp_path / "b_params.yaml"))
    assert cheap.returncode == 0 and "ok" in cheap.stdout, cheap.stdout + cheap.stderr


def test_validate_passes_the_shipped_pipelines():
    res = _cli("validate", str(PIPELINES))
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(ln.split(":")[0] for ln in res.stdout.splitlines()) == sorted(
        str(p) for p in PIPELINES.glob("*.yaml"))


def test_schema_and_readme_table_are_generated_from_the_declarations():
    from scripts.readme_fields import with_table

    committed = json.loads((PIPELINES / "pipeline.schema.json").read_text())
    assert committed == config.json_schema(), "stale: run make schema"
    readme = (ROOT / "README.md").read_text()
    assert with_table(readme) == readme, "stale: run make schema"
    assert "yaml-language-server: $schema=pipeline.schema.json" in EXAMPLE.read_text()


def test_the_schema_accepts_the_examples_and_refuses_what_the_parser_refuses():
    validator = jsonschema.Draft202012Validator(config.json_schema(), format_checker=jsonschema.FormatChecker())
    for path in PIPELINES.glob("*.yaml"):
        # YAML dates are date objects; the schema sees the file as an editor does, as text
        data = json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))
        assert not list(validator.iter_errors(data)), path
    for changes in ({"colour": "blue"}, {"cluster.replicas": 0}, {"cluster.backend": "yarn"},
                    {"name": "Arrival_Delay"}, {"cluster.cpu": "lots"}, {"features": "month"},
                    {"training.algorithms": [{"algo": "deepforest"}]}, {"scoring.hive_table": "a b"}):
        data = json.loads(json.dumps(example(), default=str))
        for dotted, value in changes.items():
            _set(data, dotted, value)
        assert list(validator.iter_errors(data)), changes
        with pytest.raises(ConfigError):
            config.parse(data)
