"""Names and labels of a run's cluster.

A cluster name is a DNS-1123 label of at most 63 characters derived from the pipeline and a
hash of (dag_id, run_id): concurrent backfill runs never collide and a retry of the same run
finds its own cluster again.
"""

from __future__ import annotations

import hashlib
import re

MANAGED_BY = "h2o-airflow"
MAX_NAME = 63
# StatefulSet pod names append "-<ordinal>" and the controller adds a revision label of
# name + "-" + 10-char hash; keep room for both under 63 characters.
_MAX_PREFIX = 63 - 1 - 10 - 1 - 8


def _sanitize(value: str, limit: int) -> str:
    text = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
    text = re.sub(r"-{2,}", "-", text)[:limit].rstrip("-")
    return text or "x"


def run_hash(dag_id: str, run_id: str, length: int = 8) -> str:
    return hashlib.sha256(f"{dag_id}\x00{run_id}".encode()).hexdigest()[:length]


def cluster_name(pipeline: str, dag_id: str, run_id: str) -> str:
    """``h2o-<pipeline>-<hash8>``: unique per (dag_id, run_id), stable across retries."""
    digest = run_hash(dag_id, run_id)
    prefix = _sanitize(f"h2o-{pipeline}", _MAX_PREFIX - len(digest) - 1)
    if not prefix[0].isalpha():
        prefix = "h" + prefix
    return f"{prefix}-{digest}"


def label_value(value: str) -> str:
    """A Kubernetes label value (<= 63 chars of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", value)
    if len(text) > 63:
        text = text[:54] + "_" + hashlib.sha256(value.encode()).hexdigest()[:8]
    return text.strip("_.-")[:63]


def labels(cluster: str, pipeline: str, dag_id: str, run_id: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "h2o",
        "app.kubernetes.io/instance": cluster,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "h2o-airflow/pipeline": label_value(pipeline),
        "h2o-airflow/dag-id": label_value(dag_id),
        "h2o-airflow/run-id": label_value(run_id),
    }
