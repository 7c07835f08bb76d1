"""A failed run's evidence, saved before its cluster is deleted: the nodes' logs, the pods' statuses
and events (or the local nodes' exit states), ``/3/Cloud``, and the failing tasks' errors.

The bundle is written to a local directory, every known secret is replaced by ``***`` in every
file (in the H2O log archive too), then it is uploaded under a prefix of its own,
``{registry's parent}/_diagnostics/{pipeline}/{dag_id}/{run}/{stamp}/``, each object created once.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from h2o_tasks import naming, s3, scratch
from h2o_tasks.cluster.base import ClusterBackend, ClusterInfo
from h2o_tasks.cluster.login import Login, urlopen

MASK = b"***"
LOG_DOWNLOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Bundle:
    uri: str
    files: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bundle_uri(registry_uri: str, pipeline: str, dag_id: str, run_id: str, now: datetime | None = None) -> str:
    """Beside the registry, never inside it: ``s3://b/models/_diagnostics/<pipeline>/<dag>/<run>/<stamp>``."""
    parent = registry_uri.rstrip("/").rsplit("/", 1)[0]
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    run = naming.label_value(run_id) or naming.run_hash("run", run_id)
    return s3.join(parent, "_diagnostics", pipeline, naming.label_value(dag_id), run, stamp)


def _scrub(data: bytes, secrets: list[bytes]) -> bytes:
    for secret in secrets:
        data = data.replace(secret, MASK)
    return data


def _scrub_zip(data: bytes, secrets: list[bytes]) -> bytes:
    """Every member scrubbed, the archives inside too (H2O's log archive holds one zip per node)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            member = src.read(item)
            dst.writestr(item, _scrub_zip(member, secrets) if item.filename.endswith(".zip") else _scrub(member, secrets))
    return out.getvalue()


def _scrub_file(path: Path, secrets: list[bytes]) -> None:
    data = path.read_bytes()
    path.write_bytes(_scrub_zip(data, secrets) if path.suffix == ".zip" else _scrub(data, secrets))


def _get(url: str, timeout: float, login: Login | None) -> bytes | None:
    try:
        with urlopen(url, login, timeout) as resp:
            return resp.read()
    except Exception:  # a node that is gone or hung: the other evidence still counts
        return None


def collect(backend: ClusterBackend, info: ClusterInfo, *, errors: dict[str, str], secrets: list[str],
            client: Any, uri: str) -> Bundle:
    """Gather the cluster's evidence and upload it under ``uri``; best effort for each part, never raises
    for a part that cannot be had (what was not had is said in ``status.json``)."""
    problems: dict[str, str] = {}
    with scratch.directory("h2o-diagnostics-") as work:
        status: Any
        try:
            status = asdict(backend.status(info, elapsed_s=float("inf"), formation_timeout_s=0.0))
        except Exception as exc:
            status = None
            problems["status"] = f"{type(exc).__name__}: {exc}"
        try:
            url = backend.local_endpoint(info)
        except Exception as exc:
            url = ""
            problems["leader"] = f"{type(exc).__name__}: {exc}"
        login = None
        if url:
            try:
                login = backend.login(info)
            except Exception as exc:
                problems["login"] = f"{type(exc).__name__}: {exc}"
            cloud = _get(f"{url}/3/Cloud", 10.0, login)
            if cloud is not None:
                (work / "cloud.json").write_bytes(cloud)
            logs = _get(f"{url}/3/Logs/download", LOG_DOWNLOAD_TIMEOUT_S, login)
            if logs is not None:
                (work / "h2o-logs.zip").write_bytes(logs)
            else:
                problems["h2o-logs.zip"] = "the leader did not answer /3/Logs/download"
        try:
            backend.evidence(info, work / "backend")
        except Exception as exc:
            problems["backend"] = f"{type(exc).__name__}: {exc}"
        kept = [*secrets, login.password if login else ""]  # the nodes' logs may echo a request's header
        try:
            kept += backend.log_secrets(info)
        except Exception as exc:  # unknown: the node logs, which may hold them, are not uploaded
            problems["node logs"] = f"withheld: their secrets could not be read ({type(exc).__name__}: {exc})"
            for path in [*(work / "backend").rglob("*.log"), work / "h2o-logs.zip"]:
                path.unlink(missing_ok=True)
        (work / "status.json").write_text(json.dumps({
            "collected_at": datetime.now(UTC).isoformat(), "cluster": info.to_dict(), "status": status,
            "errors": errors, "not_collected": problems}, indent=2, default=str))
        masks = sorted({s.encode() for s in kept if s and len(s) >= 4}, key=len, reverse=True)
        files = sorted(p for p in work.rglob("*") if p.is_file())
        for path in files:
            _scrub_file(path, masks)
            s3.create_file(client, path, s3.join(uri, str(path.relative_to(work))))
        return Bundle(uri, [str(p.relative_to(work)) for p in files])
