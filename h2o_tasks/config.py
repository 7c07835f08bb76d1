"""Pipeline configuration: one YAML file per model pipeline, loaded into typed objects.

Every field is declared once (:func:`h2o_tasks.settings.setting`): its doc, accepted values,
range and checks. The parser, the JSON Schema (``python -m h2o_tasks schema``) and the
README's table of fields come from those declarations. Validation happens here, once, with
errors that name the file, the field, the value and the fix, every problem of a file at
once, so a bad pipeline file fails when the DAG is parsed in review, not mid-run.
This module imports neither H2O nor Airflow: it is cheap enough for DAG parse time.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from h2o_tasks import syntax
from h2o_tasks.errors import ConfigError, ConfigErrors
from h2o_tasks.settings import Problems, read_values, setting

FEATURE_TYPES = ("int", "real", "enum")
ALGORITHMS = ("gbm", "xgboost", "glm", "drf")
PROBLEMS = ("binary", "multiclass", "regression")
METRICS_HIGHER_IS_BETTER = {"auc": True, "aucpr": True, "r2": True, "logloss": False, "mean_per_class_error": False,
                            "rmse": False, "mae": False, "mse": False}
# the metrics H2O computes for each problem (what training reports and the gate can use)
# (multiclass auc: the macro average of one-vs-rest AUCs, which H2O computes when asked: auc_type MACRO_OVR)
PROBLEM_METRICS = {"binary": ("auc", "aucpr", "logloss", "mean_per_class_error", "rmse"),
                   "multiclass": ("logloss", "mean_per_class_error", "auc", "rmse"),
                   "regression": ("rmse", "mae", "mse", "r2")}
DEFAULT_METRIC = {"binary": "auc", "multiclass": "logloss", "regression": "rmse"}
# the values a metric can take: a gate threshold outside them can never pass (or never fail)
METRIC_RANGES: dict[str, tuple[float | None, float | None]] = {
    "auc": (0.0, 1.0), "aucpr": (0.0, 1.0), "r2": (None, 1.0),
    "logloss": (0.0, None), "mean_per_class_error": (0.0, 1.0), "rmse": (0.0, None), "mae": (0.0, None),
    "mse": (0.0, None)}
SOURCE_KINDS = ("s3", "hive")
GRANULARITIES = ("day", "hour")
HIVE_DATE_FORMATS = ("date", "datetime")
CLIENT_FETCH_LIMIT = 1 << 30  # source.s3.client_fetch_max_bytes: what an Airflow worker may hold
FORMATS = ("parquet", "csv")
BACKENDS = ("local", "kubernetes")
ENDPOINT_MODES = ("service", "pod-ip", "port-forward")  # how Airflow reaches the leader on Kubernetes
SCORING_ENGINES = ("cluster", "offline", "hive")
# estimator arguments the pipeline sets itself (from features, target and the run)
PIPELINE_PARAMS = ("model_id", "training_frame", "validation_frame", "x", "y", "response_column", "ignored_columns")
_PARAM_NAME = r"[a-z_][a-z0-9_]*"
SCHEMA_ID = "https://github.com/h2o-airflow/h2o-airflow/schema/pipeline.schema.json"

_JVM_OPTIONS_MANAGED = ("-Xmx", "-Xms", "-XX:MaxRAMPercentage", "-XX:InitialRAMPercentage", "-XX:MinRAMPercentage",
                        "-XX:MaxRAM", "-XX:MaxHeapSize", "-XX:InitialHeapSize", "-XX:MinHeapSize",
                        "-XX:-UseContainerSupport", "-jar", "-cp", "-classpath", "--class-path")


def _jvm_options(path: str, options: tuple[str, ...]) -> tuple[str, ...]:
    for i, opt in enumerate(options):
        if not opt.startswith("-") or any(c.isspace() for c in opt):
            raise ConfigError(f"{path}[{i}]", opt, "is not one JVM option",
                              "write each option as its own list item, e.g. -XX:TieredStopAtLevel=1")
        if opt.startswith(_JVM_OPTIONS_MANAGED):
            raise ConfigError(f"{path}[{i}]", opt, "is set by the backend (heap from cluster.memory, H2O's jar)",
                              "remove it; size the heap with cluster.memory")
    return options


def _s3_uri(path: str, uri: str) -> str:
    if not uri:
        return uri
    if not uri.startswith("s3://") or len(uri.split("/", 3)) < 3 or not uri.split("/", 3)[2] or any(c.isspace() for c in uri):
        raise ConfigError(path, uri, "is not an s3:// URI", "write it as s3://BUCKET/PREFIX")
    return uri.rstrip("/")


def _hive_location(path: str, location: str) -> str:
    if location and not (location.startswith("/") or re.fullmatch(r"[a-z][a-z0-9+.-]*://\S+", location)):
        raise ConfigError(path, location, "is neither an absolute path nor a URI",
                          "write it as /PATH or hdfs://HOST/PATH, a place HiveServer2 reads and the scoring task writes")
    return location.rstrip("/")


def _split(path: str, value: float) -> float:
    if not 0.0 <= value < 0.9:
        raise ConfigError(path, value, "must be in [0, 0.9)", "use a fraction such as 0.2")
    return value


def _nfolds(path: str, value: int) -> int:
    if value == 1:
        raise ConfigError(path, 1, "cross-validation needs at least 2 folds", "use 0 (off) or 2..20")
    return value


def _params(path: str, params: dict[str, Any]) -> dict[str, Any]:
    for key, value in params.items():
        if not re.fullmatch(_PARAM_NAME, key):
            raise ConfigError(f"{path}.{key}", value, "is not an H2O parameter name",
                              "write H2O's own snake_case name, e.g. ntrees, max_depth, learn_rate")
        if key in PIPELINE_PARAMS:
            raise ConfigError(f"{path}.{key}", value, "is set by the pipeline (from features, target and the run)",
                              "remove it; list columns under features and the label under target")
    return params


def _features(path: str, features: tuple[Feature, ...]) -> tuple[Feature, ...]:
    if not features:
        raise ConfigError(path, [], "must be a non-empty list", "list features as '- {name: COLUMN, type: int|real|enum}'")
    names = [f.name for f in features]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(path, dupes[0], "is listed twice", "list each feature once")
    return features


SECRET_KEY = r"[-._a-zA-Z0-9]{1,253}"  # a key of a Secret's data


@dataclass(frozen=True)
class TlsConfig:
    """Kubernetes: H2O's REST API (and Flow) over HTTPS, from a keystore in a Secret, verified by the clients.

    The Secret's layout is cert-manager's: a Certificate with ``keystores.pkcs12`` writes
    ``keystore.p12`` and ``ca.crt`` into its Secret, and the keystore's password into the Secret
    its ``passwordSecretRef`` names. The certificate must name the address the clients use: the
    client Service's DNS name (``service``), the pods' addresses (``pod-ip``), or 127.0.0.1
    (``port-forward``)."""

    secret: str = setting(pattern=syntax.DNS_SUBDOMAIN, problem="is not a Secret name",
                          fix="use the name of a Secret in the namespace holding the keystore and ca.crt",
                          doc="The Secret holding the nodes' keystore and the CA certificate the clients trust.")
    keystore: str = setting("keystore.p12", pattern=SECRET_KEY, problem="is not a Secret key",
                            fix="name the key of the keystore in the Secret (cert-manager: keystore.p12 or keystore.jks)",
                            doc="The key of the PKCS#12 (or JKS) keystore in the Secret: H2O's -jks.")
    ca_key: str = setting("ca.crt", pattern=SECRET_KEY, problem="is not a Secret key",
                          fix="name the key of the PEM CA certificate in the Secret (cert-manager: ca.crt)",
                          doc="The key of the PEM certificate of the CA that signed H2O's (what the clients trust).")
    password_secret: str = setting("", pattern=f"({syntax.DNS_SUBDOMAIN})?", problem="is not a Secret name",
                                   fix="use the name of the Secret holding the keystore's password",
                                   doc="The Secret holding the keystore's password (empty: the keystore's Secret).")
    password_key: str = setting("password", pattern=SECRET_KEY, problem="is not a Secret key",
                                fix="name the key of the keystore's password in its Secret",
                                doc="The key of the keystore's password: H2O's -jks_pass.")


@dataclass(frozen=True)
class IngressConfig:
    """Kubernetes: a per-run Ingress to H2O Flow, made and deleted with the cluster."""

    host: str = setting(pattern=syntax.INGRESS_HOST, problem="is not a host name template",
                        fix="write a DNS name with {cluster} in its first label, e.g. {cluster}.h2o.example.com",
                        doc="The Ingress host; {cluster} is replaced by the cluster's name (one host per run).")
    class_name: str = setting("", pattern=f"({syntax.DNS_SUBDOMAIN})?", problem="is not an IngressClass name",
                              fix="use the name of an IngressClass (kubectl get ingressclass)",
                              doc="The IngressClass (empty: the cluster's default class).")
    tls_secret: str = setting("", pattern=f"({syntax.DNS_SUBDOMAIN})?", problem="is not a Secret name",
                              fix="use the name of a kubernetes.io/tls Secret in the namespace (a wildcard "
                              "certificate for the host template)",
                              doc="A TLS Secret for the host (empty: plain HTTP at the Ingress).")
    annotations: dict[str, str] = setting(factory=dict, check=syntax.annotations,
                                          doc="Annotations for the Ingress controller (timeouts, auth, ...).")
    controller_namespace: str = setting("ingress-nginx", pattern=syntax.DNS_LABEL, problem="is not a DNS-1123 label",
                                        fix="use the namespace your Ingress controller runs in",
                                        doc="Where the Ingress controller's pods run: the NetworkPolicy lets them "
                                        "reach port 54321.")

    def host_for(self, cluster: str) -> str:
        return self.host.replace("{cluster}", cluster)


@dataclass(frozen=True)
class ClusterConfig:
    """Size and placement of the ephemeral H2O cluster of one run."""

    backend: str = setting("local", choices=BACKENDS, doc="Where the cluster runs: JVMs on this machine, or a "
                           "StatefulSet with a headless Service.")
    replicas: int = setting(2, lo=1, hi=64, doc="H2O nodes in the cluster.")
    memory: str = setting("2g", pattern=syntax.JVM_SIZE, problem="is not a size",
                          fix="write a JVM heap size such as 2g or 1536m", doc="JVM heap per node (at least 256m).")
    nthreads: int = setting(0, lo=0, doc="Threads per node; 0: every core the node has.")
    jvm_options: tuple[str, ...] = setting((), check=_jvm_options, doc="Extra JVM options, one per item (not the heap, "
                                           "which comes from memory).")
    ttl_minutes: int = setting(180, lo=5, doc="The cluster expires this long after its creation and after the start "
                               "of each task that uses it (the janitor deletes an expired cluster); every task's "
                               "execution_timeout too.")
    max_run_minutes: int = setting(720, lo=5, hi=7 * 24 * 60, doc="However long its tasks keep it alive, a cluster "
                                   "never outlives this (from its creation); at least ttl_minutes.")
    ready_timeout_s: int = setting(300, lo=10, doc="How long the create task waits for the leader and a whole cloud.")
    unobservable_grace_s: int = setting(60, lo=5, hi=3600, doc="A cluster that cannot be observed (API server "
                                        "restarting, leader in a long GC pause) fails the task only after this long; "
                                        "a failed pod, an exited node or a shrunken cloud fail it at once.")
    rebuild_on_loss: bool = setting(True, doc="A task that lost its cluster fails retryably, and its retry makes the "
                                    "cluster again (same name) and redoes what lived in it; false: the whole run "
                                    "must be cleared.")
    namespace: str = setting("h2o", pattern=syntax.DNS_LABEL, problem="is not a DNS-1123 label",
                             fix="use lower-case letters, digits and '-'", doc="Kubernetes: the namespace of the "
                             "cluster's objects.")
    kubernetes_conn_id: str = setting("kubernetes_default", pattern=syntax.CONN_ID,
                                      problem="is not an Airflow connection id",
                                      fix="use letters, digits, '_', '-' and '.' (kubernetes_default unless you made "
                                          "another)", doc="Kubernetes: the Airflow connection to the API server (every "
                                      "task of the pipeline, and the janitor).")
    image: str = setting("h2o-airflow/h2o:3.46.0.11", pattern=syntax.IMAGE, problem="is not an image reference",
                         fix="write [REGISTRY[:PORT]/]PATH[:TAG][@sha256:DIGEST] in lower case, no spaces",
                         doc="Kubernetes: the H2O image (its h2o.jar must match the h2o client's version).")
    cpu: str = setting("1", kinds=(str, int, float), check=syntax.quantity, pattern=syntax.QUANTITY,
                       problem="is not a Kubernetes quantity", fix="write e.g. 500m or 2", doc="Kubernetes: CPU request and limit "
                       "per node, a quantity (1, 500m).")
    cluster_domain: str = setting("cluster.local", pattern=syntax.DNS_SUBDOMAIN, problem="is not a DNS subdomain",
                                  fix="use the cluster's DNS domain, e.g. cluster.local",
                                  doc="Kubernetes: the cluster's DNS domain (the nodes find each other through it).")
    lookup_timeout_s: int = setting(120, lo=5, doc="Kubernetes: how long a node waits for its peers' DNS records.")
    probe_port: int = setting(8081, lo=1024, hi=65535, doc="Kubernetes: the port of the nodes' readiness probe "
                              "(not 54321/54322).")
    endpoint_mode: str = setting("service", choices=ENDPOINT_MODES, doc="Kubernetes: how Airflow reaches the leader.")
    scratch_size: str = setting("10Gi", check=syntax.quantity, pattern=syntax.QUANTITY,
                                problem="is not a Kubernetes quantity", fix="write e.g. 10Gi or 512Mi",
                                doc="Kubernetes: the size of each node's scratch volume (emptyDir), a quantity.")
    s3_secret: str = setting("", pattern=f"({syntax.DNS_SUBDOMAIN})?", problem="is not a Secret name",
                             fix="use the name of a Secret in the namespace (a DNS subdomain)",
                             doc="Kubernetes: a Secret holding the nodes' S3 credentials (AWS_ACCESS_KEY_ID ...); "
                             "set, no credentials go over the cluster's REST API.")
    client_pod_labels: dict[str, str] = setting(factory=lambda: {"tier": "airflow"}, check=syntax.labels,
                                                doc="Kubernetes: labels of the Airflow pods the NetworkPolicy lets "
                                                "reach the cluster.")
    client_namespace: str = setting("", pattern=f"({syntax.DNS_LABEL})?", problem="is not a DNS-1123 label",
                                    fix="use lower-case letters, digits and '-'",
                                    doc="Kubernetes: the namespace of those Airflow pods (empty: the cluster's).")
    tls: TlsConfig | None = setting(None, doc="Kubernetes: HTTPS for H2O's REST API and Flow, with a keystore from "
                                    "a Secret; every client verifies the certificate against its CA (none: HTTP).")
    ingress: IngressConfig | None = setting(None, doc="Kubernetes: an Ingress that opens H2O Flow from a browser "
                                            "outside the cluster (none: the H2O Flow link opens a page with the "
                                            "kubectl port-forward to the run's leader).")

    @property
    def memory_mb(self) -> int:
        return int(self.memory[:-1]) * (1024 if self.memory[-1] in "gG" else 1)  # validated at load

    @staticmethod
    def _check(cfg: ClusterConfig, where: str) -> None:
        if cfg.max_run_minutes < cfg.ttl_minutes:
            raise ConfigError(f"{where}.max_run_minutes", cfg.max_run_minutes, f"is below ttl_minutes ({cfg.ttl_minutes})",
                              "set max_run_minutes to at least ttl_minutes: it bounds the whole run")
        if cfg.probe_port in (54321, 54322):
            raise ConfigError(f"{where}.probe_port", cfg.probe_port, "collides with H2O's ports 54321/54322", "use 8081")
        if cfg.tls is not None and cfg.backend != "kubernetes":
            raise ConfigError(f"{where}.tls", cfg.tls.secret, f"is for the kubernetes backend, and backend is "
                              f"{cfg.backend} (whose nodes listen on loopback only)",
                              "remove cluster.tls, or set cluster.backend: kubernetes")
        if cfg.memory_mb < 256:
            raise ConfigError(f"{where}.memory", cfg.memory, "is below H2O's minimum of 256m per node",
                              "use at least 1g per node")


@dataclass(frozen=True)
class S3SourceConfig:
    """Date-partitioned files under ``uri``: ``{uri}/{partitions}/*.{format}``, ``dt=YYYY-MM-DD`` by default."""

    uri: str = setting(check=_s3_uri, pattern=syntax.S3_URI, problem="is not an s3:// URI",
                       fix="write it as s3://BUCKET/PREFIX", doc="The prefix of the partitions, s3://BUCKET/PREFIX.")
    format: str = setting("parquet", choices=FORMATS, doc="The files' format.")
    partitions: str = setting("dt={date}", check=syntax.partition_template, doc="The layout of the partition "
                              "directories under uri: {date} (YYYY-MM-DD), or {year} {month} {day}; an hour level "
                              "{hour} (HH) last if the data has one (a day then reads its 24 hours), e.g. "
                              "year={year}/month={month}/day={day} or dt={date}/hr={hour}.")
    client_fetch_max_bytes: int = setting(64 << 20, lo=0, hi=CLIENT_FETCH_LIMIT, doc="Inputs up to this many bytes "
                                          "are downloaded by the task (in threads) and uploaded as one file; bigger "
                                          "ones are read by the nodes themselves; 0: the nodes read every input.")


@dataclass(frozen=True)
class HiveSourceConfig:
    """A Hive table with a date column (a partition column of YYYY-MM-DD values, by default) or a date-time column."""

    table: str = setting(pattern=syntax.SQL_IDENTIFIER, problem="is not a plain SQL identifier",
                         fix="use letters, digits and underscores only", doc="The source table.")
    partition_column: str = setting("dt", pattern=syntax.SQL_IDENTIFIER, problem="is not a plain SQL identifier",
                                    fix="use letters, digits and underscores only",
                                    doc="The column that dates each row: a partition column of YYYY-MM-DD values "
                                    "(partition_format: date), or a date-time (partition_format: datetime).")
    partition_format: str = setting("date", choices=HIVE_DATE_FORMATS, doc="date: the column holds YYYY-MM-DD "
                                    "(compared as text: each day one partition); datetime: a timestamp or its ISO "
                                    "text (2013-02-04T10:00:00Z), compared as an instant, so hourly runs read it by "
                                    "the hour (text without a zone is read in HiveServer2's session time zone).")
    database: str = setting("default", pattern=syntax.SQL_IDENTIFIER, problem="is not a plain SQL identifier",
                            fix="use letters, digits and underscores only", doc="The table's database.")
    client_fetch_max_rows: int = setting(100_000, lo=0, doc="Results up to this many rows come through the client "
                                         "(no staging); 0 stages every result.")


@dataclass(frozen=True)
class SourceConfig:
    """Where training and scoring data come from: the section of the kind chosen is used (an override
    can switch kinds, so the other may be present)."""

    kind: str = setting(choices=SOURCE_KINDS, doc="s3: the cluster imports the files itself; hive: a query.")
    training_window_days: int = setting(30, lo=1, hi=3660, doc="Train on this many days before the run's interval end.")
    s3: S3SourceConfig | None = setting(None, doc="The S3 source (kind: s3).")
    hive: HiveSourceConfig | None = setting(None, doc="The Hive source (kind: hive).")
    granularity: str = setting("day", choices=GRANULARITIES, doc="The unit of scoring: day (each day of a run's "
                               "interval is read and committed as dt=YYYY-MM-DD) or hour (each hour as "
                               "dt=YYYY-MM-DD/hr=HH; needs an S3 layout with an {hour} level).")

    @staticmethod
    def _check(cfg: SourceConfig, where: str) -> None:
        if getattr(cfg, cfg.kind) is None:
            example = "{uri: s3://BUCKET/PREFIX}" if cfg.kind == "s3" else "{table: NAME}"
            raise ConfigError(f"{where}.{cfg.kind}", None, f"is required (kind: {cfg.kind})",
                              f"add '{where}.{cfg.kind}: {example}'")
        hourly = (cfg.kind == "s3" and "{hour}" in cfg.s3.partitions) or (
            cfg.kind == "hive" and cfg.hive.partition_format == "datetime")
        if cfg.granularity == "hour" and not hourly:
            raise ConfigError(f"{where}.granularity", "hour", "needs data it can read by the hour: an S3 source whose "
                              "partitions have an {hour} level, or a Hive source with partition_format: datetime",
                              "set source.s3.partitions: dt={date}/hr={hour} (or your layout with {hour} last), "
                              "source.hive.partition_format: datetime, or granularity: day")


@dataclass(frozen=True)
class Feature:
    """One input column."""

    name: str = setting(pattern=syntax.SQL_IDENTIFIER, problem="is not a plain column name",
                        fix="use letters, digits and underscores", doc="The column.")
    type: str = setting(choices=FEATURE_TYPES, doc="How H2O reads it.")


@dataclass(frozen=True)
class TargetConfig:
    """The label. ``threshold`` turns a numeric column into a binary label (column > threshold)."""

    column: str = setting(pattern=syntax.SQL_IDENTIFIER, problem="is not a plain column name",
                          fix="use letters, digits and underscores", doc="The label's column (or the numeric "
                          "column a threshold turns into one).")
    problem: str = setting("binary", choices=PROBLEMS, doc="What is predicted: one of two classes, one of "
                           "several, or a number.")
    name: str = setting("", pattern=f"({syntax.SQL_IDENTIFIER})?", problem="is not a plain column name",
                        fix="use letters, digits and underscores", doc="The name of the label derived with "
                        "threshold (only with threshold).")
    threshold: float | None = setting(None, doc="Binary only: label = column > threshold; rows without the column "
                                      "are dropped.")

    @property
    def label(self) -> str:
        return self.name or self.column

    @staticmethod
    def _check(t: TargetConfig, where: str) -> None:
        if t.threshold is not None and t.problem != "binary":
            raise ConfigError(f"{where}.threshold", t.threshold, "only makes sense for problem: binary",
                              "remove threshold or set problem: binary")
        if t.threshold is not None and not t.name:
            raise ConfigError(f"{where}.name", None, "is required with a threshold (the derived label needs a name)",
                              "add 'name: LABEL'")
        if t.name and t.threshold is None:
            raise ConfigError(f"{where}.name", t.name, "names a label derived with threshold, and there is no threshold",
                              f"remove name (the label is the column {t.column}), or add a threshold (binary)")


@dataclass(frozen=True)
class AlgorithmConfig:
    """One algorithm and its H2O parameters."""

    algo: str = setting(choices=ALGORITHMS, doc="H2O's algorithm.")
    params: dict[str, Any] = setting(factory=dict, check=_params, doc="H2O's own parameter names and values (checked "
                                     "against the installed H2O by `python -m h2o_tasks validate`).")


@dataclass(frozen=True)
class AutoMLConfig:
    """H2O AutoML beside (or instead of) the listed algorithms."""

    max_models: int = setting(5, lo=1, hi=100, doc="Models AutoML trains at most.")
    max_runtime_secs: int = setting(120, lo=10, doc="AutoML's time budget.")


@dataclass(frozen=True)
class TrainingConfig:
    """What is trained, and how it is validated and compared."""

    algorithms: tuple[AlgorithmConfig, ...] = setting((AlgorithmConfig("gbm"),), doc="The algorithms trained; the "
                                                      "best by metric is exported.", default_doc="one gbm")
    automl: AutoMLConfig | None = setting(None, doc="AutoML settings; absent: no AutoML.")
    seed: int = setting(42, doc="Seed of the split and of every algorithm.")
    validation_split: float = setting(0.2, check=_split, doc="Fraction of rows held out for validation, in [0, 0.9).")
    nfolds: int = setting(0, lo=0, hi=20, check=_nfolds, doc="Cross-validation folds (0: off; else 2..20), used "
                          "instead of the split for the metrics.")
    metric: str = setting("auc", choices=tuple(METRICS_HIGHER_IS_BETTER), doc="The metric that picks the best model; "
                          "one the problem has (binary: auc, aucpr, logloss, mean_per_class_error, rmse; multiclass: logloss, "
                          "mean_per_class_error, auc (macro one-vs-rest), rmse; regression: rmse, mae, mse, r2).",
                          default_doc="auc (binary), logloss (multiclass), rmse (regression)")
    parallelism: int = setting(0, lo=0, hi=64, doc="Algorithms trained at once in the cluster (0: all of them).")

    @staticmethod
    def _check(t: TrainingConfig, where: str) -> None:
        if not t.algorithms and t.automl is None:
            raise ConfigError(f"{where}.algorithms", [], "is empty and automl is off",
                              "list at least one algorithm or configure automl")
        if t.validation_split == 0 and t.nfolds == 0:
            raise ConfigError(f"{where}.validation_split", 0, "leaves no validation data while nfolds is 0",
                              "set validation_split (e.g. 0.2) or nfolds (e.g. 5)")


@dataclass(frozen=True)
class QualityGateConfig:
    """Promote when ``metric`` passes ``threshold`` and is no worse than the champion by more than ``max_regression``."""

    metric: str = setting("auc", choices=tuple(METRICS_HIGHER_IS_BETTER), doc="The metric gated on.",
                          default_doc="training.metric")
    threshold: float = setting(0.0, doc="Never promote a model worse than this (within the metric's range; for a "
                               "lower-is-better metric 0 means no threshold).")
    max_regression: float = setting(0.0, lo=0.0, doc="Nor one worse than the champion by more than this.")
    allow_older_interval: bool = setting(False, doc="A run whose data interval ends before the champion's may "
                                         "replace it (a backfill of an old week otherwise never promotes).")


@dataclass(frozen=True)
class ScoringConfig:
    """Batch scoring. ``after_training``: the training DAG also scores the last day of its
    interval with the champion, in the cluster it trained in (one cluster for the whole run)."""

    engine: str = setting("cluster", choices=SCORING_ENGINES, doc="cluster: distributed predict; offline: the MOJO "
                          "in the task, no cluster (S3 sources); hive: the MOJO inside HiveServer2 through the "
                          "h2o_predict UDF, no cluster (Hive sources).")
    output_uri: str = setting("", check=_s3_uri, pattern=f"({syntax.S3_URI})?", problem="is not an s3:// URI",
                              fix="write it as s3://BUCKET/PREFIX", doc="Where predictions go, s3://BUCKET/PREFIX (one partition per day).")
    hive_table: str = setting("", pattern=f"({syntax.SQL_IDENTIFIER})?", problem="is not a plain SQL identifier",
                              fix="use letters, digits and underscores only", doc="A Hive table the predictions are "
                              "also committed to (empty: none).")
    id_columns: tuple[str, ...] = setting((), pattern=syntax.SQL_IDENTIFIER, problem="is not a plain column name",
                                          fix="use letters, digits and underscores",
                                          doc="Input columns copied beside each prediction.")
    after_training: bool = setting(False, doc="The training DAG also scores its interval's last day, in the same "
                                   "cluster.")
    hive_location: str = setting("", check=_hive_location, doc="Where the Hive table's partitions live (a path or URI "
                                 "HiveServer2 reads and the scoring task writes). Empty: "
                                 "$H2O_AIRFLOW_HIVE_STAGING_DIR/tables/TABLE.")
    retain_attempts_minutes: int = setting(60, lo=1, hi=60 * 24 * 30, doc="A replaced attempt of a partition stays "
                                           "this long for readers still on it.")

    @staticmethod
    def _check(s: ScoringConfig, where: str) -> None:
        if s.after_training and not s.output_uri:
            raise ConfigError(f"{where}.after_training", True, "needs scoring.output_uri (where the predictions go)",
                              "set scoring.output_uri: s3://BUCKET/PREFIX, or after_training: false")


@dataclass(frozen=True)
class ScheduleConfig:
    """When the training and scoring DAGs run."""

    training: str | None = setting("@weekly", check=syntax.schedule, doc="The training DAG's schedule: a cron "
                                   "expression, a preset, or null (manual runs only).")
    scoring: str | None = setting("@daily", check=syntax.scoring_schedule, doc="The scoring DAG's schedule (null: no "
                                  "scoring DAG runs on its own; on_new_champion: each time a training run promotes a "
                                  "new champion, scoring the last day of that run's interval; on_new_data: each time "
                                  "an event is added to the S3 source's Asset, scoring the days named in its extra "
                                  "'day', else the day of the run).")
    start_date: date = setting(date(2013, 1, 1), doc="The first logical date.")
    end_date: date | None = setting(None, doc="The last logical date (none: open-ended).")
    max_active_runs: int = setting(3, lo=1, hi=64, doc="Runs of one DAG at once (each has its own cluster).")
    data_intervals: bool = setting(False, doc="true: each run covers the data interval between two ticks of its cron "
                                   "(a weekly scoring run scores its seven days); false: a run covers its logical day.")

    @staticmethod
    def _check(s: ScheduleConfig, where: str) -> None:
        if s.end_date and s.end_date < s.start_date:
            raise ConfigError(f"{where}.end_date", str(s.end_date), "is before start_date", "set end_date after start_date")
        if s.data_intervals and s.scoring in syntax.ON_ASSET:
            raise ConfigError(f"{where}.scoring", s.scoring, "has no data interval (data_intervals: true)",
                              "use a cron expression or preset, or data_intervals: false")
        for key in ("training", "scoring"):
            if s.data_intervals and getattr(s, key) == "@once":
                raise ConfigError(f"{where}.{key}", "@once", "has no data interval (data_intervals: true)",
                                  "use a cron expression or preset, or data_intervals: false")


NOTIFIERS = ("smtp", "http")


@dataclass(frozen=True)
class NotifierConfig:
    """One Airflow notifier of a provider: ``smtp`` (the smtp provider's SmtpNotifier, an e-mail) or ``http``
    (the http provider's HttpNotifier: a JSON POST to a webhook)."""

    kind: str = setting(choices=NOTIFIERS, doc="smtp: an e-mail; http: a JSON POST to a webhook.")
    conn_id: str = setting("", pattern=f"({syntax.CONN_ID})?", problem="is not an Airflow connection id",
                           fix="use letters, digits, '_', '.' and '-'",
                           doc="The Airflow connection (empty: the provider's default, smtp_default or http_default).")
    to: tuple[str, ...] = setting((), pattern=r"[^@\s,]+@[^@\s,]+", problem="is not an e-mail address",
                                  fix="write one address per item, name@example.com", doc="smtp: the recipients.")
    endpoint: str = setting("", doc="http: the path on the connection's host that is POSTed to.")

    @staticmethod
    def _check(n: NotifierConfig, where: str) -> None:
        if n.kind == "smtp" and not n.to:
            raise ConfigError(f"{where}.to", list(n.to), "is empty: an e-mail needs a recipient",
                              "list the addresses, to: [ml-oncall@example.com]")
        if n.kind == "http" and n.to:
            raise ConfigError(f"{where}.to", list(n.to), "is for kind: smtp (a webhook has no recipients)",
                              "remove 'to', or use kind: smtp")


@dataclass(frozen=True)
class NotifyConfig:
    """Who is told what, through Airflow's notifiers."""

    on_failure: tuple[NotifierConfig, ...] = setting((), doc="Told when a task of a run fails (its DAG, run, task, "
                                                     "try and error).")
    on_gate_refused: tuple[NotifierConfig, ...] = setting((), doc="Told when a trained model does not become the "
                                                          "champion (the gate's reason and both models' metrics).")


@dataclass(frozen=True)
class PipelineConfig:
    """A model pipeline: where data comes from, what is trained, where models and scores go."""

    name: str = setting(pattern=r"(?=.{1,30}$)[a-z]([-a-z0-9]*[a-z0-9])?",
                        problem="must be a DNS-1123 label of at most 30 characters (it names clusters)",
                        fix="use lower-case letters, digits and '-', starting with a letter",
                        doc="The pipeline's name: its DAGs, clusters and outputs are named after it.")
    source: SourceConfig = setting(fix="add a 'source:' section with kind: s3 or kind: hive", doc="The data.")
    features: tuple[Feature, ...] = setting(check=_features, fix="list features as '- {name: COLUMN, type: "
                                            "int|real|enum}'", doc="The input columns.")
    target: TargetConfig = setting(fix="add 'target: {column: NAME}'", doc="The label.")
    registry_uri: str = setting(check=_s3_uri, pattern=syntax.S3_URI, problem="is not an s3:// URI",
                                fix="write it as s3://BUCKET/PREFIX", doc="The model registry, s3://BUCKET/PREFIX.")
    description: str = setting("", doc="Shown as the DAGs' description.")
    owner: str = setting("airflow", doc="The DAGs' owner.")
    cluster: ClusterConfig = setting(ClusterConfig(), doc="The ephemeral H2O cluster.")
    training: TrainingConfig = setting(TrainingConfig(), doc="Training.")
    quality_gate: QualityGateConfig = setting(QualityGateConfig(), doc="The promotion gate.")
    scoring: ScoringConfig = setting(ScoringConfig(), doc="Batch scoring.")
    schedule: ScheduleConfig = setting(ScheduleConfig(), doc="Schedules.")
    notify: NotifyConfig = setting(NotifyConfig(), doc="Notifications.")
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



# ---------------------------------------------------------------- the checks across sections


def _given(raw: Any, section: str, key: str) -> bool:
    part = raw.get(section) if isinstance(raw, dict) else None
    return isinstance(part, dict) and part.get(key) is not None


def _problem_defaults(raw: Any, values: dict[str, Any]) -> None:
    """Defaults that follow the problem: training.metric from it, quality_gate.metric from training.metric."""
    target, training, gate = values.get("target"), values.get("training"), values.get("quality_gate")
    if target is not None and training is not None and not _given(raw, "training", "metric"):
        values["training"] = training = dataclasses.replace(training, metric=DEFAULT_METRIC[target.problem])
    if training is not None and gate is not None and not _given(raw, "quality_gate", "metric"):
        values["quality_gate"] = dataclasses.replace(gate, metric=training.metric)


def _check_label(values: dict[str, Any]) -> None:
    target, features = values.get("target"), values.get("features")
    if target is None or features is None:
        return
    names = {f.name for f in features}
    if target.label in names:
        raise ConfigError("target.column", target.label,
                          "is also listed as a feature", "remove it from features (it would leak the label)")
    if target.threshold is not None and target.column in names:
        raise ConfigError("target.column", target.column, f"is also listed as a feature, and the label {target.name} "
                          f"is derived from it (a leak: {target.column} > {target.threshold:g} is the label)",
                          f"remove {target.column} from features")


def _check_metrics(values: dict[str, Any]) -> None:
    target = values.get("target")
    if target is None:
        return
    allowed = PROBLEM_METRICS[target.problem]
    for section in ("training", "quality_gate"):
        part = values.get(section)
        if part is not None and part.metric not in allowed:
            raise ConfigError(f"{section}.metric", part.metric, f"is not a metric of problem: {target.problem}",
                              f"use one of: {', '.join(allowed)}")


def _check_threshold(values: dict[str, Any]) -> None:
    gate = values.get("quality_gate")
    if gate is None:
        return
    lo, hi = METRIC_RANGES[gate.metric]
    if (lo is not None and gate.threshold < lo) or (hi is not None and gate.threshold > hi):
        span = f"[{lo:g}, {hi:g}]" if lo is not None and hi is not None else (f"[{lo:g}, ∞)" if lo is not None
                                                                               else f"(-∞, {hi:g}]")
        raise ConfigError("quality_gate.threshold", gate.threshold, f"is outside the values {gate.metric} can take "
                          f"{span}: the gate could never pass", f"use a threshold in {span}")


def _check_outputs(values: dict[str, Any]) -> None:
    """Refuse outputs that would overwrite or delete the pipeline's own inputs or models."""
    scoring, source, registry_uri = values.get("scoring"), values.get("source"), values.get("registry_uri")
    if scoring is None:
        return
    out = scoring.output_uri
    if out and source is not None and source.kind == "s3" and _nested(out, source.s3.uri):
        raise ConfigError("scoring.output_uri", out, f"overlaps the source prefix source.s3.uri = {source.s3.uri} "
                          "(predictions would be written among, or over, the input partitions)",
                          "write predictions under a prefix of their own")
    if out and registry_uri and _nested(out, registry_uri):
        raise ConfigError("scoring.output_uri", out, f"overlaps registry_uri = {registry_uri} "
                          "(predictions and model versions would share keys)",
                          "give predictions and the registry prefixes of their own")
    if (scoring.hive_table and source is not None and source.kind == "hive" and source.hive.database.lower() == "default"
            and scoring.hive_table.lower() == source.hive.table.lower()):
        raise ConfigError("scoring.hive_table", scoring.hive_table, "is the source table "
                          f"(source.hive.table = {source.hive.table}): scoring would write into its own input",
                          "name another table for the predictions")


def _check_engine(values: dict[str, Any]) -> None:
    scoring, source = values.get("scoring"), values.get("source")
    if scoring is None or source is None:
        return
    needs = {"offline": "s3", "hive": "hive"}.get(scoring.engine)
    if needs and source.kind != needs:
        why = ("reads the S3 partitions itself" if needs == "s3"
               else "scores the Hive source table inside HiveServer2 (whose Spark has no S3 file system here)")
        raise ConfigError("scoring.engine", scoring.engine, f"{why}, and source.kind is {source.kind}",
                          f"use engine: {'hive' if source.kind == 'hive' else 'offline'} or cluster for a "
                          f"{source.kind} source")


def _check_data_schedule(values: dict[str, Any]) -> None:
    schedule, source = values.get("schedule"), values.get("source")
    if schedule is None or source is None or schedule.scoring != syntax.ON_NEW_DATA or source.kind == "s3":
        return
    raise ConfigError("schedule.scoring", schedule.scoring, f"waits on the S3 source's Asset, and source.kind is "
                      f"{source.kind} (a Hive table has no Asset here)",
                      "use a cron expression or preset, or on_new_champion, for a Hive source")


_CROSS_CHECKS = (_check_label, _check_metrics, _check_threshold, _check_outputs, _check_engine, _check_data_schedule)


def problems_of(raw: Any, path: str = "") -> tuple[PipelineConfig | None, list[ConfigError]]:
    """The configuration, or None, and every problem found in plain data (as loaded from YAML)."""
    problems = Problems()
    values = read_values(PipelineConfig, raw, "", problems)
    if values is None:
        return None, problems.errors
    _problem_defaults(raw, values)
    for check in _CROSS_CHECKS:
        problems.check(lambda check=check: check(values))
    if problems.errors:
        return None, problems.errors
    return PipelineConfig(**values, path=path), []


def parse(raw: Any, path: str = "") -> PipelineConfig:
    """Validate plain data (as loaded from YAML) into a :class:`PipelineConfig`; every problem at once."""
    cfg, errors = problems_of(raw, path)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    return cfg


def _nested(a: str, b: str) -> bool:
    """Equal, or one inside the other, by whole path segments."""
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


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


def _yaml(p: Path) -> Any:
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError("path", str(p), "does not exist", "point to an existing pipeline YAML file") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(str(p), where, f"is not valid YAML ({getattr(exc, 'problem', exc)})",
                          "fix the YAML syntax at that position") from None


def _shared_with_earlier(cfg: PipelineConfig, p: Path) -> ConfigError | None:
    for other_path in sorted(p.parent.glob("*.yaml")):
        if other_path.name >= p.name:
            break
        other, _ = check_file(other_path, siblings=False)
        shared = _shared_outputs(cfg, other) if other is not None else None
        if shared:
            return ConfigError(shared[0], shared[1], f"is also used by the earlier pipeline file {other_path} "
                               "(two pipelines would overwrite each other's DAGs, models or predictions)",
                               f"give this pipeline its own {shared[0]}", file=str(p))
    return None


def check_file(path: str | Path, *, siblings: bool = True) -> tuple[PipelineConfig | None, list[ConfigError]]:
    """One pipeline file: its configuration (None if it has problems) and every problem, each naming the file.

    ``siblings``: also refuse the file if an earlier file of its directory (sorted by name; files
    that do not load are left to their own error) writes the same outputs: of two pipelines sharing
    a name, a ``registry_uri``, a ``scoring.output_uri`` or a ``scoring.hive_table``, the later
    file is refused (its error names both files) and the earlier one keeps working.
    """
    p = Path(path)
    try:
        raw = _yaml(p)
    except ConfigError as exc:
        return None, [exc.in_file(str(p)) if exc.field != str(p) else exc]
    cfg, errors = problems_of(raw, str(p))
    errors = [e.in_file(str(p)) for e in errors]
    if cfg is not None and siblings:
        shared = _shared_with_earlier(cfg, p)
        if shared is not None:
            return None, [shared]
    return cfg, errors


def _loaded(path: str | Path, siblings: bool) -> PipelineConfig:
    cfg, errors = check_file(path, siblings=siblings)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors, file=str(path))
    return cfg


def load(path: str | Path) -> PipelineConfig:
    """Load and validate one pipeline file (every problem in one error)."""
    return _loaded(path, siblings=False)


def load_checked(path: str | Path) -> PipelineConfig:
    """Load one pipeline file and refuse it if an earlier file of its directory writes the same
    outputs (see :func:`check_file`)."""
    return _loaded(path, siblings=True)


def load_dir(directory: str | Path) -> list[PipelineConfig]:
    """Load every ``*.yaml`` pipeline in a directory, sorted by file name; the first bad one raises."""
    return [load_checked(p) for p in sorted(Path(directory).glob("*.yaml"))]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a pipeline file, from the same declarations as the parser."""
    from h2o_tasks.settings import json_schema as schema_of

    return schema_of(PipelineConfig, "H2O pipeline", SCHEMA_ID)


def fields_table() -> str:
    """The README's table of the pipeline file's fields, from the same declarations as the parser."""
    from h2o_tasks.settings import markdown_table

    return markdown_table(PipelineConfig)
