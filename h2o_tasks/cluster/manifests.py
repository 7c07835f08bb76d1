"""Render the Kubernetes objects of one run's H2O cluster from the templates in ``k8s/templates``.

The templates are the single source of truth: this module only computes the values (names,
DNS, sizes, the JVM command) and renders them. Secrets never enter a manifest: S3
credentials reach the cluster at run time, or from a Kubernetes Secret by reference, and the
REST login's Secret is made by the backend at create time (the pods mount it by name).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from h2o_tasks.cluster import login
from h2o_tasks.cluster.base import ClusterSpec

TEMPLATES = ("job-anchor", "statefulset", "service-headless", "service-client", "poddisruptionbudget",
             "networkpolicy")
EXPIRES_ANNOTATION = "h2o-airflow/expires-at"
CEILING_ANNOTATION = "h2o-airflow/ceiling-at"
REAPING_ANNOTATION = "h2o-airflow/reaping-since"  # set by the janitor before it deletes: no task extends it
EXTENDED_ANNOTATION = "h2o-airflow/extended-at"  # written by every extend: a version even when the expiry stays
DAG_ID_ANNOTATION = "h2o-airflow/dag-id"  # the exact ids (labels hold sanitised ones)
RUN_ID_ANNOTATION = "h2o-airflow/run-id"
HEAP_PERCENT = 75  # -XX:MaxRAMPercentage: the rest of the container is for the JVM's native memory
H2O_JAR_IN_IMAGE = "/opt/h2o/h2o.jar"
LOGIN_DIR = "/etc/h2o-login"  # the login Secret's hash file, mounted read-only
TLS_DIR = "/etc/h2o-tls"  # the keystore (H2O's -jks), from the Secret cluster.tls names
TLS_PASSWORD_ENV = "H2O_KEYSTORE_PASSWORD"


def templates_dir() -> Path:
    env = os.environ.get("H2O_AIRFLOW_K8S_TEMPLATES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "k8s" / "templates"


@cache
def _environment(directory: str) -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(directory), undefined=jinja2.StrictUndefined,
                              autoescape=False, keep_trailing_newline=True)


@dataclass(frozen=True)
class Manifest:
    """One rendered object, as text (what ``kubectl apply`` would read) and as data."""

    kind: str
    name: str
    text: str

    @property
    def body(self) -> dict[str, Any]:
        return yaml.safe_load(self.text)

    @property
    def filename(self) -> str:
        return f"{self.kind.lower()}-{self.name}.yaml"


def container_memory_mi(heap_mb: int) -> int:
    """The container limit whose ``MaxRAMPercentage`` share is the configured heap (256Mi steps)."""
    return int(math.ceil(heap_mb * 100 / HEAP_PERCENT / 256) * 256)


def service_names(name: str) -> tuple[str, str]:
    """(headless discovery Service, client Service)."""
    return f"{name}-nodes", name


def login_secret_name(name: str) -> str:
    """The Secret that holds the cluster's REST login (made by the backend at create, never rendered)."""
    return f"{name}-login"


def anchor_name(name: str) -> str:
    """The Job that owns every other object of the cluster (its cluster-side time-to-live)."""
    return f"{name}-anchor"


def ceiling_seconds(spec: ClusterSpec, now: datetime | None = None) -> int:
    if spec.ceiling_at is None:
        return 7 * 24 * 3600
    return max(1, math.ceil((spec.ceiling_at - (now or datetime.now(UTC))).total_seconds()))


