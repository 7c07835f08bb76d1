"""Pipeline configuration: one YAML file per model pipeline, loaded into typed objects.

Validation happens here, once, with errors that name the field, the value and the fix,
so a bad pipeline file fails when the DAG is parsed in review, not mid-run.
This module imports neither H2O nor Airflow: it is cheap enough for DAG parse time.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from h2o_tasks.errors import ConfigError

FEATURE_TYPES = ("int", "real", "enum")
ALGORITHMS = ("gbm", "xgboost", "glm", "drf")
PROBLEMS = ("binary", "regression")
METRICS_HIGHER_IS_BETTER = {"auc": True, "aucpr": True, "r2": True, "logloss": False,
                            "rmse": False, "mae": False, "mse": False}
SOURCE_KINDS = ("s3", "hive")
CLIENT_FETCH_LIMIT = 1 << 30  # source.s3.client_fetch_max_bytes: what an Airflow worker may hold
FORMATS = ("parquet", "csv")
BACKENDS = ("local", "kubernetes")
ENDPOINT_MODES = ("service", "pod-ip", "port-forward")  # how Airflow reaches the leader on Kubernetes
SCORING_ENGINES = ("cluster", "offline")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MEMORY = re.compile(r"^(\d+)([mMgG])$")


@dataclass(frozen=True)
class ClusterConfig:
    """Size and placement of the ephemeral H2O cluster of one run."""

    backend: str = "local"
    replicas: int = 2
    memory: str = "2g"
    nthreads: int = 0
    jvm_options: tuple[str, ...] = ()
    # the cluster expires this long after its creation and after the start of each task that uses
    # it (the janitor, and on Kubernetes the cluster itself, delete an expired cluster); every task's
    # execution_timeout too
    ttl_minutes: int = 180
    # however long its tasks keep it alive, a cluster never outlives this (from its creation)
    max_run_minutes: int = 720
    ready_timeout_s: int = 300
    # a cluster that cannot be observed (API server restarting, leader in a long GC pause) fails the
    # task only after this long; a failed pod, an exited node or a shrunken cloud fail it at once
    unobservable_grace_s: int = 60
    # a task that lost its cluster fails retryably, and its retry makes the cluster again (same name)
    # and redoes what lived in it (the import, the training); off: the whole run must be cleared
    rebuild_on_loss: bool = True
    # kubernetes only
    namespace: str = "h2o"
    # the Airflow connection to the cluster's API server (every task of the pipeline, and the janitor)
    kubernetes_conn_id: str = "kubernetes_default"
    image: str = "h2o-airflow/h2o:3.46.0.11"
    cpu: str = "1"
    cluster_domain: str = "cluster.local"
    lookup_timeout_s: int = 120
    probe_port: int = 8081
    endpoint_mode: str = "service"
    scratch_size: str = "10Gi"
    s3_secret: str = ""
    client_pod_labels: dict[str, str] = field(default_factory=lambda: {"tier": "airflow"})
    client_namespace: str = ""

    @property
    def memory_mb(self) -> int:
        number, unit = _MEMORY.match(self.memory).groups()  # validated at load
        return int(number) * (1024 if unit.lower() == "g" else 1)


@dataclass(frozen=True)
class S3SourceConfig:
    """Date-partitioned files under ``uri``: ``{uri}/dt=YYYY-MM-DD/*.{format}``."""

    uri: str
    format: str = "parquet"
    # inputs up to this many bytes are downloaded by the task (in threads) and uploaded as one
    # file; bigger ones are read by the nodes themselves. H2O's import costs ~10 ms per file
    # (365 daily files: 6-9x the raw download); 0 has the nodes read every input. The task
    # holds the decoded columns in memory (several times the compressed size): at most 1 GiB
    client_fetch_max_bytes: int = 64 << 20


@dataclass(frozen=True)
class HiveSourceConfig:
    """A Hive table partitioned by a date column."""

    table: str
    partition_column: str = "dt"
    database: str = "default"
    # results up to this many rows come through the client (no Spark write, no staging);
    # 0 stages every result (measured crossover here: ~25k rows fetched 1.8x faster than staged,
    # ~330k rows staged 1.2x faster than fetched)
    client_fetch_max_rows: int = 100_000


@dataclass(frozen=True)
class SourceConfig:
    kind: str
    training_window_days: int = 30
    s3: S3SourceConfig | None = None
    hive: HiveSourceConfig | None = None


@dataclass(frozen=True)
class Feature:
    name: str
    type: str


@dataclass(frozen=True)
class TargetConfig:
    """The label. ``threshold`` turns a numeric column into a binary label (column > threshold)."""

    column: str
    problem: str = "binary"
    name: str = ""
    threshold: float | None = None

    @property
    def label(self) -> str:
        return self.name or self.column


@dataclass(frozen=True)
class AlgorithmConfig:
    algo: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AutoMLConfig:
    max_models: int = 5
    max_runtime_secs: int = 120


@dataclass(frozen=True)
class TrainingConfig:
    algorithms: tuple[AlgorithmConfig, ...] = (AlgorithmConfig("gbm"),)
    automl: AutoMLConfig | None = None
    seed: int = 42
    validation_split: float = 0.2
    nfolds: int = 0
    metric: str = "auc"
    # algorithms trained at once in the cluster (0: all of them). Small data leaves the nodes
    # waiting on each other between trees; a second model fills those gaps (same models, seeds fixed)
    parallelism: int = 0


@dataclass(frozen=True)
class QualityGateConfig:
    """Promote when ``metric`` passes ``threshold`` and is no worse than the champion by more than ``max_regression``."""

    metric: str = "auc"
    threshold: float = 0.0
    max_regression: float = 0.0
    # a run whose data interval ends before the champion's may replace it (a backfill of an
    # old week would otherwise never promote; by default it never does)
    allow_older_interval: bool = False


@dataclass(frozen=True)
class ScoringConfig:
    """Batch scoring. ``after_training``: the training DAG also scores the last day of its
    interval with the champion, in the cluster it trained in (one cluster for the whole run)."""

    engine: str = "cluster"
    output_uri: str = ""
    hive_table: str = ""
    id_columns: tuple[str, ...] = ()
    after_training: bool = False
    # where the Hive table's partitions live (one directory per commit attempt); a path or URI
    # HiveServer2 reads and the scoring task writes. Empty: $H2O_AIRFLOW_HIVE_STAGING_DIR/tables/<table>
    hive_location: str = ""
    # a replaced attempt of a partition stays this long for readers still on it, then the
    # next commit of that partition removes it (an attempt never committed: after the same time)
    retain_attempts_minutes: int = 60


@dataclass(frozen=True)
class ScheduleConfig:
    training: str | None = "@weekly"
    scoring: str | None = "@daily"
    start_date: date = date(2013, 1, 1)
    end_date: date | None = None
    max_active_runs: int = 3
    # true: each run covers the data interval between two ticks of its cron (Airflow's
    # CronDataIntervalTimetable): a weekly scoring run scores its seven days, one partition
    # each, once the week is over. false: a run covers its logical day only
    data_intervals: bool = False


@dataclass(frozen=True)
class PipelineConfig:
    """A model pipeline: where data comes from, what is trained, where models and scores go."""

    name: str
    source: SourceConfig
    features: tuple[Feature, ...]
    target: TargetConfig
    registry_uri: str
    description: str = ""
    owner: str = "airflow"
    cluster: ClusterConfig = ClusterConfig()
    training: TrainingConfig = TrainingConfig()
    quality_gate: QualityGateConfig = QualityGateConfig()
    scoring: ScoringConfig = ScoringConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    path: str = ""

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def with_overrides(self, **sections: dict[str, Any]) -> PipelineConfig:
        """A copy with some fields of some sections replaced, validated like the file.

        ``cfg.with_overrides(cluster={"replicas": 3})`` is how run-time params (a manual
        run, a backfill) change a pipeline without editing it.
        """
        raw = to_dict(self)
        for section, values in sections.items():
            if not values:
                continue
            if section not in raw or not isinstance(raw[section], dict):
                raise ConfigError(section, values, "is not a section that can be overridden",
                                  "override one of cluster, source, training, quality_gate, scoring")
            raw[section] = {**raw[section], **values}
        return parse(raw, path=self.path)


def to_dict(cfg: PipelineConfig) -> dict[str, Any]:
    """The configuration as plain data (the inverse of :func:`parse`)."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    raw = plain(dataclasses.asdict(cfg))
    raw.pop("path", None)
    return raw


# ---------------------------------------------------------------- parsing helpers


class _Section:
    """Reads typed fields out of one mapping, naming the full field path in errors."""

    def __init__(self, data: Any, where: str, known: tuple[str, ...]):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(where or "(top level)", data, "must be a mapping",
                              f"write {where or 'the file'} as 'key: value' lines")
        unknown = sorted(set(map(str, data)) - set(known))
        if unknown:
            raise ConfigError(self._path(where, unknown[0]), data[unknown[0]], "is not a known field",
                              f"remove it or use one of: {', '.join(known)}")
        self.data = data
        self.where = where

    @staticmethod
    def _path(where: str, key: str) -> str:
        return f"{where}.{key}" if where else key

    def path(self, key: str) -> str:
        return self._path(self.where, key)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, fix: str = "") -> Any:
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise ConfigError(self.path(key), None, "is required", fix or f"add '{key}:' under {self.where or 'the top level'}")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(self.path(key), value, f"must be {_kind_names(kinds)}", fix or f"give {key} a {_kind_names(kinds)} value")
        if not isinstance(value, kinds):
            raise ConfigError(self.path(key), value, f"must be {_kind_names(kinds)}", fix or f"give {key} a {_kind_names(kinds)} value")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = ...) -> Any:
        value = self.get(key, str, default)
        if value is not None and value not in choices:
            raise ConfigError(self.path(key), value, "is not supported", f"use one of: {', '.join(choices)}")
        return value

    def int_in(self, key: str, default: Any, lo: int, hi: int | None = None) -> int:
        value = self.get(key, int, default)
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise ConfigError(self.path(key), value, f"must be {bound}", f"set {key} to an integer {bound}")
        return value


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "a mapping", date: "a date (YYYY-MM-DD)"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


_JVM_OPTIONS_MANAGED = ("-Xmx", "-Xms", "-XX:MaxRAMPercentage", "-XX:InitialRAMPercentage", "-XX:MinRAMPercentage",
                        "-XX:MaxRAM", "-XX:MaxHeapSize", "-XX:InitialHeapSize", "-XX:MinHeapSize",
                        "-XX:-UseContainerSupport", "-jar", "-cp", "-classpath", "--class-path")


def _jvm_options(options: list[Any]) -> tuple[str, ...]:
    for i, opt in enumerate(options):
        if not isinstance(opt, str) or not opt.startswith("-") or any(c.isspace() for c in opt):
            raise ConfigError(f"cluster.jvm_options[{i}]", opt, "is not one JVM option",
                              "write each option as its own list item, e.g. -XX:TieredStopAtLevel=1")
        if opt.startswith(_JVM_OPTIONS_MANAGED):
            raise ConfigError(f"cluster.jvm_options[{i}]", opt, "is set by the backend (heap from cluster.memory, "
                                                               "H2O's jar)", "remove it; size the heap with cluster.memory")
    return tuple(options)


def _parse_cluster(data: Any) -> ClusterConfig:
    known = tuple(f.name for f in dataclasses.fields(ClusterConfig))
    s = _Section(data, "cluster", known)
    d = ClusterConfig()
    memory = s.get("memory", str, d.memory)
    if not _MEMORY.match(memory):
        raise ConfigError("cluster.memory", memory, "is not a size", "write a JVM heap size such as 2g or 1536m")
    cfg = ClusterConfig(
        backend=s.choice("backend", BACKENDS, d.backend),
        replicas=s.int_in("replicas", d.replicas, 1, 64),
        memory=memory,
        nthreads=s.int_in("nthreads", d.nthreads, 0),
        jvm_options=_jvm_options(list(s.get("jvm_options", (list, tuple), d.jvm_options))),
        ttl_minutes=s.int_in("ttl_minutes", d.ttl_minutes, 5),
        max_run_minutes=s.int_in("max_run_minutes", d.max_run_minutes, 5, 7 * 24 * 60),
        ready_timeout_s=s.int_in("ready_timeout_s", d.ready_timeout_s, 10),
        unobservable_grace_s=s.int_in("unobservable_grace_s", d.unobservable_grace_s, 5, 3600),
        rebuild_on_loss=s.get("rebuild_on_loss", bool, d.rebuild_on_loss),
        namespace=s.get("namespace", str, d.namespace),
        kubernetes_conn_id=s.get("kubernetes_conn_id", str, d.kubernetes_conn_id),
        image=s.get("image", str, d.image),
        cpu=str(s.get("cpu", (str, int, float), d.cpu)),
        cluster_domain=s.get("cluster_domain", str, d.cluster_domain),
        lookup_timeout_s=s.int_in("lookup_timeout_s", d.lookup_timeout_s, 5),
        probe_port=s.int_in("probe_port", d.probe_port, 1024, 65535),
        endpoint_mode=s.choice("endpoint_mode", ENDPOINT_MODES, d.endpoint_mode),
        scratch_size=s.get("scratch_size", str, d.scratch_size),
        s3_secret=s.get("s3_secret", str, d.s3_secret),
        client_pod_labels={str(k): str(v) for k, v in s.get("client_pod_labels", dict, d.client_pod_labels).items()},
        client_namespace=s.get("client_namespace", str, d.client_namespace),
    )
    if cfg.max_run_minutes < cfg.ttl_minutes:
        raise ConfigError("cluster.max_run_minutes", cfg.max_run_minutes, f"is below ttl_minutes ({cfg.ttl_minutes})",
                          "set max_run_minutes to at least ttl_minutes: it bounds the whole run")
    if cfg.probe_port in (54321, 54322):
        raise ConfigError("cluster.probe_port", cfg.probe_port, "collides with H2O's ports 54321/54322", "use 8081")
    if cfg.memory_mb < 256:
        raise ConfigError("cluster.memory", memory, "is below H2O's minimum of 256m per node", "use at least 1g per node")
    if not _DNS_LABEL.match(cfg.namespace):
        raise ConfigError("cluster.namespace", cfg.namespace, "is not a DNS-1123 label", "use lower-case letters, digits and '-'")
    if not _CONN_ID.match(cfg.kubernetes_conn_id):
        raise ConfigError("cluster.kubernetes_conn_id", cfg.kubernetes_conn_id, "is not an Airflow connection id",
                          "use letters, digits, '_', '-' and '.' (kubernetes_default unless you made another)")
    return cfg


def _check_uri(field_name: str, uri: str, scheme: str = "s3") -> str:
    if not uri.startswith(f"{scheme}://") or len(uri.split("/", 3)) < 3 or not uri.split("/", 3)[2]:
        raise ConfigError(field_name, uri, f"is not a {scheme}:// URI", f"write it as {scheme}://BUCKET/PREFIX")
    return uri.rstrip("/")


def _parse_source(data: Any) -> SourceConfig:
    s = _Section(data, "source", ("kind", "training_window_days", "s3", "hive"))
    kind = s.choice("kind", SOURCE_KINDS)
    window = s.int_in("training_window_days", 30, 1, 3660)
    if kind == "s3":
        s3 = _Section(s.get("s3", dict, fix="add 'source.s3: {uri: s3://BUCKET/PREFIX}'"), "source.s3",
                      ("uri", "format", "client_fetch_max_bytes"))
        return SourceConfig(kind, window, s3=S3SourceConfig(
            uri=_check_uri("source.s3.uri", s3.get("uri", str)),
            format=s3.choice("format", FORMATS, "parquet"),
            client_fetch_max_bytes=s3.int_in("client_fetch_max_bytes", S3SourceConfig.client_fetch_max_bytes, 0,
                                             CLIENT_FETCH_LIMIT)))
    h = _Section(s.get("hive", dict, fix="add 'source.hive: {table: NAME}'"), "source.hive",
                 ("table", "partition_column", "database", "client_fetch_max_rows"))
    hive = HiveSourceConfig(
        table=h.get("table", str), partition_column=h.get("partition_column", str, "dt"),
        database=h.get("database", str, "default"),
        client_fetch_max_rows=h.int_in("client_fetch_max_rows", HiveSourceConfig.client_fetch_max_rows, 0))
    for key in ("table", "partition_column", "database"):
        if not _IDENT.match(getattr(hive, key)):
            raise ConfigError(f"source.hive.{key}", getattr(hive, key), "is not a plain SQL identifier",
                              "use letters, digits and underscores only")
    return SourceConfig(kind, window, hive=hive)


def _parse_features(data: Any) -> tuple[Feature, ...]:
    if not isinstance(data, list) or not data:
        raise ConfigError("features", data, "must be a non-empty list", "list features as '- {name: COLUMN, type: int|real|enum}'")
    out: list[Feature] = []
    for i, item in enumerate(data):
        s = _Section(item, f"features[{i}]", ("name", "type"))
        name = s.get("name", str)
        if not _IDENT.match(name):
            raise ConfigError(f"features[{i}].name", name, "is not a plain column name", "use letters, digits and underscores")
        out.append(Feature(name, s.choice("type", FEATURE_TYPES)))
    names = [f.name for f in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError("features", dupes[0], "is listed twice", "list each feature once")
    return tuple(out)


def _parse_target(data: Any, features: tuple[Feature, ...]) -> TargetConfig:
    s = _Section(data, "target", ("column", "problem", "name", "threshold"))
    t = TargetConfig(column=s.get("column", str), problem=s.choice("problem", PROBLEMS, "binary"),
                     name=s.get("name", str, ""), threshold=s.get("threshold", float, None))
    if t.label in {f.name for f in features}:
        raise ConfigError("target.column", t.label, "is also listed as a feature", "remove it from features (it would leak the label)")
    if t.threshold is not None and t.problem != "binary":
        raise ConfigError("target.threshold", t.threshold, "only makes sense for problem: binary",
                          "remove threshold or set problem: binary")
    if t.threshold is not None and not t.name:
        raise ConfigError("target.name", None, "is required with a threshold (the derived label needs a name)", "add 'name: LABEL'")
    return t


def _parse_training(data: Any) -> TrainingConfig:
    s = _Section(data, "training", ("algorithms", "automl", "seed", "validation_split", "nfolds", "metric",
                                    "parallelism"))
    algos: list[AlgorithmConfig] = []
    for i, item in enumerate(s.get("algorithms", list, [{"algo": "gbm"}])):
        a = _Section(item, f"training.algorithms[{i}]", ("algo", "params"))
        algos.append(AlgorithmConfig(a.choice("algo", ALGORITHMS), dict(a.get("params", dict, {}))))
    automl = None
    if s.data.get("automl"):
        am = _Section(s.get("automl", dict), "training.automl", ("max_models", "max_runtime_secs"))
        automl = AutoMLConfig(am.int_in("max_models", 5, 1, 100), am.int_in("max_runtime_secs", 120, 10))
    if not algos and automl is None:
        raise ConfigError("training.algorithms", [], "is empty and automl is off", "list at least one algorithm or configure automl")
    split = s.get("validation_split", float, 0.2)
    if not 0.0 <= split < 0.9:
        raise ConfigError("training.validation_split", split, "must be in [0, 0.9)", "use a fraction such as 0.2")
    nfolds = s.int_in("nfolds", 0, 0, 20)
    if nfolds == 1:
        raise ConfigError("training.nfolds", 1, "cross-validation needs at least 2 folds", "use 0 (off) or 2..20")
    if split == 0 and nfolds == 0:
        raise ConfigError("training.validation_split", 0, "leaves no validation data while nfolds is 0",
                          "set validation_split (e.g. 0.2) or nfolds (e.g. 5)")
    return TrainingConfig(tuple(algos), automl, s.get("seed", int, 42), split, nfolds,
                          s.choice("metric", tuple(METRICS_HIGHER_IS_BETTER), "auc"), s.int_in("parallelism", 0, 0, 64))


def _parse_gate(data: Any, default_metric: str) -> QualityGateConfig:
    s = _Section(data, "quality_gate", ("metric", "threshold", "max_regression", "allow_older_interval"))
    gate = QualityGateConfig(s.choice("metric", tuple(METRICS_HIGHER_IS_BETTER), default_metric),
                             s.get("threshold", float, 0.0), s.get("max_regression", float, 0.0),
                             s.get("allow_older_interval", bool, False))
    if gate.max_regression < 0:
        raise ConfigError("quality_gate.max_regression", gate.max_regression, "must not be negative", "use 0 or a small positive margin")
    return gate


def _parse_scoring(data: Any) -> ScoringConfig:
    s = _Section(data, "scoring", ("engine", "output_uri", "hive_table", "id_columns", "after_training",
                                   "hive_location", "retain_attempts_minutes"))
    out = s.get("output_uri", str, "")
    hive_table = s.get("hive_table", str, "")
    if hive_table and not _IDENT.match(hive_table):
        raise ConfigError("scoring.hive_table", hive_table, "is not a plain SQL identifier", "use letters, digits and underscores only")
    ids = s.get("id_columns", list, [])
    for i, col in enumerate(ids):
        if not isinstance(col, str) or not _IDENT.match(col):
            raise ConfigError(f"scoring.id_columns[{i}]", col, "is not a plain column name", "use letters, digits and underscores")
    after_training = s.get("after_training", bool, False)
    if after_training and not out:
        raise ConfigError("scoring.after_training", True, "needs scoring.output_uri (where the predictions go)",
                          "set scoring.output_uri: s3://BUCKET/PREFIX, or after_training: false")
    hive_location = s.get("hive_location", str, "")
    if hive_location and not (hive_location.startswith("/") or re.match(r"^[a-z][a-z0-9+.-]*://", hive_location)):
        raise ConfigError("scoring.hive_location", hive_location, "is neither an absolute path nor a URI",
                          "write it as /PATH or hdfs://HOST/PATH, a place HiveServer2 reads and the scoring task writes")
    return ScoringConfig(s.choice("engine", SCORING_ENGINES, "cluster"),
                         _check_uri("scoring.output_uri", out) if out else "", hive_table, tuple(ids), after_training,
                         hive_location.rstrip("/"), s.int_in("retain_attempts_minutes", 60, 1, 60 * 24 * 30))


def _parse_schedule(data: Any) -> ScheduleConfig:
    s = _Section(data, "schedule", ("training", "scoring", "start_date", "end_date", "max_active_runs",
                                    "data_intervals"))
    d = ScheduleConfig()
    sched = ScheduleConfig(s.get("training", str, d.training), s.get("scoring", str, d.scoring),
                           s.get("start_date", date, d.start_date), s.get("end_date", date, None),
                           s.int_in("max_active_runs", d.max_active_runs, 1, 64),
                           s.get("data_intervals", bool, d.data_intervals))
    if sched.end_date and sched.end_date < sched.start_date:
        raise ConfigError("schedule.end_date", str(sched.end_date), "is before start_date", "set end_date after start_date")
    return sched


def parse(raw: Any, path: str = "") -> PipelineConfig:
    """Validate plain data (as loaded from YAML) into a :class:`PipelineConfig`."""
    known = ("name", "description", "owner", "cluster", "source", "features", "target", "training",
             "quality_gate", "registry_uri", "scoring", "schedule")
    s = _Section(raw, "", known)
    name = s.get("name", str)
    if not _DNS_LABEL.match(name) or len(name) > 30:
        raise ConfigError("name", name, "must be a DNS-1123 label of at most 30 characters (it names clusters)",
                          "use lower-case letters, digits and '-', starting with a letter")
    features = _parse_features(s.data.get("features"))
    training = _parse_training(s.data.get("training"))
    scoring = _parse_scoring(s.data.get("scoring"))
    cfg = PipelineConfig(
        name=name,
        description=s.get("description", str, ""),
        owner=s.get("owner", str, "airflow"),
        cluster=_parse_cluster(s.data.get("cluster")),
        source=_parse_source(s.get("source", dict, fix="add a 'source:' section with kind: s3 or kind: hive")),
        features=features,
        target=_parse_target(s.get("target", dict, fix="add 'target: {column: NAME}'"), features),
        training=training,
        quality_gate=_parse_gate(s.data.get("quality_gate"), training.metric),
        registry_uri=_check_uri("registry_uri", s.get("registry_uri", str)),
        scoring=scoring,
        schedule=_parse_schedule(s.data.get("schedule")),
        path=path,
    )
    _check_outputs(cfg)
    return cfg


def _nested(a: str, b: str) -> bool:
    """Equal, or one inside the other, by whole path segments."""
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _check_outputs(cfg: PipelineConfig) -> None:
    """Refuse outputs that would overwrite or delete the pipeline's own inputs or models."""
    out = cfg.scoring.output_uri
    if out and cfg.source.kind == "s3" and _nested(out, cfg.source.s3.uri):
        raise ConfigError("scoring.output_uri", out, f"overlaps the source prefix source.s3.uri = {cfg.source.s3.uri} "
                          "(predictions would be written among, or over, the input partitions)",
                          "write predictions under a prefix of their own")
    if out and _nested(out, cfg.registry_uri):
        raise ConfigError("scoring.output_uri", out, f"overlaps registry_uri = {cfg.registry_uri} "
                          "(predictions and model versions would share keys)",
                          "give predictions and the registry prefixes of their own")
    if (cfg.scoring.hive_table and cfg.source.kind == "hive" and cfg.source.hive.database.lower() == "default"
            and cfg.scoring.hive_table.lower() == cfg.source.hive.table.lower()):
        raise ConfigError("scoring.hive_table", cfg.scoring.hive_table, "is the source table "
                          f"(source.hive.table = {cfg.source.hive.table}): scoring would write into its own input",
                          "name another table for the predictions")


def _shared_outputs(cfg: PipelineConfig, other: PipelineConfig) -> tuple[str, str] | None:
    """The first output of ``cfg`` that ``other`` also writes: (field, value)."""
    if cfg.name == other.name:
        return "name", cfg.name
    if _nested(cfg.registry_uri, other.registry_uri):
        return "registry_uri", cfg.registry_uri
    if cfg.scoring.output_uri and other.scoring.output_uri and _nested(cfg.scoring.output_uri, other.scoring.output_uri):
        return "scoring.output_uri", cfg.scoring.output_uri
    if cfg.scoring.hive_table and cfg.scoring.hive_table.lower() == other.scoring.hive_table.lower():
        return "scoring.hive_table", cfg.scoring.hive_table
    return None


def load(path: str | Path) -> PipelineConfig:
    """Load and validate one pipeline file."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError("path", str(p), "does not exist", "point to an existing pipeline YAML file") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(str(p), where, f"is not valid YAML ({getattr(exc, 'problem', exc)})",
                          "fix the YAML syntax at that position") from None
    try:
        return parse(raw, path=str(p))
    except ConfigError as exc:
        raise exc.in_file(str(p)) from None


def load_checked(path: str | Path) -> PipelineConfig:
    """Load one pipeline file and refuse it if an earlier file of its directory writes the same outputs.

    Earlier means sorted before it by file name; files that do not load are left to their own
    error. So of two pipelines sharing a name, a ``registry_uri``, a ``scoring.output_uri`` or
    a ``scoring.hive_table``, the later file is refused (its error names both files) and the
    earlier one keeps working.
    """
    p = Path(path)
    cfg = load(p)
    for other_path in sorted(p.parent.glob("*.yaml")):
        if other_path.name >= p.name:
            break
        try:
            other = load(other_path)
        except ConfigError:
            continue
        shared = _shared_outputs(cfg, other)
        if shared:
            raise ConfigError(shared[0], shared[1], f"is also used by the earlier pipeline file {other_path} "
                              "(two pipelines would overwrite each other's DAGs, models or predictions)",
                              f"give this pipeline its own {shared[0]}", file=str(p))
    return cfg


def load_dir(directory: str | Path) -> list[PipelineConfig]:
    """Load every ``*.yaml`` pipeline in a directory, sorted by file name; the first bad one raises."""
    return [load_checked(p) for p in sorted(Path(directory).glob("*.yaml"))]
