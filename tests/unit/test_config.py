"""Pipeline configuration: the shipped pipeline loads; bad input names field, value and fix."""

import pytest
import yaml

from h2o_tasks import config
from h2o_tasks.errors import ConfigError
from tests.fixtures.pipelines import EXAMPLE, example, variant, whole


def test_shipped_pipeline_loads():
    cfg = config.load(EXAMPLE)
    assert cfg.name == "arrival-delay"
    assert cfg.target.label == "delayed" and cfg.target.threshold == 15.0
    assert "dep_delay" in cfg.feature_names
    assert cfg.cluster.memory_mb == 1024
    assert [a.algo for a in cfg.training.algorithms] == ["gbm", "glm"]
    assert cfg.cluster.jvm_options == ("-XX:TieredStopAtLevel=1",)


def test_round_trip_and_overrides():
    cfg = config.load(EXAMPLE)
    assert config.parse(config.to_dict(cfg), path=cfg.path) == cfg
    bigger = cfg.with_overrides(cluster={"replicas": 3}, source={"training_window_days": 7})
    assert bigger.cluster.replicas == 3 and bigger.source.training_window_days == 7
    assert cfg.cluster.replicas == 2  # the original is unchanged
    assert cfg.with_overrides(cluster={"jvm_options": ("-XX:+UseSerialGC",)}).cluster.jvm_options == ("-XX:+UseSerialGC",)
    for mode in ("service", "pod-ip", "port-forward"):
        assert cfg.with_overrides(cluster={"endpoint_mode": mode}).cluster.endpoint_mode == mode


@pytest.mark.parametrize(
    ("mutate", "field", "needle"),
    [
        (lambda r: r["cluster"].update(replicas=0), "cluster.replicas", "between 1 and 64"),
        (lambda r: r["cluster"].update(memory="lots"), "cluster.memory", "2g"),
        (lambda r: r["cluster"].update(memory="128m"), "cluster.memory", "256m"),
        (lambda r: r["training"]["algorithms"][0].update(algo="deepforest"), "training.algorithms[0].algo", "gbm"),
        (lambda r: r["features"].append({"name": "tailnum", "type": "text"}), "features[9].type", "enum"),
        (lambda r: r.pop("target"), "target", "column"),
        (lambda r: r["source"].update(kind="ftp"), "source.kind", "s3, hive"),
        (lambda r: r["source"]["s3"].update(uri="h2o-demo/flights"), "source.s3.uri", "s3://"),
        (lambda r: r["source"]["s3"].update(client_fetch_max_bytes=-1), "source.s3.client_fetch_max_bytes",
         "between 0 and"),
        (lambda r: r["source"]["s3"].update(client_fetch_max_bytes=2 << 30), "source.s3.client_fetch_max_bytes",
         "between 0 and 1073741824"),
        (lambda r: r.update(name="Arrival_Delay"), "name", "DNS-1123"),
        (lambda r: r.update(colour="blue"), "colour", "remove it"),
        (lambda r: r["features"].append({"name": "delayed", "type": "int"}), "target.column", "leak"),
        (lambda r: r["training"].update(validation_split=0, nfolds=0), "training.validation_split", "nfolds"),
        (lambda r: r["cluster"].update(backend="yarn"), "cluster.backend", "local, kubernetes"),
        (lambda r: r["cluster"].update(replicas="two"), "cluster.replicas", "integer"),
        (lambda r: r["cluster"].update(endpoint_mode="ingress"), "cluster.endpoint_mode", "port-forward"),
        (lambda r: r["cluster"].update(jvm_options=["-XX:+UseSerialGC", "-Xmx8g"]), "cluster.jvm_options[1]",
         "cluster.memory"),
        (lambda r: r["cluster"].update(jvm_options=["-XX:+UseSerialGC -Xss2m"]), "cluster.jvm_options[0]",
         "own list item"),
        (lambda r: r["cluster"].update(jvm_options="-XX:+UseSerialGC"), "cluster.jvm_options", "list"),
        (lambda r: r["cluster"].update(jvm_options=["-XX:MaxHeapSize=8g"]), "cluster.jvm_options[0]", "cluster.memory"),
        (lambda r: r["cluster"].update(jvm_options=["-XX:-UseContainerSupport"]), "cluster.jvm_options[0]", "remove"),
    ],
)
def test_bad_values_name_field_value_and_fix(mutate, field, needle):
    data = example()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        config.parse(data)
    assert err.value.field == field
    assert needle in str(err.value)
    assert "Fix:" in str(err.value)


