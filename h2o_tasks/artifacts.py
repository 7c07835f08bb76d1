"""Export a trained model to the registry: MOJO, POJO, genmodel jar, metadata, report.

Everything is written to a local directory first, uploaded in parallel to
``{registry_uri}/versions/{version}/``, and ``metadata.json`` goes last: a version whose
metadata exists is complete. A re-run of the same Airflow run writes the same version.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from h2o_tasks import naming, registry, report, s3
from h2o_tasks.config import PipelineConfig, to_dict
from h2o_tasks.train import metrics_of

CONTENT_TYPES = {".json": "application/json", ".html": "text/html", ".png": "image/png", ".java": "text/x-java",
                 ".zip": "application/zip", ".jar": "application/java-archive"}


@dataclass(frozen=True)
class ExportResult:
    version: str
    uri: str
    files: list[str]
    metrics: dict[str, float]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def version_id(logical_date: datetime | None, run_id: str) -> str:
    """Sortable and stable for a run: ``20130204T000000-<hash of run id>``."""
    stamp = (logical_date or datetime(1970, 1, 1, tzinfo=UTC)).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{naming.run_hash('version', run_id)}"


def feature_schema(model: Any, cfg: PipelineConfig) -> tuple[list[dict[str, Any]], list[str] | None]:
    """Features with declared types and the categorical domains the model learned; the label's domain."""
    out = model._model_json["output"]
    domains = dict(zip(out["names"], out["domains"], strict=False))
    features = [{"name": f.name, "type": f.type, "domain": domains.get(f.name) if f.type == "enum" else None}
                for f in cfg.features]
    return features, domains.get(cfg.target.label)


def export(h2o: Any, model: Any, cfg: PipelineConfig, client: Any, *, run_id: str, logical_date: datetime | None,
           lineage: dict[str, Any] | None = None, training: dict[str, Any] | None = None,
           valid_frame: Any = None) -> ExportResult:
    """Export ``model`` and upload it as a registry version."""
    t0 = time.monotonic()
    version = version_id(logical_date, run_id)
    uri = registry.version_uri(cfg.registry_uri, version)
    perf = model.model_performance(valid=True) if valid_frame is None else model.model_performance(valid_frame)
    if perf is None:
        perf = model.model_performance(xval=True)
    metrics = metrics_of(perf, cfg.target.problem)
    work = Path(tempfile.mkdtemp(prefix="h2o-export-"))
    try:
        mojo = Path(model.download_mojo(path=str(work), get_genmodel_jar=True, genmodel_name="h2o-genmodel.jar"))
        mojo.rename(work / "model.zip")
        pojo, pojo_reason = _download_pojo(h2o, model, work)
        features, label_domain = feature_schema(model, cfg)
        frame, frame_name = (valid_frame, "validation") if valid_frame is not None else _frame_of(h2o, model)
        report_files = report.write(work, model, perf, cfg, metrics, version, frame, frame_name)
        metadata = {
            "pipeline": cfg.name, "version": version, "model_id": model.model_id, "algo": model.algo,
            "created_at": datetime.now(UTC).isoformat(), "h2o_version": h2o.__version__,
            "metrics": metrics, "metric": cfg.training.metric, "parameters": _params(model),
            "features": features, "target": {"column": cfg.target.column, "label": cfg.target.label,
                                             "problem": cfg.target.problem, "threshold": cfg.target.threshold,
                                             "domain": label_domain},
            "lineage": {"run_id": run_id, "logical_date": logical_date.isoformat() if logical_date else None,
                        **(lineage or {})},
            "training": training or {}, "pipeline_config": to_dict(cfg),
            "pojo": pojo, "pojo_unavailable_reason": pojo_reason,
            "files": [*sorted(p.name for p in work.iterdir() if p.is_file()), "metadata.json"],
            "report": report_files,
        }
        (work / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str))
        files = sorted(p for p in work.iterdir() if p.is_file() and p.name != "metadata.json")

        def put(p: Path) -> None:
            bucket, key = s3.split_uri(s3.join(uri, p.name))
            client.upload_file(str(p), bucket, key,
                               ExtraArgs={"ContentType": CONTENT_TYPES.get(p.suffix, "application/octet-stream")})

        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(put, files))
        put(work / "metadata.json")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(version=version, uri=uri, files=[p.name for p in files] + ["metadata.json"], metrics=metrics,
                        seconds=round(time.monotonic() - t0, 2))


def _frame_of(h2o: Any, model: Any) -> tuple[Any, str]:
    """The model's validation frame if it is still in the cluster, else its training frame, else None."""
    params = model.actual_params
    for param, name in (("validation_frame", "validation"), ("training_frame", "training data")):
        frame = h2o.get_frame(params[param]) if params.get(param) else None  # None once removed
        if frame is not None:
            return frame, name
    return None, ""


def _download_pojo(h2o: Any, model: Any, work: Path) -> tuple[str | None, str | None]:
    """The POJO source's file name, or None and why: not every model has a POJO (e.g. StackedEnsemble)."""
    from h2o.exceptions import H2OResponseError, H2OValueError

    if not getattr(model, "have_pojo", True):
        return None, f"H2O cannot export {model.algo} models as POJO (the MOJO model.zip has the model)"
    pojo_dir = work / "pojo"
    pojo_dir.mkdir()
    try:
        h2o.download_pojo(model, path=str(pojo_dir), get_jar=False)
        java = sorted(pojo_dir.glob("*.java"))
        for f in java:
            f.rename(work / f.name)
    except (H2OValueError, H2OResponseError) as exc:
        return None, f"POJO export of {model.algo} failed: {str(exc).strip()[:300]} (the MOJO model.zip has the model)"
    finally:
        shutil.rmtree(pojo_dir)
    return (java[0].name, None) if java else (None, "POJO export wrote no .java file")


def _params(model: Any) -> dict[str, Any]:
    out = {}
    for name, p in (model.params or {}).items():
        value = p.get("actual") if isinstance(p, dict) else p
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[name] = value
    return out