def values(spec: ClusterSpec) -> dict[str, Any]:
    """Every value the templates use, computed from the spec."""
    cfg = spec.config
    headless, client = service_names(spec.name)
    selector = {"app.kubernetes.io/instance": spec.name, "app.kubernetes.io/name": "h2o"}
    annotations = {EXPIRES_ANNOTATION: spec.expires_at.isoformat() if spec.expires_at else "",
                   CEILING_ANNOTATION: spec.ceiling_at.isoformat() if spec.ceiling_at else "",
                   DAG_ID_ANNOTATION: spec.dag_id, RUN_ID_ANNOTATION: spec.run_id}
    command = ["java", "-XX:+UseContainerSupport", f"-XX:MaxRAMPercentage={HEAP_PERCENT}",
               "-Djava.io.tmpdir=/tmp", *cfg.jvm_options]
    if spec.s3_endpoint:
        command += [f"-Dsys.ai.h2o.persist.s3.endPoint={spec.s3_endpoint}", "-Dsys.ai.h2o.persist.s3.enable.path.style=true"]
    command += ["-jar", H2O_JAR_IN_IMAGE, "-name", spec.name, "-ice_root", "/data/ice", "-log_dir", "/data/logs",
                "-log_level", "INFO", "-hash_login", "-login_conf", f"{LOGIN_DIR}/{login.REALM_FILE}"]
    if cfg.nthreads:
        command += ["-nthreads", str(cfg.nthreads)]
    if cfg.tls:  # the password from the pod's environment: Kubernetes expands $(VAR) in the command
        command += ["-jks", f"{TLS_DIR}/{cfg.tls.keystore}", "-jks_pass", f"$({TLS_PASSWORD_ENV})"]
    return {
        "name": spec.name,
        "namespace": cfg.namespace,
        "labels": spec.labels,
        "annotations": annotations,
        # the pods carry the run's ids only: an expiry there would roll the pods when it is extended
        "pod_annotations": {DAG_ID_ANNOTATION: spec.dag_id, RUN_ID_ANNOTATION: spec.run_id},
        "anchor": anchor_name(spec.name),
        "ceiling_s": ceiling_seconds(spec),
        "selector": selector,
        "replicas": cfg.replicas,
        "image": cfg.image,
        "command": command,
        "headless_service": headless,
        "client_service": client,
        "service_dns": f"{headless}.{cfg.namespace}.svc.{cfg.cluster_domain}",
        "lookup_timeout_s": cfg.lookup_timeout_s,
        "probe_port": cfg.probe_port,
        "cpu": cfg.cpu,
        "container_memory": f"{container_memory_mi(cfg.memory_mb)}Mi",
        "scratch_size": cfg.scratch_size,
        "s3_secret": cfg.s3_secret,
        "login_secret": login_secret_name(spec.name),
        "login_dir": LOGIN_DIR,
        "login_file": login.REALM_FILE,
        "tls_secret": cfg.tls.secret if cfg.tls else "",
        "tls_keystore": cfg.tls.keystore if cfg.tls else "",
        "tls_password_secret": (cfg.tls.password_secret or cfg.tls.secret) if cfg.tls else "",
        "tls_password_key": cfg.tls.password_key if cfg.tls else "",
        "tls_password_env": TLS_PASSWORD_ENV,
        "tls_dir": TLS_DIR,
        "client_selector": cfg.client_pod_labels,
        "client_namespace": cfg.client_namespace,
        "ingress_host": cfg.ingress.host_for(spec.name) if cfg.ingress else "",
        "ingress_class": cfg.ingress.class_name if cfg.ingress else "",
        "ingress_tls_secret": cfg.ingress.tls_secret if cfg.ingress else "",
        "ingress_annotations": {**(cfg.ingress.annotations if cfg.ingress else {}), **annotations},
        "ingress_controller_namespace": cfg.ingress.controller_namespace if cfg.ingress else "",
    }


def render(spec: ClusterSpec, directory: Path | None = None) -> list[Manifest]:
    """The objects of the cluster, in the order they are applied."""
    env = _environment(str(directory or templates_dir()))
    ctx = values(spec)
    out = []
    for template in TEMPLATES + (("ingress",) if spec.config.ingress else ()):
        text = env.get_template(f"{template}.yaml.j2").render(**ctx)
        body = yaml.safe_load(text)
        out.append(Manifest(kind=body["kind"], name=body["metadata"]["name"], text=text))
    return out


def write(manifests: list[Manifest], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in manifests:
        path = out_dir / m.filename
        path.write_text(m.text)
        paths.append(path)
    return paths