def test_invalid_yaml_names_position(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nfeatures: [a, b\n")
    with pytest.raises(ConfigError) as err:
        config.load(bad)
    assert "line" in str(err.value.value) and "not valid YAML" in str(err.value)


def test_duplicate_pipeline_names(tmp_path):
    for n in ("a.yaml", "b.yaml"):
        (tmp_path / n).write_text(EXAMPLE.read_text())
    with pytest.raises(ConfigError) as err:
        config.load_dir(tmp_path)
    assert err.value.field == "name" and err.value.file == str(tmp_path / "b.yaml")
    assert str(tmp_path / "a.yaml") in str(err.value)
    assert config.load_checked(tmp_path / "a.yaml").name == "arrival-delay"  # the earlier file keeps working


def test_after_training_needs_an_output_uri():
    raw = config.to_dict(config.load(EXAMPLE))
    assert raw["scoring"]["after_training"] is True
    raw["scoring"]["output_uri"] = ""
    with pytest.raises(ConfigError) as err:
        config.parse(raw)
    assert err.value.field == "scoring.after_training" and "output_uri" in str(err.value)
    raw["scoring"]["after_training"] = "yes"
    with pytest.raises(ConfigError, match=r"scoring\.after_training"):
        config.parse(raw)


@pytest.mark.parametrize(
    ("changes", "field", "needle"),
    [
        # the predictions would be written over, inside or around the input partitions
        ({"scoring": {"output_uri": "s3://h2o-demo/flights"}}, "scoring.output_uri", "source prefix"),
        ({"scoring": {"output_uri": "s3://h2o-demo/flights/predictions"}}, "scoring.output_uri", "source prefix"),
        ({"scoring": {"output_uri": "s3://h2o-demo"}}, "scoring.output_uri", "source prefix"),
        # ... or share keys with the registry
        ({"scoring": {"output_uri": "s3://h2o-demo/models/arrival-delay"}}, "scoring.output_uri", "registry_uri"),
        ({"scoring": {"output_uri": "s3://h2o-demo/models/arrival-delay/preds"}}, "scoring.output_uri", "registry_uri"),
        ({"registry_uri": "s3://h2o-demo/predictions/arrival-delay/models"}, "scoring.output_uri", "registry_uri"),
        # a Hive pipeline scoring into its own source table
        ({"source": {"kind": "hive", "hive": {"table": "Flights"}}, "scoring": {"hive_table": "flights"}},
         "scoring.hive_table", "source table"),
        ({"scoring": {"hive_location": "relative/dir"}}, "scoring.hive_location", "absolute path"),
        ({"scoring": {"retain_attempts_minutes": 0}}, "scoring.retain_attempts_minutes", "between"),
        ({"quality_gate": {"allow_older_interval": "yes"}}, "quality_gate.allow_older_interval", "true or false"),
        ({"schedule": {"data_intervals": 1}}, "schedule.data_intervals", "true or false"),
    ],
)
def test_outputs_that_overlap_inputs_are_refused_naming_the_field(changes, field, needle):
    if "source" in changes:  # a source of another kind, in place of the example's
        changes = {**changes, "source": whole({**changes["source"], "training_window_days": 28})}
    with pytest.raises(ConfigError) as err:
        variant(**changes)
    assert err.value.field == field and needle in str(err.value), str(err.value)


def test_prefixes_that_only_share_a_beginning_do_not_overlap():
    cfg = variant(scoring={"output_uri": "s3://h2o-demo/flights-predictions"})  # not inside s3://h2o-demo/flights
    assert cfg.scoring.output_uri == "s3://h2o-demo/flights-predictions"


@pytest.mark.parametrize("shared", ["registry_uri", "scoring.output_uri", "scoring.hive_table"])
def test_a_later_file_sharing_an_output_is_refused_and_the_earlier_keeps_working(tmp_path, shared):
    first, second = example(), example()
    second["name"] = "second"
    second["registry_uri"] = "s3://h2o-demo/models/second"
    second["scoring"] = {**second["scoring"], "output_uri": "s3://h2o-demo/predictions/second", "hive_table": "second"}
    section, _, key = shared.rpartition(".")
    target = second[section] if section else second
    target[key] = (first[section] if section else first)[key]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(first))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(second))
    assert config.load_checked(tmp_path / "a.yaml").name == "arrival-delay"
    with pytest.raises(ConfigError) as err:
        config.load_checked(tmp_path / "b.yaml")
    assert err.value.field == shared and err.value.file == str(tmp_path / "b.yaml")
    assert str(tmp_path / "a.yaml") in str(err.value) and str(tmp_path / "b.yaml") in str(err.value)


@pytest.mark.parametrize(("cluster", "field", "needle"), [
    ({"ttl_minutes": 120, "max_run_minutes": 60}, "cluster.max_run_minutes", "below ttl_minutes"),
    ({"max_run_minutes": 3}, "cluster.max_run_minutes", "between"),
    ({"unobservable_grace_s": 1}, "cluster.unobservable_grace_s", "between"),
    ({"kubernetes_conn_id": "my k8s"}, "cluster.kubernetes_conn_id", "not an Airflow connection id"),
    ({"kubernetes_conn_id": ""}, "cluster.kubernetes_conn_id", "not an Airflow connection id"),
])
def test_lifecycle_settings_are_checked(cluster, field, needle):
    with pytest.raises(ConfigError) as err:
        variant(cluster=cluster)
    assert err.value.field == field and needle in str(err.value)


def test_tls_is_for_the_kubernetes_backend_and_its_secret_names_are_checked():
    tls = variant(cluster={"backend": "kubernetes", "tls": {"secret": "h2o-tls"}}).cluster.tls
    assert (tls.keystore, tls.ca_key, tls.password_secret, tls.password_key) == ("keystore.p12", "ca.crt", "",
                                                                                  "password")
    with pytest.raises(ConfigError) as local:
        variant(cluster={"tls": {"secret": "h2o-tls"}})
    assert local.value.field == "cluster.tls" and "backend: kubernetes" in str(local.value)
    with pytest.raises(ConfigError) as bad:
        variant(cluster={"backend": "kubernetes", "tls": {"secret": "H2O_TLS"}})
    assert bad.value.field == "cluster.tls.secret"
